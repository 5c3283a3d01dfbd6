#ifndef UPLOADWATCH_SERVICE_REDIS_SHARED_DAILY_BUDGET_H_
#define UPLOADWATCH_SERVICE_REDIS_SHARED_DAILY_BUDGET_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/metrica/daily_budget.h"
#include "service/redis/redis_connection.h"

namespace uploadwatch::redis {

struct SharedBudgetOptions {
  // Requests per token per day over all replicas (the same number as
  // DailyBudget::Options::per_token; Metrica allows 5000); <= 0: no budget
  // (every charge granted at once, nothing counted, as --daily_budget=0).
  int64_t per_token = 4000;
  // What this replica may spend per token and day on its own while Redis is
  // unreachable: its share, so that N replicas stay within N times it.
  int64_t fallback_per_token = 1000;
  // Where a day ends, as the local DailyBudget's (--daily_reset_zone): a
  // request sent in the last `carry_over` before the reset counts in both
  // days, so whichever day Metrica counts, no day of it sees more than
  // `per_token` from all replicas together.
  DailyReset reset = DailyReset::Conservative();
  // Not owned; default Clock::Real(). A test's clock moves the day.
  const Clock* clock = nullptr;
};

// The answer to one charge.
struct BudgetCharge {
  bool granted = false;  // one request counted; false: today's budget is spent
  int64_t used = 0;      // requests counted today (shared, or best known)
  int64_t remaining = 0;
  absl::Time resets_at;
  bool shared = false;   // counted in Redis (false: the local fallback share)
};

// The daily budget of each token counted in Redis, per token fingerprint and
// day (`budget:<fp>:<yyyy-mm-dd>`), by one Lua script (INCR below the budget,
// also INCR of the next day's counter in the carry-over window, EXPIREAT
// after the reset), so replicas together never spend more than `per_token`.
//
// Fallback contract: while the connection is not kConnected, or when Redis
// fails to answer, the charge is decided at once against this replica's own
// `fallback_per_token` for the day; what was spent that way is added to the
// shared count with the next charge Redis answers.
//
// Thread-safe. Callbacks run on the connection's loop thread.
class SharedDailyBudget {
 public:
  using ChargeCallback = absl::AnyInvocable<void(BudgetCharge)>;

  // `connection` is not owned and must outlive this object.
  SharedDailyBudget(RedisConnection* connection, SharedBudgetOptions options);
  ~SharedDailyBudget();

  // Counts one upstream request for `token_fingerprint` if the budget allows.
  // `done` runs exactly once; once destruction began it answers not granted.
  void TryCharge(const std::string& token_fingerprint, ChargeCallback done);

  // Today's use of the token over all replicas, as Redis last answered
  // (plus what this replica spent alone since): what budget pacing must
  // read, since N replicas spend one day of one token. nullopt before the
  // first charge of the day. Never blocks.
  std::optional<QuotaUsage> Usage(const std::string& token_fingerprint) const;

  // The (token, day) counts kept in memory: the tokens charged today (and
  // tomorrow, in the carry-over window) and in the hour after the last
  // reset; older days are dropped at the next charge (at most once a
  // minute). For tests and operators.
  size_t LocalDays() const;

  // The key of the day's counter that `now` falls in (for tests and
  // operators).
  std::string Key(const std::string& token_fingerprint, absl::Time now) const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_SHARED_DAILY_BUDGET_H_
