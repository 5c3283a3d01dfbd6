#include "service/redis/state_stream.h"

#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"

namespace uploadwatch::redis {

std::optional<std::pair<uint64_t, uint64_t>> ParseStreamId(
    absl::string_view id) {
  std::pair<uint64_t, uint64_t> out{0, 0};
  size_t dash = id.find('-');
  if (dash == absl::string_view::npos ||
      !absl::SimpleAtoi(id.substr(0, dash), &out.first) ||
      !absl::SimpleAtoi(id.substr(dash + 1), &out.second)) {
    return std::nullopt;
  }
  return out;
}

namespace {

// KEYS[1] the stream, KEYS[2] the lease (the stream again when unfenced),
// KEYS[3] the version floor. ARGV: owner ('' = unfenced), version, payload,
// max length. The entry's version is above the floor (versions some replica
// showed on its own, RaiseFloor): the asked one, or floor + 1.
const RedisScript& PublishScript() {
  static const RedisScript* script = new RedisScript(R"lua(
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('NOTOWNER the poll lease is held by another replica')
end
local v = tonumber(ARGV[2])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local fields = last[1][2]
  local lv, floor_mark = nil, false
  for i = 1, #fields, 2 do
    if fields[i] == 'v' then lv = tonumber(fields[i + 1]) end
    if fields[i] == 'f' then floor_mark = true end
  end
  -- After a floor mark the floor decides (it is above every entry).
  if lv ~= nil and not floor_mark and lv >= v then
    return redis.error_reply('STALE version ' .. ARGV[2] .. ' is not after ' .. lv)
  end
end
local floor = tonumber(redis.call('GET', KEYS[3]) or '0')
if floor >= v then v = floor + 1 end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*',
                  'v', tostring(v), 's', ARGV[3])
)lua");
  return *script;
}

// KEYS[1] the stream, KEYS[2] the lease, KEYS[3] the stream's newest entry
// per uploading (a hash, not trimmed). ARGV: owner, version, payload, max
// length, sent (ms), uploading id, the hash's TTL (ms). A counter's changes:
// many uploadings, each with its own version, so no version check here (the
// publisher keeps them going up). The hash's value is
// "<first id>|<id>|<version>|<payload>": what a resume on another replica
// takes the client to hold (the stream itself is trimmed). The same version
// and payload as the newest one is not appended again (its id is answered).
const RedisScript& AppendChangeScript() {
  static const RedisScript* script = new RedisScript(R"lua(
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('NOTOWNER the poll lease is held by another replica')
end
local old = redis.call('HGET', KEYS[3], ARGV[6])
local first = nil
if old then
  local f, i, v, s = string.match(old, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
  -- The same version and state again (a new holder that did not see it
  -- relayed): not a change, and a resume must not show it twice.
  if v == ARGV[2] and s == ARGV[3] then return i end
  first = f
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*',
                      'v', ARGV[2], 's', ARGV[3], 'o', ARGV[1], 't', ARGV[5])
if not first then first = id end
redis.call('HSET', KEYS[3], ARGV[6], first .. '|' .. id .. '|' .. ARGV[2] .. '|' .. ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[7])
return id
)lua");
  return *script;
}

// KEYS[1] a counter's changes stream, KEYS[2] the poll lease. ARGV: owner
// id, confirmations, max length, sent (ms). Appends {c, o, t} if the lease is
// still the owner's; returns the entry id. No newest-entry hash update: a
// confirmation is no state.
const RedisScript& AppendConfirmationsScript() {
  static const RedisScript* script = new RedisScript(R"lua(
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('NOTOWNER the poll lease is held by another replica')
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*',
                  'c', ARGV[2], 'o', ARGV[1], 't', ARGV[4])
)lua");
  return *script;
}

// KEYS[1] the stream, KEYS[2] the version floor. ARGV: version, max length,
// floor TTL (ms). Raises the floor to the version; when the history's newest
// entry is below it, appends a floor mark {v, f} (no state) so that the
// holder learns it must number after it. Returns 1 when a mark was added.
const RedisScript& RaiseFloorScript() {
  static const RedisScript* script = new RedisScript(R"lua(
local v = tonumber(ARGV[1])
local floor = tonumber(redis.call('GET', KEYS[2]) or '0')
if v <= floor then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'v' and tonumber(fields[i + 1]) >= v then return 0 end
  end
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'v', ARGV[1], 'f', '1')
return 1
)lua");
  return *script;
}

