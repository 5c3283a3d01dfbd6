// The one file of the project that includes <curl/curl.h>.
#include "service/metrica/curl_metrica_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/memory/memory.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/auth/token.h"
#include "service/common/status_details.h"
#include "service/metrica/error_mapping.h"
#include "service/metrica/json_mapping.h"

namespace uploadwatch {
namespace {

constexpr absl::string_view kPathPrefix = "/management/v1/counter/";
constexpr absl::string_view kRetryAfter = "retry-after:";
// ErrorInfo reasons: Metrica's daily per-user quota (its error_type upper-
// cased, see error_mapping.h), and our own budget's.
constexpr absl::string_view kDailyQuotaReason = "QUOTA_REQUESTS_BY_UID";
constexpr absl::string_view kBudgetSpentReason = "DAILY_BUDGET_EXHAUSTED";
// Bounds an attempt's total timeout when the caller's deadline is infinite
// (libcurl takes a long; a day is far beyond any sane Metrica call).
constexpr int64_t kMaxAttemptMs = 24 * 60 * 60 * 1000;

// The typed end of a call: parses a 2xx body and runs the caller's callback.
class ReplySink {
 public:
  virtual ~ReplySink() = default;
  // Parses a 2xx body, keeping the result for Deliver(OK).
  virtual absl::Status Parse(absl::string_view body) = 0;
  // Runs the callback with the parsed reply if `status` is OK, else `status`.
  virtual void Deliver(absl::Status status) && = 0;
};

template <typename Response>
class TypedSink final : public ReplySink {
 public:
  using Parser = absl::StatusOr<Response> (*)(absl::string_view);
  using Callback = absl::AnyInvocable<void(absl::StatusOr<Response>) &&>;

  TypedSink(Parser parser, Callback done)
      : parser_(parser), done_(std::move(done)) {}

  absl::Status Parse(absl::string_view body) override {
    absl::StatusOr<Response> parsed = parser_(body);
    if (!parsed.ok()) return parsed.status();
    response_ = *std::move(parsed);
    return absl::OkStatus();
  }

  void Deliver(absl::Status status) && override {
    if (status.ok()) {
      std::move(done_)(std::move(response_));
    } else {
      std::move(done_)(std::move(status));
    }
  }

 private:
  Parser parser_;
  Callback done_;
  Response response_;
};

// One call, from submission to its callback. Owned by the loop.
struct Request {
  // kAcquiring: holds its QuotaGuard slot, waits for Options::permits.
  enum class Phase { kQueued, kAcquiring, kInFlight, kBackingOff };

  Request(Backoff backoff, size_t body_limit, const Clock* clock)
      : backoff(std::move(backoff)), body_limit(body_limit), clock(clock) {}

  MetricaClient::RequestId id = 0;
  // The shared permit of the attempt at Metrica (Options::permits), and
  // which Acquire an answer belongs to.
  std::unique_ptr<UpstreamPermits::Permit> permit;
  uint64_t acquire_seq = 0;
  std::string token;
  std::string token_fingerprint;  // the daily budget's key
  std::string url;
  std::string what;  // for messages, e.g. "counter 5, uploading 12"
  absl::Time deadline;
  std::unique_ptr<ReplySink> sink;
  Backoff backoff;
  const size_t body_limit;  // Options::max_response_bytes
  const Clock* const clock;
  int attempts = 0;
  absl::Status last_error;  // of the last failed attempt
  Phase phase = Phase::kQueued;
  // The caller has had its answer (cancelled, or its deadline passed) while
  // an attempt was at Metrica: the attempt runs on without a waiter (`sink`
  // is gone) only so that its quota slot stays taken until Metrica is done.
  bool orphan = false;
  // Its key in the timer set: the deadline, or the next attempt's time while
  // backing off. InfiniteFuture: none.
  absl::Time timer_at = absl::InfiniteFuture();

