#ifndef UPLOADWATCH_SERVICE_REDIS_STATE_STREAM_H_
#define UPLOADWATCH_SERVICE_REDIS_STATE_STREAM_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/redis/redis_connection.h"

namespace uploadwatch::redis {

// One observed state of a poll group as the polling replica published it.
struct StreamEntry {
  // The Redis stream id ("<ms>-<seq>"): the same on every replica and
  // ordered, so it can back a resume token (issue 11).
  std::string id;
  int64_t version = 0;  // the state's version, increasing per group
  std::string payload;  // opaque to this class (the core's serialized state)
  // The subscription's position was older than the oldest entry kept (the
  // history was trimmed past it, e.g. a resume token from long ago or a
  // reader away for more than max_len entries): states between may be
  // missing. Set on the first entry delivered after such a position; the
  // consumer treats it like client-go's "too old": this entry is the full
  // current state, the transitions before it are not all known.
  bool after_gap = false;
  // A floor mark (RaiseFloor), not a state: `version` is a floor some replica
  // showed on its own; the holder's next state is numbered after it.
  bool floor = false;
  // Confirmations (AppendConfirmations), not a state: `payload` lists them
  // (ParseConfirmations).
  bool confirmations = false;
  // Entries of a counter changes stream (AppendChange, AppendConfirmations)
  // only: the owner id of the replica that appended it, and when its
  // request went (Unix ms, its clock).
  std::string owner;
  int64_t sent_ms = 0;
};

// "<ms>-<seq>" -> (ms, seq); nullopt when it is not a stream id.
std::optional<std::pair<uint64_t, uint64_t>> ParseStreamId(absl::string_view id);

struct StateStreamOptions {
  // Entries kept per group (XADD MAXLEN ~): how far back a reader that was
  // away can catch up.
  int64_t max_len = 1000;
  // How long one XREAD waits for news before asking again.
  absl::Duration block = absl::Seconds(5);
  int read_count = 100;
  // How long a version floor (RaiseFloor) is kept after its last raise:
  // longer than the core keeps an unwatched state (1 h), after which its
  // versions start again from the history.
  absl::Duration floor_ttl = absl::Hours(24);
};

// Only the lease holder may publish: the lease key and this replica's owner
// id (LeaseManager::LeaseKey, owner_id), checked by Redis in the same script
// as the write, so a replica that lost its lease cannot write late.
struct PublishFence {
  std::string lease_key;
  std::string owner;
};

// One history of states per poll group across replicas, in a Redis Stream
// (`history:<group>`). The polling replica publishes every observed state with
// its version; every replica subscribes to the groups it has watchers of and
// reads with XREAD BLOCK from the last id it saw, on a connection of its own,
// so a lost connection or a Redis restart resumes where it stopped instead of
// losing what came in between (what pub/sub would do).
//
// Fallback contract: while a connection is not kConnected, Publish and Last
// fail at once with UNAVAILABLE (the poller keeps delivering to its own
// watchers); subscriptions stay and resume from their last id when the reader
// connection is back.
//
// Thread-safe. Callbacks run on the connections' loop thread.
class StateStream {
 public:
  using EntryCallback =
      absl::AnyInvocable<void(const std::string& group, const StreamEntry&)>;
  using IdCallback = absl::AnyInvocable<void(absl::StatusOr<std::string>)>;
  using LastCallback =
      absl::AnyInvocable<void(absl::StatusOr<std::optional<StreamEntry>>)>;
  using FloorCallback = absl::AnyInvocable<void(absl::StatusOr<bool>)>;
  // What ChangesAfter read: nullopt when the stream cannot say what came
  // after the position (see there).
  // One uploading's newest entry in a changes stream (AppendChange keeps
  // them, untrimmed, beside the stream).
  struct Latest {
    int64_t uploading_id = 0;
    std::string first_id;  // its first entry
    StreamEntry entry;     // id, version, payload
  };
  struct Range {
    std::vector<StreamEntry> entries;  // in stream order
    std::string head;  // the stream's newest id when read
    // Every uploading's newest entry (changes streams only), read with it.
    std::vector<Latest> latest;
  };
  using RangeCallback =
      absl::AnyInvocable<void(absl::StatusOr<std::optional<Range>>)>;

  // Neither connection is owned; both must outlive this object. `reader` is
  // used by nothing else (XREAD BLOCK holds it), and is on the same loop.
  StateStream(RedisConnection* commands, RedisConnection* reader,
              StateStreamOptions options);
  ~StateStream();  // not on the loop thread

