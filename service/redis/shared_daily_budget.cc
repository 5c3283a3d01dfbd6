#include "service/redis/shared_daily_budget.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace uploadwatch::redis {

namespace {

// How long a day's counter outlives the day (Redis EXPIREAT, and the local
// entry): past any clock skew between replicas about when the day ended.
constexpr absl::Duration kKeptAfterReset = absl::Hours(1);

// KEYS[1] today's counter, KEYS[2] (in the carry-over window only) the next
// day's; ARGV: budget, expire-at (unix s), spent in fallback since the last
// answer (added first, whatever the outcome), the next day's expire-at.
// Returns {granted, used}.
const RedisScript& ChargeScript() {
  static const RedisScript* script = new RedisScript(R"lua(
local unsynced = tonumber(ARGV[3])
if unsynced > 0 then redis.call('INCRBY', KEYS[1], unsynced) end
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local granted = 0
if used < tonumber(ARGV[1]) then
  used = redis.call('INCR', KEYS[1])
  granted = 1
  if KEYS[2] then
    redis.call('INCR', KEYS[2])
    redis.call('EXPIREAT', KEYS[2], ARGV[4])
  end
end
if used > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[2]) end
return {granted, used}
)lua");
  return *script;
}

}  // namespace

struct SharedDailyBudget::State {
  struct Local {
    int64_t spent_in_fallback = 0;  // today, by this replica alone
    int64_t unsynced = 0;           // of that, not yet added in Redis
    int64_t last_shared_used = 0;   // Redis's count at its last answer
    // When the entry's day is over for good (its end plus the hour its
    // Redis counter is kept): from then on nothing reads or syncs it.
    absl::Time forget_after = absl::InfinitePast();
  };

  RedisConnection* connection;
  SharedBudgetOptions options;
  const Clock* clock;
  mutable absl::Mutex mu;
  // Keyed by the day's Redis key, so a new day starts from zero. Days that
  // are over are pruned (PruneLocked), so it holds at most the tokens
  // charged in the last two days, not every day since the start.
  absl::flat_hash_map<std::string, Local> local ABSL_GUARDED_BY(mu);
  absl::Time next_prune ABSL_GUARDED_BY(mu) = absl::InfinitePast();

  // The entry of `key`, a day that ends at `day_end`.
  Local& EntryLocked(const std::string& key, absl::Time day_end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Local& l = local[key];
    l.forget_after = std::max(l.forget_after, day_end + kKeptAfterReset);
    return l;
  }
  // At most once a minute: drops the days that are over.
  void PruneLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (now < next_prune) return;
    next_prune = now + absl::Minutes(1);
    absl::erase_if(local, [now](const auto& entry) {
      return entry.second.forget_after <= now;
    });
  }

  absl::Time NextReset(absl::Time now) const {
    absl::CivilDay today = absl::ToCivilDay(now, options.reset.zone);
    return absl::FromCivil(today + 1, options.reset.zone);
  }
  // Sent now, a request also counts in the next day.
  bool Carried(absl::Time now) const {
    return now >= NextReset(now) - options.reset.carry_over;
  }

  std::string Key(const std::string& fingerprint, absl::Time now) const {
    absl::CivilDay today = absl::ToCivilDay(now, options.reset.zone);
    return connection->Key(absl::StrCat(
        "budget:", fingerprint, ":",
        absl::StrFormat("%04d-%02d-%02d", today.year(), today.month(),
                        today.day())));
  }

  // `next_key`: the next day's, when the charge is carried into it.
  BudgetCharge ChargeLocally(const std::string& key,
                             const std::optional<std::string>& next_key,
                             absl::Time resets_at) {
    absl::MutexLock lock(&mu);
    Local& l = EntryLocked(key, resets_at);
    BudgetCharge c;
    c.resets_at = resets_at;
    c.shared = false;
    int64_t used = l.last_shared_used + l.unsynced;
    if (l.spent_in_fallback < options.fallback_per_token &&
        used < options.per_token) {
      ++l.spent_in_fallback;
      ++l.unsynced;
      ++used;
      c.granted = true;
    }
    c.used = used;
    c.remaining = std::max<int64_t>(
        0, std::min(options.per_token - used,
                    options.fallback_per_token - l.spent_in_fallback));
    // Last: the insertion may move `l`.
    if (c.granted && next_key) {
      ++EntryLocked(*next_key, NextReset(resets_at)).unsynced;
    }
    return c;
  }
};

