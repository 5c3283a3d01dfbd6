#include "service/metrica/daily_budget.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace uploadwatch {

absl::StatusOr<DailyReset> ParseDailyReset(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower == "conservative") return DailyReset::Conservative();
  if (lower == "moscow" || lower == "msk") return DailyReset::Moscow();
  if (lower == "utc" || lower == "gmt") return DailyReset::Utc();
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown daily reset zone \"", name,
      "\": expected conservative (00:00 UTC, counting the 3 h before it in "
      "both days), moscow (00:00 UTC+3) or utc"));
}

DailyBudget::DailyBudget(Options options, const Clock* clock)
    : options_(options), clock_(clock) {
  absl::MutexLock lock(&mu_);
  resets_at_ = NextReset(clock_->Now());
}

absl::Time DailyBudget::NextReset(absl::Time now) const {
  const absl::CivilDay today = absl::ToCivilDay(now, options_.reset.zone);
  return absl::FromCivil(today + 1, options_.reset.zone);
}

void DailyBudget::MaybeResetLocked(absl::Time now) {
  if (now < resets_at_) return;
  const absl::Time next = NextReset(now);
  // Only the day right after may inherit: after a quiet day, nothing carries.
  const bool adjacent = next - resets_at_ <= absl::Hours(25);
  for (auto it = counts_.begin(); it != counts_.end();) {
    Count& count = it->second;
    count = Count{adjacent ? count.carried : 0, 0};
    if (count.used == 0) {
      counts_.erase(it++);
    } else {
      ++it;
    }
  }
  resets_at_ = next;
}

bool DailyBudget::TryCharge(const std::string& token_fingerprint) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  MaybeResetLocked(now);
  if (!enabled()) {
    auto it = counts_.find(token_fingerprint);
    return it == counts_.end() || !it->second.spent(now);
  }
  Count& count = counts_[token_fingerprint];
  if (count.spent(now) || count.used >= options_.per_token) return false;
  ++count.used;
  if (now >= resets_at_ - options_.reset.carry_over) ++count.carried;
  return true;
}

absl::Time DailyBudget::MarkSpent(const std::string& token_fingerprint,
                                  absl::Time until) {
  absl::MutexLock lock(&mu_);
  MaybeResetLocked(clock_->Now());
  absl::Time& spent_until = counts_[token_fingerprint].spent_until;
  spent_until = std::max(spent_until, std::min(until, resets_at_));
  return spent_until;
}

std::optional<absl::Time> DailyBudget::StoppedUntil(
    const std::string& token_fingerprint) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  MaybeResetLocked(now);
  auto it = counts_.find(token_fingerprint);
  if (it == counts_.end() || !it->second.spent(now)) return std::nullopt;
  return it->second.spent_until;
}

absl::Time DailyBudget::ResetsAt() {
  absl::MutexLock lock(&mu_);
  MaybeResetLocked(clock_->Now());
  return resets_at_;
}

QuotaUsage DailyBudget::UsageLocked(const Count& count, absl::Time now) const {
  const int64_t budget = std::max<int64_t>(options_.per_token, 0);
  return QuotaUsage{count.spent(now) ? std::max(count.used, budget) : count.used,
                    budget, resets_at_};
}

QuotaUsage DailyBudget::Usage(const std::string& token_fingerprint) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  MaybeResetLocked(now);
  auto it = counts_.find(token_fingerprint);
  return UsageLocked(it == counts_.end() ? Count{} : it->second, now);
}

std::vector<std::pair<std::string, QuotaUsage>> DailyBudget::All() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  MaybeResetLocked(now);
  std::vector<std::pair<std::string, QuotaUsage>> out;
  if (!enabled()) return out;
  for (const auto& [fp, count] : counts_) {
    out.push_back({fp, UsageLocked(count, now)});
  }
  return out;
}

}  // namespace uploadwatch
