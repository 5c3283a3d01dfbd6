#ifndef UPLOADWATCH_SERVICE_GRPC_COUNTER_WATCH_REACTOR_H_
#define UPLOADWATCH_SERVICE_GRPC_COUNTER_WATCH_REACTOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"
#include "service/core/change_history.h"
#include "service/core/scheduler.h"
#include "service/grpc/counter_watch.h"
#include "service/grpc/reactor_tracker.h"
#include "service/grpc/service_deps.h"
#include "service/grpc/watch_admission.h"

namespace uploadwatch {

// One WatchUploadings stream: the gRPC shell around a CounterWatch (which
// holds the logic). Checks the request and the caller (request_checks),
// holds a slot of --max_watches (through the hub) and of the per-connection
// cap, bounds the stream's lifetime (UNAVAILABLE: resume with the last
// token), one write in flight, exactly one Finish, cleanup in OnDone (which
// deletes it).
//
// On gRPC's raw API: it writes WatchUploadingsResponse bytes, the message's
// own fields followed by its live events' shared serialized bytes, into one
// slice, instead of copying each event into the message's unknown fields
// and serializing the message for every watcher.
class CounterWatchReactor final
    : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
      private CounterWatch::Sink {
 public:
  // `request`: the parsed request, or the status to end the stream with
  // (an undecodable request).
  CounterWatchReactor(
      const ServiceDeps& deps, ChangeHistory* history,
      grpc::CallbackServerContext* context,
      const absl::StatusOr<
          metrika::offline_conversions::v1::WatchUploadingsRequest>& request);

  // grpc::ServerWriteReactor
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // First, so destroyed last: the server outlives every use (ReactorTracker).
  ReactorTracker::Ticket ticket_;
  // CounterWatch::Sink (called under the watch's lock).
  void Write(const CounterWatch::Message* message,
             const std::vector<std::shared_ptr<const std::string>>& events)
      override;
  void Finish(const absl::Status& status) override;
  // The lifetime bound: ends the stream (UNAVAILABLE, resume with the last
  // token), or, before the snapshot's `synced` message is written, right
  // after it, so that the client always has a token to resume with (a
  // stream rotated before its first message leaves it none, and clients
  // give up on an UNAVAILABLE that came before any message).
  void Expire();

  const ServiceDeps& deps_;
  const absl::Time start_;
  WatchAdmission admission_;
  const int32_t counter_id_;
  CounterWatch watch_;

  // The write in flight (Write is called one at a time, under the
  // watch's lock, and the next only after OnWriteDone).
  grpc::ByteBuffer in_flight_;

  absl::Mutex mu_;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
  // A message with `synced` has been handed to gRPC.
  bool synced_written_ ABSL_GUARDED_BY(mu_) = false;
  // Expire() came first: end once that message's write is done.
  bool expire_when_synced_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_COUNTER_WATCH_REACTOR_H_
