#ifndef UPLOADWATCH_SERVICE_METRICA_DAILY_BUDGET_H_
#define UPLOADWATCH_SERVICE_METRICA_DAILY_BUDGET_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/common/clock.h"

namespace uploadwatch {

// Upstream requests a token may still send today.
struct QuotaUsage {
  int64_t used = 0;    // requests counted in the current day
  int64_t budget = 0;  // requests allowed per day
  absl::Time resets_at;
  int64_t remaining() const { return used >= budget ? 0 : budget - used; }
};

// When Metrica's day of 5000 requests per user ends. Metrica's pages disagree:
// today's quota page says 00:00 GMT
// (https://yandex.com/dev/metrika/en/intro/quotas), an older one midnight
// Moscow time, UTC+3 (https://yandex.com/dev/metrika/doc/api2/intro/quotas.html).
//
// A day here runs from one 00:00 of `zone` to the next, and a request sent in
// the last `carry_over` before that boundary counts in both days. The
// conservative rule is {UTC, 3 h}: every request sent in a Moscow day (21:00
// to 21:00 UTC) and every request sent in a GMT day (00:00 to 00:00 UTC) then
// falls in one counted window (21:00 UTC the day before to 24:00 UTC), so
// whichever page is right, no Metrica day sees more than the budget, and the
// budget never pauses for want of a reset.
struct DailyReset {
  absl::TimeZone zone = absl::UTCTimeZone();
  absl::Duration carry_over = absl::Hours(3);

  static DailyReset Conservative() { return {}; }
  static DailyReset Moscow() {
    return {absl::FixedTimeZone(3 * 60 * 60), absl::ZeroDuration()};
  }
  static DailyReset Utc() { return {absl::UTCTimeZone(), absl::ZeroDuration()}; }
};

// --daily_reset_zone: "conservative" (default), "moscow" (UTC+3, Metrica's
// older pages), "utc" or "gmt" (its current ones). Anything else:
// INVALID_ARGUMENT naming the choices.
absl::StatusOr<DailyReset> ParseDailyReset(absl::string_view name);

// Metrica allows 5000 requests a day per user. This counts every request
// actually sent, retries included, per token fingerprint, against a budget
// kept below that limit so other tools of the same user still have some; and
// remembers when Metrica itself said the day's quota is spent. Thread-safe.
class DailyBudget {
 public:
  struct Options {
    // Requests per token per day; <= 0: unlimited (no accounting either).
    int64_t per_token = 4000;
    DailyReset reset;
  };

  // `clock` is not owned and must outlive this object.
  DailyBudget(Options options, const Clock* clock);

  bool enabled() const { return options_.per_token > 0; }
  // Counts one request for `token_fingerprint`; false (nothing counted) when
  // today's budget is spent, or Metrica said so (MarkSpent).
  bool TryCharge(const std::string& token_fingerprint);
  // Metrica answered that this token's daily quota is spent
  // (quota_requests_by_uid): nothing more is sent for it until `until` (its
  // Retry-After, when it gave one) or the next reset, whichever is first,
  // even with the budget off. Returns when that is.
  absl::Time MarkSpent(const std::string& token_fingerprint,
                       absl::Time until = absl::InfiniteFuture());
  // Until when the token is stopped by MarkSpent(); nullopt if it is not.
  std::optional<absl::Time> StoppedUntil(const std::string& token_fingerprint);
  // When the current day ends (the next reset).
  absl::Time ResetsAt();
  QuotaUsage Usage(const std::string& token_fingerprint);
  // Every token seen since the last reset.
  std::vector<std::pair<std::string, QuotaUsage>> All();

 private:
  struct Count {
    int64_t used = 0;     // in the current day
    int64_t carried = 0;  // sent in its last carry_over: counts in the next too
    // Metrica said the day is spent: nothing is sent before this.
    absl::Time spent_until = absl::InfinitePast();
    bool spent(absl::Time now) const { return now < spent_until; }
  };

  absl::Time NextReset(absl::Time now) const;
  void MaybeResetLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  QuotaUsage UsageLocked(const Count& count, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const Clock* const clock_;
  absl::Mutex mu_;
  absl::Time resets_at_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Count> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICA_DAILY_BUDGET_H_
