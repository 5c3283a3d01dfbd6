#ifndef UPLOADWATCH_SERVICE_CORE_SCHEDULER_H_
#define UPLOADWATCH_SERVICE_CORE_SCHEDULER_H_

#include <cstdint>
#include <map>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/common/clock.h"

namespace uploadwatch {

// Runs short tasks at given times. A seam: pollers wait on it rather than on a
// thread of their own, so ten thousand watches need no ten thousand timers.
// Thread-safe.
class Scheduler {
 public:
  using TaskId = uint64_t;
  virtual ~Scheduler() = default;

  // Runs `task` at (or soon after) `when`, never inline. Tasks must not block:
  // they share one thread.
  virtual TaskId RunAt(absl::Time when, absl::AnyInvocable<void() &&> task) = 0;
  // Drops a task that has not started. Returns false if it already ran, is
  // running, or never existed.
  virtual bool Cancel(TaskId id) = 0;
};

// A Scheduler on one thread of its own. Due times are read from `clock`, the
// same Clock its callers compute them with (a real one in production; tests
// use SimulatedTime instead of this class). Pending tasks are dropped (not
// run) on destruction.
class ThreadScheduler : public Scheduler {
 public:
  // `clock` is not owned and must outlive the scheduler.
  explicit ThreadScheduler(const Clock* clock = Clock::Real());
  ~ThreadScheduler() override;
  ThreadScheduler(const ThreadScheduler&) = delete;
  ThreadScheduler& operator=(const ThreadScheduler&) = delete;

  TaskId RunAt(absl::Time when, absl::AnyInvocable<void() &&> task) override;
  bool Cancel(TaskId id) override;

 private:
  void Loop();

  const Clock* const clock_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  TaskId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Ordered by (time, id): equal times run in submission order.
  std::map<std::pair<absl::Time, TaskId>, absl::AnyInvocable<void() &&>> queue_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<TaskId, absl::Time> when_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_SCHEDULER_H_
