#ifndef UPLOADWATCH_SERVICE_CORE_CHANGE_HISTORY_H_
#define UPLOADWATCH_SERVICE_CORE_CHANGE_HISTORY_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/core/state_cache.h"
#include "service/core/watch_target.h"

namespace uploadwatch {

// The recent changes of each counter target (token, counter, type), numbered
// by a sequence that grows by one per change of any of its uploadings: what
// a WatchUploadings resume token points into. A seam: this process keeps
// them in memory (LocalChangeHistory); issue 14's replicas would share them
// (Redis Streams), so that a sequence means the same everywhere.
class ChangeHistory {
 public:
  struct Change {
    UploadingState state;  // the latest state of the uploading
    bool added = false;    // first recorded after the asked sequence
  };
  struct CatchUp {
    std::vector<Change> changes;  // in sequence order
    uint64_t head = 0;            // the sequence they bring the client to
    // Every uploading the target knows, latest states (the client holds
    // them all once it has `changes`).
    std::vector<UploadingState> known;
  };

  ChangeHistory();
  virtual ~ChangeHistory() = default;
  // Unique among the histories this process ever made (a history at the
  // address of a destroyed one has another): what per-thread memos of
  // Record's answers are keyed on.
  uint64_t serial() const { return serial_; }
  // Identifies this history's sequences (random per process start).
  virtual uint64_t instance() const = 0;
  // `state` of an uploading of `target` was observed. Returns the sequence
  // at which this state (or a newer one already recorded) entered: records
  // it when its version is above the recorded one.
  virtual uint64_t Record(const WatchTarget& target,
                          const UploadingState& state) = 0;
  // What changed after `sequence`: nullopt when it cannot say (older than
  // what is kept, or never issued).
  virtual std::optional<CatchUp> Since(const WatchTarget& target,
                                       uint64_t sequence) = 0;

 private:
  const uint64_t serial_;
};

// In memory, per target: the latest state of every uploading seen, and a
// bounded record of when each sequence was made so that a token older than
// `max_changes` changes or `max_age` is refused (it then gets a reset, as
// Kubernetes' "410 Gone" after compaction); targets idle for `max_idle` are
// dropped. Thread-safe.
class LocalChangeHistory : public ChangeHistory {
 public:
  struct Options {
    size_t max_changes = 10000;  // per target
    absl::Duration max_age = absl::Minutes(15);
    // A target nobody recorded anything for (no watcher saw a poll) this
    // long is forgotten: its tokens then get a reset. Below the StateStore's
    // retention (1 h), after which versions would start again at 1.
    absl::Duration max_idle = absl::Minutes(30);
  };
  // `instance`: 0 picks a random one.
  LocalChangeHistory(const Clock* clock, Options options,
                     uint64_t instance = 0);

  uint64_t instance() const override { return instance_; }
  uint64_t Record(const WatchTarget& target,
                  const UploadingState& state) override;
  std::optional<CatchUp> Since(const WatchTarget& target,
                               uint64_t sequence) override;
  size_t targets() const;

 private:
  struct Entry {
    UploadingState state;
    uint64_t first = 0;  // sequence of its first record
    uint64_t last = 0;   // sequence of its latest change
  };
  struct Target {
    uint64_t head = 0;
    uint64_t floor = 0;  // sequences below it are forgotten
    absl::flat_hash_map<int64_t, Entry> entries;
    std::deque<std::pair<uint64_t, absl::Time>> made;  // sequence, when
    absl::Time touched;  // the last Record, change or not
  };
  void TrimLocked(Target& t, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* const clock_;
  const Options options_;
  const uint64_t instance_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<WatchTarget, Target> targets_ ABSL_GUARDED_BY(mu_);
};

// The changes of counter targets as every replica on one Redis sees them
// (issue 14): per target a stream whose entry ids are the same on every
// replica, what a WatchUploadings format 2 resume token points into. The
// stream bridge implements it; none in single-process mode.
//
// A position P in a token says: the client holds, for every uploading, at
// least its newest state up to P. Thread-safe; never blocks on Redis.
class SharedChanges {
 public:
  // What watches and the stream's log compare contents by: a stable hash
  // of the serialized uploading (StableHash64), the same on every replica,
  // so that a resume token can carry it (ResumeToken::held).
  static uint64_t ContentHash(const v1::Uploading& uploading);

  // One entry as a watch checks it against what it has sent.
  struct Entry {
    std::string id;  // "<ms>-<seq>"
    int64_t uploading_id = 0;
    // The version this replica's store gave the entry's state, where it is
    // known (an entry handed to it); else the holder's.
    int64_t version = 0;
    // ContentHash of the entry's uploading: the same content whatever its
    // version here.
    uint64_t content = 0;
  };
  struct Missed {
    // The newest state of each uploading changed after the position, in
    // stream order; `second`: it first entered the stream after it (ADDED).
    std::vector<std::pair<UploadingState, bool>> changes;
    // Every uploading's newest state the stream has had (the client holds
    // them once it has `changes`).
    std::vector<UploadingState> known;
    std::string head;  // the position `changes` bring the client to
  };
  using CatchUpCallback = absl::AnyInvocable<void(std::optional<Missed>)>;

  // Told when entries of a target's stream were read here: a watch whose
  // last token was built before them may now cover more (its newest
  // change's own entry, on the holder, is read after it was sent).
  class Listener {
   public:
    virtual ~Listener() = default;
    virtual void OnStreamRead() = 0;
  };

  virtual ~SharedChanges() = default;
  // `listener` hears of `target`'s entries until Unlisten returns (which
  // waits for a call under way: never call it holding what OnStreamRead
  // takes).
  virtual void Listen(const WatchTarget& target, Listener* listener) = 0;
  // Whether this replica reads `target`'s stream now (it follows it and
  // Redis is reachable): a state the holder relays will be read here within
  // moments, so a watch may wait for a state's own entry before it writes
  // the state (its token then covers it). False in degraded mode: nothing
  // is relayed, and a watch writes at once.
  virtual bool Reading(const WatchTarget& target) const = 0;
  virtual void Unlisten(Listener* listener) = 0;
  // How far a watch of `target` whose client holds what `covers` accepts
  // may move its position on from `from` (empty: none yet): the newest id P
  // such that `covers` holds for every entry after `from` up to P, as this
  // replica has read the stream; `from` when the first entry after it is not
  // covered or when this replica knows nothing after it. nullopt when `from`
  // is empty and this replica does not hold the stream from its first entry
  // (not followed yet, or read with a gap), or when nothing was ever
  // appended. Called under the watch's lock: a leaf.
  virtual std::optional<std::string> Advance(
      const WatchTarget& target, const std::string& from,
      absl::FunctionRef<bool(const Entry&)> covers) = 0;
  // What changed after `after` (a position of a token), read once this
  // replica follows the target's stream, so that every later entry comes to
  // the target's watchers as a state: nullopt when that cannot be said
  // (trimmed past, older than `not_before`, another Redis, unreachable).
  // `done` runs once, on another thread, possibly before this returns.
  virtual void CatchUp(const WatchTarget& target, const std::string& after,
                       absl::Time not_before, CatchUpCallback done) = 0;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_CHANGE_HISTORY_H_
