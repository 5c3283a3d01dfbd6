// Batched polling, end to end: one token watching many uploadings of one
// counter costs one ListUploadings per poll interval, not one Get per
// uploading. The exact logic (pages only as far as needed, Gets for what the
// pages miss, bursts of new watches, lists ending watches, a token losing the
// counter) is tested on simulated time in service/core (poll_planner_test,
// uploading_hub_test); this is the wiring through curl and the simulator.
#include "gmock/gmock.h"
#include "tests/service_fixture.h"

namespace uploadwatch::testing {
namespace {

class BatchingTest : public ServiceTest {
 protected:
  struct Counts {
    int lists = 0;
    int gets = 0;
  };
  Counts CountRequests() {
    Counts c;
    for (const auto& r : metrica_.requests()) {
      if (absl::EndsWith(r.path, "/uploadings")) ++c.lists;
      if (absl::StrContains(r.path, "/uploading/")) ++c.gets;
    }
    return c;
  }
};

TEST_F(BatchingTest, ManyWatchedUploadingsCostOneListPerInterval) {
  constexpr int kUploadings = 8, kWatchersEach = 3;
  for (int id = 1; id <= kUploadings; ++id) {
    metrica_.AddUploading(kCounter, MakeUploading(id, v1::Uploading::EXPORTED));
  }
  StartServer();
  std::vector<OpenWatch> watches;
  for (int id = 1; id <= kUploadings; ++id) {
    for (int i = 0; i < kWatchersEach; ++i) watches.push_back(Watch(id));
  }
  metrica_.ClearRequests();
  absl::SleepFor(absl::Milliseconds(1000));  // ten poll intervals
  Counts c = CountRequests();
  EXPECT_EQ(c.gets, 0);
  EXPECT_GE(c.lists, 8);
  EXPECT_LE(c.lists, 11);
  // Naive polling would have cost kUploadings * kWatchersEach * 10 = 240.

  // A change seen through the list reaches every watcher of that uploading.
  v1::Uploading moved = MakeUploading(5, v1::Uploading::PROCESSED);
  metrica_.SetUploading(kCounter, moved);
  for (int i = 0; i < kWatchersEach; ++i) {
    auto& w = watches[(5 - 1) * kWatchersEach + i];
    v1::WatchUploadingResponse m;
    ASSERT_TRUE(w.reader->Read(&m));
    EXPECT_EQ(m.uploading().status(), v1::Uploading::PROCESSED);
    EXPECT_TRUE(m.terminal());
    EXPECT_FALSE(w.reader->Read(&m));
    EXPECT_TRUE(w.reader->Finish().ok());
  }
  for (auto& w : watches) w.ctx->TryCancel();
}

}  // namespace
}  // namespace uploadwatch::testing
