#ifndef UPLOADWATCH_SERVICE_METRICA_CURL_METRICA_CLIENT_H_
#define UPLOADWATCH_SERVICE_METRICA_CURL_METRICA_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/metrica/backoff.h"
#include "service/metrica/daily_budget.h"
#include "service/metrica/metrica_client.h"
#include "service/metrica/quota_guard.h"
#include "service/metrica/upstream_permits.h"

namespace uploadwatch {

// MetricaClient over libcurl's multi interface, driven by one event-loop
// thread: a thousand outstanding requests cost one thread and a few sockets.
// Connections are reused, HTTP/2-multiplexed where the server offers it.
//
// Each call goes through the QuotaGuard (per-token parallel cap, process-wide
// rate limit), then up to `max_attempts` attempts: UNAVAILABLE and
// RESOURCE_EXHAUSTED outcomes are retried after an exponential backoff with
// jitter, Retry-After as a lower bound, never past the caller's deadline (the
// last error is returned at once instead). Errors are mapped as in
// error_mapping.h. A caller who gives up (Cancel, deadline) gets its callback
// at once, while the request keeps its QuotaGuard slot (see Options::quota).
// With Options::permits, each attempt also waits (asynchronously, never
// blocking the loop) for a permit of quota shared with other replicas.
// Callbacks run on the loop thread: they must not block, and
// must not destroy the client. Thread-safe.
class CurlMetricaClient : public MetricaClient {
 public:
  struct Options {
    // Scheme, host, optional port and path prefix. Plain http is accepted only
    // for a loopback host (127.0.0.0/8, ::1, localhost): local fakes, proxies.
    std::string base_url = "https://api-metrika.yandex.net";
    // PEM bundle of the CAs trusted for Metrica's certificate; empty: the
    // system store. The chain and the host name are always verified.
    // Proxies come from libcurl's standard environment variables
    // (https_proxy, no_proxy; see the README), which are left in effect.
    std::string ca_file;
    // quota.abandoned_hold: how long a request whose caller gave up may keep
    // its parallel slot (it is still at Metrica); the transfer runs on
    // without a waiter until Metrica answers or that time since it was sent
    // has passed.
    QuotaGuard::Options quota;
    // Requests per token per day (Metrica allows 5000); every attempt counts.
    // A spent budget fails calls at once with RESOURCE_EXHAUSTED and a
    // RetryInfo until the reset, without sending them. Metrica's own
    // quota_requests_by_uid error marks the token's day spent the same way.
    DailyBudget::Options daily_budget;
    // Quota shared with other replicas, asked before every attempt after the
    // local QuotaGuard slot; null: the local quota alone. Not owned; must
    // outlive the client.
    UpstreamPermits* permits = nullptr;
    BackoffOptions backoff;
    // Attempts per call, the first included.
    int max_attempts = 4;
    // A reply body above this is abandoned as a bad reply. Metrica's largest
    // (a list of 10000 uploadings) is well under 4 MiB.
    size_t max_response_bytes = 4 << 20;
    // Capped further by the time left before the caller's deadline.
    absl::Duration connect_timeout = absl::Seconds(3);
    // An attempt with less time than this left before the deadline is not
    // started (DEADLINE_EXCEEDED): it could only be abandoned mid-way, and
    // Metrica would still count it against the quota.
    absl::Duration min_attempt_time = absl::Milliseconds(50);
    // An attempt slower than `low_speed_limit_bytes` per second for
    // `low_speed_time` is abandoned (and retried): a stalled connection fails
    // fast even when the caller's deadline is far.
    int low_speed_limit_bytes = 1;
    absl::Duration low_speed_time = absl::Seconds(10);
    std::string user_agent =
        "uploadwatch/0.1 (+offline-conversion status service)";
    // Source of "now" for deadlines, backoff and rate-limit timers; the same
    // clock the callers' deadlines come from. Not owned; default: real clock.
    const Clock* clock = nullptr;
    // Jitter. Not owned, used from the loop thread only; default: absl::BitGen.
    RandomSource* random = nullptr;
  };

  // Validates `options` (the base URL above all) and starts the loop thread.
  static absl::StatusOr<std::unique_ptr<CurlMetricaClient>> Create(
      Options options);

  // Fails every outstanding call with CANCELLED, then joins the loop thread.
  ~CurlMetricaClient() override;
  CurlMetricaClient(const CurlMetricaClient&) = delete;
  CurlMetricaClient& operator=(const CurlMetricaClient&) = delete;

  RequestId GetUploading(absl::string_view token, int32_t counter_id,
                         int64_t uploading_id, absl::Time deadline,
                         GetCallback done) override;
  RequestId ListUploadings(absl::string_view token, const ListParams& params,
                           absl::Time deadline, ListCallback done) override;
  void Cancel(RequestId id) override;
  std::optional<QuotaUsage> DailyUsage(
      const std::string& token_fingerprint) override;
  std::vector<std::pair<std::string, QuotaUsage>> AllDailyUsage() override;

 private:
  class Impl;
  explicit CurlMetricaClient(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICA_CURL_METRICA_CLIENT_H_
