#include "service/simulator/fake_metrica.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/util/time_util.h"
#include "httplib.h"
#include "service/simulator/metrica_json_writer.h"

namespace uploadwatch {
namespace {

using ::metrika::offline_conversions::v1::Uploading;

constexpr char kJsonContentType[] = "application/json; charset=UTF-8";
constexpr absl::string_view kCounterPrefix = "/management/v1/counter/";

// Metrica's default and maximum page size for `uploadings`.
constexpr int kMaxLimit = 10000;

// cpp-httplib serves one connection per worker, and an idle keep-alive
// connection pins its worker for up to 5 s. Tests fire 100+ parallel slow
// requests, which must not queue behind each other.
constexpr size_t kWorkerThreads = 128;
// nginx's default; httplib's is 5, which forces needless reconnects.
constexpr size_t kKeepAliveMaxRequests = 100;

// How often Stop() sweeps connections while workers wind down.
constexpr absl::Duration kStopSweepInterval = absl::Milliseconds(20);

// The demo's counter, as in Metrica's documentation.
constexpr int32_t kDemoCounter = 2215573;
// A new live demo upload starts this often (at speed 1).
constexpr absl::Duration kDemoSpawnEvery = absl::Seconds(30);

// httplib's Server or SSLServer with a usual listen backlog. httplib 0.11
// listens with a backlog of 5: a burst of 100 connects overflows it and the
// kernel drops SYNs, which clients only retransmit after a second.
template <typename Base>
class LoopbackServer : public Base {
 public:
  using Base::Base;
  void WidenBacklog() { ::listen(this->svr_sock_.load(), SOMAXCONN); }
};

// The server Options ask for, and how to widen its backlog once bound.
struct MadeServer {
  std::unique_ptr<httplib::Server> server;
  std::function<void()> widen_backlog;
};

MadeServer MakeServer(const FakeMetrica::Options& options) {
  MadeServer made;
  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    auto server = std::make_unique<LoopbackServer<httplib::SSLServer>>(
        options.tls_cert_file.c_str(), options.tls_key_file.c_str());
    made.widen_backlog = [s = server.get()] { s->WidenBacklog(); };
    made.server = std::move(server);
  } else {
    auto server = std::make_unique<LoopbackServer<httplib::Server>>();
    made.widen_backlog = [s = server.get()] { s->WidenBacklog(); };
    made.server = std::move(server);
  }
  return made;
}

// One end of a TCP connection, numeric as httplib reports it.
struct Endpoint {
  std::string ip;
  int port = -1;
};

std::optional<Endpoint> EndpointOf(int fd, bool peer) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  auto* sa = reinterpret_cast<sockaddr*>(&addr);
  if ((peer ? getpeername(fd, sa, &len) : getsockname(fd, sa, &len)) != 0) {
    return std::nullopt;
  }
  if (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) {
    return std::nullopt;
  }
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return std::nullopt;
  }
  Endpoint endpoint;
  endpoint.ip = host;
  if (!absl::SimpleAtoi(port, &endpoint.port)) return std::nullopt;
  return endpoint;
}

// Shuts down (FIN both ways) the accepted connections of the server on
// `local_port`; with `peer`, only that client's connection. Returns how many.
//
// Why sockets are found by scanning the process's descriptors: httplib 0.11
// gives handlers no access to their socket (needed to drop a connection
// without an answer), and after stop() a worker may wait 5 s in its
// keep-alive loop before it notices (Stop() must be prompt).
int ShutdownConnections(int local_port, const std::optional<Endpoint>& peer) {
  std::vector<int> fds;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* entry = readdir(dir)) {
      int fd;
      if (absl::SimpleAtoi(entry->d_name, &fd)) fds.push_back(fd);
    }
    closedir(dir);
  }
  int count = 0;
  for (int fd : fds) {
    std::optional<Endpoint> local = EndpointOf(fd, /*peer=*/false);
    if (!local.has_value() || local->port != local_port) continue;
    std::optional<Endpoint> remote = EndpointOf(fd, /*peer=*/true);
    if (!remote.has_value()) continue;  // the listening socket
    if (peer.has_value() &&
        (remote->port != peer->port || remote->ip != peer->ip)) {
      continue;
    }
    ::shutdown(fd, SHUT_RDWR);
    ++count;
  }
  return count;
}

// What the simulator answers: a status and a JSON body.
struct Reply {
  int status = 200;
  std::string body;
};

// Metrica's error body (one error; Metrica repeats its message at the top).
Reply ErrorReply(int status, absl::string_view error_type,
                 absl::string_view message) {
  const std::string quoted = JsonQuote(message);
  return Reply{status, absl::StrCat(R"({"errors":[{"error_type":)",
                                    JsonQuote(error_type), R"(,"message":)",
                                    quoted, R"(}],"code":)", status,
                                    R"(,"message":)", quoted, "}")};
}

