#ifndef UPLOADWATCH_SERVICE_CORE_EXECUTOR_H_
#define UPLOADWATCH_SERVICE_CORE_EXECUTOR_H_

#include <deque>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace uploadwatch {

// Runs short tasks soon, on a thread that is not the caller's. A seam: the
// fan-out delivers on it so that the upstream I/O thread never waits on
// thousands of watchers, and tests run it on simulated time. Thread-safe.
class Executor {
 public:
  virtual ~Executor() = default;
  // Runs `task` once, never inline. Tasks must not block.
  virtual void Run(absl::AnyInvocable<void() &&> task) = 0;
};

// An Executor on `threads` threads of its own, FIFO. Tasks still queued on
// destruction are run by the destructor's caller before it joins (so that a
// delivery promised is a delivery made, or found obsolete).
//
// `nice` > 0 lowers the threads' CPU priority (Linux's nice is per thread):
// a large fan-out then takes the cores only when nothing else wants them,
// so calls served on gRPC's threads meanwhile are not queued behind it.
// Best effort: where the system refuses, the threads run at the process's
// priority (see nice_applied()).
class ThreadPoolExecutor : public Executor {
 public:
  explicit ThreadPoolExecutor(int threads, int nice = 0);
  ~ThreadPoolExecutor() override;
  ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
  ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;

  void Run(absl::AnyInvocable<void() &&> task) override;
  // Whether every thread runs at the asked `nice` (false while they start).
  bool nice_applied() const;

 private:
  void Loop();

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  const int nice_;
  int niced_ ABSL_GUARDED_BY(mu_) = 0;  // threads at nice_
  std::vector<std::thread> threads_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_EXECUTOR_H_
