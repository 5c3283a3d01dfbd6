#ifndef UPLOADWATCH_SERVICE_TESTING_SIMULATED_TIME_H_
#define UPLOADWATCH_SERVICE_TESTING_SIMULATED_TIME_H_

#include <cstdint>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/core/executor.h"
#include "service/core/scheduler.h"

namespace uploadwatch::testing {

// One object that is the Clock, the Scheduler and the Executor of a test
// (after Envoy's SimulatedTimeSystem): time stands still until the test
// advances it, and then every task that came due runs, in time order, with
// Now() set to the task's due time. So backoff, pacing and timeouts are
// exact and take no wall time. Tasks run on the thread that calls Advance or
// RunPending, never inline in RunAt/Run. Thread-safe.
class SimulatedTime : public Clock, public Scheduler, public Executor {
 public:
  explicit SimulatedTime(absl::Time start = absl::FromUnixSeconds(1700000000))
      : now_(start) {}

  absl::Time Now() const override;
  TaskId RunAt(absl::Time when, absl::AnyInvocable<void() &&> task) override;
  bool Cancel(TaskId id) override;
  // Executor: a task due now.
  void Run(absl::AnyInvocable<void() &&> task) override;

  // Runs everything due up to Now() + d (tasks scheduled meanwhile included),
  // then leaves the clock at Now() + d.
  void Advance(absl::Duration d);
  // Runs everything due now, until nothing is.
  void RunPending() { Advance(absl::ZeroDuration()); }
  // Tasks not yet run (timers included).
  size_t pending() const;
  // The due time of the earliest pending task (InfiniteFuture if none).
  absl::Time NextDue() const;

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  TaskId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::pair<absl::Time, TaskId>, absl::AnyInvocable<void() &&>> queue_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<TaskId, absl::Time> when_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch::testing

#endif  // UPLOADWATCH_SERVICE_TESTING_SIMULATED_TIME_H_
