#include "service/redis/stream_bridge.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace uploadwatch::redis {

namespace {

// The group of an uploading's name; false for anything else.
bool GroupOf(const std::string& name, std::string* group, int64_t* id) {
  std::string fingerprint;
  int64_t counter_id = 0;
  if (!ParsePollUploadingKey(name, &fingerprint, &counter_id, id)) return false;
  *group = PollGroupKey(fingerprint, counter_id);
  return true;
}

// The uploading a changes stream's entry carries; nullopt for what is no
// state (a floor mark, a holder's confirmations, another version's format).
std::optional<v1::Uploading> StateOfChange(const StreamEntry& entry) {
  v1::Uploading uploading;
  if (entry.floor || entry.confirmations ||
      !uploading.ParseFromString(entry.payload) || uploading.id() <= 0) {
    return std::nullopt;
  }
  return uploading;
}

// The PollUploadingKey of `id` in `group` (a PollGroupKey).
std::string UploadingName(const std::string& group, int64_t id) {
  return absl::StrCat(group, ":", id);
}

}  // namespace

StreamBridge::StreamBridge(CoordinatorOptions options) {
  coordinator_ = std::make_unique<RedisCoordinator>(
      std::move(options),
      [this](const std::string& group, bool should_poll) {
        OnChange(group, should_poll);
      },
      [this](const std::string& group, const std::vector<int64_t>& ids) {
        OnWanted(group, ids);
      });
  listener_ = coordinator_->commands().AddStateListener(
      [this](ConnectionState state) { OnConnectionState(state); });
}

StreamBridge::~StreamBridge() {
  Detach();
  // After this no callback of ours runs on the loop with the coordinator
  // (each checks stopping_ first; this task waits for the one under way).
  coordinator_->commands().loop()->RunSync([this] { stopping_ = true; });
  coordinator_->commands().RemoveStateListener(listener_);
  coordinator_.reset();
}

void StreamBridge::OnConnectionState(ConnectionState state) {
  if (stopping_ || state != ConnectionState::kConnected) return;
  absl::flat_hash_map<std::string, int64_t> unsent;
  {
    absl::MutexLock lock(&mu_);
    unsent.swap(floor_unsent_);
  }
  for (const auto& [name, version] : unsent) RaiseFloor(name, version);
}

void StreamBridge::RaiseFloor(const std::string& name, int64_t version) {
  if (stopping_) return;
  coordinator_->history().RaiseFloor(
      name, version, [this, name, version](absl::StatusOr<bool> marked) {
        if (marked.ok()) return;
        absl::MutexLock lock(&mu_);
        if (!followed_.contains(name)) return;
        int64_t& unsent = floor_unsent_[name];
        unsent = std::max(unsent, version);
      });
}

void StreamBridge::Attach(UploadingHub* hub) {
  absl::MutexLock lock(&hub_mu_);
  hub_ = hub;
}

void StreamBridge::Detach() {
  absl::MutexLock lock(&hub_mu_);
  hub_ = nullptr;
}

void StreamBridge::ReleaseLeases(absl::Duration limit) {
  auto leases = std::make_shared<absl::Notification>();
  auto wants = std::make_shared<absl::Notification>();
  coordinator_->leases().ReleaseAll([leases] { leases->Notify(); });
  // And this replica's wants: the new holder would poll for them until they
  // expired (a lease TTL).
  coordinator_->wants().RemoveAll([wants] { wants->Notify(); });
  const absl::Time deadline = absl::Now() + limit;
  leases->WaitForNotificationWithDeadline(deadline);
  wants->WaitForNotificationWithDeadline(deadline);
}

void StreamBridge::PollChanged(const std::string& name, bool should_poll) {
  absl::ReaderMutexLock lock(&hub_mu_);
  if (hub_ != nullptr) hub_->PollOwnershipChanged(name, should_poll);
}

void StreamBridge::OnChange(const std::string& group, bool should_poll) {
  if (stopping_) return;
  PollChanged(group, should_poll);
  if (coordinator_->leases().Holds(group)) {
    // The holder polls every replica's wants: read them now.
    coordinator_->wants().Read(group, true);
  } else {
    coordinator_->wants().Read(group, false);
    DropOthers(group);
  }
}