// The error_type and message Metrica uses for an HTTP status, for faults
// that name only the status.
std::pair<std::string, std::string> DefaultError(int status) {
  switch (status) {
    case 400:
      return {"invalid_parameter", "Invalid parameter"};
    case 401:
      return {"unauthorized", "Unauthorized"};
    case 403:
      return {"access_denied", "Access is denied"};
    case 404:
      return {"not_found", "Entity not found"};
    case 409:
      return {"conflict", "Conflict"};
    case 420:
    case 429:
      // The transient kind: the daily one (quota_requests_by_uid) stops a
      // token until the reset, so tests ask for it by name.
      return {"quota_parallel_requests", "Quota exceeded, try again later"};
    case 504:
      return {"timeout", "Timeout"};
    default:
      if (status >= 500) return {"backend_error", "Try again later"};
      return {"invalid_parameter", "Invalid request"};
  }
}

// Strictly decimal digits (SimpleAtoi alone also takes "+5" and " 5"),
// in range and > 0, as Metrica's ids.
template <typename Int>
std::optional<Int> ParsePositive(absl::string_view text) {
  Int value;
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(text, &value) || value <= 0) {
    return std::nullopt;
  }
  return value;
}

std::optional<int> ParseNonNegative(absl::string_view text) {
  if (text == "0") return 0;
  return ParsePositive<int>(text);
}

// The token of `Authorization: <scheme> <token>`; `oauth` tells whether the
// scheme was Metrica's `OAuth` (case-insensitive).
struct Credentials {
  std::string token;
  bool oauth = false;
};

Credentials CredentialsOf(const httplib::Request& req) {
  const std::string header = req.get_header_value("Authorization");
  absl::string_view value = absl::StripAsciiWhitespace(header);
  const size_t space = value.find(' ');
  if (space == absl::string_view::npos) return {std::string(value), false};
  return {std::string(absl::StripLeadingAsciiWhitespace(value.substr(space))),
          absl::EqualsIgnoreCase(value.substr(0, space), "OAuth")};
}

// The two paths served, split into their raw (unvalidated) parameters.
struct Route {
  bool list = false;  // .../uploadings, else .../uploading/{id}
  std::string counter;
  std::string uploading_id;
};

std::optional<Route> ParseRoute(absl::string_view path) {
  if (!absl::ConsumePrefix(&path, kCounterPrefix)) return std::nullopt;
  const std::vector<std::string> parts = absl::StrSplit(path, '/');
  if (parts.size() == 4 && parts[1] == "offline_conversions" &&
      parts[2] == "uploading") {
    return Route{false, parts[0], parts[3]};
  }
  if (parts.size() == 3 && parts[1] == "offline_conversions" &&
      parts[2] == "uploadings") {
    return Route{true, parts[0], ""};
  }
  return std::nullopt;
}

// A body of exactly `size` bytes of valid JSON in the envelope of `path`
// (huge_body_bytes), produced piecewise so that gigabytes cost no memory:
// `head`, then `filler` repeated, then `tail`.
class HugeBody {
 public:
  HugeBody(absl::string_view path, size_t size) : size_(size) {
    if (absl::EndsWith(path, "/uploadings")) {
      head_ = R"({"uploadings":[)";
      filler_ = ' ';
      tail_ = "]}";
    } else {
      head_ = R"({"uploading":{"id":1,"status":"PROCESSED","comment":")";
      filler_ = 'x';
      tail_ = R"("}})";
    }
    if (head_.size() + tail_.size() > size_) {  // too small for valid JSON
      head_ = (head_ + tail_).substr(0, size_);
      tail_.clear();
    }
  }

  size_t size() const { return size_; }

  // Bytes [offset, offset + max_len) of the body, clipped to its end.
  std::string Piece(size_t offset, size_t max_len) const {
    const size_t end = std::min(size_, offset + max_len);
    const size_t tail_start = size_ - tail_.size();
    std::string piece;
    piece.reserve(end - offset);
    for (size_t i = offset; i < end;) {
      if (i < head_.size()) {
        const size_t n = std::min(end, head_.size()) - i;
        piece.append(head_, i, n);
        i += n;
      } else if (i < tail_start) {
        const size_t n = std::min(end, tail_start) - i;
        piece.append(n, filler_);
        i += n;
      } else {
        const size_t n = end - i;
        piece.append(tail_, i - tail_start, n);
        i += n;
      }
    }
    return piece;
  }

 private:
  size_t size_;
  std::string head_;
  char filler_;
  std::string tail_;
};

}  // namespace

class FakeMetrica::Impl {
 public:
  explicit Impl(Options options);
  ~Impl() { Stop(); }

  absl::Status Start() ABSL_LOCKS_EXCLUDED(lifecycle_mu_, mu_);
  void Stop() ABSL_LOCKS_EXCLUDED(lifecycle_mu_, mu_);
  int port() const ABSL_LOCKS_EXCLUDED(mu_);
  std::string base_url() const ABSL_LOCKS_EXCLUDED(mu_);

