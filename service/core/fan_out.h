#ifndef UPLOADWATCH_SERVICE_CORE_FAN_OUT_H_
#define UPLOADWATCH_SERVICE_CORE_FAN_OUT_H_

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/core/executor.h"
#include "service/core/state_cache.h"
#include "service/core/subscriber.h"

namespace uploadwatch {

// Delivers states and errors to subscribers on an Executor, never on the
// caller's thread (so never on the upstream I/O thread). Per subscriber,
// calls are in order and never overlap; a state whose version is not above
// the last one delivered for its uploading is dropped (no duplicates, never
// backwards), except that the same version with a later check_time goes to
// OnConfirmed. What is queued for a subscriber goes out in one stretch,
// without the fan-out's lock, followed by OnDrained (see Subscriber).
// Remove() waits only for a delivery to that subscriber in progress (the
// rest of its stretch is dropped): there is no global delivery lock.
// Thread-safe.
class FanOut {
 public:
  // `executor` is not owned and must outlive the fan-out.
  explicit FanOut(Executor* executor) : executor_(executor) {}
  FanOut(const FanOut&) = delete;
  FanOut& operator=(const FanOut&) = delete;

  // Makes `subscriber` reachable; Posts to a subscriber not added are dropped.
  void Add(Subscriber* subscriber);
  // Once it returns, `subscriber` is never called again. Idempotent; may be
  // called from the subscriber's own delivery (it then does not wait).
  void Remove(Subscriber* subscriber);

  void Post(const std::vector<Subscriber*>& to,
            std::shared_ptr<const UploadingState> state);
  // The last call a subscriber gets; later posts to it are dropped.
  void PostError(const std::vector<Subscriber*>& to, const absl::Status& error);

  size_t size() const;

 private:
  struct Item {
    std::shared_ptr<const UploadingState> state;  // null: `error`
    absl::Status error;
  };
  struct Mailbox {
    // A vector, not a deque: an empty deque allocates, and there is one
    // mailbox per open watch.
    std::vector<Item> items;
    bool scheduled = false;   // a drain task will run or is running
    bool delivering = false;  // a call is in progress
    std::thread::id delivering_on;
    bool closed = false;   // an error was posted, or Remove(): nothing after
    bool removed = false;  // Remove() was called
    bool drain_erases = false;  // ... from inside its own delivery
    // `removed`, readable without mu_ by the drain delivering to it.
    std::atomic<bool> gone{false};
    bool closed_seen = false;  // OnError was called (by the delivering drain)
    struct Delivered {
      int64_t version = 0;
      absl::Time check_time;
    };
    absl::flat_hash_map<int64_t, Delivered> delivered;  // by uploading id
  };

  void PostItem(const std::vector<Subscriber*>& to, const Item& item);
  // Delivers everything queued for `batch`, one subscriber after the other.
  void Drain(const std::vector<Subscriber*>& batch);

  Executor* const executor_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<Subscriber*, std::unique_ptr<Mailbox>> boxes_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_FAN_OUT_H_
