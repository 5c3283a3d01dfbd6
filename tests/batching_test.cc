// Batched polling: one token watching many uploadings of one counter costs
// one ListUploadings per poll interval, not one Get per uploading.
#include <thread>

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

TEST_F(BatchingTest, PagesAreFetchedOnlyAsFarAsNeeded) {
  for (int id = 1; id <= 150; ++id) {
    metrica_.AddUploading(kCounter, MakeUploading(id, v1::Uploading::MATCHED));
  }
  StartServer();
  // 150 and 149 are on the first page (newest first, 100 a page); 1 is not.
  std::vector<OpenWatch> watches;
  watches.push_back(Watch(150));
  watches.push_back(Watch(149));
  metrica_.ClearRequests();
  absl::SleepFor(absl::Milliseconds(500));
  Counts first_page_only = CountRequests();
  for (const auto& r : metrica_.requests()) {
    EXPECT_THAT(r.query, ::testing::Not(::testing::HasSubstr("offset=")));  // first page
  }
  EXPECT_EQ(first_page_only.gets, 0);
  EXPECT_GE(first_page_only.lists, 2);

  watches.push_back(Watch(1));
  metrica_.ClearRequests();
  absl::SleepFor(absl::Milliseconds(800));
  Counts two_pages = CountRequests();
  EXPECT_EQ(two_pages.gets, 0);
  int first_pages = 0, second_pages = 0;
  for (const auto& r : metrica_.requests()) {
    if (absl::StrContains(r.query, "offset=100")) {
      ++second_pages;
    } else {
      ++first_pages;
    }
  }
  // Every round now reads two pages (the window may cut one round in half).
  EXPECT_GE(first_pages, 2);
  EXPECT_GE(second_pages, first_pages - 1);
  EXPECT_LE(second_pages, first_pages);
  for (const auto& r : metrica_.requests()) {
    EXPECT_THAT(r.query, ::testing::Not(::testing::HasSubstr("offset=200")))
        << "never further than needed";
  }
  for (auto& w : watches) w.ctx->TryCancel();
}

TEST_F(BatchingTest, UploadingsNotOnThePagesFallBackToGets) {
  config_.hub.batch_max_pages = 1;
  for (int id = 1; id <= 150; ++id) {
    metrica_.AddUploading(kCounter, MakeUploading(id, v1::Uploading::MATCHED));
  }
  v1::Uploading call = MakeUploading(500, v1::Uploading::MATCHED);
  call.set_type(v1::Uploading::CALLS);  // not in the default (BASIC) list
  metrica_.AddUploading(kCounter, call);
  StartServer();
  std::vector<OpenWatch> watches;
  watches.push_back(Watch(150));
  watches.push_back(Watch(1));
  watches.push_back(Watch(500));
  metrica_.ClearRequests();
  absl::SleepFor(absl::Milliseconds(800));
  Counts c = CountRequests();
  EXPECT_GE(c.lists, 2);
  // Each round: one list, then a Get for 1 and one for 500.
  EXPECT_GE(c.gets, 2 * (c.lists - 1));
  EXPECT_LE(c.gets, 2 * (c.lists + 1));
  EXPECT_EQ(UpstreamCallsFor(150), 0);

  metrica_.SetUploading(kCounter, [&] {
    v1::Uploading done = call;
    done.set_status(v1::Uploading::PROCESSED);
    return done;
  }());
  v1::WatchUploadingResponse m;
  ASSERT_TRUE(watches[2].reader->Read(&m));
  EXPECT_EQ(m.uploading().status(), v1::Uploading::PROCESSED);
  for (auto& w : watches) w.ctx->TryCancel();
}

TEST_F(BatchingTest, ABurstOfNewWatchesIsAnsweredByAFewListsNotAGetEach) {
  constexpr int kUploadings = 40;
  for (int id = 1; id <= kUploadings; ++id) {
    metrica_.AddUploading(kCounter, MakeUploading(id, v1::Uploading::MATCHED));
  }
  config_.hub.poll_interval = absl::Seconds(30);  // only first states count
  StartServer();
  // A dashboard opens all its watches at once.
  std::vector<OpenWatch> watches(kUploadings);
  for (int i = 0; i < kUploadings; ++i) {
    watches[i].ctx = Context();
    v1::WatchUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(i + 1);
    watches[i].reader = stub_->WatchUploading(watches[i].ctx.get(), request);
  }
  for (auto& w : watches) {
    v1::WatchUploadingResponse m;
    ASSERT_TRUE(w.reader->Read(&m));
    EXPECT_EQ(m.uploading().status(), v1::Uploading::MATCHED);
  }
  Counts c = CountRequests();
  EXPECT_LE(c.gets + c.lists, 8) << c.gets << " gets, " << c.lists << " lists";
  for (auto& w : watches) w.ctx->TryCancel();
}

TEST_F(BatchingTest, AListThatEndsTheLastWatchOfAGroupIsSafe) {
  // A caller's List shows the only watched uploading terminal: the watch,
  // its poller and its group end while the list is being recorded.
  metrica_.AddUploading(kCounter, MakeUploading(1, v1::Uploading::MATCHED));
  metrica_.AddUploading(kCounter, MakeUploading(2, v1::Uploading::MATCHED));
  config_.hub.poll_interval = absl::Seconds(30);  // only the List refreshes
  StartServer();
  OpenWatch w = Watch(1);
  metrica_.SetUploading(kCounter, MakeUploading(1, v1::Uploading::PROCESSED));
  v1::ListUploadingsRequest request;
  request.set_counter_id(kCounter);
  v1::ListUploadingsResponse response;
  ASSERT_TRUE(stub_->ListUploadings(Context().get(), request, &response).ok());
  v1::WatchUploadingResponse m;
  ASSERT_TRUE(w.reader->Read(&m));
  EXPECT_TRUE(m.terminal());
  EXPECT_TRUE(w.reader->Finish().ok());
  EXPECT_EQ(server_->stats().groups, 0u);
  // And the server is still serving.
  ASSERT_TRUE(stub_->ListUploadings(Context().get(), request, &response).ok());
}

TEST_F(BatchingTest, ATokenThatLosesAccessEndsAllItsWatchesOfTheCounter) {
  for (int id = 1; id <= 3; ++id) {
    metrica_.AddUploading(kCounter, MakeUploading(id, v1::Uploading::MATCHED));
  }
  StartServer();
  std::vector<OpenWatch> watches;
  for (int id = 1; id <= 3; ++id) watches.push_back(Watch(id));
  FakeMetrica::Fault denied;
  denied.http_status = 403;
  denied.error_type = "access_denied";
  denied.times = -1;
  metrica_.InjectFault(denied);
  for (auto& w : watches) {
    v1::WatchUploadingResponse m;
    while (w.reader->Read(&m)) {
    }
    EXPECT_EQ(w.reader->Finish().error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(server_->stats().pollers, 0u);
  EXPECT_EQ(server_->stats().groups, 0u);
}

}  // namespace
}  // namespace uploadwatch::testing
