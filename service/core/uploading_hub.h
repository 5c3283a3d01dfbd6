#ifndef UPLOADWATCH_SERVICE_CORE_UPLOADING_HUB_H_
#define UPLOADWATCH_SERVICE_CORE_UPLOADING_HUB_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/auth/token.h"
#include "service/common/clock.h"
#include "service/core/caller_admission.h"
#include "service/core/executor.h"
#include "service/core/fan_out.h"
#include "service/core/group_poller.h"
#include "service/core/pacer.h"
#include "service/core/poll_ownership.h"
#include "service/core/scheduler.h"
#include "service/core/state_publisher.h"
#include "service/core/state_store.h"
#include "service/core/subscriber.h"
#include "service/core/token_tracker.h"
#include "service/core/upstream_reader.h"
#include "service/core/watch_registry.h"
#include "service/metrica/backoff.h"
#include "service/metrica/metrica_client.h"
#include "service/metrics/metrics.h"

namespace uploadwatch {

// The service's logic behind one front: wires the parts (reader, store,
// registry, fan-out, poller, pacer) and is the observation sink that joins
// them: a fetched uploading is recorded in the store, and what changed goes
// to the registry's subscribers through the fan-out. Holds no state of its
// own but the sweep timer. See docs/ARCHITECTURE.md.
//
// Thread-safe. Shut down in this order: Shutdown(); destroy the
// MetricaClient, the Scheduler and the Executor (late callbacks find nothing
// to do; the executor runs the last deliveries); then the hub.
class UploadingHub : public ObservationSink, private GroupPoller::Listener {
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
    // It is also all that callers on the server's token may spend together
    // (see CallerAdmission), so that they never eat the polls' part.
    double budget_reserve = 0.1;
    // How long Metrica's NOT_FOUND / PERMISSION_DENIED for an uploading
    // answer Gets and new watches; zero: not remembered.
    absl::Duration negative_cache_ttl = absl::Seconds(30);
    // Each caller's part of what callers on the server's token may spend
    // (requests a day, and parallel slots of `max_in_flight_per_token`).
    double caller_budget_share = 0.25;
    int max_in_flight_per_token = 3;
    // Open watches (both kinds) one caller on the server's token may hold;
    // 0: no cap.
    size_t max_watches_per_caller = 5000;
    // Callers' tokens Metrica has accepted that are tracked (quota series,
    // no unverified bucket), and what unverified tokens may spend a day.
    TokenTracker::Options tokens;
    // Registry for the metrics; none when null. Not owned.
    Metrics* metrics = nullptr;
    // Jitter of poll backoff. Not owned; default: absl::BitGen.
    RandomSource* random = nullptr;
    // Who polls what; default: this process polls everything. Not owned.
    PollOwnership* ownership = nullptr;
    // Where observed changes go for other replicas; none when null. Not owned.
    StatePublisher* publisher = nullptr;
  };

  using StateCallback = UpstreamReader::StateCallback;
  using ListCallback = UpstreamReader::ListCallback;

  struct Stats {
    size_t watchers = 0;
    size_t pollers = 0;  // watched uploadings
    size_t groups = 0;
    size_t flights = 0;
    size_t cached_states = 0;
  };

  // None owned. `executor` runs deliveries to subscribers.
  UploadingHub(MetricaClient* client, Scheduler* scheduler, Executor* executor,
               const Clock* clock, Options options);
  ~UploadingHub() override;
  UploadingHub(const UploadingHub&) = delete;
  UploadingHub& operator=(const UploadingHub&) = delete;

  // The current state of one uploading. `done` runs once, possibly inline,
  // unless the caller leaves the returned wait first (see CallerWait).
  CallerWait Get(const Credentials& credentials, int32_t counter_id,
                 int64_t uploading_id, StateCallback done);
  // Hands what Get would answer at once from the cache to `use`, under the
  // state store's lock (short, and calling nothing of the hub's: e.g. to
  // serialize it), or returns false when Get has more to do. The gRPC layer
  // answers a cached Get so, without a copy of the state and without
  // working out who the caller is (which only a request to Metrica needs).
  bool UseCached(const Credentials& credentials, int32_t counter_id,
                 int64_t uploading_id,
                 absl::FunctionRef<void(const UploadingState&)> use);
  // One page of a counter's uploadings; briefly cached and single-flight like
  // Get. The states it returns also refresh watchers. `done` runs once,
  // unless the caller leaves the wait first.
  CallerWait List(const Credentials& credentials, const ListParams& params,
                  ListCallback done);

