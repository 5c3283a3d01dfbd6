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
// GetUploading, the rpc dashboards call most, and the two watches are on
// the raw callback API: they parse their requests and serialize their
// responses themselves (the same bytes as the generated code), so that
// their calls need no DecodeErrorInterceptor (an undecodable request gets
// that interceptor's INVALID_ARGUMENT from the handler), a cached answer is
// serialized straight from the cache's copy, and a change is serialized
// once for all its watchers (see WatchReactor, CounterWatchReactor).
class UploadingServiceImpl final
    : public metrika::offline_conversions::v1::UploadingService::
          WithRawCallbackMethod_GetUploading<
              metrika::offline_conversions::v1::UploadingService::
                  WithRawCallbackMethod_WatchUploading<
                      metrika::offline_conversions::v1::UploadingService::
                          WithRawCallbackMethod_WatchUploadings<
                              metrika::offline_conversions::v1::
                                  UploadingService::CallbackService>>> {
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

  // A WatchUploadingRequest in, WatchUploadingResponses out.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchUploading(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* request) override;

  // A WatchUploadingsRequest in, WatchUploadingsResponses out.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchUploadings(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* request) override;

 private:
  const ServiceDeps deps_;
  UploadingHub* const hub_;
  // What WatchUploadings resume tokens point into; a new instance per
  // process (a restart's tokens get a reset).
  LocalChangeHistory history_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_UPLOADING_SERVICE_IMPL_H_