SharedDailyBudget::SharedDailyBudget(RedisConnection* connection,
                                     SharedBudgetOptions options)
    : state_(std::make_shared<State>()) {
  state_->connection = connection;
  connection->Preload(ChargeScript());
  state_->clock = options.clock != nullptr ? options.clock : Clock::Real();
  state_->options = std::move(options);
}

SharedDailyBudget::~SharedDailyBudget() = default;

size_t SharedDailyBudget::LocalDays() const {
  absl::MutexLock lock(&state_->mu);
  return state_->local.size();
}

std::string SharedDailyBudget::Key(const std::string& token_fingerprint,
                                   absl::Time now) const {
  return state_->Key(token_fingerprint, now);
}

std::optional<QuotaUsage> SharedDailyBudget::Usage(
    const std::string& token_fingerprint) const {
  if (state_->options.per_token <= 0) return std::nullopt;
  const absl::Time now = state_->clock->Now();
  const std::string key = state_->Key(token_fingerprint, now);
  absl::MutexLock lock(&state_->mu);
  auto it = state_->local.find(key);
  if (it == state_->local.end()) return std::nullopt;
  return QuotaUsage{it->second.last_shared_used + it->second.unsynced,
                    state_->options.per_token, state_->NextReset(now)};
}

void SharedDailyBudget::TryCharge(const std::string& token_fingerprint,
                                  ChargeCallback done) {
  std::weak_ptr<State> weak = state_;
  state_->connection->loop()->Post([weak, fingerprint = token_fingerprint,
                                    done = std::move(done)]() mutable {
    auto self = weak.lock();
    if (self == nullptr) return done(BudgetCharge{});  // shutting down
    absl::Time now = self->clock->Now();
    if (self->options.per_token <= 0) {  // no budget (--daily_budget=0)
      BudgetCharge unlimited;
      unlimited.granted = true;
      unlimited.resets_at = self->NextReset(now);
      done(unlimited);
      return;
    }
    std::string key = self->Key(fingerprint, now);
    absl::Time resets_at = self->NextReset(now);
    std::optional<std::string> next_key;
    if (self->Carried(now)) next_key = self->Key(fingerprint, resets_at);
    if (self->connection->state() != ConnectionState::kConnected) {
      {
        absl::MutexLock lock(&self->mu);
        self->PruneLocked(now);
      }
      done(self->ChargeLocally(key, next_key, resets_at));
      return;
    }
    int64_t unsynced;
    {
      absl::MutexLock lock(&self->mu);
      self->PruneLocked(now);
      State::Local& l = self->EntryLocked(key, resets_at);
      unsynced = l.unsynced;
      l.unsynced = 0;  // put back if Redis does not take it
    }
    // An hour past the reset: yesterday's counters clean themselves up.
    std::string expire_at =
        absl::StrCat(absl::ToUnixSeconds(resets_at + kKeptAfterReset));
    std::vector<std::string> keys = {key};
    if (next_key) keys.push_back(*next_key);
    self->connection->Eval(
        ChargeScript(), keys,
        {absl::StrCat(self->options.per_token), expire_at,
         absl::StrCat(unsynced),
         absl::StrCat(absl::ToUnixSeconds(self->NextReset(resets_at) +
                                           kKeptAfterReset))},
        [weak, key, next_key, resets_at, unsynced,
         done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
          auto self = weak.lock();
          if (self == nullptr) return done(BudgetCharge{});  // shutting down
          if (!r.ok() || r->type != RedisReply::Type::kArray ||
              r->elements.size() != 2) {
            {
              absl::MutexLock lock(&self->mu);
              self->EntryLocked(key, resets_at).unsynced += unsynced;
            }
            done(self->ChargeLocally(key, next_key, resets_at));
            return;
          }
          BudgetCharge c;
          c.shared = true;
          c.granted = r->elements[0].integer == 1;
          c.used = r->elements[1].integer;
          c.remaining = std::max<int64_t>(0, self->options.per_token - c.used);
          c.resets_at = resets_at;
          {
            absl::MutexLock lock(&self->mu);
            self->EntryLocked(key, resets_at).last_shared_used = c.used;
          }
          done(c);
        });
  });
}

}  // namespace uploadwatch::redis
