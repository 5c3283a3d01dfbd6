#ifndef UPLOADWATCH_SERVICE_METRICA_BACKOFF_H_
#define UPLOADWATCH_SERVICE_METRICA_BACKOFF_H_

#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace uploadwatch {

// A source of uniform numbers in [0, 1) for jitter. A seam so that tests see
// exact delays instead of sleeping on wall time to observe them.
class RandomSource {
 public:
  virtual ~RandomSource() = default;
  virtual double Uniform01() = 0;
};

// absl::BitGen behind a lock. Thread-safe.
class BitGenRandomSource : public RandomSource {
 public:
  double Uniform01() override;

 private:
  absl::Mutex mu_;
  absl::BitGen gen_ ABSL_GUARDED_BY(mu_);
};

// gRPC's connection-backoff algorithm (doc/connection-backoff.md) with numbers
// scaled for calls that last a second, not connections that last hours.
struct BackoffOptions {
  absl::Duration initial = absl::Milliseconds(200);
  double multiplier = 1.6;
  // Each delay is the current base delay times a uniform factor in
  // [1 - jitter, 1 + jitter], so that clients that failed together do not
  // retry together.
  double jitter = 0.2;
  // Neither the base delay nor a jittered delay exceeds this.
  absl::Duration max = absl::Seconds(5);
};

// The delays between the attempts of one request. Thread-compatible.
//
// The n-th call of NextDelay() (n = 0, 1, ...) returns
// min(max, min(max, initial * multiplier^n) * (1 + jitter * U(-1, 1))).
class Backoff {
 public:
  // `random` is not owned and must outlive this object.
  Backoff(const BackoffOptions& options, RandomSource* random);

  absl::Duration NextDelay();

 private:
  BackoffOptions options_;
  RandomSource* random_;
  absl::Duration base_;
};

// When to send the next attempt of a request that failed at `now`, or nullopt
// when that would be at or past `deadline` (the caller then gives up with the
// last error instead of waiting for a retry that cannot finish in time).
// `retry_after` (the upstream's Retry-After) is a lower bound on the wait.
std::optional<absl::Time> NextAttemptTime(
    absl::Time now, absl::Duration backoff_delay,
    std::optional<absl::Duration> retry_after, absl::Time deadline);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICA_BACKOFF_H_
