#ifndef UPLOADWATCH_SERVICE_GRPC_UPLOADING_SERVICE_IMPL_H_
#define UPLOADWATCH_SERVICE_GRPC_UPLOADING_SERVICE_IMPL_H_

#include <string>

#include "grpcpp/grpcpp.h"
#include "metrika/offline_conversions/v1/uploading_service.grpc.pb.h"
#include "service/common/clock.h"
#include "service/core/watch_hub.h"
#include "service/grpc/rpc_log.h"
#include "service/grpc/watch_reactor.h"

namespace uploadwatch {

// The gRPC adapter: validates requests, picks the caller's token, hands the
// work to the WatchHub and converts its answers. All three rpcs run on gRPC's
// callback API; nothing here blocks.
class UploadingServiceImpl final
    : public metrika::offline_conversions::v1::UploadingService::CallbackService {
 public:
  // `deps.default_token` is the server's own token ("" for none).
  explicit UploadingServiceImpl(WatchReactor::Deps deps);

  grpc::ServerUnaryReactor* GetUploading(
      grpc::CallbackServerContext* context,
      const metrika::offline_conversions::v1::GetUploadingRequest* request,
      metrika::offline_conversions::v1::GetUploadingResponse* response) override;

  grpc::ServerUnaryReactor* ListUploadings(
      grpc::CallbackServerContext* context,
      const metrika::offline_conversions::v1::ListUploadingsRequest* request,
      metrika::offline_conversions::v1::ListUploadingsResponse* response)
      override;

  grpc::ServerWriteReactor<metrika::offline_conversions::v1::WatchUploadingResponse>*
  WatchUploading(grpc::CallbackServerContext* context,
                 const metrika::offline_conversions::v1::WatchUploadingRequest*
                     request) override;

 private:
  const WatchReactor::Deps deps_;
  WatchHub* const hub_;
};

// Request checks shared by the rpcs; INVALID_ARGUMENT with what to fix.
absl::Status ValidateIds(int32_t counter_id, int64_t uploading_id);
absl::Status ValidateList(
    const metrika::offline_conversions::v1::ListUploadingsRequest& request);

// The `authorization` metadata of a call ("" when absent).
std::string AuthorizationOf(const grpc::CallbackServerContext& context);

// The client connection a call came on, for per-connection limits: gRPC's
// peer, except for calls from the gRPC-Web gateway (in-process channel),
// which name the browser's connection (see service/web/web_peer.h).
std::string ConnectionOf(const grpc::CallbackServerContext& context);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_UPLOADING_SERVICE_IMPL_H_
