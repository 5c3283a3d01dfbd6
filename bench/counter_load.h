#ifndef UPLOADWATCH_BENCH_COUNTER_LOAD_H_
#define UPLOADWATCH_BENCH_COUNTER_LOAD_H_

#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "metrika/offline_conversions/v1/uploading_service.grpc.pb.h"

namespace uploadwatch::bench {

namespace v1 = ::metrika::offline_conversions::v1;

// Many WatchUploadings (counter) streams on the callback API, recording when
// each (uploading, marker) event arrives: the dashboards of issue 11.
// Thread-safe.
class CounterFleet {
 public:
  struct Delivery {
    absl::Time observe_time;  // the event's observe_time
    absl::Time last_receipt;  // latest arrival among its receivers
    int receivers = 0;
  };
  // (uploading id, marker = linked_quantity) -> delivery.
  using Deliveries = absl::flat_hash_map<std::pair<int64_t, int32_t>, Delivery>;

  CounterFleet();
  ~CounterFleet();  // cancels what is still open and waits for it
  CounterFleet(const CounterFleet&) = delete;
  CounterFleet& operator=(const CounterFleet&) = delete;

  // Opens `streams` counter watches of `counter_id`, round-robin over
  // `channels`.
  void Open(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
            int32_t counter_id, int streams);
  // Until every stream had its `synced` message (false on timeout / end).
  bool AwaitSynced(absl::Duration timeout);
  // Until `count` events carrying `marker` arrived.
  bool AwaitMarker(int32_t marker, int count, absl::Duration timeout);
  Deliveries deliveries();
  int ended();
  bool CancelAll(absl::Duration timeout = absl::Seconds(30));

 private:
  class Stream;
  void Record(const v1::WatchUploadingsResponse& message, absl::Time now);
  void Ended();

  std::vector<std::unique_ptr<v1::UploadingService::Stub>> stubs_;
  std::vector<std::unique_ptr<Stream>> streams_;
  absl::Mutex mu_;
  int synced_ ABSL_GUARDED_BY(mu_) = 0;
  int ended_ ABSL_GUARDED_BY(mu_) = 0;
  Deliveries deliveries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int32_t, int> marker_counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch::bench

#endif  // UPLOADWATCH_BENCH_COUNTER_LOAD_H_