uint64_t StreamBridge::StartFollowingLocked(const std::string& name) {
  auto [it, inserted] = followed_.try_emplace(name, 0);
  if (!inserted) return 0;
  return it->second = next_generation_++;
}

void StreamBridge::StopFollowingLocked(const std::string& name) {
  if (auto log = logs_.find(name); log != logs_.end()) {
    if (!log->second.waiting.empty() && !stopping_) {
      // Not followed any more: those catch-ups cannot be read (off the lock).
      coordinator_->commands().loop()->Post(
          [waiting = std::make_shared<std::vector<CatchUpAsk>>(
               std::move(log->second.waiting))] {
            for (CatchUpAsk& ask : *waiting) ask.done(std::nullopt);
          });
    }
    logs_.erase(log);
  }
  followed_.erase(name);
  changes_.erase(name);
  newest_.erase(name);
  confirmations_.erase(name);
  in_history_.erase(name);
  floor_.erase(name);
  floor_asked_.erase(name);
  floor_unsent_.erase(name);
}

void StreamBridge::FollowAll(
    std::vector<std::pair<std::string, uint64_t>> names) {
  for (auto& [name, generation] : names) Follow(name, generation);
}

void StreamBridge::UnfollowLater(std::vector<std::string> names) {
  if (names.empty()) return;
  // On the loop, where deliveries run: one wanted again meanwhile keeps its
  // subscription (its new Follow finds it there).
  coordinator_->commands().loop()->Post([this, names = std::move(names)] {
    if (stopping_) return;
    for (const auto& name : names) {
      {
        absl::MutexLock lock(&mu_);
        if (followed_.contains(name) || groups_.contains(name)) continue;
      }
      coordinator_->history().Unsubscribe(name);
    }
  });
}

void StreamBridge::DropOthers(const std::string& group) {
  std::vector<std::string> unfollow;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(group);
    if (it == groups_.end()) return;
    for (int64_t id : it->second.others) {
      if (it->second.local.contains(id)) continue;
      const std::string name = UploadingName(group, id);
      StopFollowingLocked(name);
      unfollow.push_back(name);
    }
    it->second.others.clear();
  }
  UnfollowLater(std::move(unfollow));
}

void StreamBridge::OnWanted(const std::string& group,
                            const std::vector<int64_t>& ids) {
  if (stopping_) return;
  if (!coordinator_->leases().Holds(group)) return DropOthers(group);
  std::vector<std::pair<std::string, uint64_t>> follow;
  std::vector<std::string> unfollow;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(group);
    if (it == groups_.end()) return;
    GroupState& g = it->second;
    absl::flat_hash_set<int64_t> now(ids.begin(), ids.end());
    for (int64_t id : g.others) {
      if (now.contains(id) || g.local.contains(id)) continue;
      const std::string name = UploadingName(group, id);
      StopFollowingLocked(name);
      unfollow.push_back(name);
    }
    for (int64_t id : now) {
      if (g.others.contains(id) || g.local.contains(id)) continue;
      const std::string name = UploadingName(group, id);
      if (uint64_t generation = StartFollowingLocked(name)) {
        follow.emplace_back(name, generation);
      }
    }
    g.others = std::move(now);
  }
  UnfollowLater(std::move(unfollow));
  const bool gained = !follow.empty();
  FollowAll(std::move(follow));
  if (gained) PollChanged(group, true);  // a round for the newcomers, now
}

void StreamBridge::OnNotice(const std::string& group, const StreamEntry& entry) {
  int64_t id = 0;
  if (stopping_ || !absl::SimpleAtoi(entry.payload, &id)) return;
  if (!coordinator_->leases().Holds(group)) return;
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(group);
    if (it == groups_.end()) return;
    GroupState& g = it->second;
    if (g.local.contains(id) || !g.others.insert(id).second) return;
    generation = StartFollowingLocked(UploadingName(group, id));
  }
  if (generation != 0) Follow(UploadingName(group, id), generation);
  PollChanged(group, true);
}