// KEYS[1] the stream, KEYS[2] its newest entry per uploading (a hash). ARGV:
// after (exclusive), until (inclusive or '+'). The oldest and newest entries
// kept, the range and the hash, in one script, so that no trim or append
// between them makes a range look complete when it is not.
const RedisScript& RangeScript() {
  static const RedisScript* script = new RedisScript(R"lua(
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local range = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], ARGV[2])
return {first, last, range, redis.call('HGETALL', KEYS[2])}
)lua");
  return *script;
}

// (0, 0) when malformed.
std::pair<uint64_t, uint64_t> ParseId(absl::string_view id) {
  return ParseStreamId(id).value_or(std::pair<uint64_t, uint64_t>{0, 0});
}

// [id, [field, value, ...]] -> entry; nullopt when malformed.
std::optional<StreamEntry> ParseEntry(const RedisReply& r) {
  if (r.type != RedisReply::Type::kArray || r.elements.size() != 2 ||
      r.elements[1].type != RedisReply::Type::kArray) {
    return std::nullopt;
  }
  StreamEntry e;
  e.id = r.elements[0].str;
  const auto& fields = r.elements[1].elements;
  for (size_t i = 0; i + 1 < fields.size(); i += 2) {
    if (fields[i].str == "v") {
      if (!absl::SimpleAtoi(fields[i + 1].str, &e.version)) return std::nullopt;
    } else if (fields[i].str == "s") {
      e.payload = fields[i + 1].str;
    } else if (fields[i].str == "f") {
      e.floor = true;
    } else if (fields[i].str == "c") {
      e.confirmations = true;
      e.payload = fields[i + 1].str;
    } else if (fields[i].str == "o") {
      e.owner = fields[i + 1].str;
    } else if (fields[i].str == "t") {
      if (!absl::SimpleAtoi(fields[i + 1].str, &e.sent_ms)) return std::nullopt;
    }
  }
  return e;
}

}  // namespace

struct StateStream::State {
  // A read's stream key -> (group, subscription generation).
  using ReadTargets =
      absl::flat_hash_map<std::string, std::pair<std::string, uint64_t>>;

  struct Subscription {
    std::string key;
    std::string last_id;  // empty: to be resolved to the stream's newest id
    std::shared_ptr<EntryCallback> on_entry;
    uint64_t generation = 0;  // tells a re-subscription from the old one
    // The position must be compared with the oldest entry kept before the
    // next read (set at Subscribe with an id, and after every reconnect).
    bool check_trimmed = false;
    bool gap_pending = false;  // the next entry delivered has after_gap
  };

  RedisConnection* commands;
  RedisConnection* reader;
  StateStreamOptions options;
  int listener = 0;

  mutable absl::Mutex mu;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  absl::flat_hash_map<std::string, Subscription> subs ABSL_GUARDED_BY(mu);
  uint64_t next_generation ABSL_GUARDED_BY(mu) = 1;

  // Loop thread only.
  bool reading = false;
  // An XREAD BLOCK is outstanding (the one numbered xread_generation).
  bool xread_in_flight = false;
  uint64_t xread_generation = 0;
  int64_t reader_client_id = 0;  // 0: unknown on this connection
  EventLoop::TimerId retry_timer = 0;

  std::string Key(const std::string& group) const {
    return commands->Key(absl::StrCat("history:", group));
  }

  // Loop thread: a blocked XREAD returns now (so it is re-issued with the
  // current subscriptions). The XREAD may still be on its way to Redis (sent
  // on the reader connection, the UNBLOCK on the other one overtaking it):
  // then nothing was blocked yet, and the UNBLOCK is sent again shortly,
  // until that XREAD is unblocked or has returned, lest a new subscription
  // wait a whole `block` for its first entry.
  void WakeReader(const std::weak_ptr<State>& weak, int attempts = 50) {
    if (!xread_in_flight || reader_client_id == 0) return;
    const uint64_t read = xread_generation;
    commands->Command(
        {"CLIENT", "UNBLOCK", absl::StrCat(reader_client_id)},
        [weak, read, attempts](absl::StatusOr<RedisReply> r) {
          auto self = weak.lock();
          if (self == nullptr || !r.ok() || attempts <= 1) return;
          if (r->type == RedisReply::Type::kInteger && r->integer == 1) return;
          if (!self->xread_in_flight || self->xread_generation != read) return;
          self->reader->loop()->RunAfter(absl::Milliseconds(2), [weak, read,
                                                               attempts] {
            auto again = weak.lock();
            if (again == nullptr || !again->xread_in_flight ||
                again->xread_generation != read) {
              return;
            }
            again->WakeReader(weak, attempts - 1);
          });
        });
  }

