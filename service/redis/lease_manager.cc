#include "service/redis/lease_manager.h"

#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace uploadwatch::redis {

namespace {

// Compare-and-expire: only the holder extends its lease.
const RedisScript& RenewScript() {
  static const RedisScript* script = new RedisScript(R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
)lua");
  return *script;
}

// Compare-and-delete: only the holder ends its lease.
const RedisScript& ReleaseScript() {
  static const RedisScript* script = new RedisScript(R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
)lua");
  return *script;
}

}  // namespace

struct LeaseManager::State {
  struct Entry {
    bool held = false;
    absl::Time held_until;
    bool in_flight = false;
    bool reported = false;  // the ShouldPoll last reported (or seen by Want)
  };

  RedisConnection* connection;
  LeaseOptions options;
  std::string owner;
  ChangeCallback on_change;

  mutable absl::Mutex mu;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  absl::flat_hash_map<std::string, Entry> groups ABSL_GUARDED_BY(mu);

  // Loop thread only.
  EventLoop::TimerId timer = 0;
  int listener = 0;

  bool ShouldPollLocked(const Entry& e, absl::Time now) const
      ABSL_SHARED_LOCKS_REQUIRED(mu) {
    if (connection->state() != ConnectionState::kConnected) return true;
    return e.held && now < e.held_until;
  }

  std::string Key(const std::string& group) const {
    return connection->Key(absl::StrCat("lease:", group));
  }

  // Loop thread: reports every change of ShouldPoll since the last report.
  void Report() {
    std::vector<std::pair<std::string, bool>> changes;
    {
      absl::MutexLock lock(&mu);
      if (stopped) return;
      absl::Time now = absl::Now();
      for (auto& [group, e] : groups) {
        if (e.held && now >= e.held_until) e.held = false;  // expired unrenewed
        bool current = ShouldPollLocked(e, now);
        if (current != e.reported) {
          e.reported = current;
          changes.emplace_back(group, current);
        }
      }
    }
    for (auto& [group, should_poll] : changes) on_change(group, should_poll);
  }

  // Loop thread: renews `group`'s lease when held, tries to take it if not.
  void Attempt(const std::string& group, std::weak_ptr<State> weak) {
    bool held;
    {
      absl::MutexLock lock(&mu);
      auto it = groups.find(group);
      if (stopped || it == groups.end() || it->second.in_flight) return;
      if (connection->state() != ConnectionState::kConnected) return;
      it->second.in_flight = true;
      held = it->second.held;
    }
    absl::Time sent = absl::Now();
    std::string ttl_ms = absl::StrCat(absl::ToInt64Milliseconds(options.ttl));
    auto on_answer = [weak, group, sent, held](absl::StatusOr<RedisReply> r) {
      auto self = weak.lock();
      if (self == nullptr) return;
      bool holds_now;
      if (!r.ok()) {
        holds_now = held;  // unknown: keep until held_until says otherwise
      } else if (held) {
        holds_now = r->type == RedisReply::Type::kInteger && r->integer == 1;
      } else {
        holds_now = r->type == RedisReply::Type::kStatus && r->str == "OK";
      }
      bool release = false;
      {
        absl::MutexLock lock(&self->mu);
        if (self->stopped) return;
        auto it = self->groups.find(group);
        if (it == self->groups.end()) {
          release = r.ok() && holds_now;  // unwanted while we were asking
        } else {
          it->second.in_flight = false;
          if (r.ok()) {
            it->second.held = holds_now;
            if (holds_now) it->second.held_until = sent + self->options.ttl;
          }
        }
      }
      if (release) {
        self->connection->Eval(ReleaseScript(), {self->Key(group)},
                               {self->owner}, [](absl::StatusOr<RedisReply>) {});
      }
      self->Report();
      // Renewal found no lease of ours: when the key is simply gone (an
      // emptied or restarted Redis) take it again now, not a round later.
      if (r.ok() && held && !holds_now) self->Attempt(group, weak);
    };
    if (held) {
      connection->Eval(RenewScript(), {Key(group)}, {owner, ttl_ms},
                       std::move(on_answer));
    } else {
      connection->Command({"SET", Key(group), owner, "NX", "PX", ttl_ms},
                          std::move(on_answer));
    }
  }

