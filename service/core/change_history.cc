#include "service/core/change_history.h"

#include <algorithm>
#include <atomic>

#include "absl/random/random.h"
#include "service/core/resume_token.h"

namespace uploadwatch {

ChangeHistory::ChangeHistory()
    : serial_([] {
        static std::atomic<uint64_t> next{1};
        return next.fetch_add(1, std::memory_order_relaxed);
      }()) {}

LocalChangeHistory::LocalChangeHistory(const Clock* clock, Options options,
                                       uint64_t instance)
    : clock_(clock),
      options_(options),
      instance_(instance != 0 ? instance : [] {
        absl::BitGen gen;
        return absl::Uniform<uint64_t>(gen, 1, UINT64_MAX);
      }()) {}

void LocalChangeHistory::TrimLocked(Target& t, absl::Time now) {
  while (!t.made.empty() &&
         (t.made.size() > options_.max_changes ||
          now - t.made.front().second > options_.max_age)) {
    // A client at this sequence or later has not seen the next one.
    t.floor = t.made.front().first;
    t.made.pop_front();
  }
}

uint64_t LocalChangeHistory::Record(const WatchTarget& target,
                                    const UploadingState& state) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  Target& t = targets_[target];
  t.touched = now;
  auto [it, created] = t.entries.try_emplace(state.uploading.id());
  Entry& e = it->second;
  if (!created && state.version <= e.state.version) return e.last;
  e.state = state;
  e.last = ++t.head;
  if (created) e.first = e.last;
  t.made.emplace_back(e.last, now);
  TrimLocked(t, now);
  return e.last;
}

std::optional<ChangeHistory::CatchUp> LocalChangeHistory::Since(
    const WatchTarget& target, uint64_t sequence) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  for (auto it = targets_.begin(); it != targets_.end();) {
    if (now - it->second.touched > options_.max_idle) {
      targets_.erase(it++);
    } else {
      ++it;
    }
  }
  auto found = targets_.find(target);
  if (found == targets_.end()) {
    // Nothing recorded: only "nothing yet" (0) can be honoured.
    if (sequence != 0) return std::nullopt;
    return CatchUp{};
  }
  Target& t = found->second;
  TrimLocked(t, now);
  if (sequence < t.floor || sequence > t.head) return std::nullopt;
  CatchUp out;
  out.head = t.head;
  std::vector<const Entry*> changed;
  for (const auto& [id, e] : t.entries) {
    out.known.push_back(e.state);
    if (e.last > sequence) changed.push_back(&e);
  }
  std::sort(changed.begin(), changed.end(),
            [](const Entry* a, const Entry* b) { return a->last < b->last; });
  for (const Entry* e : changed) {
    out.changes.push_back(Change{e->state, e->first > sequence});
  }
  return out;
}

size_t LocalChangeHistory::targets() const {
  absl::MutexLock lock(&mu_);
  return targets_.size();
}

uint64_t SharedChanges::ContentHash(const v1::Uploading& uploading) {
  std::string bytes;
  uploading.SerializeToString(&bytes);
  return StableHash64(bytes);
}

}  // namespace uploadwatch
