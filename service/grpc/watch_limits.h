#ifndef UPLOADWATCH_SERVICE_GRPC_WATCH_LIMITS_H_
#define UPLOADWATCH_SERVICE_GRPC_WATCH_LIMITS_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace uploadwatch {

// Per-connection limits on WatchUploading streams (the process-wide cap is
// the WatchHub's). Thread-safe.
class WatchLimits {
 public:
  struct Options {
    // Open watches one client connection may hold; one runaway dashboard
    // must not take the whole server's share. <= 0: no cap.
    int max_per_connection = 1000;
    // Upper bound of a watch's lifetime, so load balancers can rebalance
    // long-lived streams; each watch gets a random 90-100 % of it, so that
    // watches opened together do not all reconnect together.
    // InfiniteDuration: no bound.
    absl::Duration max_lifetime = absl::Minutes(30);
    // A WatchUploadings stream without a message for this long gets an
    // empty one with a fresh resume token (a bookmark).
    absl::Duration bookmark_interval = absl::Seconds(60);
  };

  explicit WatchLimits(Options options) : options_(options) {}

  // Counts a watch on `connection` (gRPC's peer string, e.g.
  // "ipv4:127.0.0.1:53210", one per connection). RESOURCE_EXHAUSTED with an
  // actionable message beyond the cap.
  absl::Status Acquire(const std::string& connection);
  void Release(const std::string& connection);

  // A lifetime for a new watch, jittered (InfiniteDuration if unbounded).
  absl::Duration PickLifetime() const;
  absl::Duration bookmark_interval() const {
    return options_.bookmark_interval;
  }

 private:
  const Options options_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> open_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_WATCH_LIMITS_H_
