#include "client/uploading_client.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/client_context.h"
#include "service/common/status_details.h"

namespace uploadwatch {

namespace v1 = ::metrika::offline_conversions::v1;
using ::google::protobuf::util::MessageDifferencer;

UploadingClient::UploadingClient(std::shared_ptr<grpc::ChannelInterface> channel,
                                 Options options)
    : UploadingClient(v1::UploadingService::NewStub(channel),
                      std::move(options)) {}

UploadingClient::UploadingClient(
    std::unique_ptr<v1::UploadingService::StubInterface> stub, Options options)
    : stub_(std::move(stub)), options_(std::move(options)) {}

std::unique_ptr<grpc::ClientContext> UploadingClient::NewContext(
    absl::Time deadline) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (deadline != absl::InfiniteFuture()) {
    context->set_deadline(absl::ToChronoTime(deadline));
  }
  if (!options_.token.empty()) {
    context->AddMetadata("authorization", absl::StrCat("OAuth ", options_.token));
  }
  return context;
}

absl::StatusOr<v1::Uploading> UploadingClient::GetUploading(
    int32_t counter_id, int64_t uploading_id) const {
  v1::GetUploadingRequest request;
  request.set_counter_id(counter_id);
  request.set_uploading_id(uploading_id);
  v1::GetUploadingResponse response;
  auto context = NewContext(absl::Now() + options_.timeout);
  absl::Status status =
      FromGrpcStatus(stub_->GetUploading(context.get(), request, &response));
  if (!status.ok()) return status;
  return std::move(*response.mutable_uploading());
}

absl::StatusOr<std::vector<v1::Uploading>> UploadingClient::ListUploadings(
    const v1::ListUploadingsRequest& request) const {
  v1::ListUploadingsResponse response;
  auto context = NewContext(absl::Now() + options_.timeout);
  absl::Status status =
      FromGrpcStatus(stub_->ListUploadings(context.get(), request, &response));
  if (!status.ok()) return status;
  return std::vector<v1::Uploading>(
      std::make_move_iterator(response.mutable_uploadings()->begin()),
      std::make_move_iterator(response.mutable_uploadings()->end()));
}

absl::Status UploadingClient::WatchUploading(int32_t counter_id,
                                             int64_t uploading_id,
                                             WatchCallback on_message) const {
  v1::WatchUploadingRequest request;
  request.set_counter_id(counter_id);
  request.set_uploading_id(uploading_id);
  const absl::Time deadline = absl::Now() + options_.watch_timeout;
  std::optional<v1::Uploading> delivered;  // the state last delivered
  while (true) {
    auto context = NewContext(deadline);
    auto reader = stub_->WatchUploading(context.get(), request);
    v1::WatchUploadingResponse message;
    bool answered = false;
    bool terminal = false;
    while (reader->Read(&message)) {
      // A re-watch starts with the current state, maybe one already shown.
      const bool repeat = !answered && delivered.has_value() &&
                          MessageDifferencer::Equals(*delivered,
                                                     message.uploading());
      answered = true;
      terminal = message.terminal();
      if (repeat) continue;
      delivered = message.uploading();
      on_message(message);
    }
    absl::Status status = FromGrpcStatus(reader->Finish());
    if (absl::IsUnavailable(status) && answered && !terminal) continue;
    if (status.ok() && !terminal) {
      return absl::UnknownError(
          "the watch ended before the uploading reached a terminal status");
    }
    return status;
  }
}

absl::Status UploadingClient::WatchCounter(v1::WatchUploadingsRequest request,
                                           CounterWatchCallback on_message) const {
  const absl::Time deadline = absl::Now() + options_.watch_timeout;
  while (true) {
    auto context = NewContext(deadline);
    auto reader = stub_->WatchUploadings(context.get(), request);
    v1::WatchUploadingsResponse message;
    bool answered = false;
    while (reader->Read(&message)) {
      answered = true;
      // Every message carries one; an empty one would restart the snapshot.
      if (!message.resume_token().empty()) {
        request.set_resume_token(message.resume_token());
      }
      if (!on_message(message)) {
        context->TryCancel();
        reader->Finish();  // CANCELLED, as asked
        return absl::OkStatus();
      }
    }
    absl::Status status = FromGrpcStatus(reader->Finish());
    if (absl::IsUnavailable(status) && answered) continue;
    if (status.ok()) {
      return absl::UnknownError(
          "the counter watch ended without an error; it never ends by itself");
    }
    return status;
  }
}

}  // namespace uploadwatch
