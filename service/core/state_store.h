#ifndef UPLOADWATCH_SERVICE_CORE_STATE_STORE_H_
#define UPLOADWATCH_SERVICE_CORE_STATE_STORE_H_

#include <functional>
#include <optional>

#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/core/state_cache.h"

namespace uploadwatch {

// The one owner of uploading states and their versions: every fetched
// uploading is recorded here, and recording says whether anything changed.
// The rules (in StateCache): a version grows by one per change; a terminal
// state never turns back; an answer to a request sent before the one behind
// the stored state is older news and changes nothing. Thread-safe.
class StateStore {
 public:
  struct Recorded {
    UploadingState state;  // what is known now
    bool changed = false;  // `state` is new (always true the first time)
  };

  explicit StateStore(StateCache::Options options) : cache_(options) {}

  // An uploading fetched at `now` by a request sent at `sent`.
  Recorded Record(const UploadingKey& key, const v1::Uploading& uploading,
                  absl::Time now, absl::Time sent);
  // A state another replica observed, with its version (StateCache).
  Recorded RecordShared(const UploadingKey& key, const v1::Uploading& uploading,
                        int64_t version, absl::Time now);
  // A state the lease holder relayed for counter watches (its version is
  // the holder's numbering of an uploading no history numbers across
  // replicas): taken with its version, as RecordShared, when that is above
  // the stored one; otherwise recorded as this replica's own observation of
  // a request sent at `sent` (the holder's time of it), as Record: a
  // different state is a change numbered after the stored one, older news
  // changes nothing. So a counter watch here never misses a change because
  // this replica numbered further on its own (alone while Redis was down, or
  // its own snapshot lists).
  Recorded RecordRelayed(const UploadingKey& key,
                         const v1::Uploading& uploading, int64_t version,
                         absl::Time now, absl::Time sent);
  // Another replica's request sent at `sent` found a state unchanged; if
  // the stored one is it (`is_it`, called under the store's lock: it must
  // not call the store), recorded as Record of that same state would (its
  // check time moves on; older news changes nothing). nullopt, and nothing
  // recorded, when it is not (it changed here since, or is unknown): a
  // confirmation of another state says nothing of this one.
  std::optional<Recorded> Confirm(
      const UploadingKey& key,
      absl::FunctionRef<bool(const UploadingState&)> is_it, absl::Time now,
      absl::Time sent);
  // The state if confirmed recently enough to serve without Metrica.
  std::optional<UploadingState> GetFresh(const UploadingKey& key,
                                         absl::Time now);
  // The state however old; nullopt if unknown.
  std::optional<UploadingState> Find(const UploadingKey& key) const;
  // GetFresh (`fresh_only`) or Find handing the state to `use` under the
  // store's lock instead of copying it: for a reader that needs only its
  // bytes. `use` must be short and must not call the store. False (and
  // `use` not called) when GetFresh / Find would be nullopt.
  bool Use(const UploadingKey& key, absl::Time now, bool fresh_only,
           absl::FunctionRef<void(const UploadingState&)> use);
  // Drops states unused for the retention, except those `keep` names (it is
  // called under the store's lock: it must not call the store).
  size_t Sweep(absl::Time now,
               const std::function<bool(const UploadingKey&)>& keep);
  size_t size() const;

 private:
  mutable absl::Mutex mu_;
  StateCache cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_STATE_STORE_H_
