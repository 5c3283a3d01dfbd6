// Several real uploading_server processes on one real redis-server, against
// the Metrica simulator (a real HTTP server in this process, so that its
// request log can be read): issue 14's multi-replica mode end to end.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "metrika/offline_conversions/v1/uploading_service.grpc.pb.h"
#include "service/auth/token.h"
#include "service/core/resume_token.h"
#include "service/server/uploading_server.h"
#include "service/redis/testing/redis_server.h"
#include "service/simulator/fake_metrica.h"

extern char** environ;

namespace uploadwatch {
namespace {

namespace v1 = ::metrika::offline_conversions::v1;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

constexpr char kToken[] = "AQAAAAA-multi-replica-secret";
constexpr int32_t kCounter = 2215573;
constexpr char kPrefix[] = "mrtest:";

std::string ServerBinary() {
  const char* dir = std::getenv("TEST_SRCDIR");
  return absl::StrCat(dir ? dir : "..", "/uploadwatch/service/uploading_server");
}

// One uploading_server process. Its stderr goes to a file, read for the port.
class Replica {
 public:
  // `extra` flags come last (the last value of a flag wins).
  Replica(const std::string& upstream, const std::string& redis, int n,
          const std::vector<std::string>& extra = {})
      : log_(absl::StrCat(std::getenv("TEST_UNDECLARED_OUTPUTS_DIR"), "/replica", n, "-",
                          absl::ToUnixNanos(absl::Now()), ".log")) {
    std::vector<std::string> args = {
        ServerBinary(),
        "--listen=127.0.0.1:0",
        absl::StrCat("--upstream_url=", upstream),
        "--poll_interval=200ms",
        "--cache_ttl=100ms",
        "--upstream_timeout=5s",
        "--drain_period=0s",
        "--shutdown_grace=1s",
        "--redis_lease_ttl=1500ms",
        // These tests measure the shared upstream cap, not the per-caller
        // share of the server token: every Get names a caller of its own.
        "--caller_identity_header=x-test-caller",
        // Budget pacing would stretch 200 ms polls to ~20 s.
        "--daily_budget=100000000",
    };
    if (!redis.empty()) {
      args.push_back(absl::StrCat("--redis=", redis));
      args.push_back(absl::StrCat("--redis_key_prefix=", kPrefix));
    }
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::string token_env = absl::StrCat("METRIKA_OAUTH_TOKEN=", kToken);
    std::vector<char*> envp = {token_env.data(), nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(),
                               envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) pid_ = -1;
  }
  ~Replica() { Kill(); }

  // Waits (bounded) for "serving on port N"; false if it never came.
  bool WaitServing() {
    const absl::Time limit = absl::Now() + absl::Seconds(20);
    while (absl::Now() < limit && pid_ > 0) {
      std::ifstream in(log_);
      std::stringstream text;
      text << in.rdbuf();
      const std::string s = text.str();
      const size_t at = s.find("serving on port ");
      if (at != std::string::npos) {
        size_t end = s.find(' ', at + 16);
        if (absl::SimpleAtoi(s.substr(at + 16, end - at - 16), &port_)) {
          channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                                         grpc::InsecureChannelCredentials());
          return true;
        }
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // SIGSTOP / SIGCONT: a replica that stalls (no polls, no renewals).
  void Pause() { kill(pid_, SIGSTOP); }
  void Resume() { kill(pid_, SIGCONT); }

  pid_t pid() const { return pid_; }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

  // The status of one health service name ("" is the whole server).
  HealthCheckResponse::ServingStatus Health(const std::string& service) {
    auto stub = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(3)));
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    if (!stub->Check(&ctx, request, &response).ok()) {
      return HealthCheckResponse::UNKNOWN;
    }
    return response.status();
  }

  grpc::Status Get(int64_t id, v1::Uploading* out) {
    auto stub = v1::UploadingService::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    ctx.AddMetadata("x-test-caller", absl::StrCat("caller-", id));
    v1::GetUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(id);
    v1::GetUploadingResponse response;
    grpc::Status s = stub->GetUploading(&ctx, request, &response);
    if (out != nullptr) *out = response.uploading();
    return s;
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
};

// One WatchUploading stream on a thread of its own, recording what it got.
class Watch {
 public:
  Watch(std::shared_ptr<grpc::Channel> channel, int64_t id)
      : id_(id), stub_(v1::UploadingService::NewStub(std::move(channel))) {
    thread_ = std::thread([this, id] {
      v1::WatchUploadingRequest request;
      request.set_counter_id(kCounter);
      request.set_uploading_id(id);
      auto reader = stub_->WatchUploading(&ctx_, request);
      v1::WatchUploadingResponse response;
      while (reader->Read(&response)) {
        absl::MutexLock lock(&mu_);
        messages_.push_back(response);
        times_.push_back(absl::Now());
      }
      grpc::Status s = reader->Finish();
      absl::MutexLock lock(&mu_);
      done_ = true;
      status_ = s;
    });
  }
  ~Watch() {
    ctx_.TryCancel();
    thread_.join();
  }

  // Waits until a message (from the `from`th on) has `status`; the time it
  // arrived.
  std::optional<absl::Time> WaitFor(v1::Uploading::Status status,
                                    absl::Duration limit, size_t from = 0) {
    absl::MutexLock lock(&mu_);
    auto seen = [&] {
      for (size_t i = from; i < messages_.size(); ++i) {
        if (messages_[i].uploading().status() == status) return true;
      }
      return done_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&seen), limit);
    for (size_t i = from; i < messages_.size(); ++i) {
      if (messages_[i].uploading().status() == status) return times_[i];
    }
    return std::nullopt;
  }
  std::vector<int64_t> versions() {
    absl::MutexLock lock(&mu_);
    std::vector<int64_t> out;
    for (const auto& m : messages_) out.push_back(m.version());
    return out;
  }
  size_t count() {
    absl::MutexLock lock(&mu_);
    return messages_.size();
  }
  int64_t id() const { return id_; }

 private:
  const int64_t id_;
  std::unique_ptr<v1::UploadingService::Stub> stub_;
  grpc::ClientContext ctx_;
  absl::Mutex mu_;
  std::vector<v1::WatchUploadingResponse> messages_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> times_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// One WatchUploadings stream (a whole counter) on a thread of its own.
class CounterStream {
 public:
  CounterStream(std::shared_ptr<grpc::Channel> channel,
                const std::string& resume_token = "")
      : stub_(v1::UploadingService::NewStub(std::move(channel))) {
    thread_ = std::thread([this, resume_token] {
      v1::WatchUploadingsRequest request;
      request.set_counter_id(kCounter);
      request.set_resume_token(resume_token);
      auto reader = stub_->WatchUploadings(&ctx_, request);
      v1::WatchUploadingsResponse response;
      while (reader->Read(&response)) {
        absl::MutexLock lock(&mu_);
        messages_.push_back(response);
        arrived_.push_back(absl::Now());
      }
      reader->Finish();
      absl::MutexLock lock(&mu_);
      done_ = true;
    });
  }
  ~CounterStream() {
    ctx_.TryCancel();
    thread_.join();
  }
  // Waits until a message is `synced`; the messages up to it.
  std::optional<std::vector<v1::WatchUploadingsResponse>> WaitSynced(
      absl::Duration limit) {
    absl::MutexLock lock(&mu_);
    auto synced = [&] {
      for (const auto& m : messages_) {
        if (m.synced()) return true;
      }
      return done_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&synced), limit);
    for (size_t i = 0; i < messages_.size(); ++i) {
      if (messages_[i].synced()) {
        return std::vector<v1::WatchUploadingsResponse>(
            messages_.begin(), messages_.begin() + i + 1);
      }
    }
    return std::nullopt;
  }
  std::string last_token() {
    absl::MutexLock lock(&mu_);
    return messages_.empty() ? "" : messages_.back().resume_token();
  }

  // The resume token of the last live message that showed `id` with
  // `status` (empty: none did), and when it arrived.
  std::string TokenOf(int64_t id, v1::Uploading::Status status,
                      absl::Time* arrived = nullptr) {
    absl::MutexLock lock(&mu_);
    std::string token;
    bool synced = false;
    for (size_t i = 0; i < messages_.size(); ++i) {
      const auto& m = messages_[i];
      if (synced) {
        for (const auto& e : m.events()) {
          if (e.uploading().id() == id && e.uploading().status() == status) {
            if (arrived != nullptr) *arrived = arrived_[i];
            token = m.resume_token();
          }
        }
      }
      synced = synced || m.synced();
    }
    return token;
  }

  // For each message from the first `synced` one on: when it arrived, and
  // its check_time (every state the client holds confirmed at or after it).
  std::vector<std::pair<absl::Time, absl::Time>> CheckTimes() {
    absl::MutexLock lock(&mu_);
    std::vector<std::pair<absl::Time, absl::Time>> out;
    bool synced = false;
    for (size_t i = 0; i < messages_.size(); ++i) {
      synced = synced || messages_[i].synced();
      if (!synced) continue;
      const auto& t = messages_[i].check_time();
      out.emplace_back(arrived_[i],
                       absl::FromUnixSeconds(t.seconds()) +
                           absl::Nanoseconds(t.nanos()));
    }
    return out;
  }