  // Loop thread: the next read, unless one is running.
  void Kick(const std::weak_ptr<State>& weak) {
    if (reading || reader->state() != ConnectionState::kConnected) return;
    std::vector<std::pair<std::string, std::string>> unresolved;  // group, key
    std::vector<std::pair<std::string, std::string>> to_check;    // group, key
    {
      absl::MutexLock lock(&mu);
      if (stopped || subs.empty()) return;
      for (auto& [group, s] : subs) {
        if (s.last_id.empty()) {
          unresolved.emplace_back(group, s.key);
        } else if (s.check_trimmed) {
          to_check.emplace_back(group, s.key);
        }
      }
    }
    reading = true;
    auto failed = [weak](const absl::Status&) {
      auto self = weak.lock();
      if (self == nullptr) return;
      self->reading = false;
      self->RetrySoon(weak);
    };
    if (reader_client_id == 0) {
      reader->Command({"CLIENT", "ID"}, [weak, failed](absl::StatusOr<RedisReply> r) {
        auto self = weak.lock();
        if (self == nullptr) return;
        if (!r.ok()) return failed(r.status());
        self->reader_client_id = r->integer;
        self->reading = false;
        self->Kick(weak);
      });
      return;
    }
    if (!unresolved.empty()) {
      auto left = std::make_shared<size_t>(unresolved.size());
      for (auto& [group, key] : unresolved) {
        reader->Command(
            {"XREVRANGE", key, "+", "-", "COUNT", "1"},
            [weak, group = group, left, failed](absl::StatusOr<RedisReply> r) {
              auto self = weak.lock();
              if (self == nullptr) return;
              if (r.ok()) {
                std::string id = "0-0";
                if (r->type == RedisReply::Type::kArray && !r->elements.empty()) {
                  if (auto e = ParseEntry(r->elements[0])) id = e->id;
                }
                absl::MutexLock lock(&self->mu);
                auto it = self->subs.find(group);
                if (it != self->subs.end() && it->second.last_id.empty()) {
                  it->second.last_id = id;
                }
              }
              if (--*left > 0) return;
              self->reading = false;
              if (!r.ok()) return failed(r.status());
              self->Kick(weak);
            });
      }
      return;
    }
    if (!to_check.empty()) {
      auto left = std::make_shared<size_t>(to_check.size());
      for (auto& [group, key] : to_check) {
        reader->Command(
            {"XRANGE", key, "-", "+", "COUNT", "1"},
            [weak, group = group, left, failed](absl::StatusOr<RedisReply> r) {
              auto self = weak.lock();
              if (self == nullptr) return;
              if (r.ok()) {
                absl::MutexLock lock(&self->mu);
                auto it = self->subs.find(group);
                if (it != self->subs.end()) {
                  it->second.check_trimmed = false;
                  if (r->type == RedisReply::Type::kArray && !r->elements.empty()) {
                    std::optional<StreamEntry> first = ParseEntry(r->elements[0]);
                    // The position itself is gone: what followed it may be too.
                    if (first.has_value() &&
                        ParseId(first->id) > ParseId(it->second.last_id) &&
                        it->second.last_id != "0-0") {
                      it->second.gap_pending = true;
                    }
                  }
                }
              }
              if (--*left > 0) return;
              self->reading = false;
              if (!r.ok()) return failed(r.status());
              self->Kick(weak);
            });
      }
      return;
    }
    std::vector<std::string> argv = {
        "XREAD", "COUNT", absl::StrCat(options.read_count), "BLOCK",
        absl::StrCat(absl::ToInt64Milliseconds(options.block)), "STREAMS"};
    std::vector<std::string> ids;
    ReadTargets group_of_key;
    {
      absl::MutexLock lock(&mu);
      for (auto& [group, s] : subs) {
        argv.push_back(s.key);
        ids.push_back(s.last_id);
        group_of_key[s.key] = {group, s.generation};
      }
    }
    argv.insert(argv.end(), ids.begin(), ids.end());
    xread_in_flight = true;
    ++xread_generation;
    // The read may wait `block` in Redis: the deadline counts from there.
    reader->Command(
        std::move(argv),
        [weak, failed, group_of_key = std::move(group_of_key)](
            absl::StatusOr<RedisReply> r) {
          auto self = weak.lock();
          if (self == nullptr) return;
          self->xread_in_flight = false;
          if (!r.ok()) return failed(r.status());
          self->Deliver(*r, group_of_key);
          self->reading = false;
          self->Kick(weak);
        },
        options.block + absl::Seconds(2));
  }

