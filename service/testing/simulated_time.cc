#include "service/testing/simulated_time.h"

#include <algorithm>

namespace uploadwatch::testing {

absl::Time SimulatedTime::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

Scheduler::TaskId SimulatedTime::RunAt(absl::Time when,
                                       absl::AnyInvocable<void() &&> task) {
  absl::MutexLock lock(&mu_);
  const TaskId id = next_id_++;
  // A time in the past is due now, after what is already due.
  when = std::max(when, now_);
  queue_.emplace(std::make_pair(when, id), std::move(task));
  when_.emplace(id, when);
  return id;
}

bool SimulatedTime::Cancel(TaskId id) {
  absl::MutexLock lock(&mu_);
  auto it = when_.find(id);
  if (it == when_.end()) return false;
  queue_.erase(std::make_pair(it->second, id));
  when_.erase(it);
  return true;
}

void SimulatedTime::Run(absl::AnyInvocable<void() &&> task) {
  RunAt(absl::InfinitePast(), std::move(task));
}

void SimulatedTime::Advance(absl::Duration d) {
  mu_.Lock();
  const absl::Time until = now_ + d;
  while (!queue_.empty() && queue_.begin()->first.first <= until) {
    auto node = queue_.extract(queue_.begin());
    when_.erase(node.key().second);
    now_ = std::max(now_, node.key().first);
    mu_.Unlock();
    std::move(node.mapped())();
    mu_.Lock();
  }
  now_ = until;
  mu_.Unlock();
}

size_t SimulatedTime::pending() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

absl::Time SimulatedTime::NextDue() const {
  absl::MutexLock lock(&mu_);
  return queue_.empty() ? absl::InfiniteFuture() : queue_.begin()->first.first;
}

}  // namespace uploadwatch::testing
