#include "service/grpc/decode_error_interceptor.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace uploadwatch {
namespace {

using grpc::experimental::InterceptionHookPoints;

class DecodeErrorInterceptor : public grpc::experimental::Interceptor {
 public:
  DecodeErrorInterceptor(absl::string_view method, const RpcLog* log,
                         Clock* clock)
      : method_(method), log_(log), clock_(clock), start_(clock->Now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE)) {
      // nullptr here means Deserialize failed: gRPC then answers UNIMPLEMENTED.
      undecodable_ = methods->GetRecvMessage() == nullptr;
    }
    if (undecodable_ && methods->QueryInterceptionHookPoint(
                            InterceptionHookPoints::PRE_SEND_STATUS) &&
        methods->GetSendStatus().error_code() ==
            grpc::StatusCode::UNIMPLEMENTED) {
      const absl::string_view name =
          method_.substr(method_.rfind('/') + 1);  // npos + 1 == 0
      const std::string message = absl::StrCat(
          "the request is not a valid ", name,
          " request: its bytes do not parse as the method's protobuf message "
          "(see proto/metrika/offline_conversions/v1/uploading_service.proto; "
          "was it sent to the wrong method, or corrupted?)");
      methods->ModifySendStatus(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message));
      log_->Log(name, 0, 0, absl::InvalidArgumentError(message),
                clock_->Now() - start_, "");
    }
    methods->Proceed();
  }

 private:
  const absl::string_view method_;  // gRPC keeps it for the call's lifetime
  const RpcLog* const log_;
  Clock* const clock_;
  const absl::Time start_;
  bool undecodable_ = false;
};

}  // namespace

grpc::experimental::Interceptor*
DecodeErrorInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  if (info->method() == nullptr) return nullptr;
  return new DecodeErrorInterceptor(info->method(), log_, clock_);
}

}  // namespace uploadwatch