  // The attempt in flight (phase kInFlight).
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string body;
  bool too_large = false;
  std::optional<absl::Duration> retry_after;
  int64_t timeout_ms = 0;
  char error[CURL_ERROR_SIZE] = {};
};

bool IsLoopbackHost(absl::string_view name) {
  if (absl::EqualsIgnoreCase(name, "localhost")) return true;
  if (absl::ConsumePrefix(&name, "[")) absl::ConsumeSuffix(&name, "]");
  const std::string host(name);
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6) ||
           (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
  }
  return false;
}

// Scheme and host of `url`, as libcurl will understand them.
struct ParsedUrl {
  std::string scheme;
  std::string host;
  bool has_query = false;
};

absl::StatusOr<ParsedUrl> ParseUrl(const std::string& url) {
  CURLU* handle = curl_url();
  if (handle == nullptr) return absl::ResourceExhaustedError("curl_url failed");
  ParsedUrl parsed;
  CURLUcode rc = curl_url_set(handle, CURLUPART_URL, url.c_str(), 0);
  char* part = nullptr;
  if (rc == CURLUE_OK) {
    rc = curl_url_get(handle, CURLUPART_SCHEME, &part, 0);
    if (rc == CURLUE_OK) parsed.scheme = part;
    curl_free(part);
  }
  if (rc == CURLUE_OK) {
    rc = curl_url_get(handle, CURLUPART_HOST, &part, 0);
    if (rc == CURLUE_OK) parsed.host = part;
    curl_free(part);
  }
  if (rc == CURLUE_OK) {
    part = nullptr;
    parsed.has_query =
        curl_url_get(handle, CURLUPART_QUERY, &part, 0) == CURLUE_OK;
    curl_free(part);
  }
  curl_url_cleanup(handle);
  if (rc != CURLUE_OK) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Metrica base URL \"", url, "\" is not a URL: ", curl_url_strerror(rc)));
  }
  return parsed;
}

TransportFailure Classify(CURLcode code, bool too_large) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return TransportFailure::kResolve;
    case CURLE_COULDNT_CONNECT:
      return TransportFailure::kConnect;
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return TransportFailure::kConnectionLost;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
      return TransportFailure::kTls;
    case CURLE_OPERATION_TIMEDOUT:
      return TransportFailure::kStalled;
    case CURLE_PARTIAL_FILE:
      return TransportFailure::kTruncated;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
      return TransportFailure::kMalformed;
    case CURLE_FILESIZE_EXCEEDED:
      return TransportFailure::kTooLarge;
    case CURLE_WRITE_ERROR:
      return too_large ? TransportFailure::kTooLarge : TransportFailure::kOther;
    default:
      return TransportFailure::kOther;
  }
}

// A CA bundle libcurl could not load would fail every request with a vague
// "error setting certificate file": say what is wrong at startup instead.
absl::Status CheckCaFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot read the upstream CA file \"", path, "\": ",
        std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (!absl::StrContains(text.str(), "-----BEGIN CERTIFICATE-----")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the upstream CA file \"", path,
        "\" has no PEM certificate (-----BEGIN CERTIFICATE-----)"));
  }
  return absl::OkStatus();
}

// Whether the transfer got past connecting (and the TLS handshake), so that
// its request may be at the server.
bool Sent(CURL* easy) {
  curl_off_t pretransfer_us = 0;
  curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us);
  return pretransfer_us > 0;
}

int64_t CeilMilliseconds(absl::Duration d) {
  return absl::ToInt64Milliseconds(absl::Ceil(d, absl::Milliseconds(1)));
}

}  // namespace

class CurlMetricaClient::Impl {
 public:
  Impl(Options options, std::string base_url, std::string domain,
       bool allow_plain_http, CURLM* multi);
  ~Impl();

  RequestId Submit(absl::string_view token, std::string path_and_query,
                   std::string what, absl::Time deadline,
                   std::unique_ptr<ReplySink> sink);
  void Cancel(RequestId id);
  // Thread-safe; the loop charges it, others read it.
  DailyBudget& budget() { return budget_; }

 private:
  using Phase = Request::Phase;

  // The loop and its steps; all run on thread_ only.
  void Run();
  // Moves submitted calls and cancels into the loop; false once stopping.
  bool TakeSubmissions();
  void HandleCompletions();
  void OnAttemptDone(Request* request, CURLcode code);
  void FireTimers();
  void PumpQuota();
  int PollTimeoutMs();
  void Shutdown();

  void Enqueue(Request* request);
  void StartAttempt(Request* request);
  // Removes the attempt in flight from libcurl and frees its quota slot.
  void EndAttempt(Request* request);
  void RetryOrFinish(Request* request, absl::Status status);
  // Runs the callback and forgets the request; an attempt still at Metrica
  // is kept as an orphan while QuotaGuard holds its slot.
  void Finish(Request* request, absl::Status status);
  // True (and the token's day marked spent) if `status` is Metrica's
  // "daily quota spent" error.
  bool NoteDailyQuota(const Request& request, const absl::Status& status);
  void ArmTimer(Request* request, absl::Time at);
  ErrorContext Context(const Request& request) const;

