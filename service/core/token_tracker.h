#ifndef UPLOADWATCH_SERVICE_CORE_TOKEN_TRACKER_H_
#define UPLOADWATCH_SERVICE_CORE_TOKEN_TRACKER_H_

#include <cstdint>
#include <list>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace uploadwatch {

// Which callers' tokens Metrica has accepted (issue 16, finding 2), so that
// per-token state (budgets, metric series) exists only for real tokens
// whatever clients send. A token is accepted once Metrica gives any answer
// but UNAUTHENTICATED for it (2xx, 404, 403 access_denied). Until then its
// Gets and Lists share one small "unverified" bucket: one request in flight
// at a time and `unverified_per_day` a UTC day, all such tokens together, so
// junk tokens cost Metrica (and the fetcher's per-token counts) a bounded
// amount. At most `max_tracked` accepted tokens are kept, least recently
// used dropped first (it is then unverified again until its next answer; a
// polled token is touched by every poll). Fingerprints only. Thread-safe.
class TokenTracker {
 public:
  struct Options {
    size_t max_tracked = 1000;       // --max_tracked_tokens
    int64_t unverified_per_day = 100;  // --unverified_token_budget
  };

  explicit TokenTracker(Options options);

  // Metrica answered a request of this token with something else than
  // UNAUTHENTICATED.
  void Accept(const std::string& fingerprint);
  // Whether it is accepted (and still tracked); touches it.
  bool Accepted(const std::string& fingerprint);
  // Whether it is accepted, without touching it.
  bool Known(const std::string& fingerprint) const;
  size_t tracked() const;

  // An unverified token's request is about to be sent: OK takes the
  // bucket's slot (give it back with ReleaseUnverified), else
  // RESOURCE_EXHAUSTED (ErrorInfo UNVERIFIED_TOKEN_CONCURRENCY or
  // UNVERIFIED_TOKEN_BUDGET_EXHAUSTED).
  absl::Status AdmitUnverified(absl::Time now);
  // `refund`: the request was never sent, nothing of it counts.
  void ReleaseUnverified(bool refund);
  // A watch of the unverified token `fingerprint` needs a first state from
  // Metrica: one request of the bucket's day (refused as AdmitUnverified
  // refuses beyond it), no slot: the first state waits its turn with the
  // polls. Watches of one token opened within a second of its charge share
  // it (true: not charged), so that a new token's dashboard opening many at
  // once costs the bucket one, not one each; Metrica's first answer then
  // accepts or rejects the token for all of them.
  absl::StatusOr<bool> ChargeUnverified(const std::string& fingerprint,
                                        absl::Time now);
  // A ChargeUnverified that turned out free.
  void UnchargeUnverified();

 private:
  // Counts one request of today's bucket, or the refusal beyond it.
  absl::Status ChargeLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);  // most recent first
  absl::flat_hash_map<std::string, std::list<std::string>::iterator> index_
      ABSL_GUARDED_BY(mu_);
  bool unverified_busy_ ABSL_GUARDED_BY(mu_) = false;
  int64_t unverified_used_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time unverified_day_ends_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Watch charges of the last second, by fingerprint (at most the bucket's
  // day of entries).
  absl::flat_hash_map<std::string, absl::Time> watch_charges_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_TOKEN_TRACKER_H_
