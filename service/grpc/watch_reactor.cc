#include "service/grpc/watch_reactor.h"

#include <cstdint>
#include <optional>

#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "service/auth/token.h"
#include "service/common/status_details.h"
#include "service/grpc/grpc_hand_off.h"
#include "service/grpc/request_checks.h"
#include "service/grpc/state_proto.h"

namespace uploadwatch {
namespace {

using ::metrika::offline_conversions::v1::WatchUploadingResponse;

// A state's message, serialized: the bytes every watcher is sent.
grpc::Slice MakeMessage(const UploadingState& state) {
  WatchUploadingResponse message;
  *message.mutable_uploading() = state.uploading;
  message.set_version(state.version);
  SetTime(state.observe_time, message.mutable_observe_time());
  SetTime(state.check_time, message.mutable_check_time());
  message.set_terminal(IsTerminal(state.uploading));
  AddStatusHistory(state.statuses, message.mutable_status_history());
  grpc::Slice bytes(message.ByteSizeLong());
  message.SerializeWithCachedSizesToArray(const_cast<uint8_t*>(bytes.begin()));
  return bytes;
}

// The message of `state`, serialized once per state object and thread and
// shared (a refcounted slice, never modified) by every watcher the fan-out
// hands that state to one after the other. The key is the object and what
// names its content; an address reused for another state differs in one of
// them.
const grpc::Slice& MessageOf(const UploadingState& state) {
  struct Memo {
    const UploadingState* state = nullptr;
    int64_t id = 0;
    int64_t version = 0;
    absl::Time observed;
    absl::Time checked;
    std::optional<grpc::Slice> message;
  };
  thread_local Memo memo;
  if (!memo.message.has_value() || memo.state != &state ||
      memo.id != state.uploading.id() || memo.version != state.version ||
      memo.observed != state.observe_time ||
      memo.checked != state.check_time) {
    memo = Memo{&state,           state.uploading.id(), state.version,
                state.observe_time, state.check_time,   MakeMessage(state)};
  }
  return *memo.message;
}

absl::Status LifetimeReached() {
  return absl::UnavailableError(
      "this watch reached the server's maximum stream lifetime; re-watch "
      "(the first message repeats the current state, with its version)");
}

}  // namespace

WatchReactor::WatchReactor(
    const Deps& deps, grpc::CallbackServerContext* context,
    const absl::StatusOr<metrika::offline_conversions::v1::WatchUploadingRequest>&
        request)
    : ticket_(deps.reactors->Enter()),
      deps_(deps),
      hub_(deps.hub),
      start_(deps.clock->Now()),
      admission_(deps, *context),
      counter_id_(request.ok() ? request->counter_id() : 0),
      uploading_id_(request.ok() ? request->uploading_id() : 0) {
  absl::Status status =
      request.ok() ? ValidateIds(counter_id_, uploading_id_) : request.status();
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
  HandOffToGrpc(this);  // a reaction may come before any operation
}

void WatchReactor::Expire() {
  {
    absl::MutexLock lock(&mu_);
    if (!finished_ && last_version_ == 0) {
      expire_after_first_ = true;  // OnState ends it after the first state
      return;
    }
  }
  hub_->Unsubscribe(this);
  absl::MutexLock lock(&mu_);
  FinishLocked(LifetimeReached());
}

void WatchReactor::OnState(const UploadingState& state) {
  absl::MutexLock lock(&mu_);
  if (finished_ || state.version <= last_version_) return;  // no duplicates
  last_version_ = state.version;
  pending_ = MessageOf(state);  // a reference, not a copy
  pending_terminal_ = IsTerminal(state.uploading);
  if (expire_after_first_) {
    // Written after the state (OnDone leaves the hub); a terminal state
    // ends the stream with OK instead.
    expire_after_first_ = false;
    pending_error_ = LifetimeReached();
  }
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
  if (pending_.has_value()) {
    grpc::ByteBuffer message(&*pending_, 1);  // references the slice
    in_flight_.Swap(&message);
    pending_.reset();
    write_in_flight_ = true;
    if (pending_terminal_) {
      // The last message and OK in one batch.
      finished_ = true;
      final_status_ = absl::OkStatus();
      HandOffToGrpc(this);
      StartWriteAndFinish(&in_flight_, grpc::WriteOptions(), grpc::Status::OK);
    } else {
      HandOffToGrpc(this);
      StartWrite(&in_flight_);
    }
    return;
  }
  if (pending_error_) FinishLocked(*pending_error_);
}

void WatchReactor::OnWriteDone(bool ok) {
  ReceiveFromGrpc(this);
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
  ReceiveFromGrpc(this);
  // First leave the hub (takes its lock), then take ours: never both.
  hub_->Unsubscribe(this);
  absl::MutexLock lock(&mu_);
  FinishLocked(admission_.CancelReason());
}

void WatchReactor::OnDone() {
  ReceiveFromGrpc(this);
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
  HandOffToGrpc(this);
  Finish(ToGrpcStatus(status));
}

}  // namespace uploadwatch
