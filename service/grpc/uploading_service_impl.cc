#include "service/grpc/uploading_service_impl.h"

#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/auth/token.h"
#include "service/common/status_details.h"
#include "service/grpc/watch_reactor.h"
#include "service/web/web_peer.h"

namespace uploadwatch {
namespace {

namespace v1 = ::metrika::offline_conversions::v1;

// Metrica's own bound on `limit`.
constexpr int32_t kMaxListLimit = 10000;

}  // namespace

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
  if (request.limit() < 0 || request.limit() > kMaxListLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit must be between 1 and ", kMaxListLimit,
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

std::string AuthorizationOf(const grpc::CallbackServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return "";
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

UploadingServiceImpl::UploadingServiceImpl(WatchReactor::Deps deps)
    : deps_(std::move(deps)), hub_(deps_.hub) {}

namespace {

// The shape every unary rpc shares: check the request, pick the token, hand
// the call to `launch(credentials, finish)`, and finish it exactly once with
// one log line. `finish(status, token_fingerprint)` may run on any thread.
template <typename Launch>
grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* context,
                                   const WatchReactor::Deps& deps,
                                   const char* method, int32_t counter,
                                   int64_t id, const absl::Status& valid,
                                   Launch launch) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time start = deps.clock->Now();
  auto finish = [=, log = deps.log, clock = deps.clock](
                    const absl::Status& status, const std::string& fp) {
    log->Log(method, counter, id, status, clock->Now() - start, fp);
    reactor->Finish(ToGrpcStatus(status));
  };
  if (!valid.ok()) {
    finish(valid, "");
    return reactor;
  }
  absl::StatusOr<Credentials> credentials =
      ResolveCredentials(AuthorizationOf(*context), deps.default_token);
  if (!credentials.ok()) {
    finish(credentials.status(), "");
    return reactor;
  }
  // The call, and so its response message, lives until Finish.
  launch(*credentials, std::move(finish));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* UploadingServiceImpl::GetUploading(
    grpc::CallbackServerContext* context, const v1::GetUploadingRequest* request,
    v1::GetUploadingResponse* response) {
  const int32_t counter = request->counter_id();
  const int64_t id = request->uploading_id();
  return RunUnary(
      context, deps_, "GetUploading", counter, id, ValidateIds(counter, id),
      [this, counter, id, response](const Credentials& credentials,
                                    auto finish) {
        hub_->Get(credentials, counter, id,
                  [finish, response, fp = credentials.fingerprint()](
                      absl::StatusOr<UploadingState> state) {
                    if (state.ok()) {
                      *response->mutable_uploading() =
                          std::move(state->uploading);
                    }
                    finish(state.status(), fp);
                  });
      });
}

grpc::ServerUnaryReactor* UploadingServiceImpl::ListUploadings(
    grpc::CallbackServerContext* context,
    const v1::ListUploadingsRequest* request,
    v1::ListUploadingsResponse* response) {
  ListParams params;
  params.counter_id = request->counter_id();
  params.limit = request->limit();
  params.offset = request->offset();
  params.type = request->type();
  return RunUnary(
      context, deps_, "ListUploadings", params.counter_id, 0,
      ValidateList(*request),
      [this, params, response](const Credentials& credentials, auto finish) {
        hub_->List(credentials, params,
                   [finish, response, fp = credentials.fingerprint()](
                       absl::StatusOr<v1::ListUploadingsResponse> list) {
                     if (list.ok()) *response = std::move(*list);
                     finish(list.status(), fp);
                   });
      });
}

grpc::ServerWriteReactor<v1::WatchUploadingResponse>*
UploadingServiceImpl::WatchUploading(grpc::CallbackServerContext* context,
                                     const v1::WatchUploadingRequest* request) {
  return new WatchReactor(deps_, context, *request);
}

}  // namespace uploadwatch
