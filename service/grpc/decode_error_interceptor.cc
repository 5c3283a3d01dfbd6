#include "service/grpc/decode_error_interceptor.h"

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "service/grpc/request_checks.h"

namespace uploadwatch {
namespace {

using grpc::experimental::InterceptionHookPoints;

// gRPC creates a call's interceptor on one thread and may run it first on
// another, handing it over inside its own code. Creation releases and every
// Intercept first acquires this counter, so that our code orders the hand-
// over (and ThreadSanitizer sees it). One atomic increment per call.
std::atomic<uint64_t> interceptors_created{0};

class DecodeErrorInterceptor : public grpc::experimental::Interceptor {
 public:
  DecodeErrorInterceptor(absl::string_view method, const RpcLog* log,
                         Clock* clock)
      : method_(method), log_(log), clock_(clock), start_(clock->Now()) {}
  // gRPC frees the interceptor on whichever thread ends the call, after
  // every Intercept, but orders the two only inside its own code: taking
  // mu_ makes that ordering ours (and visible to ThreadSanitizer).
  ~DecodeErrorInterceptor() override { absl::MutexLock lock(&mu_); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    interceptors_created.load(std::memory_order_acquire);  // before any field
    {
      absl::MutexLock lock(&mu_);
      Inspect(methods);
    }
    methods->Proceed();  // may run the next hook at once: not under mu_
  }

 private:
  void Inspect(grpc::experimental::InterceptorBatchMethods* methods)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
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
      const absl::Status status = UndecodableRequest(name);
      methods->ModifySendStatus(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                             std::string(status.message())));
      log_->Log(name, 0, 0, status, clock_->Now() - start_, "");
    }
  }

  const absl::string_view method_;  // gRPC keeps it for the call's lifetime
  const RpcLog* const log_;
  Clock* const clock_;
  const absl::Time start_;
  absl::Mutex mu_;
  bool undecodable_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::experimental::Interceptor*
DecodeErrorInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  if (info->method() == nullptr) return nullptr;
  for (const char* method : kParsesOwnRequests) {
    if (absl::string_view(info->method()) == method) return nullptr;
  }
  auto* interceptor = new DecodeErrorInterceptor(info->method(), log_, clock_);
  interceptors_created.fetch_add(1, std::memory_order_release);
  return interceptor;
}

}  // namespace uploadwatch
