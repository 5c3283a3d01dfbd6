// Issue 13's scenario through the real server: callers with a 300 ms deadline
// ask for uploadings that take Metrica 3 s. Metrica allows 3 parallel
// requests per user and keeps working on a request after we hang up, so the
// fetcher must keep each abandoned request's slot until Metrica is done; and
// a fresh call afterwards must wait only for what is really at Metrica.
// Prints the figures (max parallelism at Metrica, the fresh call's wait).
#include <atomic>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/service_fixture.h"

namespace uploadwatch::testing {
namespace {

constexpr int32_t kSlowCounter = 42;  // every request under it takes 3 s
// They keep coming: one every 50 ms for 2 s, each giving up after 300 ms.
constexpr int kCallers = 40;
constexpr absl::Duration kArrivalEvery = absl::Milliseconds(50);
constexpr absl::Duration kImpatience = absl::Milliseconds(300);

class ImpatientCallersTest : public ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    metrica_.GrantAccess(kToken, kSlowCounter);
    for (int i = 0; i < kCallers; ++i) {
      metrica_.AddUploading(kSlowCounter,
                            MakeUploading(200 + i, v1::Uploading::PREPARED));
    }
    metrica_.AddUploading(kCounter, MakeUploading(13, v1::Uploading::PROCESSED));
    FakeMetrica::Fault slow;
    slow.path_substring = absl::StrCat("/counter/", kSlowCounter, "/");
    slow.delay = absl::Seconds(3);
    slow.times = -1;
    metrica_.InjectFault(slow);
    config_.hub.upstream_timeout = absl::Seconds(20);  // the default
    // Each caller is someone else, as behind a proxy: this is about the
    // fetcher's slots, not one caller's share of the server token.
    config_.caller_identity_header = "x-caller";
    StartServer();
  }

  static std::unique_ptr<grpc::ClientContext> CallerContext(
      absl::Duration timeout) {
    static std::atomic<int> next{0};
    auto ctx = Context(timeout);
    ctx->AddMetadata("x-caller", absl::StrCat("caller-", next++));
    return ctx;
  }

  // A Get of the fast counter, after the burst: how long it waited, and
  // whether it succeeded.
  absl::Duration FreshGet(bool* ok = nullptr) {
    v1::GetUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(13);
    v1::GetUploadingResponse response;
    const absl::Time start = absl::Now();
    grpc::Status status =
        stub_->GetUploading(CallerContext(absl::Seconds(30)).get(), request, &response);
    const absl::Duration wait = absl::Now() - start;
    if (ok != nullptr) *ok = status.ok();
    std::printf("fresh Get: %s %s\n", status.ok() ? "OK" : "failed:",
                status.error_message().c_str());
    return wait;
  }

  void Report(const char* burst, absl::Duration fresh_wait) {
    std::printf("impatient %s: %zu requests reached Metrica, max parallel "
                "%d, fresh Get %s\n",
                burst, metrica_.requests().size(),
                metrica_.max_in_flight(kToken),
                absl::FormatDuration(absl::Trunc(fresh_wait,
                                                 absl::Milliseconds(10)))
                    .c_str());
  }
};

TEST_F(ImpatientCallersTest, WatchersWhoGiveUpNeverPutMoreThanThreeAtMetrica) {
  std::vector<std::thread> callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([this, i] {
      absl::SleepFor(kArrivalEvery * i);
      auto ctx = CallerContext(kImpatience);
      v1::WatchUploadingRequest request;
      request.set_counter_id(kSlowCounter);
      request.set_uploading_id(200 + i);
      auto reader = stub_->WatchUploading(ctx.get(), request);
      v1::WatchUploadingResponse m;
      while (reader->Read(&m)) {
      }
      EXPECT_EQ(reader->Finish().error_code(),
                grpc::StatusCode::DEADLINE_EXCEEDED);
    });
  }
  for (std::thread& t : callers) t.join();
  bool ok = false;
  const absl::Duration wait = FreshGet(&ok);
  Report("watchers", wait);
  EXPECT_TRUE(ok);
  EXPECT_LE(metrica_.max_in_flight(kToken), 3);
  // The three at Metrica answer 3 s after they were sent; nothing else is
  // ahead of the fresh call.
  EXPECT_LT(wait, absl::Seconds(4));
}

TEST_F(ImpatientCallersTest, GettersWhoGiveUpNeverPutMoreThanThreeAtMetrica) {
  std::vector<std::thread> callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([this, i] {
      absl::SleepFor(kArrivalEvery * i);
      v1::GetUploadingRequest request;
      request.set_counter_id(kSlowCounter);
      request.set_uploading_id(200 + i);
      v1::GetUploadingResponse response;
      EXPECT_EQ(stub_->GetUploading(CallerContext(kImpatience).get(), request,
                                    &response)
                    .error_code(),
                grpc::StatusCode::DEADLINE_EXCEEDED);
    });
  }
  for (std::thread& t : callers) t.join();
  // Its wait is asserted below.
  const absl::Duration wait = FreshGet();
  Report("getters", wait);
  EXPECT_LE(metrica_.max_in_flight(kToken), 3);
}

// A unary call whose caller gave up leaves its single flight (the server
// sees the cancel: UnaryCall::OnCancel, CallerWait), so a dead Get still
// queued in the fetcher is dropped, never sent: the fresh call waits only
// for the three really at Metrica (about 20 s before, measured).
TEST_F(ImpatientCallersTest, AFreshGetDoesNotWaitBehindDeadGets) {
  std::vector<std::thread> callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([this, i] {
      absl::SleepFor(kArrivalEvery * i);
      v1::GetUploadingRequest request;
      request.set_counter_id(kSlowCounter);
      request.set_uploading_id(200 + i);
      v1::GetUploadingResponse response;
      stub_->GetUploading(CallerContext(kImpatience).get(), request, &response);
    });
  }
  for (std::thread& t : callers) t.join();
  bool ok = false;
  EXPECT_LT(FreshGet(&ok), absl::Seconds(4));
  EXPECT_TRUE(ok);
}

}  // namespace
}  // namespace uploadwatch::testing