  static size_t OnBody(char* data, size_t size, size_t count, void* request);
  static size_t OnHeader(char* data, size_t size, size_t count, void* request);

  const Options options_;
  const std::string base_url_;  // without a trailing '/'
  const std::string domain_;    // ErrorInfo.domain
  const char* const protocols_;
  const Clock* const clock_;
  std::unique_ptr<RandomSource> own_random_;
  RandomSource* const random_;
  std::atomic<RequestId> next_id_{1};

  // Where other threads hand work to the loop. `multi_` itself is touched only
  // by the loop thread, except for curl_multi_wakeup (thread-safe).
  CURLM* const multi_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Request>> submitted_ ABSL_GUARDED_BY(mu_);
  std::vector<RequestId> cancelled_ ABSL_GUARDED_BY(mu_);
  // Answers of Options::permits, run on the loop.
  std::vector<absl::AnyInvocable<void()>> posted_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Lets a permit's answer that comes after the client is gone find nothing.
  struct Mailbox {
    absl::Mutex mu;
    Impl* impl ABSL_GUARDED_BY(mu) = nullptr;
  };
  std::shared_ptr<Mailbox> mailbox_ = std::make_shared<Mailbox>();
  void Post(absl::AnyInvocable<void()> task);
  void OnPermit(RequestId id, uint64_t seq,
                absl::StatusOr<std::unique_ptr<UpstreamPermits::Permit>> permit);

  // Loop-thread state.
  absl::flat_hash_map<RequestId, std::unique_ptr<Request>> requests_;
  std::set<std::pair<absl::Time, RequestId>> timers_;
  QuotaGuard quota_;
  absl::Time quota_check_ = absl::InfiniteFuture();
  DailyBudget budget_;  // thread-safe: also read by other threads

  std::thread thread_;  // last: starts once everything above exists
};

CurlMetricaClient::Impl::Impl(Options options, std::string base_url,
                              std::string domain, bool allow_plain_http,
                              CURLM* multi)
    : options_(std::move(options)),
      base_url_(std::move(base_url)),
      domain_(std::move(domain)),
      protocols_(allow_plain_http ? "http,https" : "https"),
      clock_(options_.clock != nullptr ? options_.clock : Clock::Real()),
      own_random_(options_.random != nullptr
                      ? nullptr
                      : std::make_unique<BitGenRandomSource>()),
      random_(options_.random != nullptr ? options_.random : own_random_.get()),
      multi_(multi),
      quota_(options_.quota, clock_),
      budget_(options_.daily_budget, clock_),
      thread_([this] { Run(); }) {
  absl::MutexLock lock(&mailbox_->mu);
  mailbox_->impl = this;
}

CurlMetricaClient::Impl::~Impl() {
  {
    absl::MutexLock lock(&mailbox_->mu);
    mailbox_->impl = nullptr;
  }
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  curl_multi_wakeup(multi_);
  thread_.join();
  curl_multi_cleanup(multi_);
}

MetricaClient::RequestId CurlMetricaClient::Impl::Submit(
    absl::string_view token, std::string path_and_query, std::string what,
    absl::Time deadline, std::unique_ptr<ReplySink> sink) {
  auto request = std::make_unique<Request>(Backoff(options_.backoff, random_),
                                           options_.max_response_bytes, clock_);
  const RequestId id = next_id_.fetch_add(1);
  request->id = id;
  request->token = std::string(token);
  request->token_fingerprint = Credentials(request->token).fingerprint();
  request->url = base_url_ + path_and_query;
  request->what = std::move(what);
  request->deadline = deadline;
  request->sink = std::move(sink);
  {
    absl::MutexLock lock(&mu_);
    submitted_.push_back(std::move(request));
  }
  curl_multi_wakeup(multi_);
  return id;
}

void CurlMetricaClient::Impl::Post(absl::AnyInvocable<void()> task) {
  {
    absl::MutexLock lock(&mu_);
    posted_.push_back(std::move(task));
  }
  curl_multi_wakeup(multi_);
}

