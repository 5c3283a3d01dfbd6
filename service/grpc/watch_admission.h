#ifndef UPLOADWATCH_SERVICE_GRPC_WATCH_ADMISSION_H_
#define UPLOADWATCH_SERVICE_GRPC_WATCH_ADMISSION_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "service/auth/token.h"
#include "service/core/scheduler.h"
#include "service/grpc/service_deps.h"

namespace uploadwatch {

// What every watch stream (WatchUploading, WatchUploadings) takes at its
// start and gives back in OnDone: the caller's credentials (request_checks),
// a slot of its connection's watch cap (WatchLimits), and the stream's
// lifetime bound (a timer that calls the stream's `expire` once). One per
// reactor; not thread-safe except that `expire` may run on the scheduler's
// thread until Release() returns.
class WatchAdmission {
 public:
  WatchAdmission(const ServiceDeps& deps,
                 const grpc::CallbackServerContext& context);
  ~WatchAdmission() { Release(); }
  WatchAdmission(const WatchAdmission&) = delete;
  WatchAdmission& operator=(const WatchAdmission&) = delete;

  // The caller's credentials, with the connection's slot held and the
  // lifetime timer armed; otherwise the status to finish the stream with
  // (nothing held).
  absl::StatusOr<Credentials> Admit(absl::AnyInvocable<void()> expire);
  // Cancels the lifetime timer, waiting for an `expire` under way, and frees
  // the slot. Idempotent; call it in OnDone before the reactor goes.
  void Release();

  // Why gRPC cancelled the stream: its OnCancel reports the client's
  // deadline and the client's cancel alike, and the log should say which.
  absl::Status CancelReason() const;
  const std::string& token_fingerprint() const { return token_fingerprint_; }

 private:
  // Lets the lifetime timer reach the stream only until Release().
  struct Alive {
    absl::Mutex mu;
    absl::AnyInvocable<void()> expire ABSL_GUARDED_BY(mu);
  };

  const ServiceDeps& deps_;
  const grpc::CallbackServerContext& context_;
  const absl::Time deadline_;  // the client's; InfiniteFuture if none
  const std::string connection_;
  bool counted_ = false;  // holds a slot in WatchLimits
  std::string token_fingerprint_;
  std::shared_ptr<Alive> alive_;
  Scheduler::TaskId lifetime_timer_ = 0;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_WATCH_ADMISSION_H_
