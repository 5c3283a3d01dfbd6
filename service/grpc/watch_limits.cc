#include "service/grpc/watch_limits.h"

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"

namespace uploadwatch {

absl::Status WatchLimits::Acquire(const std::string& connection) {
  absl::MutexLock lock(&mu_);
  int& open = open_[connection];
  if (options_.max_per_connection > 0 && open >= options_.max_per_connection) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "this connection already has ", open,
        " open watches, the limit per connection; spread watches over more "
        "channels, or close some"));
  }
  ++open;
  return absl::OkStatus();
}

void WatchLimits::Release(const std::string& connection) {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(connection);
  if (it == open_.end()) return;
  if (--it->second <= 0) open_.erase(it);
}

absl::Duration WatchLimits::PickLifetime() const {
  if (options_.max_lifetime == absl::InfiniteDuration()) {
    return absl::InfiniteDuration();
  }
  thread_local absl::BitGen random;
  return options_.max_lifetime * absl::Uniform(random, 0.9, 1.0);
}

}  // namespace uploadwatch
