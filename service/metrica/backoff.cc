#include "service/metrica/backoff.h"

#include <algorithm>

namespace uploadwatch {

double BitGenRandomSource::Uniform01() {
  absl::MutexLock lock(&mu_);
  return absl::Uniform(gen_, 0.0, 1.0);
}

Backoff::Backoff(const BackoffOptions& options, RandomSource* random)
    : options_(options),
      random_(random),
      base_(std::min(options.initial, options.max)) {}

absl::Duration Backoff::NextDelay() {
  const double factor =
      1.0 + options_.jitter * (2.0 * random_->Uniform01() - 1.0);
  const absl::Duration delay = std::min(options_.max, base_ * factor);
  base_ = std::min(options_.max, base_ * options_.multiplier);
  return std::max(delay, absl::ZeroDuration());
}

std::optional<absl::Time> NextAttemptTime(
    absl::Time now, absl::Duration backoff_delay,
    std::optional<absl::Duration> retry_after, absl::Time deadline) {
  absl::Duration wait = backoff_delay;
  if (retry_after.has_value()) wait = std::max(wait, *retry_after);
  const absl::Time at = now + wait;
  if (at >= deadline) return std::nullopt;
  return at;
}

}  // namespace uploadwatch
