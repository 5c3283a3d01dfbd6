#include "service/redis/group_wants.h"

#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "service/core/poll_ownership.h"

namespace uploadwatch::redis {

namespace {

// KEYS[1] wants:<group>, KEYS[2] groups:<fp>, KEYS[3] history:<group> (the
// notices). ARGV: ttl (ms), counter, read ('1': answer the wants), notice max
// length, then this replica's members. Times are Redis's own, so that the
// replicas' clocks never decide an expiry. Answers {groups of the token,
// [members]} (members only when read).
const RedisScript& RefreshScript() {
  static const RedisScript* script = new RedisScript(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local expires = now + ttl
for i = 5, #ARGV do
  local old = redis.call('ZSCORE', KEYS[1], ARGV[i])
  redis.call('ZADD', KEYS[1], expires, ARGV[i])
  if (not old) or tonumber(old) <= now then
    local id = string.match(ARGV[i], '^[^/]+')
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 's', id)
    redis.call('PEXPIRE', KEYS[3], ttl)
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], expires, ARGV[2])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local groups = redis.call('ZCARD', KEYS[2])
local members = {}
if ARGV[3] == '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  members = redis.call('ZRANGE', KEYS[1], 0, -1)
end
return {groups, members}
)lua");
  return *script;
}

}  // namespace

struct GroupWants::State {
  struct Group {
    std::string fingerprint;
    std::string counter;
    absl::btree_set<int64_t> ids;  // this replica's wants
    bool read = false;
  };

  RedisConnection* connection;
  GroupWantsOptions options;
  WantedCallback on_wanted;

  mutable absl::Mutex mu;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  absl::flat_hash_map<std::string, Group> groups ABSL_GUARDED_BY(mu);
  // Per token fingerprint: its groups over all replicas, last answered.
  absl::flat_hash_map<std::string, size_t> token_groups ABSL_GUARDED_BY(mu);

  // Loop thread only.
  EventLoop::TimerId timer = 0;
  int listener = 0;

  std::string Member(int64_t id) const {
    return absl::StrCat(id, "/", options.owner_id);
  }

  // Loop thread: one script for `group` with every want of this replica.
  void Refresh(const std::string& name, const std::weak_ptr<State>& weak) {
    std::vector<std::string> keys, args;
    bool read;
    std::string fingerprint;
    {
      absl::MutexLock lock(&mu);
      auto it = groups.find(name);
      if (stopped || it == groups.end()) return;
      if (connection->state() != ConnectionState::kConnected) return;
      const Group& g = it->second;
      read = g.read;
      fingerprint = g.fingerprint;
      keys = {connection->Key(absl::StrCat("wants:", name)),
              connection->Key(absl::StrCat("groups:", g.fingerprint)),
              connection->Key(absl::StrCat("history:", name))};
      args = {absl::StrCat(absl::ToInt64Milliseconds(options.ttl)), g.counter,
              read ? "1" : "0", absl::StrCat(options.notice_max_len)};
      for (int64_t id : g.ids) args.push_back(Member(id));
    }
    connection->Eval(
        RefreshScript(), std::move(keys), std::move(args),
        [weak, name, fingerprint](absl::StatusOr<RedisReply> r) {
          auto self = weak.lock();
          if (self == nullptr || !r.ok()) return;  // the next refresh again
          if (r->type != RedisReply::Type::kArray || r->elements.size() != 2) {
            return;
          }
          std::vector<int64_t> wanted;
          absl::flat_hash_set<int64_t> seen;
          for (const RedisReply& m : r->elements[1].elements) {
            int64_t id = 0;
            const size_t slash = m.str.find('/');
            if (slash == std::string::npos ||
                !absl::SimpleAtoi(absl::string_view(m.str).substr(0, slash),
                                  &id)) {
              continue;  // not ours: never polled for
            }
            if (seen.insert(id).second) wanted.push_back(id);
          }
          bool deliver;
          {
            absl::MutexLock lock(&self->mu);
            if (self->stopped) return;
            self->token_groups[fingerprint] =
                static_cast<size_t>(r->elements[0].integer);
            auto it = self->groups.find(name);
            deliver = it != self->groups.end() && it->second.read;
          }
          if (deliver && self->on_wanted) self->on_wanted(name, wanted);
        });
  }

  void RefreshAll(const std::weak_ptr<State>& weak) {
    std::vector<std::string> names;
    {
      absl::MutexLock lock(&mu);
      for (const auto& [name, g] : groups) names.push_back(name);
    }
    for (const auto& name : names) Refresh(name, weak);
  }

