// Watches pay for their first state as Gets do (issue 16, finding 1 through
// WatchUploading): through the hub on simulated time against the in-memory
// Metrica. A caller on the server's token cannot spend that token's day by
// opening watches, junk tokens cannot bypass the unverified bucket with
// them, and polls of watches already open are never charged to anyone.
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


class WatchAdmissionTest : public ::testing::Test {
 protected:
  WatchAdmissionTest() : client_(&time_) {
    client_.set_latency(absl::Milliseconds(10));
    // 40 a day, half of it for callers, a quarter of that each: 5.
    options_.budget_reserve = 0.5;
    options_.caller_budget_share = 0.25;
    options_.max_in_flight_per_token = 3;
    options_.poll_interval = absl::Seconds(30);
    client_.SetDailyUsage(Credentials(kServerToken).fingerprint(),
                          QuotaUsage{0, 40, time_.Now() + absl::Hours(6)});
  }
  void TearDown() override {
    if (hub_ != nullptr) {
      for (auto& w : watches_) hub_->Unsubscribe(w.get());
      hub_->Shutdown(absl::UnavailableError("test over"));
    }
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
  // Opens a watch (kept until TearDown) and lets its first fetch answer.
  CountingSubscriber* Watch(const Credentials& c, int64_t id, absl::Status* status) {
    watches_.push_back(std::make_unique<CountingSubscriber>());
    *status = hub_->Subscribe(c, kCounter, id, watches_.back().get());
    time_.Advance(absl::Milliseconds(20));
    return watches_.back().get();
  }
  CountingSubscriber* WatchCounter(const Credentials& c, absl::Status* status) {
    watches_.push_back(std::make_unique<CountingSubscriber>());
    *status = hub_->SubscribeCounter(c, kCounter, v1::Uploading::BASIC,
                                     watches_.back().get());
    time_.Advance(absl::Milliseconds(20));
    return watches_.back().get();
  }
  absl::Status GetNow(const Credentials& c, int64_t id) {
    std::optional<absl::Status> out;
    hub_->Get(c, kCounter, id,
              [&out](absl::StatusOr<UploadingState> s) { out = s.status(); });
    time_.Advance(absl::Milliseconds(20));
    return out.value_or(absl::UnknownError("no answer"));
  }

  SimulatedTime time_;
  FakeMetricaClient client_;
  UploadingHub::Options options_;
  std::unique_ptr<UploadingHub> hub_;
  std::vector<std::unique_ptr<CountingSubscriber>> watches_;
};

TEST_F(WatchAdmissionTest, WatchesOfMissingIdsAreChargedToTheCaller) {
  Start();
  int not_found = 0, refused = 0;
  for (int i = 0; i < 40; ++i) {
    absl::Status s;
    CountingSubscriber* w = Watch(Caller("ip:10.0.0.66"), 1000 + i, &s);
    if (w->error && w->error->code() == absl::StatusCode::kNotFound) {
      ++not_found;
    }
    if (s.code() == absl::StatusCode::kResourceExhausted) {
      EXPECT_EQ(ErrorReason(s), "CALLER_BUDGET_EXHAUSTED") << s;
      ++refused;
    }
  }
  EXPECT_EQ(not_found, 5);
  EXPECT_EQ(refused, 35);
  EXPECT_EQ(client_.count("get"), 5);
  // Another caller's Get and watch still go through.
  client_.SetUploading(kCounter, MakeUploading(12, v1::Uploading::UPLOADED));
  EXPECT_TRUE(GetNow(Caller("ip:10.0.0.7"), 12).ok());
  absl::Status s;
  client_.SetUploading(kCounter, MakeUploading(13, v1::Uploading::UPLOADED));
  CountingSubscriber* other = Watch(Caller("ip:10.0.0.8"), 13, &s);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(other->states, 1);
}

TEST_F(WatchAdmissionTest, WatchesOfExistingIdsAreChargedToTheCaller) {
  options_.batch_min_uploadings = 1000;  // one Get each, no List
  for (int i = 0; i < 40; ++i) {
    client_.SetUploading(kCounter, MakeUploading(1000 + i, v1::Uploading::UPLOADED));
  }
  Start();
  int shown = 0, refused = 0;
  for (int i = 0; i < 40; ++i) {
    absl::Status s;
    CountingSubscriber* w = Watch(Caller("ip:10.0.0.66"), 1000 + i, &s);
    shown += w->states;
    if (ErrorReason(s) == "CALLER_BUDGET_EXHAUSTED") ++refused;
  }
  EXPECT_EQ(shown, 5);
  EXPECT_EQ(refused, 35);
  EXPECT_EQ(client_.count("get"), 5);
}

TEST_F(WatchAdmissionTest, StatesABatchedListBroughtAreFree) {
  for (int i = 0; i < 40; ++i) {
    client_.SetUploading(kCounter, MakeUploading(1000 + i, v1::Uploading::UPLOADED));
  }
  Start();
  int shown = 0;
  for (int i = 0; i < 40; ++i) {
    absl::Status s;
    CountingSubscriber* w = Watch(Caller("ip:10.0.0.66"), 1000 + i, &s);
    EXPECT_TRUE(s.ok()) << i << " " << s;
    shown += w->states;
  }
  // The second watch's List brought every state: the rest start from them.
  EXPECT_EQ(shown, 40);
  EXPECT_LE(client_.count("get") + client_.count("list"), 5);
}

TEST_F(WatchAdmissionTest, JoiningAWatchOrAFreshStateCostsNothing) {
  client_.SetUploading(kCounter, MakeUploading(12, v1::Uploading::UPLOADED));
  client_.SetUploading(kCounter, MakeUploading(13, v1::Uploading::UPLOADED));
  Start();
  absl::Status s;
  ASSERT_TRUE(Watch(Caller("ip:1"), 12, &s)->states == 1 && s.ok()) << s;
  ASSERT_TRUE(GetNow(Caller("ip:1"), 13).ok());  // 13 is fresh now
  // ip:2 spends its whole share on missing ids...
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(GetNow(Caller("ip:2"), 2000 + i).code(),
              absl::StatusCode::kNotFound);
  }
  ASSERT_EQ(ErrorReason(GetNow(Caller("ip:2"), 2999)), "CALLER_BUDGET_EXHAUSTED");
  // ...and may still join what is watched, or start from a fresh state.
  CountingSubscriber* joined = Watch(Caller("ip:2"), 12, &s);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(joined->states, 1);
  CountingSubscriber* fresh = Watch(Caller("ip:2"), 13, &s);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(fresh->states, 1);
}