  void GrantAccess(const std::string& token, int32_t counter_id)
      ABSL_LOCKS_EXCLUDED(mu_);
  void AddToken(const std::string& token) ABSL_LOCKS_EXCLUDED(mu_);
  void AddUploading(int32_t counter_id, const Uploading& uploading,
                    std::vector<Step> schedule) ABSL_LOCKS_EXCLUDED(mu_);
  void SetUploading(int32_t counter_id, const Uploading& uploading)
      ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<Uploading> GetUploading(int32_t counter_id,
                                        int64_t uploading_id) const
      ABSL_LOCKS_EXCLUDED(mu_);

  void InjectFault(Fault fault) ABSL_LOCKS_EXCLUDED(mu_);
  void ClearFaults() ABSL_LOCKS_EXCLUDED(mu_);

  std::vector<RecordedRequest> requests() const ABSL_LOCKS_EXCLUDED(mu_);
  void ClearRequests() ABSL_LOCKS_EXCLUDED(mu_);
  int max_in_flight(const std::string& token) const ABSL_LOCKS_EXCLUDED(mu_);

  void SeedDemo(const std::string& token, double speed)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // An uploading over time: `initial` until the first stage's `after`, then
  // each stage's state in turn. With a finite `cycle`, the journey restarts
  // every `cycle` (the demo's moving uploadings).
  struct Stage {
    absl::Duration after;
    Uploading state;
  };
  struct Entry {
    Uploading initial;
    std::vector<Stage> stages;  // by `after`, ascending
    absl::Time start;
    absl::Duration cycle = absl::InfiniteDuration();

    const Uploading& At(absl::Time now) const;
  };
  // Uploadings of one counter, newest (highest id) first as Metrica lists them.
  using Uploadings = std::map<int64_t, Entry, std::greater<int64_t>>;

  // A request from arrival until its reply has been written: its request-log
  // entry and its token's in-flight count. Shared with content providers so
  // that a streamed reply stays in flight until httplib is done with it.
  class Call {
   public:
    Call(Impl* impl, const httplib::Request& req);
    ~Call();
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

    void Answered(int http_status);

   private:
    Impl* const impl_;
    std::string token_;
    uint64_t seq_;  // position in the request log, see first_request_seq_
  };

