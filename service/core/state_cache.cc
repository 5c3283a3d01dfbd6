#include "service/core/state_cache.h"

#include "google/protobuf/util/message_differencer.h"

namespace uploadwatch {
namespace {

// Appends the status of `state.uploading` if it is not the last one seen.
void NoteStatus(UploadingState& state, absl::Time now) {
  const v1::Uploading& u = state.uploading;
  if (!state.statuses.empty() && state.statuses.back().status == u.status() &&
      state.statuses.back().status_raw == u.status_raw()) {
    return;
  }
  state.statuses.push_back(StatusSeen{u.status(), u.status_raw(), now});
}

}  // namespace

bool IsTerminal(const v1::Uploading& uploading) {
  return uploading.status() == v1::Uploading::PROCESSED ||
         uploading.status() == v1::Uploading::LINKAGE_FAILURE;
}

const UploadingState& StateCache::Record(const UploadingKey& key,
                                         const v1::Uploading& uploading,
                                         absl::Time now, absl::Time sent,
                                         bool* changed) {
  auto [it, inserted] = entries_.try_emplace(key);
  Entry& e = it->second;
  e.last_use = now;
  if (!inserted && (sent < e.sent || (IsTerminal(e.state.uploading) &&
                                       !IsTerminal(uploading)))) {
    // Older news, or a step back from a terminal state (final: watchers were
    // told so; a lagging replica or an upstream bug): not a change.
    *changed = false;
    return e.state;
  }
  e.sent = sent;
  *changed = inserted || !google::protobuf::util::MessageDifferencer::Equals(
                             e.state.uploading, uploading);
  if (*changed) {
    e.state.uploading = uploading;
    e.state.version += 1;
    e.state.observe_time = now;
    NoteStatus(e.state, now);
  }
  e.state.check_time = now;
  return e.state;
}

const UploadingState& StateCache::RecordShared(const UploadingKey& key,
                                               const v1::Uploading& uploading,
                                               int64_t version, absl::Time now,
                                               bool* changed) {
  auto [it, inserted] = entries_.try_emplace(key);
  Entry& e = it->second;
  e.last_use = now;
  if (!inserted && (version <= e.state.version ||
                    (IsTerminal(e.state.uploading) && !IsTerminal(uploading)))) {
    *changed = false;
    return e.state;
  }
  // A local fetch sent before this arrived is older news.
  e.sent = now;
  e.state.version = version;
  e.state.check_time = now;
  // The same state numbered anew by the holder (after versions diverged,
  // redis::StreamBridge): the version moves on, watchers are not told again.
  *changed = inserted || !google::protobuf::util::MessageDifferencer::Equals(
                             e.state.uploading, uploading);
  if (*changed) {
    e.state.uploading = uploading;
    e.state.observe_time = now;
    // When this replica learned it: the other replica's times are not shared.
    NoteStatus(e.state, now);
  }
  return e.state;
}

std::optional<UploadingState> StateCache::GetFresh(const UploadingKey& key,
                                                   absl::Time now) {
  const UploadingState* s = FindFresh(key, now);
  if (s == nullptr) return std::nullopt;
  return *s;
}

const UploadingState* StateCache::FindFresh(const UploadingKey& key,
                                            absl::Time now) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  Entry& e = it->second;
  const absl::Duration ttl = IsTerminal(e.state.uploading)
                                 ? options_.terminal_fresh_for
                                 : options_.fresh_for;
  if (now - e.state.check_time > ttl) return nullptr;
  e.last_use = now;
  return &e.state;
}

const UploadingState* StateCache::Find(const UploadingKey& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second.state;
}

size_t StateCache::Sweep(
    absl::Time now, const std::function<bool(const UploadingKey&)>& keep) {
  size_t dropped = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    const absl::Duration keep_for =
        IsTerminal(it->second.state.uploading)
            ? std::max(options_.retention, options_.terminal_fresh_for)
            : options_.retention;
    if (now - it->second.last_use > keep_for && !(keep && keep(it->first))) {
      entries_.erase(it++);
      ++dropped;
    } else {
      ++it;
    }
  }
  return dropped;
}

}  // namespace uploadwatch
