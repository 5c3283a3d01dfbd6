// Chaos: 1,000 concurrent watchers while the Metrica simulator is killed and
// restarted, answers 429 storms and 503 bursts, and stalls for longer than
// the poll interval. Every watcher must still end OK with the true terminal
// status of its uploading, in journey order, and once all streams end the
// server holds no watch state and the process's memory is back near its
// baseline.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/blocking_counter.h"
#include "tests/service_fixture.h"

namespace uploadwatch::testing {
namespace {

// 1,000 streams on four connections (each under the per-connection cap of
// 1,000), read by the callback API: no thread per stream.
constexpr int kWatchers = 1000;
constexpr int kChannels = 4;
constexpr int kUploadingsPerRound = 40;
// Far above a round's length (6-14 s): a watcher still open then is lost.
constexpr absl::Duration kWatchDeadline = absl::Seconds(45);
// "Near its baseline": allocator noise and gRPC's per-connection buffers,
// not a leak (1,000 leaked streams with their messages cost far more).
constexpr int64_t kRssSlackKb = 20 * 1024;
// AddressSanitizer holds freed memory in a quarantine (256 MB) and
// ThreadSanitizer keeps shadow memory, so RSS proves nothing under them
// (LeakSanitizer checks leaks there): the bound is then reported, not checked.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kRssIsMeaningful = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
constexpr bool kRssIsMeaningful = false;
#else
constexpr bool kRssIsMeaningful = true;
#endif
#else
constexpr bool kRssIsMeaningful = true;
#endif
// The second half of the watchers join over ~2.5 s, through the chaos: some
// while their poller is mid-poll or down, some after their uploading ended.
constexpr absl::Duration kJoinEvery = absl::Milliseconds(5);

// Position in Metrica's journey; both terminal statuses are last.
int JourneyRank(v1::Uploading::Status status) {
  switch (status) {
    case v1::Uploading::PREPARED:
      return 1;
    case v1::Uploading::UPLOADED:
      return 2;
    case v1::Uploading::EXPORTED:
      return 3;
    case v1::Uploading::MATCHED:
      return 4;
    case v1::Uploading::PROCESSED:
    case v1::Uploading::LINKAGE_FAILURE:
      return 5;
    default:
      return 0;
  }
}

// The process's resident set (VmRSS), in kB.
int64_t ResidentKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "VmRSS:")) continue;
    absl::ConsumeSuffix(&rest, "kB");
    int64_t kb = 0;
    if (absl::SimpleAtoi(rest, &kb)) return kb;
  }
  return -1;
}

// One WatchUploading stream on the callback API, recording what it receives.
// Reactions are serialized by gRPC; the recorder is read only after `done`
// counted it down.
class WatchRecorder
    : public grpc::ClientReadReactor<v1::WatchUploadingResponse> {
 public:
  WatchRecorder(int64_t uploading_id, absl::BlockingCounter* done)
      : uploading_id_(uploading_id), done_(done) {}

  void Start(v1::UploadingService::Stub* stub, int32_t counter_id) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + kWatchDeadline));
    request_.set_counter_id(counter_id);
    request_.set_uploading_id(uploading_id_);
    stub->async()->WatchUploading(&context_, &request_, this);
    StartRead(&incoming_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    messages_.push_back(incoming_);
    StartRead(&incoming_);
  }
  void OnDone(const grpc::Status& status) override {
    status_ = status;
    done_->DecrementCount();  // the last touch: the owner may read it now
  }

  int64_t uploading_id() const { return uploading_id_; }
  const std::vector<v1::WatchUploadingResponse>& messages() const {
    return messages_;
  }
  const grpc::Status& status() const { return status_; }

 private:
  const int64_t uploading_id_;
  absl::BlockingCounter* const done_;
  grpc::ClientContext context_;
  v1::WatchUploadingRequest request_;
  v1::WatchUploadingResponse incoming_;
  std::vector<v1::WatchUploadingResponse> messages_;
  grpc::Status status_;
};

class ChaosTest : public ServiceTest {
 protected:
  // An uploading's scripted life, kept so that a restarted simulator can be
  // given the same state and the rest of the same schedule.
  struct Journey {
    int64_t id;
    absl::Time start;  // taken just before the simulator's, so never later
    std::vector<FakeMetrica::Step> steps;

