// The quota-aware pacing, end to end: a real 429 from the simulator, through
// the fetcher's error mapping and the status classifier, pauses every poll of
// the token. The exact pacing (intervals, backoff with jitter, Retry-After,
// the pause growing, the daily budget stretching polls) is tested on
// simulated time in service/core (pacer_test, uploading_hub_test). The other
// test here is the wiring of the fetcher's daily budget into the pacer.
#include "gmock/gmock.h"
#include "tests/service_fixture.h"

namespace uploadwatch::testing {
namespace {

class QuotaPacingTest : public ServiceTest {
 protected:
  int CallsUnder(int32_t counter) {
    const std::string prefix = absl::StrCat("/counter/", counter, "/");
    int n = 0;
    for (const auto& r : metrica_.requests()) {
      if (absl::StrContains(r.path, prefix)) ++n;
    }
    return n;
  }
  static constexpr int32_t kOtherCounter = 777;

  // One token, two counters (two poll groups): uploading 1 in kCounter,
  // uploading 2 in kOtherCounter, both MATCHED.
  void StartWithTwoCounters() {
    metrica_.GrantAccess(kToken, kOtherCounter);
    metrica_.AddUploading(kCounter, MakeUploading(1, v1::Uploading::MATCHED));
    metrica_.AddUploading(kOtherCounter,
                          MakeUploading(2, v1::Uploading::MATCHED));
    StartServer();
  }
};

TEST_F(QuotaPacingTest, PollsStretchFairlyToTheDailyBudget) {
  // 200 requests a day for hours to come: far less than one poll per 100 ms.
  daily_budget_ = 200;
  StartWithTwoCounters();
  auto a = Watch(1);
  auto b = Watch(2, kOtherCounter);
  metrica_.ClearRequests();
  absl::SleepFor(absl::Milliseconds(1000));  // ten poll intervals
  EXPECT_EQ(CallsUnder(kCounter), 0);
  EXPECT_EQ(CallsUnder(kOtherCounter), 0);
  // Callers' own Gets still go through (the reserve is theirs).
  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(1);
  v1::GetUploadingResponse response;
  absl::SleepFor(absl::Milliseconds(60));  // past cache_ttl
  EXPECT_TRUE(stub_->GetUploading(Context().get(), request, &response).ok());
  a.ctx->TryCancel();
  b.ctx->TryCancel();
}

TEST_F(QuotaPacingTest, AQuotaErrorPausesEveryPollOfTheToken) {
  config_.hub.max_backoff = absl::Seconds(5);
  StartWithTwoCounters();
  auto a = Watch(1);
  auto b = Watch(2, kOtherCounter);

  // Metrica refuses the token's next poll: come back in 2 s. (Only the first
  // counter's path is faulted, so the other group's polls would go through
  // if they were sent: they must not be.)
  FakeMetrica::Fault quota;
  quota.path_substring = absl::StrCat("/counter/", kCounter, "/");
  quota.http_status = 429;
  quota.error_type = "quota_requests_by_uid";
  quota.retry_after_seconds = 2;
  quota.times = -1;
  metrica_.InjectFault(quota);
  // The fetcher waits out the first Retry-After, meets a second 429 at about
  // 2.1 s and gives up; from then on the token pauses for 2 s.
  absl::SleepFor(absl::Milliseconds(2500));
  metrica_.ClearRequests();
  absl::SleepFor(absl::Milliseconds(1200));
  // Unpaced, the other counter would have seen ~12 polls.
  EXPECT_EQ(CallsUnder(kOtherCounter), 0);
  EXPECT_EQ(CallsUnder(kCounter), 0);

  // The watches were not ended; once Metrica recovers, changes flow again.
  metrica_.ClearFaults();
  metrica_.SetUploading(kOtherCounter, MakeUploading(2, v1::Uploading::PROCESSED));
  v1::WatchUploadingResponse m;
  ASSERT_TRUE(b.reader->Read(&m));
  EXPECT_EQ(m.uploading().status(), v1::Uploading::PROCESSED);
  a.ctx->TryCancel();
}

}  // namespace
}  // namespace uploadwatch::testing
