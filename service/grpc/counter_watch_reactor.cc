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
  if (message->synced()) {
    absl::MutexLock lock(&mu_);
    synced_written_ = true;
  }
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

namespace {
absl::Status LifetimeReached() {
  return absl::UnavailableError(
      "this counter watch reached the server's maximum stream lifetime; "
      "call WatchUploadings again with the last resume_token");
}
}  // namespace

void CounterWatchReactor::Expire() {
  {
    absl::MutexLock lock(&mu_);
    if (!synced_written_) {
      expire_when_synced_ = true;  // OnWriteDone of that message ends it
      return;
    }
  }
  watch_.End(LifetimeReached());
}

void CounterWatchReactor::OnWriteDone(bool ok) {
  ReceiveFromGrpc(this);
  watch_.WriteDone(ok);
  bool expire = false;
  {
    absl::MutexLock lock(&mu_);
    if (expire_when_synced_ && synced_written_) {
      expire_when_synced_ = false;
      expire = true;
    }
  }
  // Not under mu_: the watch calls Write and Finish (which take it) under
  // its own lock.
  if (expire) watch_.End(LifetimeReached());
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
