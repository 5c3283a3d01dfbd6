#include "service/grpc/uploading_service_impl.h"

#include <memory>

#include "service/auth/token.h"
#include "service/common/status_details.h"
#include "service/grpc/counter_watch_reactor.h"
#include "service/grpc/reactor_tracker.h"
#include "service/grpc/watch_reactor.h"

namespace uploadwatch {
namespace v1 = ::metrika::offline_conversions::v1;

UploadingServiceImpl::UploadingServiceImpl(ServiceDeps deps)
    : deps_(std::move(deps)),
      hub_(deps_.hub),
      history_(deps_.clock, LocalChangeHistory::Options{}) {}

namespace {

// The shape every unary rpc shares: check the request, pick the token, hand
// the call to `launch(credentials, finish)`, and finish it exactly once with
// one log line. `finish(status, token_fingerprint)` may run on any thread.
template <typename Launch>
grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* context,
                                   const ServiceDeps& deps,
                                   const char* method, int32_t counter,
                                   int64_t id, const absl::Status& valid,
                                   Launch launch) {
  // Two tickets (see ReactorTracker): this handler's, for the hub code that
  // runs on this gRPC thread until `launch` returns (it may answer inline),
  // and the finish's, let go right after Finish (copies of `finish` share it).
  const ReactorTracker::Ticket handler = deps.reactors->Enter();
  auto finished =
      std::make_shared<ReactorTracker::Ticket>(deps.reactors->Enter());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time start = deps.clock->Now();
  auto finish = [=, log = deps.log, clock = deps.clock](
                    const absl::Status& status, const std::string& fp) {
    log->Log(method, counter, id, status, clock->Now() - start, fp);
    reactor->Finish(ToGrpcStatus(status));
    finished->Release();
  };
  if (!valid.ok()) {
    finish(valid, "");
    return reactor;
  }
  absl::StatusOr<Credentials> credentials =
      CallerCredentials(*context, deps.callers);
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

grpc::ServerWriteReactor<v1::WatchUploadingsResponse>*
UploadingServiceImpl::WatchUploadings(
    grpc::CallbackServerContext* context,
    const v1::WatchUploadingsRequest* request) {
  return new CounterWatchReactor(deps_, &history_, context, *request);
}

}  // namespace uploadwatch
