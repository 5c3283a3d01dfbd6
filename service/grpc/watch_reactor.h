#ifndef UPLOADWATCH_SERVICE_GRPC_WATCH_REACTOR_H_
#define UPLOADWATCH_SERVICE_GRPC_WATCH_REACTOR_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"
#include "service/core/scheduler.h"
#include "service/core/subscriber.h"
#include "service/core/uploading_hub.h"
#include "service/grpc/reactor_tracker.h"
#include "service/grpc/service_deps.h"
#include "service/grpc/watch_admission.h"

namespace uploadwatch {

// One WatchUploading stream, after gRPC's own health Watch: subscribe, send
// the current state first, at most one write in flight with the latest state
// winning, exactly one Finish, and cleanup in OnDone (which deletes it).
//
// On gRPC's raw API: it writes WatchUploadingResponse bytes. Each state's
// message is serialized once (per fan-out thread) into a refcounted slice
// that every watcher's write references: 100 watchers of an uploading
// serialized it 100 times, and copied it into gRPC's buffers as often.
class WatchReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                           public Subscriber {
 public:
  using Deps = ServiceDeps;

  // `request`: the parsed request, or the status to end the stream with
  // (an undecodable request).
  WatchReactor(const Deps& deps, grpc::CallbackServerContext* context,
               const absl::StatusOr<
                   metrika::offline_conversions::v1::WatchUploadingRequest>&
                   request);

  // Subscriber (the hub's fan-out delivers one call at a time; a terminal
  // state is the last).
  void OnState(const UploadingState& state) override;
  void OnError(const absl::Status& status) override;

  // grpc::ServerWriteReactor
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // Ends the stream at its lifetime bound, telling the client to re-watch;
  // before the first state is shown, right after it instead, so that a
  // client always gets a state before being asked to re-watch (clients give
  // up on an UNAVAILABLE that came before any message).
  void Expire();
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // First, so it goes last: nothing of the server is touched after it.
  ReactorTracker::Ticket ticket_;
  const Deps& deps_;
  UploadingHub* const hub_;
  const absl::Time start_;
  WatchAdmission admission_;
  const int32_t counter_id_;
  const int64_t uploading_id_;

  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  // Latest state not yet written, serialized; a newer one replaces it
  // (latest wins). Shared with the other watchers of the uploading.
  std::optional<grpc::Slice> pending_ ABSL_GUARDED_BY(mu_);
  bool pending_terminal_ ABSL_GUARDED_BY(mu_) = false;
  // Ends the stream once nothing is left to write.
  std::optional<absl::Status> pending_error_ ABSL_GUARDED_BY(mu_);
  // The message being written (a reference to pending_'s slice); gRPC reads
  // it until OnWriteDone.
  grpc::ByteBuffer in_flight_ ABSL_GUARDED_BY(mu_);
  int64_t last_version_ ABSL_GUARDED_BY(mu_) = 0;
  // Expire() came before the first state: end right after showing it.
  bool expire_after_first_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_WATCH_REACTOR_H_
