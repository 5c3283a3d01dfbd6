#ifndef UPLOADWATCH_SERVICE_CORE_WATCH_HUB_H_
#define UPLOADWATCH_SERVICE_CORE_WATCH_HUB_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/auth/token.h"
#include "service/common/clock.h"
#include "service/core/scheduler.h"
#include "service/core/state_cache.h"
#include "service/metrica/metrica_client.h"
#include "service/metrics/metrics.h"

namespace uploadwatch {

// Where every request for an uploading's state meets, so that Metrica sees as
// few requests as possible:
// - Gets are answered from the StateCache while fresh; identical concurrent
//   Gets (and polls) share one upstream request ("flight").
// - Watches subscribe to one Poller per (token, counter, uploading), created
//   by the first subscriber and stopped when the last one leaves.
// - Pollers of one (token, counter) form a Group that polls on one timer:
//   one Get when it has one uploading, else ListUploadings pages (newest
//   first) with Gets only for uploadings the pages did not show.
// - Polls are paced per token: when the token's groups would spend more than
//   its remaining daily budget before the reset, every group of the token
//   polls less often, by the same factor; a RESOURCE_EXHAUSTED from Metrica
//   pauses all polls of the token, doubling while it persists.
// - Any fetch (Get, List, poll) that observes a change is delivered to the
//   uploading's subscribers, with a version that increases by one per change.
// Thread-safe. Shut down in this order: Shutdown(), then destroy the
// MetricaClient and Scheduler (their late callbacks find nothing to do), then
// the hub.
class WatchHub {
 public:
  struct Options {
    // How often a watched, non-terminal uploading is polled.
    absl::Duration poll_interval = absl::Seconds(30);
    // How long a non-terminal state answers Gets without Metrica (clipped to
    // poll_interval). Terminal states are served for terminal_ttl.
    absl::Duration cache_ttl = absl::Seconds(5);
    absl::Duration terminal_ttl = absl::Hours(24);
    // How long an unused state (and its version) is remembered.
    absl::Duration retention = absl::Hours(1);
    // Deadline of each upstream request (retries included).
    absl::Duration upstream_timeout = absl::Seconds(20);
    // Upper bound of the poll delay after transient errors.
    absl::Duration max_backoff = absl::Minutes(5);
    // Cap on open watches across the process.
    size_t max_watches = 20000;
    // When one token watches this many uploadings of one counter or more,
    // a poll refreshes them all with ListUploadings pages instead of one
    // Get each.
    size_t batch_min_uploadings = 2;
    // List pages per batched poll; uploadings not on them get a Get.
    int batch_max_pages = 3;
    // Share of a token's daily budget (see MetricaClient::DailyUsage) kept
    // for Gets and Lists of callers: polls stretch to leave it untouched.
    double budget_reserve = 0.1;
    // Registry for the hub's metrics (upstream requests, cache, watches,
    // quota per token fingerprint); none when null. Not owned.
    Metrics* metrics = nullptr;
  };

  // A watcher. Both methods are called outside the hub's main lock (so a
  // fan-out to thousands of watchers never holds up Gets, Lists or polls),
  // but under its delivery lock: they must not block and must not call
  // Subscribe or Unsubscribe. Calls for one subscriber never overlap.
  class Subscriber {
   public:
    virtual ~Subscriber() = default;
    // A new state (the current one first, then each change). `terminal`: no
    // further calls will come; the subscriber has been removed.
    virtual void OnState(const UploadingState& state, bool terminal) = 0;
    // A permanent error or shutdown; no further calls will come.
    virtual void OnError(const absl::Status& status) = 0;
  };

  using StateCallback =
      absl::AnyInvocable<void(absl::StatusOr<UploadingState>) &&>;
  using ListCallback =
      absl::AnyInvocable<void(absl::StatusOr<v1::ListUploadingsResponse>) &&>;

  struct Stats {
    size_t watchers = 0;
    size_t pollers = 0;
    size_t groups = 0;
    size_t flights = 0;
    size_t cached_states = 0;
  };

