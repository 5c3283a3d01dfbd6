#ifndef UPLOADWATCH_SERVICE_REDIS_POLL_OWNERSHIP_H_
#define UPLOADWATCH_SERVICE_REDIS_POLL_OWNERSHIP_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace uploadwatch::redis {

// The name of a poll group, (token fingerprint, counter): what a lease, a
// history stream and a poller are per. Fingerprints only, never tokens.
std::string PollGroupKey(absl::string_view token_fingerprint, int64_t counter_id);

// The poll-ownership seam: which replica polls a group. The core's group
// poller asks ShouldPoll before every poll; a group is wanted while this
// replica has watchers of it (and so holds the token it is polled with).
//
// Thread-safe. ShouldPoll answers at once from local state and never waits on
// Redis. The change callback (given to the implementation's constructor)
// reports every change of ShouldPoll(group) for a wanted group, on a thread of
// the implementation's choosing; it must not block and is not called after
// the object's destructor began, nor for Unwant.
class PollOwnership {
 public:
  using ChangeCallback =
      absl::AnyInvocable<void(const std::string& group, bool should_poll)>;

  virtual ~PollOwnership() = default;
  // This replica has a watcher of `group`: compete to poll it. Idempotent.
  // Not reported as a change: read ShouldPoll after it.
  virtual void Want(const std::string& group) = 0;
  // Its last watcher left: stop competing and hand the group over.
  virtual void Unwant(const std::string& group) = 0;
  virtual bool ShouldPoll(const std::string& group) const = 0;
};

// One replica alone: it polls every group it wants. What the core uses when
// --redis is not given.
class LocalPollOwnership : public PollOwnership {
 public:
  void Want(const std::string& group) override;
  void Unwant(const std::string& group) override;
  bool ShouldPoll(const std::string& group) const override;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::string> wanted_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_POLL_OWNERSHIP_H_
