#ifndef UPLOADWATCH_SERVICE_CORE_GROUP_POLLER_H_
#define UPLOADWATCH_SERVICE_CORE_GROUP_POLLER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "service/common/clock.h"
#include "service/core/pacer.h"
#include "service/core/poll_ownership.h"
#include "service/core/poll_planner.h"
#include "service/core/scheduler.h"
#include "service/core/upstream_reader.h"
#include "service/core/watch_registry.h"

namespace uploadwatch {

// Polls every watched (token, counter) group on one timer: tells the
// PollOwnership which uploadings (and which counter watches' types) are
// wanted, polls only those it owns (and what other replicas want of a group
// it polls: PollOwnership::OthersWant), runs the round the planner plans through the reader, and
// sets the next time from the Pacer. Keeps the token a group polls with (the
// only place a token is kept). What a group polls is read from the registry
// each round. It sees results only as a waiter of its requests: observations
// go from the reader to the sink; permanent errors go to the Listener.
// Thread-safe; calls the reader and the listener without its lock.
class GroupPoller {
 public:
  class Listener {
   public:
    virtual ~Listener() = default;
    // A poll met a permanent error for one uploading (`uploading_id` != 0)
    // or for the whole group (a list).
    virtual void PollFailed(const GroupKey& group, int64_t uploading_id,
                            const absl::Status& status) = 0;
  };
  struct Options {
    PlannerOptions planner;
    // How soon to ask the PollOwnership again when another replica polls
    // (the change callback usually says so sooner).
    absl::Duration poll_interval = absl::Seconds(30);
  };

  // None owned; all outlive the poller.
  GroupPoller(UpstreamReader* reader, const WatchRegistry* registry,
              Pacer* pacer, PollOwnership* ownership, Scheduler* scheduler,
              const Clock* clock, Listener* listener, Options options);
  GroupPoller(const GroupPoller&) = delete;
  GroupPoller& operator=(const GroupPoller&) = delete;

  // `target` (already in the registry) is polled with `token`.
  // `needs_first_state`: its watchers have no state yet: fetch one now (a
  // Get, or a List round when the group batches), whatever the timer.
  void Watch(const WatchTarget& target, const std::string& token,
             bool needs_first_state);
  // `target` left the registry: stop waiting for requests made for it alone
  // (so that nobody waiting, they are cancelled or never sent); the group
  // ends with its last target.
  void Unwatch(const WatchTarget& target);
  // What the PollOwnership's change callback must be given: a gained
  // uploading is polled at once (a round now, or right after the one under
  // way); a lost one is left out from the next round on.
  void OwnershipChanged(const std::string& name, bool should_poll);
  // Stops every timer and request; Watch() does nothing afterwards.
  void Shutdown();
  size_t groups() const;

 private:
  using Action = absl::AnyInvocable<void() &&>;
  using Actions = std::vector<Action>;
  struct SideGet {  // a first state, or a Get for what the pages missed
    uint64_t n = 0;
    std::optional<UpstreamReader::GetFlights::Ticket> ticket;
  };
  struct Group {
    std::string token;
    Scheduler::TaskId timer = 0;  // next round; 0 while polling
    bool polling = false;
    bool rerun = false;  // targets joined mid-round: poll again at once
    uint64_t step = 0;   // tells the answer awaited from stale ones
    PollRound round;
    int64_t round_get_id = 0;
    std::optional<UpstreamReader::GetFlights::Ticket> round_get;
    std::optional<UpstreamReader::ListFlights::Ticket> round_list;
    absl::flat_hash_map<int64_t, SideGet> side_gets;
  };
  using Groups = absl::flat_hash_map<GroupKey, Group>;

  void OnTimer(const GroupKey& key);
  void StartRoundLocked(const GroupKey& key, Group& group, Actions& after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ContinueLocked(const GroupKey& key, Group& group, absl::Time now,
                      Actions& after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The round ended with `status`: schedule the next (or drop the group).
  void EndRoundLocked(const GroupKey& key, const absl::Status& status,
                      absl::Time now, Actions& after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SideGetLocked(const GroupKey& key, Group& group, int64_t id,
                     Actions& after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(Groups::iterator it, Actions& after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The token's groups (every group in groups_ of that fingerprint), from
  // token_groups_: O(1), so that the next-poll time of a round does not
  // cost more as other groups are added.
  size_t TokenGroupsLocked(const std::string& fingerprint) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnRoundGet(const GroupKey& key, uint64_t step, int64_t id,
                  const absl::Status& status);
  void OnRoundList(const GroupKey& key, uint64_t step,
                   const absl::StatusOr<v1::ListUploadingsResponse>& result);
  void OnSideGet(const GroupKey& key, int64_t id, uint64_t n,
                 const absl::Status& status);
  // The registry's poll set without the uploadings another replica polls.
  WatchRegistry::PollSet PollSetLocked(const GroupKey& key) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Run(Actions& actions);

  UpstreamReader* const reader_;
  const WatchRegistry* const registry_;
  Pacer* const pacer_;
  PollOwnership* const ownership_;
  Scheduler* const scheduler_;
  const Clock* const clock_;
  Listener* const listener_;
  const Options options_;

  mutable absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_n_ ABSL_GUARDED_BY(mu_) = 1;
  Groups groups_ ABSL_GUARDED_BY(mu_);
  // How many of groups_ each token has (no zero entries): kept by Watch's
  // insert and EraseLocked, the only places groups_ grows or shrinks.
  absl::flat_hash_map<std::string, size_t> token_groups_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_GROUP_POLLER_H_
