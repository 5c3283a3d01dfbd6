#include "service/grpc/uploading_service_impl.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "google/protobuf/io/coded_stream.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/slice.h"
#include "service/auth/token.h"
#include "service/common/status_details.h"
#include "service/grpc/counter_watch_reactor.h"
#include "service/grpc/grpc_hand_off.h"
#include "service/grpc/reactor_tracker.h"
#include "service/grpc/watch_reactor.h"

namespace uploadwatch {
namespace v1 = ::metrika::offline_conversions::v1;

UploadingServiceImpl::UploadingServiceImpl(ServiceDeps deps)
    : deps_(std::move(deps)),
      hub_(deps_.hub),
      history_(deps_.clock, LocalChangeHistory::Options{}) {}

namespace {

// One unary call whose caller may give up: the hub's answer and gRPC's
// OnCancel (the client cancelled, or its deadline passed) race to finish it,
// exactly once and with one log line. A cancel also leaves the hub's wait,
// so that Metrica work nobody waits for any more is dropped (CallerWait).
// Deletes itself in OnDone.
//
// gRPC hands the reactor between its threads inside its own, uninstrumented
// code, so every touch of the call's fields after the handler returns is
// under `mu_`, which the handler takes last and OnDone takes before the
// delete: the order is ours, and visible to ThreadSanitizer.
class UnaryCall final : public grpc::ServerUnaryReactor {
 public:
  // Finishes the call with `status` (its response filled first), or does
  // nothing if it is finished already. May run on any thread, also after
  // OnDone: it touches the call only if it is the one that finishes it.
  using Answer = std::function<void(const absl::Status& status)>;

  UnaryCall(const ServiceDeps& deps, grpc::CallbackServerContext* context,
            const char* method, int32_t counter, int64_t id, absl::Time start)
      : ticket_(deps.reactors->Enter()),
        finished_(std::make_shared<std::atomic<bool>>(false)),
        log_(deps.log),
        clock_(deps.clock),
        method_(method),
        counter_(counter),
        id_(id),
        start_(start),
        deadline_(context->deadline() ==
                          std::chrono::system_clock::time_point::max()
                      ? absl::InfiniteFuture()
                      : absl::FromChrono(context->deadline())) {}

  // `fill_on_ok()` writes the response of a successful answer, only if that
  // answer finishes the call.
  Answer Answerer(std::function<void()> fill_on_ok = nullptr) {
    return [this, finished = finished_, fill = std::move(fill_on_ok)](
               const absl::Status& status) {
      if (finished->exchange(true)) return;  // cancelled first
      absl::MutexLock lock(&mu_);
      if (status.ok() && fill) fill();
      FinishLocked(status);
    };
  }
  // Before the hub is asked: names the token in the log line.
  void set_token_fingerprint(std::string fp) {
    absl::MutexLock lock(&mu_);
    token_fingerprint_ = std::move(fp);
  }
  // Hands over the hub's wait, left at once if the call was cancelled
  // meanwhile. The handler's last touch of the call.
  void Wait(CallerWait wait) {
    HandOffToGrpc(this);  // OnCancel may come next, on another thread
    {
      absl::MutexLock lock(&mu_);
      if (!cancelled_) {
        wait_ = std::move(wait);
        return;
      }
    }
    wait.Leave();
  }

  void OnCancel() override {
    ReceiveFromGrpc(this);
    CallerWait left;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      left = std::move(wait_);
    }
    left.Leave();  // the hub takes its own locks: not under ours
    absl::MutexLock lock(&mu_);
    if (finished_->exchange(true)) return;  // answered first
    // gRPC reports both as a cancel; the log should say which it was.
    FinishLocked(absl::Now() >= deadline_
                     ? absl::DeadlineExceededError(
                           "the client's deadline passed before the answer")
                     : absl::CancelledError(
                           "the client cancelled the call before the answer"));
  }
  void OnDone() override {
    ReceiveFromGrpc(this);
    { absl::MutexLock lock(&mu_); }  // after every other touch (see above)
    delete this;  // ticket_ goes last
  }

 private:
  void FinishLocked(const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    log_->Log(method_, counter_, id_, status, clock_->Now() - start_,
              token_fingerprint_);
    HandOffToGrpc(this);
    Finish(ToGrpcStatus(status));
  }