  void Handle(const httplib::Request& req, httplib::Response& res)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The answer to a request when no fault replaces it.
  Reply Serve(const httplib::Request& req) ABSL_LOCKS_EXCLUDED(mu_);
  Reply ServeUploading(int32_t counter_id, absl::string_view raw_id,
                       absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Reply ServeUploadings(int32_t counter_id, const httplib::Request& req,
                        absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the first fault matching `path`, counting down its `times`.
  std::optional<Fault> TakeFault(absl::string_view path)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Waits `delay` of wall time (sockets time out on wall time, not on
  // Options::clock), cut short by Stop().
  void Stall(absl::Duration delay) ABSL_LOCKS_EXCLUDED(mu_);
  void AddEntry(int32_t counter_id, Entry entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One live demo upload starting its journey at `start`.
  Entry DemoJourney(int64_t id, absl::Time start)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts the live uploads due by `now` (lazily, on requests).
  void SpawnDemoLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  Clock* const clock_;
  const MadeServer made_;
  httplib::Server* const server_;

  // Serializes Start() and Stop(); never held by request handlers.
  absl::Mutex lifecycle_mu_;
  std::thread listener_ ABSL_GUARDED_BY(lifecycle_mu_);
  bool stopped_ ABSL_GUARDED_BY(lifecycle_mu_) = false;

  mutable absl::Mutex mu_;
  int port_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool listener_done_ ABSL_GUARDED_BY(mu_) = false;
  // Known tokens and the counters each may read.
  absl::flat_hash_map<std::string, absl::flat_hash_set<int32_t>> access_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int32_t, Uploadings> counters_ ABSL_GUARDED_BY(mu_);
  std::vector<Fault> faults_ ABSL_GUARDED_BY(mu_);  // in injection order
  std::vector<RecordedRequest> requests_ ABSL_GUARDED_BY(mu_);
  // Sequence number of requests_[0]: requests count from 0 since creation, so a
  // Call finds its entry even after ClearRequests() dropped older ones.
  uint64_t first_request_seq_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, int> in_flight_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> max_in_flight_ ABSL_GUARDED_BY(mu_);
  MetricaJsonWriter json_ ABSL_GUARDED_BY(mu_);
  struct Demo {
    bool on = false;
    absl::Time epoch;
    double speed = 1;
    int64_t next_id = 101;
    int64_t spawned = 0;  // live uploads started after seeding
  } demo_ ABSL_GUARDED_BY(mu_);
};

const Uploading& FakeMetrica::Impl::Entry::At(absl::Time now) const {
  absl::Duration elapsed = now - start;
  if (elapsed < absl::ZeroDuration()) return initial;
  if (cycle != absl::InfiniteDuration()) elapsed = elapsed % cycle;
  const Uploading* state = &initial;
  for (const Stage& stage : stages) {
    if (stage.after > elapsed) break;
    state = &stage.state;
  }
  return *state;
}

FakeMetrica::Impl::Call::Call(Impl* impl, const httplib::Request& req)
    : impl_(impl), token_(CredentialsOf(req).token) {
  RecordedRequest record;
  record.method = req.method;
  record.path = req.path;
  const size_t question = req.target.find('?');
  if (question != std::string::npos)
    record.query = req.target.substr(question + 1);
  record.token = token_;
  record.time = impl_->clock_->Now();

  absl::MutexLock lock(&impl_->mu_);
  record.in_flight = ++impl_->in_flight_[token_];
  int& max = impl_->max_in_flight_[token_];
  max = std::max(max, record.in_flight);
  seq_ = impl_->first_request_seq_ + impl_->requests_.size();
  impl_->requests_.push_back(std::move(record));
}

FakeMetrica::Impl::Call::~Call() {
  absl::MutexLock lock(&impl_->mu_);
  if (--impl_->in_flight_[token_] == 0) impl_->in_flight_.erase(token_);
}

void FakeMetrica::Impl::Call::Answered(int http_status) {
  absl::MutexLock lock(&impl_->mu_);
  if (seq_ < impl_->first_request_seq_) return;  // cleared meanwhile
  impl_->requests_[seq_ - impl_->first_request_seq_].http_status = http_status;
}

FakeMetrica::Impl::Impl(Options options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : Clock::Real()),
      made_(MakeServer(options_)),
      server_(made_.server.get()),
      json_(options_.vary_json, options_.json_seed) {
  server_->new_task_queue = [] {
    return new httplib::ThreadPool(kWorkerThreads);
  };
  server_->set_keep_alive_max_count(kKeepAliveMaxRequests);
  // Without it, Nagle on this side and delayed ACKs on the client's add
  // ~40 ms to every request on a reused connection.
  server_->set_tcp_nodelay(true);
  // httplib's default adds SO_REUSEPORT, with which a second server on a
  // busy port starts fine and silently takes half the connections.
  server_->set_socket_options([](socket_t sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  // Every method reaches Handle() so that the log shows what a client sent.
  const httplib::Server::Handler handler = [this](const httplib::Request& req,
                                                  httplib::Response& res) {
    Handle(req, res);
  };
  server_->Get(".*", handler);
  server_->Post(".*", handler);
  server_->Put(".*", handler);
  server_->Patch(".*", handler);
  server_->Delete(".*", handler);
  server_->Options(".*", handler);
}

absl::Status FakeMetrica::Impl::Start() {
  absl::MutexLock lifecycle(&lifecycle_mu_);
  if (listener_.joinable() || stopped_) {
    return absl::FailedPreconditionError("FakeMetrica: Start() called twice");
  }
  if (!server_->is_valid()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FakeMetrica: cannot load the TLS certificate \"",
        options_.tls_cert_file, "\" and key \"", options_.tls_key_file, "\""));
  }
  int port = options_.port;
  if (port == 0) {
    port = server_->bind_to_any_port(options_.host);
  } else if (!server_->bind_to_port(options_.host, port)) {
    port = -1;
  }
  if (port < 0) {
    return absl::UnavailableError(absl::StrCat(
        "FakeMetrica: cannot listen on ", options_.host, ":", options_.port));
  }
  made_.widen_backlog();
  {
    absl::MutexLock lock(&mu_);
    port_ = port;
  }
  listener_ = std::thread([this] {
    server_->listen_after_bind();
    absl::MutexLock lock(&mu_);
    listener_done_ = true;
  });
  // The socket accepts already; but httplib's stop() is a no-op until the
  // accept loop runs, so Stop() could hang if called before that.
  while (!server_->is_running()) {
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&listener_done_),
                             absl::Milliseconds(1))) {
      break;
    }
  }
  absl::MutexLock lock(&mu_);
  if (listener_done_) {
    return absl::InternalError("FakeMetrica: the accept loop failed to start");
  }
  return absl::OkStatus();
}

void FakeMetrica::Impl::Stop() {
  absl::MutexLock lifecycle(&lifecycle_mu_);
  if (!listener_.joinable()) return;
  stopped_ = true;
  int port;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;  // ends stalls
    port = port_;
  }
  server_->stop();
  // Until every worker has left: end connections, including any accepted
  // while we swept.
  for (;;) {
    ShutdownConnections(port, std::nullopt);
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&listener_done_),
                             kStopSweepInterval)) {
      break;
    }
  }
  listener_.join();
}

int FakeMetrica::Impl::port() const {
  absl::MutexLock lock(&mu_);
  return port_;
}

std::string FakeMetrica::Impl::base_url() const {
  const bool ipv6 = absl::StrContains(options_.host, ':');
  const bool tls = !options_.tls_cert_file.empty();
  return absl::StrCat(tls ? "https://" : "http://", ipv6 ? "[" : "", options_.host,
                      ipv6 ? "]" : "", ":", port());
}

void FakeMetrica::Impl::GrantAccess(const std::string& token,
                                    int32_t counter_id) {
  absl::MutexLock lock(&mu_);
  access_[token].insert(counter_id);
  counters_[counter_id];
}

void FakeMetrica::Impl::AddToken(const std::string& token) {
  absl::MutexLock lock(&mu_);
  access_[token];
}

