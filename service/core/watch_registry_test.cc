#include "service/core/watch_registry.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

using ::testing::UnorderedElementsAre;

class Quiet : public Subscriber {
 public:
  void OnState(const UploadingState&) override {}
  void OnError(const absl::Status&) override {}
};

const UploadingKey kKey{"fp", 1, 7};

UploadingState StateOf(v1::Uploading::Status status, int64_t version) {
  UploadingState s;
  s.uploading.set_id(kKey.uploading_id);
  s.uploading.set_status(status);
  s.version = version;
  return s;
}

TEST(WatchRegistryTest, AFreshStateIsShownToWhoeverJoinedBeforeIt) {
  // The race the hub has: the first subscriber adds the target and reads a
  // fresh state from the store; a second one joins meanwhile and is told
  // nothing was shown yet. ShowFresh must name both.
  WatchRegistry registry({});
  const WatchTarget target = WatchTarget::Uploading(kKey);
  Quiet first, joiner;
  auto a = registry.Add(target, &first);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->new_target);
  auto b = registry.Add(target, &joiner);
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->new_target);
  EXPECT_FALSE(b->has_state);

  const WatchRegistry::Match m =
      registry.ShowFresh(target, StateOf(v1::Uploading::MATCHED, 3));
  EXPECT_THAT(m.to, UnorderedElementsAre(&first, &joiner));
  EXPECT_FALSE(m.ended);
  EXPECT_TRUE(registry.Shown(kKey));
  // Whoever joins now is given the stored state by the hub.
  Quiet late;
  auto c = registry.Add(target, &late);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->has_state);
}

TEST(WatchRegistryTest, ATerminalFreshStateEndsTheTargetForEveryone) {
  WatchRegistry registry({});
  const WatchTarget target = WatchTarget::Uploading(kKey);
  Quiet first, joiner;
  ASSERT_TRUE(registry.Add(target, &first).ok());
  ASSERT_TRUE(registry.Add(target, &joiner).ok());
  const WatchRegistry::Match m =
      registry.ShowFresh(target, StateOf(v1::Uploading::PROCESSED, 5));
  EXPECT_THAT(m.to, UnorderedElementsAre(&first, &joiner));
  ASSERT_TRUE(m.ended);
  EXPECT_EQ(*m.ended, target);
  EXPECT_FALSE(registry.Watched(kKey));
  EXPECT_EQ(registry.subscribers(), 0u);
  EXPECT_FALSE(registry.Remove(&joiner));  // nothing left to leave
}

TEST(WatchRegistryTest, ShowFreshOfAnEndedTargetNamesNobody) {
  WatchRegistry registry({});
  const WatchTarget target = WatchTarget::Uploading(kKey);
  Quiet only;
  ASSERT_TRUE(registry.Add(target, &only).ok());
  ASSERT_TRUE(registry.Remove(&only)->target_gone);
  const WatchRegistry::Match m =
      registry.ShowFresh(target, StateOf(v1::Uploading::MATCHED, 1));
  EXPECT_TRUE(m.to.empty());
  EXPECT_FALSE(m.ended);
}

}  // namespace
}  // namespace uploadwatch
