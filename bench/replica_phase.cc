#include "bench/replica_phase.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/child_process.h"
#include "bench/load.h"
#include "bench/workload.h"
#include "grpcpp/grpcpp.h"
#include "hiredis/hiredis.h"
#include "metrika/offline_conversions/v1/uploading_service.grpc.pb.h"

ABSL_FLAG(int, replicas_watchers, 60,
          "replicas phase: WatchUploading streams, spread over the replicas");
ABSL_FLAG(int, replicas_uploadings, 20,
          "replicas phase: watched uploadings of one counter");
ABSL_FLAG(int, replicas_intervals, 10,
          "replicas phase: poll intervals in each measured window");
ABSL_FLAG(int, replicas_rounds, 20,
          "replicas phase: changes of one uploading watched on every replica");
ABSL_FLAG(absl::Duration, replicas_lease_ttl, absl::Seconds(10),
          "replicas phase: --redis_lease_ttl of the replicas");
ABSL_FLAG(int, replicas_counter_watches, 30,
          "replicas phase: WatchUploadings streams of one counter, spread "
          "over the replicas");
ABSL_FLAG(std::string, redis_binary, "/usr/bin/redis-server",
          "replicas phase: the redis-server to start");

namespace uploadwatch::bench {
namespace {

namespace v1 = ::metrika::offline_conversions::v1;

constexpr int32_t kReplicaCounter = 2215573 + 14;  // a counter of its own
constexpr int64_t kFirstId = 1400000;
constexpr char kPrefix[] = "bench14:";

void Print(absl::string_view name, double value, int decimals = 0) {
  std::printf("%s: %.*f\n", std::string(name).c_str(), decimals, value);
  std::fflush(stdout);
}

void Progress(absl::string_view what) {
  std::fprintf(stderr, "bench: replicas: %s\n", std::string(what).c_str());
}

double Percentile(const std::vector<double>& sorted, double q) {
  const size_t rank = std::clamp<size_t>(
      static_cast<size_t>(std::ceil(q * sorted.size())), 1, sorted.size());
  return sorted[rank - 1];
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// A redis-server without persistence on a free loopback port; it dies with
// the harness (PR_SET_PDEATHSIG).
class RedisProcess {
 public:
  static absl::StatusOr<std::unique_ptr<RedisProcess>> Start(
      const std::string& binary, const std::string& dir) {
    auto r = std::unique_ptr<RedisProcess>(new RedisProcess());
    r->port_ = FreePort();
    const std::string port = absl::StrCat(r->port_);
    const std::string log = absl::StrCat(dir, "/redis.log");
    r->pid_ = fork();
    if (r->pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      FILE* out = std::freopen(log.c_str(), "w", stdout);
      (void)out;
      dup2(1, 2);
      execl(binary.c_str(), binary.c_str(), "--port", port.c_str(), "--bind",
            "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
            dir.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    if (r->pid_ < 0) return absl::InternalError("fork failed");
    for (int i = 0; i < 100; ++i) {
      if (r->Command("PING").has_value()) return r;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return absl::UnavailableError(
        absl::StrCat(binary, " did not start (see ", log, ")"));
  }
  ~RedisProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // One blocking command; its string or integer reply as text.
  std::optional<std::string> Command(const std::string& line) {
    redisContext* c = redisConnect("127.0.0.1", port_);
    if (c == nullptr || c->err) {
      if (c != nullptr) redisFree(c);
      return std::nullopt;
    }
    std::vector<std::string> argv = absl::StrSplit(line, ' ');
    std::vector<const char*> args;
    std::vector<size_t> lens;
    for (const auto& a : argv) {
      args.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* reply = static_cast<redisReply*>(redisCommandArgv(
        c, static_cast<int>(args.size()), args.data(), lens.data()));
    std::optional<std::string> out;
    if (reply != nullptr) {
      if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS) {
        out = std::string(reply->str, reply->len);
      } else if (reply->type == REDIS_REPLY_INTEGER) {
        out = absl::StrCat(reply->integer);
      } else if (reply->type == REDIS_REPLY_NIL) {
        out = "";
      } else if (reply->type == REDIS_REPLY_ARRAY) {  // its first string
        out = "";
        if (reply->elements > 0 && reply->element[0]->type == REDIS_REPLY_STRING) {
          out = std::string(reply->element[0]->str, reply->element[0]->len);
        }
      }
      freeReplyObject(reply);
    }
    redisFree(c);
    return out;
  }
  int port() const { return port_; }

 private:
  RedisProcess() = default;
  pid_t pid_ = -1;
  int port_ = 0;
};

// The replica's uploadwatch_redis_commands (commands sent, both
// connections), from its /metrics.
int64_t CommandsSent(int metrics_port) {
  const std::string cmd =
      absl::StrCat("curl -s --max-time 5 http://127.0.0.1:", metrics_port,
                   "/metrics");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) text.append(buf, n);
  pclose(p);
  int64_t total = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, "uploadwatch_redis_commands")) continue;
    double v = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) {
      total += static_cast<int64_t>(v);
    }
  }
  return total;
}

// Upstream requests about the phase's counter.
int CounterRequests(const FakeMetrica& metrica) {
  const std::string part = absl::StrCat("/counter/", kReplicaCounter, "/");
  int n = 0;
  for (const auto& r : metrica.requests()) n += absl::StrContains(r.path, part);
  return n;
}

// One WatchUploading stream on a thread, keeping when each marker
// (linked_quantity) arrived.
class MarkerWatch {
 public:
  MarkerWatch(std::shared_ptr<grpc::Channel> channel, int64_t id)
      : stub_(v1::UploadingService::NewStub(std::move(channel))) {
    thread_ = std::thread([this, id] {
      v1::WatchUploadingRequest request;
      request.set_counter_id(kReplicaCounter);
      request.set_uploading_id(id);
      auto reader = stub_->WatchUploading(&ctx_, request);
      v1::WatchUploadingResponse m;
      while (reader->Read(&m)) {
        const absl::Time now = absl::Now();
        absl::MutexLock lock(&mu_);
        arrivals_.try_emplace(static_cast<int32_t>(m.uploading().linked_quantity()),
                              now);
      }
      reader->Finish();
    });
  }
  ~MarkerWatch() {
    ctx_.TryCancel();
    thread_.join();
  }
  std::optional<absl::Time> Await(int32_t marker, absl::Duration limit) {
    absl::MutexLock lock(&mu_);
    auto has = [&]() -> bool { return arrivals_.count(marker) > 0; };
    mu_.AwaitWithTimeout(absl::Condition(&has), limit);
    auto it = arrivals_.find(marker);
    if (it == arrivals_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::unique_ptr<v1::UploadingService::Stub> stub_;
  grpc::ClientContext ctx_;
  absl::Mutex mu_;
  std::map<int32_t, absl::Time> arrivals_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// One WatchUploadings stream (the whole counter) on a thread; knows when its
// snapshot is synced.
class CounterWatchStream {
 public:
  explicit CounterWatchStream(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::UploadingService::NewStub(std::move(channel))) {
    thread_ = std::thread([this] {
      v1::WatchUploadingsRequest request;
      request.set_counter_id(kReplicaCounter);
      auto reader = stub_->WatchUploadings(&ctx_, request);
      v1::WatchUploadingsResponse m;
      while (reader->Read(&m)) {
        if (!m.synced()) continue;
        absl::MutexLock lock(&mu_);
        synced_ = true;
      }
      reader->Finish();
      absl::MutexLock lock(&mu_);
      ended_ = true;
    });
  }
  ~CounterWatchStream() {
    ctx_.TryCancel();
    thread_.join();
  }
  bool AwaitSynced(absl::Duration limit) {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return synced_ || ended_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&done), limit);
    return synced_;
  }

 private:
  std::unique_ptr<v1::UploadingService::Stub> stub_;
  grpc::ClientContext ctx_;
  absl::Mutex mu_;
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

struct Server {
  std::unique_ptr<ChildProcess> process;
  int metrics_port = 0;
};

absl::StatusOr<Server> StartServer(const ReplicaPhaseSetup& setup,
                                   const std::string& name,
                                   const std::vector<std::string>& extra) {
  Server s;
  s.metrics_port = FreePort();
  std::vector<std::string> env = setup.server_env;
  env.push_back(absl::StrCat("METRIKA_OAUTH_TOKEN=", setup.token));
  std::vector<std::string> args = {
      setup.server_binary, "--listen=127.0.0.1:0",
      absl::StrCat("--upstream_url=", setup.metrica->base_url()),
      absl::StrCat("--poll_interval=", absl::FormatDuration(setup.poll_interval)),
      "--daily_budget=0", "--drain_period=0s",
      absl::StrCat("--metrics_listen=127.0.0.1:", s.metrics_port)};
  args.insert(args.end(), extra.begin(), extra.end());
  absl::StatusOr<std::unique_ptr<ChildProcess>> p = ChildProcess::Start(
      args, env, absl::StrCat(setup.work_dir, "/", name, ".log"));
  if (!p.ok()) return p.status();
  s.process = *std::move(p);
  return s;
}

std::string Target(const Server& s) {
  return absl::StrCat("127.0.0.1:", s.process->port());
}

// Opens the watchers over `servers` and counts upstream requests per poll
// interval once they are all served.
absl::StatusOr<double> RequestsPerInterval(const ReplicaPhaseSetup& setup,
                                           const std::vector<Server>& servers,
                                           const std::vector<int64_t>& ids,
                                           int watchers, WatchFleet& fleet,
                                           const std::function<void()>& at_start,
                                           int* requests) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < 6; ++c) {  // the same 6 connections, spread
    auto one = MakeChannels(Target(servers[c % servers.size()]), 1);
    channels.push_back(one[0]);
  }
  fleet.Open(channels, kReplicaCounter, ids, watchers);
  if (!fleet.AwaitFirstMessages(absl::Seconds(60))) {
    return absl::DeadlineExceededError(absl::StrCat(
        "not every watcher got a first state (", fleet.streams_with_message(),
        " did, ", fleet.ended(), " ended; ",
        setup.metrica->requests().size(), " upstream requests)"));
  }

