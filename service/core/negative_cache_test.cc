// Negative caching and the server token's fair share, through the hub on
// simulated time against the in-memory Metrica (issue 16, findings 1-2).
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "service/common/status_details.h"
#include "service/core/uploading_hub.h"
#include "service/testing/fake_metrica_client.h"
#include "service/testing/hub_test_util.h"
#include "service/testing/simulated_time.h"

namespace uploadwatch {
namespace {

using ::uploadwatch::testing::CountingSubscriber;
using ::uploadwatch::testing::ErrorReason;
using ::uploadwatch::testing::FakeMetricaClient;
using ::uploadwatch::testing::kCounter;
using ::uploadwatch::testing::kServerToken;
using ::uploadwatch::testing::MakeUploading;
using ::uploadwatch::testing::SimulatedTime;


class NegativeCacheTest : public ::testing::Test {
 protected:
  NegativeCacheTest() : client_(&time_) {
    client_.set_latency(absl::Milliseconds(10));
    options_.negative_cache_ttl = absl::Seconds(30);
  }
  void TearDown() override {
    if (hub_ != nullptr) hub_->Shutdown(absl::UnavailableError("test over"));
    time_.RunPending();
    hub_.reset();
  }
  void Start() {
    hub_ = std::make_unique<UploadingHub>(&client_, &time_, &time_, &time_,
                                          options_);
  }
  static Credentials Caller(const std::string& who) {
    Credentials c(kServerToken);
    c.set_server_token(true);
    c.set_caller(who);
    return c;
  }
  // Starts a Get; its answer lands in `out` once time runs.
  void StartGet(const Credentials& c, int64_t id,
                std::vector<absl::Status>* out) {
    hub_->Get(c, kCounter, id, [out](absl::StatusOr<UploadingState> s) {
      out->push_back(s.status());
    });
  }
  absl::Status GetNow(const Credentials& c, int64_t id) {
    std::vector<absl::Status> out;
    StartGet(c, id, &out);
    time_.Advance(absl::Milliseconds(20));
    EXPECT_EQ(out.size(), 1u);
    return out.empty() ? absl::UnknownError("no answer") : out[0];
  }

