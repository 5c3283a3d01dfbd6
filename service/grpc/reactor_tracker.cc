#include "service/grpc/reactor_tracker.h"

namespace uploadwatch {

ReactorTracker::Ticket& ReactorTracker::Ticket::operator=(
    Ticket&& other) noexcept {
  if (this != &other) {
    Release();
    tracker_ = other.tracker_;
    other.tracker_ = nullptr;
  }
  return *this;
}

void ReactorTracker::Ticket::Release() {
  if (tracker_ == nullptr) return;
  ReactorTracker* tracker = tracker_;
  tracker_ = nullptr;
  tracker->Leave();
}

ReactorTracker::Ticket ReactorTracker::Enter() {
  absl::MutexLock lock(&mu_);
  ++live_;
  return Ticket(this);
}

void ReactorTracker::Leave() {
  absl::MutexLock lock(&mu_);
  --live_;
}

void ReactorTracker::WaitForNone() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* live) { return *live == 0; }, &live_));
}

int ReactorTracker::live() const {
  absl::MutexLock lock(&mu_);
  return live_;
}

}  // namespace uploadwatch
