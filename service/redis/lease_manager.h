#ifndef UPLOADWATCH_SERVICE_REDIS_LEASE_MANAGER_H_
#define UPLOADWATCH_SERVICE_REDIS_LEASE_MANAGER_H_

#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "service/redis/poll_ownership.h"
#include "service/redis/redis_connection.h"

namespace uploadwatch::redis {

struct LeaseOptions {
  // How long a lease outlives its holder's last renewal: a crashed poller's
  // groups move to another replica within this time.
  absl::Duration ttl = absl::Seconds(10);
  // How often held leases are renewed and free ones tried; ttl/3 leaves two
  // failed renewals before the lease expires.
  absl::Duration renew_interval = absl::ZeroDuration();  // zero: ttl / 3
  // This replica's name in Redis (the lease's value); unique per process.
  // Empty: host name, pid and a random number.
  std::string owner_id;
};

// PollOwnership across replicas: one lease per group in Redis, acquired with
// `SET key owner NX PX ttl`, renewed by compare-and-expire and released by
// compare-and-delete (Lua), so only the holder can extend or end it.
//
// Fallback contract: while the connection is not kConnected, ShouldPoll is
// true for every wanted group (each replica polls on its own, bounded by the
// fallback parallel cap); once Redis answers again the leases decide again
// and the change callback reports the groups this replica stops polling.
//
// The holder counts its lease as lost at send time of its last successful
// renewal plus ttl (never later than Redis, which counts from receipt), so two
// replicas never both believe they hold a lease while Redis is reachable.
//
// The change callback runs on the connection's loop thread.
class LeaseManager : public PollOwnership {
 public:
  // `connection` is not owned and must outlive this object.
  LeaseManager(RedisConnection* connection, LeaseOptions options,
               ChangeCallback on_change);
  // Stops renewing without releasing, exactly like a crash: other replicas
  // take over when the leases expire. Call ReleaseAll first to hand over at
  // once. Not on the loop thread.
  ~LeaseManager() override;

  void Want(const std::string& group) override;
  // Releases the lease (compare-and-delete) when held.
  void Unwant(const std::string& group) override;
  bool ShouldPoll(const std::string& group) const override;

  // Held in Redis according to the last answer (ShouldPoll without the
  // fallback).
  bool Holds(const std::string& group) const;
  // Releases every held lease; `done` runs on the loop thread once Redis
  // answered (or failed) for each. For shutdown: call it, wait for `done`,
  // then destroy this object; groups stay wanted, so a later round (TTL/3)
  // would take leases again.
  void ReleaseAll(absl::AnyInvocable<void()> done);

  // Groups whose lease this replica holds now (for metrics).
  int HeldCount() const;

  const std::string& owner_id() const { return owner_id_; }
  // The Redis key of `group`'s lease, for fencing writes (StateStream).
  std::string LeaseKey(const std::string& group) const;

 private:
  struct State;
  std::string owner_id_;
  std::shared_ptr<State> state_;
};

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_LEASE_MANAGER_H_
