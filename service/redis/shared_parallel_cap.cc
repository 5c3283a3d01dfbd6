#include "service/redis/shared_parallel_cap.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace uploadwatch::redis {

namespace {

// Redis's own clock decides expiry, so replicas' clocks need not agree.
// KEYS[1] holders; ARGV: cap, holder ttl (ms), holder id.
const RedisScript& AcquireScript() {
  static const RedisScript* script = new RedisScript(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
)lua");
  return *script;
}

// A slot taken locally while Redis was away starts to count in Redis.
// KEYS[1] holders; ARGV: holder ttl (ms), holder id.
const RedisScript& AdoptScript() {
  static const RedisScript* script = new RedisScript(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
)lua");
  return *script;
}

}  // namespace

struct ParallelSlot::CapState {
  struct Held {
    std::string fingerprint;
    bool shared;
  };

  RedisConnection* connection;
  ParallelCapOptions options;
  std::string owner;
  int listener = 0;

  mutable absl::Mutex mu;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  uint64_t next_id ABSL_GUARDED_BY(mu) = 1;
  absl::flat_hash_map<std::string, Held> held ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, int> held_per_token ABSL_GUARDED_BY(mu);

  std::string Key(const std::string& fingerprint) const {
    return connection->Key(absl::StrCat("cap:", fingerprint));
  }
  std::string TtlMs() const {
    return absl::StrCat(absl::ToInt64Milliseconds(options.holder_ttl));
  }

  ParallelSlot MakeSlot(std::shared_ptr<CapState> self,
                        const std::string& fingerprint,
                        const std::string& holder, bool shared)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    held[holder] = {fingerprint, shared};
    ++held_per_token[fingerprint];
    ParallelSlot slot;
    slot.state_ = std::move(self);
    slot.fingerprint_ = fingerprint;
    slot.holder_ = holder;
    slot.shared_ = shared;
    return slot;
  }

  // Loop thread. One attempt; schedules the next while the deadline allows.
  void Attempt(std::shared_ptr<CapState> self, std::string fingerprint,
               absl::Time deadline, SharedParallelCap::SlotCallback done) {
    std::string holder;
    bool is_stopped;
    {
      absl::MutexLock lock(&mu);
      is_stopped = stopped;
      holder = absl::StrCat(owner, ":", next_id++);
    }
    if (is_stopped) {
      done(absl::CancelledError("the parallel cap is shutting down"));
      return;
    }
    if (connection->state() != ConnectionState::kConnected) {
      AttemptLocal(std::move(self), std::move(fingerprint), deadline,
                   std::move(done));
      return;
    }
    std::weak_ptr<CapState> weak = self;
    connection->Eval(
        AcquireScript(), {Key(fingerprint)},
        {absl::StrCat(options.cap), TtlMs(), holder},
        [weak, fingerprint, holder, deadline,
         done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
          auto self = weak.lock();
          if (self == nullptr) {
            done(absl::CancelledError("the parallel cap is shutting down"));
            return;
          }
          if (!r.ok()) {
            // Redis failed this one: do not wait for it.
            self->AttemptLocal(self, std::move(fingerprint), deadline,
                               std::move(done));
            return;
          }
          if (r->type == RedisReply::Type::kInteger && r->integer == 1) {
            ParallelSlot slot;
            {
              absl::MutexLock lock(&self->mu);
              slot = self->MakeSlot(self, fingerprint, holder, true);
            }
            done(std::move(slot));
            return;
          }
          self->RetryLater(self, std::move(fingerprint), deadline,
                           std::move(done));
        });
  }

  void AttemptLocal(std::shared_ptr<CapState> self, std::string fingerprint,
                    absl::Time deadline, SharedParallelCap::SlotCallback done) {
    std::optional<ParallelSlot> slot;
    {
      absl::MutexLock lock(&mu);
      // Every slot this replica holds counts, shared ones taken before Redis
      // went away included: they are requests at Metrica all the same.
      if (held_per_token[fingerprint] < options.fallback_parallel) {
        slot = MakeSlot(self, fingerprint,
                        absl::StrCat(owner, ":", next_id++), false);
      }
    }
    if (slot.has_value()) {
      done(std::move(*slot));
      return;
    }
    RetryLater(std::move(self), std::move(fingerprint), deadline,
               std::move(done));
  }

  void RetryLater(std::shared_ptr<CapState> self, std::string fingerprint,
                  absl::Time deadline, SharedParallelCap::SlotCallback done) {
    absl::Time next = absl::Now() + options.retry_interval;
    if (next >= deadline) {
      done(absl::DeadlineExceededError(
          "no free parallel-request slot for this token before the deadline"));
      return;
    }
    std::weak_ptr<CapState> weak = self;
    connection->loop()->RunAfter(
        options.retry_interval,
        [weak, fingerprint = std::move(fingerprint), deadline,
         done = std::move(done)]() mutable {
          auto self = weak.lock();
          if (self == nullptr) {
            done(absl::CancelledError("the parallel cap is shutting down"));
            return;
          }
          self->Attempt(self, std::move(fingerprint), deadline,
                        std::move(done));
        });
  }

  void Release(const std::string& holder) {
    Held h;
    {
      absl::MutexLock lock(&mu);
      auto it = held.find(holder);
      if (it == held.end()) return;
      h = it->second;
      held.erase(it);
      if (--held_per_token[h.fingerprint] == 0) {
        held_per_token.erase(h.fingerprint);
      }
      if (stopped) return;
    }
    if (h.shared) {
      // When this fails the holder expires by its TTL.
      connection->Command({"ZREM", Key(h.fingerprint), holder},
                          [](absl::StatusOr<RedisReply>) {});
    }
  }

  // Loop thread, when Redis is back: local slots start to count there.
  void AdoptLocalSlots(const std::weak_ptr<CapState>& weak) {
    std::vector<std::pair<std::string, std::string>> local;  // holder, fp
    {
      absl::MutexLock lock(&mu);
      for (auto& [holder, h] : held) {
        if (!h.shared) local.emplace_back(holder, h.fingerprint);
      }
    }
    for (auto& [holder, fingerprint] : local) {
      connection->Eval(AdoptScript(), {Key(fingerprint)}, {TtlMs(), holder},
                       [weak, holder = holder,
                        fingerprint = fingerprint](absl::StatusOr<RedisReply> r) {
                         auto self = weak.lock();
                         if (self == nullptr || !r.ok()) return;
                         absl::MutexLock lock(&self->mu);
                         auto it = self->held.find(holder);
                         if (it != self->held.end()) it->second.shared = true;
                         // Released meanwhile: ZREM it (it would expire too).
                         else
                           self->connection->Command(
                               {"ZREM", self->Key(fingerprint), holder},
                               [](absl::StatusOr<RedisReply>) {});
                       });
    }
  }
};

