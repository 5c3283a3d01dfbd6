#ifndef UPLOADWATCH_SERVICE_GRPC_UPLOADING_SERVICE_IMPL_H_
#define UPLOADWATCH_SERVICE_GRPC_UPLOADING_SERVICE_IMPL_H_

#include <string>

#include "grpcpp/grpcpp.h"
#include "metrika/offline_conversions/v1/uploading_service.grpc.pb.h"
#include "service/core/change_history.h"
#include "service/core/uploading_hub.h"
#include "service/grpc/request_checks.h"
#include "service/grpc/service_deps.h"

namespace uploadwatch {

// The gRPC adapter: validates requests and picks the caller's token (both in
// request_checks.h), hands the work to the UploadingHub and converts its
// answers. All four rpcs run on gRPC's
// callback API; nothing here blocks.
//
// GetUploading, the rpc dashboards call most, is on the raw callback API:
// it parses its request and serializes its response itself (the same bytes
// as the generated code), so that its calls need no DecodeErrorInterceptor
// (an undecodable request gets that interceptor's INVALID_ARGUMENT from the
// handler), and a cached answer is serialized straight from the cache's copy.
class UploadingServiceImpl final
    : public metrika::offline_conversions::v1::UploadingService::
          WithRawCallbackMethod_GetUploading<
              metrika::offline_conversions::v1::UploadingService::
                  CallbackService> {
 public:
  explicit UploadingServiceImpl(ServiceDeps deps);

  // A GetUploadingRequest in, a GetUploadingResponse out.
  grpc::ServerUnaryReactor* GetUploading(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;

  grpc::ServerUnaryReactor* ListUploadings(
      grpc::CallbackServerContext* context,
      const metrika::offline_conversions::v1::ListUploadingsRequest* request,
      metrika::offline_conversions::v1::ListUploadingsResponse* response)
      override;

  grpc::ServerWriteReactor<metrika::offline_conversions::v1::WatchUploadingResponse>*
  WatchUploading(grpc::CallbackServerContext* context,
                 const metrika::offline_conversions::v1::WatchUploadingRequest*
                     request) override;

  grpc::ServerWriteReactor<
      metrika::offline_conversions::v1::WatchUploadingsResponse>*
  WatchUploadings(grpc::CallbackServerContext* context,
                  const metrika::offline_conversions::v1::WatchUploadingsRequest*
                      request) override;

 private:
  const ServiceDeps deps_;
  UploadingHub* const hub_;
  // What WatchUploadings resume tokens point into; a new instance per
  // process (a restart's tokens get a reset).
  LocalChangeHistory history_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_UPLOADING_SERVICE_IMPL_H_
