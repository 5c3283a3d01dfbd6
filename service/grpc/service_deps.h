#ifndef UPLOADWATCH_SERVICE_GRPC_SERVICE_DEPS_H_
#define UPLOADWATCH_SERVICE_GRPC_SERVICE_DEPS_H_

#include <string>

#include "service/common/clock.h"
#include "service/core/scheduler.h"
#include "service/core/uploading_hub.h"
#include "service/grpc/reactor_tracker.h"
#include "service/grpc/request_checks.h"
#include "service/grpc/rpc_log.h"
#include "service/grpc/watch_limits.h"

namespace uploadwatch {

class SharedChanges;

// What the rpcs need; none owned, all outlive every call.
struct ServiceDeps {
  UploadingHub* hub;
  const RpcLog* log;
  const Clock* clock;
  Scheduler* scheduler;  // for the watches' lifetime bound
  WatchLimits* limits;
  // Every call holds a ticket while it may touch the above (ReactorTracker).
  ReactorTracker* reactors;
  // The server's own token and how calls without one are treated.
  CallerPolicy callers;
  // Replicas on one Redis: counter watch positions every replica shares;
  // null in single-process mode.
  SharedChanges* shared_changes = nullptr;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_SERVICE_DEPS_H_
