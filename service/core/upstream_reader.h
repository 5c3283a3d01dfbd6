#ifndef UPLOADWATCH_SERVICE_CORE_UPSTREAM_READER_H_
#define UPLOADWATCH_SERVICE_CORE_UPSTREAM_READER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/auth/token.h"
#include "service/common/clock.h"
#include "service/core/caller_admission.h"
#include "service/core/single_flight.h"
#include "service/core/token_tracker.h"
#include "service/core/state_cache.h"
#include "service/metrica/metrica_client.h"
#include "service/metrics/metrics.h"

namespace uploadwatch {

// Where every uploading fetched from Metrica (by a Get, a List or a poll)
// goes: the owner records it and tells its watchers. Called without any of
// the reader's locks, on the upstream client's thread.
class ObservationSink {
 public:
  virtual ~ObservationSink() = default;
  // `uploading` of `key`, from a request sent at `sent`, answered at `now`.
  // Returns what is now known of it (with its version).
  virtual UploadingState Observe(const UploadingKey& key,
                                 const v1::Uploading& uploading,
                                 absl::Time sent, absl::Time now) = 0;
  // A state that may answer a caller's Get without Metrica (fresh, or kept
  // current by a poll); nullopt to fetch.
  virtual std::optional<UploadingState> Servable(const UploadingKey& key,
                                                 absl::Time now) = 0;
  // Servable without the copy: hands the state to `use` (short; it must not
  // call the sink) while the owner's lock keeps it; false when Servable
  // would be nullopt.
  virtual bool UseServable(const UploadingKey& key, absl::Time now,
                           absl::FunctionRef<void(const UploadingState&)> use) {
    std::optional<UploadingState> s = Servable(key, now);
    if (!s) return false;
    use(*s);
    return true;
  }
};

// The parameters of one list, as seen by one token.
struct ListKey {
  std::string token_fingerprint;
  int32_t counter_id = 0, limit = 0, offset = 0, type = 0;
  friend bool operator==(const ListKey& a, const ListKey& b) {
    return std::tie(a.token_fingerprint, a.counter_id, a.limit, a.offset,
                    a.type) == std::tie(b.token_fingerprint, b.counter_id,
                                        b.limit, b.offset, b.type);
  }
  template <typename H>
  friend H AbslHashValue(H h, const ListKey& k) {
    return H::combine(std::move(h), k.token_fingerprint, k.counter_id, k.limit,
                      k.offset, k.type);
  }
};

// A caller's Get or List that may still wait for Metrica. Leave() when the
// caller gives up (cancelled, deadline passed): its `done` is then never
// called (unless it is running already), the caller's admission slot is
// given back, and the flight it waited on, if nobody else waits for it any
// more, is abandoned: never sent while still queued, else cancelled (the
// MetricaClient keeps the token's parallel slot while Metrica may still be
// working on it, see CurlMetricaClient). Leave() after the answer does
// nothing. Empty (Leave() does nothing) when the call was answered at once.
// Move-only; Leave() from any thread, while the reader lives.
class CallerWait {
 public:
  CallerWait() = default;
  explicit CallerWait(absl::AnyInvocable<void() &&> leave)
      : leave_(std::move(leave)) {}
  CallerWait(CallerWait&&) = default;
  CallerWait& operator=(CallerWait&&) = default;

  // Idempotent.
  void Leave() {
    if (!leave_) return;
    absl::AnyInvocable<void() &&> leave = std::move(leave_);
    leave_ = nullptr;
    std::move(leave)();
  }

 private:
  absl::AnyInvocable<void() &&> leave_;
};

// Reads Metrica through the caches and SingleFlight: identical concurrent
// requests (callers' and polls') share one upstream call; a caller's Get is
// answered from the sink's servable state, a caller's List from a short-lived
// list cache. Metrica's NOT_FOUND and PERMISSION_DENIED for an uploading are
// remembered for `negative_ttl` and answer callers' Gets (and a new watch's
// first lookup, see Negative()) without Metrica; any later sighting of the
// uploading (a Get, a List, a poll) forgets them. A caller's Get or List on
// the server's token that must go to Metrica asks the CallerAdmission first
// (a call that joins one under way costs nothing); one on a token Metrica
// has not accepted yet takes the TokenTracker's unverified bucket, and
// Metrica's UNAUTHENTICATED for a token answers its Gets and Lists for
// `negative_ttl` too. Every answer but UNAUTHENTICATED (a poll's too)
// accepts the token. Counts the upstream
// requests and cache lookups (metrics named as before the split). Thread-safe; callbacks run once, without its locks,
// on the upstream client's thread (inline only when answered from cache or
// after Shutdown).
class UpstreamReader {
 public:
  using StateCallback =
      absl::AnyInvocable<void(absl::StatusOr<UploadingState>) &&>;
  using ListCallback =
      absl::AnyInvocable<void(absl::StatusOr<v1::ListUploadingsResponse>) &&>;
  using GetFlights = SingleFlight<UploadingKey, UploadingState>;
  using ListFlights = SingleFlight<ListKey, v1::ListUploadingsResponse>;