void FakeMetrica::Impl::AddEntry(int32_t counter_id, Entry entry) {
  const int64_t id = entry.initial.id();
  counters_[counter_id].insert_or_assign(id, std::move(entry));
}

void FakeMetrica::Impl::AddUploading(int32_t counter_id,
                                     const Uploading& uploading,
                                     std::vector<Step> schedule) {
  std::stable_sort(
      schedule.begin(), schedule.end(),
      [](const Step& a, const Step& b) { return a.after < b.after; });
  Entry entry;
  entry.initial = uploading;
  entry.start = clock_->Now();
  for (const Step& step : schedule) {
    Stage stage{step.after, uploading};
    stage.state.set_status(step.status);
    entry.stages.push_back(std::move(stage));
  }
  absl::MutexLock lock(&mu_);
  AddEntry(counter_id, std::move(entry));
}

void FakeMetrica::Impl::SetUploading(int32_t counter_id,
                                     const Uploading& uploading) {
  Entry entry;
  entry.initial = uploading;
  entry.start = clock_->Now();
  absl::MutexLock lock(&mu_);
  AddEntry(counter_id, std::move(entry));
}

std::optional<Uploading> FakeMetrica::Impl::GetUploading(
    int32_t counter_id, int64_t uploading_id) const {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto counter = counters_.find(counter_id);
  if (counter == counters_.end()) return std::nullopt;
  auto entry = counter->second.find(uploading_id);
  if (entry == counter->second.end()) return std::nullopt;
  return entry->second.At(now);
}

void FakeMetrica::Impl::InjectFault(Fault fault) {
  if (fault.times == 0) return;  // would never apply
  absl::MutexLock lock(&mu_);
  faults_.push_back(std::move(fault));
}

void FakeMetrica::Impl::ClearFaults() {
  absl::MutexLock lock(&mu_);
  faults_.clear();
}

std::vector<FakeMetrica::RecordedRequest> FakeMetrica::Impl::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

void FakeMetrica::Impl::ClearRequests() {
  absl::MutexLock lock(&mu_);
  first_request_seq_ += requests_.size();
  requests_.clear();
  max_in_flight_.clear();
}

int FakeMetrica::Impl::max_in_flight(const std::string& token) const {
  absl::MutexLock lock(&mu_);
  auto it = max_in_flight_.find(token);
  return it == max_in_flight_.end() ? 0 : it->second;
}

std::optional<FakeMetrica::Fault> FakeMetrica::Impl::TakeFault(
    absl::string_view path) {
  absl::MutexLock lock(&mu_);
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    if (!absl::StrContains(path, it->path_substring)) continue;
    Fault fault = *it;
    if (it->times > 0 && --it->times == 0) faults_.erase(it);
    return fault;
  }
  return std::nullopt;
}

void FakeMetrica::Impl::Stall(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), delay);
}

void FakeMetrica::Impl::Handle(const httplib::Request& req,
                               httplib::Response& res) {
  auto call = std::make_shared<Call>(this, req);
  const std::optional<Fault> fault = TakeFault(req.path);
  if (!fault.has_value()) {
    const Reply reply = Serve(req);
    res.status = reply.status;
    res.set_content(reply.body, kJsonContentType);
    call->Answered(reply.status);
    return;
  }

  if (fault->delay > absl::ZeroDuration()) Stall(fault->delay);
  if (fault->drop_connection) {
    // No byte of an answer reaches the client: httplib's own write of the
    // (empty) response then fails on the shut socket and it closes it.
    const int dropped = ShutdownConnections(
        req.local_port, Endpoint{req.remote_addr, req.remote_port});
    if (dropped != 1) {
      std::fprintf(stderr, "FakeMetrica: cannot find the socket of %s:%d\n",
                   req.remote_addr.c_str(), req.remote_port);
      std::abort();
    }
    return;  // the log keeps http_status 0
  }
  if (fault->retry_after_seconds.has_value()) {
    res.set_header("Retry-After", std::to_string(*fault->retry_after_seconds));
  }
  if (fault->huge_body_bytes > 0) {
    res.status = fault->http_status != 0 ? fault->http_status : 200;
    call->Answered(res.status);
    auto body = std::make_shared<HugeBody>(req.path, fault->huge_body_bytes);
    res.set_chunked_content_provider(
        kJsonContentType,
        [this, body, call](size_t offset, httplib::DataSink& sink) {
          constexpr size_t kPiece = 64 * 1024;
          if (offset >= body->size()) {
            sink.done();
            return true;
          }
          {
            absl::MutexLock lock(&mu_);
            if (stopping_) return false;
          }
          const std::string piece = body->Piece(offset, kPiece);
          return sink.write(piece.data(), piece.size());
        });
    return;
  }

  Reply reply;
  if (fault->body.has_value()) {
    reply =
        Reply{fault->http_status != 0 ? fault->http_status : 200, *fault->body};
  } else if (fault->http_status != 0) {
    auto [error_type, message] = DefaultError(fault->http_status);
    if (!fault->error_type.empty()) error_type = fault->error_type;
    reply = ErrorReply(fault->http_status, error_type, message);
  } else {
    reply = Serve(req);  // a delay or a truncation of the normal answer
  }
  res.status = reply.status;
  call->Answered(reply.status);
  if (!fault->truncate) {
    res.set_content(reply.body, kJsonContentType);
    return;
  }
  // Content-Length announces the whole body; a failing provider makes
  // httplib close the connection after the first half.
  const size_t length = reply.body.size();
  res.set_content_provider(length, kJsonContentType,
                           [body = std::move(reply.body), call](
                               size_t, size_t, httplib::DataSink& sink) {
                             sink.write(body.data(), body.size() / 2);
                             return false;
                           });
}

