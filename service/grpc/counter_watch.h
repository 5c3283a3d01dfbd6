#ifndef UPLOADWATCH_SERVICE_GRPC_COUNTER_WATCH_H_
#define UPLOADWATCH_SERVICE_GRPC_COUNTER_WATCH_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"
#include "service/auth/token.h"
#include "service/common/clock.h"
#include "service/core/change_history.h"
#include "service/core/scheduler.h"
#include "service/core/subscriber.h"
#include "service/core/uploading_hub.h"
#include "service/core/watch_target.h"

namespace uploadwatch {

// The logic of one WatchUploadings stream, apart from gRPC (the reactor is a
// thin shell over it, tests drive it with a fake Sink): the framing of what
// UploadingHub::SubscribeCounter delivers into snapshot / resume catch-up /
// live messages, as the rpc's comment in uploading_service.proto says.
//
// - Snapshot: the counter's list, every page, through hub->List (the same
//   flights and caches as the group's poll round, which SubscribeCounter
//   starts at once where this replica polls the counter); each listed
//   uploading as recorded (UploadingHub::Stored, or the state that arrives;
//   after `snapshot_grace`, the list's own copy), ADDED for each in chunks
//   of `max_events_per_message`, the last one `synced`.
// - Live: per uploading, a state whose version or content was already sent
//   is dropped; the rest is coalesced while a write is in flight (latest
//   state per uploading, an ADDED stays ADDED, first-change order) and
//   flushed after `coalesce_delay` so that one poll round makes one message
//   (zero: once the fan-out has delivered everything it holds for the
//   watch, OnDrained, on the fan-out's thread).
// - Resume: a token from this history (same instance, caller, counter,
//   type) within it gets the latest state of each uploading changed after
//   it, then `synced`; any other well-formed token a `reset` and a snapshot.
// - Bookmarks: an empty message with a fresh token after
//   `bookmark_interval` without a message.
// - Replicas on one Redis (options.shared): a live message waits (at most
//   `max_entry_wait`) until each of its states' own entries in the shared
//   changes stream is read here, so that its token covers them and a client
//   that resumes with it on another replica is not shown them again.
// - Check times: each event carries its state's check_time; every message
//   from the synced one on carries the oldest latest confirmation among the
//   states the client holds (OnConfirmed: poll rounds that change nothing
//   only move that time).
//
// Thread-safe. Calls its Sink under its own lock, one Write at a time;
// calls the hub and the scheduler without it.
class CounterWatch : public Subscriber, private SharedChanges::Listener {
 public:
  using Message = ::metrika::offline_conversions::v1::WatchUploadingsResponse;

  class Sink {
   public:
    virtual ~Sink() = default;
    // `message`, then `events` as entries of its `events` field on the
    // wire (each a serialized UploadingEvent, shared with the other
    // watchers of its change, never copied into a message). Both stay
    // valid until WriteDone(); the next Write after it.
    virtual void Write(
        const Message* message,
        const std::vector<std::shared_ptr<const std::string>>& events) = 0;
    // Exactly once, the last call.
    virtual void Finish(const absl::Status& status) = 0;
  };
  struct Options {
    absl::Duration bookmark_interval = absl::Seconds(60);
    size_t max_events_per_message = 500;
    absl::Duration coalesce_delay = absl::ZeroDuration();
    // How long a listed uploading's recorded state is waited for before the
    // snapshot uses the list's own copy.
    absl::Duration snapshot_grace = absl::Seconds(1);
    // Retry of a snapshot page after a transient error, doubling.
    absl::Duration list_retry = absl::Seconds(1);
    absl::Duration max_list_retry = absl::Seconds(30);
    // Replicas on one Redis: positions every replica shares (format 2
    // tokens, resumable anywhere); none: this process's history alone.
    // Not owned.
    SharedChanges* shared = nullptr;
    // How long a live message waits for its states' entries in the shared
    // stream (on the holder they come back ~1 ms after the change was
    // relayed). A state that is never relayed (the lease moved, a version
    // the stream had) goes after it, with the position that was reached.
    absl::Duration max_entry_wait = absl::Milliseconds(250);
  };

