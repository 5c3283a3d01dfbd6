// The hub's logic on simulated time against the in-memory Metrica: every
// figure is exact, no test sleeps, none opens a socket.
#include "service/core/uploading_hub.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "service/common/status_details.h"
#include "service/testing/fake_metrica_client.h"
#include "service/testing/fixed_random.h"
#include "service/testing/simulated_time.h"

namespace uploadwatch {
namespace {

using ::uploadwatch::testing::FakeMetricaClient;
using ::uploadwatch::testing::FixedRandom;
using ::uploadwatch::testing::SimulatedTime;

constexpr int32_t kCounter = 2215573;
constexpr int32_t kOtherCounter = 777;
constexpr char kToken[] = "AQAAAAA-hub-test-token";

// Leaves the hub when destroyed, as a stream's reactor does in OnDone.
class Watcher : public Subscriber {
 public:
  ~Watcher() override {
    if (hub != nullptr) hub->Unsubscribe(this);
  }
  UploadingHub* hub = nullptr;
  void OnState(const UploadingState& state) override {
    absl::MutexLock lock(&mu_);
    states_.push_back(state);
  }
  void OnError(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    error_ = status;
  }
  std::vector<UploadingState> states() {
    absl::MutexLock lock(&mu_);
    return states_;
  }
  std::vector<v1::Uploading::Status> statuses() {
    std::vector<v1::Uploading::Status> out;
    for (const auto& s : states()) out.push_back(s.uploading.status());
    return out;
  }
  std::optional<absl::Status> error() {
    absl::MutexLock lock(&mu_);
    return error_;
  }

