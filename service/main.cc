// uploading_server: the uploadwatch gRPC server. Parses flags, wires the real
// parts together (libcurl upstream, hub, gRPC), serves until SIGINT/SIGTERM.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/auth/token.h"
#include "service/metrica/curl_metrica_client.h"
#include "service/redis/redis_coordinator.h"
#include "service/redis/shared_upstream_permits.h"
#include "service/redis/shared_usage_client.h"
#include "service/redis/stream_bridge.h"
#include "service/server/uploading_server.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "gRPC listen address host:port");
ABSL_FLAG(std::string, upstream_url, "https://api-metrika.yandex.net",
          "Metrica API base URL (plain http only for loopback hosts)");
ABSL_FLAG(absl::Duration, poll_interval, absl::Seconds(30),
          "how often a watched uploading is polled");
ABSL_FLAG(absl::Duration, cache_ttl, absl::Seconds(5),
          "how long a non-terminal state answers GetUploading without asking "
          "Metrica (at most --poll_interval)");
ABSL_FLAG(absl::Duration, terminal_cache_ttl, absl::Hours(24),
          "how long a terminal state (PROCESSED, LINKAGE_FAILURE) is served "
          "from cache");
ABSL_FLAG(absl::Duration, upstream_timeout, absl::Seconds(20),
          "deadline of one upstream request, retries included");
ABSL_FLAG(absl::Duration, drain_period, absl::Seconds(5),
          "on SIGTERM/SIGINT, how long health reports NOT_SERVING while the "
          "server still serves, so load balancers stop sending calls first; "
          "a second signal skips the rest of it");
ABSL_FLAG(absl::Duration, shutdown_grace, absl::Seconds(10),
          "after --drain_period, how long calls in progress may take to "
          "finish (open watches end at once with UNAVAILABLE 're-watch')");
ABSL_FLAG(int, max_watches, 20000, "cap on open WatchUploading streams");
ABSL_FLAG(int, batch_max_pages, 3,
          "List pages (200 uploadings each) one poll round of a counter's "
          "watched uploadings may ask for; the watched uploadings the pages "
          "did not show are polled with a Get each");
ABSL_FLAG(int, fan_out_threads, 2,
          "threads that deliver changes to watchers; fewer leave more CPU to "
          "calls during a large fan-out (docs/PERFORMANCE.md), more deliver "
          "it sooner on more cores");
ABSL_FLAG(int, fan_out_nice, 10,
          "added to the fan-out threads' nice value (0-19): a large fan-out "
          "then leaves the cores to calls (cached Gets during a 10,000-"
          "message fan-out as fast as bare gRPC's, docs/PERFORMANCE.md "
          "phase 10); 0 for the process's priority");
ABSL_FLAG(int, max_in_flight_per_token, 3,
          "parallel upstream requests per token (Metrica allows 3)");
ABSL_FLAG(double, max_requests_per_second, 25,
          "upstream requests per second for the process (Metrica allows 30 "
          "per IP)");
ABSL_FLAG(std::string, metrics_listen, "",
          "host:port for a Prometheus endpoint (GET /metrics); off when empty");
ABSL_FLAG(int, metrics_max_series, 200,
          "label sets kept per metric family (e.g. tokens in "
          "uploadwatch_quota_*); samples beyond it add up in one series "
          "labelled \"other\"");
ABSL_FLAG(int64_t, daily_budget, 4000,
          "Metrica requests per token per day (Metrica allows 5000; see "
          "--daily_reset_zone); polls stretch to fit it; 0: no budget");
ABSL_FLAG(std::string, daily_reset_zone, "conservative",
          "when Metrica's day ends: conservative (00:00 UTC, counting the 3 h "
          "before it in both days: inside both of Metrica's documented "
          "resets), moscow (00:00 UTC+3) or utc");
ABSL_FLAG(std::string, upstream_ca_file, "",
          "PEM bundle of CAs to trust for Metrica's certificate (default: the "
          "system store); proxies: the https_proxy / no_proxy environment");
ABSL_FLAG(int, max_watches_per_connection, 1000,
          "cap on open watches per client connection; 0: none");
ABSL_FLAG(absl::Duration, max_watch_lifetime, absl::Minutes(30),
          "upper bound of a watch's lifetime (each gets 90-100% of it), after "
          "which the client is told to re-watch; 'inf' for none");
