// CounterView: what a counter watch's client holds after each message.
#include "client/counter_view.h"

#include <cstdint>
#include <utility>
#include <vector>

#include "client/testing/counter_messages.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

namespace v1 = ::metrika::offline_conversions::v1;
using ::testing::ElementsAre;
using ::testing::Pair;

v1::WatchUploadingsResponse Message(
    std::vector<std::pair<int64_t, v1::Uploading::Status>> events,
    bool synced = false, bool reset = false) {
  return client_testing::CounterMessage("", std::move(events), synced, reset);
}

std::vector<std::pair<int64_t, v1::Uploading::Status>> Held(const CounterView& view) {
  std::vector<std::pair<int64_t, v1::Uploading::Status>> out;
  for (const v1::Uploading& u : view.Uploadings()) out.emplace_back(u.id(), u.status());
  return out;
}

TEST(CounterViewTest, HoldsTheLatestStateOfEachUploadingNewestFirst) {
  CounterView view;
  view.Apply(Message({{5, v1::Uploading::PREPARED}, {12, v1::Uploading::MATCHED}}));
  EXPECT_FALSE(view.synced());
  view.Apply(Message({{7, v1::Uploading::UPLOADED}}, /*synced=*/true));
  EXPECT_TRUE(view.synced());
  view.Apply(client_testing::CounterMessage("", {{5, v1::Uploading::EXPORTED}},
                                            false, false,
                                            v1::UploadingEvent::MODIFIED));
  EXPECT_THAT(Held(view), ElementsAre(Pair(12, v1::Uploading::MATCHED),
                                      Pair(7, v1::Uploading::UPLOADED),
                                      Pair(5, v1::Uploading::EXPORTED)));
  EXPECT_EQ(view.size(), 3u);
}

TEST(CounterViewTest, ABookmarkChangesNothing) {
  CounterView view;
  view.Apply(Message({{5, v1::Uploading::PREPARED}}, true));
  view.Apply(Message({}));
  EXPECT_TRUE(view.synced());
  EXPECT_THAT(Held(view), ElementsAre(Pair(5, v1::Uploading::PREPARED)));
}

TEST(CounterViewTest, AResetDropsEverythingAndIsUnsyncedUntilTheNextSync) {
  CounterView view;
  view.Apply(Message({{5, v1::Uploading::PREPARED}, {6, v1::Uploading::MATCHED}}, true));
  view.Apply(Message({{6, v1::Uploading::PROCESSED}}, false, /*reset=*/true));
  EXPECT_FALSE(view.synced());
  EXPECT_THAT(Held(view), ElementsAre(Pair(6, v1::Uploading::PROCESSED)));
  view.Apply(Message({{8, v1::Uploading::PREPARED}}, /*synced=*/true));
  EXPECT_TRUE(view.synced());
  EXPECT_THAT(Held(view), ElementsAre(Pair(8, v1::Uploading::PREPARED),
                                      Pair(6, v1::Uploading::PROCESSED)));
}

}  // namespace
}  // namespace uploadwatch
