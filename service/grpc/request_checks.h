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

// The `authorization` metadata of a call (nullopt when absent; an empty
// header is not absent, see ResolveCredentials).
std::optional<std::string> AuthorizationOf(
    const grpc::CallbackServerContext& context);

// The client connection a call came on, for per-connection limits: gRPC's
// peer, except for calls from the gRPC-Web gateway (in-process channel),
// which name the browser's connection (see service/web/web_peer.h).
std::string ConnectionOf(const grpc::CallbackServerContext& context);

// The token a call uses: its own `authorization`, else the server's
// `default_token` (see auth/token.h); UNAUTHENTICATED when neither works.
absl::StatusOr<Credentials> CallerCredentials(
    const grpc::CallbackServerContext& context,
    const std::string& default_token);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_REQUEST_CHECKS_H_
