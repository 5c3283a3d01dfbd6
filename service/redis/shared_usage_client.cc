#include "service/redis/shared_usage_client.h"

#include <algorithm>

namespace uploadwatch::redis {

QuotaUsage SharedUsageMetricaClient::Merged(const std::string& fingerprint,
                                            QuotaUsage local) const {
  std::optional<QuotaUsage> shared = shared_ ? shared_(fingerprint) : std::nullopt;
  // Both count the same day (SharedBudgetOptions::reset is the local
  // budget's); around a reset one may have moved on first: keep the local
  // figure for that moment.
  if (shared && shared->resets_at == local.resets_at) {
    local.used = std::max(local.used, shared->used);
  }
  return local;
}

std::optional<QuotaUsage> SharedUsageMetricaClient::DailyUsage(
    const std::string& token_fingerprint) {
  std::optional<QuotaUsage> local = inner_->DailyUsage(token_fingerprint);
  if (!local) return std::nullopt;
  return Merged(token_fingerprint, *local);
}

std::vector<std::pair<std::string, QuotaUsage>>
SharedUsageMetricaClient::AllDailyUsage() {
  std::vector<std::pair<std::string, QuotaUsage>> all = inner_->AllDailyUsage();
  for (auto& [fingerprint, usage] : all) usage = Merged(fingerprint, usage);
  return all;
}

}  // namespace uploadwatch::redis
