#include "service/grpc/counter_watch_reactor.h"

#include "service/auth/token.h"
#include "service/common/status_details.h"
#include "service/grpc/request_checks.h"

namespace uploadwatch {

CounterWatchReactor::CounterWatchReactor(
    const ServiceDeps& deps, ChangeHistory* history,
    grpc::CallbackServerContext* context,
    const metrika::offline_conversions::v1::WatchUploadingsRequest& request)
    : ticket_(deps.reactors->Enter()),
      deps_(deps),
      start_(deps.clock->Now()),
      deadline_(context->deadline() ==
                        std::chrono::system_clock::time_point::max()
                    ? absl::InfiniteFuture()
                    : absl::FromChrono(context->deadline())),
      connection_(ConnectionOf(*context)),
      counter_id_(request.counter_id()),
      watch_(deps.hub, history, deps.scheduler, deps.clock, this,
             CounterWatch::Options{
                 .bookmark_interval = deps.limits->bookmark_interval()}) {
  absl::Status status = ValidateWatchUploadings(request);
  absl::StatusOr<Credentials> credentials = absl::UnknownError("");
  if (status.ok()) {
    credentials = CallerCredentials(*context, deps.callers);
    status = credentials.status();
  }
  if (status.ok()) {
    token_fingerprint_ = credentials->fingerprint();
    status = deps.limits->Acquire(connection_);
    counted_ = status.ok();
  }
  if (status.ok()) {
    const absl::Duration lifetime = deps.limits->PickLifetime();
    if (lifetime != absl::InfiniteDuration()) {
      alive_ = std::make_shared<Alive>();
      alive_->reactor = this;
      lifetime_timer_ = deps.scheduler->RunAt(
          deps.clock->Now() + lifetime, [alive = alive_] {
            absl::MutexLock lock(&alive->mu);
            if (alive->reactor != nullptr) alive->reactor->Expire();
          });
    }
    status = watch_.Start(*credentials, request.counter_id(), request.type(),
                          request.resume_token());
  }
  // Start() sends nothing when it fails: this is the stream's one Finish.
  if (!status.ok()) Finish(status);
}

void CounterWatchReactor::Write(const CounterWatch::Message* message) {
  StartWrite(message);
}

void CounterWatchReactor::Finish(const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    final_status_ = status;
  }
  grpc::ServerWriteReactor<
      metrika::offline_conversions::v1::WatchUploadingsResponse>::
      Finish(ToGrpcStatus(status));
}

void CounterWatchReactor::Expire() {
  watch_.End(absl::UnavailableError(
      "this counter watch reached the server's maximum stream lifetime; "
      "call WatchUploadings again with the last resume_token"));
}

void CounterWatchReactor::OnWriteDone(bool ok) { watch_.WriteDone(ok); }

void CounterWatchReactor::OnCancel() {
  // gRPC reports both as a cancel; the log should say which it was.
  watch_.End(absl::Now() >= deadline_
                 ? absl::DeadlineExceededError("the client's deadline passed")
                 : absl::CancelledError("the client cancelled the watch"));
}

void CounterWatchReactor::OnDone() {
  watch_.Stop();
  if (alive_ != nullptr) {
    deps_.scheduler->Cancel(lifetime_timer_);
    absl::MutexLock lock(&alive_->mu);  // waits for a running Expire()
    alive_->reactor = nullptr;
  }
  if (counted_) deps_.limits->Release(connection_);
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    status = final_status_;
  }
  deps_.log->Log("WatchUploadings", counter_id_, 0, status,
                 deps_.clock->Now() - start_, token_fingerprint_);
  delete this;
}

}  // namespace uploadwatch
