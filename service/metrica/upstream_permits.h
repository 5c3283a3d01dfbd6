#ifndef UPLOADWATCH_SERVICE_METRICA_UPSTREAM_PERMITS_H_
#define UPLOADWATCH_SERVICE_METRICA_UPSTREAM_PERMITS_H_

#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace uploadwatch {

// Quota shared with other processes, asked by the fetcher after its own
// QuotaGuard and before each attempt: a parallel slot for the token and one
// request of its daily budget (several replicas on one Redis:
// service/redis/shared_upstream_permits.h). Without one the fetcher's local
// QuotaGuard and DailyBudget are the whole quota.
//
// Thread-safe. Acquire never blocks its caller (the fetcher's loop thread);
// `done` runs exactly once, on a thread of the implementation's choosing, and
// must not block.
class UpstreamPermits {
 public:
  // Held while the attempt is at Metrica; destroying it gives the slot back
  // (the budget charge stays spent).
  class Permit {
   public:
    virtual ~Permit() = default;
  };
  // A permit, or RESOURCE_EXHAUSTED (the shared daily budget is spent), or
  // DEADLINE_EXCEEDED (no slot before the deadline).
  using Done = absl::AnyInvocable<void(absl::StatusOr<std::unique_ptr<Permit>>)>;

  virtual ~UpstreamPermits() = default;
  virtual void Acquire(const std::string& token_fingerprint,
                       absl::Time deadline, Done done) = 0;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICA_UPSTREAM_PERMITS_H_