ABSL_FLAG(absl::Duration, bookmark_interval, absl::Seconds(60),
          "an idle WatchUploadings stream gets an empty message with a fresh "
          "resume_token at least this often");
ABSL_FLAG(int, max_streams_per_connection, -1,
          "HTTP/2 MAX_CONCURRENT_STREAMS advertised to clients; a client "
          "opening more loses its connection; -1: "
          "--max_watches_per_connection + 100 (1100), room for unary calls "
          "beside every allowed watch; 0: gRPC's default (unlimited)");
ABSL_FLAG(int64_t, grpc_memory_quota_mb, 1024,
          "gRPC ResourceQuota in MiB: the ceiling on the memory gRPC accounts "
          "for calls and transport buffers (under pressure it shrinks "
          "flow-control windows); 0: unlimited");
ABSL_FLAG(bool, explain_undecodable_requests, true,
          "answer ListUploadings requests that are not its protobuf with "
          "INVALID_ARGUMENT and a log line (off: gRPC's bare UNIMPLEMENTED, "
          "and no interceptor on its calls); GetUploading and the watches "
          "always say INVALID_ARGUMENT (they parse their own requests)");
ABSL_FLAG(bool, accept_compressed_requests, false,
          "accept gzip/deflate-compressed requests (off: they are refused "
          "before being inflated)");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain: serve TLS (needs --tls_key_file)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key for --tls_cert_file");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle: require client certificates signed by it (mTLS)");
ABSL_FLAG(absl::Duration, negative_cache_ttl, absl::Seconds(30),
          "how long Metrica's NOT_FOUND / PERMISSION_DENIED for an uploading "
          "answer Gets and new watches without asking again; 0: not kept");
ABSL_FLAG(double, budget_reserve, 0.1,
          "share of the server token's --daily_budget kept for Gets and Lists "
          "of callers without a token (polls of watches get the rest, and "
          "neither can spend the other's)");
ABSL_FLAG(double, caller_budget_share, 0.25,
          "each caller's share of what callers without a token may spend on "
          "the server's token: requests a day (of --budget_reserve) and "
          "parallel slots (of --max_in_flight_per_token, at least 1)");
ABSL_FLAG(int, max_watches_per_caller, 5000,
          "open watches (WatchUploading and WatchUploadings together) one "
          "caller without a token may hold on the server's token (default: a "
          "quarter of --max_watches, so one caller cannot take them all); "
          "0: no cap");
ABSL_FLAG(std::string, caller_identity_header, "",
          "metadata key a trusted proxy sets to name the caller (who shares "
          "the server's token); without it, and without a client "
          "certificate, callers are told apart by peer IP");
ABSL_FLAG(bool, require_caller_token, false,
          "refuse calls without their own 'authorization: OAuth <token>' "
          "(UNAUTHENTICATED), for servers reachable by untrusted clients");
ABSL_FLAG(int, max_tracked_tokens, 1000,
          "callers' tokens Metrica has accepted that are tracked (quota "
          "series, their own budget), least recently used dropped first");
ABSL_FLAG(int64_t, unverified_token_budget, 100,
          "Metrica requests a UTC day for tokens it has not accepted yet, all "
          "together, one at a time (junk tokens cost at most this); 0: no "
          "daily cap");
ABSL_FLAG(std::string, web_listen, "",
          "host:port for gRPC-Web (browsers; HTTP/1.1, TLS with the --tls_* "
          "flags); off when empty");
ABSL_FLAG(std::string, web_allowed_origins, "",
          "browser origins that may call --web_listen: comma-separated "
          "scheme://host[:port], or *; empty: same origin only");
ABSL_FLAG(std::string, web_static_dir, "",
          "directory of static files --web_listen serves for GET (the "
          "dashboard; / is index.html); empty: none");
ABSL_FLAG(std::string, oauth_token_file, "",
          "file holding the server's Metrica OAuth token (else the "
          "METRIKA_OAUTH_TOKEN environment variable); never pass a token as "
          "a flag value: it would show in ps");

ABSL_FLAG(std::string, redis, "",
          "HOST:PORT of a Redis shared by several replicas (multi-replica "
          "mode: one poller per watched uploading, shared state history); "
          "empty: this replica alone");
ABSL_FLAG(std::string, redis_password_file, "",
          "file holding the Redis password (AUTH); never a flag value");
