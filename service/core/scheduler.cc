#include "service/core/scheduler.h"


namespace uploadwatch {

ThreadScheduler::ThreadScheduler(const Clock* clock)
    : clock_(clock), thread_([this] { Loop(); }) {}

ThreadScheduler::~ThreadScheduler() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

Scheduler::TaskId ThreadScheduler::RunAt(absl::Time when,
                                         absl::AnyInvocable<void() &&> task) {
  absl::MutexLock lock(&mu_);
  const TaskId id = next_id_++;
  queue_.emplace(std::make_pair(when, id), std::move(task));
  when_.emplace(id, when);
  return id;
}

bool ThreadScheduler::Cancel(TaskId id) {
  absl::MutexLock lock(&mu_);
  auto it = when_.find(id);
  if (it == when_.end()) return false;
  queue_.erase(std::make_pair(it->second, id));
  when_.erase(it);
  return true;
}

void ThreadScheduler::Loop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    // Wakes on stop, on a new earliest task, or when the earliest is due.
    const absl::Time next =
        queue_.empty() ? absl::InfiniteFuture() : queue_.begin()->first.first;
    auto ready = [this, next]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ ||
             (!queue_.empty() && queue_.begin()->first.first < next);
    };
    // The wait is measured on the clock the due times come from.
    mu_.AwaitWithTimeout(absl::Condition(&ready), next - clock_->Now());
    if (stopping_) return;
    if (queue_.empty() || queue_.begin()->first.first > clock_->Now()) {
      continue;
    }
    auto node = queue_.extract(queue_.begin());
    when_.erase(node.key().second);
    // Run without the lock: tasks schedule and cancel other tasks.
    mu_.Unlock();
    std::move(node.mapped())();
    mu_.Lock();
  }
}

}  // namespace uploadwatch