TEST_F(WatchAdmissionTest, PollsOfOpenWatchesAreNotCharged) {
  client_.SetUploading(kCounter, MakeUploading(12, v1::Uploading::UPLOADED));
  Start();
  absl::Status s;
  ASSERT_TRUE(Watch(Caller("ip:1"), 12, &s)->states == 1 && s.ok()) << s;
  time_.Advance(absl::Hours(1));  // polled many times meanwhile
  ASSERT_GE(client_.count("get"), 3);
  // The caller paid for the first state only: 4 of its 5 are left.
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(GetNow(Caller("ip:1"), 2000 + i).code(),
              absl::StatusCode::kNotFound)
        << i;
  }
  EXPECT_EQ(ErrorReason(GetNow(Caller("ip:1"), 2999)), "CALLER_BUDGET_EXHAUSTED");
}

TEST_F(WatchAdmissionTest, CounterWatchesPayForTheirFirstRound) {
  client_.SetUploading(kCounter, MakeUploading(12, v1::Uploading::UPLOADED));
  Start();
  for (int i = 0; i < 5; ++i) {
    absl::Status s;
    WatchCounter(Caller("ip:1"), &s);
    EXPECT_TRUE(s.ok()) << i << " " << s;
  }
  absl::Status s;
  WatchCounter(Caller("ip:1"), &s);
  EXPECT_EQ(ErrorReason(s), "CALLER_BUDGET_EXHAUSTED") << s;
  WatchCounter(Caller("ip:2"), &s);
  EXPECT_TRUE(s.ok()) << s;
}

TEST_F(WatchAdmissionTest, CallersWithTheirOwnTokenAreNotCharged) {
  Start();
  const Credentials own("AQAAAAA-callers-own-token");
  client_.SetUploading(kCounter, MakeUploading(1, v1::Uploading::UPLOADED));
  ASSERT_TRUE(GetNow(own, 1).ok());  // accepted by Metrica from now on
  for (int i = 0; i < 40; ++i) {
    absl::Status s;
    Watch(own, 1000 + i, &s);
    EXPECT_TRUE(s.ok()) << i << " " << s;
  }
  EXPECT_EQ(hub_->admitted_callers(), 0u);
}