ABSL_FLAG(std::string, redis_key_prefix, "uploadwatch:",
          "prefix of every Redis key (several deployments on one Redis)");
ABSL_FLAG(absl::Duration, redis_lease_ttl, absl::Seconds(10),
          "how long a replica's poll lease outlives it: a crashed replica's "
          "polls move to another within this time");
ABSL_FLAG(int, redis_fallback_parallel, 1,
          "per-token parallel requests of one replica while Redis is "
          "unreachable (N replicas never exceed N times it)");

namespace {

// The whole of a file named by `flag`; "" when the flag is empty.
absl::StatusOr<std::string> ReadFlagFile(const char* flag,
                                         const std::string& path) {
  if (path.empty()) return std::string();
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read --", flag, " ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The server's own token: --oauth_token_file, else METRIKA_OAUTH_TOKEN.
absl::StatusOr<std::string> ServerToken() {
  const std::string path = absl::GetFlag(FLAGS_oauth_token_file);
  if (!path.empty()) {
    absl::StatusOr<std::string> text = ReadFlagFile("oauth_token_file", path);
    if (!text.ok()) return text.status();
    return std::string(absl::StripAsciiWhitespace(*text));
  }
  const char* env = std::getenv("METRIKA_OAUTH_TOKEN");
  return std::string(env == nullptr ? "" : absl::StripAsciiWhitespace(env));
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "uploadwatch gRPC server: the status of Yandex Metrica offline-conversion "
      "uploads.\nToken: METRIKA_OAUTH_TOKEN or --oauth_token_file; calls may "
      "bring their own in 'authorization: OAuth <token>' metadata.");
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil is built with mutex deadlock detection on (no NDEBUG):
  // 1-2 % of CPU per call and 5-9 % in fan-outs (docs/PERFORMANCE.md). Tests
  // keep it on; the server does not need it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Signals are taken by sigwait below; block them before any thread starts
  // so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::string> token = ServerToken();
  if (token.ok() && !token->empty() &&
      !uploadwatch::ResolveCredentials(std::nullopt, *token).ok()) {
    token = absl::InvalidArgumentError(
        "the server's Metrica OAuth token (METRIKA_OAUTH_TOKEN or "
        "--oauth_token_file) has characters a token cannot have");
  }
  if (!token.ok()) {
    std::fprintf(stderr, "uploading_server: %s\n",
                 std::string(token.status().message()).c_str());
    return 2;
  }

  absl::StatusOr<uploadwatch::DailyReset> reset =
      uploadwatch::ParseDailyReset(absl::GetFlag(FLAGS_daily_reset_zone));
  if (!reset.ok()) {
    std::fprintf(stderr, "uploading_server: --daily_reset_zone: %s\n",
                 std::string(reset.status().message()).c_str());
    return 2;
  }
  // Multi-replica mode first: the fetcher's quota is shared through it.
  std::unique_ptr<uploadwatch::redis::StreamBridge> replicas;
  std::unique_ptr<uploadwatch::redis::SharedUpstreamPermits> shared_quota;
  if (!absl::GetFlag(FLAGS_redis).empty()) {
    uploadwatch::redis::MultiReplicaFlags flags;
    flags.redis = absl::GetFlag(FLAGS_redis);
    flags.redis_password_file = absl::GetFlag(FLAGS_redis_password_file);
    flags.redis_key_prefix = absl::GetFlag(FLAGS_redis_key_prefix);
    flags.redis_fallback_parallel = absl::GetFlag(FLAGS_redis_fallback_parallel);
    flags.max_in_flight_per_token = absl::GetFlag(FLAGS_max_in_flight_per_token);
    flags.daily_budget = absl::GetFlag(FLAGS_daily_budget);
    flags.daily_reset = *reset;
    flags.lease_ttl = absl::GetFlag(FLAGS_redis_lease_ttl);
    absl::StatusOr<uploadwatch::redis::CoordinatorOptions> redis =
        uploadwatch::redis::OptionsFromFlags(flags);
    if (!redis.ok()) {
      std::fprintf(stderr, "uploading_server: %s\n",
                   std::string(redis.status().message()).c_str());
      return 2;
    }
    replicas = std::make_unique<uploadwatch::redis::StreamBridge>(*std::move(redis));
    shared_quota = std::make_unique<uploadwatch::redis::SharedUpstreamPermits>(
        &replicas->coordinator().parallel_cap(),
        &replicas->coordinator().daily_budget());
  }

  uploadwatch::CurlMetricaClient::Options upstream_options;
  upstream_options.permits = shared_quota.get();
  upstream_options.base_url = absl::GetFlag(FLAGS_upstream_url);
  upstream_options.quota.max_in_flight_per_token =
      absl::GetFlag(FLAGS_max_in_flight_per_token);
  upstream_options.quota.requests_per_second =
      absl::GetFlag(FLAGS_max_requests_per_second);
  upstream_options.daily_budget.per_token = absl::GetFlag(FLAGS_daily_budget);
  upstream_options.daily_budget.reset = *reset;
  upstream_options.ca_file = absl::GetFlag(FLAGS_upstream_ca_file);
  // A request whose caller gave up keeps its slot at most this long.
  upstream_options.quota.abandoned_hold = absl::GetFlag(FLAGS_upstream_timeout);
  auto curl = uploadwatch::CurlMetricaClient::Create(upstream_options);
  if (!curl.ok()) {
    std::fprintf(stderr, "uploading_server: %s\n",
                 std::string(curl.status().message()).c_str());
    return 2;
  }
  std::unique_ptr<uploadwatch::MetricaClient> upstream = *std::move(curl);
  if (replicas != nullptr) {
    // Budget pacing and the quota gauges read the day all replicas spent.
    upstream = std::make_unique<uploadwatch::redis::SharedUsageMetricaClient>(
        std::move(upstream),
        [budget = &replicas->coordinator().daily_budget()](
            const std::string& fingerprint) { return budget->Usage(fingerprint); });
  }

  uploadwatch::ServerConfig config;
  config.listen = absl::GetFlag(FLAGS_listen);
  config.default_token = *token;
  config.caller_identity_header =
      absl::AsciiStrToLower(absl::GetFlag(FLAGS_caller_identity_header));
  config.require_caller_token = absl::GetFlag(FLAGS_require_caller_token);
  config.hub.negative_cache_ttl = absl::GetFlag(FLAGS_negative_cache_ttl);
  config.hub.budget_reserve = absl::GetFlag(FLAGS_budget_reserve);
  config.hub.caller_budget_share = absl::GetFlag(FLAGS_caller_budget_share);
  config.hub.max_in_flight_per_token =
      absl::GetFlag(FLAGS_max_in_flight_per_token);
  config.hub.max_watches_per_caller = static_cast<size_t>(
      std::max(0, absl::GetFlag(FLAGS_max_watches_per_caller)));
  config.hub.tokens.max_tracked =
      static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_max_tracked_tokens)));
  config.hub.tokens.unverified_per_day =
      absl::GetFlag(FLAGS_unverified_token_budget);
  if (config.hub.budget_reserve < 0 || config.hub.budget_reserve > 1 ||
      config.hub.caller_budget_share <= 0 ||
      config.hub.caller_budget_share > 1) {
    std::fprintf(stderr,
                 "uploading_server: --budget_reserve must be in [0, 1] and "
                 "--caller_budget_share in (0, 1]\n");
    return 2;
  }
  config.hub.poll_interval = absl::GetFlag(FLAGS_poll_interval);
  config.hub.cache_ttl = absl::GetFlag(FLAGS_cache_ttl);
  config.hub.terminal_ttl = absl::GetFlag(FLAGS_terminal_cache_ttl);
  config.hub.upstream_timeout = absl::GetFlag(FLAGS_upstream_timeout);
  config.hub.max_watches = absl::GetFlag(FLAGS_max_watches);
  config.hub.batch_max_pages = absl::GetFlag(FLAGS_batch_max_pages);
  config.fan_out_threads = absl::GetFlag(FLAGS_fan_out_threads);
  config.fan_out_nice = absl::GetFlag(FLAGS_fan_out_nice);
  if (config.fan_out_nice < 0 || config.fan_out_nice > 19) {
    std::fprintf(stderr, "uploading_server: --fan_out_nice must be 0-19 "
                         "(it only ever lowers their priority)\n");
    return 2;
  }
  if (config.hub.batch_max_pages < 1 || config.fan_out_threads < 1) {
    std::fprintf(stderr,
                 "uploading_server: --batch_max_pages and --fan_out_threads "
                 "must be >= 1\n");
    return 2;
  }
  config.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  config.metrics_options.max_series_per_family =
      std::max(1, absl::GetFlag(FLAGS_metrics_max_series));
  config.watch_limits.max_per_connection =
      absl::GetFlag(FLAGS_max_watches_per_connection);
  config.watch_limits.max_lifetime = absl::GetFlag(FLAGS_max_watch_lifetime);
  config.watch_limits.bookmark_interval =
      absl::GetFlag(FLAGS_bookmark_interval);
  config.transport.max_streams_per_connection =
      absl::GetFlag(FLAGS_max_streams_per_connection);
  if (config.transport.max_streams_per_connection < 0) {
    config.transport.max_streams_per_connection =
        config.watch_limits.max_per_connection > 0
            ? config.watch_limits.max_per_connection + 100
            : 0;
  }
  config.transport.memory_quota_bytes =
      absl::GetFlag(FLAGS_grpc_memory_quota_mb) << 20;
  config.transport.accept_compressed_requests =
      absl::GetFlag(FLAGS_accept_compressed_requests);
  config.explain_undecodable_requests =
      absl::GetFlag(FLAGS_explain_undecodable_requests);
  config.web.listen = absl::GetFlag(FLAGS_web_listen);
  config.web.allowed_origins = absl::GetFlag(FLAGS_web_allowed_origins);
  config.web.static_dir = absl::GetFlag(FLAGS_web_static_dir);
  for (auto [flag, path, out] :
       {std::make_tuple("tls_cert_file", absl::GetFlag(FLAGS_tls_cert_file),
                        &config.tls_cert_pem),
        std::make_tuple("tls_key_file", absl::GetFlag(FLAGS_tls_key_file),
                        &config.tls_key_pem),
        std::make_tuple("tls_client_ca_file",
                        absl::GetFlag(FLAGS_tls_client_ca_file),
                        &config.tls_client_ca_pem)}) {
    absl::StatusOr<std::string> pem = ReadFlagFile(flag, path);
    if (!pem.ok()) {
      std::fprintf(stderr, "uploading_server: %s\n",
                   std::string(pem.status().message()).c_str());
      return 2;
    }
    *out = *std::move(pem);
  }
  config.replicas = replicas.get();
  if (config.hub.poll_interval <= absl::ZeroDuration()) {
    std::fprintf(stderr, "uploading_server: --poll_interval must be > 0\n");
    return 2;
  }
  auto server =
      uploadwatch::UploadingServer::Start(config, std::move(upstream));
  if (!server.ok()) {
    std::fprintf(stderr, "uploading_server: %s\n",
                 std::string(server.status().message()).c_str());
    return 1;
  }
  std::fprintf(stderr,
               "uploading_server: serving on port %d (%s, upstream %s, poll "
               "every %s, %s)\n",
               (*server)->port(),
               config.tls_cert_pem.empty()           ? "plaintext"
               : config.tls_client_ca_pem.empty()    ? "TLS"
                                                     : "mTLS", upstream_options.base_url.c_str(),
               absl::FormatDuration(config.hub.poll_interval).c_str(),
               token->empty() ? "no server token: calls must send their own"
                              : "server token set");
  if ((*server)->web_port() != 0) {
    std::fprintf(stderr, "uploading_server: gRPC-Web on port %d\n",
                 (*server)->web_port());
  }
  if ((*server)->metrics_port() != 0) {
    std::fprintf(stderr, "uploading_server: metrics on port %d (GET /metrics)\n",
                 (*server)->metrics_port());
  }

  int signal = 0;
  sigwait(&signals, &signal);
  const absl::Duration drain = absl::GetFlag(FLAGS_drain_period);
  std::fprintf(stderr,
               "uploading_server: %s, draining for %s (health NOT_SERVING, "
               "still serving), then shutting down (grace %s)\n",
               signal == SIGINT ? "SIGINT" : "SIGTERM",
               absl::FormatDuration(drain).c_str(),
               absl::FormatDuration(absl::GetFlag(FLAGS_shutdown_grace)).c_str());
  (*server)->StartDraining();
  if (drain > absl::ZeroDuration()) {
    const timespec wait = absl::ToTimespec(drain);
    if (sigtimedwait(&signals, nullptr, &wait) > 0) {
      std::fprintf(stderr, "uploading_server: second signal, drain cut short\n");
    }
  }
  (*server)->Shutdown(absl::GetFlag(FLAGS_shutdown_grace));
  std::fprintf(stderr, "uploading_server: stopped\n");
  return 0;
}
