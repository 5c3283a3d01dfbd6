#ifndef UPLOADWATCH_SERVICE_CORE_CALLER_ADMISSION_H_
#define UPLOADWATCH_SERVICE_CORE_CALLER_ADMISSION_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/metrica/daily_budget.h"

namespace uploadwatch {

// The fair share of the server's own token among the callers that bring
// none (issue 16, finding 1). Asked before a caller's Get or List on that
// token goes to Metrica (cache hits cost nothing and are never asked about),
// and charged for a watch's first state (Charge); it also counts each
// caller's open watches. The upstream client knows nothing of callers.
//
// The rule (README "Abuse and limits"): of the server token's daily budget B,
// polls of watches may spend (1 - pool) * B and callers' Gets and Lists,
// all of them together, pool * B (`pool` is the share the Pacer already keeps
// for callers, so neither side can eat the other's: see
// PollersView()). Each caller may spend `share` of the callers' part, and
// hold `share` of the token's parallel slots (at least one) when callers
// hold them all (a lone caller may use every slot). Beyond either,
// RESOURCE_EXHAUSTED with an ErrorInfo naming the limit and its flag.
// Thread-safe.
class CallerAdmission {
 public:
  // Today's use of a token's daily budget (by fingerprint); nullopt if none.
  using QuotaView =
      std::function<std::optional<QuotaUsage>(const std::string& fingerprint)>;
  struct Options {
    // Each caller's part of what callers may use (--caller_budget_share).
    double share = 0.25;
    // Callers' part of the daily budget: the Pacer's budget_reserve.
    double pool = 0.1;
    // The token's parallel requests (--max_in_flight_per_token).
    int parallel = 3;
    // Open watches one caller may hold (--max_watches_per_caller); 0: no
    // cap.
    size_t max_watches = 0;
  };

  CallerAdmission(Options options, QuotaView quota);

  // A caller's request on the server token (fingerprint `server`) is about
  // to be sent: OK counts it (one request today, one slot until Release or
  // Refund), else the RESOURCE_EXHAUSTED to answer with.
  absl::Status Admit(const std::string& server, const std::string& caller,
                     absl::Time now);
  // The admitted request ended: its slot is free again.
  void Release(const std::string& caller);
  // The admitted request was never sent (it joined one under way): nothing
  // of it counts.
  void Refund(const std::string& caller);

  // A watch of this caller needs a first state from Metrica (a new watched
  // uploading, or a counter watch's first round): one request of its share
  // today, refused as Admit refuses beyond the day's share. Takes no slot:
  // the first state waits its turn with the polls instead of being refused
  // while others are in flight.
  absl::Status Charge(const std::string& server, const std::string& caller,
                      absl::Time now);
  // A Charge that turned out free (the watch joined one already watched).
  void Uncharge(const std::string& caller);

  // A watch of this caller opens: OK counts it until CloseWatch, else
  // RESOURCE_EXHAUSTED (ErrorInfo CALLER_WATCH_LIMIT) at max_watches.
  absl::Status OpenWatch(const std::string& caller);
  void CloseWatch(const std::string& caller);

  // The server token's usage as the Pacer must see it: callers' requests
  // today are taken out of the reserve it keeps for them, not out of the
  // polls' part. nullopt when `quota` has none.
  std::optional<QuotaUsage> PollersView(const std::string& fingerprint) const;

  // Callers with a count today or a request in flight.
  size_t callers() const;

 private:
  struct Share {
    int64_t used = 0;  // requests today
    int in_flight = 0;
  };
  void NewDayLocked(absl::Time resets_at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts one request of `caller` today, or the refusal beyond its share
  // or beyond the callers' part. Nothing to count without a budget.
  absl::Status ChargeLocked(const std::optional<QuotaUsage>& usage,
                            const std::string& caller, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropIfIdleLocked(const std::string& caller)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const QuotaView quota_;
  mutable absl::Mutex mu_;
  std::string server_ ABSL_GUARDED_BY(mu_);  // the fingerprint last admitted
  absl::Time day_ends_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int64_t total_used_ ABSL_GUARDED_BY(mu_) = 0;  // all callers, today
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;       // all callers
  absl::flat_hash_map<std::string, Share> callers_ ABSL_GUARDED_BY(mu_);
  // Open watches by caller (only callers with one).
  absl::flat_hash_map<std::string, size_t> watches_ ABSL_GUARDED_BY(mu_);
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_CALLER_ADMISSION_H_
