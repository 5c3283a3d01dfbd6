#include "service/redis/shared_upstream_permits.h"

#include <memory>
#include <utility>

namespace uploadwatch::redis {
namespace {

class SlotPermit : public UpstreamPermits::Permit {
 public:
  explicit SlotPermit(ParallelSlot slot) : slot_(std::move(slot)) {}

 private:
  ParallelSlot slot_;  // released when destroyed
};

}  // namespace

void SharedUpstreamPermits::Acquire(const std::string& token_fingerprint,
                                    absl::Time deadline, Done done) {
  cap_->Acquire(
      token_fingerprint, deadline,
      [budget = budget_, token_fingerprint, done = std::move(done)](
          absl::StatusOr<ParallelSlot> slot) mutable {
        if (!slot.ok()) {
          done(slot.status());
          return;
        }
        auto held = std::make_shared<ParallelSlot>(*std::move(slot));
        budget->TryCharge(token_fingerprint, [held, done = std::move(done)](
                                                  BudgetCharge charge) mutable {
          if (!charge.granted) {
            held->Release();
            done(absl::ResourceExhaustedError(
                "the shared daily budget of this token is spent"));
            return;
          }
          done(std::unique_ptr<UpstreamPermits::Permit>(
              std::make_unique<SlotPermit>(std::move(*held))));
        });
      });
}

}  // namespace uploadwatch::redis
