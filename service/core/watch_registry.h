#ifndef UPLOADWATCH_SERVICE_CORE_WATCH_REGISTRY_H_
#define UPLOADWATCH_SERVICE_CORE_WATCH_REGISTRY_H_

#include <cstddef>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "service/core/state_cache.h"
#include "service/core/subscriber.h"
#include "service/core/watch_target.h"

namespace uploadwatch {

// Who watches what: watch targets (one uploading, or a whole counter) and
// their subscribers, the process-wide cap, and which observation each
// subscriber must be shown. It decides; its owner delivers (FanOut) and polls
// (GroupPoller). Thread-safe; calls nothing outside itself.
class WatchRegistry {
 public:
  struct Options {
    size_t max_watches = 20000;  // subscribers across the process
  };
  struct Added {
    bool new_target = false;  // the first subscriber of its target
    // The target's subscribers have been shown a state: the newcomer gets
    // the stored one at once.
    bool has_state = false;
  };
  // The subscribers an observation is for.
  struct Match {
    std::vector<Subscriber*> to;
    // The uploading target ended (terminal state): its subscribers are
    // removed, and nothing polls it any more.
    std::optional<WatchTarget> ended;
  };
  // Everything a failure or shutdown ended.
  struct Ended {
    std::vector<Subscriber*> to;
    std::vector<WatchTarget> targets;
  };
  // What a group must poll.
  struct PollSet {
    absl::flat_hash_set<int64_t> uploading_ids;
    std::vector<v1::Uploading::Type> counter_types;
    bool empty() const {
      return uploading_ids.empty() && counter_types.empty();
    }
  };

  explicit WatchRegistry(Options options) : options_(options) {}

  // RESOURCE_EXHAUSTED at the cap, UNAVAILABLE once closed, with what to do.
  absl::StatusOr<Added> Add(const WatchTarget& target, Subscriber* subscriber);
  // The subscriber's target, and whether that was its last subscriber
  // (nullopt: not registered). Idempotent.
  struct Removed {
    WatchTarget target;
    bool target_gone = false;
  };
  std::optional<Removed> Remove(Subscriber* subscriber);

  // `state` of `key` was recorded, `changed` or not. An uploading target is
  // shown a change, or its first state; a terminal state ends it. A counter
  // target of the uploading's type is shown every observation (its
  // subscribers joined at different times; the FanOut drops what a
  // subscriber has already been shown).
  Match Observed(const UploadingKey& key, const UploadingState& state,
                 bool changed);
  // A fresh stored `state` answers a new uploading target without a poll:
  // every subscriber it has by now is to be shown it -- also those that
  // joined between Add and this call, before anything was shown (they were
  // told has_state = false, so nobody else will show them). A terminal state
  // ends the target, as in Observed.
  Match ShowFresh(const WatchTarget& target, const UploadingState& state);
  // Ends one target (e.g. terminal when subscribed, or a permanent error).
  Ended EndTarget(const WatchTarget& target);
  // Ends every target of a group (the token lost the counter).
  Ended EndGroup(const GroupKey& group);
  // Ends everything and refuses further Adds (shutdown).
  Ended Close();

  PollSet PollSetOf(const GroupKey& group) const;
  // The group has a target.
  bool GroupWatched(const GroupKey& group) const;
  // `target` has a subscriber.
  bool Has(const WatchTarget& target) const;
  // An uploading target exists for `key`.
  bool Watched(const UploadingKey& key) const;
  // ... and its subscribers have been shown a state.
  bool Shown(const UploadingKey& key) const;

  size_t subscribers() const;
  size_t uploading_targets() const;

 private:
  struct Target {
    absl::flat_hash_set<Subscriber*> subscribers;
    bool shown = false;  // uploading targets
  };
  // Removes the target and its subscribers; adds them to `out`.
  void EndLocked(const WatchTarget& target, Ended& out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<WatchTarget, Target> targets_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Subscriber*, WatchTarget> subscribers_
      ABSL_GUARDED_BY(mu_);
  // Every target of a group, for PollSetOf, Observed and EndGroup.
  absl::flat_hash_map<GroupKey, absl::flat_hash_set<WatchTarget>> by_group_
      ABSL_GUARDED_BY(mu_);
  size_t uploading_targets_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_WATCH_REGISTRY_H_
