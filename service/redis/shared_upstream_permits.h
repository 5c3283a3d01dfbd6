#ifndef UPLOADWATCH_SERVICE_REDIS_SHARED_UPSTREAM_PERMITS_H_
#define UPLOADWATCH_SERVICE_REDIS_SHARED_UPSTREAM_PERMITS_H_

#include <string>

#include "service/metrica/upstream_permits.h"
#include "service/redis/shared_daily_budget.h"
#include "service/redis/shared_parallel_cap.h"

namespace uploadwatch::redis {

// The fetcher's shared quota across replicas: a slot of SharedParallelCap,
// then one request of SharedDailyBudget (the slot goes back when the budget
// is spent). Each part's fallback contract holds while Redis is unreachable:
// a local cap of --redis_fallback_parallel and this replica's budget share,
// decided at once. Callbacks run on the Redis loop thread. Thread-safe.
class SharedUpstreamPermits : public UpstreamPermits {
 public:
  // Neither owned; both must outlive this object and its permits.
  SharedUpstreamPermits(SharedParallelCap* cap, SharedDailyBudget* budget)
      : cap_(cap), budget_(budget) {}

  void Acquire(const std::string& token_fingerprint, absl::Time deadline,
               Done done) override;

 private:
  SharedParallelCap* const cap_;
  SharedDailyBudget* const budget_;
};

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_SHARED_UPSTREAM_PERMITS_H_
