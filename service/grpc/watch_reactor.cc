#include "service/grpc/watch_reactor.h"

#include "google/protobuf/util/time_util.h"
#include "service/auth/token.h"
#include "service/common/status_details.h"
#include "service/grpc/request_checks.h"

namespace uploadwatch {
namespace {

using ::google::protobuf::util::TimeUtil;

using ::metrika::offline_conversions::v1::WatchUploadingResponse;

}  // namespace

WatchReactor::WatchReactor(
    const Deps& deps, grpc::CallbackServerContext* context,
    const metrika::offline_conversions::v1::WatchUploadingRequest& request)
    : ticket_(deps.reactors->Enter()),
      deps_(deps),
      hub_(deps.hub),
      start_(deps.clock->Now()),
      admission_(deps, *context),
      counter_id_(request.counter_id()),
      uploading_id_(request.uploading_id()) {
  absl::Status status = ValidateIds(counter_id_, uploading_id_);
  if (status.ok()) {
    absl::StatusOr<Credentials> credentials =
        admission_.Admit([this] { Expire(); });
    // Not under mu_: the hub may call OnState before Subscribe returns.
    status = credentials.ok() ? hub_->Subscribe(*credentials, counter_id_,
                                                uploading_id_, this)
                              : credentials.status();
  }
  if (!status.ok()) {
    absl::MutexLock lock(&mu_);
    FinishLocked(status);
  }
}

void WatchReactor::Expire() {
  hub_->Unsubscribe(this);
  absl::MutexLock lock(&mu_);
  FinishLocked(absl::UnavailableError(
      "this watch reached the server's maximum stream lifetime; re-watch "
      "(the first message repeats the current state, with its version)"));
}

void WatchReactor::OnState(const UploadingState& state) {
  const bool terminal = IsTerminal(state.uploading);
  absl::MutexLock lock(&mu_);
  if (finished_ || state.version <= last_version_) return;  // no duplicates
  last_version_ = state.version;
  WatchUploadingResponse message;
  *message.mutable_uploading() = state.uploading;
  message.set_version(state.version);
  *message.mutable_observe_time() =
      TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(state.observe_time));
  *message.mutable_check_time() =
      TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(state.check_time));
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
  FinishLocked(admission_.CancelReason());
}

void WatchReactor::OnDone() {
  hub_->Unsubscribe(this);
  admission_.Release();
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    status = final_status_;
  }
  deps_.log->Log("WatchUploading", counter_id_, uploading_id_, status,
                 deps_.clock->Now() - start_, admission_.token_fingerprint());
  delete this;  // ticket_ goes last (see ReactorTracker)
}

void WatchReactor::FinishLocked(const absl::Status& status) {
  if (finished_) return;
  finished_ = true;
  final_status_ = status;
  Finish(ToGrpcStatus(status));
}

}  // namespace uploadwatch