  SimulatedTime time_;
  FakeMetricaClient client_;
  UploadingHub::Options options_;
  std::unique_ptr<UploadingHub> hub_;
  std::vector<absl::Status> held_answers_;  // outlives TearDown's shutdown
  const Credentials own_{"AQAAAAA-callers-own-token"};
};

TEST_F(NegativeCacheTest, ConcurrentGetsOfAMissingIdShareOneRequest) {
  Start();
  std::vector<absl::Status> answers;
  for (int i = 0; i < 20; ++i) StartGet(own_, 404, &answers);
  time_.Advance(absl::Milliseconds(20));
  ASSERT_EQ(answers.size(), 20u);
  for (const absl::Status& s : answers) {
    EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(client_.count("get"), 1);
}

TEST_F(NegativeCacheTest, NotFoundAnswersGetsForTheTtlOnly) {
  Start();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(GetNow(own_, 404).code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(client_.count("get"), 1);
  time_.Advance(absl::Seconds(30));
  EXPECT_EQ(GetNow(own_, 404).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_.count("get"), 2);
}

TEST_F(NegativeCacheTest, PermissionDeniedIsRememberedToo) {
  client_.Fail({.endpoint = "get",
                .status = absl::PermissionDeniedError("access_denied"),
                .times = -1});
  Start();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(GetNow(own_, 7).code(), absl::StatusCode::kPermissionDenied);
  }
  EXPECT_EQ(client_.count("get"), 1);
}

TEST_F(NegativeCacheTest, TransientErrorsAreNotRemembered) {
  client_.Fail({.endpoint = "get",
                .status = absl::UnavailableError("502"),
                .times = 1});
  client_.SetUploading(kCounter, MakeUploading(7, v1::Uploading::PROCESSED));
  Start();
  EXPECT_EQ(GetNow(own_, 7).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(GetNow(own_, 7).ok());
}

TEST_F(NegativeCacheTest, ANewWatchIsAnsweredFromIt) {
  Start();
  ASSERT_EQ(GetNow(own_, 404).code(), absl::StatusCode::kNotFound);
  CountingSubscriber w;
  const absl::Status s = hub_->Subscribe(own_, kCounter, 404, &w);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  time_.Advance(absl::Seconds(1));
  EXPECT_EQ(client_.count("get"), 1);
  EXPECT_EQ(hub_->stats().watchers, 0u);
}

TEST_F(NegativeCacheTest, AListThatShowsTheUploadingForgetsTheNotFound) {
  Start();
  ASSERT_EQ(GetNow(own_, 9).code(), absl::StatusCode::kNotFound);
  client_.SetUploading(kCounter, MakeUploading(9, v1::Uploading::UPLOADED));
  ListParams params;
  params.counter_id = kCounter;
  bool listed = false;
  hub_->List(own_, params, [&](absl::StatusOr<v1::ListUploadingsResponse> r) {
    listed = r.ok() && r->uploadings_size() == 1;
  });
  time_.Advance(absl::Milliseconds(20));
  ASSERT_TRUE(listed);
  // The list's state now answers, and a later miss asks Metrica again.
  EXPECT_TRUE(GetNow(own_, 9).ok());
  time_.Advance(absl::Seconds(10));
  EXPECT_TRUE(GetNow(own_, 9).ok());
}

TEST_F(NegativeCacheTest, ItIsPerToken) {
  Start();
  ASSERT_EQ(GetNow(own_, 404).code(), absl::StatusCode::kNotFound);
  client_.SetUploading(kCounter, MakeUploading(404, v1::Uploading::UPLOADED));
  EXPECT_TRUE(GetNow(Credentials("AQAAAAA-another-token"), 404).ok());
}

// ---------------------------------------------------- the server's token

class CallerShareTest : public NegativeCacheTest {
 protected:
  CallerShareTest() {
    // 40 a day, half of it for callers, a quarter of that each: 5.
    options_.budget_reserve = 0.5;
    options_.caller_budget_share = 0.25;
    options_.max_in_flight_per_token = 3;
    client_.SetDailyUsage(Credentials(kServerToken).fingerprint(),
                          QuotaUsage{0, 40, reset_});
  }
  const absl::Time reset_ = time_.Now() + absl::Hours(6);
};

TEST_F(CallerShareTest, MissingIdsFromOneCallerDoNotLockOutOthers) {
  Start();
  int upstream_refused = 0, sent = 0;
  for (int i = 0; i < 40; ++i) {
    const absl::Status s = GetNow(Caller("ip:10.0.0.66"), 1000 + i);
    if (s.code() == absl::StatusCode::kNotFound) ++sent;
    if (ErrorReason(s) == "CALLER_BUDGET_EXHAUSTED") ++upstream_refused;
  }
  EXPECT_EQ(sent, 5);
  EXPECT_EQ(upstream_refused, 35);
  EXPECT_EQ(client_.count("get"), 5);
  client_.SetUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
  EXPECT_TRUE(GetNow(Caller("ip:10.0.0.7"), 12).ok());
}

TEST_F(CallerShareTest, CallersWithTheirOwnTokenAreNotCounted) {
  Start();
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(GetNow(own_, 1000 + i).code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(client_.count("get"), 40);
  EXPECT_EQ(hub_->admitted_callers(), 0u);
}

TEST_F(CallerShareTest, ACallerKeepsOthersSlotsFree) {
  client_.set_hold(true);
  Start();
  // A fixture member, not a local: the held Gets are answered only by the
  // hub's shutdown in TearDown, after this body's locals are gone.
  std::vector<absl::Status>& out = held_answers_;
  for (int id = 1; id <= 4; ++id) StartGet(Caller("ip:1"), id, &out);
  ASSERT_EQ(out.size(), 1u);  // the 4th refused at once: 3 slots in all
  EXPECT_EQ(ErrorReason(out[0]), "CALLER_CONCURRENCY");
  // Another caller still gets in (its share), and joining a request under
  // way costs no slot.
  StartGet(Caller("ip:2"), 5, &out);
  StartGet(Caller("ip:3"), 1, &out);
  EXPECT_EQ(out.size(), 1u);
  EXPECT_EQ(client_.count("get"), 4);
}

TEST_F(CallerShareTest, CacheHitsCostNothing) {
  client_.SetUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
  Start();
  for (int i = 0; i < 50; ++i) EXPECT_TRUE(GetNow(Caller("ip:1"), 12).ok());
  EXPECT_EQ(client_.count("get"), 1);
}

TEST_F(CallerShareTest, PollsKeepTheirPartWhateverCallersSpend) {
  client_.SetUploading(kCounter, MakeUploading(12, v1::Uploading::UPLOADED));
  Start();
  // Opened first: its first state is a callers' request too (one of 20).
  CountingSubscriber w;
  ASSERT_TRUE(hub_->Subscribe(Caller("ip:watcher"), kCounter, 12, &w).ok());
  time_.Advance(absl::Milliseconds(20));
  ASSERT_EQ(w.states, 1);
  for (int c = 0; c < 8; ++c) {
    for (int i = 0; i < 5; ++i) {
      (void)GetNow(Caller("ip:" + std::to_string(c)), 1000 + c * 10 + i);
    }
  }
  EXPECT_EQ(client_.count("get"), 20);  // the callers' part, no more
  // Metrica's count includes the callers' 20: the Pacer must still see the
  // polls' 20 as untouched and spread them over the 6 h to the reset (one
  // poll per 18 min), not stop polling until the reset.
  const std::string fp = Credentials(kServerToken).fingerprint();
  client_.SetDailyUsage(fp, QuotaUsage{20, 40, reset_});
  client_.ClearLog();
  time_.Advance(absl::Hours(1));
  EXPECT_GE(client_.count("get"), 3);
  EXPECT_LE(client_.count("get"), 5);
  EXPECT_EQ(w.states, 1);
  hub_->Unsubscribe(&w);
}

}  // namespace
}  // namespace uploadwatch

namespace uploadwatch {
namespace {

// ------------------------------------------------- tokens Metrica rejects

class JunkTokenTest : public NegativeCacheTest {
 protected:
  JunkTokenTest() {
    options_.tokens.unverified_per_day = 10;
    // The fake knows no tokens: every request of a token that is not
    // `own_` is refused like Metrica refuses a bad token.
    client_.Fail({.status = absl::UnauthenticatedError("invalid token"),
                  .times = -1});
  }
};

TEST_F(JunkTokenTest, RepeatedCallsWithAJunkTokenAskMetricaOnce) {
  Start();
  const Credentials junk("bogus-1");
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(GetNow(junk, 12 + i).code(), absl::StatusCode::kUnauthenticated);
  }
  CountingSubscriber w;
  EXPECT_EQ(hub_->Subscribe(junk, kCounter, 99, &w).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(client_.count("get"), 1);
  EXPECT_EQ(hub_->tracked_tokens(), 0u);
}

TEST_F(JunkTokenTest, JunkTokensShareOneSmallBucket) {
  Start();
  int unauthenticated = 0, refused = 0;
  for (int i = 0; i < 300; ++i) {
    const absl::Status s =
        GetNow(Credentials("bogus-" + std::to_string(i)), 12);
    if (s.code() == absl::StatusCode::kUnauthenticated) ++unauthenticated;
    if (ErrorReason(s) == "UNVERIFIED_TOKEN_BUDGET_EXHAUSTED") ++refused;
  }
  EXPECT_EQ(unauthenticated, 10);
  EXPECT_EQ(refused, 290);
  EXPECT_EQ(client_.count("get"), 10);
  EXPECT_EQ(hub_->tracked_tokens(), 0u);
}

TEST_F(JunkTokenTest, AnAcceptedTokenLeavesTheBucket) {
  client_.ClearFailures();
  client_.SetUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
  options_.cache_ttl = absl::ZeroDuration();
  Start();
  for (int i = 0; i < 30; ++i) EXPECT_TRUE(GetNow(own_, 12).ok()) << i;
  EXPECT_EQ(hub_->tracked_tokens(), 1u);
}

}  // namespace
}  // namespace uploadwatch
