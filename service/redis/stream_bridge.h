#ifndef UPLOADWATCH_SERVICE_REDIS_STREAM_BRIDGE_H_
#define UPLOADWATCH_SERVICE_REDIS_STREAM_BRIDGE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "service/core/change_history.h"
#include "service/core/poll_ownership.h"
#include "service/core/state_publisher.h"
#include "service/core/uploading_hub.h"
#include "service/redis/redis_coordinator.h"

namespace uploadwatch::redis {

// Joins one replica's core to the others through its RedisCoordinator: the
// hub's PollOwnership and its StatePublisher.
//
// Who polls: one lease per (token fingerprint, counter) group, so that the
// replica that polls a group polls all of it in one round (a counter's
// uploadings listed together, whichever replica their watchers are on). A
// replica competes for a group's lease while it has watchers of any of its
// uploadings (and so holds the token); it tells GroupWants which uploadings
// they are; the holder reads every replica's wants (at each refresh, and at
// once from the group's notices when a replica starts wanting one) and polls
// them too (OthersWant).
//
// Counter watches want their group too (a PollCounterKey: "uploading"
// CounterWantId(type)), so the holder lists their types for every replica.
// It relays what they need on the group's changes stream of that type (the
// StateStream named by the PollCounterKey): every state it observes of the
// type whose version it has not relayed yet (AppendChange, fenced by the
// lease). Every replica with a counter watch of the type (the holder too,
// for the versions already relayed) follows that stream from its newest
// entry and hands other replicas' entries to UploadingHub::ObserveRelayed,
// except those of uploadings it follows on their own history (which bring
// them with the version every replica shares).
//
// What is shown: each uploading's history (StateStream, versions are per
// uploading). The holder publishes its observed changes, fenced by the
// group's lease. Every uploading this replica wants, or polls for others, is
// followed from the newest entry on, and every entry goes to the hub's
// ObserveShared: this replica's watchers get the holder's states with the
// holder's versions, and a replica that takes the lease over continues them
// (it follows what it polls for others too, for their versions). The holder
// publishes each version once (the hub offers every observation: a new
// holder fills an empty history with its current state).
//
// A version this replica gave on its own while not the holder (polling alone
// while Redis was unreachable, or a counter watch's snapshot list seeing a
// change before the holder) raises the uploading's version floor in Redis
// (StateStream::RaiseFloor; retried when the connection is back); the holder
// numbers its next state after it. So versions never go back across
// replicas: after such a divergence every replica converges on the holder's
// state with a version above all the ones shown.
//
// Degraded (Redis unreachable): LeaseManager's fallback (everyone polls what
// it watches, nobody polls for others); publishing fails at once and is
// dropped; following resumes from the last entry seen when the reader is
// back; wants are sent again.
//
// Shared positions (SharedChanges, for WatchUploadings format 2 resume
// tokens): of every changes stream it follows, the bridge keeps the recent
// entries (uploading, version, content), read from the stream's first entry
// when it starts following, so that a watch can tell how far what it sent
// covers the stream; a catch-up (StateStream::ChangesAfter) is read only
// once the stream is followed, so that every later entry reaches the hub.
//
// Thread-safe; Want and Unwant never wait for the loop thread (the core calls
// them under its own lock, which deliveries from the loop need too).
// Life cycle: construct, Attach the hub (before its first watch), Detach
// before the hub is destroyed; destroy after the hub.
class StreamBridge : public PollOwnership,
                     public StatePublisher,
                     public SharedChanges {
 public:
  explicit StreamBridge(CoordinatorOptions options);
  ~StreamBridge() override;  // not on the loop thread

  void Attach(UploadingHub* hub);
  // After it returns the hub is never called again.
  void Detach();
  // Hands every held lease over at once (compare-and-delete) and removes
  // this replica's wants, waiting at most `limit`; for a graceful shutdown,
  // after Detach.
  void ReleaseLeases(absl::Duration limit);

  RedisCoordinator& coordinator() { return *coordinator_; }

  // PollOwnership (names are PollUploadingKeys; leases per group)
  void Want(const std::string& name) override;
  void Unwant(const std::string& name) override;
  bool ShouldPoll(const std::string& name) const override;
  std::vector<int64_t> OthersWant(const std::string& group) const override;
  std::optional<size_t> TokenGroups(
      const std::string& token_fingerprint) const override;
  // StatePublisher
  void Publish(const UploadingKey& key, const UploadingState& state) override;
  // SharedChanges
  std::optional<std::string> Advance(
      const WatchTarget& target, const std::string& from,
      absl::FunctionRef<bool(const Entry&)> covers) override;
  void CatchUp(const WatchTarget& target, const std::string& after,
               absl::Time not_before, CatchUpCallback done) override;
  void Listen(const WatchTarget& target, Listener* listener) override;
  bool Reading(const WatchTarget& target) const override;
  void Unlisten(Listener* listener) override;

  // Entries from other replicas handed to the hub, and states this replica
  // published (for tests and the figures).
  int64_t delivered() const;
  int64_t published() const;
  // Counter changes this replica relayed to others as the holder, and
  // others' relays it delivered to its counter watches.
  int64_t relays_published() const;
  int64_t relayed() const;

 private:
  // What this replica wants of one group, and polls for the others.
  struct GroupState {
    absl::flat_hash_set<int64_t> local;  // its own watchers'
    // Every replica's wants, while this replica holds the group's lease.
    absl::flat_hash_set<int64_t> others;
  };

  // The group's lease changed hands (loop thread).
  void OnChange(const std::string& group, bool should_poll);
  // The group's wants as Redis answered (loop thread).
  void OnWanted(const std::string& group, const std::vector<int64_t>& ids);
  // A replica started wanting an uploading of the group (loop thread).
  void OnNotice(const std::string& group, const StreamEntry& entry);
  // The lease is not this replica's (any more): polls for nobody else.
  void DropOthers(const std::string& group);
  // Follows `names` (a generation each) / stops following, from the loop
  // (so that Want and Unwant never wait for it).
  void FollowAll(std::vector<std::pair<std::string, uint64_t>> names);
  void UnfollowLater(std::vector<std::string> names);
  // Under mu_: `name` is followed from now on; its generation, 0 if it was.
  uint64_t StartFollowingLocked(const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StopFollowingLocked(const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Follow(const std::string& name, uint64_t generation);
  void Deliver(const std::string& name, const StreamEntry& entry);
  // A PollCounterKey: the name of a counter's changes stream of one type.
  static bool IsChangesStream(const std::string& name);
  // An entry of a counter's changes stream `name` (`stream`: its parts, the
  // uploading id being CounterWantId(type)).
  void DeliverChange(const std::string& name, const UploadingKey& stream,
                     const StreamEntry& entry);
  // As the holder: `state` goes to its type's changes stream when a counter
  // watch of that type (on any replica) follows it and it is news; when it
  // is the version relayed last, it is a confirmation (below).
  void PublishChange(const UploadingKey& key, const UploadingState& state);
  // Confirmations: as the holder, the uploadings of a changes stream its
  // polls found unchanged (at the version it relayed last) are gathered and
  // appended as one entry (StateStream::AppendConfirmations) after a round
  // (kConfirmGather) and at most every kConfirmEvery, so that counter
  // watches on other replicas see the holder's checks in check_time.
  struct PendingConfirmations {
    absl::flat_hash_map<int64_t, int64_t> versions;  // uploading -> version
    absl::Time sent = absl::InfiniteFuture();  // the oldest request among them
    bool scheduled = false;
    absl::Time last_appended = absl::InfinitePast();
  };
  static constexpr absl::Duration kConfirmGather = absl::Milliseconds(50);
  static constexpr absl::Duration kConfirmEvery = absl::Seconds(5);
  void ConfirmLocked(const std::string& name, const UploadingState& state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AppendConfirmations(const std::string& name);  // loop thread
  // A confirmations entry of another holder read (`stream` as DeliverChange).
  void DeliverConfirmations(const std::string& name, const UploadingKey& stream,
                            const StreamEntry& entry);
  // What this replica has read of one followed changes stream (SharedChanges).
  struct CatchUpAsk {
    WatchTarget target;
    std::string after;
    absl::Time not_before;
    CatchUpCallback done;
  };
  struct ChangeLog {
    bool subscribed = false;  // every entry after `start` comes to the hub
    std::string start;        // the newest id when following began
    bool ready = false;       // `entries` hold the stream from its first
    std::string trimmed_to;   // entries up to it were dropped here
    std::deque<Entry> entries;
    std::vector<CatchUpAsk> waiting;  // until subscribed
  };
  static constexpr size_t kMaxLogEntries = 2000;
  void AppendLogLocked(const std::string& name, Entry entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Keeps the newest kMaxLogEntries, remembering where it cut (the caller
  // holds mu_ for the log it passes).
  static void TrimLog(ChangeLog& log);
  // The stream is followed from `start` on (loop thread).
  void Subscribed(const std::string& name, uint64_t generation,
                  const std::string& start, bool backfill);
  void RunCatchUp(const std::string& name, CatchUpAsk ask);
  // Raises `name`'s floor to `version` in Redis; remembered when that fails.
  void RaiseFloor(const std::string& name, int64_t version);
  // The command connection is back: the floors that could not be raised.
  void OnConnectionState(ConnectionState state);
  // Tells the hub (without mu_).
  void PollChanged(const std::string& name, bool should_poll);

  std::unique_ptr<RedisCoordinator> coordinator_;
  // Set on the loop when destruction begins: the coordinator's parts go
  // away one by one, and a callback still to come (a lease change, a failed
  // command, a posted unsubscribe) must not reach for them.
  std::atomic<bool> stopping_{false};

  mutable absl::Mutex hub_mu_;
  UploadingHub* hub_ ABSL_GUARDED_BY(hub_mu_) = nullptr;

  mutable absl::Mutex mu_;
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<std::string, GroupState> groups_ ABSL_GUARDED_BY(mu_);
  // Followed uploadings (wanted here, or polled for others) and the
  // generation of their following (a late Last answer for an earlier one is
  // dropped).
  absl::flat_hash_map<std::string, uint64_t> followed_ ABSL_GUARDED_BY(mu_);
  // The newest version known to be in each followed history (delivered, or
  // published by this replica): older ones are not published again.
  absl::flat_hash_map<std::string, int64_t> in_history_ ABSL_GUARDED_BY(mu_);
  void NoteInHistory(const std::string& name, int64_t version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The highest floor mark read from each followed history: a holder whose
  // last published version is below it publishes its next observation,
  // changed or not, so that it is numbered above the floor.
  absl::flat_hash_map<std::string, int64_t> floor_ ABSL_GUARDED_BY(mu_);
  // Versions this replica showed on its own while not the holder: the
  // highest asked of RaiseFloor, and the ones Redis has not taken yet.
  absl::flat_hash_map<std::string, int64_t> floor_asked_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> floor_unsent_ ABSL_GUARDED_BY(mu_);
  // Per followed changes stream (a PollCounterKey): the newest version of
  // each uploading known to be in it (relayed by this replica, or read), so
  // that every version is relayed once; a new holder knows what the last
  // one relayed.
  absl::flat_hash_map<std::string, absl::flat_hash_map<int64_t, int64_t>>
      changes_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, ChangeLog> logs_ ABSL_GUARDED_BY(mu_);
  // Per followed changes stream: for each uploading, the version and the
  // content (SharedChanges::ContentHash) of its newest entry known here
  // (read, or backfilled): what a holder's confirmation of that version
  // confirms, if this replica's state has that content.
  struct NewestEntry {
    int64_t version = 0;
    uint64_t content = 0;
  };
  absl::flat_hash_map<std::string, absl::flat_hash_map<int64_t, NewestEntry>>
      newest_ ABSL_GUARDED_BY(mu_);
  void NoteNewestLocked(const std::string& name, const Entry& entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `entry` of `name` came after a gap (StreamEntry::after_gap): the log
  // kept before it no longer says what follows a position.
  void ForgetBeforeGapLocked(const std::string& name, const StreamEntry& entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::flat_hash_map<std::string, PendingConfirmations> confirmations_
      ABSL_GUARDED_BY(mu_);
  // Tells `name`'s listeners (not under mu_).
  void Notify(const std::string& name);
  // Held while listeners are called, so that Unlisten waits for them.
  absl::Mutex listeners_mu_;
  absl::flat_hash_map<std::string, absl::flat_hash_set<Listener*>> listeners_
      ABSL_GUARDED_BY(listeners_mu_);
  absl::flat_hash_map<Listener*, std::string> listening_
      ABSL_GUARDED_BY(listeners_mu_);
  int listener_ = 0;
  int64_t relayed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t relays_published_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t delivered_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t published_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_STREAM_BRIDGE_H_