void CurlMetricaClient::Impl::OnPermit(
    RequestId id, uint64_t seq,
    absl::StatusOr<std::unique_ptr<UpstreamPermits::Permit>> permit) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;  // finished meanwhile: the permit goes back
  Request* request = it->second.get();
  if (request->phase != Phase::kAcquiring || request->acquire_seq != seq) return;
  if (!permit.ok()) {
    quota_.Release(request->id);
    request->phase = Phase::kBackingOff;  // neither queued nor in flight
    absl::Status status = permit.status();
    if (status.code() == absl::StatusCode::kResourceExhausted) {
      status = absl::ResourceExhaustedError(absl::StrCat(
          "the daily budget of this token shared by the replicas is spent (",
          request->what, ")"));
      SetErrorInfo(status, kBudgetSpentReason, "uploadwatch");
    } else {
      status = DeadlineExceededStatus(request->last_error, Context(*request));
    }
    Finish(request, std::move(status));
    return;
  }
  request->permit = *std::move(permit);
  StartAttempt(request);
}

void CurlMetricaClient::Impl::Cancel(RequestId id) {
  {
    absl::MutexLock lock(&mu_);
    cancelled_.push_back(id);
  }
  curl_multi_wakeup(multi_);
}

void CurlMetricaClient::Impl::Run() {
  pthread_setname_np(pthread_self(), "metrica-curl");
  while (TakeSubmissions()) {
    int running = 0;
    curl_multi_perform(multi_, &running);
    HandleCompletions();
    FireTimers();
    PumpQuota();
    curl_multi_poll(multi_, nullptr, 0, PollTimeoutMs(), nullptr);
  }
  Shutdown();
}

bool CurlMetricaClient::Impl::TakeSubmissions() {
  std::vector<std::unique_ptr<Request>> submitted;
  std::vector<RequestId> cancelled;
  std::vector<absl::AnyInvocable<void()>> posted;
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    submitted.swap(submitted_);
    cancelled.swap(cancelled_);
    posted.swap(posted_);
    stopping = stopping_;
  }
  for (auto& task : posted) task();
  for (std::unique_ptr<Request>& owned : submitted) {
    Request* request = owned.get();
    requests_[request->id] = std::move(owned);
    // A token is sent in a header: one that could end the header line (or is
    // otherwise not printable ASCII) is refused without being sent.
    const bool printable =
        std::all_of(request->token.begin(), request->token.end(),
                    [](char c) { return c > ' ' && c < 0x7f; });
    if (!printable) {
      Finish(request,
             absl::UnauthenticatedError(absl::StrCat(
                 "the OAuth token has characters a token cannot have (",
                 request->what, ")")));
      continue;
    }
    Enqueue(request);
  }
  for (RequestId id : cancelled) {
    auto it = requests_.find(id);
    if (it == requests_.end() || it->second->orphan) continue;
    Finish(it->second.get(),
           absl::CancelledError(
               absl::StrCat("request cancelled (", it->second->what, ")")));
  }
  return !stopping;
}

void CurlMetricaClient::Impl::HandleCompletions() {
  int left = 0;
  while (CURLMsg* message = curl_multi_info_read(multi_, &left)) {
    if (message->msg != CURLMSG_DONE) continue;
    Request* request = nullptr;
    curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &request);
    OnAttemptDone(request, message->data.result);
  }
}

void CurlMetricaClient::Impl::OnAttemptDone(Request* request, CURLcode code) {
  long http_status = 0;
  curl_easy_getinfo(request->easy, CURLINFO_RESPONSE_CODE, &http_status);
  curl_off_t total_us = 0;
  curl_easy_getinfo(request->easy, CURLINFO_TOTAL_TIME_T, &total_us);
  EndAttempt(request);  // the answer came: a held slot is free now too

  const ErrorContext context = Context(*request);
  if (request->orphan) {
    // Nobody waits for it; only what it says about the day's quota matters.
    if (code == CURLE_OK && (http_status < 200 || http_status >= 300)) {
      NoteDailyQuota(*request,
                     HttpErrorToStatus(static_cast<int>(http_status),
                                       request->body, request->retry_after,
                                       context));
    }
    requests_.erase(request->id);
    return;
  }
  if (code == CURLE_OPERATION_TIMEDOUT &&
      (total_us >= (request->timeout_ms - 1) * 1000 ||
       clock_->Now() >= request->deadline)) {
    // The total timeout, which is the caller's deadline: not a stall.
    Finish(request, DeadlineExceededStatus(request->last_error, context));
    return;
  }
  if (code != CURLE_OK) {
    const TransportFailure failure = Classify(code, request->too_large);
    const std::string detail =
        failure == TransportFailure::kTooLarge
            ? absl::StrCat("more than ", request->body_limit, " bytes")
        : request->error[0] != '\0' ? std::string(request->error)
                                    : std::string(curl_easy_strerror(code));
    RetryOrFinish(request, TransportFailureToStatus(failure, detail, context));
    return;
  }
  if (http_status >= 200 && http_status < 300) {
    absl::Status parsed = request->sink->Parse(request->body);
    if (parsed.ok()) {
      Finish(request, absl::OkStatus());
    } else {
      RetryOrFinish(request, BadReplyStatus(parsed.message(), context));
    }
    return;
  }
  absl::Status status =
      HttpErrorToStatus(static_cast<int>(http_status), request->body,
                        request->retry_after, context);
  if (NoteDailyQuota(*request, status)) {
    // Retrying before the reset could only collect more of the same.
    if (!GetRetryDelay(status).has_value()) {
      SetRetryInfo(status, budget_.ResetsAt() - clock_->Now());
    }
    Finish(request, std::move(status));
    return;
  }
  RetryOrFinish(request, std::move(status));
}

