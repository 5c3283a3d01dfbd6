#include "service/core/watch_registry.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace uploadwatch {

absl::StatusOr<WatchRegistry::Added> WatchRegistry::Add(
    const WatchTarget& target, Subscriber* subscriber) {
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return absl::UnavailableError(
        "server is shutting down; re-watch to reconnect to another instance");
  }
  if (subscribers_.size() >= options_.max_watches) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "this server already serves its limit of ", options_.max_watches,
        " open watches; retry later (with backoff) or on another instance"));
  }
  auto [it, created] = targets_.try_emplace(target);
  it->second.subscribers.insert(subscriber);
  subscribers_[subscriber] = target;
  if (created) {
    by_group_[target.group].insert(target);
    if (!target.is_counter()) ++uploading_targets_;
  }
  return Added{created, it->second.shown};
}

std::optional<WatchRegistry::Removed> WatchRegistry::Remove(
    Subscriber* subscriber) {
  absl::MutexLock lock(&mu_);
  auto s = subscribers_.find(subscriber);
  if (s == subscribers_.end()) return std::nullopt;
  Removed out{s->second, false};
  subscribers_.erase(s);
  auto t = targets_.find(out.target);
  if (t != targets_.end()) {
    t->second.subscribers.erase(subscriber);
    if (t->second.subscribers.empty()) {
      Ended ignored;
      EndLocked(out.target, ignored);
      out.target_gone = true;
    }
  }
  return out;
}

void WatchRegistry::EndLocked(const WatchTarget& target, Ended& out) {
  auto t = targets_.find(target);
  if (t == targets_.end()) return;
  for (Subscriber* s : t->second.subscribers) {
    subscribers_.erase(s);
    out.to.push_back(s);
  }
  out.targets.push_back(target);
  targets_.erase(t);
  if (!target.is_counter()) --uploading_targets_;
  auto g = by_group_.find(target.group);
  if (g != by_group_.end()) {
    g->second.erase(target);
    if (g->second.empty()) by_group_.erase(g);
  }
}

WatchRegistry::Match WatchRegistry::Observed(const UploadingKey& key,
                                             const UploadingState& state,
                                             bool changed) {
  absl::MutexLock lock(&mu_);
  Match out;
  const WatchTarget one = WatchTarget::Uploading(key);
  if (auto t = targets_.find(one); t != targets_.end()) {
    if (changed || !t->second.shown) {  // never a duplicate
      t->second.shown = true;
      out.to.assign(t->second.subscribers.begin(), t->second.subscribers.end());
      if (IsTerminal(state.uploading)) {
        // A terminal state never changes: the watch is over for everyone.
        Ended ended;
        EndLocked(one, ended);
        out.ended = one;
      }
    }
  }
  const WatchTarget counter =
      WatchTarget::Counter(GroupOf(key), TypeOf(state.uploading));
  if (auto t = targets_.find(counter); t != targets_.end()) {
    out.to.insert(out.to.end(), t->second.subscribers.begin(),
                  t->second.subscribers.end());
  }
  return out;
}

WatchRegistry::Match WatchRegistry::ShowFresh(const WatchTarget& target,
                                              const UploadingState& state) {
  absl::MutexLock lock(&mu_);
  Match out;
  auto t = targets_.find(target);
  if (t == targets_.end()) return out;  // already ended (e.g. shutdown)
  t->second.shown = true;
  out.to.assign(t->second.subscribers.begin(), t->second.subscribers.end());
  if (IsTerminal(state.uploading)) {
    Ended ended;
    EndLocked(target, ended);
    out.ended = target;
  }
  return out;
}

WatchRegistry::Ended WatchRegistry::EndTarget(const WatchTarget& target) {
  absl::MutexLock lock(&mu_);
  Ended out;
  EndLocked(target, out);
  return out;
}

WatchRegistry::Ended WatchRegistry::EndGroup(const GroupKey& group) {
  absl::MutexLock lock(&mu_);
  Ended out;
  auto g = by_group_.find(group);
  if (g == by_group_.end()) return out;
  const std::vector<WatchTarget> targets(g->second.begin(), g->second.end());
  for (const WatchTarget& t : targets) EndLocked(t, out);
  return out;
}

WatchRegistry::Ended WatchRegistry::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  Ended out;
  std::vector<WatchTarget> targets;
  for (const auto& [t, unused] : targets_) targets.push_back(t);
  for (const WatchTarget& t : targets) EndLocked(t, out);
  return out;
}

WatchRegistry::PollSet WatchRegistry::PollSetOf(const GroupKey& group) const {
  absl::MutexLock lock(&mu_);
  PollSet out;
  auto g = by_group_.find(group);
  if (g == by_group_.end()) return out;
  for (const WatchTarget& t : g->second) {
    if (t.is_counter()) {
      out.counter_types.push_back(t.type);
    } else {
      out.uploading_ids.insert(t.uploading_id);
    }
  }
  return out;
}

bool WatchRegistry::GroupWatched(const GroupKey& group) const {
  absl::MutexLock lock(&mu_);
  return by_group_.contains(group);
}

bool WatchRegistry::Has(const WatchTarget& target) const {
  absl::MutexLock lock(&mu_);
  return targets_.contains(target);
}

bool WatchRegistry::Watched(const UploadingKey& key) const {
  absl::MutexLock lock(&mu_);
  return targets_.contains(WatchTarget::Uploading(key));
}

bool WatchRegistry::Shown(const UploadingKey& key) const {
  absl::MutexLock lock(&mu_);
  auto t = targets_.find(WatchTarget::Uploading(key));
  return t != targets_.end() && t->second.shown;
}

size_t WatchRegistry::subscribers() const {
  absl::MutexLock lock(&mu_);
  return subscribers_.size();
}

size_t WatchRegistry::uploading_targets() const {
  absl::MutexLock lock(&mu_);
  return uploading_targets_;
}

}  // namespace uploadwatch
