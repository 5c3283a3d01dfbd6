#ifndef UPLOADWATCH_SERVICE_METRICA_DAILY_BUDGET_H_
#define UPLOADWATCH_SERVICE_METRICA_DAILY_BUDGET_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/common/clock.h"

namespace uploadwatch {

// Upstream requests a token may still send today.
struct QuotaUsage {
  int64_t used = 0;    // requests sent since the last reset
  int64_t budget = 0;  // requests allowed per day
  absl::Time resets_at;
  int64_t remaining() const { return used >= budget ? 0 : budget - used; }
};

// Metrica allows 5000 requests a day per user, reset at 00:00 (Moscow time,
// where Metrica runs). This counts every request actually sent, retries
// included, per token fingerprint, against a budget kept below that limit so
// other tools of the same user still have some. Thread-safe.
class DailyBudget {
 public:
  struct Options {
    // Requests per token per day; <= 0: unlimited (no accounting either).
    int64_t per_token = 4000;
    // Where "00:00" is: Moscow, UTC+3 all year.
    absl::TimeZone reset_zone = absl::FixedTimeZone(3 * 60 * 60);
  };

  // `clock` is not owned and must outlive this object.
  DailyBudget(Options options, const Clock* clock);

  bool enabled() const { return options_.per_token > 0; }
  // Counts one request for `token_fingerprint`; false (nothing counted) when
  // today's budget is spent.
  bool TryCharge(const std::string& token_fingerprint);
  QuotaUsage Usage(const std::string& token_fingerprint);
  // Every token seen since the last reset.
  std::vector<std::pair<std::string, QuotaUsage>> All();

 private:
  absl::Time NextReset(absl::Time now) const;
  void MaybeResetLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const Clock* const clock_;
  absl::Mutex mu_;
  absl::Time resets_at_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> used_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICA_DAILY_BUDGET_H_