void StreamBridge::Want(const std::string& name) {
  std::string group;
  int64_t id = 0;
  if (!GroupOf(name, &group, &id)) return;
  bool first_of_group;
  uint64_t generation;
  {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = groups_.try_emplace(group);
    first_of_group = inserted;
    if (!it->second.local.insert(id).second) return;
    generation = StartFollowingLocked(name);
  }
  if (first_of_group) {
    coordinator_->leases().Want(group);
    // Only new notices: the holder reads the whole set when it takes over.
    absl::Status s = coordinator_->history().Subscribe(
        group, "", [this](const std::string& g, const StreamEntry& entry) {
          OnNotice(g, entry);
        });
    (void)s;  // ALREADY_EXISTS: a quick Unwant + Want; still subscribed
  }
  coordinator_->wants().Add(group, id);
  if (generation != 0) Follow(name, generation);
}

void StreamBridge::Unwant(const std::string& name) {
  std::string group;
  int64_t id = 0;
  if (!GroupOf(name, &group, &id)) return;
  bool last_of_group = false;
  std::vector<std::string> unfollow;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(group);
    if (it == groups_.end() || it->second.local.erase(id) == 0) return;
    GroupState& g = it->second;
    const bool polled_for_others = g.others.contains(id);
    if (g.local.empty()) {
      // Nobody here watches the group: nothing to poll it with, for
      // anybody; the lease goes to a replica that still has watchers.
      last_of_group = true;
      for (int64_t other : g.others) {
        if (other == id) continue;
        StopFollowingLocked(UploadingName(group, other));
        unfollow.push_back(UploadingName(group, other));
      }
      groups_.erase(it);
    }
    if (last_of_group || !polled_for_others) {
      StopFollowingLocked(name);
      unfollow.push_back(name);
    }
    if (last_of_group) unfollow.push_back(group);  // its notices
  }
  coordinator_->wants().Remove(group, id);
  if (last_of_group) coordinator_->leases().Unwant(group);
  UnfollowLater(std::move(unfollow));
}

bool StreamBridge::ShouldPoll(const std::string& name) const {
  std::string group;
  int64_t id = 0;
  if (!GroupOf(name, &group, &id)) return false;
  return coordinator_->leases().ShouldPoll(group);
}

std::vector<int64_t> StreamBridge::OthersWant(const std::string& group) const {
  if (!coordinator_->leases().Holds(group)) return {};
  absl::MutexLock lock(&mu_);
  auto it = groups_.find(group);
  if (it == groups_.end()) return {};
  return std::vector<int64_t>(it->second.others.begin(),
                              it->second.others.end());
}

std::optional<size_t> StreamBridge::TokenGroups(
    const std::string& token_fingerprint) const {
  return coordinator_->wants().TokenGroups(token_fingerprint);
}

void StreamBridge::Follow(const std::string& name, uint64_t generation) {
  // The newest entry first (a newcomer's current state, whatever the history
  // before it), then every entry after it. A counter's changes stream: only
  // the entries after it (its newest entry is one uploading's state, which
  // the counter watch's own snapshot list shows anyway).
  const bool changes = IsChangesStream(name);
  coordinator_->history().Last(
      name, [this, name, generation, changes](
                absl::StatusOr<std::optional<StreamEntry>> last) {
        if (stopping_) return;
        {
          absl::MutexLock lock(&mu_);
          auto it = followed_.find(name);
          if (it == followed_.end() || it->second != generation) return;
        }
        // Unknown: all that is kept (a counter's changes: only new ones).
        std::string after = changes ? "" : "0-0";
        if (last.ok()) {
          if (last->has_value()) {
            if (!changes) Deliver(name, **last);
            after = (*last)->id;
          } else if (changes) {
            after = "0-0";  // empty: everything from the first entry
          }
        }
        absl::Status s = coordinator_->history().Subscribe(
            name, after, [this](const std::string& uploading,
                                const StreamEntry& entry) {
              Deliver(uploading, entry);
            });
        (void)s;  // ALREADY_EXISTS: a quick Unwant + Want; still followed
        if (changes) {
          Subscribed(name, generation, after,
                     /*backfill=*/last.ok() && last->has_value());
        }
      });
}

