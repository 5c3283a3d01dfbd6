#include "service/metrica/daily_budget.h"

namespace uploadwatch {

DailyBudget::DailyBudget(Options options, const Clock* clock)
    : options_(options), clock_(clock) {
  absl::MutexLock lock(&mu_);
  resets_at_ = NextReset(clock_->Now());
}

absl::Time DailyBudget::NextReset(absl::Time now) const {
  const absl::CivilDay today =
      absl::ToCivilDay(now, options_.reset_zone);
  return absl::FromCivil(today + 1, options_.reset_zone);
}

void DailyBudget::MaybeResetLocked(absl::Time now) {
  if (now < resets_at_) return;
  used_.clear();
  resets_at_ = NextReset(now);
}

bool DailyBudget::TryCharge(const std::string& token_fingerprint) {
  if (!enabled()) return true;
  absl::MutexLock lock(&mu_);
  MaybeResetLocked(clock_->Now());
  int64_t& used = used_[token_fingerprint];
  if (used >= options_.per_token) return false;
  ++used;
  return true;
}

QuotaUsage DailyBudget::Usage(const std::string& token_fingerprint) {
  absl::MutexLock lock(&mu_);
  MaybeResetLocked(clock_->Now());
  auto it = used_.find(token_fingerprint);
  return QuotaUsage{it == used_.end() ? 0 : it->second, options_.per_token,
                    resets_at_};
}

std::vector<std::pair<std::string, QuotaUsage>> DailyBudget::All() {
  absl::MutexLock lock(&mu_);
  MaybeResetLocked(clock_->Now());
  std::vector<std::pair<std::string, QuotaUsage>> out;
  for (const auto& [fp, used] : used_) {
    out.push_back({fp, QuotaUsage{used, options_.per_token, resets_at_}});
  }
  return out;
}

}  // namespace uploadwatch
