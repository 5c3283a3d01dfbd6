#include "service/grpc/counter_watch_reactor.h"

#include "service/auth/token.h"
#include "service/common/status_details.h"
#include "service/grpc/grpc_hand_off.h"
#include "service/grpc/request_checks.h"

namespace uploadwatch {

CounterWatchReactor::CounterWatchReactor(
    const ServiceDeps& deps, ChangeHistory* history,
    grpc::CallbackServerContext* context,
    const metrika::offline_conversions::v1::WatchUploadingsRequest& request)
    : ticket_(deps.reactors->Enter()),
      deps_(deps),
      start_(deps.clock->Now()),
      admission_(deps, *context),
      counter_id_(request.counter_id()),
      watch_(deps.hub, history, deps.scheduler, deps.clock, this,
             CounterWatch::Options{.bookmark_interval =
                                       deps.limits->bookmark_interval()}) {
  absl::Status status = ValidateWatchUploadings(request);
  if (status.ok()) {
    absl::StatusOr<Credentials> credentials =
        admission_.Admit([this] { Expire(); });
    status = credentials.ok()
                 ? watch_.Start(*credentials, request.counter_id(),
                                request.type(), request.resume_token())
                 : credentials.status();
  }
  // Start() sends nothing when it fails: this is the stream's one Finish.
  if (!status.ok()) Finish(status);
  HandOffToGrpc(this);  // a reaction may come before any operation
}

void CounterWatchReactor::Write(const CounterWatch::Message* message) {
  HandOffToGrpc(this);
  StartWrite(message);
}

void CounterWatchReactor::Finish(const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    final_status_ = status;
  }
  HandOffToGrpc(this);
  grpc::ServerWriteReactor<
      metrika::offline_conversions::v1::WatchUploadingsResponse>::
      Finish(ToGrpcStatus(status));
}

void CounterWatchReactor::Expire() {
  watch_.End(absl::UnavailableError(
      "this counter watch reached the server's maximum stream lifetime; "
      "call WatchUploadings again with the last resume_token"));
}

void CounterWatchReactor::OnWriteDone(bool ok) {
  ReceiveFromGrpc(this);
  watch_.WriteDone(ok);
}

void CounterWatchReactor::OnCancel() {
  ReceiveFromGrpc(this);
  watch_.End(admission_.CancelReason());
}

void CounterWatchReactor::OnDone() {
  ReceiveFromGrpc(this);
  watch_.Stop();
  admission_.Release();
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    status = final_status_;
  }
  deps_.log->Log("WatchUploadings", counter_id_, 0, status,
                 deps_.clock->Now() - start_, admission_.token_fingerprint());
  delete this;
}

}  // namespace uploadwatch