// Metrica's order of checks: the path, the token, the counter (400, 404,
// 403), then the rest of the parameters and the uploading.
Reply FakeMetrica::Impl::Serve(const httplib::Request& req) {
  const std::optional<Route> route = ParseRoute(req.path);
  if (!route.has_value()) {
    return ErrorReply(404, "not_found",
                      absl::StrCat("Unknown path ", req.path));
  }
  if (req.method != "GET" && req.method != "HEAD") {
    return ErrorReply(405, "method_not_allowed",
                      absl::StrCat("Method ", req.method, " is not allowed"));
  }
  const Credentials credentials = CredentialsOf(req);
  const absl::Time now = clock_->Now();

  absl::MutexLock lock(&mu_);
  SpawnDemoLocked(now);
  auto access = access_.find(credentials.token);
  if (!credentials.oauth || access == access_.end()) {
    return ErrorReply(401, "unauthorized",
                      credentials.token.empty()
                          ? "Authorization token is missing"
                          : "Invalid authorization token");
  }
  const std::optional<int32_t> counter_id =
      ParsePositive<int32_t>(route->counter);
  if (!counter_id.has_value()) {
    return ErrorReply(400, "invalid_parameter",
                      absl::StrCat("Invalid counter id: ", route->counter));
  }
  if (!counters_.contains(*counter_id)) {
    return ErrorReply(404, "not_found",
                      absl::StrCat("Counter ", *counter_id, " not found"));
  }
  if (!access->second.contains(*counter_id)) {
    return ErrorReply(403, "access_denied", "Access is denied");
  }
  return route->list ? ServeUploadings(*counter_id, req, now)
                     : ServeUploading(*counter_id, route->uploading_id, now);
}

Reply FakeMetrica::Impl::ServeUploading(int32_t counter_id,
                                        absl::string_view raw_id,
                                        absl::Time now) {
  const std::optional<int64_t> id = ParsePositive<int64_t>(raw_id);
  if (!id.has_value()) {
    return ErrorReply(400, "invalid_parameter",
                      absl::StrCat("Invalid uploading id: ", raw_id));
  }
  const Uploadings& uploadings = counters_.at(counter_id);
  auto entry = uploadings.find(*id);
  if (entry == uploadings.end()) {
    return ErrorReply(404, "not_found",
                      absl::StrCat("Uploading ", *id, " not found"));
  }
  return Reply{200, json_.UploadingBody(entry->second.At(now))};
}

Reply FakeMetrica::Impl::ServeUploadings(int32_t counter_id,
                                         const httplib::Request& req,
                                         absl::Time now) {
  int limit = kMaxLimit;
  if (req.has_param("limit")) {
    const std::string raw = req.get_param_value("limit");
    const std::optional<int> parsed = ParsePositive<int>(raw);
    if (!parsed.has_value() || *parsed > kMaxLimit) {
      return ErrorReply(400, "invalid_parameter",
                        absl::StrCat("Invalid limit: ", raw, " (expected 1..",
                                     kMaxLimit, ")"));
    }
    limit = *parsed;
  }
  int offset = 0;
  if (req.has_param("offset")) {
    const std::string raw = req.get_param_value("offset");
    const std::optional<int> parsed = ParseNonNegative(raw);
    if (!parsed.has_value()) {
      return ErrorReply(400, "invalid_parameter",
                        absl::StrCat("Invalid offset: ", raw));
    }
    offset = *parsed;
  }
  Uploading::Type type = Uploading::BASIC;
  if (req.has_param("type")) {
    const std::string raw = req.get_param_value("type");
    if (!Uploading::Type_Parse(raw, &type) ||
        type == Uploading::TYPE_UNSPECIFIED) {
      return ErrorReply(400, "invalid_parameter",
                        absl::StrCat("Invalid type: ", raw,
                                     " (expected BASIC, CALLS or CHATS)"));
    }
  }

  std::vector<Uploading> page;
  int skipped = 0;
  for (const auto& [id, entry] : counters_.at(counter_id)) {
    if (static_cast<int>(page.size()) >= limit) break;
    const Uploading& state = entry.At(now);
    const Uploading::Type state_type =
        state.type() == Uploading::TYPE_UNSPECIFIED ? Uploading::BASIC
                                                    : state.type();
    if (state_type != type) continue;
    if (skipped < offset) {
      ++skipped;
      continue;
    }
    page.push_back(state);
  }
  return Reply{200, json_.UploadingsBody(page)};
}

