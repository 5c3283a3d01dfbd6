#ifndef UPLOADWATCH_SERVICE_REDIS_GROUP_WANTS_H_
#define UPLOADWATCH_SERVICE_REDIS_GROUP_WANTS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "service/redis/redis_connection.h"

namespace uploadwatch::redis {

struct GroupWantsOptions {
  // How long a replica's want outlives its last refresh: a crashed replica's
  // wants are gone within this time (the lease TTL: the poll of a group
  // moves, and stops serving the dead, on the same clock).
  absl::Duration ttl = absl::Seconds(10);
  // How often wants are refreshed and watched sets read; zero: ttl / 3.
  absl::Duration refresh_interval = absl::ZeroDuration();
  // Notices kept per group (XADD MAXLEN ~).
  int64_t notice_max_len = 100;
  // This replica's name in the sets (the lease owner id). Required.
  std::string owner_id;
};

// Which uploadings of each poll group ("<fp>:<counter>", PollGroupKey) the
// watchers of every replica want, in Redis, so that the one replica that
// polls a group (its lease holder) polls for all of them:
//  - `wants:<group>`: a sorted set of "<uploading>/<replica>", scored with
//    the time (Redis's clock, ms) the want expires; each replica refreshes
//    its own every refresh_interval and removes one when its last watcher
//    left, and a dead replica's expire;
//  - `groups:<fp>`: the same for the token's groups (member: the counter),
//    counted for budget pacing over all replicas;
//  - `history:<group>` (a stream, the group's own, beside its uploadings'
//    histories): a notice {s: uploading} when a replica starts wanting one,
//    which the holder follows so that a newcomer's first state is polled at
//    once, not at the next refresh.
// One script per group and refresh does all three (and answers the group's
// wants when asked to read them): Redis commands grow with groups, not with
// uploadings.
//
// Fallback contract: while the connection is not kConnected, nothing is
// sent; TokenGroups is nullopt (each replica paces on its own count); wants
// are sent again at the first refresh after the connection is back (a
// restarted Redis loses none for longer than refresh_interval).
//
// Thread-safe. The callback runs on the connection's loop thread, without
// this object's lock.
class GroupWants {
 public:
  // Every want of `group` alive in Redis, this replica's included, as read
  // for a group with Read(group, true).
  using WantedCallback = absl::AnyInvocable<void(
      const std::string& group, const std::vector<int64_t>& uploading_ids)>;

  // `connection` is not owned and must outlive this object.
  GroupWants(RedisConnection* connection, GroupWantsOptions options,
             WantedCallback on_wanted);
  ~GroupWants();  // not on the loop thread

  // This replica's watchers want `uploading_id` of `group`: sent at once.
  void Add(const std::string& group, int64_t uploading_id);
  // ... no longer (its last watcher left).
  void Remove(const std::string& group, int64_t uploading_id);
  // Removes every want of this replica from Redis and sends no more (a
  // graceful stop: the holder stops polling for them at its next read
  // instead of a TTL later); `done` runs on the loop thread once Redis
  // answered (or the connection failed them).
  void RemoveAll(absl::AnyInvocable<void()> done);
  // Whether every refresh of `group` also reads its wants (for the
  // group's poller); true reads now. Only for a group with an Add.
  void Read(const std::string& group, bool read);

  // The token's groups wanted by any replica, at the last answer; nullopt
  // while not connected or before the first answer.
  std::optional<size_t> TokenGroups(const std::string& token_fingerprint) const;

  std::string WantsKey(const std::string& group) const;
  // The member of `uploading_id` for this replica.
  std::string Member(int64_t uploading_id) const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_GROUP_WANTS_H_
