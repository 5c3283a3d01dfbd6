#ifndef UPLOADWATCH_BENCH_LOAD_H_
#define UPLOADWATCH_BENCH_LOAD_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "metrika/offline_conversions/v1/uploading_service.grpc.pb.h"

namespace uploadwatch::bench {

namespace v1 = ::metrika::offline_conversions::v1;

// `n` channels to `target`, each on a TCP connection of its own (by default
// gRPC shares one connection between channels with equal arguments).
std::vector<std::shared_ptr<grpc::Channel>> MakeChannels(
    const std::string& target, int n);

struct UnaryFigures {
  double qps = 0;  // OK answers per second within the measured window
  double server_cpu_us_per_call = 0;  // the server's CPU time per OK answer
  double client_cpu_us_per_call = 0;  // this process's CPU time per OK answer
  int64_t failed = 0;                 // non-OK answers within the whole run
};

// A closed loop of GetUploading calls on the callback API: every channel
// keeps `outstanding_per_channel` calls in flight, each answer starts the
// next. Runs `warmup`, then measures for `duration`; returns when every
// call has ended. `server_cpu_seconds` reads the server's CPU time so far.
// Whatever else this process runs counts as client CPU.
UnaryFigures RunUnaryLoad(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels,
    const v1::GetUploadingRequest& request, int outstanding_per_channel,
    absl::Duration warmup, absl::Duration duration,
    const std::function<double()>& server_cpu_seconds);

// The same closed loop, for exactly `calls` calls (fewer only if the loop
// could not start them all): for instruction counts, which want a known
// number of calls rather than a time. Returns the non-OK answers.
int64_t RunUnaryCalls(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels,
    const v1::GetUploadingRequest& request, int outstanding_per_channel,
    int64_t calls);

// Calls GetUploading once every `every`, one call at a time, on a thread of
// its own, and records each call's latency: how a dashboard's Gets fare
// while the server is busy with something else. Thread-safe.
class UnaryProbe {
 public:
  struct Sample {
    absl::Time start;
    absl::Duration latency;
    bool ok = false;
  };

  UnaryProbe(std::shared_ptr<grpc::Channel> channel,
             const v1::GetUploadingRequest& request, absl::Duration every);
  // Stops the thread (after the call in progress).
  ~UnaryProbe();
  UnaryProbe(const UnaryProbe&) = delete;
  UnaryProbe& operator=(const UnaryProbe&) = delete;

  // Calls that started in [from, to).
  std::vector<Sample> SamplesBetween(absl::Time from, absl::Time to);

 private:
  void Loop();

  const std::unique_ptr<v1::UploadingService::Stub> stub_;
  const v1::GetUploadingRequest request_;
  const absl::Duration every_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Sample> samples_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// CPU time (user + system) of this process so far.
double OwnCpuSeconds();

// Many WatchUploading streams on the callback API (no thread per stream),
// recording when each message arrives. Thread-safe.
class WatchFleet {
 public:
  // Who received one version of one uploading, and when.
  struct Delivery {
    absl::Time observe_time;  // the message's observe_time
    absl::Time last_receipt;  // latest arrival among its receivers
    int32_t marker = 0;       // the uploading's linked_quantity
    int receivers = 0;
  };
  using Deliveries = absl::flat_hash_map<std::pair<int64_t, int64_t>, Delivery>;

  WatchFleet();
  // Cancels what is still open and waits for it.
  ~WatchFleet();
  WatchFleet(const WatchFleet&) = delete;
  WatchFleet& operator=(const WatchFleet&) = delete;

  // Opens `streams` watches, spread evenly over `channels` and, on each
  // channel, over `uploading_ids` (stream i: channel i % C, uploading
  // (i / C) % U): every connection is a dashboard of many uploadings.
  void Open(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
            int32_t counter_id, const std::vector<int64_t>& uploading_ids,
            int streams);

  // Waits until every stream has had its first message (false on timeout
  // or when a stream ended).
  bool AwaitFirstMessages(absl::Duration timeout);
  // Waits until `count` messages carrying `marker` have arrived.
  bool AwaitMarker(int32_t marker, int count, absl::Duration timeout);

  // Every (uploading id, version) received so far.
  Deliveries deliveries();
  int streams_with_message();
  // Streams that ended (a watch of a non-terminal uploading never should).
  int ended();

  // Cancels every stream and waits until all have ended.
  bool CancelAll(absl::Duration timeout = absl::Seconds(30));

 private:
  class Stream;

  void Record(const v1::WatchUploadingResponse& message, bool first,
              absl::Time now);
  void Ended();

  std::vector<std::unique_ptr<v1::UploadingService::Stub>> stubs_;
  std::vector<std::unique_ptr<Stream>> streams_;

  absl::Mutex mu_;
  int with_message_ ABSL_GUARDED_BY(mu_) = 0;
  int ended_ ABSL_GUARDED_BY(mu_) = 0;
  Deliveries deliveries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int32_t, int> marker_counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch::bench

#endif  // UPLOADWATCH_BENCH_LOAD_H_