bool CurlMetricaClient::Impl::NoteDailyQuota(const Request& request,
                                             const absl::Status& status) {
  if (status.code() != absl::StatusCode::kResourceExhausted) return false;
  const std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  if (!info.has_value() || info->reason() != kDailyQuotaReason) return false;
  // Metrica's Retry-After, when it gave one, says when the block lifts.
  const std::optional<absl::Duration> retry = GetRetryDelay(status);
  budget_.MarkSpent(request.token_fingerprint,
                    retry.has_value() ? clock_->Now() + *retry
                                      : absl::InfiniteFuture());
  return true;
}

void CurlMetricaClient::Impl::FireTimers() {
  const absl::Time now = clock_->Now();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    const RequestId id = timers_.begin()->second;
    timers_.erase(timers_.begin());
    Request* request = requests_.at(id).get();
    request->timer_at = absl::InfiniteFuture();
    if (now >= request->deadline) {
      Finish(request, DeadlineExceededStatus(request->last_error,
                                             Context(*request)));
    } else if (request->phase == Phase::kBackingOff) {
      Enqueue(request);
    }
  }
}

void CurlMetricaClient::Impl::PumpQuota() {
  QuotaGuard::Step step = quota_.Advance();
  for (QuotaGuard::Ticket id : step.hold_over) {
    // Metrica can be assumed done with it: stop waiting for its answer.
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;
    EndAttempt(it->second.get());
    requests_.erase(it);
  }
  for (QuotaGuard::Ticket id : step.expired) {
    Request* request = requests_.at(id).get();
    Finish(request,
           DeadlineExceededStatus(request->last_error, Context(*request)));
  }
  for (QuotaGuard::Ticket id : step.send) StartAttempt(requests_.at(id).get());
  quota_check_ = step.next_check;
}

int CurlMetricaClient::Impl::PollTimeoutMs() {
  // At most a second, so that a clock other than the real one (or a wall-clock
  // jump) cannot hold a timer back for long. libcurl shortens it further for
  // its own timers.
  absl::Time next = quota_check_;
  if (!timers_.empty()) next = std::min(next, timers_.begin()->first);
  const absl::Duration wait = next - clock_->Now();
  return static_cast<int>(std::clamp<int64_t>(CeilMilliseconds(wait), 0, 1000));
}

void CurlMetricaClient::Impl::Shutdown() {
  // Callbacks may submit more calls while shutting down: those fail too.
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      for (std::unique_ptr<Request>& request : submitted_) {
        const RequestId id = request->id;
        requests_[id] = std::move(request);
      }
      submitted_.clear();
      cancelled_.clear();
    }
    if (requests_.empty()) break;
    Request* request = requests_.begin()->second.get();
    const RequestId id = request->id;
    if (!request->orphan) {
      Finish(request,
             absl::CancelledError(absl::StrCat(
                 "Metrica client shutting down (", request->what, ")")));
    }
    // Left as an orphan (or one already): no one will wait for it now.
    auto it = requests_.find(id);
    if (it != requests_.end()) {
      EndAttempt(it->second.get());
      requests_.erase(it);
    }
  }
}

void CurlMetricaClient::Impl::Enqueue(Request* request) {
  request->phase = Phase::kQueued;
  quota_.Enqueue(request->id, request->token, request->deadline);
  ArmTimer(request, request->deadline);
}