  void Tick(const std::weak_ptr<State>& weak) {
    RefreshAll(weak);
    const absl::Duration every =
        options.refresh_interval > absl::ZeroDuration()
            ? options.refresh_interval
            : options.ttl / 3;
    timer = connection->loop()->RunAfter(every, [weak] {
      if (auto self = weak.lock()) self->Tick(weak);
    });
  }

  // Any thread: a refresh of `name` on the loop.
  void Post(const std::string& name) {
    connection->loop()->Post([name, weak = weak_self] {
      if (auto self = weak.lock()) self->Refresh(name, weak);
    });
  }
  std::weak_ptr<State> weak_self;  // set once, before any Post
};

GroupWants::GroupWants(RedisConnection* connection, GroupWantsOptions options,
                       WantedCallback on_wanted)
    : state_(std::make_shared<State>()) {
  state_->connection = connection;
  connection->Preload(RefreshScript());
  state_->options = std::move(options);
  state_->on_wanted = std::move(on_wanted);
  std::weak_ptr<State> weak = state_;
  state_->weak_self = weak;
  state_->listener = connection->AddStateListener([weak](ConnectionState s) {
    auto self = weak.lock();
    if (self == nullptr) return;
    if (s == ConnectionState::kConnected) {
      self->RefreshAll(weak);
    } else {
      absl::MutexLock lock(&self->mu);
      self->token_groups.clear();  // unknown until Redis answers again
    }
  });
  connection->loop()->Post([weak] {
    if (auto self = weak.lock()) self->Tick(weak);
  });
}

GroupWants::~GroupWants() {
  RedisConnection* connection = state_->connection;
  connection->RemoveStateListener(state_->listener);
  connection->loop()->RunSync([s = state_.get(), connection] {
    absl::MutexLock lock(&s->mu);
    s->stopped = true;
    connection->loop()->Cancel(s->timer);
  });
}

void GroupWants::Add(const std::string& group, int64_t uploading_id) {
  {
    absl::MutexLock lock(&state_->mu);
    auto [it, inserted] = state_->groups.try_emplace(group);
    if (inserted) {
      int64_t counter = 0;
      ParsePollGroupKey(group, &it->second.fingerprint, &counter);
      it->second.counter = absl::StrCat(counter);
    }
    if (!it->second.ids.insert(uploading_id).second) return;
  }
  state_->Post(group);
}

void GroupWants::Remove(const std::string& group, int64_t uploading_id) {
  {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->groups.find(group);
    if (it == state_->groups.end() || it->second.ids.erase(uploading_id) == 0) {
      return;
    }
    // The group's own member in groups:<fp> expires with its last refresh.
    if (it->second.ids.empty()) state_->groups.erase(it);
  }
  state_->connection->Command(
      {"ZREM", state_->connection->Key(absl::StrCat("wants:", group)),
       state_->Member(uploading_id)},
      [](absl::StatusOr<RedisReply>) {});  // else it expires
}

void GroupWants::RemoveAll(absl::AnyInvocable<void()> done) {
  std::vector<std::vector<std::string>> commands;
  {
    absl::MutexLock lock(&state_->mu);
    for (const auto& [name, g] : state_->groups) {
      std::vector<std::string> argv = {
          "ZREM", state_->connection->Key(absl::StrCat("wants:", name))};
      for (int64_t id : g.ids) argv.push_back(state_->Member(id));
      commands.push_back(std::move(argv));
    }
    state_->groups.clear();  // nothing refreshed any more
  }
  auto shared_done =
      std::make_shared<absl::AnyInvocable<void()>>(std::move(done));
  if (commands.empty()) {
    state_->connection->loop()->Post([shared_done] { (*shared_done)(); });
    return;
  }
  auto remaining = std::make_shared<size_t>(commands.size());
  for (auto& argv : commands) {
    state_->connection->Command(
        std::move(argv), [remaining, shared_done](absl::StatusOr<RedisReply>) {
          if (--*remaining == 0) (*shared_done)();
        });
  }
}

void GroupWants::Read(const std::string& group, bool read) {
  {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->groups.find(group);
    if (it == state_->groups.end() || it->second.read == read) return;
    it->second.read = read;
  }
  if (read) state_->Post(group);
}

std::optional<size_t> GroupWants::TokenGroups(
    const std::string& token_fingerprint) const {
  if (state_->connection->state() != ConnectionState::kConnected) {
    return std::nullopt;
  }
  absl::MutexLock lock(&state_->mu);
  auto it = state_->token_groups.find(token_fingerprint);
  if (it == state_->token_groups.end()) return std::nullopt;
  return it->second;
}

std::string GroupWants::WantsKey(const std::string& group) const {
  return state_->connection->Key(absl::StrCat("wants:", group));
}

std::string GroupWants::Member(int64_t uploading_id) const {
  return state_->Member(uploading_id);
}

}  // namespace uploadwatch::redis