ParallelSlot::ParallelSlot(ParallelSlot&& other) noexcept { *this = std::move(other); }

ParallelSlot& ParallelSlot::operator=(ParallelSlot&& other) noexcept {
  if (this != &other) {
    Release();
    state_ = std::move(other.state_);
    fingerprint_ = std::move(other.fingerprint_);
    holder_ = std::move(other.holder_);
    shared_ = other.shared_;
    other.state_ = nullptr;
  }
  return *this;
}

ParallelSlot::~ParallelSlot() { Release(); }

void ParallelSlot::Release() {
  if (state_ == nullptr) return;
  state_->Release(holder_);
  state_ = nullptr;
}

SharedParallelCap::SharedParallelCap(RedisConnection* connection,
                                     ParallelCapOptions options)
    : state_(std::make_shared<ParallelSlot::CapState>()) {
  state_->connection = connection;
  connection->Preload(AcquireScript());
  connection->Preload(AdoptScript());
  state_->owner = options.owner_id.empty() ? MakeReplicaId() : options.owner_id;
  state_->options = std::move(options);
  std::weak_ptr<ParallelSlot::CapState> weak = state_;
  state_->listener = connection->AddStateListener([weak](ConnectionState s) {
    auto self = weak.lock();
    if (self != nullptr && s == ConnectionState::kConnected) {
      self->AdoptLocalSlots(weak);
    }
  });
}

SharedParallelCap::~SharedParallelCap() {
  state_->connection->RemoveStateListener(state_->listener);
  absl::MutexLock lock(&state_->mu);
  state_->stopped = true;
}

void SharedParallelCap::Acquire(const std::string& token_fingerprint,
                                absl::Time deadline, SlotCallback done) {
  state_->connection->loop()->Post(
      [self = state_, fingerprint = token_fingerprint, deadline,
       done = std::move(done)]() mutable {
        self->Attempt(self, std::move(fingerprint), deadline, std::move(done));
      });
}

int SharedParallelCap::HeldByThisReplica(
    const std::string& token_fingerprint) const {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->held_per_token.find(token_fingerprint);
  return it == state_->held_per_token.end() ? 0 : it->second;
}

std::string SharedParallelCap::Key(const std::string& token_fingerprint) const {
  return state_->Key(token_fingerprint);
}

}  // namespace uploadwatch::redis