void FakeMetrica::Impl::SeedDemo(const std::string& token, double speed) {
  using ::google::protobuf::util::TimeUtil;
  const absl::Time now = clock_->Now();
  auto from_rfc3339 = [](const char* text) {
    absl::Time t;
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, text, &t, &error)) std::abort();
    return t;
  };
  auto make = [](int64_t id, absl::Time created, const char* comment,
                 Uploading::ClientIdType client_id_type, Uploading::Type type,
                 int32_t source_quantity) {
    Uploading u;
    u.set_id(id);
    *u.mutable_create_time() =
        TimeUtil::SecondsToTimestamp(absl::ToUnixSeconds(created));
    u.set_comment(comment);
    u.set_client_id_type(client_id_type);
    u.set_type(type);
    u.set_source_quantity(source_quantity);
    return u;
  };

  // Settled uploadings: finished ones (12 is the example of Metrica's docs,
  // with its create_time), and some stuck mid-way, as Metrica's hours-long
  // processing looks to a poller.
  struct Settled {
    int64_t id;
    absl::Time create_time;
    const char* comment;
    Uploading::ClientIdType client_id_type;
    Uploading::Type type;
    Uploading::Status status;
    int32_t source, lines, linked, user_not_found, goal_not_found;
    int32_t static_calls, dynamic_calls;
  };
  const Settled settled[] = {
      {12, from_rfc3339("2022-12-29T18:02:01Z"), "CRM export, December",
       Uploading::CLIENT_ID, Uploading::BASIC, Uploading::PROCESSED, 1500, 1480,
       1392, 86, 2, 0, 0},
      {13, from_rfc3339("2023-01-10T09:15:42Z"), "Direct clicks, test file",
       Uploading::YCLID, Uploading::BASIC, Uploading::LINKAGE_FAILURE, 40, 38,
       0, 38, 0, 0, 0},
      {14, from_rfc3339("2023-01-31T16:40:05Z"), "Call tracking, January",
       Uploading::USER_ID, Uploading::CALLS, Uploading::PROCESSED, 320, 318,
       296, 22, 0, 204, 114},
      {15, from_rfc3339("2023-02-02T11:03:17Z"), "Chat leads, week 5",
       Uploading::CLIENT_ID, Uploading::CHATS, Uploading::PROCESSED, 75, 75, 71,
       4, 0, 0, 0},
      {16, now - absl::Minutes(40), "Store purchases, week 6",
       Uploading::USER_ID, Uploading::BASIC, Uploading::MATCHED, 2400, 2391,
       1650, 512, 0, 0, 0},
      {17, now - absl::Minutes(25), "Phone orders", Uploading::CLIENT_ID,
       Uploading::BASIC, Uploading::EXPORTED, 610, 604, 0, 0, 0, 0, 0},
      {18, now - absl::Minutes(10), "Offline sales, Moscow", Uploading::USER_ID,
       Uploading::BASIC, Uploading::UPLOADED, 980, 977, 0, 0, 0, 0, 0},
      {19, now - absl::Minutes(2), "Offline sales, Kazan", Uploading::CLIENT_ID,
       Uploading::BASIC, Uploading::PREPARED, 430, 0, 0, 0, 0, 0, 0},
  };

  // Live uploads: a new one starts every `spawn_every` (ids 101, 102, ...)
  // and walks PREPARED -> UPLOADED -> EXPORTED -> MATCHED (counts change)
  // -> PROCESSED or LINKAGE_FAILURE within `journey`, as a real upload does,
  // just faster. Three are already under way at seeding. Ids are never
  // reused: a finished upload stays finished, as on Metrica.
  demo_.on = true;
  demo_.epoch = now;
  demo_.speed = speed > 0 ? speed : 1.0;
  demo_.next_id = 101;
  demo_.spawned = 0;
  std::vector<Entry> moving;
  for (int k = 0; k < 3; ++k) {
    // Phases 60 s, 30 s and 0 s into their journeys (at speed 1).
    moving.push_back(DemoJourney(demo_.next_id++,
                                 now - (kDemoSpawnEvery * (2 - k)) / demo_.speed));
  }

  absl::MutexLock lock(&mu_);
  access_[token].insert(kDemoCounter);
  for (const Settled& s : settled) {
    Entry entry;
    entry.initial = make(s.id, s.create_time, s.comment, s.client_id_type,
                         s.type, s.source);
    entry.initial.set_status(s.status);
    entry.initial.set_line_quantity(s.lines);
    entry.initial.set_linked_quantity(s.linked);
    entry.initial.set_user_not_found_quantity(s.user_not_found);
    entry.initial.set_goal_not_found_quantity(s.goal_not_found);
    entry.initial.set_static_calls_quantity(s.static_calls);
    entry.initial.set_dynamic_calls_quantity(s.dynamic_calls);
    entry.start = now;
    AddEntry(kDemoCounter, std::move(entry));
  }
  for (Entry& entry : moving) AddEntry(kDemoCounter, std::move(entry));
}