void StreamBridge::Subscribed(const std::string& name, uint64_t generation,
                              const std::string& start, bool backfill) {
  std::vector<CatchUpAsk> waiting;
  {
    absl::MutexLock lock(&mu_);
    auto it = followed_.find(name);
    if (it == followed_.end() || it->second != generation) return;
    ChangeLog& log = logs_[name];
    log.subscribed = true;
    log.start = start;
    log.ready = start == "0-0";  // empty: the subscription reads it all
    waiting.swap(log.waiting);
  }
  for (CatchUpAsk& ask : waiting) RunCatchUp(name, std::move(ask));
  if (!backfill) return;
  // The entries up to `start` too, for positions (not for the hub: the
  // counter watches' snapshot lists show what they brought).
  coordinator_->history().ChangesAfter(
      name, "0-0", start, absl::InfinitePast(),
      [this, name, generation](
          absl::StatusOr<std::optional<StateStream::Range>> range) {
        if (stopping_ || !range.ok() || !range->has_value()) return;
        std::vector<Entry> before;
        for (const StreamEntry& e : (*range)->entries) {
          // States only, as DeliverChange logs them.
          std::optional<v1::Uploading> uploading = StateOfChange(e);
          if (!uploading) continue;
          before.push_back(Entry{e.id, uploading->id(), e.version,
                                 SharedChanges::ContentHash(*uploading)});
        }
        absl::MutexLock lock(&mu_);
        auto it = followed_.find(name);
        if (it == followed_.end() || it->second != generation) return;
        // What the holder's confirmations name (entries read since are
        // newer: NoteNewestLocked keeps the higher version).
        for (const Entry& e : before) NoteNewestLocked(name, e);
        ChangeLog& log = logs_[name];
        if (log.ready || !log.trimmed_to.empty()) return;
        log.entries.insert(log.entries.begin(), before.begin(), before.end());
        log.ready = true;
        TrimLog(log);
      });
}

void StreamBridge::ForgetBeforeGapLocked(const std::string& name,
                                         const StreamEntry& entry) {
  if (!entry.after_gap) return;
  // Entries before it are gone: positions before it cannot move on.
  if (auto log = logs_.find(name); log != logs_.end()) {
    log->second.entries.clear();
    log->second.trimmed_to = entry.id;
  }
}

void StreamBridge::NoteNewestLocked(const std::string& name,
                                    const Entry& entry) {
  NewestEntry& n = newest_[name][entry.uploading_id];
  if (entry.version >= n.version) n = NewestEntry{entry.version, entry.content};
}

void StreamBridge::AppendLogLocked(const std::string& name, Entry entry) {
  auto it = logs_.find(name);
  if (it == logs_.end()) return;
  it->second.entries.push_back(std::move(entry));
  TrimLog(it->second);
}

void StreamBridge::TrimLog(ChangeLog& log) {
  while (log.entries.size() > kMaxLogEntries) {
    log.trimmed_to = log.entries.front().id;
    log.entries.pop_front();
  }
}

namespace {

bool IdLess(const std::string& a, const std::string& b) {
  return ParseStreamId(a).value_or(std::pair<uint64_t, uint64_t>{0, 0}) <
         ParseStreamId(b).value_or(std::pair<uint64_t, uint64_t>{0, 0});
}

}  // namespace

std::optional<std::string> StreamBridge::Advance(
    const WatchTarget& target, const std::string& from,
    absl::FunctionRef<bool(const Entry&)> covers) {
  const std::string name = PollCounterKey(target.group.token_fingerprint,
                                          target.group.counter_id, target.type);
  auto stay = [&]() -> std::optional<std::string> {
    if (from.empty()) return std::nullopt;
    return from;
  };
  absl::MutexLock lock(&mu_);
  auto it = logs_.find(name);
  if (it == logs_.end() || !it->second.subscribed) return stay();
  const ChangeLog& log = it->second;
  // Where what is kept here is whole from: entries before it are not known.
  if (!log.trimmed_to.empty()) {
    if (from.empty() || IdLess(from, log.trimmed_to)) return stay();
  } else if (!log.ready) {
    if (from.empty() || log.start.empty() || IdLess(from, log.start)) {
      return stay();
    }
  }
  std::optional<std::string> at = stay();
  for (const Entry& e : log.entries) {
    if (!from.empty() && !IdLess(from, e.id)) continue;
    if (!covers(e)) break;
    at = e.id;
  }
  return at;
}

void StreamBridge::Listen(const WatchTarget& target, Listener* listener) {
  const std::string name = PollCounterKey(target.group.token_fingerprint,
                                          target.group.counter_id, target.type);
  absl::MutexLock lock(&listeners_mu_);
  listeners_[name].insert(listener);
  listening_[listener] = name;
}

