#ifndef UPLOADWATCH_SERVICE_REDIS_SHARED_USAGE_CLIENT_H_
#define UPLOADWATCH_SERVICE_REDIS_SHARED_USAGE_CLIENT_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "service/metrica/metrica_client.h"

namespace uploadwatch::redis {

// A replica's upstream client on Redis: every request goes to `inner`
// unchanged; DailyUsage and AllDailyUsage report a token's use over all
// replicas (SharedDailyBudget::Usage) where it is known and above this
// replica's own count. What reads them (the Pacer, through CallerAdmission;
// the quota gauges) then sees one day of the token spent by N replicas, not
// this replica's part of it: polls are stretched to what is left of the
// shared budget, instead of each replica pacing against a whole budget of its
// own until the shared one refuses. Choose it whenever --redis is given.
//
// The shared figure is the one Redis gave at its last answer to this replica
// (plus what it spent alone since): it lags by what the others spent since
// then, at most until this replica's next request. Thread-safe.
class SharedUsageMetricaClient : public MetricaClient {
 public:
  // Today's shared use of a token by fingerprint; nullopt if not known.
  using SharedView =
      std::function<std::optional<QuotaUsage>(const std::string& fingerprint)>;

  SharedUsageMetricaClient(std::unique_ptr<MetricaClient> inner,
                           SharedView shared)
      : inner_(std::move(inner)), shared_(std::move(shared)) {}

  RequestId GetUploading(absl::string_view token, int32_t counter_id,
                         int64_t uploading_id, absl::Time deadline,
                         GetCallback done) override {
    return inner_->GetUploading(token, counter_id, uploading_id, deadline,
                                std::move(done));
  }
  RequestId ListUploadings(absl::string_view token, const ListParams& params,
                           absl::Time deadline, ListCallback done) override {
    return inner_->ListUploadings(token, params, deadline, std::move(done));
  }
  void Cancel(RequestId id) override { inner_->Cancel(id); }

  // nullopt when `inner` keeps no budget (--daily_budget=0): then nothing is
  // paced, shared or not.
  std::optional<QuotaUsage> DailyUsage(
      const std::string& token_fingerprint) override;
  std::vector<std::pair<std::string, QuotaUsage>> AllDailyUsage() override;

 private:
  QuotaUsage Merged(const std::string& fingerprint, QuotaUsage local) const;

  const std::unique_ptr<MetricaClient> inner_;
  const SharedView shared_;
};

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_SHARED_USAGE_CLIENT_H_
