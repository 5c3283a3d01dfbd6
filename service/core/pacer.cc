#include "service/core/pacer.h"

#include <algorithm>

#include "service/common/status_details.h"
#include "service/metrica/upstream_status.h"

namespace uploadwatch {

Pacer::Pacer(Options options, QuotaView quota)
    : options_(options), quota_(std::move(quota)) {
  random_ = options_.random;
  if (random_ == nullptr) {
    own_random_ = std::make_unique<BitGenRandomSource>();
    random_ = own_random_.get();
  }
}

BackoffOptions Pacer::BackoffFor() const {
  BackoffOptions b;
  b.initial = options_.poll_interval;
  b.multiplier = 2;
  b.jitter = options_.jitter;
  b.max = options_.max_backoff;
  return b;
}

absl::Time Pacer::NextPoll(const GroupKey& key, const absl::Status& status,
                           absl::Time now, size_t token_groups) {
  absl::MutexLock lock(&mu_);
  absl::Duration delay = options_.poll_interval;
  const UpstreamOutcome outcome = ClassifyUpstream(status);
  TokenPause& pause = pauses_[key.token_fingerprint];
  switch (outcome) {
    case UpstreamOutcome::kOk:
    case UpstreamOutcome::kPermanent:
    case UpstreamOutcome::kCancelled:
      backoff_.erase(key);
      pause.backoff.reset();
      break;
    case UpstreamOutcome::kTransient:
    case UpstreamOutcome::kLocalBudgetSpent:
    case UpstreamOutcome::kUpstreamQuota: {
      // The fetcher has already retried: wait longer each time so that a
      // struggling Metrica is not hammered, but at least as long as asked.
      auto& b = backoff_[key];
      if (b == nullptr) b = std::make_unique<Backoff>(BackoffFor(), random_);
      delay = b->NextDelay();
      const std::optional<absl::Duration> asked = GetRetryDelay(status);
      if (asked) delay = std::max(delay, *asked);
      if (outcome == UpstreamOutcome::kUpstreamQuota) {
        // Metrica's quota is per user: every poll of this token would meet
        // the same answer, so the whole token waits.
        if (pause.backoff == nullptr) {
          pause.backoff = std::make_unique<Backoff>(BackoffFor(), random_);
        }
        absl::Duration wait = pause.backoff->NextDelay();
        if (asked) wait = std::max(wait, *asked);
        pause.until = std::max(pause.until, now + wait);
      }
      break;
    }
  }
  // Spread what is left of today's budget over what is watched until the
  // reset: G groups polling every I spend G * left / I requests.
  if (quota_) {
    if (std::optional<QuotaUsage> usage = quota_(key.token_fingerprint)) {
      const absl::Duration left = usage->resets_at - now;
      const double spendable =
          usage->remaining() - options_.budget_reserve * usage->budget;
      size_t all_groups = token_groups;
      if (options_.shared_groups) {
        if (std::optional<size_t> shared =
                options_.shared_groups(key.token_fingerprint)) {
          all_groups = std::max(all_groups, *shared);
        }
      }
      const double groups = static_cast<double>(std::max<size_t>(all_groups, 1));
      if (spendable < 1) {
        delay = std::max(delay, left);  // nothing left to poll with today
      } else if (left > absl::ZeroDuration()) {
        delay = std::max(delay, left * (groups / spendable));
      }
    }
  }
  return std::max(now + delay, pause.until);
}

absl::Time Pacer::PausedUntil(const std::string& fingerprint) const {
  absl::MutexLock lock(&mu_);
  auto it = pauses_.find(fingerprint);
  return it == pauses_.end() ? absl::InfinitePast() : it->second.until;
}

void Pacer::Forget(const GroupKey& key) {
  absl::MutexLock lock(&mu_);
  backoff_.erase(key);
}

void Pacer::Sweep(absl::Time now) {
  absl::MutexLock lock(&mu_);
  for (auto it = pauses_.begin(); it != pauses_.end();) {
    if (it->second.until < now && it->second.backoff == nullptr) {
      pauses_.erase(it++);
    } else {
      ++it;
    }
  }
}

}  // namespace uploadwatch