  void AttemptAll(const std::weak_ptr<State>& weak) {
    std::vector<std::string> names;
    {
      absl::MutexLock lock(&mu);
      for (auto& [group, e] : groups) names.push_back(group);
    }
    for (const auto& g : names) Attempt(g, weak);
  }

  // Loop thread: one round, then the next one.
  void Tick(std::weak_ptr<State> weak) {
    AttemptAll(weak);
    Report();
    absl::Duration every = options.renew_interval > absl::ZeroDuration()
                               ? options.renew_interval
                               : options.ttl / 3;
    timer = connection->loop()->RunAfter(every, [weak] {
      if (auto self = weak.lock()) self->Tick(weak);
    });
  }
};

LeaseManager::LeaseManager(RedisConnection* connection, LeaseOptions options,
                           ChangeCallback on_change)
    : owner_id_(options.owner_id.empty() ? MakeReplicaId() : options.owner_id),
      state_(std::make_shared<State>()) {
  state_->connection = connection;
  connection->Preload(RenewScript());
  connection->Preload(ReleaseScript());
  state_->options = std::move(options);
  state_->owner = owner_id_;
  state_->on_change = std::move(on_change);
  std::weak_ptr<State> weak = state_;
  state_->listener = connection->AddStateListener([weak](ConnectionState s) {
    auto self = weak.lock();
    if (self == nullptr) return;
    if (s == ConnectionState::kConnected) self->AttemptAll(weak);
    self->Report();
  });
  connection->loop()->Post([weak] {
    if (auto self = weak.lock()) self->Tick(weak);
  });
}

LeaseManager::~LeaseManager() {
  RedisConnection* connection = state_->connection;
  connection->RemoveStateListener(state_->listener);
  connection->loop()->RunSync([s = state_.get(), connection] {
    absl::MutexLock lock(&s->mu);
    s->stopped = true;
    connection->loop()->Cancel(s->timer);
  });
}

void LeaseManager::Want(const std::string& group) {
  {
    absl::MutexLock lock(&state_->mu);
    auto [it, inserted] = state_->groups.try_emplace(group);
    if (!inserted) return;
    it->second.reported = state_->ShouldPollLocked(it->second, absl::Now());
  }
  std::weak_ptr<State> weak = state_;
  state_->connection->loop()->Post([weak, group] {
    if (auto self = weak.lock()) self->Attempt(group, weak);
  });
}

void LeaseManager::Unwant(const std::string& group) {
  bool held;
  {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->groups.find(group);
    if (it == state_->groups.end()) return;
    held = it->second.held;
    state_->groups.erase(it);
  }
  if (held) {
    state_->connection->Eval(ReleaseScript(), {state_->Key(group)},
                             {owner_id_}, [](absl::StatusOr<RedisReply>) {});
  }
}

bool LeaseManager::ShouldPoll(const std::string& group) const {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->groups.find(group);
  if (it == state_->groups.end()) return false;
  return state_->ShouldPollLocked(it->second, absl::Now());
}

bool LeaseManager::Holds(const std::string& group) const {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->groups.find(group);
  return it != state_->groups.end() && it->second.held &&
         absl::Now() < it->second.held_until;
}

void LeaseManager::ReleaseAll(absl::AnyInvocable<void()> done) {
  std::vector<std::string> held;
  {
    absl::MutexLock lock(&state_->mu);
    for (auto& [group, e] : state_->groups) {
      if (!e.held) continue;
      e.held = false;
      held.push_back(group);
    }
  }
  auto remaining = std::make_shared<int>(static_cast<int>(held.size()));
  auto shared_done =
      std::make_shared<absl::AnyInvocable<void()>>(std::move(done));
  if (held.empty()) {
    state_->connection->loop()->Post([shared_done] { (*shared_done)(); });
    return;
  }
  for (const auto& group : held) {
    state_->connection->Eval(
        ReleaseScript(), {state_->Key(group)}, {owner_id_},
        [remaining, shared_done](absl::StatusOr<RedisReply>) {
          if (--*remaining == 0) (*shared_done)();
        });
  }
}

int LeaseManager::HeldCount() const {
  absl::MutexLock lock(&state_->mu);
  absl::Time now = absl::Now();
  int n = 0;
  for (const auto& [group, e] : state_->groups) {
    if (e.held && now < e.held_until) ++n;
  }
  return n;
}

std::string LeaseManager::LeaseKey(const std::string& group) const {
  return state_->Key(group);
}

}  // namespace uploadwatch::redis