FakeMetrica::Impl::Entry FakeMetrica::Impl::DemoJourney(int64_t id,
                                                        absl::Time start) {
  using ::google::protobuf::util::TimeUtil;
  struct Kind {
    const char* comment;
    Uploading::ClientIdType client_id_type;
    int32_t source_quantity;
    bool links;  // ends PROCESSED, else LINKAGE_FAILURE
  };
  static constexpr Kind kKinds[] = {
      {"Live demo: CRM sync", Uploading::CLIENT_ID, 1000, true},
      {"Live demo: Direct clicks", Uploading::YCLID, 250, false},
      {"Live demo: loyalty cards", Uploading::USER_ID, 3200, true},
  };
  const Kind& kind = kKinds[id % 3];
  const double speed = demo_.speed;
  auto at = [speed](int seconds) { return absl::Seconds(seconds) / speed; };
  Entry entry;
  entry.start = start;
  entry.initial.set_id(id);
  *entry.initial.mutable_create_time() =
      TimeUtil::SecondsToTimestamp(absl::ToUnixSeconds(start));
  entry.initial.set_comment(kind.comment);
  entry.initial.set_client_id_type(kind.client_id_type);
  entry.initial.set_type(Uploading::BASIC);
  entry.initial.set_source_quantity(kind.source_quantity);
  entry.initial.set_status(Uploading::PREPARED);
  auto next = [&entry](absl::Duration after) -> Uploading& {
    const Uploading& previous =
        entry.stages.empty() ? entry.initial : entry.stages.back().state;
    entry.stages.push_back(Stage{after, previous});
    return entry.stages.back().state;
  };
  const int32_t lines = kind.source_quantity - kind.source_quantity / 60;
  Uploading* u = &next(at(15));
  u->set_status(Uploading::UPLOADED);
  u->set_line_quantity(lines);
  next(at(35)).set_status(Uploading::EXPORTED);
  // Matching goes on after MATCHED: a change of counts, status unchanged.
  u = &next(at(60));
  u->set_status(Uploading::MATCHED);
  if (kind.links) {
    u->set_linked_quantity(lines / 2);
    u->set_user_not_found_quantity(lines / 10);
    u = &next(at(75));
    u->set_linked_quantity(lines * 4 / 5);
    u->set_user_not_found_quantity(lines / 8);
    u = &next(at(90));
    u->set_status(Uploading::PROCESSED);
    u->set_goal_not_found_quantity(lines / 100);
    u->set_linked_quantity(lines - lines / 8 - lines / 100);
  } else {
    u->set_user_not_found_quantity(lines / 2);
    next(at(75)).set_user_not_found_quantity(lines * 4 / 5);
    u = &next(at(90));
    u->set_status(Uploading::LINKAGE_FAILURE);
    u->set_user_not_found_quantity(lines);
  }
  return entry;
}

void FakeMetrica::Impl::SpawnDemoLocked(absl::Time now) {
  if (!demo_.on) return;
  const absl::Duration every = kDemoSpawnEvery / demo_.speed;
  absl::Duration unused;
  const int64_t due = absl::IDivDuration(now - demo_.epoch, every, &unused);
  while (demo_.spawned < due) {
    ++demo_.spawned;
    AddEntry(kDemoCounter, DemoJourney(demo_.next_id++,
                                       demo_.epoch + every * demo_.spawned));
  }
}

FakeMetrica::FakeMetrica(Options options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
FakeMetrica::~FakeMetrica() = default;

absl::Status FakeMetrica::Start() { return impl_->Start(); }
void FakeMetrica::Stop() { impl_->Stop(); }
int FakeMetrica::port() const { return impl_->port(); }
std::string FakeMetrica::base_url() const { return impl_->base_url(); }

void FakeMetrica::GrantAccess(const std::string& token, int32_t counter_id) {
  impl_->GrantAccess(token, counter_id);
}
void FakeMetrica::AddToken(const std::string& token) { impl_->AddToken(token); }

void FakeMetrica::AddUploading(int32_t counter_id, const Uploading& uploading,
                               std::vector<Step> schedule) {
  impl_->AddUploading(counter_id, uploading, std::move(schedule));
}
void FakeMetrica::SetUploading(int32_t counter_id, const Uploading& uploading) {
  impl_->SetUploading(counter_id, uploading);
}
std::optional<Uploading> FakeMetrica::GetUploading(int32_t counter_id,
                                                   int64_t uploading_id) const {
  return impl_->GetUploading(counter_id, uploading_id);
}

void FakeMetrica::InjectFault(Fault fault) {
  impl_->InjectFault(std::move(fault));
}
void FakeMetrica::ClearFaults() { impl_->ClearFaults(); }

std::vector<FakeMetrica::RecordedRequest> FakeMetrica::requests() const {
  return impl_->requests();
}
void FakeMetrica::ClearRequests() { impl_->ClearRequests(); }
int FakeMetrica::max_in_flight(const std::string& token) const {
  return impl_->max_in_flight(token);
}

void FakeMetrica::SeedDemo(const std::string& token, double speed) {
  impl_->SeedDemo(token, speed);
}

}  // namespace uploadwatch
