#include "service/core/executor.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

namespace uploadwatch {

ThreadPoolExecutor::ThreadPoolExecutor(int threads, int nice) : nice_(nice) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    threads_.emplace_back([this] { Loop(); });
  }
}

bool ThreadPoolExecutor::nice_applied() const {
  absl::MutexLock lock(&mu_);
  return niced_ == static_cast<int>(threads_.size());
}

ThreadPoolExecutor::~ThreadPoolExecutor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

void ThreadPoolExecutor::Run(absl::AnyInvocable<void() &&> task) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(task));
}

void ThreadPoolExecutor::Loop() {
  // On Linux PRIO_PROCESS with a thread id sets that thread alone (the nice
  // value is a per-thread attribute, setpriority(2)); raising it needs no
  // privilege. The pool creates no threads, so no other thread inherits it.
  const bool niced =
      nice_ == 0 ||
      setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()),
                  getpriority(PRIO_PROCESS, 0) + nice_) == 0;
  if (niced) {
    absl::MutexLock lock(&mu_);
    ++niced_;
  }
  while (true) {
    absl::AnyInvocable<void() &&> task;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      // Drain before stopping: see the class comment.
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    std::move(task)();
  }
}

}  // namespace uploadwatch