    v1::Uploading::Status StatusAt(absl::Time t) const {
      v1::Uploading::Status status = v1::Uploading::PREPARED;
      for (const auto& step : steps) {
        if (step.after <= t - start) status = step.status;
      }
      return status;
    }
    v1::Uploading::Status terminal() const { return steps.back().status; }
  };

  // Something done to the simulator `at` this long after the watchers opened.
  struct ChaosStep {
    absl::Duration at;
    std::function<void()> act;
  };
  using Script = std::vector<ChaosStep>;

  // What the simulator answered during a round, over all its incarnations.
  struct Upstream {
    int requests = 0;
    int ok = 0;
    int quota = 0;        // 429
    int unavailable = 0;  // 5xx
    int dropped = 0;      // no answer: dropped, or cut by a kill
    // Most requests of the token the simulator served at once. Metrica
    // allows 3; a request the fetcher gave up on at its deadline still
    // counts there until the simulator is done with it.
    int max_parallel = 0;
  };

  struct RoundFigures {
    int messages = 0;
    Upstream upstream;
    absl::Duration wall;    // until the last watcher ended
    absl::Duration settle;  // then until the server held nothing
  };

  void SetUp() override {
    ServiceTest::SetUp();
    // Count RPC log lines instead of keeping 1,000 a round: the memory check
    // is about the server, not this fixture's log.
    config_.log_sink = [this](absl::string_view line) {
      rpc_log_lines_.fetch_add(1, std::memory_order_relaxed);
      if (!absl::StrContains(line, "code=OK ")) {
        rpc_log_errors_.fetch_add(1, std::memory_order_relaxed);
      }
    };
    port_ = metrica_.port();
  }