  WatchHub(MetricaClient* client, Scheduler* scheduler, Clock* clock,
           Options options);
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // The current state of one uploading. `done` runs once, possibly inline.
  void Get(const Credentials& credentials, int32_t counter_id,
           int64_t uploading_id, StateCallback done);

  // One page of a counter's uploadings; briefly cached and single-flight like
  // Get. The states it returns also refresh watchers. `done` runs once.
  void List(const Credentials& credentials, const ListParams& params,
            ListCallback done);

  // Starts delivering the uploading's states to `subscriber` (possibly before
  // returning). RESOURCE_EXHAUSTED at the watch cap; UNAVAILABLE once shut down.
  absl::Status Subscribe(const Credentials& credentials, int32_t counter_id,
                         int64_t uploading_id, Subscriber* subscriber);
  // Idempotent. Once it returns, `subscriber` is never called again.
  void Unsubscribe(Subscriber* subscriber);

  // Ends every watch with `reason`, fails pending Gets/Lists with it, and
  // refuses new watches.
  void Shutdown(const absl::Status& reason);

  Stats stats();

 private:
  // One upstream Get shared by everyone who asked for the same key meanwhile.
  struct Flight {
    uint64_t seq = 0;  // tells a late callback from a superseded flight
    MetricaClient::RequestId request = 0;  // 0 until the request is issued
    absl::Time started;
    std::vector<StateCallback> waiters;
    bool group_waiting = false;  // the key's group polls through this flight
  };
  // The shared state of all watchers of one key.
  struct Poller {
    std::string token;  // needed to poll; the only place a token is kept
    absl::flat_hash_set<Subscriber*> subscribers;
    bool has_state = false;  // subscribers have been sent the current state
  };
  // All pollers of one (token, counter): they poll together.
  struct GroupKey {
    std::string token_fingerprint;
    int32_t counter_id;
    friend bool operator==(const GroupKey& a, const GroupKey& b) {
      return a.counter_id == b.counter_id &&
             a.token_fingerprint == b.token_fingerprint;
    }
    template <typename H>
    friend H AbslHashValue(H h, const GroupKey& k) {
      return H::combine(std::move(h), k.token_fingerprint, k.counter_id);
    }
  };
  struct Group {
    std::string token;
    absl::flat_hash_set<int64_t> ids;  // uploadings with a poller
    Scheduler::TaskId timer = 0;  // next poll; 0 while a poll is under way
    bool polling = false;         // a poll round is under way
    int failures = 0;             // consecutive transient errors, for backoff
    bool rerun = false;  // uploadings joined mid-round: poll again at once
    // Batched round: the page being fetched and the ids not yet seen.
    int page = 0;
    int32_t page_size = 0;
    absl::flat_hash_set<int64_t> unseen;
  };
  struct ListKey {
    std::string token_fingerprint;
    int32_t counter_id, limit, offset, type;
    friend bool operator==(const ListKey& a, const ListKey& b) {
      return std::tie(a.token_fingerprint, a.counter_id, a.limit, a.offset,
                      a.type) == std::tie(b.token_fingerprint, b.counter_id,
                                          b.limit, b.offset, b.type);
    }
    template <typename H>
    friend H AbslHashValue(H h, const ListKey& k) {
      return H::combine(std::move(h), k.token_fingerprint, k.counter_id,
                        k.limit, k.offset, k.type);
    }
  };
  // Per-token pacing (by fingerprint).
  struct TokenPace {
    absl::Time paused_until = absl::InfinitePast();
    int exhausted = 0;  // consecutive quota errors from Metrica
  };
  struct ListFlight {
    uint64_t seq = 0;
    MetricaClient::RequestId request = 0;
    absl::Time started;
    std::vector<ListCallback> waiters;
    bool group_waiting = false;  // a batched poll round awaits this page
  };
  struct ListEntry {
    v1::ListUploadingsResponse response;
    absl::Time fetched;
  };
  using Actions = std::vector<std::function<void()>>;
  // States and errors decided under mu_, handed to subscribers after it.
  struct Delivery {
    std::vector<Subscriber*> to;
    std::shared_ptr<const UploadingState> state;  // null: `error` instead
    bool terminal = false;
    absl::Status error;
  };