 private:
  absl::Mutex mu_;
  std::vector<UploadingState> states_;
  std::optional<absl::Status> error_;
};

v1::Uploading Make(int64_t id, v1::Uploading::Status status) {
  v1::Uploading u;
  u.set_id(id);
  u.set_status(status);
  return u;
}

class UploadingHubTest : public ::testing::Test {
 protected:
  UploadingHubTest() : client_(&time_) {
    // Instant answers: the interval runs from the end of a round, so every
    // poll time below is a whole multiple of it.
    client_.set_latency(absl::ZeroDuration());
    options_.poll_interval = absl::Seconds(30);
    options_.cache_ttl = absl::Seconds(5);
    options_.max_backoff = absl::Minutes(4);
    options_.random = &random_;
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
  void Put(int64_t id, v1::Uploading::Status status, int32_t counter = kCounter) {
    client_.SetUploading(counter, Make(id, status));
  }
  absl::StatusOr<UploadingState> GetNow(int64_t id) {
    absl::StatusOr<UploadingState> out = absl::UnknownError("no answer");
    bool answered = false;
    hub_->Get(credentials_, kCounter, id,
              [&](absl::StatusOr<UploadingState> s) {
                out = std::move(s);
                answered = true;
              });
    time_.Advance(absl::Milliseconds(20));  // the fake answers in 10 ms
    EXPECT_TRUE(answered);
    return out;
  }
  void Subscribe(Watcher& w, int64_t id, int32_t counter = kCounter) {
    w.hub = hub_.get();
    ASSERT_TRUE(hub_->Subscribe(credentials_, counter, id, &w).ok());
  }

  SimulatedTime time_;
  FakeMetricaClient client_;
  FixedRandom random_;
  UploadingHub::Options options_;
  const Credentials credentials_{kToken};
  std::unique_ptr<UploadingHub> hub_;
};

// ------------------------------------------------------------ Get and List

TEST_F(UploadingHubTest, ConcurrentGetsShareOneUpstreamRequest) {
  Put(1, v1::Uploading::MATCHED);
  Start();
  int answers = 0;
  for (int i = 0; i < 5; ++i) {
    hub_->Get(credentials_, kCounter, 1, [&](absl::StatusOr<UploadingState> s) {
      EXPECT_TRUE(s.ok());
      EXPECT_EQ(s->version, 1);
      ++answers;
    });
  }
  time_.Advance(absl::Milliseconds(20));
  EXPECT_EQ(answers, 5);
  EXPECT_EQ(client_.count("get"), 1);
}

TEST_F(UploadingHubTest, GetsAreServedFromCacheForCacheTtlOnly) {
  Put(1, v1::Uploading::MATCHED);
  Start();
  ASSERT_TRUE(GetNow(1).ok());
  time_.Advance(absl::Seconds(4));
  ASSERT_TRUE(GetNow(1).ok());
  EXPECT_EQ(client_.count("get"), 1);
  time_.Advance(absl::Seconds(2));  // past 5 s
  ASSERT_TRUE(GetNow(1).ok());
  EXPECT_EQ(client_.count("get"), 2);
}

TEST_F(UploadingHubTest, ATerminalStateNeverTurnsBack) {
  Put(1, v1::Uploading::PROCESSED);
  options_.terminal_ttl = absl::ZeroDuration();  // always ask Metrica
  Start();
  ASSERT_EQ(GetNow(1)->uploading.status(), v1::Uploading::PROCESSED);
  Put(1, v1::Uploading::MATCHED);  // a lagging replica upstream
  time_.Advance(absl::Seconds(1));
  absl::StatusOr<UploadingState> again = GetNow(1);
  EXPECT_EQ(client_.count("get"), 2);
  EXPECT_EQ(again->uploading.status(), v1::Uploading::PROCESSED);
  EXPECT_EQ(again->version, 1);
}

TEST_F(UploadingHubTest, AnOlderRequestsLateAnswerIsNotAChange) {
  Put(1, v1::Uploading::UPLOADED);
  Start();
  ASSERT_EQ(GetNow(1)->version, 1);
  // A List is sent and held (it sees UPLOADED) ...
  client_.set_hold(true);
  hub_->List(credentials_, ListParams{kCounter, 0, 0, {}},
             [](absl::StatusOr<v1::ListUploadingsResponse>) {});
  const auto list_id = client_.requests().back().id;
  client_.set_hold(false);
  // ... then a later Get sees MATCHED and is answered first.
  Put(1, v1::Uploading::MATCHED);
  time_.Advance(absl::Seconds(6));
  absl::StatusOr<UploadingState> newer = GetNow(1);
  EXPECT_EQ(newer->uploading.status(), v1::Uploading::MATCHED);
  EXPECT_EQ(newer->version, 2);
  // The List's answer, older news, arrives last: nothing changes.
  ASSERT_TRUE(client_.Release(list_id));
  time_.RunPending();
  absl::StatusOr<UploadingState> after = GetNow(1);
  EXPECT_EQ(client_.count("get"), 2);
  EXPECT_EQ(after->uploading.status(), v1::Uploading::MATCHED);
  EXPECT_EQ(after->version, 2);
}

TEST_F(UploadingHubTest, ListsAreCachedAndRefreshWatchers) {
  Put(1, v1::Uploading::UPLOADED);
  Put(2, v1::Uploading::UPLOADED);
  Start();
  Watcher w;
  Subscribe(w, 1);
  time_.Advance(absl::Milliseconds(20));
  Put(1, v1::Uploading::LINKAGE_FAILURE);
  int answers = 0;
  auto list = [&] {
    hub_->List(credentials_, ListParams{kCounter, 0, 0, {}},
               [&](absl::StatusOr<v1::ListUploadingsResponse> r) {
                 ASSERT_TRUE(r.ok());
                 EXPECT_EQ(r->uploadings_size(), 2);
                 ++answers;
               });
  };
  list();
  list();
  time_.Advance(absl::Milliseconds(20));
  list();  // from the cache
  EXPECT_EQ(answers, 3);
  EXPECT_EQ(client_.count("list"), 1);
  EXPECT_EQ(w.statuses(), (std::vector{v1::Uploading::UPLOADED,
                                       v1::Uploading::LINKAGE_FAILURE}));
  EXPECT_EQ(hub_->stats().groups, 0u);  // the watch ended with it
}

// ------------------------------------------------------------ watching

TEST_F(UploadingHubTest, AWatchGetsTheCurrentStateThenOnePollPerInterval) {
  Put(1, v1::Uploading::UPLOADED);
  Start();
  Watcher w;
  Subscribe(w, 1);
  time_.Advance(absl::Milliseconds(20));
  ASSERT_EQ(w.states().size(), 1u);
  EXPECT_EQ(w.states()[0].version, 1);
  client_.ClearLog();
  time_.Advance(absl::Minutes(5));
  EXPECT_EQ(client_.count("get"), 10);  // exactly every 30 s
  EXPECT_EQ(w.states().size(), 1u);     // nothing changed: no message
  Put(1, v1::Uploading::MATCHED);
  time_.Advance(absl::Seconds(30));
  ASSERT_EQ(w.states().size(), 2u);
  EXPECT_EQ(w.states()[1].version, 2);
}

TEST_F(UploadingHubTest, ATerminalStateEndsTheWatchAndItsPolling) {
  Put(1, v1::Uploading::MATCHED);
  Start();
  Watcher w;
  Subscribe(w, 1);
  time_.Advance(absl::Milliseconds(20));
  Put(1, v1::Uploading::PROCESSED);
  time_.Advance(absl::Seconds(30));
  EXPECT_EQ(w.statuses(),
            (std::vector{v1::Uploading::MATCHED, v1::Uploading::PROCESSED}));
  EXPECT_EQ(hub_->stats().watchers, 0u);
  EXPECT_EQ(hub_->stats().groups, 0u);
  client_.ClearLog();
  time_.Advance(absl::Minutes(5));
  EXPECT_EQ(client_.requests().size(), 0u);
  EXPECT_FALSE(w.error().has_value());
}

TEST_F(UploadingHubTest, StatesReachEachWatcherInOrderWithGrowingVersions) {
  Put(1, v1::Uploading::UPLOADED);
  Start();
  Watcher early, late;
  Subscribe(early, 1);
  time_.Advance(absl::Milliseconds(20));
  Subscribe(late, 1);  // joins: the current state at once, no request
  EXPECT_EQ(client_.count("get"), 1);
  for (auto status : {v1::Uploading::EXPORTED, v1::Uploading::MATCHED,
                      v1::Uploading::PROCESSED}) {
    Put(1, status);
    time_.Advance(absl::Seconds(30));
  }
  const std::vector<v1::Uploading::Status> all = {
      v1::Uploading::UPLOADED, v1::Uploading::EXPORTED,
      v1::Uploading::MATCHED, v1::Uploading::PROCESSED};
  EXPECT_EQ(early.statuses(), all);
  EXPECT_EQ(late.statuses(), all);
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(late.states()[i].version, static_cast<int64_t>(i + 1));
  }
}

TEST_F(UploadingHubTest, FiftyWatchersOfOneUploadingCostWhatOneDoes) {
  Put(1, v1::Uploading::UPLOADED);
  Start();
  std::vector<Watcher> watchers(50);
  for (Watcher& w : watchers) Subscribe(w, 1);
  time_.Advance(absl::Seconds(30) + absl::Milliseconds(20));
  EXPECT_EQ(client_.count("get"), 2);  // the first state, then one poll
  for (Watcher& w : watchers) EXPECT_EQ(w.states().size(), 1u);
  EXPECT_EQ(hub_->stats().pollers, 1u);
  EXPECT_EQ(hub_->stats().watchers, 50u);
}

TEST_F(UploadingHubTest, TheLastWatcherLeavingCancelsTheRequestInFlight) {
  Put(1, v1::Uploading::UPLOADED);
  Start();
  client_.set_hold(true);
  Watcher a, b;
  Subscribe(a, 1);
  Subscribe(b, 1);
  ASSERT_EQ(client_.in_flight(), 1);
  hub_->Unsubscribe(&a);
  time_.RunPending();
  EXPECT_EQ(client_.in_flight(), 1);  // b still waits for it
  hub_->Unsubscribe(&b);
  time_.RunPending();
  EXPECT_EQ(client_.in_flight(), 0);
  ASSERT_EQ(client_.requests().size(), 1u);
  EXPECT_TRUE(client_.requests()[0].cancelled);
  EXPECT_TRUE(a.states().empty());
  EXPECT_TRUE(b.states().empty());
  EXPECT_EQ(hub_->stats().groups, 0u);
  EXPECT_EQ(hub_->stats().flights, 0u);
}

TEST_F(UploadingHubTest, ALeavingWatcherDoesNotCancelWhatACallerWaitsFor) {
  Put(1, v1::Uploading::UPLOADED);
  Start();
  client_.set_hold(true);
  bool answered = false;
  hub_->Get(credentials_, kCounter, 1,
            [&](absl::StatusOr<UploadingState> s) { answered = s.ok(); });
  Watcher w;
  Subscribe(w, 1);  // its first state joins the caller's request
  EXPECT_EQ(client_.count("get"), 1);
  hub_->Unsubscribe(&w);
  time_.RunPending();
  EXPECT_EQ(client_.in_flight(), 1);  // the caller still waits
  ASSERT_TRUE(client_.Release(client_.requests().back().id));
  time_.RunPending();
  EXPECT_TRUE(answered);
  EXPECT_TRUE(w.states().empty());
}

TEST_F(UploadingHubTest, ManyWatchedUploadingsCostOneListPerInterval) {
  for (int id = 1; id <= 8; ++id) Put(id, v1::Uploading::EXPORTED);
  Start();
  std::vector<Watcher> watchers(8);
  for (int id = 1; id <= 8; ++id) Subscribe(watchers[id - 1], id);
  time_.Advance(absl::Milliseconds(20));
  for (Watcher& w : watchers) EXPECT_EQ(w.states().size(), 1u);
  client_.ClearLog();
  time_.Advance(absl::Minutes(5));
  EXPECT_EQ(client_.count("get"), 0);
  EXPECT_EQ(client_.count("list"), 10);
  Put(5, v1::Uploading::PROCESSED);
  time_.Advance(absl::Seconds(30));
  EXPECT_EQ(watchers[4].statuses().back(), v1::Uploading::PROCESSED);
  EXPECT_EQ(watchers[3].states().size(), 1u);
}

TEST_F(UploadingHubTest, ABurstOfNewWatchesIsAnsweredByAListNotAGetEach) {
  for (int id = 1; id <= 40; ++id) Put(id, v1::Uploading::MATCHED);
  Start();
  std::vector<Watcher> watchers(40);
  for (int id = 1; id <= 40; ++id) Subscribe(watchers[id - 1], id);
  time_.Advance(absl::Milliseconds(100));
  for (Watcher& w : watchers) ASSERT_EQ(w.states().size(), 1u);
  // The first watch's Get, the second starts a List round, the other 38
  // join mid-round and are answered by one more.
  EXPECT_EQ(client_.count("get"), 1);
  EXPECT_EQ(client_.count("list"), 2);
}

TEST_F(UploadingHubTest, UploadingsNotOnThePagesFallBackToGets) {
  options_.batch_max_pages = 1;
  for (int id = 1; id <= 150; ++id) Put(id, v1::Uploading::MATCHED);
  v1::Uploading call = Make(500, v1::Uploading::MATCHED);
  call.set_type(v1::Uploading::CALLS);  // not in the BASIC list
  client_.SetUploading(kCounter, call);
  Start();
  std::vector<Watcher> watchers(3);
  Subscribe(watchers[0], 150);
  Subscribe(watchers[1], 1);
  Subscribe(watchers[2], 500);
  time_.Advance(absl::Seconds(1));
  client_.ClearLog();
  time_.Advance(absl::Seconds(30));
  // One round: one page of 100 (150..51), then a Get for 1 and one for 500.
  EXPECT_EQ(client_.count("list"), 1);
  EXPECT_EQ(client_.count("get"), 2);
  for (const auto& r : client_.requests()) {
    if (r.endpoint == "get") EXPECT_NE(r.uploading_id, 150);
    if (r.endpoint == "list") EXPECT_EQ(r.list.limit, 100);
  }
}

TEST_F(UploadingHubTest, TransientErrorsBackOffAndDoNotEndTheWatch) {
  Put(1, v1::Uploading::MATCHED);
  Start();
  Watcher w;
  Subscribe(w, 1);
  time_.Advance(absl::Milliseconds(20));
  client_.Fail({.endpoint = "get",
                .status = absl::UnavailableError("503"),
                .times = -1});
  client_.ClearLog();
  // Polls at 30 s, then backoff 30 s, 60 s, 120 s, 240 s (the cap).
  std::vector<absl::Duration> at;
  const absl::Time t0 = time_.Now();
  for (int i = 0; i < 16 * 60; ++i) {
    time_.Advance(absl::Seconds(1));
    if (client_.requests().size() > at.size()) {
      at.push_back(client_.requests().back().sent - t0);
    }
  }
  ASSERT_GE(at.size(), 6u);
  std::vector<absl::Duration> gaps;
  for (size_t i = 1; i < 6; ++i) gaps.push_back(at[i] - at[i - 1]);
  EXPECT_EQ(gaps, (std::vector<absl::Duration>{
                      absl::Seconds(30), absl::Seconds(60), absl::Seconds(120),
                      absl::Seconds(240), absl::Seconds(240)}));
  EXPECT_FALSE(w.error().has_value());
  client_.ClearFailures();
  Put(1, v1::Uploading::PROCESSED);
  time_.Advance(absl::Minutes(5));
  EXPECT_EQ(w.statuses().back(), v1::Uploading::PROCESSED);
}

TEST_F(UploadingHubTest, PermanentErrorsEndTheWatchWithTheirCode) {
  Put(1, v1::Uploading::MATCHED);
  Start();
  Watcher w;
  Subscribe(w, 1);
  time_.Advance(absl::Milliseconds(20));
  client_.Fail({.endpoint = "get",
                .status = absl::PermissionDeniedError("no access"),
                .times = -1});
  time_.Advance(absl::Seconds(30));
  ASSERT_TRUE(w.error().has_value());
  EXPECT_EQ(w.error()->code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(hub_->stats().watchers, 0u);
  EXPECT_EQ(hub_->stats().groups, 0u);
}

TEST_F(UploadingHubTest, ATokenThatLosesTheCounterEndsAllItsWatchesOfIt) {
  for (int id = 1; id <= 3; ++id) Put(id, v1::Uploading::MATCHED);
  Start();
  std::vector<Watcher> watchers(3);
  for (int id = 1; id <= 3; ++id) Subscribe(watchers[id - 1], id);
  time_.Advance(absl::Milliseconds(50));
  client_.Fail({.status = absl::PermissionDeniedError("no access"),
                .times = -1});
  time_.Advance(absl::Seconds(30));
  for (Watcher& w : watchers) {
    ASSERT_TRUE(w.error().has_value());
    EXPECT_EQ(w.error()->code(), absl::StatusCode::kPermissionDenied);
  }
  EXPECT_EQ(hub_->stats().pollers, 0u);
  EXPECT_EQ(hub_->stats().groups, 0u);
}

TEST_F(UploadingHubTest, MetricasQuotaErrorPausesEveryPollOfTheToken) {
  Put(1, v1::Uploading::MATCHED);
  Put(2, v1::Uploading::MATCHED, kOtherCounter);
  Start();
  Watcher a, b;
  const absl::Time t0 = time_.Now();
  Subscribe(a, 1);
  time_.Advance(absl::Seconds(5));  // the two groups poll 5 s apart
  Subscribe(b, 2, kOtherCounter);
  time_.Advance(absl::Milliseconds(20));
  absl::Status quota = absl::ResourceExhaustedError("429");
  SetErrorInfo(quota, "QUOTA_REQUESTS_BY_UID", "api-metrika.yandex.net");
  SetRetryInfo(quota, absl::Minutes(2));
  client_.Fail({.counter_id = kCounter, .status = quota, .times = 1});
  client_.ClearLog();
  // kCounter's poll at t0 + 30 s meets the quota: the token pauses for 2 min.
  time_.Advance(t0 + absl::Seconds(31) - time_.Now());
  ASSERT_EQ(client_.count("get"), 1);
  // The other counter's poll, due at t0 + 35 s, waits out the pause too.
  time_.Advance(t0 + absl::Seconds(149) - time_.Now());
  EXPECT_EQ(client_.count("get"), 1);
  time_.Advance(absl::Seconds(2));
  EXPECT_EQ(client_.count("get"), 3);  // both resume together
  EXPECT_FALSE(a.error().has_value());
  EXPECT_FALSE(b.error().has_value());
}

TEST_F(UploadingHubTest, PollsStretchToTheDailyBudget) {
  Put(1, v1::Uploading::MATCHED);
  Start();
  QuotaUsage usage;
  usage.budget = 1000;
  usage.used = 400;
  usage.resets_at = time_.Now() + absl::Hours(10);
  client_.SetDailyUsage(credentials_.fingerprint(), usage);
  Watcher w;
  Subscribe(w, 1);
  time_.Advance(absl::Milliseconds(20));
  client_.ClearLog();
  // 500 spendable over 10 h for one group: one poll per 72 s.
  time_.Advance(absl::Seconds(71));
  EXPECT_EQ(client_.count("get"), 0);
  time_.Advance(absl::Seconds(1));
  EXPECT_EQ(client_.count("get"), 1);
}

// The Pacer divides the budget by the token's groups, which the poller
// counts as groups come and go (not by scanning them, issue 15).
TEST_F(UploadingHubTest, TheDailyBudgetIsSharedByTheTokensGroups) {
  Put(1, v1::Uploading::MATCHED);
  Put(2, v1::Uploading::MATCHED, kCounter + 1);
  Put(3, v1::Uploading::MATCHED);
  Start();
  // A far reset, so that the few minutes below barely shorten what is left
  // (the pace is left time * groups / spendable).
  QuotaUsage usage;
  usage.budget = 100000;
  usage.used = 40000;
  usage.resets_at = time_.Now() + absl::Hours(1000);
  client_.SetDailyUsage(credentials_.fingerprint(), usage);
  Watcher a, a2, b;
  Subscribe(a, 1);
  Subscribe(a2, 3);  // same group as a: still two groups
  Subscribe(b, 2, kCounter + 1);
  time_.Advance(absl::Milliseconds(20));
  client_.ClearLog();
  // 50,000 spendable over 1000 h for two groups: each polls once per 144 s.
  time_.Advance(absl::Seconds(143));
  EXPECT_EQ(client_.count("get") + client_.count("list"), 0);
  time_.Advance(absl::Seconds(1));
  EXPECT_EQ(client_.count("get") + client_.count("list"), 2);
  // b's group ends: from a's next round on, a alone spends it (72 s).
  hub_->Unsubscribe(&b);
  time_.Advance(absl::Seconds(144));
  client_.ClearLog();
  time_.Advance(absl::Seconds(71));
  EXPECT_EQ(client_.count("get") + client_.count("list"), 0);
  time_.Advance(absl::Seconds(1));
  EXPECT_EQ(client_.count("get") + client_.count("list"), 1);
}

TEST_F(UploadingHubTest, TheWatchCapIsEnforced) {
  options_.max_watches = 2;
  Put(1, v1::Uploading::MATCHED);
  Start();
  Watcher a, b, c;
  Subscribe(a, 1);
  Subscribe(b, 1);
  c.hub = hub_.get();
  const absl::Status refused = hub_->Subscribe(credentials_, kCounter, 1, &c);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  hub_->Unsubscribe(&a);
  EXPECT_TRUE(hub_->Subscribe(credentials_, kCounter, 1, &c).ok());
}

TEST_F(UploadingHubTest, ShutdownEndsWatchesFailsCallsAndCancelsRequests) {
  Put(1, v1::Uploading::MATCHED);
  Put(2, v1::Uploading::MATCHED);
  Start();
  Watcher w;
  Subscribe(w, 1);
  time_.Advance(absl::Milliseconds(20));
  client_.set_hold(true);
  std::optional<absl::Status> get;
  hub_->Get(credentials_, kCounter, 2,
            [&](absl::StatusOr<UploadingState> s) { get = s.status(); });
  hub_->Shutdown(absl::UnavailableError("going away"));
  time_.RunPending();
  ASSERT_TRUE(w.error().has_value());
  EXPECT_EQ(w.error()->message(), "going away");
  ASSERT_TRUE(get.has_value());
  EXPECT_EQ(get->code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client_.in_flight(), 0);
  EXPECT_TRUE(client_.requests().back().cancelled);
  Watcher late;
  late.hub = hub_.get();
  EXPECT_EQ(hub_->Subscribe(credentials_, kCounter, 1, &late).code(),
            absl::StatusCode::kUnavailable);
  time_.Advance(absl::Hours(1));
  EXPECT_EQ(client_.count("get"), 2);  // no poll after shutdown
}

TEST_F(UploadingHubTest, AnotherReplicaOwningTheGroupMeansNoPolls) {
  class Nobody : public PollOwnership {
   public:
    void Want(const std::string& name) override { wanted.push_back(name); }
    void Unwant(const std::string&) override {}
    bool ShouldPoll(const std::string&) const override { return false; }
    std::vector<std::string> wanted;
  } nobody;
  options_.ownership = &nobody;
  Put(1, v1::Uploading::MATCHED);
  Start();
  Watcher w;
  Subscribe(w, 1);
  // Not even the first state: it comes from the owner's shared history.
  time_.Advance(absl::Minutes(10));
  EXPECT_EQ(client_.count("get"), 0);
  EXPECT_EQ(nobody.wanted,
            std::vector<std::string>{PollUploadingKey(
                credentials_.fingerprint(), kCounter, 1)});
}

TEST_F(UploadingHubTest, GainedOwnershipPollsAtOnceAndLostStopsPolling) {
  class Switch : public PollOwnership {
   public:
    void Want(const std::string&) override {}
    void Unwant(const std::string&) override {}
    bool ShouldPoll(const std::string&) const override { return owned; }
    bool owned = false;
  } ownership;
  options_.ownership = &ownership;
  Put(1, v1::Uploading::MATCHED);
  Start();
  Watcher w;
  Subscribe(w, 1);
  time_.Advance(absl::Minutes(2));
  EXPECT_EQ(client_.count("get"), 0);
  ownership.owned = true;
  hub_->PollOwnershipChanged(
      PollUploadingKey(credentials_.fingerprint(), kCounter, 1), true);
  time_.Advance(absl::Milliseconds(20));
  EXPECT_EQ(client_.count("get"), 1);
  ASSERT_EQ(w.states().size(), 1u);
  time_.Advance(absl::Seconds(31));
  EXPECT_EQ(client_.count("get"), 2);
  ownership.owned = false;
  hub_->PollOwnershipChanged(
      PollUploadingKey(credentials_.fingerprint(), kCounter, 1), false);
  time_.Advance(absl::Minutes(5));
  EXPECT_EQ(client_.count("get"), 2);
}

TEST_F(UploadingHubTest, SharedStatesReachWatchersWithTheirVersions) {
  class Nobody : public PollOwnership {
   public:
    void Want(const std::string&) override {}
    void Unwant(const std::string&) override {}
    bool ShouldPoll(const std::string&) const override { return false; }
  } nobody;
  class Recorder : public StatePublisher {
   public:
    void Publish(const UploadingKey&, const UploadingState& s) override {
      versions.push_back(s.version);
    }
    std::vector<int64_t> versions;
  } publisher;
  options_.ownership = &nobody;
  options_.publisher = &publisher;
  Start();
  Watcher w;
  Subscribe(w, 1);
  const UploadingKey key{credentials_.fingerprint(), kCounter, 1};
  hub_->ObserveShared(key, Make(1, v1::Uploading::MATCHED), 7);
  hub_->ObserveShared(key, Make(1, v1::Uploading::MATCHED), 7);  // a repeat
  hub_->ObserveShared(key, Make(1, v1::Uploading::UPLOADED), 5);  // older
  hub_->ObserveShared(key, Make(1, v1::Uploading::PROCESSED), 8);
  time_.RunPending();
  ASSERT_EQ(w.states().size(), 2u);
  EXPECT_EQ(w.states()[0].version, 7);
  EXPECT_EQ(w.states()[1].version, 8);
  EXPECT_EQ(w.statuses().back(), v1::Uploading::PROCESSED);
  EXPECT_TRUE(publisher.versions.empty());  // others' states are not re-published
  EXPECT_EQ(client_.count("get"), 0);
}

TEST_F(UploadingHubTest, ObservedChangesArePublished) {
  class Recorder : public StatePublisher {
   public:
    void Publish(const UploadingKey&, const UploadingState& s) override {
      versions.push_back(s.version);
    }
    std::vector<int64_t> versions;
  } publisher;
  options_.publisher = &publisher;
  Put(1, v1::Uploading::MATCHED);
  Start();
  Watcher w;
  Subscribe(w, 1);
  time_.Advance(absl::Seconds(31));  // a poll, no change: offered again
  Put(1, v1::Uploading::PROCESSED);
  time_.Advance(absl::Seconds(31));
  EXPECT_EQ(publisher.versions, (std::vector<int64_t>{1, 1, 2}));
}

TEST_F(UploadingHubTest, UpstreamParallelismStaysAtOneFlightPerKey) {
  for (int id = 1; id <= 4; ++id) Put(id, v1::Uploading::MATCHED);
  Start();
  // Until Metrica accepts a token its requests go one at a time (issue 16).
  ASSERT_TRUE(GetNow(4).ok());
  client_.ClearLog();
  for (int round = 0; round < 3; ++round) {
    for (int id = 1; id <= 3; ++id) {
      for (int i = 0; i < 4; ++i) {
        hub_->Get(credentials_, kCounter, id, [](absl::StatusOr<UploadingState>) {});
      }
    }
    time_.Advance(absl::Seconds(10));
  }
  EXPECT_EQ(client_.max_in_flight(), 3);
  EXPECT_EQ(client_.count("get"), 9);
}

TEST_F(UploadingHubTest, ACounterWatchSeesEveryUploadingOfItsTypeAndSharesPolls) {
  for (int id = 1; id <= 3; ++id) Put(id, v1::Uploading::MATCHED);
  v1::Uploading call = Make(9, v1::Uploading::MATCHED);
  call.set_type(v1::Uploading::CALLS);
  client_.SetUploading(kCounter, call);
  Start();
  Watcher counter, one;
  counter.hub = hub_.get();
  ASSERT_TRUE(hub_->SubscribeCounter(credentials_, kCounter,
                                     v1::Uploading::TYPE_UNSPECIFIED, &counter)
                  .ok());
  time_.RunPending();
  std::vector<int64_t> ids;
  for (const auto& s : counter.states()) ids.push_back(s.uploading.id());
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<int64_t>{1, 2, 3}));  // not the CALLS one
  Subscribe(one, 2);  // an uploading watch of the same counter
  time_.RunPending();
  EXPECT_EQ(one.states().size(), 1u);
  client_.ClearLog();
  Put(4, v1::Uploading::UPLOADED);     // a new upload
  Put(2, v1::Uploading::PROCESSED);    // a change, terminal
  time_.Advance(absl::Seconds(30));
  // One List served both watches; each was shown what it had not seen.
  EXPECT_EQ(client_.count("list"), 1);
  EXPECT_EQ(client_.count("get"), 0);
  ASSERT_EQ(counter.states().size(), 5u);
  EXPECT_EQ(one.statuses().back(), v1::Uploading::PROCESSED);
  // The uploading watch ended with the terminal state; the counter watch and
  // its group go on, and so do the polls.
  EXPECT_EQ(hub_->stats().groups, 1u);
  Put(1, v1::Uploading::LINKAGE_FAILURE);
  time_.Advance(absl::Seconds(30));
  EXPECT_EQ(counter.states().size(), 6u);
  EXPECT_EQ(counter.states().back().uploading.id(), 1);
  EXPECT_FALSE(counter.error().has_value());
  // A later subscriber of the counter is shown all of it by the next round.
  Watcher late;
  late.hub = hub_.get();
  ASSERT_TRUE(hub_->SubscribeCounter(credentials_, kCounter,
                                     v1::Uploading::BASIC, &late)
                  .ok());
  time_.RunPending();
  EXPECT_EQ(late.states().size(), 4u);
  EXPECT_EQ(counter.states().size(), 6u);  // nothing twice
}

// A counter watch wants its group's list like any watcher (issue 14): where
// another replica polls the group, this one lists nothing of it; the one that
// polls lists the types other replicas' counter watches want too.
class Ownership : public PollOwnership {
 public:
  void Want(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    wanted_.push_back(name);
  }
  void Unwant(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    unwanted_.push_back(name);
  }
  bool ShouldPoll(const std::string&) const override {
    absl::MutexLock lock(&mu_);
    return owned_;
  }
  std::vector<int64_t> OthersWant(const std::string&) const override {
    absl::MutexLock lock(&mu_);
    return owned_ ? others_ : std::vector<int64_t>{};
  }
  void set_owned(bool owned) {
    absl::MutexLock lock(&mu_);
    owned_ = owned;
  }
  void set_others(std::vector<int64_t> others) {
    absl::MutexLock lock(&mu_);
    others_ = std::move(others);
  }
  std::vector<std::string> wanted() {
    absl::MutexLock lock(&mu_);
    return wanted_;
  }
  std::vector<std::string> unwanted() {
    absl::MutexLock lock(&mu_);
    return unwanted_;
  }