void CurlMetricaClient::Impl::StartAttempt(Request* request) {
  if (request->deadline - clock_->Now() < options_.min_attempt_time) {
    quota_.Release(request->id);
    request->phase = Phase::kBackingOff;  // neither queued nor in flight
    Finish(request, DeadlineExceededStatus(request->last_error, Context(*request)));
    return;
  }
  if (options_.permits != nullptr && request->permit == nullptr) {
    // The shared quota first; the attempt starts when its permit comes.
    request->phase = Phase::kAcquiring;
    const uint64_t seq = ++request->acquire_seq;
    options_.permits->Acquire(
        request->token_fingerprint, request->deadline,
        [mailbox = mailbox_, id = request->id, seq](
            absl::StatusOr<std::unique_ptr<UpstreamPermits::Permit>> permit) {
          absl::MutexLock lock(&mailbox->mu);
          if (mailbox->impl == nullptr) return;
          mailbox->impl->Post(
              [impl = mailbox->impl, id, seq,
               permit = std::make_shared<decltype(permit)>(
                   std::move(permit))]() mutable {
                impl->OnPermit(id, seq, std::move(*permit));
              });
        });
    return;
  }
  if (!budget_.TryCharge(request->token_fingerprint)) {
    // Spent for today: failing now keeps Metrica's own daily limit (and so
    // every other tool of this user) safe.
    quota_.Release(request->id);
    request->phase = Phase::kBackingOff;  // neither queued nor in flight
    const QuotaUsage usage = budget_.Usage(request->token_fingerprint);
    const std::optional<absl::Time> stopped =
        budget_.StoppedUntil(request->token_fingerprint);
    const absl::Time until = stopped.value_or(usage.resets_at);
    const std::string when =
        absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", until, absl::UTCTimeZone());
    absl::Status status = absl::ResourceExhaustedError(
        stopped.has_value()
            ? absl::StrCat("Metrica said this token's daily request quota "
                           "(quota_requests_by_uid) is spent: nothing is sent "
                           "for it until ", when, " (", request->what, ")")
            : absl::StrCat("uploadwatch's daily budget of ", usage.budget,
                           " Metrica requests for this token is spent; it "
                           "renews at ", when, " (", request->what, ")"));
    SetErrorInfo(status, kBudgetSpentReason, "uploadwatch");
    SetRetryInfo(status, until - clock_->Now());
    Finish(request, std::move(status));
    return;
  }
  const absl::Duration remaining = request->deadline - clock_->Now();
  ++request->attempts;
  request->phase = Phase::kInFlight;
  CURL* easy = curl_easy_init();
  if (easy == nullptr) {
    quota_.Release(request->id);
    RetryOrFinish(request, TransportFailureToStatus(TransportFailure::kOther,
                                                    "curl_easy_init failed",
                                                    Context(*request)));
    return;
  }
  request->easy = easy;
  request->body.clear();
  request->too_large = false;
  request->retry_after.reset();
  request->error[0] = '\0';
  // The transfer may outlive its caller (see Request::orphan), up to the
  // quota guard's hold.
  request->timeout_ms = std::clamp<int64_t>(
      std::max(CeilMilliseconds(remaining),
               CeilMilliseconds(options_.quota.abandoned_hold)),
      1, kMaxAttemptMs);
  const int64_t connect_ms = std::min(
      request->timeout_ms, CeilMilliseconds(options_.connect_timeout));
  request->headers = curl_slist_append(
      nullptr, absl::StrCat("Authorization: OAuth ", request->token).c_str());
  request->headers =
      curl_slist_append(request->headers, "Accept: application/json");

  curl_easy_setopt(easy, CURLOPT_PRIVATE, request);
  curl_easy_setopt(easy, CURLOPT_URL, request->url.c_str());
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, request->headers);
  curl_easy_setopt(easy, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, protocols_);
  // libcurl's defaults, stated: Metrica's chain and host name are verified.
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options_.ca_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_CAINFO, options_.ca_file.c_str());
  }
  // No CURLOPT_PROXY: https_proxy / no_proxy from the environment apply.
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(easy, CURLOPT_HTTP_VERSION,
                   static_cast<long>(CURL_HTTP_VERSION_2TLS));
  // Wait for an HTTP/2 connection being set up rather than open another.
  curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(request->timeout_ms));
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_ms));
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT,
                   static_cast<long>(options_.low_speed_limit_bytes));
  curl_easy_setopt(
      easy, CURLOPT_LOW_SPEED_TIME,
      static_cast<long>(std::max<int64_t>(
          1, absl::ToInt64Seconds(absl::Ceil(options_.low_speed_time,
                                             absl::Seconds(1))))));
  // Fails early on an announced Content-Length; OnBody enforces the cap on
  // chunked bodies, which this option does not stop in libcurl 7.88.
  curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
                   static_cast<curl_off_t>(options_.max_response_bytes));
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Impl::OnBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, request);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &Impl::OnHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, request);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, request->error);

  if (curl_multi_add_handle(multi_, easy) != CURLM_OK) {
    EndAttempt(request);
    RetryOrFinish(request, TransportFailureToStatus(
                               TransportFailure::kOther,
                               "curl_multi_add_handle failed", Context(*request)));
  }
}

