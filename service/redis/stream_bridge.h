#ifndef UPLOADWATCH_SERVICE_REDIS_STREAM_BRIDGE_H_
#define UPLOADWATCH_SERVICE_REDIS_STREAM_BRIDGE_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "service/core/poll_ownership.h"
#include "service/core/state_publisher.h"
#include "service/core/uploading_hub.h"
#include "service/redis/redis_coordinator.h"

namespace uploadwatch::redis {

// Joins one replica's core to the others through its RedisCoordinator: the
// hub's PollOwnership (a lease per watched uploading) and its StatePublisher
// (the lease holder's observed changes go to the uploading's StateStream,
// fenced by the lease). While an uploading is wanted, its history is followed
// from the newest entry on, and every entry goes to the hub's
// ObserveShared: this replica's watchers get the holder's states with the
// holder's versions, and a replica that takes the lease over continues them.
// The holder publishes each version once (the hub offers every observation:
// a new holder fills an empty history with its current state).
//
// A version this replica gave on its own while not the holder (polling alone
// while Redis was unreachable, or a counter watch's list seeing a change
// before the holder) raises the uploading's version floor in Redis
// (StateStream::RaiseFloor; retried when the connection is back); the holder
// numbers its next state after it. So versions never go back across
// replicas: after such a divergence every replica converges on the holder's
// state with a version above all the ones shown.
//
// Degraded (Redis unreachable): LeaseManager's fallback (everyone polls what
// it watches); publishing fails at once and is dropped; following resumes
// from the last entry seen when the reader is back.
//
// Thread-safe. Life cycle: construct, Attach the hub (before its first
// watch), Detach before the hub is destroyed; destroy after the hub.
class StreamBridge : public PollOwnership, public StatePublisher {
 public:
  explicit StreamBridge(CoordinatorOptions options);
  ~StreamBridge() override;  // not on the loop thread

  void Attach(UploadingHub* hub);
  // After it returns the hub is never called again.
  void Detach();
  // Hands every held lease over at once (compare-and-delete), waiting at
  // most `limit`; for a graceful shutdown, after Detach.
  void ReleaseLeases(absl::Duration limit);

  RedisCoordinator& coordinator() { return *coordinator_; }

  // PollOwnership
  void Want(const std::string& name) override;
  void Unwant(const std::string& name) override;
  bool ShouldPoll(const std::string& name) const override;
  // StatePublisher
  void Publish(const UploadingKey& key, const UploadingState& state) override;

  // Entries from other replicas handed to the hub, and states this replica
  // published (for tests and the figures).
  int64_t delivered() const;
  int64_t published() const;

 private:
  void OnChange(const std::string& name, bool should_poll);
  void Follow(const std::string& name, uint64_t generation);
  void Deliver(const std::string& name, const StreamEntry& entry);
  // Raises `name`'s floor to `version` in Redis; remembered when that fails.
  void RaiseFloor(const std::string& name, int64_t version);
  // The command connection is back: the floors that could not be raised.
  void OnConnectionState(ConnectionState state);

  std::unique_ptr<RedisCoordinator> coordinator_;

  mutable absl::Mutex hub_mu_;
  UploadingHub* hub_ ABSL_GUARDED_BY(hub_mu_) = nullptr;

  mutable absl::Mutex mu_;
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
  // Followed names and the generation of their Want (a late Last answer
  // for an earlier one is dropped).
  absl::flat_hash_map<std::string, uint64_t> followed_ ABSL_GUARDED_BY(mu_);
  // The newest version known to be in each followed history (delivered, or
  // published by this replica): older ones are not published again.
  absl::flat_hash_map<std::string, int64_t> in_history_ ABSL_GUARDED_BY(mu_);
  void NoteInHistory(const std::string& name, int64_t version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The highest floor mark read from each followed history: a holder whose
  // last published version is below it publishes its next observation,
  // changed or not, so that it is numbered above the floor.
  absl::flat_hash_map<std::string, int64_t> floor_ ABSL_GUARDED_BY(mu_);
  // Versions this replica showed on its own while not the holder: the
  // highest asked of RaiseFloor, and the ones Redis has not taken yet.
  absl::flat_hash_map<std::string, int64_t> floor_asked_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> floor_unsent_ ABSL_GUARDED_BY(mu_);
  int listener_ = 0;
  int64_t delivered_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t published_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_STREAM_BRIDGE_H_
