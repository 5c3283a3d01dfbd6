#ifndef UPLOADWATCH_SERVICE_CORE_PACER_H_
#define UPLOADWATCH_SERVICE_CORE_PACER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/core/watch_target.h"
#include "service/metrica/backoff.h"
#include "service/metrica/daily_budget.h"

namespace uploadwatch {

// When a group polls next. From the poll interval; after transient errors a
// Backoff with jitter (from the interval up to max_backoff; a RetryInfo is a
// lower bound); after Metrica's own quota error a pause of every group of the
// token, growing while it persists; and stretched so that the token's groups
// leave its daily budget's reserve untouched until the reset. It decides; the
// GroupPoller acts. Thread-safe.
class Pacer {
 public:
  // Today's use of a token's daily budget (by fingerprint); nullopt if none.
  using QuotaView =
      std::function<std::optional<QuotaUsage>(const std::string& fingerprint)>;
  // How many groups of a token poll over all replicas (PollOwnership::
  // TokenGroups); nullopt: unknown, the caller's count stands.
  using GroupCountView =
      std::function<std::optional<size_t>(const std::string& fingerprint)>;
  struct Options {
    absl::Duration poll_interval = absl::Seconds(30);
    absl::Duration max_backoff = absl::Minutes(5);
    // Share of the daily budget kept for callers' Gets and Lists.
    double budget_reserve = 0.1;
    double jitter = 0.2;
    // Not owned; default: absl::BitGen.
    RandomSource* random = nullptr;
    // Groups of a token over all replicas; none: this replica's count only.
    // With a shared budget (N replicas spend one day of a token) the budget
    // must be spread over every replica's groups, or each replica paces as
    // if its groups were all there are and they spend N times their share.
    GroupCountView shared_groups;
  };

  Pacer(Options options, QuotaView quota);

  // The earliest time group `key` may poll again after a round that ended
  // with `status` at `now`; `token_groups`: the token's groups that poll
  // here (the shared count is used when it is higher).
  absl::Time NextPoll(const GroupKey& key, const absl::Status& status,
                      absl::Time now, size_t token_groups);
  // Until when every poll of the token waits (InfinitePast if it does not).
  absl::Time PausedUntil(const std::string& fingerprint) const;
  // The group stopped polling: its backoff is forgotten.
  void Forget(const GroupKey& key);
  // Drops pauses that are over.
  void Sweep(absl::Time now);

 private:
  struct TokenPause {
    absl::Time until = absl::InfinitePast();
    std::unique_ptr<Backoff> backoff;  // while Metrica keeps refusing
  };
  BackoffOptions BackoffFor() const;

  const Options options_;
  const QuotaView quota_;
  std::unique_ptr<RandomSource> own_random_;
  RandomSource* random_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<GroupKey, std::unique_ptr<Backoff>> backoff_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, TokenPause> pauses_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_PACER_H_