  // Past the first states and the leases' first decisions.
  absl::SleepFor(setup.poll_interval * 3);
  if (at_start) at_start();
  setup.metrica->ClearRequests();
  const absl::Time start = absl::Now();
  absl::SleepFor(setup.poll_interval * absl::GetFlag(FLAGS_replicas_intervals));
  *requests = CounterRequests(*setup.metrica);

  // FDivDuration: Duration / Duration is an integer division.
  return *requests / absl::FDivDuration(absl::Now() - start, setup.poll_interval);
}

// Opens `watches` counter watches spread over `servers` and counts upstream
// requests per poll interval once every snapshot is synced.
absl::StatusOr<double> CounterWatchRequestsPerInterval(
    const ReplicaPhaseSetup& setup, const std::vector<Server>& servers,
    int watches, const std::function<void()>& at_start, int* requests) {
  std::vector<std::unique_ptr<CounterWatchStream>> streams;
  for (int i = 0; i < watches; ++i) {
    streams.push_back(std::make_unique<CounterWatchStream>(
        MakeChannels(Target(servers[i % servers.size()]), 1)[0]));
  }
  for (auto& s : streams) {
    if (!s->AwaitSynced(absl::Seconds(60))) {
      return absl::DeadlineExceededError("a counter watch never synced");
    }
  }
  absl::SleepFor(setup.poll_interval * 3);  // past the snapshots' lists
  if (at_start) at_start();
  setup.metrica->ClearRequests();
  const absl::Time start = absl::Now();
  absl::SleepFor(setup.poll_interval * absl::GetFlag(FLAGS_replicas_intervals));
  *requests = CounterRequests(*setup.metrica);
  // FDivDuration: Duration / Duration is an integer division.
  return *requests / absl::FDivDuration(absl::Now() - start, setup.poll_interval);
}

}  // namespace

