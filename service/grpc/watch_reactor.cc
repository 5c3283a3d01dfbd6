#include "service/grpc/watch_reactor.h"

#include "service/auth/token.h"
#include "service/common/status_details.h"
#include "service/grpc/uploading_service_impl.h"

namespace uploadwatch {
namespace {

using ::metrika::offline_conversions::v1::WatchUploadingResponse;

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t seconds = absl::ToUnixSeconds(t);
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
}

}  // namespace

WatchReactor::WatchReactor(
    WatchHub* hub, const RpcLog* log, Clock* clock,
    grpc::CallbackServerContext* context,
    const metrika::offline_conversions::v1::WatchUploadingRequest& request,
    const std::string& default_token)
    : hub_(hub),
      log_(log),
      clock_(clock),
      start_(clock->Now()),
      counter_id_(request.counter_id()),
      uploading_id_(request.uploading_id()) {
  absl::Status status = ValidateIds(counter_id_, uploading_id_);
  if (status.ok()) {
    absl::StatusOr<Credentials> credentials =
        ResolveCredentials(AuthorizationOf(*context), default_token);
    if (credentials.ok()) {
      token_fingerprint_ = credentials->fingerprint();
      // Not under mu_: the hub may call OnState before Subscribe returns.
      status = hub_->Subscribe(*credentials, counter_id_, uploading_id_, this);
    } else {
      status = credentials.status();
    }
  }
  if (!status.ok()) {
    absl::MutexLock lock(&mu_);
    FinishLocked(status);
  }
}

void WatchReactor::OnState(const UploadingState& state, bool terminal) {
  absl::MutexLock lock(&mu_);
  if (finished_ || state.version <= last_version_) return;  // no duplicates
  last_version_ = state.version;
  WatchUploadingResponse message;
  *message.mutable_uploading() = state.uploading;
  message.set_version(state.version);
  SetTime(state.observe_time, message.mutable_observe_time());
  SetTime(state.check_time, message.mutable_check_time());
  message.set_terminal(terminal);
  pending_ = std::move(message);
  MaybeWriteLocked();
}

void WatchReactor::OnError(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  pending_error_ = status;
  MaybeWriteLocked();
}

void WatchReactor::MaybeWriteLocked() {
  if (finished_ || write_in_flight_) return;
  if (pending_) {
    in_flight_ = std::move(*pending_);
    pending_.reset();
    write_in_flight_ = true;
    if (in_flight_.terminal()) {
      // The last message and OK in one batch.
      finished_ = true;
      final_status_ = absl::OkStatus();
      StartWriteAndFinish(&in_flight_, grpc::WriteOptions(), grpc::Status::OK);
    } else {
      StartWrite(&in_flight_);
    }
    return;
  }
  if (pending_error_) FinishLocked(*pending_error_);
}

void WatchReactor::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  write_in_flight_ = false;
  if (!ok) {
    // The stream broke (client gone); OnCancel/OnDone follow.
    FinishLocked(absl::CancelledError("the stream to the client broke"));
    return;
  }
  MaybeWriteLocked();
}

void WatchReactor::OnCancel() {
  // First leave the hub (takes its lock), then take ours: never both.
  hub_->Unsubscribe(this);
  absl::MutexLock lock(&mu_);
  FinishLocked(absl::CancelledError("the client cancelled or its deadline passed"));
}

void WatchReactor::OnDone() {
  hub_->Unsubscribe(this);
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    status = final_status_;
  }
  log_->Log("WatchUploading", counter_id_, uploading_id_, status,
            clock_->Now() - start_, token_fingerprint_);
  delete this;
}

void WatchReactor::FinishLocked(const absl::Status& status) {
  if (finished_) return;
  finished_ = true;
  final_status_ = status;
  Finish(ToGrpcStatus(status));
}

}  // namespace uploadwatch