bool StreamBridge::Reading(const WatchTarget& target) const {
  // Both connections: the holder appends on the commands one, every
  // replica reads on the other.
  if (stopping_ || coordinator_->state() != ConnectionState::kConnected) {
    return false;
  }
  const std::string name = PollCounterKey(target.group.token_fingerprint,
                                          target.group.counter_id, target.type);
  absl::MutexLock lock(&mu_);
  auto it = logs_.find(name);
  return it != logs_.end() && it->second.subscribed;
}

void StreamBridge::Unlisten(Listener* listener) {
  absl::MutexLock lock(&listeners_mu_);
  auto it = listening_.find(listener);
  if (it == listening_.end()) return;
  auto set = listeners_.find(it->second);
  if (set != listeners_.end()) {
    set->second.erase(listener);
    if (set->second.empty()) listeners_.erase(set);
  }
  listening_.erase(it);
}

void StreamBridge::Notify(const std::string& name) {
  absl::MutexLock lock(&listeners_mu_);
  auto it = listeners_.find(name);
  if (it == listeners_.end()) return;
  for (Listener* l : it->second) l->OnStreamRead();
}

void StreamBridge::CatchUp(const WatchTarget& target, const std::string& after,
                           absl::Time not_before, CatchUpCallback done) {
  const std::string name = PollCounterKey(target.group.token_fingerprint,
                                          target.group.counter_id, target.type);
  CatchUpAsk ask{target, after, not_before, std::move(done)};
  {
    absl::MutexLock lock(&mu_);
    if (!followed_.contains(name) || stopping_) {
      // Nobody here follows it (the watch is not registered): no catch-up
      // could be followed by every later entry.
      ask.done(std::nullopt);
      return;
    }
    ChangeLog& log = logs_[name];
    if (!log.subscribed) {
      log.waiting.push_back(std::move(ask));
      return;
    }
  }
  RunCatchUp(name, std::move(ask));
}

void StreamBridge::RunCatchUp(const std::string& name, CatchUpAsk ask) {
  coordinator_->history().ChangesAfter(
      name, ask.after, "+", ask.not_before,
      [this, after = ask.after, group = ask.target.group,
       done = std::move(ask.done)](
          absl::StatusOr<std::optional<StateStream::Range>> range) mutable {
        if (stopping_ || !range.ok() || !range->has_value()) {
          return done(std::nullopt);
        }
        const StateStream::Range& r = **range;
        const std::optional<std::pair<uint64_t, uint64_t>> from =
            ParseStreamId(after);
        // The state an entry says, with this replica's record of it (its
        // statuses and times) when that is the same version.
        auto state_of = [&](const StreamEntry& e,
                            const v1::Uploading& uploading) {
          const UploadingKey key{group.token_fingerprint, group.counter_id,
                                 uploading.id()};
          {
            absl::ReaderMutexLock lock(&hub_mu_);
            if (hub_ != nullptr) {
              if (std::optional<UploadingState> stored = hub_->Stored(key);
                  stored && stored->version == e.version &&
                  stored->uploading.SerializeAsString() ==
                      uploading.SerializeAsString()) {
                return *std::move(stored);
              }
            }
          }
          const std::optional<std::pair<uint64_t, uint64_t>> id =
              ParseStreamId(e.id);
          const absl::Time at = e.sent_ms > 0
                                    ? absl::FromUnixMillis(e.sent_ms)
                                    : absl::FromUnixMillis(id ? id->first : 0);
          return UploadingState{
              uploading, e.version, at, at,
              {StatusSeen{uploading.status(), uploading.status_raw(), at}}};
        };
        SharedChanges::Missed out;
        out.head = r.head;
        // The newest entry of each uploading after the position, in the
        // order of those newest entries.
        absl::flat_hash_map<int64_t, size_t> newest;
        std::vector<std::pair<const StreamEntry*, v1::Uploading>> parsed;
        for (const StreamEntry& e : r.entries) {
          std::optional<v1::Uploading> uploading = StateOfChange(e);
          if (!uploading) continue;
          newest[uploading->id()] = parsed.size();
          parsed.emplace_back(&e, *std::move(uploading));
        }
        absl::flat_hash_map<int64_t, std::string> first;
        for (const StateStream::Latest& l : r.latest) {
          first[l.uploading_id] = l.first_id;
          v1::Uploading uploading;
          if (!uploading.ParseFromString(l.entry.payload)) continue;
          out.known.push_back(state_of(l.entry, uploading));
        }
        for (size_t i = 0; i < parsed.size(); ++i) {
          const int64_t id = parsed[i].second.id();
          if (newest[id] != i) continue;
          auto f = first.find(id);
          const bool added = f != first.end() && from &&
                             ParseStreamId(f->second).value_or(
                                 std::pair<uint64_t, uint64_t>{0, 0}) > *from;
          out.changes.emplace_back(state_of(*parsed[i].first, parsed[i].second),
                                   added);
        }
        done(std::move(out));
      });
}

