// bare_server: the baseline of the benchmarks, "what gRPC alone costs here".
// The same generated UploadingService on the same gRPC build and flags as
// uploadwatch, with handlers that do nothing of their own:
// - GetUploading answers a canned response: the uploading uploadwatch serves
//   in the benchmark, so the same bytes go over the wire.
// - WatchUploading sends the requested uploading once and holds the stream
//   until the client leaves. On SIGUSR1 the watches of the first N watched
//   uploadings (N = the signal's sigqueue value; 0: all) get the next state
//   (linked_quantity and version one higher, observe_time = the signal's
//   arrival), at most one write in flight per stream and the latest state
//   winning, as uploadwatch does: the fan-out baseline.
//
//   bazel-bin/bench/bare_server --listen=127.0.0.1:0
//
// Prints "bare_server: serving on port N" on stderr once it accepts; stops
// on SIGINT/SIGTERM.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/workload.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "metrika/offline_conversions/v1/uploading_service.grpc.pb.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "gRPC listen address host:port");

namespace uploadwatch::bench {
namespace {

// The state of watched uploading `id` after `marker` broadcasts.
v1::WatchUploadingResponse WatchMessage(int64_t id, int32_t marker,
                                        absl::Time observed) {
  v1::WatchUploadingResponse message;
  *message.mutable_uploading() =
      MakeUploading(id, v1::Uploading::MATCHED, marker);
  message.set_version(marker + 1);
  *message.mutable_observe_time() =
      google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
          absl::ToUnixNanos(observed));
  *message.mutable_check_time() = message.observe_time();
  return message;
}

class HoldReactor;

// The open watches. Lock order: the registry's, then a reactor's.
class Registry {
 public:
  // Sends `reactor` the current state and includes it in broadcasts.
  void Join(HoldReactor* reactor);
  // Once it returns, Broadcast() no longer touches `reactor`.
  void Remove(HoldReactor* reactor) {
    absl::MutexLock lock(&mu_);
    open_.erase(reactor);
  }
  // The next state to the watchers of uploadings below
  // kFirstWatchedId + `uploadings` (0: to every watcher).
  void Broadcast(int uploadings);

 private:
  absl::Mutex mu_;
  int32_t marker_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_set<HoldReactor*> open_ ABSL_GUARDED_BY(mu_);
};

class HoldReactor
    : public grpc::ServerWriteReactor<v1::WatchUploadingResponse> {
 public:
  HoldReactor(Registry* registry, int64_t uploading_id)
      : registry_(registry), uploading_id_(uploading_id) {
    registry_->Join(this);
  }

  int64_t uploading_id() const { return uploading_id_; }

  // Queues the state after `marker` broadcasts; the latest one wins.
  void Send(int32_t marker, absl::Time observed) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    pending_ = WatchMessage(uploading_id_, marker, observed);
    MaybeWriteLocked();
  }

  void OnWriteDone(bool /*ok*/) override {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    MaybeWriteLocked();
  }
  void OnCancel() override {
    registry_->Remove(this);
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    MaybeWriteLocked();
  }
  void OnDone() override {
    registry_->Remove(this);
    delete this;
  }

 private:
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || write_in_flight_) return;
    if (cancelled_) {
      finished_ = true;
      Finish(grpc::Status::CANCELLED);
    } else if (pending_) {
      in_flight_ = *std::move(pending_);
      pending_.reset();
      write_in_flight_ = true;
      StartWrite(&in_flight_);
    }
  }

  Registry* const registry_;
  const int64_t uploading_id_;
  absl::Mutex mu_;
  std::optional<v1::WatchUploadingResponse> pending_ ABSL_GUARDED_BY(mu_);
  v1::WatchUploadingResponse in_flight_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

void Registry::Join(HoldReactor* reactor) {
  absl::MutexLock lock(&mu_);
  open_.insert(reactor);
  reactor->Send(marker_, absl::Now());
}

void Registry::Broadcast(int uploadings) {
  const absl::Time observed = absl::Now();
  absl::MutexLock lock(&mu_);
  ++marker_;
  for (HoldReactor* reactor : open_) {
    if (uploadings == 0 ||
        reactor->uploading_id() < kFirstWatchedId + uploadings) {
      reactor->Send(marker_, observed);
    }
  }
}

class BareService final : public v1::UploadingService::CallbackService {
 public:
  BareService() {
    *get_.mutable_uploading() =
        MakeUploading(kTerminalId, v1::Uploading::PROCESSED);
  }

  Registry& registry() { return registry_; }

  grpc::ServerUnaryReactor* GetUploading(
      grpc::CallbackServerContext* context,
      const v1::GetUploadingRequest* /*request*/,
      v1::GetUploadingResponse* response) override {
    *response = get_;
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<v1::WatchUploadingResponse>* WatchUploading(
      grpc::CallbackServerContext* /*context*/,
      const v1::WatchUploadingRequest* request) override {
    return new HoldReactor(&registry_, request->uploading_id());
  }

 private:
  v1::GetUploadingResponse get_;
  Registry registry_;
};

}  // namespace
}  // namespace uploadwatch::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // Taken by sigwait below; blocked before any thread starts so that every
  // thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  uploadwatch::bench::BareService service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "bare_server: cannot listen on %s\n",
                 absl::GetFlag(FLAGS_listen).c_str());
    return 1;
  }
  std::fprintf(stderr, "bare_server: serving on port %d\n", port);

  for (;;) {
    siginfo_t info;
    const int signal = sigwaitinfo(&signals, &info);
    if (signal == SIGUSR1) {
      service.registry().Broadcast(info.si_value.sival_int);
    } else if (signal == SIGINT || signal == SIGTERM) {
      break;
    }
  }
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  return 0;
}