  // None owned; all outlive the watch.
  CounterWatch(UploadingHub* hub, ChangeHistory* history, Scheduler* scheduler,
               const Clock* clock, Sink* sink, Options options);
  ~CounterWatch() override;

  // Follows the counter. A non-OK status (the resume token malformed, the
  // watch caps, shutdown) means nothing was sent and nothing will be: the
  // caller finishes the stream with it.
  absl::Status Start(const Credentials& credentials, int32_t counter_id,
                     v1::Uploading::Type type, const std::string& resume_token);
  // The write of the last Write() ended (`ok`: it reached the transport).
  void WriteDone(bool ok);
  // Ends the stream now with `status` (lifetime bound, client gone).
  void End(const absl::Status& status);
  // The last call (the reactor's OnDone): leaves the hub and stops the
  // timers; the Sink is never called again once it returns.
  void Stop();

  // Subscriber
  void OnState(const UploadingState& state) override;
  void OnConfirmed(const UploadingState& state) override;
  void OnError(const absl::Status& status) override;
  // Writes what a poll round queued (coalesce_delay zero).
  void OnDrained() override;

 private:
  struct Alive {
    absl::Mutex mu;
    CounterWatch* watch ABSL_GUARDED_BY(mu);
  };
  struct Sent {
    int64_t version = 0;
    uint64_t content = 0;  // SharedChanges::ContentHash of the uploading
    absl::Time checked;  // its latest confirmation this watch was shown
    // From a shared catch-up: `version` is the stream's numbering, which
    // this replica's store may not share (it numbered the uploading on its
    // own): the first state here with other content is a change whatever
    // its version, the same content takes this replica's version.
    bool foreign = false;
  };
  struct Pending {
    // The UploadingEvent, serialized: MODIFIED ones are made once per state
    // and shared by every watcher of the counter (EventBytesOf).
    std::shared_ptr<const std::string> event;
    bool added = false;
  };