void StreamBridge::NoteInHistory(const std::string& name, int64_t version) {
  if (!followed_.contains(name)) return;
  int64_t& known = in_history_[name];
  known = std::max(known, version);
}

void StreamBridge::Deliver(const std::string& name, const StreamEntry& entry) {
  UploadingKey key;
  int64_t counter_id = 0;
  if (!ParsePollUploadingKey(name, &key.token_fingerprint, &counter_id,
                             &key.uploading_id)) {
    return;
  }
  key.counter_id = static_cast<int32_t>(counter_id);
  if (key.uploading_id < 0) return DeliverChange(name, key, entry);
  if (entry.floor) {
    absl::MutexLock lock(&mu_);
    if (followed_.contains(name)) {
      int64_t& floor = floor_[name];
      floor = std::max(floor, entry.version);
    }
    return;  // not a state
  }
  v1::Uploading uploading;
  if (!uploading.ParseFromString(entry.payload) ||
      uploading.id() != key.uploading_id) {
    return;  // not ours (another version's format): never shown
  }
  {
    absl::MutexLock lock(&mu_);
    // Neither wanted here nor polled for others any more (its subscription
    // ends on the loop soon): nobody here to show it to.
    if (!followed_.contains(name)) return;
    ++delivered_;
    NoteInHistory(name, entry.version);
  }
  absl::ReaderMutexLock lock(&hub_mu_);
  if (hub_ != nullptr) hub_->ObserveShared(key, uploading, entry.version);
}

bool StreamBridge::IsChangesStream(const std::string& name) {
  std::string fingerprint;
  int64_t counter_id = 0, id = 0;
  return ParsePollUploadingKey(name, &fingerprint, &counter_id, &id) && id < 0;
}

void StreamBridge::DeliverChange(const std::string& name,
                                 const UploadingKey& stream,
                                 const StreamEntry& entry) {
  if (entry.confirmations) return DeliverConfirmations(name, stream, entry);
  std::optional<v1::Uploading> state = StateOfChange(entry);
  if (!state || CounterWantId(TypeOf(*state)) != stream.uploading_id) {
    return;  // not ours (another version's format): never shown
  }
  const v1::Uploading& uploading = *state;
  const UploadingKey key{stream.token_fingerprint, stream.counter_id,
                         uploading.id()};
  Entry logged{entry.id, uploading.id(), entry.version,
               SharedChanges::ContentHash(uploading)};
  bool relay = false;
  {
    absl::MutexLock lock(&mu_);
    if (!followed_.contains(name)) return;
    ForgetBeforeGapLocked(name, entry);
    int64_t& known = changes_[name][uploading.id()];
    known = std::max(known, entry.version);
    // Not relayed when it is this replica's own (it delivered them when it
    // observed them, with this version), or followed on its own (its
    // history brings it, with the version every replica shares).
    relay = entry.owner != coordinator_->leases().owner_id() &&
            !followed_.contains(PollUploadingKey(
                key.token_fingerprint, key.counter_id, key.uploading_id));
    if (relay) ++relayed_;
    NoteNewestLocked(name, logged);
    // Before the hub shows it to a watch: a message built for it then can
    // carry the position (its version here is set below).
    AppendLogLocked(name, logged);
  }
  if (relay) {
    int64_t version = entry.version;
    {
      absl::ReaderMutexLock lock(&hub_mu_);
      if (hub_ != nullptr) {
        version = hub_->ObserveRelayed(key, uploading, entry.version,
                                       absl::FromUnixMillis(entry.sent_ms));
      }
    }
    absl::MutexLock lock(&mu_);
    if (auto log = logs_.find(name); log != logs_.end()) {
      for (auto e = log->second.entries.rbegin();
           e != log->second.entries.rend(); ++e) {
        if (e->id == logged.id) {
          e->version = version;
          break;
        }
      }
    }
  }
  Notify(name);
}