  // Starts delivering the uploading's states to `subscriber` (the current
  // one first). RESOURCE_EXHAUSTED at the watch cap; UNAVAILABLE once shut
  // down. A watch that needs its first state from Metrica (nobody watches
  // the uploading, and no fresh state is stored) costs one request of the
  // caller's share on the server's token, or of the unverified tokens'
  // bucket, as a Get would: RESOURCE_EXHAUSTED with the Get's ErrorInfo
  // beyond it. Polls that follow are the polls'. A caller on the server's
  // token holds at most max_watches_per_caller watches of both kinds.
  absl::Status Subscribe(const Credentials& credentials, int32_t counter_id,
                         int64_t uploading_id, Subscriber* subscriber);
  // Starts delivering every uploading of the counter and `type` the polls
  // observe (the groundwork of issue 11's WatchUploadings): a poll round
  // starts at once, and every round lists the type to its last page. A
  // terminal uploading does not end it; errors as for Subscribe (each
  // counter watch costs one request, for the round it starts).
  absl::Status SubscribeCounter(const Credentials& credentials,
                                int32_t counter_id, v1::Uploading::Type type,
                                Subscriber* subscriber);
  // Idempotent. Once it returns, `subscriber` is never called again; it
  // waits only for a delivery to that subscriber in progress.
  void Unsubscribe(Subscriber* subscriber);

  // Ends every watch with `reason`, fails pending Gets/Lists with it, and
  // refuses new watches.
  void Shutdown(const absl::Status& reason);

  Stats stats() const;
  // Callers on the server token with a count today or a request in flight.
  size_t admitted_callers() const { return admission_.callers(); }
  // Tokens Metrica has accepted, tracked.
  size_t tracked_tokens() const { return tokens_.tracked(); }

  // A state another replica observed (its shared history, with the version
  // it gave it): recorded and delivered to this replica's watchers as if
  // observed here, not published again. For the stream bridge.
  void ObserveShared(const UploadingKey& key, const v1::Uploading& uploading,
                     int64_t version);
  // The recorded state of an uploading however old (relayed or shared ones
  // too); nullopt when none is. What a counter watch's snapshot shows for a
  // listed uploading: never older than the list (a fetched list is recorded
  // before its callers are answered; a cached one is older than the store).
  std::optional<UploadingState> Stored(const UploadingKey& key) const {
    return store_.Find(key);
  }
  // A state the group's lease holder relayed for counter watches (its
  // counter changes stream; StateStore::RecordRelayed, `sent`: when the
  // holder's request went): recorded and delivered as ObserveShared does,
  // not published again. For the stream bridge. Returns the version it has
  // here (the store may number it on, see StateStore::RecordRelayed).
  int64_t ObserveRelayed(const UploadingKey& key,
                         const v1::Uploading& uploading, int64_t version,
                         absl::Time sent);
  // The lease holder's poll (a request sent at `sent`) found unchanged the
  // state whose content is `content` (SharedChanges::ContentHash): if this
  // replica's state is that one, recorded as a check (StateStore::Confirm)
  // and delivered to counter watches as a confirmation; nothing when it is
  // another. For the stream bridge.
  void ConfirmRelayed(const UploadingKey& key, uint64_t content,
                      absl::Time sent);
  // The PollOwnership's change callback (see GroupPoller::OwnershipChanged).
  void PollOwnershipChanged(const std::string& name, bool should_poll);

  // ObservationSink
  UploadingState Observe(const UploadingKey& key,
                         const v1::Uploading& uploading, absl::Time sent,
                         absl::Time now) override;
  std::optional<UploadingState> Servable(const UploadingKey& key,
                                         absl::Time now) override;
  bool UseServable(const UploadingKey& key, absl::Time now,
                   absl::FunctionRef<void(const UploadingState&)> use) override;

 private:
  // A recorded state to the target's subscribers (if any), ending a
  // terminal target's polling: the one tail of Observe, ObserveShared and
  // ObserveRelayed.
  void Deliver(const UploadingKey& key, const StateStore::Recorded& recorded);
  // GroupPoller::Listener
  void PollFailed(const GroupKey& group, int64_t uploading_id,
                  const absl::Status& status) override;
  void End(const WatchRegistry::Ended& ended, const absl::Status& status);
  // Registers `subscriber` (reachable by the fan-out first); the status of
  // WatchRegistry::Add.
  absl::StatusOr<WatchRegistry::Added> Register(const WatchTarget& target,
                                                Subscriber* subscriber);
  // Who paid for a watch's first state (see Subscribe).
  enum class Payer { kNobody, kCaller, kUnverified };
  absl::StatusOr<Payer> ChargeFirstState(const Credentials& credentials);
  void Refund(const Credentials& credentials, Payer payer);
  // The per-caller watch count of a server-token watch (nothing for others).
  absl::Status OpenWatch(const Credentials& credentials,
                         Subscriber* subscriber);
  void CloseWatch(Subscriber* subscriber);
  void OnSweepTimer();
  void RegisterGauges(Metrics* metrics);

  MetricaClient* const client_;
  Scheduler* const scheduler_;
  const Clock* const clock_;
  StatePublisher* const publisher_;
  LocalPollOwnership local_ownership_;
  StateStore store_;
  WatchRegistry registry_;
  FanOut fan_out_;
  TokenTracker tokens_;
  CallerAdmission admission_;
  Pacer pacer_;
  UpstreamReader reader_;
  GroupPoller poller_;

  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  Scheduler::TaskId sweep_timer_ ABSL_GUARDED_BY(mu_) = 0;
  // The caller of every open server-token watch, for CloseWatch.
  absl::flat_hash_map<Subscriber*, std::string> watch_callers_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_UPLOADING_HUB_H_
