#include "service/grpc/counter_watch_reactor.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/hash/hash.h"
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

// One entry of the message's `events` field on the wire: its tag, its
// length, the serialized UploadingEvent.
grpc::Slice Frame(const std::string& event) {
  constexpr uint32_t kTag =
      (CounterWatch::Message::kEventsFieldNumber << 3) | 2;  // LEN
  const uint32_t size = static_cast<uint32_t>(event.size());
  grpc::Slice framed(CodedOutputStream::VarintSize32(kTag) +
                     CodedOutputStream::VarintSize32(size) + event.size());
  uint8_t* p = const_cast<uint8_t*>(framed.begin());
  p = CodedOutputStream::WriteVarint32ToArray(kTag, p);
  p = CodedOutputStream::WriteVarint32ToArray(size, p);
  std::memcpy(p, event.data(), event.size());
  return framed;
}

// The framed slice of a shared event, made once per event and thread: the
// fan-out writes a change's watchers one after the other, and each write
// then references the slice (a refcount) instead of copying the bytes.
// Slots by the event's address; a slot holds its event, so the address is
// not reused while the slot names it.
const grpc::Slice& FramedEvent(const std::shared_ptr<const std::string>& event) {
  struct Slot {
    std::shared_ptr<const std::string> event;
    grpc::Slice framed;
  };
  constexpr size_t kSlots = 1024;
  thread_local std::vector<Slot> slots(kSlots);
  Slot& slot = slots[absl::HashOf(event.get()) % kSlots];
  if (slot.event != event) {
    slot.framed = Frame(*event);
    slot.event = event;
  }
  return slot.framed;
}

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
             CounterWatch::Options{.bookmark_interval =
                                       deps.limits->bookmark_interval()}) {
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
  // The message's own fields, then its events: what the generated code
  // would write for the message holding them all.
  grpc::Slice head(message->ByteSizeLong());
  message->SerializeWithCachedSizesToArray(const_cast<uint8_t*>(head.begin()));
  slices_.clear();
  slices_.reserve(events.size() + 1);
  slices_.push_back(std::move(head));
  for (const std::shared_ptr<const std::string>& event : events) {
    slices_.push_back(FramedEvent(event));  // a reference
  }
  grpc::ByteBuffer bytes(slices_.data(), slices_.size());
  in_flight_.Swap(&bytes);
  slices_.clear();
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