  // The events of the messages after the first `synced` one (live).
  std::vector<v1::UploadingEvent> live_events() {
    absl::MutexLock lock(&mu_);
    std::vector<v1::UploadingEvent> out;
    bool synced = false;
    for (const auto& m : messages_) {
      if (synced) out.insert(out.end(), m.events().begin(), m.events().end());
      synced = synced || m.synced();
    }
    return out;
  }
  // Waits until a live event (from the `from`th on) shows `id` with
  // `status`; when it arrived.
  std::optional<absl::Time> WaitLive(int64_t id, v1::Uploading::Status status,
                                     absl::Duration limit, size_t from = 0) {
    const absl::Time end = absl::Now() + limit;
    while (absl::Now() < end) {
      const std::vector<v1::UploadingEvent> live = live_events();
      for (size_t i = from; i < live.size(); ++i) {
        const auto& e = live[i];
        if (e.uploading().id() == id && e.uploading().status() == status) {
          return absl::Now();
        }
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return std::nullopt;
  }

 private:
  std::unique_ptr<v1::UploadingService::Stub> stub_;
  grpc::ClientContext ctx_;
  absl::Mutex mu_;
  std::vector<v1::WatchUploadingsResponse> messages_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> arrived_ ABSL_GUARDED_BY(mu_);  // per message
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

bool Increasing(const std::vector<int64_t>& versions) {
  for (size_t i = 1; i < versions.size(); ++i) {
    if (versions[i] <= versions[i - 1]) return false;
  }
  return true;
}

v1::Uploading MakeUploading(int64_t id, v1::Uploading::Status status) {
  v1::Uploading u;
  u.set_id(id);
  u.set_status(status);
  u.set_source_quantity(10);
  u.set_line_quantity(10);
  return u;
}

bool Eventually(const std::function<bool()>& condition, absl::Duration limit) {
  const absl::Time end = absl::Now() + limit;
  while (absl::Now() < end) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return condition();
}

class MultiReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FakeMetrica::Options options;
    options.port = 0;
    metrica_ = std::make_unique<FakeMetrica>(options);
    ASSERT_TRUE(metrica_->Start().ok());
    metrica_->GrantAccess(kToken, kCounter);
    ASSERT_TRUE(redis_.Start().ok());
  }

  // Starts `n` replicas on the test's Redis (or alone when `shared` is
  // false) and waits until each serves.
  void StartReplicas(int n, bool shared = true,
                     const std::vector<std::string>& extra = {}) {
    for (int i = 0; i < n; ++i) {
      replicas_.push_back(std::make_unique<Replica>(
          metrica_->base_url(), shared ? redis_.address() : "",
          static_cast<int>(replicas_.size()), extra));
      ASSERT_TRUE(replicas_.back()->WaitServing()) << "replica " << i;
    }
  }

  // Three replicas on the test's Redis, a synced counter watch of kCounter
  // on each (streams[i] on replicas_[i]), and in `holder` the replica that
  // holds the counter's lease.
  void ACounterWatchOnEachOfThree(
      std::vector<std::unique_ptr<CounterStream>>& streams, int& holder) {
    StartReplicas(3);
    for (auto& r : replicas_) {
      streams.push_back(std::make_unique<CounterStream>(r->channel()));
    }
    for (auto& s : streams) {
      ASSERT_TRUE(s->WaitSynced(absl::Seconds(10)).has_value());
    }
    // Any uploading of kCounter: one lease for the whole counter.
    ASSERT_TRUE(Eventually([&] { return (holder = Holder(/*id=*/0)) >= 0; },
                           absl::Seconds(5)));
  }

  // Upstream GETs of `id` in the simulator's log.
  int Gets(int64_t id) const {
    int n = 0;
    const std::string suffix = absl::StrCat("/uploading/", id);
    for (const auto& r : metrica_->requests()) {
      if (r.path.size() >= suffix.size() &&
          r.path.compare(r.path.size() - suffix.size(), suffix.size(),
                         suffix) == 0) {
        ++n;
      }
    }
    return n;
  }

  // Whether each replica's `uploadwatch.redis` health comes to `status`,
  // within `limit` of the previous one's.
  bool EveryReplicasRedisHealthBecomes(HealthCheckResponse::ServingStatus status,
                                       absl::Duration limit) {
    for (auto& r : replicas_) {
      if (!Eventually([&] { return r->Health(kRedisHealthService) == status; },
                      limit)) {
        return false;
      }
    }
    return true;
  }
  // Metrica changes `id` to `status`: a resumed counter watch whose live
  // part had nothing yet shows that change, once, and nothing else.
  void ChangeAndSeeItLiveOnce(CounterStream& resumed, int64_t id,
                              v1::Uploading::Status status) {
    metrica_->SetUploading(kCounter, MakeUploading(id, status));
    ASSERT_TRUE(resumed.WaitLive(id, status, absl::Seconds(10)));
    absl::SleepFor(absl::Milliseconds(600));  // give a duplicate the time to come
    std::vector<std::pair<int64_t, v1::Uploading::Status>> live;
    for (const auto& e : resumed.live_events()) {
      live.emplace_back(e.uploading().id(), e.uploading().status());
    }
    EXPECT_EQ(live,
              (std::vector<std::pair<int64_t, v1::Uploading::Status>>{{id, status}}));
  }
  // kCounter's changes stream of BASIC uploadings (counter watches').
  std::string ChangesStreamKey() const {
    return absl::StrCat(kPrefix, "history:", Credentials(kToken).fingerprint(),
                        ":", kCounter, ":-",
                        static_cast<int>(v1::Uploading::BASIC));
  }

  // Leases are per (token, counter) group: every uploading of kCounter has
  // the same poller.
  std::string LeaseKey() const {
    return absl::StrCat(kPrefix, "lease:", Credentials(kToken).fingerprint(),
                        ":", kCounter);
  }
  // The replica polling `id` (the holder of its group's lease, by pid in the
  // owner id), or -1.
  int Holder(int64_t id) {
    (void)id;  // one lease for the whole counter
    absl::StatusOr<std::string> owner = redis_.Run({"GET", LeaseKey()});
    if (!owner.ok() || owner->empty()) return -1;
    for (size_t i = 0; i < replicas_.size(); ++i) {
      if (replicas_[i]->pid() > 0 &&
          owner->find(absl::StrCat("-", replicas_[i]->pid(), "-")) !=
              std::string::npos) {
        return static_cast<int>(i);
      }
    }
    return -1;
  }

  // Upstream requests per second for `id` over `window`, with `watchers`
  // watches spread round-robin over the replicas.
  double GetsPerSecond(int64_t id, int watchers, absl::Duration window,
                       const std::function<void()>& while_watched = nullptr) {
    std::vector<std::unique_ptr<Watch>> watches;
    for (int i = 0; i < watchers; ++i) {
      watches.push_back(std::make_unique<Watch>(
          replicas_[i % replicas_.size()]->channel(), id));
    }
    for (auto& w : watches) {
      EXPECT_TRUE(Eventually([&] { return w->count() > 0; }, absl::Seconds(10)));
    }
    absl::SleepFor(absl::Seconds(1));  // past the start-up Gets
    const int before = Gets(id);
    absl::SleepFor(window);
    const int gets = Gets(id) - before;
    if (while_watched) while_watched();
    return gets / absl::ToDoubleSeconds(window);
  }

  std::unique_ptr<FakeMetrica> metrica_;
  redis::testing::RedisServer redis_;
  std::vector<std::unique_ptr<Replica>> replicas_;

  // See AResumeTokenOf...CarriesOn...: from the holder (killed) or a
  // non-holder (the watch cancelled), to the holder of the moment or not.
  void ResumeOnAnotherReplica(bool from_holder, bool to_holder);
};

TEST_F(MultiReplicaTest, ThreeReplicasPollLikeOne) {
  metrica_->AddUploading(kCounter, MakeUploading(1, v1::Uploading::MATCHED));
  metrica_->AddUploading(kCounter, MakeUploading(2, v1::Uploading::MATCHED));
  StartReplicas(1, /*shared=*/false);
  const double one = GetsPerSecond(1, 6, absl::Seconds(4));
  replicas_.clear();
  StartReplicas(3);
  ASSERT_TRUE(redis_.Run({"CONFIG", "RESETSTAT"}).ok());
  const int gets_before = Gets(2);
  const double three = GetsPerSecond(2, 6, absl::Seconds(4), [&] {
    EXPECT_GE(Holder(2), 0);  // one of them holds the lease
    // What the three replicas sent, over the polls they made (commandstats
    // also counts the commands inside the Lua scripts: those are left out).
    absl::StatusOr<std::string> info = redis_.Run({"INFO", "commandstats"});
    ASSERT_TRUE(info.ok());
    long long sent = 0;
    for (const char* name : {"evalsha", "eval", "zrem", "set", "xread",
                             "xrevrange", "xadd", "client|id", "ping"}) {
      const std::string tag = absl::StrCat("cmdstat_", name, ":calls=");
      const size_t at = info->find(tag);
      if (at != std::string::npos) sent += std::atoll(info->c_str() + at + tag.size());
    }
    const int polls = Gets(2) - gets_before;
    std::printf("FIGURE Redis commands sent per upstream poll, 3 replicas "
                "(cap, budget, lease upkeep at TTL 1.5 s, history): %.1f "
                "(%lld / %d)\n",
                static_cast<double>(sent) / std::max(polls, 1), sent, polls);
    EXPECT_GT(sent, 0);
  });
  replicas_.clear();
  StartReplicas(3, /*shared=*/false);
  const double alone = GetsPerSecond(1, 6, absl::Seconds(4));
  std::printf("FIGURE upstream Gets/s for 6 watchers: 1 replica %.2f, "
              "3 replicas on Redis %.2f, 3 replicas without Redis %.2f\n",
              one, three, alone);
  EXPECT_GT(alone, one * 2);  // what the sharing saves (the test can fail)
  EXPECT_GT(one, 1.0);  // it polls (every 200 ms)
  EXPECT_GT(three, 1.0);
  // One poller across the three: what one server alone causes, not three
  // times it (a lease moving mid-window may add a poll or two).
  EXPECT_LE(three, one * 1.3 + 0.5);
}

// The last watcher leaving everywhere hands the lease back (compare-and-
// delete) instead of leaving it to expire: with a 9 s lease, the key is gone
// long before the TTL could have removed it (a margin that holds under
// ThreadSanitizer on a loaded machine, where cancelling the watches alone
// can take a second).
TEST_F(MultiReplicaTest, TheLastWatcherLeavingHandsTheLeaseBack) {
  metrica_->AddUploading(kCounter, MakeUploading(7, v1::Uploading::MATCHED));
  StartReplicas(3, /*shared=*/true, {"--redis_lease_ttl=9s"});
  {
    std::vector<std::unique_ptr<Watch>> watches;
    for (auto& r : replicas_) watches.push_back(std::make_unique<Watch>(r->channel(), 7));
    for (auto& w : watches) {
      ASSERT_TRUE(w->WaitFor(v1::Uploading::MATCHED, absl::Seconds(10)));
    }
    ASSERT_TRUE(Eventually([&] { return Holder(7) >= 0; }, absl::Seconds(5)));
  }
  const absl::Time left = absl::Now();
  EXPECT_TRUE(Eventually([&] { return Holder(7) < 0; }, absl::Seconds(5)));
  std::printf("FIGURE the lease was handed back %s after the last watcher "
              "left (TTL 9 s)\n",
              absl::FormatDuration(absl::Now() - left).c_str());
  // Nobody watches: nobody takes it again.
  absl::SleepFor(absl::Seconds(1));
  EXPECT_LT(Holder(7), 0);
}

// Requests the simulator got for kCounter, of any kind (Lists and Gets).
int CounterRequests(const FakeMetrica& metrica) {
  int n = 0;
  const std::string part = absl::StrCat("/counter/", kCounter, "/");
  for (const auto& r : metrica.requests()) {
    n += r.path.find(part) != std::string::npos;
  }
  return n;
}

// 10 uploadings of one counter, 2 watchers each. On one replica a round
// lists them together (one List per interval). Over three replicas, each
// with watchers of a part of the counter (uploading i on replica i % 3), the
// group's one poller lists them all for everybody: Metrica sees what one
// replica causes, not one poll per replica.
TEST_F(MultiReplicaTest, ACountersUploadingsWatchedOverThreeReplicasArePolledAsOne) {
  constexpr int64_t kFirst = 100;
  constexpr int kUploadings = 10;
  for (int64_t id = kFirst; id < kFirst + kUploadings; ++id) {
    metrica_->AddUploading(kCounter, MakeUploading(id, v1::Uploading::MATCHED));
  }
  const absl::Duration window = absl::Seconds(4);
  // Requests per second over `window` once every watcher has a state.
  auto measure = [&](const std::vector<std::unique_ptr<Watch>>& watches) {
    for (auto& w : watches) {
      EXPECT_TRUE(Eventually([&] { return w->count() > 0; }, absl::Seconds(10)));
    }
    absl::SleepFor(absl::Seconds(1));  // past the start-up rounds
    const int before = CounterRequests(*metrica_);
    absl::SleepFor(window);
    return (CounterRequests(*metrica_) - before) / absl::ToDoubleSeconds(window);
  };
  auto watch_all = [&](std::vector<std::unique_ptr<Watch>>& watches) {
    for (int copy = 0; copy < 2; ++copy) {
      for (int i = 0; i < kUploadings; ++i) {
        watches.push_back(std::make_unique<Watch>(
            replicas_[i % replicas_.size()]->channel(), kFirst + i));
      }
    }
  };
  StartReplicas(1, /*shared=*/false);
  double one;
  {
    std::vector<std::unique_ptr<Watch>> watches;
    watch_all(watches);
    one = measure(watches);
  }
  replicas_.clear();
  StartReplicas(3);
  ASSERT_TRUE(redis_.Run({"CONFIG", "RESETSTAT"}).ok());
  std::vector<std::unique_ptr<Watch>> watches;
  watch_all(watches);
  const int requests_before = CounterRequests(*metrica_);
  const double three = measure(watches);
  const int holder = Holder(kFirst);
  ASSERT_GE(holder, 0);
  {
    absl::StatusOr<std::string> info = redis_.Run({"INFO", "commandstats"});
    ASSERT_TRUE(info.ok());
    long long sent = 0;
    for (const char* name : {"evalsha", "eval", "zrem", "set", "xread",
                             "xrevrange", "xadd", "client|id", "ping",
                             "client|unblock"}) {
      const std::string tag = absl::StrCat("cmdstat_", name, ":calls=");
      const size_t at = info->find(tag);
      if (at != std::string::npos) sent += std::atoll(info->c_str() + at + tag.size());
    }
    const int polls = CounterRequests(*metrica_) - requests_before;
    std::printf("FIGURE Redis commands per upstream request, a counter's 10 "
                "uploadings over 3 replicas: %.1f (%lld / %d)\n",
                static_cast<double>(sent) / std::max(polls, 1), sent, polls);
  }
  std::printf("FIGURE upstream requests/s for 10 uploadings of a counter, "
              "2 watchers each: 1 replica %.2f, 3 replicas on Redis (each "
              "watching a third) %.2f\n",
              one, three);
  EXPECT_GT(one, 1.0);  // it polls (every 200 ms)
  EXPECT_GT(three, 1.0);
  // One poller for the group: what one replica causes (a List per round),
  // not one per replica.
  EXPECT_LE(three, one * 1.3 + 0.5);
  // And it polls for everybody: a change of an uploading watched only on
  // another replica reaches its watchers there.
  const int other = (holder + 1) % 3;
  const int64_t id = kFirst + other;  // watched on `other` alone
  metrica_->SetUploading(kCounter, MakeUploading(id, v1::Uploading::PROCESSED));
  for (auto& w : watches) {
    if (w->id() != id) continue;
    EXPECT_TRUE(w->WaitFor(v1::Uploading::PROCESSED, absl::Seconds(10)));
  }
}

// The group's poller loses its last watcher: it hands the lease back at
// once, and a replica that still has watchers of the group takes it over
// (within the lease time) and polls for everybody left.
TEST_F(MultiReplicaTest, TheHoldersLastWatcherLeavingHandsTheGroupOver) {
  metrica_->AddUploading(kCounter, MakeUploading(200, v1::Uploading::MATCHED));
  metrica_->AddUploading(kCounter, MakeUploading(201, v1::Uploading::MATCHED));
  StartReplicas(3);
  // Every replica watches 200; 201 has a watcher on each replica too, so
  // whichever replica holds the group, the others still watch both.
  std::vector<std::vector<std::unique_ptr<Watch>>> on(3);
  for (int i = 0; i < 3; ++i) {
    for (int64_t id : {200, 201}) {
      on[i].push_back(std::make_unique<Watch>(replicas_[i]->channel(), id));
    }
  }
  for (auto& watches : on) {
    for (auto& w : watches) {
      ASSERT_TRUE(w->WaitFor(v1::Uploading::MATCHED, absl::Seconds(10)));
    }
  }
  int holder = -1;
  ASSERT_TRUE(Eventually([&] { return (holder = Holder(200)) >= 0; },
                         absl::Seconds(5)));
  on[holder].clear();  // its last watchers leave
  const absl::Time left = absl::Now();
  int next = -1;
  ASSERT_TRUE(Eventually(
      [&] {
        next = Holder(200);
        return next >= 0 && next != holder;
      },
      absl::Seconds(5)));
  const absl::Duration moved = absl::Now() - left;
  std::printf("FIGURE the group's poll moved %s after its holder's last "
              "watcher left\n",
              absl::FormatDuration(moved).c_str());
  // Released at once, taken at the next try (TTL/3): within the lease time.
  EXPECT_LT(moved, absl::Milliseconds(1500));
  metrica_->SetUploading(kCounter, MakeUploading(200, v1::Uploading::PROCESSED));
  metrica_->SetUploading(kCounter, MakeUploading(201, v1::Uploading::PROCESSED));
  for (int i = 0; i < 3; ++i) {
    for (auto& w : on[i]) {
      EXPECT_TRUE(w->WaitFor(v1::Uploading::PROCESSED, absl::Seconds(10)))
          << "replica " << i << " uploading " << w->id();
    }
  }
}

// `n` Gets of distinct uploadings (no coalescing), spread over the replicas,
// all at once; how many succeeded.
int ParallelGets(std::vector<std::unique_ptr<Replica>>& replicas, int64_t first,
                 int n) {
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      if (replicas[i % replicas.size()]->Get(first + i, nullptr).ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  return ok.load();
}

TEST_F(MultiReplicaTest, SlowGetsOverThreeReplicasStayWithinTheTokensCap) {
  for (int id = 100; id < 124; ++id) {
    metrica_->AddUploading(kCounter, MakeUploading(id, v1::Uploading::PROCESSED));
  }
  FakeMetrica::Fault slow;
  slow.path_substring = "/uploading/";
  slow.times = -1;
  slow.delay = absl::Milliseconds(300);
  metrica_->InjectFault(slow);
  StartReplicas(3);
  metrica_->ClearRequests();
  EXPECT_EQ(ParallelGets(replicas_, 100, 24), 24);
  std::printf("FIGURE most Gets at Metrica at once for one token, 3 replicas "
              "on Redis: %d\n", metrica_->max_in_flight(kToken));
  EXPECT_LE(metrica_->max_in_flight(kToken), 3);
  EXPECT_GE(metrica_->max_in_flight(kToken), 2);  // they did run in parallel
  // Redis down: each replica alone, at --redis_fallback_parallel (1).
  redis_.Kill();
  ASSERT_TRUE(EveryReplicasRedisHealthBecomes(HealthCheckResponse::NOT_SERVING,
                                              absl::Seconds(5)));
  for (int id = 200; id < 212; ++id) {
    metrica_->AddUploading(kCounter, MakeUploading(id, v1::Uploading::PROCESSED));
  }
  metrica_->ClearRequests();
  EXPECT_EQ(ParallelGets(replicas_, 200, 12), 12);
  std::printf("FIGURE most Gets at Metrica at once, Redis down: %d\n",
              metrica_->max_in_flight(kToken));
  EXPECT_LE(metrica_->max_in_flight(kToken), 3);  // 3 replicas x 1
}

// Upstream requests of `token` in the simulator's log.
int RequestsOf(const FakeMetrica& metrica, const std::string& token) {
  int n = 0;
  for (const auto& r : metrica.requests()) n += r.token == token;
  return n;
}

TEST_F(MultiReplicaTest, SlowGetsOverThreeReplicasNeverOverspendTheSharedBudget) {
  constexpr int kBudget = 9;
  for (int id = 300; id < 330; ++id) {
    metrica_->AddUploading(kCounter, MakeUploading(id, v1::Uploading::PROCESSED));
  }
  FakeMetrica::Fault slow;
  slow.path_substring = "/uploading/";
  slow.times = -1;
  slow.delay = absl::Milliseconds(300);
  metrica_->InjectFault(slow);
  // Callers may spend the whole budget (no part kept for watches), each its
  // own caller: what limits them is the budget shared by the replicas; each
  // replica alone would allow kBudget.
  StartReplicas(3, /*shared=*/true,
                {absl::StrCat("--daily_budget=", kBudget),
                 "--budget_reserve=1", "--caller_budget_share=1"});
  metrica_->ClearRequests();
  std::vector<grpc::StatusCode> codes(30);
  std::vector<std::thread> threads;
  for (int i = 0; i < 30; ++i) {
    threads.emplace_back([&, i] {
      codes[i] = replicas_[i % 3]->Get(300 + i, nullptr).error_code();
    });
  }
  for (auto& t : threads) t.join();
  const int ok = std::count(codes.begin(), codes.end(), grpc::StatusCode::OK);
  const int spent = std::count(codes.begin(), codes.end(),
                               grpc::StatusCode::RESOURCE_EXHAUSTED);
  const int sent = RequestsOf(*metrica_, kToken);
  std::printf("FIGURE 30 Gets over 3 replicas, shared daily budget %d: %d "
              "sent to Metrica, %d answered, %d refused (budget spent); at "
              "most %d at once\n",
              kBudget, sent, ok, spent, metrica_->max_in_flight(kToken));
  EXPECT_LE(sent, kBudget);  // never overspent, over all three replicas
  EXPECT_EQ(ok, sent);       // every request sent was a Get answered
  EXPECT_GE(ok, kBudget - 1);  // and the budget was used, not refused early
  EXPECT_EQ(ok + spent, 30);
  EXPECT_LE(metrica_->max_in_flight(kToken), 3);
  // The shared count in Redis says the same (the day of the default
  // --daily_reset_zone, conservative: UTC).
  const std::string day =
      absl::FormatTime("%Y-%m-%d", absl::Now(), absl::UTCTimeZone());
  EXPECT_EQ(redis_.Integer({"GET", absl::StrCat(kPrefix, "budget:",
                                                Credentials(kToken).fingerprint(),
                                                ":", day)}),
            sent);
  // More Gets later, on any replica: still refused, nothing sent.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(replicas_[i]->Get(340 + i, nullptr).error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  EXPECT_EQ(RequestsOf(*metrica_, kToken), sent);
}

TEST_F(MultiReplicaTest, WatchersOnOtherReplicasSeeTheHoldersStates) {
  metrica_->AddUploading(kCounter, MakeUploading(3, v1::Uploading::MATCHED));
  StartReplicas(3);
  // Replica 0 knows the state from a Get (nothing published: nobody
  // watched), and its watcher gets it from that cache: when it polls as the
  // holder, unchanged, the others' watchers must still get a first state.
  ASSERT_TRUE(replicas_[0]->Get(3, nullptr).ok());
  std::vector<std::unique_ptr<Watch>> watches;
  watches.push_back(std::make_unique<Watch>(replicas_[0]->channel(), 3));
  ASSERT_TRUE(watches[0]->WaitFor(v1::Uploading::MATCHED, absl::Seconds(10)));
  for (size_t i = 1; i < replicas_.size(); ++i) {
    watches.push_back(std::make_unique<Watch>(replicas_[i]->channel(), 3));
  }
  for (auto& w : watches) {
    ASSERT_TRUE(w->WaitFor(v1::Uploading::MATCHED, absl::Seconds(10)));
  }
  int holder = -1;
  ASSERT_TRUE(Eventually([&] { return (holder = Holder(3)) >= 0; },
                         absl::Seconds(5)));
  metrica_->SetUploading(kCounter, MakeUploading(3, v1::Uploading::PROCESSED));
  std::optional<absl::Time> polled =
      watches[holder]->WaitFor(v1::Uploading::PROCESSED, absl::Seconds(10));
  ASSERT_TRUE(polled.has_value());
  for (size_t i = 0; i < watches.size(); ++i) {
    std::optional<absl::Time> at =
        watches[i]->WaitFor(v1::Uploading::PROCESSED, absl::Seconds(10));
    ASSERT_TRUE(at.has_value()) << "replica " << i;
    if (static_cast<int>(i) != holder) {
      // Redis in between: publish, XREAD, deliver.
      std::printf("FIGURE a non-polling replica's watcher got the change %s "
                  "after the polling replica's\n",
                  absl::FormatDuration(*at - *polled).c_str());
      EXPECT_LT(*at - *polled, absl::Seconds(1));
    }
    // The same versions on every replica: the holder's.
    EXPECT_EQ(watches[i]->versions(), watches[holder]->versions())
        << "replica " << i;
  }
}

TEST_F(MultiReplicaTest, KillingThePollerMovesThePollWithinTheLeaseTime) {
  metrica_->AddUploading(kCounter, MakeUploading(4, v1::Uploading::MATCHED));
  StartReplicas(3);
  std::vector<std::unique_ptr<Watch>> watches;
  for (auto& r : replicas_) watches.push_back(std::make_unique<Watch>(r->channel(), 4));
  for (auto& w : watches) {
    ASSERT_TRUE(w->WaitFor(v1::Uploading::MATCHED, absl::Seconds(10)));
  }
  int holder = -1;
  ASSERT_TRUE(Eventually([&] { return (holder = Holder(4)) >= 0; },
                         absl::Seconds(5)));
  metrica_->SetUploading(kCounter, MakeUploading(4, v1::Uploading::UPLOADED));
  for (auto& w : watches) {
    ASSERT_TRUE(w->WaitFor(v1::Uploading::UPLOADED, absl::Seconds(10)));
  }
  const int64_t version_before = watches[(holder + 1) % 3]->versions().back();
  replicas_[holder]->Kill();
  const absl::Time killed = absl::Now();
  metrica_->SetUploading(kCounter, MakeUploading(4, v1::Uploading::PROCESSED));
  for (int i = 0; i < 3; ++i) {
    if (i == holder) continue;
    std::optional<absl::Time> at =
        watches[i]->WaitFor(v1::Uploading::PROCESSED, absl::Seconds(10));
    ASSERT_TRUE(at.has_value()) << "replica " << i;
    // The lease (1.5 s) expires, a survivor takes it and polls (200 ms).
    EXPECT_LT(*at - killed, absl::Seconds(4)) << "replica " << i;
    std::printf("FIGURE terminal state on a survivor %s after the SIGKILL\n",
                absl::FormatDuration(*at - killed).c_str());
    // Versions went on from the dead holder's.
    EXPECT_GT(watches[i]->versions().back(), version_before);
  }
  const int new_holder = Holder(4);
  EXPECT_NE(new_holder, holder);
}

TEST_F(MultiReplicaTest, RedisDownMeansLocalPollingThenSharedAgain) {
  metrica_->AddUploading(kCounter, MakeUploading(5, v1::Uploading::MATCHED));
  StartReplicas(3);
  std::vector<std::unique_ptr<Watch>> watches;
  for (auto& r : replicas_) watches.push_back(std::make_unique<Watch>(r->channel(), 5));
  for (auto& w : watches) {
    ASSERT_TRUE(w->WaitFor(v1::Uploading::MATCHED, absl::Seconds(10)));
  }
  EXPECT_TRUE(EveryReplicasRedisHealthBecomes(HealthCheckResponse::SERVING,
                                              absl::Seconds(5)));
  redis_.Kill();
  for (auto& r : replicas_) {
    EXPECT_TRUE(Eventually(
        [&] {
          return r->Health(kRedisHealthService) == HealthCheckResponse::NOT_SERVING;
        },
        absl::Seconds(5)));
    // Degraded, not down: the load balancer keeps sending calls.
    EXPECT_EQ(r->Health(""), HealthCheckResponse::SERVING);
    v1::Uploading u;
    EXPECT_TRUE(r->Get(5, &u).ok());
    EXPECT_EQ(u.status(), v1::Uploading::MATCHED);
  }
  // Each replica polls on its own now: every watcher still sees changes.
  metrica_->SetUploading(kCounter, MakeUploading(5, v1::Uploading::UPLOADED));
  for (auto& w : watches) {
    EXPECT_TRUE(w->WaitFor(v1::Uploading::UPLOADED, absl::Seconds(10)));
  }
  ASSERT_TRUE(redis_.Start().ok());  // same port, empty
  EXPECT_TRUE(EveryReplicasRedisHealthBecomes(HealthCheckResponse::SERVING,
                                              absl::Seconds(15)));
  // Shared again: one lease, one poller.
  EXPECT_TRUE(Eventually([&] { return Holder(5) >= 0; }, absl::Seconds(10)));
  absl::SleepFor(absl::Seconds(2));
  const int before = Gets(5);
  absl::SleepFor(absl::Seconds(3));
  const double shared_rate = (Gets(5) - before) / 3.0;
  std::printf("FIGURE Gets/s after Redis came back: %.2f\n", shared_rate);
  EXPECT_LE(shared_rate, 5.0 * 1.3 + 0.5);  // one poller every 200 ms, not 3
  metrica_->SetUploading(kCounter, MakeUploading(5, v1::Uploading::PROCESSED));
  for (auto& w : watches) {
    EXPECT_TRUE(w->WaitFor(v1::Uploading::PROCESSED, absl::Seconds(10)));
  }
}

// A counter watch polls the counter on its own replica (counter watches are
// not leased), so that replica can see, and number, a change before the
// uploading's holder does. The holder must then number after it: otherwise
// its next versions are ignored there (the watchers of that replica miss
// changes) and a client moving between the two sees versions go back.
TEST_F(MultiReplicaTest, ACounterWatchOnANonPollingReplicaNeverMakesVersionsDiverge) {
  auto state = [](v1::Uploading::Status status, int linked) {
    v1::Uploading u = MakeUploading(6, status);
    u.set_linked_quantity(linked);
    return u;
  };
  metrica_->AddUploading(kCounter, state(v1::Uploading::UPLOADED, 0));
  // A lease of 9 s outlives the holder's pause below (at most 5 s; renewed
  // every 3 s).
  StartReplicas(2, /*shared=*/true, {"--redis_lease_ttl=9s"});
  std::vector<std::unique_ptr<Watch>> watches;
  for (auto& r : replicas_) watches.push_back(std::make_unique<Watch>(r->channel(), 6));
  for (auto& w : watches) {
    ASSERT_TRUE(w->WaitFor(v1::Uploading::UPLOADED, absl::Seconds(10)));
  }
  int holder = -1;
  ASSERT_TRUE(Eventually([&] { return (holder = Holder(6)) >= 0; },
                         absl::Seconds(5)));
  const int other = 1 - holder;
  CounterStream counter(replicas_[other]->channel());
  ASSERT_TRUE(counter.WaitSynced(absl::Seconds(10)).has_value());
  // The holder stalls; counter watches opened on the other replica see two
  // changes in their snapshot lists (the replica's own requests: counter
  // watches are polled by the holder alone, but a snapshot is listed where
  // the watch is).
  replicas_[holder]->Pause();
  metrica_->SetUploading(kCounter, state(v1::Uploading::UPLOADED, 1));
  // Past the list cache (--cache_ttl=100ms): the snapshot is listed anew.
  absl::SleepFor(absl::Milliseconds(300));
  {
    CounterStream look(replicas_[other]->channel());
    EXPECT_TRUE(look.WaitSynced(absl::Milliseconds(2500)).has_value());
  }
  EXPECT_TRUE(Eventually([&] { return watches[other]->count() >= 2; },
                         absl::Milliseconds(2500)));
  metrica_->SetUploading(kCounter, state(v1::Uploading::EXPORTED, 1));
  absl::SleepFor(absl::Milliseconds(300));
  {
    CounterStream look(replicas_[other]->channel());
    EXPECT_TRUE(look.WaitSynced(absl::Milliseconds(2500)).has_value());
  }
  EXPECT_TRUE(watches[other]->WaitFor(v1::Uploading::EXPORTED,
                                      absl::Milliseconds(2500)));
  replicas_[holder]->Resume();
  ASSERT_TRUE(watches[holder]->WaitFor(v1::Uploading::EXPORTED, absl::Seconds(10)));
  // The holder polls on: its next changes reach the other replica's watcher.
  metrica_->SetUploading(kCounter, state(v1::Uploading::MATCHED, 1));
  for (auto& w : watches) {
    EXPECT_TRUE(w->WaitFor(v1::Uploading::MATCHED, absl::Seconds(10)));
  }
  EXPECT_EQ(Holder(6), holder);  // the lease never moved
  metrica_->SetUploading(kCounter, state(v1::Uploading::PROCESSED, 1));
  for (auto& w : watches) {
    EXPECT_TRUE(w->WaitFor(v1::Uploading::PROCESSED, absl::Seconds(10)));
  }
  const std::vector<int64_t> on_holder = watches[holder]->versions();
  const std::vector<int64_t> on_other = watches[other]->versions();
  std::printf("FIGURE versions on the holder %s, on the replica with the "
              "counter watch %s\n",
              absl::StrJoin(on_holder, ",").c_str(),
              absl::StrJoin(on_other, ",").c_str());
  EXPECT_TRUE(Increasing(on_holder));
  EXPECT_TRUE(Increasing(on_other));
  ASSERT_FALSE(on_holder.empty());
  ASSERT_FALSE(on_other.empty());
  EXPECT_EQ(on_holder.back(), on_other.back());  // one numbering again
  // A client of the other replica re-watching on the holder (and back):
  // never a version below the last it saw.
  for (int to : {holder, other}) {
    Watch again(replicas_[to]->channel(), 6);
    ASSERT_TRUE(again.WaitFor(v1::Uploading::PROCESSED, absl::Seconds(10)));
    EXPECT_GE(again.versions().front(), on_other.back()) << "replica " << to;
  }
}

// A WatchUploadings token whose position the changes stream no longer holds
// (older than its first entry: trimmed away) gets the documented answer on
// any replica, `reset` and a full snapshot, never a wrong catch-up; the
// token a replica issued resumes there.
TEST_F(MultiReplicaTest, ATokenTrimmedAwayGetsAResetAndASnapshot) {
  for (int id = 20; id < 23; ++id) {
    metrica_->AddUploading(kCounter, MakeUploading(id, v1::Uploading::PROCESSED));
  }
  StartReplicas(2);
  std::string token;
  {
    CounterStream first(replicas_[0]->channel());
    auto snapshot = first.WaitSynced(absl::Seconds(10));
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_FALSE(snapshot->front().reset());
    token = first.last_token();
  }
  ASSERT_FALSE(token.empty());
  absl::StatusOr<ResumeToken> decoded = DecodeResumeToken(token);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  absl::StatusOr<ResumeToken> trimmed = SharedResumeToken(
      decoded->fingerprint_hash, decoded->counter_id, decoded->type, "1-0");
  ASSERT_TRUE(trimmed.ok());
  {
    CounterStream moved(replicas_[1]->channel(), EncodeResumeToken(*trimmed));
    auto messages = moved.WaitSynced(absl::Seconds(10));
    ASSERT_TRUE(messages.has_value());
    EXPECT_TRUE(messages->front().reset());  // drop what you hold
    std::set<int64_t> ids;
    for (const auto& m : *messages) {
      for (const auto& e : m.events()) {
        EXPECT_EQ(e.type(), v1::UploadingEvent::ADDED);
        ids.insert(e.uploading().id());
      }
    }
    EXPECT_EQ(ids, (std::set<int64_t>{20, 21, 22}));  // the whole counter
  }
  CounterStream back(replicas_[0]->channel(), token);
  auto resumed = back.WaitSynced(absl::Seconds(10));
  ASSERT_TRUE(resumed.has_value());
  EXPECT_FALSE(resumed->front().reset());
  for (const auto& m : *resumed) EXPECT_EQ(m.events_size(), 0);  // nothing new
}

// Resume tokens mean the same on every replica: a client whose counter
// watch ended (its replica SIGKILLed, or the watch cancelled) resumes on
// another replica with its last token and gets no reset, exactly the
// changes it missed, then live ones, never a duplicate.
// A replica that never saw the counter numbers its uploadings from 1, below
// the versions the stream gave them: a change it polls is still shown to
// the resumed client (and what the client holds is not shown again).
TEST_F(MultiReplicaTest, AResumeOnAReplicaThatNumbersOnItsOwnMissesNoChange) {
  metrica_->AddUploading(kCounter, MakeUploading(800, v1::Uploading::UPLOADED));
  metrica_->AddUploading(kCounter, MakeUploading(801, v1::Uploading::UPLOADED));
  StartReplicas(2);
  std::string token;
  {
    CounterStream first(replicas_[0]->channel());
    ASSERT_TRUE(first.WaitSynced(absl::Seconds(10)).has_value());
    metrica_->SetUploading(kCounter, MakeUploading(800, v1::Uploading::MATCHED));
    ASSERT_TRUE(first.WaitLive(800, v1::Uploading::MATCHED, absl::Seconds(10)));
    // The token of the very message that showed the change: the holder
    // wrote it once the change's own entry was read back, so it covers it
    // (before, it carried the position before it, and the resume below
    // showed MATCHED again).
    token = first.TokenOf(800, v1::Uploading::MATCHED);
    absl::StatusOr<ResumeToken> t = DecodeResumeToken(token);
    ASSERT_TRUE(t.ok());
    ASSERT_EQ(t->format, ResumeToken::kSharedFormat);
  }
  // Nobody watches: nobody polls, the change goes to no stream.
  metrica_->SetUploading(kCounter, MakeUploading(800, v1::Uploading::PROCESSED));
  CounterStream resumed(replicas_[1]->channel(), token);
  auto caught_up = resumed.WaitSynced(absl::Seconds(10));
  ASSERT_TRUE(caught_up.has_value());
  EXPECT_FALSE(caught_up->front().reset());
  ASSERT_TRUE(resumed.WaitLive(800, v1::Uploading::PROCESSED, absl::Seconds(10)))
      << "replica 1's own poll (its version 1) must still reach the client";
  absl::SleepFor(absl::Milliseconds(600));  // give a duplicate the time to come
  std::vector<std::pair<int64_t, v1::Uploading::Status>> shown;
  for (const auto& m : *caught_up) {
    for (const auto& e : m.events()) {
      shown.emplace_back(e.uploading().id(), e.uploading().status());
    }
  }
  for (const auto& e : resumed.live_events()) {
    shown.emplace_back(e.uploading().id(), e.uploading().status());
  }
  EXPECT_EQ(shown, (std::vector<std::pair<int64_t, v1::Uploading::Status>>{
                       {800, v1::Uploading::PROCESSED}}));
}

// The holder writes a counter watch's live message once it has read the
// change's own entry back from the changes stream (its relay), so that the
// message's own token covers it: resumed on another replica at once, it
// catches up on nothing. What that wait costs: the counter watch's message
// against a WatchUploading watcher's on the same replica.
TEST_F(MultiReplicaTest, AHoldersLiveMessageCarriesAPositionPastItsChange) {
  metrica_->AddUploading(kCounter, MakeUploading(900, v1::Uploading::UPLOADED));
  metrica_->AddUploading(kCounter, MakeUploading(901, v1::Uploading::UPLOADED));
  std::vector<std::unique_ptr<CounterStream>> streams;
  int holder = -1;
  ASSERT_NO_FATAL_FAILURE(ACounterWatchOnEachOfThree(streams, holder));
  const int other = (holder + 1) % 3;
  Watch single(replicas_[holder]->channel(), 900);
  ASSERT_TRUE(single.WaitFor(v1::Uploading::UPLOADED, absl::Seconds(10)));
  std::vector<double> behind_ms;
  const v1::Uploading::Status statuses[] = {
      v1::Uploading::EXPORTED, v1::Uploading::MATCHED, v1::Uploading::UPLOADED,
      v1::Uploading::EXPORTED, v1::Uploading::MATCHED};
  for (v1::Uploading::Status status : statuses) {
    const size_t seen = single.count();
    const size_t live = streams[holder]->live_events().size();
    metrica_->SetUploading(kCounter, MakeUploading(900, status));
    ASSERT_TRUE(
        streams[holder]->WaitLive(900, status, absl::Seconds(10), live));
    absl::Time counter_at;
    const std::string token = streams[holder]->TokenOf(900, status, &counter_at);
    // The WatchUploading watcher's message of this change (statuses come
    // round again: one after those it had).
    std::optional<absl::Time> single_at =
        single.WaitFor(status, absl::Seconds(10), seen);
    ASSERT_TRUE(single_at.has_value());
    behind_ms.push_back(absl::ToDoubleMilliseconds(counter_at - *single_at));
    absl::StatusOr<ResumeToken> t = DecodeResumeToken(token);
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_EQ(t->format, ResumeToken::kSharedFormat);
    CounterStream resumed(replicas_[other]->channel(), token);
    auto caught_up = resumed.WaitSynced(absl::Seconds(10));
    ASSERT_TRUE(caught_up.has_value());
    for (const auto& m : *caught_up) {
      EXPECT_FALSE(m.reset());
      EXPECT_EQ(m.events_size(), 0)
          << "the client holds " << v1::Uploading::Status_Name(status)
          << " already: " << m.ShortDebugString();
    }
  }
  std::sort(behind_ms.begin(), behind_ms.end());
  std::printf("FIGURE holder: a counter watch's live message %.1f ms (median; "
              "%.1f..%.1f) after a WatchUploading watcher's of the same change\n",
              behind_ms[behind_ms.size() / 2], behind_ms.front(),
              behind_ms.back());
}

// A replica with no counter watch of the counter yet (it follows no
// changes stream, has read none of it): the resume waits until it follows
// the stream, then catches up from Redis -- no reset, what was missed, then
// live.
TEST_F(MultiReplicaTest, AResumeOnAReplicaThatFollowsNothingYetCatchesUp) {
  metrica_->AddUploading(kCounter, MakeUploading(950, v1::Uploading::UPLOADED));
  metrica_->AddUploading(kCounter, MakeUploading(951, v1::Uploading::UPLOADED));
  StartReplicas(2);
  std::string token;
  {
    auto first = std::make_unique<CounterStream>(replicas_[0]->channel());
    ASSERT_TRUE(first->WaitSynced(absl::Seconds(10)).has_value());
    metrica_->SetUploading(kCounter, MakeUploading(950, v1::Uploading::MATCHED));
    ASSERT_TRUE(first->WaitLive(950, v1::Uploading::MATCHED, absl::Seconds(10)));
    token = first->TokenOf(950, v1::Uploading::MATCHED);
    // The client goes; a change it misses is relayed while another watch
    // keeps replica 0 polling.
    CounterStream keeper(replicas_[0]->channel());
    ASSERT_TRUE(keeper.WaitSynced(absl::Seconds(10)).has_value());
    first.reset();
    metrica_->SetUploading(kCounter, MakeUploading(951, v1::Uploading::MATCHED));
    ASSERT_TRUE(keeper.WaitLive(951, v1::Uploading::MATCHED, absl::Seconds(10)));
  }
  absl::StatusOr<ResumeToken> t = DecodeResumeToken(token);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->format, ResumeToken::kSharedFormat);
  CounterStream resumed(replicas_[1]->channel(), token);
  auto caught_up = resumed.WaitSynced(absl::Seconds(10));
  ASSERT_TRUE(caught_up.has_value());
  std::vector<std::pair<int64_t, v1::Uploading::Status>> missed;
  for (const auto& m : *caught_up) {
    EXPECT_FALSE(m.reset());
    for (const auto& e : m.events()) {
      missed.emplace_back(e.uploading().id(), e.uploading().status());
    }
  }
  EXPECT_EQ(missed, (std::vector<std::pair<int64_t, v1::Uploading::Status>>{
                        {951, v1::Uploading::MATCHED}}));
  metrica_->SetUploading(kCounter, MakeUploading(950, v1::Uploading::PROCESSED));
  ASSERT_TRUE(resumed.WaitLive(950, v1::Uploading::PROCESSED, absl::Seconds(10)));
}

// Poll rounds that change nothing move a counter watch's check_time on the
// holder (its own polls confirm the states); a non-holder gets them from the
// holder's confirmations entries on the changes stream, so "checked N s ago"
// is true on every replica. Bookmarks every second carry it here.
TEST_F(MultiReplicaTest, ACounterWatchOnANonHolderGetsTheHoldersConfirmations) {
  metrica_->AddUploading(kCounter, MakeUploading(960, v1::Uploading::UPLOADED));
  metrica_->AddUploading(kCounter, MakeUploading(961, v1::Uploading::UPLOADED));
  StartReplicas(2, /*shared=*/true, {"--bookmark_interval=1s"});
  CounterStream first(replicas_[0]->channel());
  ASSERT_TRUE(first.WaitSynced(absl::Seconds(10)).has_value());
  int holder = -1;
  ASSERT_TRUE(Eventually([&] { return (holder = Holder(0)) >= 0; },
                         absl::Seconds(5)));
  const int other = 1 - holder;
  CounterStream on_other(replicas_[other]->channel());
  ASSERT_TRUE(on_other.WaitSynced(absl::Seconds(10)).has_value());
  const std::string stream = ChangesStreamKey();
  const long long entries_before = redis_.Integer({"XLEN", stream});
  const absl::Time start = absl::Now();
  const absl::Time synced_check = on_other.CheckTimes().front().second;
  // Nothing changes in Metrica: only confirmations can move it.
  ASSERT_TRUE(Eventually(
      [&] {
        return on_other.CheckTimes().back().second > synced_check + absl::Seconds(3);
      },
      absl::Seconds(15)))
      << "the non-holder's check_time stayed at the snapshot's";
  const double window = absl::ToDoubleSeconds(absl::Now() - start);
  const long long entries = redis_.Integer({"XLEN", stream}) - entries_before;
  // How old the confirmation a message carries is when it arrives: within
  // the holder's confirmation interval (5 s) and a bookmark interval.
  double worst = 0;
  for (const auto& [arrived, checked] : on_other.CheckTimes()) {
    if (arrived < start + absl::Seconds(2)) continue;  // snapshot's, still
    worst = std::max(worst, absl::ToDoubleSeconds(arrived - checked));
  }
  EXPECT_LT(worst, 5.0 + 1.0 + 2.0) << "a confirmation older than the holder's interval";
  EXPECT_GT(entries, 0);
  std::printf("FIGURE non-holder counter watch: check_time at most %.1f s old "
              "when a bookmark (every 1 s) arrived; %lld confirmations entries "
              "in %.1f s (200 ms polls)\n",
              worst, entries, window);
}

// While Redis does not answer, a counter watch shows each replica's own
// polls and its position stays; the states it sent meanwhile travel in its
// token (held beyond the position), so a resume elsewhere once Redis is
// back -- whose catch-up has the holder's relay of the same state, renumbered
// -- does not show them again.
TEST_F(MultiReplicaTest, StatesShownInDegradedModeAreNotShownAgainByAResume) {
  metrica_->AddUploading(kCounter, MakeUploading(810, v1::Uploading::UPLOADED));
  metrica_->AddUploading(kCounter, MakeUploading(811, v1::Uploading::UPLOADED));
  StartReplicas(2);
  std::vector<std::unique_ptr<CounterStream>> streams;
  for (auto& r : replicas_) {
    streams.push_back(std::make_unique<CounterStream>(r->channel()));
    ASSERT_TRUE(streams.back()->WaitSynced(absl::Seconds(10)).has_value());
  }
  int holder = -1;
  ASSERT_TRUE(Eventually([&] { return (holder = Holder(0)) >= 0; },
                         absl::Seconds(5)));
  const int other = 1 - holder;
  const std::string stream = ChangesStreamKey();
  const long long entries_before = redis_.Integer({"XLEN", stream});
  redis_.Pause();  // holds the connections, answers nothing, keeps its data
  ASSERT_TRUE(EveryReplicasRedisHealthBecomes(HealthCheckResponse::NOT_SERVING,
                                              absl::Seconds(15)));
  metrica_->SetUploading(kCounter, MakeUploading(810, v1::Uploading::MATCHED));
  ASSERT_TRUE(streams[other]->WaitLive(810, v1::Uploading::MATCHED,
                                       absl::Seconds(10)));
  const std::string token = streams[other]->TokenOf(810, v1::Uploading::MATCHED);
  absl::StatusOr<ResumeToken> t = DecodeResumeToken(token);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->format, ResumeToken::kSharedFormat);
  ASSERT_EQ(t->held.size(), 1u);
  EXPECT_EQ(t->held[0].first, 810);
  streams[other].reset();
  redis_.Resume();
  ASSERT_TRUE(EveryReplicasRedisHealthBecomes(HealthCheckResponse::SERVING,
                                              absl::Seconds(15)));
  // The holder relays 810's MATCHED (numbered after the outage) once Redis
  // is back: a catch-up from the token's position finds it.
  ASSERT_TRUE(Eventually(
      [&] { return redis_.Integer({"XLEN", stream}) > entries_before; },
      absl::Seconds(10)));
  CounterStream resumed(replicas_[holder]->channel(), token);
  auto caught_up = resumed.WaitSynced(absl::Seconds(10));
  ASSERT_TRUE(caught_up.has_value());
  for (const auto& m : *caught_up) {
    EXPECT_FALSE(m.reset());
    EXPECT_EQ(m.events_size(), 0) << "the client holds it: " << m.ShortDebugString();
  }
  ASSERT_NO_FATAL_FAILURE(
      ChangeAndSeeItLiveOnce(resumed, 810, v1::Uploading::PROCESSED));
}

// On the holder the resumed watch is shown every uploading by the next
// round, changed or not: only those it missed may reach the client.
TEST_F(MultiReplicaTest, AResumeTokenOfTheHolderCarriesOnOnTheNextHolder) {
  ResumeOnAnotherReplica(/*from_holder=*/true, /*to_holder=*/true);
}

TEST_F(MultiReplicaTest, AResumeTokenOfANonHolderCarriesOnOnTheHolder) {
  ResumeOnAnotherReplica(/*from_holder=*/false, /*to_holder=*/true);
}

TEST_F(MultiReplicaTest, AResumeTokenOfANonHolderCarriesOnOnAnotherNonHolder) {
  ResumeOnAnotherReplica(/*from_holder=*/false, /*to_holder=*/false);
}

// While Redis is down every replica numbers what it polls on its own, so a
// replica that saw more changes is ahead. When Redis is back, whoever holds
// the lease, every watcher still gets the next change, all end on one
// version, and a client re-watching anywhere never gets a lower one.
TEST_F(MultiReplicaTest, AfterDegradedModeVersionsGoOnFromTheHighestShown) {
  metrica_->AddUploading(kCounter, MakeUploading(7, v1::Uploading::UPLOADED));
  StartReplicas(3);
  std::vector<std::unique_ptr<Watch>> watches;
  for (auto& r : replicas_) watches.push_back(std::make_unique<Watch>(r->channel(), 7));
  for (auto& w : watches) {
    ASSERT_TRUE(w->WaitFor(v1::Uploading::UPLOADED, absl::Seconds(10)));
  }
  redis_.Kill();
  ASSERT_TRUE(EveryReplicasRedisHealthBecomes(HealthCheckResponse::NOT_SERVING,
                                              absl::Seconds(5)));
  // Replica 0 alone sees two changes; the others wake up to the second.
  replicas_[1]->Pause();
  replicas_[2]->Pause();
  metrica_->SetUploading(kCounter, MakeUploading(7, v1::Uploading::EXPORTED));
  EXPECT_TRUE(watches[0]->WaitFor(v1::Uploading::EXPORTED, absl::Seconds(5)));
  metrica_->SetUploading(kCounter, MakeUploading(7, v1::Uploading::MATCHED));
  EXPECT_TRUE(watches[0]->WaitFor(v1::Uploading::MATCHED, absl::Seconds(5)));
  replicas_[1]->Resume();
  replicas_[2]->Resume();
  for (auto& w : watches) {
    ASSERT_TRUE(w->WaitFor(v1::Uploading::MATCHED, absl::Seconds(10)));
  }
  std::printf("FIGURE versions while Redis was down: %s / %s / %s\n",
              absl::StrJoin(watches[0]->versions(), ",").c_str(),
              absl::StrJoin(watches[1]->versions(), ",").c_str(),
              absl::StrJoin(watches[2]->versions(), ",").c_str());
  ASSERT_TRUE(redis_.Start().ok());  // same port, empty
  ASSERT_TRUE(EveryReplicasRedisHealthBecomes(HealthCheckResponse::SERVING,
                                              absl::Seconds(15)));
  int holder = -1;
  ASSERT_TRUE(Eventually([&] { return (holder = Holder(7)) >= 0; },
                         absl::Seconds(10)));
  metrica_->SetUploading(kCounter, MakeUploading(7, v1::Uploading::PROCESSED));
  for (size_t i = 0; i < watches.size(); ++i) {
    EXPECT_TRUE(watches[i]->WaitFor(v1::Uploading::PROCESSED, absl::Seconds(10)))
        << "replica " << i << " (holder " << holder << ")";
  }
  int64_t highest = 0;
  for (size_t i = 0; i < watches.size(); ++i) {
    const std::vector<int64_t> v = watches[i]->versions();
    std::printf("FIGURE versions on replica %zu (holder %d): %s\n", i, holder,
                absl::StrJoin(v, ",").c_str());
    EXPECT_TRUE(Increasing(v)) << "replica " << i;
    ASSERT_FALSE(v.empty());
    highest = std::max(highest, v.back());
  }
  for (size_t i = 0; i < watches.size(); ++i) {
    EXPECT_EQ(watches[i]->versions().back(), highest) << "replica " << i;
    Watch again(replicas_[i]->channel(), 7);
    ASSERT_TRUE(again.WaitFor(v1::Uploading::PROCESSED, absl::Seconds(10)));
    EXPECT_GE(again.versions().front(), highest) << "replica " << i;
  }
}

// Counter watches (WatchUploadings) of one counter, one on each of three
// replicas: the group's lease holder lists the counter for all of them, one
// List per interval, what one replica with three counter watches costs (each
// replica polled its own before: three Lists per interval).
TEST_F(MultiReplicaTest, CounterWatchesOnThreeReplicasListTheCounterOnce) {
  for (int64_t id = 300; id < 310; ++id) {
    metrica_->AddUploading(kCounter, MakeUploading(id, v1::Uploading::MATCHED));
  }
  const absl::Duration window = absl::Seconds(4);
  auto measure = [&] {
    std::vector<std::unique_ptr<CounterStream>> streams;
    for (int i = 0; i < 3; ++i) {
      streams.push_back(std::make_unique<CounterStream>(
          replicas_[i % replicas_.size()]->channel()));
    }
    for (auto& s : streams) {
      EXPECT_TRUE(s->WaitSynced(absl::Seconds(10)).has_value());
    }
    absl::SleepFor(absl::Seconds(1));  // past the snapshots' lists
    const int before = CounterRequests(*metrica_);
    absl::SleepFor(window);
    return (CounterRequests(*metrica_) - before) / absl::ToDoubleSeconds(window);
  };
  StartReplicas(1, /*shared=*/false);
  const double one = measure();
  replicas_.clear();
  StartReplicas(3);
  const double three = measure();
  std::printf("FIGURE upstream requests/s for 3 counter watches of one "
              "counter: 1 replica %.2f, 3 replicas on Redis (one watch on "
              "each) %.2f\n",
              one, three);
  EXPECT_GT(one, 1.0);  // it polls (every 200 ms)
  EXPECT_GT(three, 1.0);
  EXPECT_LE(three, one * 1.3 + 0.5);  // not one List per replica
}

// A counter watch on a replica that does not poll the counter gets the
// holder's news relayed: a new uploading as ADDED, a change as MODIFIED,
// each once.
TEST_F(MultiReplicaTest, ACounterWatchOnANonHolderGetsAddedAndModified) {
  metrica_->AddUploading(kCounter, MakeUploading(400, v1::Uploading::UPLOADED));
  metrica_->AddUploading(kCounter, MakeUploading(401, v1::Uploading::UPLOADED));
  std::vector<std::unique_ptr<CounterStream>> streams;
  int holder = -1;
  ASSERT_NO_FATAL_FAILURE(ACounterWatchOnEachOfThree(streams, holder));
  const int other = (holder + 1) % 3;
  metrica_->AddUploading(kCounter, MakeUploading(402, v1::Uploading::UPLOADED));
  metrica_->SetUploading(kCounter, MakeUploading(400, v1::Uploading::PROCESSED));
  const absl::Time changed = absl::Now();
  for (int i : {other, holder}) {
    std::optional<absl::Time> added = streams[i]->WaitLive(
        402, v1::Uploading::UPLOADED, absl::Seconds(10));
    EXPECT_TRUE(added.has_value())
        << "replica " << i << " (holder " << holder << ")";
    std::optional<absl::Time> at = streams[i]->WaitLive(
        400, v1::Uploading::PROCESSED, absl::Seconds(10));
    EXPECT_TRUE(at.has_value()) << "replica " << i;
    if (added && at) {
      std::printf("FIGURE an ADDED / a MODIFIED reached the %s's counter "
                  "watch %.0f / %.0f ms after the change (200 ms polls)\n",
                  i == holder ? "holder" : "non-holder",
                  absl::ToDoubleMilliseconds(*added - changed),
                  absl::ToDoubleMilliseconds(*at - changed));
    }
  }
  // Give a duplicate the time to come.
  absl::SleepFor(absl::Milliseconds(600));
  for (int i = 0; i < 3; ++i) {
    int added = 0, modified = 0, other_events = 0;
    for (const auto& e : streams[i]->live_events()) {
      if (e.uploading().id() == 402) {
        EXPECT_EQ(e.type(), v1::UploadingEvent::ADDED) << "replica " << i;
        ++added;
      } else if (e.uploading().id() == 400) {
        EXPECT_EQ(e.type(), v1::UploadingEvent::MODIFIED) << "replica " << i;
        ++modified;
      } else {
        ++other_events;
      }
    }
    EXPECT_EQ(added, 1) << "replica " << i;
    EXPECT_EQ(modified, 1) << "replica " << i;
    EXPECT_EQ(other_events, 0) << "replica " << i;  // 401 did not change
  }
}

// The holder is SIGKILLed: the counter's lease moves to a replica that still
// has a counter watch, within the lease time, and the counter watches there
// keep getting changes.
TEST_F(MultiReplicaTest, KillingTheHolderKeepsCounterWatchesOnOthersGoing) {
  metrica_->AddUploading(kCounter, MakeUploading(500, v1::Uploading::UPLOADED));
  std::vector<std::unique_ptr<CounterStream>> streams;
  int holder = -1;
  ASSERT_NO_FATAL_FAILURE(ACounterWatchOnEachOfThree(streams, holder));
  // Before the kill: a change comes through.
  metrica_->SetUploading(kCounter, MakeUploading(500, v1::Uploading::EXPORTED));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(streams[i]->WaitLive(500, v1::Uploading::EXPORTED,
                                     absl::Seconds(10)))
        << "replica " << i;
  }
  replicas_[holder]->Kill();
  const absl::Time killed = absl::Now();
  metrica_->SetUploading(kCounter, MakeUploading(500, v1::Uploading::PROCESSED));
  metrica_->AddUploading(kCounter, MakeUploading(501, v1::Uploading::UPLOADED));
  for (int i = 0; i < 3; ++i) {
    if (i == holder) continue;
    std::optional<absl::Time> at = streams[i]->WaitLive(
        500, v1::Uploading::PROCESSED, absl::Seconds(10));
    ASSERT_TRUE(at.has_value()) << "replica " << i;
    std::printf("FIGURE a counter watch on a survivor saw the change %.0f ms "
                "after the SIGKILL (lease TTL 1.5 s)\n",
                absl::ToDoubleMilliseconds(*at - killed));
    EXPECT_TRUE(streams[i]->WaitLive(501, v1::Uploading::UPLOADED,
                                     absl::Seconds(10)))
        << "replica " << i;
  }
  const int now_holder = Holder(500);
  EXPECT_GE(now_holder, 0);
  EXPECT_NE(now_holder, holder);
}

void MultiReplicaTest::ResumeOnAnotherReplica(bool from_holder,
                                              bool to_holder) {
  metrica_->AddUploading(kCounter, MakeUploading(700, v1::Uploading::UPLOADED));
  metrica_->AddUploading(kCounter, MakeUploading(701, v1::Uploading::UPLOADED));
  std::vector<std::unique_ptr<CounterStream>> streams;
  int holder = -1;
  ASSERT_NO_FATAL_FAILURE(ACounterWatchOnEachOfThree(streams, holder));
  const int from = from_holder ? holder : (holder + 1) % 3;
  int to = to_holder ? holder : (holder + 2) % 3;
  // A change the client is shown; its token names a stream position.
  metrica_->SetUploading(kCounter, MakeUploading(700, v1::Uploading::MATCHED));
  ASSERT_TRUE(streams[from]->WaitLive(700, v1::Uploading::MATCHED,
                                      absl::Seconds(10)));
  // The token of that very message (no bookmark after it needed).
  const std::string token = streams[from]->TokenOf(700, v1::Uploading::MATCHED);
  absl::StatusOr<ResumeToken> t = DecodeResumeToken(token);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->format, ResumeToken::kSharedFormat)
      << "the live message's token is no stream position";
  // Gone: the replica killed, or the watch cancelled.
  if (from_holder) {
    replicas_[from]->Kill();
  } else {
    streams[from].reset();
  }
  if (from_holder) {
    // The lease moves (within its TTL) to a survivor: resume there.
    ASSERT_TRUE(Eventually(
        [&] {
          const int now = Holder(700);
          if (now < 0 || now == from) return false;
          to = now;
          return true;
        },
        absl::Seconds(10)));
  }
  ASSERT_NE(to, from);
  ASSERT_EQ(Holder(700) == to, to_holder);
  // What the client misses meanwhile.
  metrica_->SetUploading(kCounter, MakeUploading(700, v1::Uploading::PROCESSED));
  metrica_->AddUploading(kCounter, MakeUploading(702, v1::Uploading::UPLOADED));
  ASSERT_TRUE(streams[to]->WaitLive(700, v1::Uploading::PROCESSED,
                                    absl::Seconds(10)));
  ASSERT_TRUE(streams[to]->WaitLive(702, v1::Uploading::UPLOADED,
                                    absl::Seconds(10)));
  CounterStream resumed(replicas_[to]->channel(), token);
  auto caught_up = resumed.WaitSynced(absl::Seconds(10));
  ASSERT_TRUE(caught_up.has_value());
  EXPECT_FALSE(caught_up->front().reset());
  std::vector<std::pair<int64_t, v1::Uploading::Status>> missed;
  for (const auto& m : *caught_up) {
    EXPECT_FALSE(m.reset());
    for (const auto& e : m.events()) {
      missed.emplace_back(e.uploading().id(), e.uploading().status());
      EXPECT_EQ(e.type(), e.uploading().id() == 702
                              ? v1::UploadingEvent::ADDED
                              : v1::UploadingEvent::MODIFIED);
    }
  }
  // Exactly what it missed: not 701 (unchanged), not 700's MATCHED (held).
  std::sort(missed.begin(), missed.end());
  EXPECT_EQ(missed, (std::vector<std::pair<int64_t, v1::Uploading::Status>>{
                        {700, v1::Uploading::PROCESSED},
                        {702, v1::Uploading::UPLOADED}}));
  // Then live, without a gap or a repeat.
  ASSERT_NO_FATAL_FAILURE(
      ChangeAndSeeItLiveOnce(resumed, 701, v1::Uploading::PROCESSED));
  // The resumed watch's own tokens are positions too.
  absl::StatusOr<ResumeToken> next = DecodeResumeToken(resumed.last_token());
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->format, ResumeToken::kSharedFormat);
}

}  // namespace
}  // namespace uploadwatch