  struct Options {
    // Deadline of each upstream request (retries included).
    absl::Duration upstream_timeout = absl::Seconds(20);
    // How long a list answers identical Lists.
    absl::Duration list_fresh_for = absl::Seconds(5);
    // How long NOT_FOUND / PERMISSION_DENIED answer Gets; zero: not kept.
    absl::Duration negative_ttl = absl::Seconds(30);
    Metrics* metrics = nullptr;  // not owned; none when null
    // Callers' share of the server token; none (everyone admitted) when
    // null. Not owned.
    CallerAdmission* admission = nullptr;
    // Which callers' tokens Metrica has accepted; none (every token
    // trusted) when null. Not owned.
    TokenTracker* tokens = nullptr;
  };

  // None owned; all outlive the reader.
  UpstreamReader(MetricaClient* client, const Clock* clock,
                 ObservationSink* sink, Options options);
  UpstreamReader(const UpstreamReader&) = delete;
  UpstreamReader& operator=(const UpstreamReader&) = delete;

  // A caller's Get and List: through the caches, then the admission. Leave
  // the returned wait when the caller gives up.
  CallerWait Get(const Credentials& credentials, int32_t counter_id,
                 int64_t uploading_id, StateCallback done);
  // Hands what Get would answer at once from the cache (counted as its hit)
  // to `use` (see ObservationSink::UseServable), or returns false when Get
  // has more to do (a miss, a negative entry, shut down). For a caller that
  // gathers what a miss needs only when it misses.
  bool UseCached(const UploadingKey& key,
                 absl::FunctionRef<void(const UploadingState&)> use);
  CallerWait List(const Credentials& credentials, const ListParams& params,
                  ListCallback done);
  // Metrica's remembered NOT_FOUND / PERMISSION_DENIED for `key`, or
  // UNAUTHENTICATED for its token, if any (counted as a negative_hit).
  std::optional<absl::Status> Negative(const UploadingKey& key);
  // Metrica's remembered UNAUTHENTICATED for this token, if any.
  std::optional<absl::Status> Rejected(const std::string& token_fingerprint);

  // Always from Metrica (joining a call under way); for polls. Leave() with
  // the ticket stops waiting: `done` is then never called, and the call is
  // cancelled (or never sent) if nobody else waits. Leave() is true when it
  // was the last waiter and the call had not been sent (so it never is).
  GetFlights::Ticket FetchGet(const std::string& token, const UploadingKey& key,
                              StateCallback done);
  ListFlights::Ticket FetchList(const std::string& token, const ListKey& key,
                                ListCallback done);
  bool Leave(const GetFlights::Ticket& ticket);
  bool Leave(const ListFlights::Ticket& ticket);

  // Fails every waiter with `reason`, cancels every call, and fails calls
  // made afterwards with UNAVAILABLE.
  void Shutdown(const absl::Status& reason);
  // Drops cached lists and remembered errors that are no longer fresh.
  void SweepListCache(absl::Time now);
  size_t flights() const;

 private:
  struct NegativeEntry {
    absl::Status status;
    absl::Time stored;
  };
  struct ListEntry {
    v1::ListUploadingsResponse response;
    absl::Time fetched;
  };
  // Sends the flight's request unless everyone left meanwhile.
  void SendGet(const std::string& token, const GetFlights::Ticket& ticket);
  void SendList(const std::string& token, const ListFlights::Ticket& ticket);
  void OnGet(const UploadingKey& key, uint64_t flight,
             absl::StatusOr<v1::GetUploadingResponse> result);
  void OnList(const ListKey& key, uint64_t flight,
              absl::StatusOr<v1::ListUploadingsResponse> result);
  // `fetch(done')` (FetchGet or FetchList) once the admission (for the
  // server's token) or the unverified bucket (for a token Metrica has not
  // accepted) lets a caller's request through: `done'` frees its slot and
  // calls `done`. Refused: `done` gets the refusal. `joining`: a request for
  // the same key is under way, which costs nothing more. The wait leaves the
  // flight and frees the slot (refunded if the request was never sent).
  template <typename Callback, typename Fetch>
  CallerWait FetchAdmitted(const Credentials& credentials, bool joining,
                           Callback done, Fetch fetch);
  // Leave()'s work for either kind of flight.
  template <typename Flights>
  bool LeaveFlight(Flights& flights, const typename Flights::Ticket& ticket);
  // Learns from Metrica's answer for a token: rejected (remembered), or
  // accepted (true: the caller tells the TokenTracker, outside the lock).
  bool Learn(const std::string& token_fingerprint, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<absl::Status> RejectedLocked(const std::string& fingerprint)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Count(const char* endpoint, const absl::Status& status,
             absl::Time sent, absl::Time now);

  MetricaClient* const client_;
  const Clock* const clock_;
  ObservationSink* const sink_;
  const Options options_;

  mutable absl::Mutex mu_;
  std::optional<absl::Status> shut_down_ ABSL_GUARDED_BY(mu_);
  GetFlights gets_ ABSL_GUARDED_BY(mu_);
  ListFlights lists_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ListKey, ListEntry> list_cache_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<UploadingKey, NegativeEntry> negative_
      ABSL_GUARDED_BY(mu_);
  // Tokens Metrica answered UNAUTHENTICATED, by fingerprint.
  absl::flat_hash_map<std::string, NegativeEntry> rejected_
      ABSL_GUARDED_BY(mu_);

  Metrics::Counter* upstream_requests_ = nullptr;
  Metrics::Histogram* upstream_latency_ = nullptr;
  Metrics::Counter* cache_lookups_ = nullptr;
  // {"GetUploading", "hit"} of cache_lookups_, counted on every cached Get.
  std::unique_ptr<Metrics::Counter::Handle> get_hits_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_UPSTREAM_READER_H_
