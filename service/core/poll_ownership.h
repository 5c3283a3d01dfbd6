#ifndef UPLOADWATCH_SERVICE_CORE_POLL_OWNERSHIP_H_
#define UPLOADWATCH_SERVICE_CORE_POLL_OWNERSHIP_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace uploadwatch {

// The name of a poll group, (token fingerprint, counter). Fingerprints only,
// never tokens.
std::string PollGroupKey(absl::string_view token_fingerprint, int64_t counter_id);
// The name of one watched uploading, "<fingerprint>:<counter>:<uploading>":
// what a lease, a history stream and a poll are per across replicas (versions
// are per uploading, so its history must be too).
std::string PollUploadingKey(absl::string_view token_fingerprint,
                             int64_t counter_id, int64_t uploading_id);
// What a counter watch of `type` (a v1::Uploading::Type above zero) wants of
// its group, in the same form: a PollUploadingKey whose "uploading" is
// CounterWantId(type), below zero, so that no uploading id (always positive)
// is ever taken for it. The group's poller lists the type for every replica
// that wants it, as it polls the uploadings others want.
std::string PollCounterKey(absl::string_view token_fingerprint,
                           int64_t counter_id, int type);
constexpr int64_t CounterWantId(int type) { return -static_cast<int64_t>(type); }
// The type of a counter want's id, 0 for an uploading id.
constexpr int CounterWantType(int64_t id) {
  return id < 0 ? static_cast<int>(-id) : 0;
}
// The parts of a PollUploadingKey (a PollCounterKey too: the id is then
// below zero); false for anything else.
bool ParsePollUploadingKey(absl::string_view name, std::string* fingerprint,
                           int64_t* counter_id, int64_t* uploading_id);
// The parts of a PollGroupKey; false for anything else (a PollUploadingKey
// too).
bool ParsePollGroupKey(absl::string_view name, std::string* fingerprint,
                       int64_t* counter_id);

// The poll-ownership seam: which replica polls a watched uploading, or a
// watched counter's list of one type. The core's group poller says Want (a
// PollUploadingKey, or a PollCounterKey for a counter watch) while this
// replica has watchers of it (and so holds the token it is polled with) and
// Unwant when the last one left, asks ShouldPoll before every round, polls
// OthersWant too, and starts a round when the change callback says so.
//
// An implementation may decide per (token, counter) group rather than per
// uploading (the Redis one does: one poller per group across replicas, so
// that a counter's uploadings are listed together); then ShouldPoll is the
// same for every uploading of a group, and the replica that polls a group
// also polls what OthersWant names.
//
// Thread-safe. ShouldPoll, OthersWant and TokenGroups answer at once from
// local state and never do I/O. The change callback (given to the
// implementation's constructor) names a PollUploadingKey or a PollGroupKey:
// `should_poll` true when this replica gained it (or, for a group it polls,
// when OthersWant gained an uploading: a round is due now), false when it
// lost it. It runs on a thread of the implementation's choosing; it must not
// block, is not called while the implementation holds a lock of its own, is
// not called after the object's destructor began, nor for Unwant.
class PollOwnership {
 public:
  using ChangeCallback =
      absl::AnyInvocable<void(const std::string& name, bool should_poll)>;

  virtual ~PollOwnership() = default;
  // Compete to poll `name`. Idempotent. Not reported as a change: read
  // ShouldPoll after it.
  virtual void Want(const std::string& name) = 0;
  // Stop competing and hand it over.
  virtual void Unwant(const std::string& name) = 0;
  virtual bool ShouldPoll(const std::string& name) const = 0;
  // Uploadings of group `group` (a PollGroupKey) that other replicas' watchers
  // want and this replica must poll for them, since it polls the group
  // (CounterWantId(type) for a counter watch's type: that type is listed).
  // Empty unless this replica polls the group for others.
  virtual std::vector<int64_t> OthersWant(const std::string& group) const {
    (void)group;
    return {};
  }
  // How many (token, counter) groups of the token poll over all replicas,
  // when known (budget pacing spreads the token's budget over them, not over
  // this replica's groups alone); nullopt: only this replica's count is known.
  virtual std::optional<size_t> TokenGroups(
      const std::string& token_fingerprint) const {
    (void)token_fingerprint;
    return std::nullopt;
  }
};

// One replica alone: it polls everything it wants. What the core uses when
// --redis is not given.
class LocalPollOwnership : public PollOwnership {
 public:
  void Want(const std::string& name) override;
  void Unwant(const std::string& name) override;
  bool ShouldPoll(const std::string& name) const override;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::string> wanted_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_POLL_OWNERSHIP_H_
