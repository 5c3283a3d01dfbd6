#include "service/grpc/request_checks.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/core/resume_token.h"
#include "service/metrica/metrica_limits.h"
#include "service/web/web_peer.h"

namespace uploadwatch {

namespace v1 = ::metrika::offline_conversions::v1;

absl::Status ValidateIds(int32_t counter_id, int64_t uploading_id) {
  if (counter_id <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "counter_id must be a positive Metrica counter id, got ", counter_id));
  }
  if (uploading_id <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "uploading_id must be a positive uploading id, got ", uploading_id));
  }
  return absl::OkStatus();
}

absl::Status ValidateList(const v1::ListUploadingsRequest& request) {
  if (request.counter_id() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("counter_id must be a positive Metrica counter id, got ",
                     request.counter_id()));
  }
  if (request.limit() < 0 || request.limit() > kMetricaMaxListLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit must be between 1 and ", kMetricaMaxListLimit,
                     " (0 for Metrica's default), got ", request.limit()));
  }
  if (request.offset() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("offset must be >= 0, got ", request.offset()));
  }
  if (!v1::Uploading::Type_IsValid(request.type())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "type must be BASIC, CALLS or CHATS, got ", request.type()));
  }
  return absl::OkStatus();
}

absl::Status ValidateWatchUploadings(
    const v1::WatchUploadingsRequest& request) {
  if (request.counter_id() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("counter_id must be a positive Metrica counter id, got ",
                     request.counter_id()));
  }
  if (!v1::Uploading::Type_IsValid(request.type())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "type must be BASIC, CALLS or CHATS, got ", request.type()));
  }
  if (!request.resume_token().empty()) {
    return DecodeResumeToken(request.resume_token()).status();
  }
  return absl::OkStatus();
}

std::optional<std::string> AuthorizationOf(
    const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

std::string ConnectionOf(const grpc::CallbackServerContext& context) {
  std::string peer = context.peer();
  // Only the in-process channel may speak for another connection; gRPC 1.51
  // names its peer "unknown" (later versions "inproc"), never a network
  // address like every real connection ("ipv4:", "ipv6:", "unix:").
  if (peer != "unknown" && !absl::StartsWith(peer, "inproc")) return peer;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(web::kWebPeerMetadata);
  if (it == metadata.end()) return peer;
  return absl::StrCat("web:", absl::string_view(it->second.data(),
                                                it->second.size()));
}

absl::StatusOr<Credentials> CallerCredentials(
    const grpc::CallbackServerContext& context,
    const std::string& default_token) {
  return ResolveCredentials(AuthorizationOf(context), default_token);
}

}  // namespace uploadwatch