void StreamBridge::DeliverConfirmations(const std::string& name,
                                        const UploadingKey& stream,
                                        const StreamEntry& entry) {
  std::optional<std::vector<StateStream::Confirmed>> confirmed =
      ParseConfirmations(entry.payload);
  std::vector<std::pair<UploadingKey, uint64_t>> here;  // key, content
  {
    absl::MutexLock lock(&mu_);
    if (!followed_.contains(name)) return;
    ForgetBeforeGapLocked(name, entry);
    // Its own (its watchers had them from its polls), or unreadable.
    if (entry.owner == coordinator_->leases().owner_id() || !confirmed) return;
    const auto& newest = newest_[name];
    for (const StateStream::Confirmed& c : *confirmed) {
      // Only the state of the entry this replica knows for that version: a
      // confirmation of another one (a relay not read yet) says nothing.
      auto n = newest.find(c.uploading_id);
      if (n == newest.end() || n->second.version != c.version) continue;
      here.emplace_back(UploadingKey{stream.token_fingerprint,
                                     stream.counter_id, c.uploading_id},
                        n->second.content);
    }
  }
  absl::ReaderMutexLock lock(&hub_mu_);
  if (hub_ == nullptr) return;
  for (const auto& [key, content] : here) {
    hub_->ConfirmRelayed(key, content, absl::FromUnixMillis(entry.sent_ms));
  }
}

void StreamBridge::ConfirmLocked(const std::string& name,
                                 const UploadingState& state) {
  PendingConfirmations& p = confirmations_[name];
  p.versions[state.uploading.id()] = state.version;
  p.sent = std::min(p.sent, state.check_time);
  if (p.scheduled || stopping_) return;
  p.scheduled = true;
  // A round's observations first; then no more often than kConfirmEvery.
  const absl::Duration wait =
      std::max(kConfirmGather, p.last_appended + kConfirmEvery - absl::Now());
  coordinator_->commands().loop()->RunAfter(wait, [this, name] {
    if (!stopping_) AppendConfirmations(name);
  });
}

void StreamBridge::AppendConfirmations(const std::string& name) {
  std::vector<StateStream::Confirmed> confirmed;
  absl::Time sent;
  {
    absl::MutexLock lock(&mu_);
    auto it = confirmations_.find(name);
    if (it == confirmations_.end()) return;  // not followed any more
    PendingConfirmations& p = it->second;
    p.scheduled = false;
    p.last_appended = absl::Now();
    const auto& known = changes_[name];
    for (const auto& [id, version] : p.versions) {
      // Still the version relayed last (a change since has its own entry).
      if (auto k = known.find(id); k != known.end() && k->second == version) {
        confirmed.push_back(StateStream::Confirmed{id, version});
      }
    }
    sent = p.sent;
    p.versions.clear();
    p.sent = absl::InfiniteFuture();
  }
  if (confirmed.empty()) return;
  std::sort(confirmed.begin(), confirmed.end(),
            [](const auto& a, const auto& b) {
              return a.uploading_id < b.uploading_id;
            });
  std::string group;
  int64_t type_id = 0;
  if (!GroupOf(name, &group, &type_id)) return;
  LeaseManager& leases = coordinator_->leases();
  if (!leases.Holds(group)) return;  // the next holder confirms its own
  // Dropped when it fails: the next round confirms again.
  coordinator_->history().AppendConfirmations(
      name, confirmed, absl::ToUnixMillis(sent),
      PublishFence{leases.LeaseKey(group), leases.owner_id()},
      [](absl::StatusOr<std::string>) {});
}