 private:
  mutable absl::Mutex mu_;
  bool owned_ = false;
  std::vector<int64_t> others_;
  std::vector<std::string> wanted_, unwanted_;
};

TEST_F(UploadingHubTest, ACounterWatchWhereAnotherReplicaPollsListsNothing) {
  Ownership ownership;
  options_.ownership = &ownership;
  for (int id = 1; id <= 3; ++id) Put(id, v1::Uploading::MATCHED);
  Start();
  Watcher counter;
  counter.hub = hub_.get();
  ASSERT_TRUE(hub_->SubscribeCounter(credentials_, kCounter,
                                     v1::Uploading::TYPE_UNSPECIFIED, &counter)
                  .ok());
  time_.Advance(absl::Minutes(5));
  EXPECT_EQ(client_.count("list"), 0);  // the holder lists, not this replica
  EXPECT_EQ(client_.count("get"), 0);
  const std::string name = PollCounterKey(credentials_.fingerprint(), kCounter,
                                          v1::Uploading::BASIC);
  EXPECT_EQ(ownership.wanted(), std::vector<std::string>{name});
  // Its states come relayed by the holder.
  const UploadingKey key{credentials_.fingerprint(), kCounter, 2};
  hub_->ObserveRelayed(key, Make(2, v1::Uploading::PROCESSED), 4, time_.Now());
  time_.RunPending();
  ASSERT_EQ(counter.states().size(), 1u);
  EXPECT_EQ(counter.states()[0].version, 4);
  // The group is gained: it lists at once, and on its timer from then on.
  ownership.set_owned(true);
  hub_->PollOwnershipChanged(PollGroupKey(credentials_.fingerprint(), kCounter),
                             true);
  time_.Advance(absl::Milliseconds(20));
  EXPECT_EQ(client_.count("list"), 1);
  time_.Advance(absl::Seconds(31));
  EXPECT_EQ(client_.count("list"), 2);
  // A second counter watch of the type: one want, given up with the last.
  Watcher second;
  second.hub = hub_.get();
  ASSERT_TRUE(hub_->SubscribeCounter(credentials_, kCounter,
                                     v1::Uploading::BASIC, &second)
                  .ok());
  counter.hub = nullptr;
  hub_->Unsubscribe(&counter);
  EXPECT_TRUE(ownership.unwanted().empty());
  second.hub = nullptr;
  hub_->Unsubscribe(&second);
  EXPECT_EQ(ownership.unwanted(), std::vector<std::string>{name});
}

TEST_F(UploadingHubTest, TheHolderListsTheTypesOtherReplicasCounterWatchesWant) {
  Ownership ownership;
  ownership.set_owned(true);
  options_.ownership = &ownership;
  Put(1, v1::Uploading::MATCHED);
  v1::Uploading call = Make(9, v1::Uploading::MATCHED);
  call.set_type(v1::Uploading::CALLS);
  client_.SetUploading(kCounter, call);
  Start();
  Watcher one;
  Subscribe(one, 1);  // this replica watches one uploading alone
  time_.RunPending();
  client_.ClearLog();
  // Another replica's counter watch of CALLS: the round lists CALLS for it.
  ownership.set_others({CounterWantId(v1::Uploading::CALLS)});
  time_.Advance(absl::Seconds(31));
  bool listed_calls = false;
  for (const auto& r : client_.requests()) {
    if (r.endpoint == "list" && r.list.type == v1::Uploading::CALLS) {
      listed_calls = true;
    }
  }
  EXPECT_TRUE(listed_calls);
}

TEST_F(UploadingHubTest, RelayedStatesNeverGoBackAndNeverMissAChange) {
  Start();
  Watcher counter;
  counter.hub = hub_.get();
  ASSERT_TRUE(hub_->SubscribeCounter(credentials_, kCounter,
                                     v1::Uploading::BASIC, &counter)
                  .ok());
  time_.RunPending();
  const UploadingKey key{credentials_.fingerprint(), kCounter, 5};
  const absl::Time t0 = time_.Now();
  // The holder's numbering is taken when above ours.
  hub_->ObserveRelayed(key, Make(5, v1::Uploading::UPLOADED), 3, t0);
  hub_->ObserveRelayed(key, Make(5, v1::Uploading::UPLOADED), 3, t0);  // again
  time_.RunPending();
  ASSERT_EQ(counter.states().size(), 1u);
  EXPECT_EQ(counter.states().back().version, 3);
  // This replica numbered further on its own (its own polls saw changes).
  client_.SetUploading(kCounter, Make(5, v1::Uploading::MATCHED));
  time_.Advance(absl::Seconds(31));
  client_.SetUploading(kCounter, Make(5, v1::Uploading::PROCESSED));
  time_.Advance(absl::Seconds(31));
  ASSERT_FALSE(counter.states().empty());
  const int64_t local = counter.states().back().version;
  EXPECT_EQ(local, 5);
  // The holder's relay of a state this replica had (older news, numbered
  // below ours): nothing.
  const size_t shown = counter.states().size();
  hub_->ObserveRelayed(key, Make(5, v1::Uploading::MATCHED), 4,
                       t0 + absl::Seconds(1));
  time_.RunPending();
  EXPECT_EQ(counter.states().size(), shown);
  EXPECT_EQ(counter.states().back().uploading.status(),
            v1::Uploading::PROCESSED);
}

// Blocks inside OnState until released (the contract says a subscriber must
// not block; this one does, to show what it would hold up).
class StuckWatcher : public Subscriber {
 public:
  void OnState(const UploadingState&) override {
    entered.Notify();
    release.WaitForNotification();
  }
  void OnError(const absl::Status&) override {}
  absl::Notification entered, release;
};

TEST_F(UploadingHubTest, AStuckWatcherHoldsUpNeitherGetsNorOtherWatchers) {
  ThreadPoolExecutor pool(2);  // deliveries on threads of their own
  Put(1, v1::Uploading::MATCHED);
  Put(2, v1::Uploading::PROCESSED);
  hub_ = std::make_unique<UploadingHub>(&client_, &time_, &pool, &time_,
                                        options_);
  ASSERT_TRUE(GetNow(2).ok());
  StuckWatcher stuck;
  Watcher other;
  ASSERT_TRUE(hub_->Subscribe(credentials_, kCounter, 1, &stuck).ok());
  Subscribe(other, 1);
  time_.RunPending();  // the first state is fetched and posted
  ASSERT_TRUE(stuck.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // The answer thread is free: a Get (cached) and a poll go on.
  ASSERT_TRUE(GetNow(2).ok());
  time_.Advance(absl::Seconds(30));
  EXPECT_EQ(client_.count("get"), 3);
  // Another watcher leaves without waiting for the stuck delivery.
  other.hub = nullptr;
  hub_->Unsubscribe(&other);
  stuck.release.Notify();
  hub_->Unsubscribe(&stuck);
  hub_->Shutdown(absl::UnavailableError("test over"));
  hub_.reset();  // before `pool` goes
}

}  // namespace
}  // namespace uploadwatch
