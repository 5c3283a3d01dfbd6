#include "service/grpc/watch_admission.h"

#include <chrono>
#include <utility>

#include "service/grpc/request_checks.h"

namespace uploadwatch {
namespace {

absl::Time DeadlineOf(const grpc::CallbackServerContext& context) {
  return context.deadline() == std::chrono::system_clock::time_point::max()
             ? absl::InfiniteFuture()
             : absl::FromChrono(context.deadline());
}

}  // namespace

WatchAdmission::WatchAdmission(const ServiceDeps& deps,
                               const grpc::CallbackServerContext& context)
    : deps_(deps),
      context_(context),
      deadline_(DeadlineOf(context)),
      connection_(ConnectionOf(context)) {}

absl::StatusOr<Credentials> WatchAdmission::Admit(
    absl::AnyInvocable<void()> expire) {
  absl::StatusOr<Credentials> credentials =
      CallerCredentials(context_, deps_.callers);
  if (!credentials.ok()) return credentials.status();
  token_fingerprint_ = credentials->fingerprint();
  if (absl::Status s = deps_.limits->Acquire(connection_); !s.ok()) return s;
  counted_ = true;
  const absl::Duration lifetime = deps_.limits->PickLifetime();
  if (lifetime != absl::InfiniteDuration()) {
    alive_ = std::make_shared<Alive>();
    {
      absl::MutexLock lock(&alive_->mu);
      alive_->expire = std::move(expire);
    }
    lifetime_timer_ =
        deps_.scheduler->RunAt(deps_.clock->Now() + lifetime, [alive = alive_] {
          absl::MutexLock lock(&alive->mu);
          if (alive->expire) std::exchange(alive->expire, nullptr)();
        });
  }
  return credentials;
}

void WatchAdmission::Release() {
  if (alive_ != nullptr) {
    deps_.scheduler->Cancel(lifetime_timer_);
    {
      absl::MutexLock lock(&alive_->mu);  // waits for a running expire
      alive_->expire = nullptr;
    }
    // Outside the lock: with the timer cancelled or done, this may be the
    // last reference, and a mutex must not be destroyed while held.
    alive_.reset();
  }
  if (counted_) {
    deps_.limits->Release(connection_);
    counted_ = false;
  }
}

absl::Status WatchAdmission::CancelReason() const {
  return absl::Now() >= deadline_
             ? absl::DeadlineExceededError("the client's deadline passed")
             : absl::CancelledError("the client cancelled the watch");
}

}  // namespace uploadwatch
