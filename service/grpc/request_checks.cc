#include "service/grpc/request_checks.h"

#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
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

absl::Status UndecodableRequest(absl::string_view method) {
  return absl::InvalidArgumentError(absl::StrCat(
      "the request is not a valid ", method,
      " request: its bytes do not parse as the method's protobuf message "
      "(see proto/metrika/offline_conversions/v1/uploading_service.proto; "
      "was it sent to the wrong method, or corrupted?)"));
}

std::optional<std::string> AuthorizationOf(
    const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

namespace {

// Identities are keys, not text to show: bounded so a header cannot grow
// the admission's table entries.
constexpr size_t kMaxIdentity = 256;

std::string Bounded(absl::string_view kind, absl::string_view value) {
  return absl::StrCat(kind, value.substr(0, kMaxIdentity));
}

// "ipv4:10.0.0.1:5000" -> "10.0.0.1"; "ipv6:[::1]:5000" -> "::1".
absl::string_view PeerIp(absl::string_view peer) {
  const size_t colon = peer.find(':');
  if (colon != absl::string_view::npos) peer.remove_prefix(colon + 1);
  if (absl::ConsumePrefix(&peer, "[")) return peer.substr(0, peer.find(']'));
  const size_t port = peer.rfind(':');
  return port == absl::string_view::npos ? peer : peer.substr(0, port);
}

}  // namespace

std::string CallerIdentity(const grpc::CallbackServerContext& context,
                           const CallerPolicy& policy) {
  if (std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
      auth != nullptr && auth->IsPeerAuthenticated()) {
    std::vector<grpc::string_ref> subject =
        auth->FindPropertyValues("x509_subject");
    if (subject.empty()) subject = auth->GetPeerIdentity();
    if (!subject.empty()) {
      return Bounded("cert:",
                     absl::string_view(subject[0].data(), subject[0].size()));
    }
  }
  if (!policy.identity_header.empty()) {
    const auto& metadata = context.client_metadata();
    auto it = metadata.find(policy.identity_header);
    if (it != metadata.end() && !it->second.empty()) {
      return Bounded("header:",
                     absl::string_view(it->second.data(), it->second.size()));
    }
  }
  // ConnectionOf: a browser's own address for calls from the gRPC-Web
  // gateway, whose in-process channel has no peer of its own.
  return Bounded("ip:", PeerIp(ConnectionOf(context)));
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

absl::StatusOr<Credentials> CallerToken(
    const grpc::CallbackServerContext& context, const CallerPolicy& policy) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    if (policy.require_caller_token) {
      return absl::UnauthenticatedError(
          "this server requires every call to bring its own Metrica token "
          "(--require_caller_token): send call metadata "
          "'authorization: OAuth <token>'");
    }
    return ResolveCredentials(std::nullopt, policy.default_token);
  }
  return ResolveCredentials(
      absl::string_view(it->second.data(), it->second.size()),
      policy.default_token);
}

void AddCallerIdentity(const grpc::CallbackServerContext& context,
                       const CallerPolicy& policy, Credentials& credentials) {
  if (credentials.server_token()) {
    credentials.set_caller(CallerIdentity(context, policy));
  }
}

absl::StatusOr<Credentials> CallerCredentials(
    const grpc::CallbackServerContext& context, const CallerPolicy& policy) {
  absl::StatusOr<Credentials> credentials = CallerToken(context, policy);
  if (credentials.ok()) AddCallerIdentity(context, policy, *credentials);
  return credentials;
}

}  // namespace uploadwatch