  void StartServerAndChannels() {
    StartServer();
    for (int i = 0; i < kChannels; ++i) {
      // Distinct arguments and a local subchannel pool: one connection each.
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("uploadwatch.chaos_channel", i);
      auto channel =
          grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                    grpc::InsecureChannelCredentials(), args);
      stubs_.push_back(v1::UploadingService::NewStub(channel));
    }
  }

  // The simulator now serving (the fixture's, or the latest restart).
  // Touched by the chaos thread only while a round runs.
  FakeMetrica& simulator() { return restarted_ ? *restarted_ : metrica_; }

  // Adds kUploadingsPerRound journeys of 2.4-6 s ending in PROCESSED or
  // LINKAGE_FAILURE; some skip EXPORTED, some stay PREPARED twice as long.
  void AddRound(int round) {
    current_.clear();
    for (int i = 0; i < kUploadingsPerRound; ++i) {
      Journey j;
      j.id = round * 1000 + i + 1;  // newer rounds first on list pages
      const absl::Duration d = absl::Milliseconds(600 + (i % 5) * 150);
      const absl::Duration late = (i % 7 == 0) ? d : absl::ZeroDuration();
      j.steps.push_back({late + d, v1::Uploading::UPLOADED});
      if (i % 3 != 0)
        j.steps.push_back({late + 2 * d, v1::Uploading::EXPORTED});
      j.steps.push_back({late + 3 * d, v1::Uploading::MATCHED});
      j.steps.push_back({late + 4 * d, i % 2 == 0
                                           ? v1::Uploading::PROCESSED
                                           : v1::Uploading::LINKAGE_FAILURE});
      j.start = absl::Now();
      simulator().AddUploading(
          kCounter, MakeUploading(j.id, v1::Uploading::PREPARED), j.steps);
      current_.push_back(journeys_.size());
      journeys_.push_back(std::move(j));
    }
  }

  // Kills the simulator (connections cut mid-request), keeps the port closed
  // for `down`, then starts a new one there with every uploading in the state
  // it had reached and the rest of its schedule.
  void KillAndRestartSimulator(absl::Duration down) {
    Tally(simulator());
    simulator().Stop();
    absl::SleepFor(down);
    FakeMetrica::Options options;
    options.port = port_;
    auto next = std::make_unique<FakeMetrica>(options);
    absl::Status started = next->Start();
    // The old listener's port may linger briefly.
    for (int i = 0; !started.ok() && i < 50; ++i) {
      absl::SleepFor(absl::Milliseconds(20));
      next = std::make_unique<FakeMetrica>(options);
      started = next->Start();
    }
    if (!started.ok()) {
      ADD_FAILURE() << "cannot restart the simulator: " << started;
      return;
    }
    next->GrantAccess(kToken, kCounter);
    const absl::Time now = absl::Now();
    for (const Journey& j : journeys_) {
      std::vector<FakeMetrica::Step> rest;
      for (const auto& step : j.steps) {
        if (step.after > now - j.start) {
          rest.push_back({step.after - (now - j.start), step.status});
        }
      }
      next->AddUploading(kCounter, MakeUploading(j.id, j.StatusAt(now)),
                         std::move(rest));
    }
    restarted_ = std::move(next);
  }

  void Inject(FakeMetrica::Fault fault) { simulator().InjectFault(fault); }

  static FakeMetrica::Fault QuotaStorm(int times,
                                       std::optional<int> retry_after) {
    FakeMetrica::Fault f;
    f.times = times;
    f.http_status = 429;
    // The transient kind: quota_requests_by_uid (the daily limit) stops the
    // token until Metrica's reset, by design.
    f.error_type = "quota_parallel_requests";
    f.retry_after_seconds = retry_after;
    return f;
  }
  static FakeMetrica::Fault UnavailableBurst(int times) {
    FakeMetrica::Fault f;
    f.times = times;
    f.http_status = 503;
    return f;
  }
  static FakeMetrica::Fault Stall(int times, absl::Duration delay) {
    FakeMetrica::Fault f;
    f.times = times;
    f.delay = delay;
    return f;
  }
  static FakeMetrica::Fault Drops(int times) {
    FakeMetrica::Fault f;
    f.times = times;
    f.drop_connection = true;
    return f;
  }

  // Counts the requests `simulator` answered since the last count.
  void Tally(FakeMetrica& simulator) {
    upstream_.max_parallel =
        std::max(upstream_.max_parallel, simulator.max_in_flight(kToken));
    for (const auto& r : simulator.requests()) {
      upstream_.requests += 1;
      if (r.http_status == 200) {
        upstream_.ok += 1;
      } else if (r.http_status == 429) {
        upstream_.quota += 1;
      } else if (r.http_status >= 500) {
        upstream_.unavailable += 1;
      } else if (r.http_status == 0) {
        upstream_.dropped += 1;
      }
    }
    simulator.ClearRequests();
  }

  // One round: fresh uploadings and kWatchers watches spread over them and
  // over the channels, half opened at once and half joining one by one while
  // `script` plays; then every watcher is checked.
  RoundFigures RunRound(int round, const Script& script) {
    AddRound(round);
    watches_opened_ += kWatchers;
    upstream_ = Upstream{};
    simulator().ClearRequests();
    absl::BlockingCounter done(kWatchers);
    std::vector<std::unique_ptr<WatchRecorder>> watchers;
    watchers.reserve(kWatchers);
    auto open = [&](int i) {
      const Journey& j = journeys_[current_[i % current_.size()]];
      watchers.push_back(std::make_unique<WatchRecorder>(j.id, &done));
      watchers.back()->Start(stubs_[i % stubs_.size()].get(), kCounter);
    };
    const absl::Time start = absl::Now();
    for (int i = 0; i < kWatchers / 2; ++i) open(i);
    std::thread chaos([&] {
      for (const ChaosStep& step : script) {
        absl::SleepFor(start + step.at - absl::Now());
        step.act();
      }
    });
    for (int i = kWatchers / 2; i < kWatchers; ++i) {
      absl::SleepFor(kJoinEvery);
      open(i);
    }
    done.Wait();
    RoundFigures figures;
    figures.wall = absl::Now() - start;
    chaos.join();
    Tally(simulator());
    figures.upstream = upstream_;
    for (const auto& w : watchers) figures.messages += w->messages().size();
    ExpectEveryWatcherSawItsJourney(watchers);
    return figures;
  }

  void ExpectEveryWatcherSawItsJourney(
      const std::vector<std::unique_ptr<WatchRecorder>>& watchers) {
    std::map<int64_t, const Journey*> by_id;
    for (size_t index : current_)
      by_id[journeys_[index].id] = &journeys_[index];
    // Versions are shared by all watchers of an uploading: one state each.
    std::map<std::pair<int64_t, int64_t>, v1::Uploading::Status> version_state;
    std::vector<std::string> problems;
    auto problem = [&](const WatchRecorder& w, size_t i,
                       absl::string_view what) {
      problems.push_back(absl::StrCat("watcher of ", w.uploading_id(),
                                      " message ", i, ": ", what));
    };
    for (const auto& w : watchers) {
      const Journey& j = *by_id.at(w->uploading_id());
      const auto& m = w->messages();
      if (!w->status().ok()) {
        problem(*w, m.size(),
                absl::StrCat("ended with ", w->status().error_code(), " ",
                             w->status().error_message()));
      }
      if (m.empty()) {
        problem(*w, 0, "no message at all");
        continue;
      }
      for (size_t i = 0; i < m.size(); ++i) {
        const v1::Uploading& u = m[i].uploading();
        if (u.id() != j.id) problem(*w, i, absl::StrCat("id ", u.id()));
        if (m[i].terminal() != (i + 1 == m.size())) {
          problem(*w, i,
                  absl::StrCat("terminal=", m[i].terminal(), " of ", m.size(),
                               " messages"));
        }
        auto [it, inserted] =
            version_state.try_emplace({j.id, m[i].version()}, u.status());
        if (!inserted && it->second != u.status()) {
          problem(
              *w, i,
              absl::StrCat("version ", m[i].version(), " is ",
                           v1::Uploading::Status_Name(u.status()), " here, ",
                           v1::Uploading::Status_Name(it->second),
                           " for another watcher"));
        }
        if (i == 0) continue;
        const auto& prev = m[i - 1];
        if (m[i].version() <= prev.version()) {
          problem(*w, i,
                  absl::StrCat("version ", m[i].version(), " after ",
                               prev.version()));
        }
        if (JourneyRank(u.status()) <= JourneyRank(prev.uploading().status())) {
          problem(*w, i,
                  absl::StrCat(
                      v1::Uploading::Status_Name(u.status()), " after ",
                      v1::Uploading::Status_Name(prev.uploading().status()),
                      " (backwards or a duplicate)"));
        }
      }
      if (m.back().uploading().status() != j.terminal()) {
        problem(*w, m.size() - 1,
                absl::StrCat(
                    "last status ",
                    v1::Uploading::Status_Name(m.back().uploading().status()),
                    ", the true terminal one is ",
                    v1::Uploading::Status_Name(j.terminal())));
      }
    }
    const size_t shown = std::min<size_t>(problems.size(), 20);
    EXPECT_TRUE(problems.empty())
        << problems.size() << " problems; the first " << shown << ":\n"
        << absl::StrJoin(problems.begin(), problems.begin() + shown, "\n");
  }

  // A stream ends on the client before the server is done with it: wait
  // until every stream has reached OnDone (its reactor freed, its RPC log
  // line written) and the hub has let go of every watcher, poller, poll
  // group and upstream request. Returns how long that took.
  absl::Duration ExpectServerLetGoOfEveryWatch() {
    const absl::Time start = absl::Now();
    UploadingHub::Stats s;
    auto idle = [&] {
      s = server_->stats();
      return rpc_log_lines_.load() == watches_opened_ && s.watchers == 0 &&
             s.pollers == 0 && s.groups == 0 && s.flights == 0;
    };
    for (int i = 0; i < 500 && !idle(); ++i) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_EQ(rpc_log_lines_.load(), watches_opened_)
        << "streams that never reached OnDone";
    EXPECT_EQ(s.watchers, 0u);
    EXPECT_EQ(s.pollers, 0u);
    EXPECT_EQ(s.groups, 0u);
    EXPECT_EQ(s.flights, 0u);
    return absl::Now() - start;
  }

  // A warm-up round (so that allocator caches, connection buffers and the
  // simulator's threads are in the baseline), then the measured round.
  void RunScenario(absl::string_view name, const Script& script) {
    StartServerAndChannels();
    RoundFigures warm_up = RunRound(0, script);
    warm_up.settle = ExpectServerLetGoOfEveryWatch();
    const int64_t baseline_kb = ResidentKb();
    RoundFigures measured = RunRound(1, script);
    measured.settle = ExpectServerLetGoOfEveryWatch();
    const int64_t after_kb = ResidentKb();
    for (const auto& [label, f] :
         {std::pair{"warm-up", warm_up}, std::pair{"measured", measured}}) {
      std::printf(
          "[chaos] %s (%s): watchers=%d uploadings=%d messages=%d "
          "upstream_requests=%d (200: %d, 429: %d, 5xx: %d, no answer: %d; "
          "max parallel %d) "
          "wall=%.1fs server_idle_after=+%.2fs\n",
          std::string(name).c_str(), label, kWatchers, kUploadingsPerRound,
          f.messages, f.upstream.requests, f.upstream.ok, f.upstream.quota,
          f.upstream.unavailable, f.upstream.dropped, f.upstream.max_parallel,
          absl::ToDoubleSeconds(f.wall), absl::ToDoubleSeconds(f.settle));
    }
    std::printf(
        "[chaos] %s: rss_kb before=%lld after=%lld delta=%+lld (bound "
        "+%lld%s); "
        "rpc log lines=%d, not OK=%d\n",
        std::string(name).c_str(), static_cast<long long>(baseline_kb),
        static_cast<long long>(after_kb),
        static_cast<long long>(after_kb - baseline_kb),
        static_cast<long long>(kRssSlackKb),
        kRssIsMeaningful ? "" : ", not checked under a sanitizer",
        rpc_log_lines_.load(), rpc_log_errors_.load());
    std::fflush(stdout);
    if (kRssIsMeaningful) {
      EXPECT_LE(after_kb - baseline_kb, kRssSlackKb);
    }
  }

  int port_ = 0;
  std::unique_ptr<FakeMetrica> restarted_;
  std::vector<std::unique_ptr<v1::UploadingService::Stub>> stubs_;
  std::vector<Journey> journeys_;  // every round's, for restarts
  std::vector<size_t> current_;    // this round's, as indices in journeys_
  Upstream upstream_;              // the chaos thread's while a round runs
  int watches_opened_ = 0;
  std::atomic<int> rpc_log_lines_{0};
  std::atomic<int> rpc_log_errors_{0};
};

