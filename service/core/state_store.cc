#include "service/core/state_store.h"

namespace uploadwatch {

StateStore::Recorded StateStore::Record(const UploadingKey& key,
                                        const v1::Uploading& uploading,
                                        absl::Time now, absl::Time sent) {
  absl::MutexLock lock(&mu_);
  Recorded out;
  out.state = cache_.Record(key, uploading, now, sent, &out.changed);
  return out;
}

StateStore::Recorded StateStore::RecordShared(const UploadingKey& key,
                                              const v1::Uploading& uploading,
                                              int64_t version, absl::Time now) {
  absl::MutexLock lock(&mu_);
  Recorded out;
  out.state = cache_.RecordShared(key, uploading, version, now, &out.changed);
  return out;
}

StateStore::Recorded StateStore::RecordRelayed(const UploadingKey& key,
                                               const v1::Uploading& uploading,
                                               int64_t version, absl::Time now,
                                               absl::Time sent) {
  absl::MutexLock lock(&mu_);
  Recorded out;
  const UploadingState* stored = cache_.Find(key);
  if (stored == nullptr || version > stored->version) {
    out.state = cache_.RecordShared(key, uploading, version, now, &out.changed);
  } else {
    out.state = cache_.Record(key, uploading, now, sent, &out.changed);
  }
  return out;
}

std::optional<StateStore::Recorded> StateStore::Confirm(
    const UploadingKey& key,
    absl::FunctionRef<bool(const UploadingState&)> is_it, absl::Time now,
    absl::Time sent) {
  absl::MutexLock lock(&mu_);
  const UploadingState* stored = cache_.Find(key);
  if (stored == nullptr || !is_it(*stored)) return std::nullopt;
  const v1::Uploading same = stored->uploading;  // Record may replace it
  Recorded out;
  out.state = cache_.Record(key, same, now, sent, &out.changed);
  return out;
}

std::optional<UploadingState> StateStore::GetFresh(const UploadingKey& key,
                                                   absl::Time now) {
  absl::MutexLock lock(&mu_);
  return cache_.GetFresh(key, now);
}

std::optional<UploadingState> StateStore::Find(const UploadingKey& key) const {
  absl::MutexLock lock(&mu_);
  const UploadingState* s = cache_.Find(key);
  if (s == nullptr) return std::nullopt;
  return *s;
}

bool StateStore::Use(const UploadingKey& key, absl::Time now, bool fresh_only,
                     absl::FunctionRef<void(const UploadingState&)> use) {
  absl::MutexLock lock(&mu_);
  const UploadingState* s =
      fresh_only ? cache_.FindFresh(key, now) : cache_.Find(key);
  if (s == nullptr) return false;
  use(*s);
  return true;
}

size_t StateStore::Sweep(absl::Time now,
                         const std::function<bool(const UploadingKey&)>& keep) {
  absl::MutexLock lock(&mu_);
  return cache_.Sweep(now, keep);
}

size_t StateStore::size() const {
  absl::MutexLock lock(&mu_);
  return cache_.size();
}

}  // namespace uploadwatch