  // Asks for the snapshot page at `offset` if the watch is still alive;
  // call without its locks. Static: it may run after Stop().
  static void RequestPage(UploadingHub* hub, std::shared_ptr<Alive> alive,
                          int32_t offset);
  // The page's parameters and the caller's credentials; nullopt once over.
  std::optional<std::pair<ListParams, Credentials>> PageRequest(int32_t offset);
  // A page arrived; returns the next offset to ask for, if any.
  std::optional<int32_t> OnPage(
      int32_t offset,
      const absl::StatusOr<v1::ListUploadingsResponse>& page);
  void OnRetryTimer();
  void OnGraceTimer();
  void OnBookmarkTimer();
  void OnFlushTimer();
  // Schedules `fn` on the scheduler, reaching the watch only while alive.
  Scheduler::TaskId After(absl::Duration d,
                          void (CounterWatch::*fn)());
  void MaybeSyncLocked(bool grace_over) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ChangeLocked(const UploadingState& state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues `states` as messages of at most max_events_per_message; the
  // last one `synced` (true) or not.
  void QueueChunksLocked(const std::vector<std::pair<UploadingState, bool>>&
                             events,
                         bool synced) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The token of a message about to be queued: a shared position (format
  // 2) once the watch has one (moved on as far as what it sent covers the
  // stream; `shared_ok` false for a snapshot's chunks before its last), else
  // this process's sequence (format 1).
  std::string TokenLocked(bool shared_ok = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A format 2 token's catch-up arrived (nullopt: a reset and the snapshot).
  void OnCatchUp(std::optional<SharedChanges::Missed> missed);
  // How far the shared position may move now (see SharedChanges::Advance);
  // `own_entry` is told each uploading whose entry of the very state the
  // client holds is among the entries that position covers.
  std::optional<std::string> AdvanceLocked(
      absl::FunctionRef<void(int64_t)> own_entry = [](int64_t) {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The client now holds `id`'s state in sent_, and no entry of it is
  // behind the position yet (shared mode): the token lists it as held.
  void HeldBeyondLocked(int64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the live message pending_ makes may be written now: every state
  // in it has its own entry within what its token will cover, or waiting
  // is pointless (no shared stream read here, no position yet) or over.
  // When not, it waits for OnStreamRead or OnEntryWaitTimer.
  bool EntriesReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnEntryWaitTimer();
  // SharedChanges::Listener: entries were read; once they have settled
  // (OnNudgeTimer), a bookmark carries the position they let the client's
  // token reach, if no message is on its way to.
  void OnStreamRead() override;
  void OnNudgeTimer();
  // The oldest last confirmation among the states the client holds (for
  // the message's check_time); sent_ must not be empty.
  absl::Time OldestCheckLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  UploadingHub* const hub_;
  ChangeHistory* const history_;
  Scheduler* const scheduler_;
  const Clock* const clock_;
  Sink* const sink_;
  const Options options_;
  std::shared_ptr<Alive> alive_;

  absl::Mutex mu_;
  std::optional<Credentials> credentials_ ABSL_GUARDED_BY(mu_);
  WatchTarget target_ ABSL_GUARDED_BY(mu_);
  bool subscribed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool live_ ABSL_GUARDED_BY(mu_) = false;  // the snapshot (or catch-up) is queued
  // A message with `synced` was written: later ones carry check_time.
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  // Snapshot in progress: what the list showed, and the recorded states.
  bool list_done_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<int64_t, v1::Uploading> listed_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int64_t, UploadingState> received_ ABSL_GUARDED_BY(mu_);
  absl::Duration retry_ ABSL_GUARDED_BY(mu_);
  int32_t retry_offset_ ABSL_GUARDED_BY(mu_) = 0;
  // Live: what the client holds, and what it has not been sent yet.
  absl::flat_hash_map<int64_t, Sent> sent_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> pending_order_ ABSL_GUARDED_BY(mu_);
  // The history's sequence the client holds everything up to.
  uint64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
  // The shared changes stream's id the client holds everything up to
  // (options_.shared); empty until known.
  std::string position_ ABSL_GUARDED_BY(mu_);
  // Uploadings whose state in sent_ no entry behind position_ has yet:
  // their content goes in the token (ResumeToken::held), so that a catch-up
  // elsewhere does not show them again.
  absl::flat_hash_set<int64_t> beyond_ ABSL_GUARDED_BY(mu_);
  // A shared token's held states (id -> content), for its catch-up.
  absl::flat_hash_map<int64_t, uint64_t> token_held_ ABSL_GUARDED_BY(mu_);
  Scheduler::TaskId nudge_timer_ ABSL_GUARDED_BY(mu_) = 0;
  // The live message waits for its states' entries (EntriesReadLocked),
  // until they are read or entry_wait_timer_ runs out (entry_wait_over_).
  bool awaiting_entries_ ABSL_GUARDED_BY(mu_) = false;
  bool entry_wait_over_ ABSL_GUARDED_BY(mu_) = false;
  Scheduler::TaskId entry_wait_timer_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Message> out_ ABSL_GUARDED_BY(mu_);
  Message in_flight_ ABSL_GUARDED_BY(mu_);
  // Live events that follow in_flight_'s own fields on the wire.
  std::vector<std::shared_ptr<const std::string>> in_flight_events_
      ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool flush_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  // The flush waits for OnDrained rather than a timer.
  bool flush_on_drain_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_write_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> pending_error_ ABSL_GUARDED_BY(mu_);
  // Timers, cancelled in Stop() (each reaches the watch through alive_).
  Scheduler::TaskId bookmark_timer_ ABSL_GUARDED_BY(mu_) = 0;
  Scheduler::TaskId flush_timer_ ABSL_GUARDED_BY(mu_) = 0;
  Scheduler::TaskId grace_timer_ ABSL_GUARDED_BY(mu_) = 0;
  Scheduler::TaskId retry_timer_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_COUNTER_WATCH_H_