  void RetrySoon(const std::weak_ptr<State>& weak) {
    if (retry_timer != 0) return;
    retry_timer = reader->loop()->RunAfter(absl::Milliseconds(100), [weak] {
      auto self = weak.lock();
      if (self == nullptr) return;
      self->retry_timer = 0;
      self->Kick(weak);
    });
  }

  // Loop thread. nil reply: the block ran out (or CLIENT UNBLOCK).
  void Deliver(const RedisReply& r, const ReadTargets& group_of_key) {
    if (r.type != RedisReply::Type::kArray) return;
    for (const RedisReply& stream : r.elements) {
      if (stream.type != RedisReply::Type::kArray || stream.elements.size() != 2) {
        continue;
      }
      auto g = group_of_key.find(stream.elements[0].str);
      if (g == group_of_key.end()) continue;
      const std::string& group = g->second.first;
      const uint64_t generation = g->second.second;
      for (const RedisReply& raw : stream.elements[1].elements) {
        std::optional<StreamEntry> e = ParseEntry(raw);
        if (!e.has_value()) continue;
        std::shared_ptr<EntryCallback> cb;
        {
          absl::MutexLock lock(&mu);
          auto it = subs.find(group);
          // Unsubscribed (or subscribed anew, from another id) meanwhile:
          // not for this subscription.
          if (stopped || it == subs.end() ||
              it->second.generation != generation) {
            break;
          }
          it->second.last_id = e->id;
          e->after_gap = it->second.gap_pending;
          it->second.gap_pending = false;
          cb = it->second.on_entry;
        }
        (*cb)(group, *e);
      }
    }
  }
};

StateStream::StateStream(RedisConnection* commands, RedisConnection* reader,
                         StateStreamOptions options)
    : state_(std::make_shared<State>()) {
  state_->commands = commands;
  commands->Preload(PublishScript());
  commands->Preload(RaiseFloorScript());
  commands->Preload(AppendChangeScript());
  commands->Preload(AppendConfirmationsScript());
  commands->Preload(RangeScript());
  state_->reader = reader;
  state_->options = std::move(options);
  std::weak_ptr<State> weak = state_;
  state_->listener = reader->AddStateListener([weak](ConnectionState s) {
    auto self = weak.lock();
    if (self == nullptr) return;
    // A new connection has a new client id; a read on the old one failed.
    self->reader_client_id = 0;
    if (s == ConnectionState::kConnected) {
      // Trimming may have passed a position while the reader was away.
      absl::MutexLock lock(&self->mu);
      for (auto& [group, sub] : self->subs) sub.check_trimmed = true;
    }
    if (s == ConnectionState::kConnected) self->Kick(weak);
  });
  reader->loop()->Post([weak] {
    if (auto self = weak.lock()) self->Kick(weak);
  });
}

StateStream::~StateStream() {
  state_->reader->RemoveStateListener(state_->listener);
  state_->reader->loop()->RunSync([s = state_.get()] {
    {
      absl::MutexLock lock(&s->mu);
      s->stopped = true;
    }
    s->reader->loop()->Cancel(s->retry_timer);
    s->WakeReader(std::weak_ptr<State>(), 1);
  });
}

std::string StateStream::Key(const std::string& group) const {
  return state_->Key(group);
}

std::string StateStream::LatestKey(const std::string& stream) const {
  return state_->commands->Key(absl::StrCat("changes:", stream));
}

std::string StateStream::FloorKey(const std::string& group) const {
  return state_->commands->Key(absl::StrCat("floor:", group));
}

void StateStream::Publish(const std::string& group, int64_t version,
                          std::string payload, std::optional<PublishFence> fence,
                          IdCallback done) {
  std::string key = Key(group);
  std::string lease_key = fence.has_value() ? fence->lease_key : key;
  std::string owner = fence.has_value() ? fence->owner : "";
  state_->commands->Eval(
      PublishScript(), {key, lease_key, FloorKey(group)},
      {owner, absl::StrCat(version), std::move(payload),
       absl::StrCat(state_->options.max_len)},
      [done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
        if (!r.ok()) {
          if (absl::StartsWith(r.status().message(), "STALE")) {
            return done(absl::AbortedError(r.status().message()));
          }
          return done(r.status());
        }
        if (r->type != RedisReply::Type::kString) {
          return done(absl::InternalError("XADD answered no id"));
        }
        done(r->str);
      });
}