void CurlMetricaClient::Impl::EndAttempt(Request* request) {
  if (request->easy == nullptr) return;
  curl_multi_remove_handle(multi_, request->easy);
  curl_easy_cleanup(request->easy);
  curl_slist_free_all(request->headers);
  request->easy = nullptr;
  request->headers = nullptr;
  request->permit.reset();
  quota_.Release(request->id);
}

void CurlMetricaClient::Impl::RetryOrFinish(Request* request,
                                            absl::Status status) {
  if (IsRetryable(status) && request->attempts < options_.max_attempts) {
    const std::optional<absl::Time> at =
        NextAttemptTime(clock_->Now(), request->backoff.NextDelay(),
                        request->retry_after, request->deadline);
    if (at.has_value()) {
      request->last_error = std::move(status);
      request->phase = Phase::kBackingOff;
      ArmTimer(request, *at);
      return;
    }
  }
  Finish(request, std::move(status));
}

void CurlMetricaClient::Impl::Finish(Request* request, absl::Status status) {
  bool keep_attempt = false;
  switch (request->phase) {
    case Phase::kQueued:
      quota_.Remove(request->id);  // nobody waits: never sent
      break;
    case Phase::kAcquiring:
      quota_.Release(request->id);  // never sent; a late permit goes back
      break;
    case Phase::kInFlight:
      // Once sent, Metrica works on it whatever we do: its slot stays taken
      // for a while. One still connecting never reached Metrica.
      keep_attempt = request->easy != nullptr && Sent(request->easy) &&
                     quota_.Abandon(request->id);
      if (!keep_attempt) EndAttempt(request);
      break;
    case Phase::kBackingOff:
      break;
  }
  if (request->timer_at != absl::InfiniteFuture()) {
    timers_.erase({request->timer_at, request->id});
    request->timer_at = absl::InfiniteFuture();
  }
  if (keep_attempt) {
    request->orphan = true;
    std::unique_ptr<ReplySink> sink = std::move(request->sink);
    std::move(*sink).Deliver(RedactSecret(status, request->token));
    return;
  }
  auto it = requests_.find(request->id);
  std::unique_ptr<Request> owned = std::move(it->second);
  requests_.erase(it);
  // Whatever Metrica echoed, the token never leaves in a status.
  std::move(*owned->sink).Deliver(RedactSecret(status, owned->token));
}

void CurlMetricaClient::Impl::ArmTimer(Request* request, absl::Time at) {
  if (request->timer_at != absl::InfiniteFuture()) {
    timers_.erase({request->timer_at, request->id});
  }
  request->timer_at = at;
  if (at != absl::InfiniteFuture()) timers_.insert({at, request->id});
}

ErrorContext CurlMetricaClient::Impl::Context(const Request& request) const {
  return ErrorContext{domain_, request.what, request.attempts};
}

size_t CurlMetricaClient::Impl::OnBody(char* data, size_t size, size_t count,
                                       void* user) {
  auto* request = static_cast<Request*>(user);
  const size_t bytes = size * count;
  if (request->body.size() + bytes > request->body_limit) {
    request->too_large = true;
    return 0;  // libcurl aborts the transfer with CURLE_WRITE_ERROR
  }
  request->body.append(data, bytes);
  return bytes;
}

size_t CurlMetricaClient::Impl::OnHeader(char* data, size_t size, size_t count,
                                         void* user) {
  auto* request = static_cast<Request*>(user);
  const size_t bytes = size * count;
  absl::string_view line(data, bytes);
  if (absl::StartsWith(line, "HTTP/")) {
    request->retry_after.reset();  // a new response (after a 1xx) begins
  } else if (absl::StartsWithIgnoreCase(line, kRetryAfter)) {
    line.remove_prefix(kRetryAfter.size());
    request->retry_after = ParseRetryAfter(line, request->clock->Now());
  }
  return bytes;
}

