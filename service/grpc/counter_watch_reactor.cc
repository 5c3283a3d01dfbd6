#include "service/grpc/counter_watch_reactor.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "google/protobuf/io/coded_stream.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "service/auth/token.h"
#include "service/common/status_details.h"
#include "service/grpc/grpc_hand_off.h"
#include "service/grpc/request_checks.h"

namespace uploadwatch {
namespace {

using ::google::protobuf::io::CodedOutputStream;

}  // namespace

CounterWatchReactor::CounterWatchReactor(
    const ServiceDeps& deps, ChangeHistory* history,
    grpc::CallbackServerContext* context,
    const absl::StatusOr<
        metrika::offline_conversions::v1::WatchUploadingsRequest>& request)
    : ticket_(deps.reactors->Enter()),
      deps_(deps),
      start_(deps.clock->Now()),
      admission_(deps, *context),
      counter_id_(request.ok() ? request->counter_id() : 0),
      watch_(deps.hub, history, deps.scheduler, deps.clock, this,
             CounterWatch::Options{
                 .bookmark_interval = deps.limits->bookmark_interval(),
                 .shared = deps.shared_changes}) {
  absl::Status status =
      request.ok() ? ValidateWatchUploadings(*request) : request.status();
  if (status.ok()) {
    absl::StatusOr<Credentials> credentials =
        admission_.Admit([this] { Expire(); });
    status = credentials.ok()
                 ? watch_.Start(*credentials, request->counter_id(),
                                request->type(), request->resume_token())
                 : credentials.status();
  }
  // Start() sends nothing when it fails: this is the stream's one Finish.
  if (!status.ok()) Finish(status);
  HandOffToGrpc(this);  // a reaction may come before any operation
}

void CounterWatchReactor::Write(
    const CounterWatch::Message* message,
    const std::vector<std::shared_ptr<const std::string>>& events) {
  if (message->synced()) {
    absl::MutexLock lock(&mu_);
    synced_written_ = true;
  }
  // The message's own fields, then each event as an entry of `events` (tag,
  // length, its bytes): what the generated code writes for the message
  // holding them all, into one slice. One copy of each event's bytes, and
  // no UnknownFieldSet, message serialization or destruction per watcher.
  // (A slice per event referencing shared bytes copies nothing, but costs
  // more: gRPC 1.51 adds and refs every slice of a buffer twice per write,
  // ~320 instructions each, against a few hundred bytes of memcpy.)
  constexpr uint32_t kTag =
      (CounterWatch::Message::kEventsFieldNumber << 3) | 2;  // LEN
  const size_t head = message->ByteSizeLong();
  size_t size = head;
  for (const std::shared_ptr<const std::string>& event : events) {
    size += CodedOutputStream::VarintSize32(kTag) +
            CodedOutputStream::VarintSize32(
                static_cast<uint32_t>(event->size())) +
            event->size();
  }
  grpc::Slice bytes(size);
  uint8_t* p = const_cast<uint8_t*>(bytes.begin());
  p = message->SerializeWithCachedSizesToArray(p);
  for (const std::shared_ptr<const std::string>& event : events) {
    p = CodedOutputStream::WriteVarint32ToArray(kTag, p);
    p = CodedOutputStream::WriteVarint32ToArray(
        static_cast<uint32_t>(event->size()), p);
    std::memcpy(p, event->data(), event->size());
    p += event->size();
  }
  grpc::ByteBuffer buffer(&bytes, 1);
  in_flight_.Swap(&buffer);
  HandOffToGrpc(this);
  StartWrite(&in_flight_);
}

void CounterWatchReactor::Finish(const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    final_status_ = status;
  }
  HandOffToGrpc(this);
  grpc::ServerWriteReactor<grpc::ByteBuffer>::Finish(ToGrpcStatus(status));
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
