#ifndef UPLOADWATCH_SERVICE_CORE_SUBSCRIBER_H_
#define UPLOADWATCH_SERVICE_CORE_SUBSCRIBER_H_

#include "absl/status/status.h"
#include "service/core/state_cache.h"

namespace uploadwatch {

// A watcher of a WatchTarget (one uploading, or a whole counter). Calls come
// from the FanOut's executor, never from the upstream I/O thread, one at a
// time and in order for one subscriber. They must not block and must not
// call Subscribe or Unsubscribe.
class Subscriber {
 public:
  virtual ~Subscriber() = default;
  // A state of a watched uploading: the current one first, then each change;
  // per uploading, versions only grow. After a terminal state of an
  // uploading target no further call comes (a counter target goes on).
  virtual void OnState(const UploadingState& state) = 0;
  // A state already given to OnState (same version) was confirmed again with
  // Metrica, at `state.check_time` (later than any before). Only counter
  // targets get these (every poll round lists all their uploadings), for
  // "checked N s ago"; ignored unless overridden.
  virtual void OnConfirmed(const UploadingState& state) {}
  // The watch is over: a permanent upstream error, or shutdown. The last call.
  virtual void OnError(const absl::Status& status) = 0;
  // Everything queued for this subscriber so far has been delivered: after
  // every stretch of OnState/OnConfirmed calls, on the same thread, before
  // any later call (more may follow). Where a subscriber that batches (a
  // counter watch gets one call per uploading of a poll round) writes the
  // batch; ignored unless overridden. Never after OnError.
  virtual void OnDrained() {}
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_SUBSCRIBER_H_
