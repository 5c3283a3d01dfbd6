#ifndef UPLOADWATCH_SERVICE_CORE_STATE_CACHE_H_
#define UPLOADWATCH_SERVICE_CORE_STATE_CACHE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"

namespace uploadwatch {

namespace v1 = ::metrika::offline_conversions::v1;

// Identifies an uploading as seen by one token. Every cache, flight and
// poller is keyed by it, so tenants never share answers.
struct UploadingKey {
  std::string token_fingerprint;
  int32_t counter_id = 0;
  int64_t uploading_id = 0;

  friend bool operator==(const UploadingKey& a, const UploadingKey& b) {
    return std::tie(a.token_fingerprint, a.counter_id, a.uploading_id) ==
           std::tie(b.token_fingerprint, b.counter_id, b.uploading_id);
  }
  template <typename H>
  friend H AbslHashValue(H h, const UploadingKey& k) {
    return H::combine(std::move(h), k.token_fingerprint, k.counter_id,
                      k.uploading_id);
  }
};

// A status of an uploading, and the first fetch that showed it.
struct StatusSeen {
  v1::Uploading::Status status = v1::Uploading::STATUS_UNSPECIFIED;
  std::string status_raw;  // as Uploading.status_raw
  absl::Time observe_time;

  friend bool operator==(const StatusSeen& a, const StatusSeen& b) {
    return std::tie(a.status, a.status_raw, a.observe_time) ==
           std::tie(b.status, b.status_raw, b.observe_time);
  }
};

// What the server knows of an uploading.
struct UploadingState {
  v1::Uploading uploading;
  int64_t version = 0;       // +1 per observed change, from 1
  absl::Time observe_time;   // first fetch that showed this state
  absl::Time check_time;     // latest fetch that confirmed it
  // Every status this server saw since it first recorded the uploading,
  // oldest first; the last is the current one. Metrica keeps no history, so
  // this is the only timeline there is (statuses only move forward: short).
  std::vector<StatusSeen> statuses;
};

// PROCESSED and LINKAGE_FAILURE never change again.
bool IsTerminal(const v1::Uploading& uploading);

// The last known state of every uploading, with versions. Not thread-safe:
// the owner (WatchHub) guards it.
class StateCache {
 public:
  struct Options {
    // How long a non-terminal state may be served without asking Metrica.
    absl::Duration fresh_for = absl::Seconds(5);
    // How long a terminal state may be served; it never changes.
    absl::Duration terminal_fresh_for = absl::Hours(24);
    // How long an entry (and so its version) is kept after its last use.
    absl::Duration retention = absl::Hours(1);
  };

  explicit StateCache(Options options) : options_(options) {}

  // Records a state fetched at `now`. Returns the stored state; `*changed`
  // tells whether it differs from the previous one (always true for the first).
  // A terminal state is never replaced by a non-terminal one, and an answer
  // to a request `sent` before the one behind the stored state is older news
  // (answers can arrive out of order): it changes nothing.
  const UploadingState& Record(const UploadingKey& key,
                               const v1::Uploading& uploading, absl::Time now,
                               absl::Time sent, bool* changed);

  // Records a state another replica observed with `version` (its history
  // across replicas): older news unless `version` is above the stored one;
  // then the version is taken, and it is a change unless the state is the
  // one stored (the holder numbered it anew). A terminal state still never
  // turns back.
  const UploadingState& RecordShared(const UploadingKey& key,
                                     const v1::Uploading& uploading,
                                     int64_t version, absl::Time now,
                                     bool* changed);

  // The state, if it was confirmed recently enough to serve without Metrica.
  std::optional<UploadingState> GetFresh(const UploadingKey& key,
                                         absl::Time now);
  // GetFresh without the copy: the entry itself, valid until the cache
  // next changes; nullptr when GetFresh would be nullopt.
  const UploadingState* FindFresh(const UploadingKey& key, absl::Time now);
  // The state, however old (for versions); nullptr if unknown.
  const UploadingState* Find(const UploadingKey& key) const;

  // Drops entries unused for longer than `retention`, except those `keep`
  // says are still needed (e.g. watched: their versions must go on).
  // Returns how many.
  size_t Sweep(absl::Time now,
               const std::function<bool(const UploadingKey&)>& keep = nullptr);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    UploadingState state;
    absl::Time last_use;
    absl::Time sent = absl::InfinitePast();  // of the request behind `state`
  };
  Options options_;
  absl::flat_hash_map<UploadingKey, Entry> entries_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_STATE_CACHE_H_
