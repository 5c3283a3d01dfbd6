#ifndef UPLOADWATCH_SERVICE_REDIS_REDIS_COORDINATOR_H_
#define UPLOADWATCH_SERVICE_REDIS_REDIS_COORDINATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "service/redis/event_loop.h"
#include "service/redis/group_wants.h"
#include "service/redis/lease_manager.h"
#include "service/redis/redis_connection.h"
#include "service/redis/shared_daily_budget.h"
#include "service/redis/shared_parallel_cap.h"
#include "service/redis/state_stream.h"

namespace uploadwatch::redis {

// The server flags of multi-replica mode, as main() parsed them.
struct MultiReplicaFlags {
  std::string redis;                // --redis=HOST:PORT; empty: single replica
  std::string redis_password_file;  // --redis_password_file
  std::string redis_key_prefix = "uploadwatch:";  // --redis_key_prefix
  int redis_fallback_parallel = 1;  // --redis_fallback_parallel
  int max_in_flight_per_token = 3;  // --max_in_flight_per_token
  int64_t daily_budget = 4000;      // --daily_budget
  DailyReset daily_reset;           // --daily_reset_zone
  absl::Duration lease_ttl = absl::Seconds(10);  // --redis_lease_ttl
};

struct CoordinatorOptions {
  RedisOptions redis;
  LeaseOptions lease;
  GroupWantsOptions wants;  // ttl: the lease's (OptionsFromFlags)
  ParallelCapOptions parallel_cap;
  SharedBudgetOptions daily_budget;
  StateStreamOptions history;
};

// Options for the flags; INVALID_ARGUMENT / FAILED_PRECONDITION with a
// message naming the flag to fix. `flags.redis` must not be empty.
absl::StatusOr<CoordinatorOptions> OptionsFromFlags(const MultiReplicaFlags& flags);

// Everything a replica shares through Redis, on one event-loop thread with
// two connections (commands, and the history reader that XREAD BLOCK holds).
// main() makes one when --redis is given and hands its parts to the core;
// each part's header states its fallback contract.
//
// Thread-safe. Destroy it after the core stopped using its parts, not on its
// loop thread.
class RedisCoordinator {
 public:
  // `on_poll_change` as LeaseManager's change callback, `on_wanted` as
  // GroupWants' (none: wants are written, never read).
  RedisCoordinator(CoordinatorOptions options,
                   PollOwnership::ChangeCallback on_poll_change,
                   GroupWants::WantedCallback on_wanted = nullptr);
  ~RedisCoordinator();

  LeaseManager& leases() { return *leases_; }
  GroupWants& wants() { return *wants_; }
  SharedParallelCap& parallel_cap() { return *parallel_cap_; }
  SharedDailyBudget& daily_budget() { return *daily_budget_; }
  StateStream& history() { return *history_; }

  // kConnected when both connections are; for health and metrics
  // ("degraded" is what operators should alert on).
  ConnectionState state() const;
  const std::string& replica_id() const { return replica_id_; }
  RedisConnection& commands() { return *commands_; }
  RedisConnection& reader() { return *reader_; }

 private:
  std::string replica_id_;
  EventLoop loop_;
  std::unique_ptr<RedisConnection> commands_;
  std::unique_ptr<RedisConnection> reader_;
  std::unique_ptr<LeaseManager> leases_;
  std::unique_ptr<GroupWants> wants_;
  std::unique_ptr<SharedParallelCap> parallel_cap_;
  std::unique_ptr<SharedDailyBudget> daily_budget_;
  std::unique_ptr<StateStream> history_;
};

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_REDIS_COORDINATOR_H_