absl::Status RunReplicaPhase(const ReplicaPhaseSetup& setup) {
  FakeMetrica& metrica = *setup.metrica;
  metrica.GrantAccess(setup.token, kReplicaCounter);
  std::vector<int64_t> ids;
  for (int i = 0; i < absl::GetFlag(FLAGS_replicas_uploadings); ++i) {
    ids.push_back(kFirstId + i);
    metrica.AddUploading(kReplicaCounter,
                         MakeUploading(ids.back(), v1::Uploading::MATCHED));
  }
  Print("replicas_watchers", absl::GetFlag(FLAGS_replicas_watchers));
  Print("replicas_uploadings", ids.size());

  // The same two loads, on one replica alone and then on three: watchers of
  // one uploading (what leases share), and dashboards of many uploadings of
  // one counter (what one replica batches into one List).
  const std::vector<int64_t> one_id = {ids[0]};
  const std::vector<int64_t>& all_ids = ids;
  const int dashboards = absl::GetFlag(FLAGS_replicas_watchers);
  {
    Progress("one replica");
    absl::StatusOr<Server> one = StartServer(setup, "replicas_one", {});
    if (!one.ok()) return one.status();
    std::vector<Server> servers;
    servers.push_back(*std::move(one));
    int requests = 0;
    for (const auto& [name, load, watchers] :
         {std::make_tuple("uploading", &one_id, 6),
          std::make_tuple("counter", &all_ids, dashboards)}) {
      WatchFleet fleet;
      absl::StatusOr<double> rate = RequestsPerInterval(
          setup, servers, *load, watchers, fleet, nullptr, &requests);
      if (!rate.ok()) return rate.status();
      Print(absl::StrCat("replicas_1_", name, "_upstream_requests_per_interval"),
            *rate, 2);
      fleet.CancelAll();
    }
    absl::StatusOr<double> rate = CounterWatchRequestsPerInterval(
        setup, servers, absl::GetFlag(FLAGS_replicas_counter_watches), nullptr,
        &requests);
    if (!rate.ok()) return rate.status();
    Print("replicas_1_counter_watch_upstream_requests_per_interval", *rate, 2);
    servers[0].process->Stop();
  }

  // Three on one Redis.
  Progress("starting redis-server and three replicas");
  absl::StatusOr<std::unique_ptr<RedisProcess>> redis =
      RedisProcess::Start(absl::GetFlag(FLAGS_redis_binary), setup.work_dir);
  if (!redis.ok()) return redis.status();
  const std::vector<std::string> shared = {
      absl::StrCat("--redis=127.0.0.1:", (*redis)->port()),
      absl::StrCat("--redis_key_prefix=", kPrefix),
      absl::StrCat("--redis_lease_ttl=",
                   absl::FormatDuration(absl::GetFlag(FLAGS_replicas_lease_ttl)))};
  std::vector<Server> servers;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<Server> s =
        StartServer(setup, absl::StrCat("replicas_three_", i), shared);
    if (!s.ok()) return s.status();
    servers.push_back(*std::move(s));
  }
  auto commands = [&] {
    int64_t total = 0;
    for (const Server& s : servers) total += CommandsSent(s.metrics_port);
    return total;
  };
  int requests = 0;
  for (const auto& [name, load, watchers] :
       {std::make_tuple("uploading", &one_id, 6),
        std::make_tuple("counter", &all_ids, dashboards)}) {
    WatchFleet fleet;
    int64_t commands_before = 0;
    absl::StatusOr<double> rate = RequestsPerInterval(
        setup, servers, *load, watchers, fleet,
        [&] { commands_before = commands(); }, &requests);
    if (!rate.ok()) return rate.status();
    const int64_t sent = commands() - commands_before;
    const std::string prefix = absl::StrCat("replicas_3_", name);
    Print(absl::StrCat(prefix, "_upstream_requests_per_interval"), *rate, 2);
    Print(absl::StrCat(prefix, "_redis_commands_per_interval"),
          sent / static_cast<double>(absl::GetFlag(FLAGS_replicas_intervals)), 1);
    Print(absl::StrCat(prefix, "_redis_commands_per_upstream_request"),
          sent / static_cast<double>(std::max(requests, 1)), 2);
    fleet.CancelAll();
  }
  {
    // WatchUploadings of one counter spread over the three: the group's
    // holder lists it for all of them (each replica listed its own before).
    int64_t commands_before = 0;
    absl::StatusOr<double> rate = CounterWatchRequestsPerInterval(
        setup, servers, absl::GetFlag(FLAGS_replicas_counter_watches),
        [&] { commands_before = commands(); }, &requests);
    if (!rate.ok()) return rate.status();
    const int64_t sent = commands() - commands_before;
    Print("replicas_3_counter_watch_upstream_requests_per_interval", *rate, 2);
    Print("replicas_3_counter_watch_redis_commands_per_interval",
          sent / static_cast<double>(absl::GetFlag(FLAGS_replicas_intervals)), 1);
  }
  absl::SleepFor(setup.poll_interval);  // the leases are handed back

  // One uploading watched on every replica (nothing else of its counter):
  // who polls it, who follows.
  Progress("changes of one uploading watched on every replica");
  const int64_t id = ids[0];
  std::vector<std::unique_ptr<MarkerWatch>> watches;
  for (const Server& s : servers) {
    watches.push_back(
        std::make_unique<MarkerWatch>(MakeChannels(Target(s), 1)[0], id));
  }
  // lease:<token fingerprint>:<counter>: one per (token, counter) group
  const std::string lease_pattern =
      absl::StrCat("KEYS ", kPrefix, "lease:*:", kReplicaCounter);
  for (const auto& w : watches) {  // first states: the lease is taken
    if (!w->Await(0, absl::Seconds(30))) {
      return absl::DeadlineExceededError("no first state on a replica");
    }
  }
  std::vector<double> behind_ms, holder_ms;
  int late = 0;
  for (int32_t marker = 1; marker <= absl::GetFlag(FLAGS_replicas_rounds);
       ++marker) {
    metrica.SetUploading(kReplicaCounter,
                         MakeUploading(id, v1::Uploading::MATCHED, marker));
    const absl::Time changed = absl::Now();
    std::vector<std::optional<absl::Time>> at;
    for (auto& w : watches) at.push_back(w->Await(marker, setup.poll_interval * 5));
    const std::string lease_key = (*redis)->Command(lease_pattern).value_or("");
    const std::string owner =
        lease_key.empty() ? "" : (*redis)->Command("GET " + lease_key).value_or("");
    int holder = -1;
    for (size_t i = 0; i < servers.size(); ++i) {
      if (absl::StrContains(owner, absl::StrCat("-", servers[i].process->pid(), "-"))) {
        holder = static_cast<int>(i);
      }
    }
    if (holder < 0 || !at[holder]) {
      ++late;
      continue;
    }
    holder_ms.push_back(absl::ToDoubleMilliseconds(*at[holder] - changed));
    for (size_t i = 0; i < at.size(); ++i) {
      if (static_cast<int>(i) == holder) continue;
      if (!at[i]) {
        ++late;
        continue;
      }
      behind_ms.push_back(absl::ToDoubleMilliseconds(*at[i] - *at[holder]));
    }
  }
  watches.clear();
  std::sort(behind_ms.begin(), behind_ms.end());
  std::sort(holder_ms.begin(), holder_ms.end());
  Print("replicas_follow_samples", behind_ms.size());
  Print("replicas_follow_missed", late);
  if (!behind_ms.empty()) {
    Print("replicas_follow_behind_holder_p50_ms", Percentile(behind_ms, 0.5), 2);
    Print("replicas_follow_behind_holder_p99_ms", Percentile(behind_ms, 0.99), 2);
    Print("replicas_follow_behind_holder_max_ms", behind_ms.back(), 2);
  }
  if (!holder_ms.empty()) {
    // From the change in Metrica: mostly the wait for the next poll.
    Print("replicas_holder_change_to_watcher_p50_ms", Percentile(holder_ms, 0.5), 1);
  }
  for (Server& s : servers) s.process->Stop();
  return absl::OkStatus();
}

}  // namespace uploadwatch::bench