void StreamBridge::PublishChange(const UploadingKey& key,
                                 const UploadingState& state) {
  const std::string name = PollCounterKey(key.token_fingerprint, key.counter_id,
                                          TypeOf(state.uploading));
  {
    // No counter watch of the type, here or on another replica.
    absl::MutexLock lock(&mu_);
    if (!followed_.contains(name)) return;
  }
  LeaseManager& leases = coordinator_->leases();
  const std::string group = PollGroupKey(key.token_fingerprint, key.counter_id);
  if (!leases.Holds(group)) return;  // the holder relays; not this replica
  {
    absl::MutexLock lock(&mu_);
    if (!followed_.contains(name)) return;
    // Every observation is offered: only a version not relayed yet (a
    // change, or a new uploading) goes out, once.
    int64_t& known = changes_[name][key.uploading_id];
    if (known == state.version) {
      // Relayed already: this observation confirms it.
      ConfirmLocked(name, state);
      return;
    }
    if (known > state.version) return;
    known = state.version;
    ++relays_published_;
  }
  coordinator_->history().AppendChange(
      name, key.uploading_id, state.version, state.uploading.SerializeAsString(),
      absl::ToUnixMillis(state.check_time),
      PublishFence{leases.LeaseKey(group), leases.owner_id()},
      [this, name, id = key.uploading_id,
       version = state.version](absl::StatusOr<std::string> appended) {
        if (appended.ok()) return;
        // Not relayed (the lease moved, or Redis is unreachable): offered
        // again with the next observation, by whoever holds the lease then.
        absl::MutexLock lock(&mu_);
        auto it = changes_.find(name);
        if (it == changes_.end()) return;
        auto v = it->second.find(id);
        if (v != it->second.end() && v->second == version) it->second.erase(v);
      });
}

void StreamBridge::Publish(const UploadingKey& key, const UploadingState& state) {
  PublishChange(key, state);
  const std::string name =
      PollUploadingKey(key.token_fingerprint, key.counter_id, key.uploading_id);
  const std::string group = PollGroupKey(key.token_fingerprint, key.counter_id);
  LeaseManager& leases = coordinator_->leases();
  {
    // A page's other uploadings: no replica wants them, no history.
    absl::MutexLock lock(&mu_);
    if (!followed_.contains(name)) return;
  }
  // Only the holder writes (the fence checks it again in Redis).
  if (!leases.Holds(group)) {
    // This replica's own news (a fallback poll, a counter watch's list, a
    // caller's Get): a version above the history's was shown to its
    // watchers, and the holder must number after it.
    bool raise = false;
    {
      absl::MutexLock lock(&mu_);
      if (!followed_.contains(name)) return;  // shown to no watcher
      auto known = in_history_.find(name);
      int64_t& asked = floor_asked_[name];
      if ((known == in_history_.end() || state.version > known->second) &&
          state.version > asked) {
        asked = state.version;
        raise = true;
      }
    }
    if (raise) RaiseFloor(name, state.version);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    auto known = in_history_.find(name);
    auto floor = floor_.find(name);
    const bool below_floor = floor != floor_.end() &&
                             (known == in_history_.end() ||
                              known->second <= floor->second);
    if (known != in_history_.end() && known->second >= state.version &&
        !below_floor) {
      return;
    }
    ++published_;
  }
  coordinator_->history().Publish(
      name, state.version, state.uploading.SerializeAsString(),
      PublishFence{leases.LeaseKey(group), leases.owner_id()},
      [this, name, version = state.version](absl::StatusOr<std::string> id) {
        // NOTOWNER (the lease just moved), STALE (another holder published
        // this version) or UNAVAILABLE: the holder of the moment publishes,
        // at its next poll; this replica's watchers were shown `version`
        // meanwhile, so the next one must be above it.
        if (!id.ok()) {
          RaiseFloor(name, version);
          return;
        }
        absl::MutexLock lock(&mu_);
        NoteInHistory(name, version);
      });
}

int64_t StreamBridge::delivered() const {
  absl::MutexLock lock(&mu_);
  return delivered_;
}

int64_t StreamBridge::relayed() const {
  absl::MutexLock lock(&mu_);
  return relayed_;
}

int64_t StreamBridge::relays_published() const {
  absl::MutexLock lock(&mu_);
  return relays_published_;
}

int64_t StreamBridge::published() const {
  absl::MutexLock lock(&mu_);
  return published_;
}

}  // namespace uploadwatch::redis
