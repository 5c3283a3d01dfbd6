#include "service/core/change_history.h"

#include "gtest/gtest.h"
#include "service/testing/simulated_time.h"

namespace uploadwatch {
namespace {

using ::uploadwatch::testing::SimulatedTime;

const WatchTarget kTarget =
    WatchTarget::Counter(GroupKey{"fp", 2215573}, v1::Uploading::BASIC);

UploadingState State(int64_t id, int64_t version, v1::Uploading::Status s) {
  UploadingState out;
  out.uploading.set_id(id);
  out.uploading.set_status(s);
  out.version = version;
  return out;
}

TEST(LocalChangeHistoryTest, SequencesGrowPerNewVersionOnly) {
  SimulatedTime time;
  LocalChangeHistory h(&time, {}, 7);
  EXPECT_EQ(h.instance(), 7u);
  EXPECT_EQ(h.Record(kTarget, State(1, 1, v1::Uploading::UPLOADED)), 1u);
  EXPECT_EQ(h.Record(kTarget, State(2, 1, v1::Uploading::UPLOADED)), 2u);
  // The same version again (another watcher's delivery): no new sequence.
  EXPECT_EQ(h.Record(kTarget, State(1, 1, v1::Uploading::UPLOADED)), 1u);
  EXPECT_EQ(h.Record(kTarget, State(1, 2, v1::Uploading::MATCHED)), 3u);
  // An older version never replaces a newer one.
  EXPECT_EQ(h.Record(kTarget, State(1, 1, v1::Uploading::UPLOADED)), 3u);
}

TEST(LocalChangeHistoryTest, SinceGivesTheLatestStateOfEachChangedInOrder) {
  SimulatedTime time;
  LocalChangeHistory h(&time, {}, 7);
  h.Record(kTarget, State(1, 1, v1::Uploading::UPLOADED));  // 1
  h.Record(kTarget, State(2, 1, v1::Uploading::UPLOADED));  // 2
  h.Record(kTarget, State(1, 2, v1::Uploading::MATCHED));   // 3
  h.Record(kTarget, State(3, 1, v1::Uploading::UPLOADED));  // 4
  h.Record(kTarget, State(1, 3, v1::Uploading::PROCESSED)); // 5
  std::optional<ChangeHistory::CatchUp> c = h.Since(kTarget, 2);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->head, 5u);
  ASSERT_EQ(c->changes.size(), 2u);
  EXPECT_EQ(c->changes[0].state.uploading.id(), 3);
  EXPECT_TRUE(c->changes[0].added);
  EXPECT_EQ(c->changes[1].state.uploading.id(), 1);
  EXPECT_EQ(c->changes[1].state.uploading.status(), v1::Uploading::PROCESSED);
  EXPECT_FALSE(c->changes[1].added);
  EXPECT_EQ(c->known.size(), 3u);
  // At the head: nothing to catch up.
  EXPECT_TRUE(h.Since(kTarget, 5)->changes.empty());
}

TEST(LocalChangeHistoryTest, TokensBeyondTheHistoryOrOfOtherTargetsAreRefused) {
  SimulatedTime time;
  LocalChangeHistory h(&time, {.max_changes = 3, .max_age = absl::Minutes(5)},
                       7);
  for (int64_t v = 1; v <= 5; ++v) {
    h.Record(kTarget, State(1, v, v1::Uploading::UPLOADED));
  }
  EXPECT_FALSE(h.Since(kTarget, 1).has_value());  // trimmed away
  EXPECT_TRUE(h.Since(kTarget, 2).has_value());
  EXPECT_FALSE(h.Since(kTarget, 6).has_value());  // never issued
  const WatchTarget other =
      WatchTarget::Counter(GroupKey{"fp", 2215573}, v1::Uploading::CALLS);
  EXPECT_FALSE(h.Since(other, 3).has_value());
  EXPECT_TRUE(h.Since(other, 0).has_value());
  // Too old by time.
  time.Advance(absl::Minutes(6));
  EXPECT_FALSE(h.Since(kTarget, 4).has_value());
}

TEST(LocalChangeHistoryTest, AnIdleTargetIsForgotten) {
  SimulatedTime time;
  LocalChangeHistory h(&time, {.max_idle = absl::Minutes(30)}, 7);
  h.Record(kTarget, State(1, 1, v1::Uploading::UPLOADED));
  time.Advance(absl::Minutes(20));
  // Watchers' unchanged observations keep it.
  h.Record(kTarget, State(1, 1, v1::Uploading::UPLOADED));
  time.Advance(absl::Minutes(20));
  EXPECT_TRUE(h.Since(kTarget, 1).has_value());
  EXPECT_EQ(h.targets(), 1u);
  time.Advance(absl::Minutes(31));
  EXPECT_FALSE(h.Since(kTarget, 1).has_value());
  EXPECT_EQ(h.targets(), 0u);
}

}  // namespace
}  // namespace uploadwatch
