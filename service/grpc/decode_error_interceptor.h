#ifndef UPLOADWATCH_SERVICE_GRPC_DECODE_ERROR_INTERCEPTOR_H_
#define UPLOADWATCH_SERVICE_GRPC_DECODE_ERROR_INTERCEPTOR_H_

#include "grpcpp/support/server_interceptor.h"
#include "service/common/clock.h"
#include "service/grpc/rpc_log.h"

namespace uploadwatch {

// gRPC C++ parses a request before any handler of the callback API runs, and
// when the bytes are not the method's protobuf it fails the call by itself
// with UNIMPLEMENTED and no message, and logs nothing. This interceptor sees
// that the parse failed (no request at POST_RECV_MESSAGE) and rewrites that
// status to INVALID_ARGUMENT saying what was wrong, with one RpcLog line.
// Other calls, including UNIMPLEMENTED for unknown methods, pass untouched.
// Methods on gRPC's raw API (kParsesOwnRequests) get no interceptor: their
// handlers parse the bytes and report the same error themselves, and a call
// without interceptors skips gRPC's interceptor machinery, a few thousand
// instructions per call.
//
// Register with ServerBuilder::experimental().SetInterceptorCreators. `log`
// and `clock` are not owned and must outlive the server.
// Full names of the methods whose handlers parse their own requests.
inline constexpr const char* kParsesOwnRequests[] = {
    "/metrika.offline_conversions.v1.UploadingService/GetUploading",
    "/metrika.offline_conversions.v1.UploadingService/WatchUploading",
    "/metrika.offline_conversions.v1.UploadingService/WatchUploadings",
};

class DecodeErrorInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  DecodeErrorInterceptorFactory(const RpcLog* log, Clock* clock)
      : log_(log), clock_(clock) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  const RpcLog* const log_;
  Clock* const clock_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_DECODE_ERROR_INTERCEPTOR_H_