  // Appends a state; answers its stream id. FAILED_PRECONDITION ("NOTOWNER")
  // when `fence` is given and the lease is not this owner's; ABORTED
  // ("STALE") when `version` is not above the last published one. The entry
  // carries `version`, or the floor + 1 when the floor (RaiseFloor) is not
  // below it: subscribers, the publisher too, read the version it got.
  void Publish(const std::string& group, int64_t version, std::string payload,
               std::optional<PublishFence> fence, IdCallback done);
  // Appends one uploading's state to a stream of many uploadings' states (a
  // counter's changes, for counter watches on other replicas): fenced like
  // Publish, but without its version check (versions are per uploading;
  // the publisher keeps each one's going up). The entry is {v: version,
  // s: payload, o: fence.owner, t: sent_ms}; answers its id. In the same
  // script it becomes `uploading_id`'s newest entry in LatestKey(stream)
  // (kept floor_ttl after the last append; what ChangesAfter's `latest`
  // answers). FAILED_PRECONDITION ("NOTOWNER") when the lease is not
  // fence.owner's.
  void AppendChange(const std::string& stream, int64_t uploading_id,
                    int64_t version, std::string payload, int64_t sent_ms,
                    const PublishFence& fence, IdCallback done);
  // The holder's poll confirmed these uploadings unchanged, each at the
  // version it relayed last (a counter's changes stream): so that counter
  // watches on other replicas see the holder's checks (check_time), not
  // only its changes. One entry {c: "<id>:<version>,...", o: fence.owner,
  // t: sent_ms} for all, fenced like AppendChange; no newest-entry update.
  struct Confirmed {
    int64_t uploading_id = 0;
    int64_t version = 0;
  };
  void AppendConfirmations(const std::string& stream,
                           const std::vector<Confirmed>& confirmed,
                           int64_t sent_ms, const PublishFence& fence,
                           IdCallback done);
  // A replica that does not hold the lease showed `version` to its own
  // watchers (polling alone while Redis was unreachable, or a counter
  // watch's list): every later entry must be above it, or a client moving to
  // another replica would see versions go back. Raises the group's floor
  // (`floor:<group>`, kept `floor_ttl`) and, when the history's newest entry
  // is below it, appends a floor mark. Answers whether a mark was added;
  // UNAVAILABLE at once while not connected (raise it again later).
  void RaiseFloor(const std::string& group, int64_t version, FloorCallback done);
  // The newest entry (nullopt for an empty history): where a new poller
  // continues the versions.
  void Last(const std::string& group, LastCallback done);
  // Every entry of `group` after `after_id` up to `until_id` (inclusive;
  // "+": the newest), read atomically with the stream's bounds and (for a
  // changes stream) its newest entry per uploading (one script),
  // asynchronously: what a resume token (issue 14, a changes stream's entry
  // id) needs for its catch-up. nullopt -- the stream cannot say what came
  // after the position, so the caller must not catch up from it -- when the
  // stream is empty, its oldest kept entry is after `after_id` (trimmed past
  // it: entries in between are gone), `after_id` is after its newest entry
  // (a position from another Redis, or one flushed since), or `after_id`'s
  // time is before `not_before` (older than the caller honours).
  // `after_id` "0-0": everything kept (an empty range for an empty stream),
  // whatever was trimmed before.
  // INVALID_ARGUMENT for an id that is not "<ms>-<seq>"; UNAVAILABLE at once
  // while not connected.
  void ChangesAfter(const std::string& group, const std::string& after_id,
                    const std::string& until_id, absl::Time not_before,
                    RangeCallback done);

  // Delivers every entry after `after_id` ("0-0": all retained history;
  // empty: only entries published from now on), then each new one, in order,
  // exactly once per subscription. ALREADY_EXISTS when `group` is subscribed.
  absl::Status Subscribe(const std::string& group, std::string after_id,
                         EntryCallback on_entry);
  // After it returns no entry of `group` is delivered.
  void Unsubscribe(const std::string& group);
  // The id of the last entry delivered (empty before the first).
  std::string LastDeliveredId(const std::string& group) const;

  std::string Key(const std::string& group) const;
  std::string FloorKey(const std::string& group) const;
  // `changes:<stream>`: a changes stream's newest entry per uploading.
  std::string LatestKey(const std::string& stream) const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// A confirmations entry's list: "<id>:<version>,..." (readable in redis-cli);
// Parse gives nullopt for anything else.
std::string FormatConfirmations(
    const std::vector<StateStream::Confirmed>& confirmed);
std::optional<std::vector<StateStream::Confirmed>> ParseConfirmations(
    absl::string_view text);

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_STATE_STREAM_H_
