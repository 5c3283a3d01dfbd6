#ifndef UPLOADWATCH_SERVICE_CORE_POLL_OWNERSHIP_H_
#define UPLOADWATCH_SERVICE_CORE_POLL_OWNERSHIP_H_

#include "service/core/watch_target.h"

namespace uploadwatch {

// Whether this process is the one that polls a group now. The seam for
// several replicas sharing the work (issue 12: a lease in Redis); one process
// alone always polls. Must answer at once (no I/O on the caller's thread).
// Thread-safe.
class PollOwnership {
 public:
  virtual ~PollOwnership() = default;
  virtual bool ShouldPoll(const GroupKey& group) = 0;
};

// One process: it polls everything it watches.
class LocalPollOwnership : public PollOwnership {
 public:
  bool ShouldPoll(const GroupKey&) override { return true; }
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_POLL_OWNERSHIP_H_
