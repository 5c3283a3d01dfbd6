#include "service/redis/stream_bridge.h"

#include <algorithm>
#include <utility>

#include "absl/synchronization/notification.h"

namespace uploadwatch::redis {

StreamBridge::StreamBridge(CoordinatorOptions options) {
  coordinator_ = std::make_unique<RedisCoordinator>(
      std::move(options), [this](const std::string& name, bool should_poll) {
        OnChange(name, should_poll);
      });
  listener_ = coordinator_->commands().AddStateListener(
      [this](ConnectionState state) { OnConnectionState(state); });
}

StreamBridge::~StreamBridge() {
  Detach();
  coordinator_->commands().RemoveStateListener(listener_);
  coordinator_.reset();
}

void StreamBridge::OnConnectionState(ConnectionState state) {
  if (state != ConnectionState::kConnected) return;
  absl::flat_hash_map<std::string, int64_t> unsent;
  {
    absl::MutexLock lock(&mu_);
    unsent.swap(floor_unsent_);
  }
  for (const auto& [name, version] : unsent) RaiseFloor(name, version);
}

void StreamBridge::RaiseFloor(const std::string& name, int64_t version) {
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
  auto done = std::make_shared<absl::Notification>();
  coordinator_->leases().ReleaseAll([done] { done->Notify(); });
  done->WaitForNotificationWithTimeout(limit);
}

void StreamBridge::OnChange(const std::string& name, bool should_poll) {
  absl::ReaderMutexLock lock(&hub_mu_);
  if (hub_ != nullptr) hub_->PollOwnershipChanged(name, should_poll);
}

void StreamBridge::Want(const std::string& name) {
  coordinator_->leases().Want(name);
  uint64_t generation;
  {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = followed_.try_emplace(name, 0);
    if (!inserted) return;
    generation = it->second = next_generation_++;
  }
  Follow(name, generation);
}

void StreamBridge::Follow(const std::string& name, uint64_t generation) {
  // The newest entry first (a newcomer's current state, whatever the history
  // before it), then every entry after it.
  coordinator_->history().Last(
      name, [this, name, generation](
                absl::StatusOr<std::optional<StreamEntry>> last) {
        {
          absl::MutexLock lock(&mu_);
          auto it = followed_.find(name);
          if (it == followed_.end() || it->second != generation) return;
        }
        std::string after = "0-0";  // unknown: all that is kept
        if (last.ok()) {
          if (last->has_value()) {
            Deliver(name, **last);
            after = (*last)->id;
          }
        }
        absl::Status s = coordinator_->history().Subscribe(
            name, after, [this](const std::string& group,
                                const StreamEntry& entry) {
              Deliver(group, entry);
            });
        (void)s;  // ALREADY_EXISTS: a quick Unwant + Want; still followed
      });
}

void StreamBridge::NoteInHistory(const std::string& name, int64_t version) {
  if (!followed_.contains(name)) return;
  int64_t& known = in_history_[name];
  known = std::max(known, version);
}

void StreamBridge::Unwant(const std::string& name) {
  {
    absl::MutexLock lock(&mu_);
    followed_.erase(name);
    in_history_.erase(name);
    floor_.erase(name);
    floor_asked_.erase(name);
    floor_unsent_.erase(name);
  }
  coordinator_->history().Unsubscribe(name);
  coordinator_->leases().Unwant(name);
}

bool StreamBridge::ShouldPoll(const std::string& name) const {
  return coordinator_->leases().ShouldPoll(name);
}

void StreamBridge::Deliver(const std::string& name, const StreamEntry& entry) {
  UploadingKey key;
  int64_t counter_id = 0;
  if (!ParsePollUploadingKey(name, &key.token_fingerprint, &counter_id,
                             &key.uploading_id)) {
    return;
  }
  key.counter_id = static_cast<int32_t>(counter_id);
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
    ++delivered_;
    NoteInHistory(name, entry.version);
  }
  absl::ReaderMutexLock lock(&hub_mu_);
  if (hub_ != nullptr) hub_->ObserveShared(key, uploading, entry.version);
}

void StreamBridge::Publish(const UploadingKey& key, const UploadingState& state) {
  const std::string name =
      PollUploadingKey(key.token_fingerprint, key.counter_id, key.uploading_id);
  LeaseManager& leases = coordinator_->leases();
  // Only the holder writes (the fence checks it again in Redis).
  if (!leases.Holds(name)) {
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
      PublishFence{leases.LeaseKey(name), leases.owner_id()},
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

int64_t StreamBridge::published() const {
  absl::MutexLock lock(&mu_);
  return published_;
}

}  // namespace uploadwatch::redis
