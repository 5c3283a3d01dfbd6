#ifndef UPLOADWATCH_SERVICE_GRPC_REQUEST_CHECKS_H_
#define UPLOADWATCH_SERVICE_GRPC_REQUEST_CHECKS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"
#include "service/auth/token.h"

namespace uploadwatch {

// Everything the rpcs check before any work: the request's fields
// (INVALID_ARGUMENT saying what to fix) and the caller's credentials. The
// one place for both, shared by the unary rpcs and the watch reactor.

absl::Status ValidateIds(int32_t counter_id, int64_t uploading_id);
absl::Status ValidateList(
    const metrika::offline_conversions::v1::ListUploadingsRequest& request);
// counter_id > 0, a known type, and a resume_token that is empty or
// well-formed (whether it can be honoured is the watch's to say).
absl::Status ValidateWatchUploadings(
    const metrika::offline_conversions::v1::WatchUploadingsRequest& request);

// INVALID_ARGUMENT for a request whose bytes do not parse as `method`'s
// (e.g. "GetUploading") protobuf message.
absl::Status UndecodableRequest(absl::string_view method);

// The `authorization` metadata of a call (nullopt when absent; an empty
// header is not absent, see ResolveCredentials).
std::optional<std::string> AuthorizationOf(
    const grpc::CallbackServerContext& context);

// How calls that bring no token are treated.
struct CallerPolicy {
  std::string default_token;  // the server's own token ("" for none)
  // Metadata key a trusted proxy sets to name the caller
  // (--caller_identity_header); "" to ignore every such header.
  std::string identity_header;
  // Calls without their own token are refused (--require_caller_token).
  bool require_caller_token = false;
};

// Who is calling, the key of a caller's share of the server token: the
// mTLS client certificate's subject ("cert:..."), else the policy's
// identity header ("header:...", trusted: only set the flag behind a proxy
// that overwrites it), else the peer's IP without its port ("ip:...", the
// browser's for calls through the gRPC-Web gateway: see ConnectionOf).
std::string CallerIdentity(const grpc::CallbackServerContext& context,
                           const CallerPolicy& policy);
// The client connection a call came on, for per-connection limits: gRPC's
// peer, except for calls from the gRPC-Web gateway (in-process channel),
// which name the browser's connection (see service/web/web_peer.h).
std::string ConnectionOf(const grpc::CallbackServerContext& context);

// The token a call uses: its own `authorization`, else the server's
// `default_token` (see auth/token.h), marked as the server's and with the
// caller's identity; UNAUTHENTICATED when neither works, or when the call
// brings none and the policy requires one.
absl::StatusOr<Credentials> CallerCredentials(
    const grpc::CallbackServerContext& context, const CallerPolicy& policy);
// CallerCredentials in two steps, for a call that may be answered without
// knowing who calls (a cached Get): the token alone, with the same errors,
// then, for the server's token, the caller's identity.
absl::StatusOr<Credentials> CallerToken(
    const grpc::CallbackServerContext& context, const CallerPolicy& policy);
void AddCallerIdentity(const grpc::CallbackServerContext& context,
                       const CallerPolicy& policy, Credentials& credentials);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_REQUEST_CHECKS_H_