  absl::Duration FreshFor() const;
  static GroupKey GroupOf(const UploadingKey& key) {
    return GroupKey{key.token_fingerprint, key.counter_id};
  }
  void StartFetchLocked(const UploadingKey& key, const std::string& token,
                        bool for_group, StateCallback waiter, Actions& after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartListLocked(const ListKey& key, const std::string& token,
                       bool for_group, ListCallback waiter, Actions& after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stores the id of the request just issued for flight `seq` of `key` in
  // `flights` (flights_ or list_flights_), or calls the request off when
  // everyone left before it went out.
  template <typename Flights>
  void AdoptRequest(Flights& flights, const typename Flights::key_type& key,
                    uint64_t seq, MetricaClient::RequestId id)
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnFetched(const UploadingKey& key, uint64_t seq,
                 absl::StatusOr<v1::GetUploadingResponse> result);
  void OnListed(const ListKey& key, uint64_t seq,
                absl::StatusOr<v1::ListUploadingsResponse> result);
  void OnGroupTimer(const GroupKey& key);
  // Starts a poll round now: one Get, or a batched round of List pages.
  void StartRoundLocked(const GroupKey& key, Group& group, Actions& after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnSweepTimer();
  // Stores a state fetched by a request sent at `sent` and delivers it to
  // the key's watchers if changed.
  void RecordLocked(const UploadingKey& key, const v1::Uploading& uploading,
                    absl::Time now, absl::Time sent, UploadingState* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the watches of `key` if `status` is permanent.
  void FailPollerLocked(const UploadingKey& key, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A poll round of `key` ended: schedule the next (backing off on errors).
  void EndRoundLocked(const GroupKey& key, const absl::Status& status,
                      absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The earliest time the group may poll again after a round ending with
  // `status`: the interval, stretched to the token's budget, after backoff.
  absl::Time NextPollLocked(const GroupKey& key, Group& group,
                            const absl::Status& status, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ContinueBatchLocked(const GroupKey& key, Group& group, absl::Time now,
                           Actions& after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemovePollerLocked(const UploadingKey& key, Actions& after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Run(Actions& actions);
  void QueueStateLocked(std::vector<Subscriber*> to, const UploadingState& state,
                        bool terminal) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void QueueErrorLocked(std::vector<Subscriber*> to, const absl::Status& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<Delivery> TakeDeliveriesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands out deliveries to subscribers still subscribed; never under mu_.
  void Deliver(std::vector<Delivery> batch) ABSL_LOCKS_EXCLUDED(mu_);
  void RegisterMetrics(Metrics* metrics);
  void CountUpstream(const char* endpoint, const absl::Status& status,
                     absl::Time started, absl::Time now);

  MetricaClient* const client_;
  Scheduler* const scheduler_;
  Clock* const clock_;
  const Options options_;

  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  StateCache cache_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<UploadingKey, Flight> flights_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<UploadingKey, Poller> pollers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<GroupKey, Group> groups_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, TokenPace> pace_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Subscriber*, UploadingKey> subscribers_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ListKey, ListFlight> list_flights_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ListKey, ListEntry> list_cache_ ABSL_GUARDED_BY(mu_);
  Scheduler::TaskId sweep_timer_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Delivery> pending_ ABSL_GUARDED_BY(mu_);

  // Held while calling subscribers; Unsubscribe takes it so that once it
  // returns, no call is in progress or to come. Never taken with mu_ held.
  absl::Mutex delivery_mu_;
  absl::flat_hash_set<Subscriber*> live_ ABSL_GUARDED_BY(delivery_mu_);

  // Metrics; null without a registry. The families are thread-safe.
  Metrics::Counter* upstream_requests_ = nullptr;
  Metrics::Histogram* upstream_latency_ = nullptr;
  Metrics::Counter* cache_lookups_ = nullptr;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_WATCH_HUB_H_
