#ifndef UPLOADWATCH_CLIENT_TESTING_SCRIPTED_SERVICE_H_
#define UPLOADWATCH_CLIENT_TESTING_SCRIPTED_SERVICE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "metrika/offline_conversions/v1/uploading_service.grpc.pb.h"
#include "service/common/status_details.h"

namespace uploadwatch::client_testing {

namespace v1 = ::metrika::offline_conversions::v1;

// An UploadingService that answers from scripts: what the real server cannot
// be made to do on cue (rotate a stream after exactly these messages, send a
// reset, end OK). Set the scripts before the first call.
class ScriptedService final : public v1::UploadingService::Service {
 public:
  // One streaming call: its messages, then its status; with `hang`, the
  // stream then stays open until the client cancels or its deadline passes.
  template <typename Message>
  struct StreamScript {
    std::vector<Message> messages;
    absl::Status status;
    bool hang = false;
  };
  using WatchScript = StreamScript<v1::WatchUploadingResponse>;
  using CounterWatchScript = StreamScript<v1::WatchUploadingsResponse>;

  absl::Status get_status;
  std::vector<WatchScript> watches;                 // one per call, in order
  std::vector<CounterWatchScript> counter_watches;  // one per call, in order

  // Makes the scripts set so far visible to the server's threads (the
  // handlers read them under mu_). ScriptedServer::address() and Channel()
  // call it, so set the scripts before taking either: a call may come from
  // another process (the CLI), an ordering ThreadSanitizer cannot see.
  void Publish() const { absl::MutexLock lock(&mu_); }

  int watch_calls() const {
    absl::MutexLock lock(&mu_);
    return watch_calls_;
  }
  // The WatchUploadings requests received, in order.
  std::vector<v1::WatchUploadingsRequest> counter_watch_requests() const {
    absl::MutexLock lock(&mu_);
    return counter_watch_requests_;
  }

  grpc::Status GetUploading(grpc::ServerContext*, const v1::GetUploadingRequest*,
                            v1::GetUploadingResponse*) override {
    return ToGrpcStatus(get_status);
  }
  grpc::Status WatchUploading(
      grpc::ServerContext*, const v1::WatchUploadingRequest*,
      grpc::ServerWriter<v1::WatchUploadingResponse>* writer) override {
    const WatchScript* script = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (watch_calls_ < static_cast<int>(watches.size())) {
        script = &watches[watch_calls_];
      }
      ++watch_calls_;
    }
    return Play(script, writer, nullptr);
  }
  grpc::Status WatchUploadings(
      grpc::ServerContext* context, const v1::WatchUploadingsRequest* request,
      grpc::ServerWriter<v1::WatchUploadingsResponse>* writer) override {
    const CounterWatchScript* script = nullptr;
    {
      absl::MutexLock lock(&mu_);
      const size_t call = counter_watch_requests_.size();
      if (call < counter_watches.size()) script = &counter_watches[call];
      counter_watch_requests_.push_back(*request);
    }
    return Play(script, writer, context);
  }

 private:
  template <typename Message>
  static grpc::Status Play(const StreamScript<Message>* script,
                           grpc::ServerWriter<Message>* writer,
                           grpc::ServerContext* context) {
    if (script == nullptr) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "no script left");
    }
    for (const Message& m : script->messages) writer->Write(m);
    if (script->hang && context != nullptr) {
      // A test server's own thread, not a reaction: polling is harmless.
      while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(5));
      return grpc::Status::CANCELLED;
    }
    return ToGrpcStatus(script->status);
  }

  mutable absl::Mutex mu_;
  int watch_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::WatchUploadingsRequest> counter_watch_requests_
      ABSL_GUARDED_BY(mu_);
};

// A real gRPC server on a free loopback port serving a ScriptedService.
class ScriptedServer {
 public:
  ScriptedServer() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    EXPECT_NE(server_, nullptr);
  }
  ~ScriptedServer() { server_->Shutdown(); }

  ScriptedService& service() { return service_; }
  std::string address() const {
    service_.Publish();
    return absl::StrCat("127.0.0.1:", port_);
  }
  std::shared_ptr<grpc::Channel> Channel() const {
    service_.Publish();
    return grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
  }

 private:
  ScriptedService service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace uploadwatch::client_testing

#endif  // UPLOADWATCH_CLIENT_TESTING_SCRIPTED_SERVICE_H_