void StateStream::AppendChange(const std::string& stream, int64_t uploading_id,
                               int64_t version, std::string payload,
                               int64_t sent_ms,
                               const PublishFence& fence, IdCallback done) {
  state_->commands->Eval(
      AppendChangeScript(), {Key(stream), fence.lease_key, LatestKey(stream)},
      {fence.owner, absl::StrCat(version), std::move(payload),
       absl::StrCat(state_->options.max_len), absl::StrCat(sent_ms),
       absl::StrCat(uploading_id),
       absl::StrCat(absl::ToInt64Milliseconds(state_->options.floor_ttl))},
      [done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
        if (!r.ok()) return done(r.status());
        if (r->type != RedisReply::Type::kString) {
          return done(absl::InternalError("XADD answered no id"));
        }
        done(r->str);
      });
}

void StateStream::AppendConfirmations(const std::string& stream,
                                      const std::vector<Confirmed>& confirmed,
                                      int64_t sent_ms,
                                      const PublishFence& fence,
                                      IdCallback done) {
  state_->commands->Eval(
      AppendConfirmationsScript(), {Key(stream), fence.lease_key},
      {fence.owner, FormatConfirmations(confirmed),
       absl::StrCat(state_->options.max_len), absl::StrCat(sent_ms)},
      [done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
        if (!r.ok()) return done(r.status());
        if (r->type != RedisReply::Type::kString) {
          return done(absl::InternalError("XADD answered no id"));
        }
        done(r->str);
      });
}

std::string FormatConfirmations(
    const std::vector<StateStream::Confirmed>& confirmed) {
  return absl::StrJoin(confirmed, ",",
                       [](std::string* out, const StateStream::Confirmed& c) {
                         absl::StrAppend(out, c.uploading_id, ":", c.version);
                       });
}

std::optional<std::vector<StateStream::Confirmed>> ParseConfirmations(
    absl::string_view text) {
  std::vector<StateStream::Confirmed> out;
  if (text.empty()) return out;
  for (absl::string_view pair : absl::StrSplit(text, ',')) {
    std::pair<absl::string_view, absl::string_view> p =
        absl::StrSplit(pair, absl::MaxSplits(':', 1));
    StateStream::Confirmed c;
    if (!absl::SimpleAtoi(p.first, &c.uploading_id) ||
        !absl::SimpleAtoi(p.second, &c.version) || c.uploading_id <= 0 ||
        c.version <= 0) {
      return std::nullopt;
    }
    out.push_back(c);
  }
  return out;
}

void StateStream::RaiseFloor(const std::string& group, int64_t version,
                             FloorCallback done) {
  state_->commands->Eval(
      RaiseFloorScript(), {Key(group), FloorKey(group)},
      {absl::StrCat(version), absl::StrCat(state_->options.max_len),
       absl::StrCat(absl::ToInt64Milliseconds(state_->options.floor_ttl))},
      [done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
        if (!r.ok()) return done(r.status());
        if (r->type != RedisReply::Type::kInteger) {
          return done(absl::InternalError("the floor script answered no integer"));
        }
        done(r->integer == 1);
      });
}

void StateStream::Last(const std::string& group, LastCallback done) {
  state_->commands->Command(
      {"XREVRANGE", Key(group), "+", "-", "COUNT", "1"},
      [done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
        if (!r.ok()) return done(r.status());
        if (r->type != RedisReply::Type::kArray || r->elements.empty()) {
          return done(std::optional<StreamEntry>());
        }
        std::optional<StreamEntry> e = ParseEntry(r->elements[0]);
        if (!e.has_value()) {
          return done(absl::InternalError("malformed history entry"));
        }
        done(std::move(e));
      });
}

