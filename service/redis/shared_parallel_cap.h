#ifndef UPLOADWATCH_SERVICE_REDIS_SHARED_PARALLEL_CAP_H_
#define UPLOADWATCH_SERVICE_REDIS_SHARED_PARALLEL_CAP_H_

#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/redis/redis_connection.h"

namespace uploadwatch::redis {

struct ParallelCapOptions {
  // Requests one token may have at Metrica at once, over all replicas
  // (Metrica allows 3).
  int cap = 3;
  // A holder not released within this time is dropped, so a dead replica's
  // slots come back. Must exceed the longest upstream request.
  absl::Duration holder_ttl = absl::Seconds(60);
  // Per token and replica while Redis is unreachable (--redis_fallback_parallel):
  // N replicas never exceed N times this.
  int fallback_parallel = 1;
  // How often a full cap is asked again while a caller waits.
  absl::Duration retry_interval = absl::Milliseconds(25);
  // This replica's name (holder ids start with it). Empty: MakeReplicaId().
  std::string owner_id;
};

class SharedParallelCap;

// One permission to have a request at Metrica. Move-only; destroying it (or
// Release) gives the slot back. Must not outlive its SharedParallelCap's
// connection; outliving the cap itself is harmless (it then does nothing and
// the Redis holder expires).
class ParallelSlot {
 public:
  ParallelSlot() = default;
  ParallelSlot(ParallelSlot&& other) noexcept;
  ParallelSlot& operator=(ParallelSlot&& other) noexcept;
  ~ParallelSlot();

  void Release();
  bool valid() const { return state_ != nullptr; }
  // Counted in Redis when granted (false: a local fallback slot).
  bool shared() const { return shared_; }

 private:
  friend class SharedParallelCap;
  struct CapState;
  std::shared_ptr<CapState> state_;
  std::string fingerprint_;
  std::string holder_;
  bool shared_ = false;
};

// The per-token parallel cap across replicas: a Redis sorted set per token
// fingerprint of holders scored by their expiry, changed only by one Lua
// script (drop expired holders; if fewer than `cap` remain, add this one).
//
// Fallback contract: while the connection is not kConnected, or when Redis
// fails to answer an acquire, the slot comes from a local cap of
// `fallback_parallel` per token at once (never waiting for Redis). Local slots
// still held when Redis is back are added to its set, so they count against
// the shared cap until released.
//
// Thread-safe. Callbacks run on the connection's loop thread.
class SharedParallelCap {
 public:
  using SlotCallback = absl::AnyInvocable<void(absl::StatusOr<ParallelSlot>)>;

  // `connection` is not owned and must outlive this object and its slots.
  SharedParallelCap(RedisConnection* connection, ParallelCapOptions options);
  ~SharedParallelCap();  // not on the loop thread

  // A slot for `token_fingerprint`, as soon as one is free; DEADLINE_EXCEEDED
  // when none is free before `deadline`.
  void Acquire(const std::string& token_fingerprint, absl::Time deadline,
               SlotCallback done);

  // Slots this replica holds now for the token (shared and local).
  int HeldByThisReplica(const std::string& token_fingerprint) const;
  std::string Key(const std::string& token_fingerprint) const;

 private:
  std::shared_ptr<ParallelSlot::CapState> state_;
};

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_SHARED_PARALLEL_CAP_H_