TEST_F(ChaosTest, EveryWatcherSurvivesTheSimulatorKilledAndRestartedTwice) {
  RunScenario("kill+restart x2",
              {{absl::Milliseconds(800),
                [this] { KillAndRestartSimulator(absl::Milliseconds(600)); }},
               {absl::Milliseconds(2400), [this] {
                  KillAndRestartSimulator(absl::Milliseconds(1500));
                }}});
}

TEST_F(ChaosTest, EveryWatcherSurvivesQuotaStormsAndUnavailableBursts) {
  RunScenario(
      "429 storms + 503 bursts",
      {{absl::Milliseconds(500), [this] { Inject(QuotaStorm(16, {})); }},
       {absl::Milliseconds(1500), [this] { Inject(UnavailableBurst(20)); }},
       {absl::Milliseconds(2500), [this] { Inject(QuotaStorm(6, 1)); }},
       {absl::Milliseconds(3500), [this] { Inject(UnavailableBurst(20)); }}});
}

TEST_F(ChaosTest, EveryWatcherSurvivesStallsLongerThanThePollInterval) {
  // 100 ms polls; stalls of 6x, 15x, and one beyond the 3 s upstream timeout.
  RunScenario("stalls",
              {{absl::Milliseconds(500),
                [this] { Inject(Stall(8, absl::Milliseconds(600))); }},
               {absl::Milliseconds(1800),
                [this] { Inject(Stall(4, absl::Milliseconds(1500))); }},
               {absl::Milliseconds(3000),
                [this] { Inject(Stall(2, absl::Seconds(4))); }}});
}

TEST_F(ChaosTest, EveryWatcherSurvivesAllOfItAtOnce) {
  RunScenario(
      "all combined",
      {{absl::Milliseconds(300), [this] { Inject(QuotaStorm(8, {})); }},
       {absl::Milliseconds(300),
        [this] { Inject(Stall(4, absl::Milliseconds(600))); }},
       {absl::Milliseconds(900),
        [this] { KillAndRestartSimulator(absl::Milliseconds(500)); }},
       {absl::Milliseconds(1500), [this] { Inject(UnavailableBurst(12)); }},
       {absl::Milliseconds(1500), [this] { Inject(Drops(6)); }},
       {absl::Milliseconds(1500),
        [this] { Inject(Stall(2, absl::Milliseconds(1500))); }},
       {absl::Milliseconds(2400), [this] { Inject(QuotaStorm(4, 1)); }},
       {absl::Milliseconds(3000),
        [this] { KillAndRestartSimulator(absl::Milliseconds(500)); }},
       {absl::Milliseconds(3600), [this] { Inject(UnavailableBurst(12)); }},
       {absl::Milliseconds(3600),
        [this] { Inject(Stall(2, absl::Seconds(4))); }}});
}

}  // namespace
}  // namespace uploadwatch::testing