void StateStream::ChangesAfter(const std::string& group,
                               const std::string& after_id,
                               const std::string& until_id,
                               absl::Time not_before, RangeCallback done) {
  const std::optional<std::pair<uint64_t, uint64_t>> after =
      ParseStreamId(after_id);
  if (!after || (until_id != "+" && !ParseStreamId(until_id))) {
    return done(absl::InvalidArgumentError(
        absl::StrCat("not a stream id: ", after_id, " / ", until_id)));
  }
  // "0-0": everything kept, from the first entry (a reader starting out).
  const bool everything = after->first == 0 && after->second == 0;
  if (!everything &&
      static_cast<int64_t>(after->first) < absl::ToUnixMillis(not_before)) {
    return done(std::optional<Range>());  // older than honoured
  }
  state_->commands->Eval(
      RangeScript(), {Key(group), LatestKey(group)}, {after_id, until_id},
      [after = *after, everything, done = std::move(done)](
          absl::StatusOr<RedisReply> r) mutable {
        if (!r.ok()) return done(r.status());
        if (r->type != RedisReply::Type::kArray || r->elements.size() != 4) {
          return done(absl::InternalError("the range script answered no quad"));
        }
        const RedisReply& first = r->elements[0];
        const RedisReply& last = r->elements[1];
        if (first.type != RedisReply::Type::kArray || first.elements.empty() ||
            last.type != RedisReply::Type::kArray || last.elements.empty()) {
          // Empty: nothing to go by (from the start: nothing yet).
          if (everything) return done(std::optional<Range>(Range{}));
          return done(std::optional<Range>());
        }
        std::optional<StreamEntry> oldest = ParseEntry(first.elements[0]);
        std::optional<StreamEntry> newest = ParseEntry(last.elements[0]);
        if (!oldest || !newest) {
          return done(absl::InternalError("malformed history entry"));
        }
        // The entry at `after` itself may be trimmed (the first kept is
        // then after it) -- and so may the ones after it.
        if ((!everything && ParseId(oldest->id) > after) ||
            ParseId(newest->id) < after) {
          return done(std::optional<Range>());
        }
        Range range;
        range.head = newest->id;
        for (const RedisReply& e : r->elements[2].elements) {
          std::optional<StreamEntry> entry = ParseEntry(e);
          if (!entry) return done(absl::InternalError("malformed history entry"));
          range.entries.push_back(*std::move(entry));
        }
        const auto& hash = r->elements[3].elements;
        for (size_t i = 0; i + 1 < hash.size(); i += 2) {
          // "<first id>|<id>|<version>|<payload>"
          std::vector<absl::string_view> parts =
              absl::StrSplit(hash[i + 1].str, absl::MaxSplits('|', 3));
          Latest latest;
          if (parts.size() != 4 ||
              !absl::SimpleAtoi(hash[i].str, &latest.uploading_id) ||
              !absl::SimpleAtoi(parts[2], &latest.entry.version)) {
            return done(absl::InternalError("malformed newest-entry record"));
          }
          latest.first_id = std::string(parts[0]);
          latest.entry.id = std::string(parts[1]);
          latest.entry.payload = std::string(parts[3]);
          range.latest.push_back(std::move(latest));
        }
        done(std::optional<Range>(std::move(range)));
      });
}

absl::Status StateStream::Subscribe(const std::string& group,
                                    std::string after_id,
                                    EntryCallback on_entry) {
  {
    absl::MutexLock lock(&state_->mu);
    if (state_->subs.contains(group)) {
      return absl::AlreadyExistsError(
          absl::StrCat("the history of ", group, " is already subscribed"));
    }
    bool explicit_position = !after_id.empty() && after_id != "0-0";
    state_->subs[group] = {
        Key(group), std::move(after_id),
        std::make_shared<EntryCallback>(std::move(on_entry)),
        state_->next_generation++, explicit_position};
  }
  std::weak_ptr<State> weak = state_;
  state_->reader->loop()->Post([weak] {
    auto self = weak.lock();
    if (self == nullptr) return;
    self->WakeReader(weak);
    self->Kick(weak);
  });
  return absl::OkStatus();
}

void StateStream::Unsubscribe(const std::string& group) {
  // Deliveries run on the loop: erasing there means none is under way.
  state_->reader->loop()->RunSync([s = state_.get(), &group] {
    {
      absl::MutexLock lock(&s->mu);
      s->subs.erase(group);
    }
    // Once is enough: entries of a stream no longer subscribed are dropped.
    s->WakeReader(std::weak_ptr<State>(), 1);
  });
}

std::string StateStream::LastDeliveredId(const std::string& group) const {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->subs.find(group);
  return it == state_->subs.end() ? "" : it->second.last_id;
}

}  // namespace uploadwatch::redis