absl::StatusOr<std::unique_ptr<CurlMetricaClient>> CurlMetricaClient::Create(
    Options options) {
  static const CURLcode global_init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (global_init != CURLE_OK) {
    return absl::InternalError(absl::StrCat("curl_global_init failed: ",
                                            curl_easy_strerror(global_init)));
  }
  if (options.max_attempts < 1) {
    return absl::InvalidArgumentError("max_attempts must be at least 1");
  }
  if (options.max_response_bytes == 0) {
    return absl::InvalidArgumentError("max_response_bytes must be positive");
  }
  absl::StatusOr<ParsedUrl> url = ParseUrl(options.base_url);
  if (!url.ok()) return url.status();
  const std::string scheme = absl::AsciiStrToLower(url->scheme);
  if (scheme != "https" && scheme != "http") {
    return absl::InvalidArgumentError(
        absl::StrCat("Metrica base URL \"", options.base_url,
                     "\" must be https (or http to a loopback host)"));
  }
  const bool loopback = IsLoopbackHost(url->host);
  if (scheme == "http" && !loopback) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Metrica base URL \"", options.base_url,
        "\" uses plain http, which is allowed only for a loopback host "
        "(127.0.0.0/8, ::1, localhost): the OAuth token would travel in clear "
        "text. Use https."));
  }
  if (url->has_query || absl::StrContains(options.base_url, '#')) {
    return absl::InvalidArgumentError(
        absl::StrCat("Metrica base URL \"", options.base_url,
                     "\" must not have a query or fragment"));
  }
  if (!options.ca_file.empty()) {
    absl::Status ca = CheckCaFile(options.ca_file);
    if (!ca.ok()) return ca;
  }
  CURLM* multi = curl_multi_init();
  if (multi == nullptr) return absl::InternalError("curl_multi_init failed");
  curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  std::string base_url(absl::StripSuffix(options.base_url, "/"));
  return absl::WrapUnique(new CurlMetricaClient(std::make_unique<Impl>(
      std::move(options), std::move(base_url), url->host, loopback, multi)));
}

CurlMetricaClient::CurlMetricaClient(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

CurlMetricaClient::~CurlMetricaClient() = default;

MetricaClient::RequestId CurlMetricaClient::GetUploading(
    absl::string_view token, int32_t counter_id, int64_t uploading_id,
    absl::Time deadline, GetCallback done) {
  return impl_->Submit(
      token,
      absl::StrCat(kPathPrefix, counter_id,
                   "/offline_conversions/uploading/", uploading_id),
      absl::StrCat("counter ", counter_id, ", uploading ", uploading_id),
      deadline,
      std::make_unique<TypedSink<v1::GetUploadingResponse>>(
          &ParseUploadingBody, std::move(done)));
}

MetricaClient::RequestId CurlMetricaClient::ListUploadings(
    absl::string_view token, const ListParams& params, absl::Time deadline,
    ListCallback done) {
  std::string path = absl::StrCat(kPathPrefix, params.counter_id,
                                  "/offline_conversions/uploadings");
  std::string what = absl::StrCat("counter ", params.counter_id, ", uploadings");
  std::vector<std::string> query;
  if (params.limit != 0) query.push_back(absl::StrCat("limit=", params.limit));
  if (params.offset != 0) query.push_back(absl::StrCat("offset=", params.offset));
  if (params.type != v1::Uploading::TYPE_UNSPECIFIED) {
    query.push_back(
        absl::StrCat("type=", v1::Uploading::Type_Name(params.type)));
  }
  if (!query.empty()) {
    const std::string joined = absl::StrJoin(query, "&");
    absl::StrAppend(&path, "?", joined);
    absl::StrAppend(&what, " ", joined);
  }
  return impl_->Submit(token, std::move(path), std::move(what), deadline,
                       std::make_unique<TypedSink<v1::ListUploadingsResponse>>(
                           &ParseUploadingsBody, std::move(done)));
}

void CurlMetricaClient::Cancel(RequestId id) { impl_->Cancel(id); }

std::optional<QuotaUsage> CurlMetricaClient::DailyUsage(
    const std::string& token_fingerprint) {
  if (!impl_->budget().enabled()) return std::nullopt;
  return impl_->budget().Usage(token_fingerprint);
}

std::vector<std::pair<std::string, QuotaUsage>>
CurlMetricaClient::AllDailyUsage() {
  return impl_->budget().All();
}

}  // namespace uploadwatch