TEST_F(WatchAdmissionTest, OpenWatchesPerCallerAreCapped) {
  options_.max_watches_per_caller = 3;
  client_.SetUploading(kCounter, MakeUploading(12, v1::Uploading::UPLOADED));
  Start();
  absl::Status s;
  for (int i = 0; i < 3; ++i) {
    Watch(Caller("ip:1"), 12, &s);
    ASSERT_TRUE(s.ok()) << i << " " << s;
  }
  Watch(Caller("ip:1"), 12, &s);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorReason(s), "CALLER_WATCH_LIMIT") << s;
  WatchCounter(Caller("ip:1"), &s);  // both kinds count
  EXPECT_EQ(ErrorReason(s), "CALLER_WATCH_LIMIT") << s;
  Watch(Caller("ip:2"), 12, &s);
  EXPECT_TRUE(s.ok()) << "another caller has its own allowance: " << s;
  // A closed watch frees its place; a refused one never took one.
  hub_->Unsubscribe(watches_[0].get());
  Watch(Caller("ip:1"), 12, &s);
  EXPECT_TRUE(s.ok()) << s;
  Watch(Caller("ip:1"), 12, &s);
  EXPECT_EQ(ErrorReason(s), "CALLER_WATCH_LIMIT") << s;
  // Callers with their own token are not counted here.
  const Credentials own("AQAAAAA-callers-own-token");
  for (int i = 0; i < 5; ++i) {
    Watch(own, 12, &s);
    EXPECT_TRUE(s.ok()) << i << " " << s;
  }
}

TEST_F(WatchAdmissionTest, ANewTokensBurstOfWatchesCostsTheBucketOne) {
  options_.tokens.unverified_per_day = 2;
  for (int i = 0; i < 50; ++i) {
    client_.SetUploading(kCounter, MakeUploading(1000 + i, v1::Uploading::UPLOADED));
  }
  Start();
  const Credentials fresh("AQAAAAA-a-new-token");
  for (int i = 0; i < 50; ++i) {  // a dashboard opening, all at once
    watches_.push_back(std::make_unique<CountingSubscriber>());
    const absl::Status s =
        hub_->Subscribe(fresh, kCounter, 1000 + i, watches_.back().get());
    ASSERT_TRUE(s.ok()) << i << " " << s;
  }
  time_.Advance(absl::Milliseconds(50));
  for (auto& w : watches_) EXPECT_EQ(w->states, 1);
  EXPECT_EQ(hub_->tracked_tokens(), 1u);
  // The bucket still has room for another new token.
  absl::Status s;
  Watch(Credentials("AQAAAAA-another-new-token"), 1000, &s);
  EXPECT_TRUE(s.ok()) << s;
}

class JunkTokenWatchTest : public WatchAdmissionTest {
 protected:
  JunkTokenWatchTest() {
    options_.tokens.unverified_per_day = 10;
    client_.Fail({.status = absl::UnauthenticatedError("invalid token"),
                  .times = -1});
  }
};

TEST_F(JunkTokenWatchTest, WatchesWithJunkTokensShareTheUnverifiedBucket) {
  Start();
  int unauthenticated = 0, refused = 0;
  for (int i = 0; i < 300; ++i) {
    absl::Status s;
    CountingSubscriber* w = Watch(Credentials("bogus-" + std::to_string(i)), 12, &s);
    if (w->error && w->error->code() == absl::StatusCode::kUnauthenticated) {
      ++unauthenticated;
    }
    if (ErrorReason(s) == "UNVERIFIED_TOKEN_BUDGET_EXHAUSTED") ++refused;
  }
  EXPECT_EQ(unauthenticated, 10);
  EXPECT_EQ(refused, 290);
  EXPECT_EQ(client_.count("get"), 10);
  EXPECT_EQ(hub_->tracked_tokens(), 0u);
}

TEST_F(JunkTokenWatchTest, ACounterWatchWithARejectedTokenAsksNothing) {
  Start();
  const Credentials junk("bogus-1");
  absl::Status s;
  CountingSubscriber* w = WatchCounter(junk, &s);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(w->error.has_value());
  EXPECT_EQ(w->error->code(), absl::StatusCode::kUnauthenticated);
  const int asked = client_.count("list");
  for (int i = 0; i < 5; ++i) {
    WatchCounter(junk, &s);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << i;
  }
  EXPECT_EQ(client_.count("list"), asked);
}

}  // namespace
}  // namespace uploadwatch
