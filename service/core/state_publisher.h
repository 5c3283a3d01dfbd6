#ifndef UPLOADWATCH_SERVICE_CORE_STATE_PUBLISHER_H_
#define UPLOADWATCH_SERVICE_CORE_STATE_PUBLISHER_H_

#include "service/core/state_cache.h"

namespace uploadwatch {

// Where the states this replica observes go for the other replicas (the
// shared history, service/redis/stream_bridge.h). The hub calls Publish for
// every state its own fetches recorded, changed or not, with the version it
// gave it (a new lease holder whose state did not change must still put it in
// an empty history; the publisher drops versions already there); states that
// came from other replicas (UploadingHub::ObserveShared) are not offered. Must not block (it runs on the upstream I/O thread) and
// may drop what it cannot deliver: whoever publishes is the lease holder, and
// it decides. Thread-safe.
class StatePublisher {
 public:
  virtual ~StatePublisher() = default;
  virtual void Publish(const UploadingKey& key, const UploadingState& state) = 0;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_STATE_PUBLISHER_H_