  const ReactorTracker::Ticket ticket_;  // first: it goes last
  // Shared with the answer callbacks, which may outlive the call.
  const std::shared_ptr<std::atomic<bool>> finished_;
  const RpcLog* const log_;
  const Clock* const clock_;
  const char* const method_;
  const int32_t counter_;
  const int64_t id_;
  const absl::Time start_;
  const absl::Time deadline_;
  absl::Mutex mu_;
  std::string token_fingerprint_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  CallerWait wait_ ABSL_GUARDED_BY(mu_);
};

// Answers a call in the handler itself, on gRPC's default reactor: nothing
// of ours is left to run after Finish, so the call needs no reactor (or
// ticket) of its own. For answers known at once: request errors and
// cached Gets.
grpc::ServerUnaryReactor* FinishAtOnce(grpc::CallbackServerContext* context,
                                       const ServiceDeps& deps,
                                       const char* method, int32_t counter,
                                       int64_t id, const absl::Status& status,
                                       absl::Time start,
                                       absl::string_view token_fingerprint) {
  deps.log->Log(method, counter, id, status, deps.clock->Now() - start,
                token_fingerprint);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// The shape every unary rpc shares: check the request, pick the token, let
// `cached(credentials)` answer at once if it can (fills the response, true),
// else add the caller's identity and hand the call to
// `launch(credentials, call)`, which starts the hub's work with answers from
// `call->Answerer(...)` and returns the hub's wait.
template <typename Cached, typename Launch>
grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* context,
                                   const ServiceDeps& deps,
                                   const char* method, int32_t counter,
                                   int64_t id, const absl::Status& valid,
                                   Cached cached, Launch launch) {
  // This handler's ticket (see ReactorTracker), for the hub code that runs
  // on this gRPC thread until `launch` returns (it may answer inline); the
  // call holds its own until OnDone.
  const ReactorTracker::Ticket handler = deps.reactors->Enter();
  const absl::Time start = deps.clock->Now();
  if (!valid.ok()) {
    return FinishAtOnce(context, deps, method, counter, id, valid, start, "");
  }
  absl::StatusOr<Credentials> credentials =
      CallerToken(*context, deps.callers);
  if (!credentials.ok()) {
    return FinishAtOnce(context, deps, method, counter, id,
                        credentials.status(), start, "");
  }
  if (cached(*credentials)) {
    return FinishAtOnce(context, deps, method, counter, id, absl::OkStatus(),
                        start, credentials->fingerprint());
  }
  AddCallerIdentity(*context, deps.callers, *credentials);
  auto* call = new UnaryCall(deps, context, method, counter, id, start);
  call->set_token_fingerprint(credentials->fingerprint());
  // The call, and so its response message, lives until Finish; OnDone (and
  // so `delete call`) cannot run before this handler returns.
  call->Wait(launch(*credentials, call));
  return call;
}

// The bytes of a GetUploadingResponse holding `uploading`, the same the
// generated code writes for the message (field 1, length-delimited), without
// building the message: a cached answer is serialized from the cache's own
// state, not from a copy of it.
void SerializeGetResponse(const v1::Uploading& uploading,
                          grpc::ByteBuffer* out) {
  using ::google::protobuf::io::CodedOutputStream;
  constexpr uint32_t kUploadingTag = (1 << 3) | 2;  // field 1, LEN
  const size_t inner = uploading.ByteSizeLong();
  grpc::Slice slice(CodedOutputStream::VarintSize32(kUploadingTag) +
                    CodedOutputStream::VarintSize32(inner) + inner);
  uint8_t* p = const_cast<uint8_t*>(slice.begin());
  p = CodedOutputStream::WriteVarint32ToArray(kUploadingTag, p);
  p = CodedOutputStream::WriteVarint32ToArray(static_cast<uint32_t>(inner), p);
  uploading.SerializeWithCachedSizesToArray(p);
  grpc::ByteBuffer bytes(&slice, 1);
  out->Swap(&bytes);
}

// The request of a raw method, parsed as the generated code would; the
// DecodeErrorInterceptor's INVALID_ARGUMENT when the bytes do not parse.
template <typename Request>
absl::StatusOr<Request> ParseRequest(const grpc::ByteBuffer& raw,
                                     absl::string_view method) {
  Request request;
  grpc::ByteBuffer bytes(raw);  // Deserialize consumes it
  if (!grpc::SerializationTraits<Request>::Deserialize(&bytes, &request)
           .ok()) {
    return UndecodableRequest(method);
  }
  return request;
}

}  // namespace

grpc::ServerUnaryReactor* UploadingServiceImpl::GetUploading(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* response) {
  absl::StatusOr<v1::GetUploadingRequest> request =
      ParseRequest<v1::GetUploadingRequest>(*raw_request, "GetUploading");
  if (!request.ok()) {
    const ReactorTracker::Ticket handler = deps_.reactors->Enter();
    return FinishAtOnce(context, deps_, "GetUploading", 0, 0,
                        request.status(), deps_.clock->Now(), "");
  }
  const int32_t counter = request->counter_id();
  const int64_t id = request->uploading_id();
  return RunUnary(
      context, deps_, "GetUploading", counter, id, ValidateIds(counter, id),
      [this, counter, id, response](const Credentials& credentials) {
        return hub_->UseCached(credentials, counter, id,
                               [response](const UploadingState& state) {
                                 SerializeGetResponse(state.uploading,
                                                      response);
                               });
      },
      [this, counter, id, response](const Credentials& credentials,
                                    UnaryCall* call) {
        // The answer's state, serialized into the response only by the
        // answer that finishes the call.
        auto state = std::make_shared<absl::StatusOr<UploadingState>>();
        UnaryCall::Answer answer = call->Answerer([state, response] {
          SerializeGetResponse((*state)->uploading, response);
        });
        return hub_->Get(credentials, counter, id,
                         [state, answer](absl::StatusOr<UploadingState> s) {
                           *state = std::move(s);
                           answer(state->status());
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
      [](const Credentials&) { return false; },  // the hub's list cache
      [this, params, response](const Credentials& credentials,
                               UnaryCall* call) {
        auto list =
            std::make_shared<absl::StatusOr<v1::ListUploadingsResponse>>();
        UnaryCall::Answer answer = call->Answerer(
            [list, response] { *response = std::move(**list); });
        return hub_->List(
            credentials, params,
            [list, answer](absl::StatusOr<v1::ListUploadingsResponse> l) {
              *list = std::move(l);
              answer(list->status());
            });
      });
}

grpc::ServerWriteReactor<grpc::ByteBuffer>*
UploadingServiceImpl::WatchUploading(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request) {
  return new WatchReactor(
      deps_, context,
      ParseRequest<v1::WatchUploadingRequest>(*request, "WatchUploading"));
}

grpc::ServerWriteReactor<grpc::ByteBuffer>*
UploadingServiceImpl::WatchUploadings(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request) {
  return new CounterWatchReactor(
      deps_, &history_, context,
      ParseRequest<v1::WatchUploadingsRequest>(*request, "WatchUploadings"));
}

}  // namespace uploadwatch
