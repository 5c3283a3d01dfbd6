#include "service/core/group_poller.h"

#include <algorithm>
#include <utility>

#include "service/metrica/upstream_status.h"

namespace uploadwatch {
namespace {

bool IsPermanent(const absl::Status& status) {
  return ClassifyUpstream(status) == UpstreamOutcome::kPermanent;
}

std::string OwnershipName(const GroupKey& group, int64_t uploading_id) {
  return PollUploadingKey(group.token_fingerprint, group.counter_id,
                          uploading_id);
}

// What a target wants of its group: its uploading, or its counter's type.
std::string OwnershipName(const WatchTarget& target) {
  return target.is_counter()
             ? PollCounterKey(target.group.token_fingerprint,
                              target.group.counter_id, target.type)
             : OwnershipName(target.group, target.uploading_id);
}

}  // namespace

GroupPoller::GroupPoller(UpstreamReader* reader, const WatchRegistry* registry,
                         Pacer* pacer, PollOwnership* ownership,
                         Scheduler* scheduler, const Clock* clock,
                         Listener* listener, Options options)
    : reader_(reader),
      registry_(registry),
      pacer_(pacer),
      ownership_(ownership),
      scheduler_(scheduler),
      clock_(clock),
      listener_(listener),
      options_(options) {}

void GroupPoller::Run(Actions& actions) {
  for (auto& action : actions) std::move(action)();
  actions.clear();
}

size_t GroupPoller::TokenGroupsLocked(const std::string& fingerprint) const {
  auto it = token_groups_.find(fingerprint);
  return it == token_groups_.end() ? 0 : it->second;
}

void GroupPoller::Watch(const WatchTarget& target, const std::string& token,
                        bool needs_first_state) {
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    // Its last watcher left before this call: Unwatch has run (or finds
    // nothing to do); wanting it now would hold it with nobody watching.
    if (!registry_->Has(target)) return;
    const GroupKey& key = target.group;
    auto [it, inserted] = groups_.try_emplace(key);
    if (inserted) ++token_groups_[key.token_fingerprint];
    Group& group = it->second;
    group.token = token;
    const absl::Time now = clock_->Now();
    // Uploadings and counter watches alike are polled by the group's owner
    // (a counter watch wants its type's list).
    const std::string name = OwnershipName(target);
    ownership_->Want(name);
    const bool owned = ownership_->ShouldPoll(name);
    if (!needs_first_state || !owned) {
      // Not owned: the owner's states come through the shared history.
      if (!group.polling && group.timer == 0) {
        EndRoundLocked(key, absl::OkStatus(), now, after);
      }
    } else {
      const WatchRegistry::PollSet set = PollSetLocked(key);
      const bool batched =
          !set.counter_types.empty() ||
          set.uploading_ids.size() >=
              std::max<size_t>(options_.planner.batch_min_uploadings, 2);
      if (batched) {
        // One List gives this newcomer its first state, and every other
        // newcomer's (a dashboard opening 40 watches at once costs a List,
        // not 40 Gets).
        if (!group.polling && now >= pacer_->PausedUntil(key.token_fingerprint)) {
          StartRoundLocked(key, group, after);
        } else {
          group.rerun = true;
        }
      } else {
        // The first state as soon as possible, whatever the group's timer.
        SideGetLocked(key, group, target.uploading_id, after);
      }
    }
  }
  Run(after);
}

void GroupPoller::Unwatch(const WatchTarget& target) {
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    // Under the lock, as Watch's Want. A watcher that came back meanwhile (a
    // new target for the same uploading) keeps it wanted, and keeps the
    // fetch under way for it: cancelling that would leave the newcomer
    // without its first state, and the group without a timer.
    if (registry_->Has(target)) return;
    ownership_->Unwant(OwnershipName(target));
    auto it = groups_.find(target.group);
    if (it == groups_.end()) return;
    Group& group = it->second;
    if (!registry_->GroupWatched(target.group)) {
      EraseLocked(it, after);
    } else if (!target.is_counter()) {
      auto side = group.side_gets.find(target.uploading_id);
      if (side != group.side_gets.end()) {
        if (side->second.ticket) {
          after.push_back([this, t = *side->second.ticket] { reader_->Leave(t); });
        }
        group.side_gets.erase(side);
      }
      if (group.polling && group.round_get_id == target.uploading_id) {
        // The round's one Get was for it alone: nobody waits for it now.
        if (group.round_get) {
          after.push_back([this, t = *group.round_get] { reader_->Leave(t); });
        }
        EndRoundLocked(target.group, absl::OkStatus(), clock_->Now(), after);
      }
    }
  }
  Run(after);
}

void GroupPoller::Shutdown() {
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    while (!groups_.empty()) EraseLocked(groups_.begin(), after);
  }
  Run(after);
}

void GroupPoller::OwnershipChanged(const std::string& name, bool should_poll) {
  GroupKey key;
  int64_t counter_id = 0, uploading_id = 0;
  if (!should_poll ||
      (!ParsePollUploadingKey(name, &key.token_fingerprint, &counter_id,
                              &uploading_id) &&
       !ParsePollGroupKey(name, &key.token_fingerprint, &counter_id))) {
    return;  // a lost one is left out of the next round
  }
  key.counter_id = static_cast<int32_t>(counter_id);
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(key);
    if (shut_down_ || it == groups_.end()) return;
    Group& group = it->second;
    if (group.polling) {
      group.rerun = true;
    } else if (clock_->Now() >= pacer_->PausedUntil(key.token_fingerprint)) {
      // Gained (the holder died or left), or another replica's watcher
      // wants an uploading of it: poll now, it may be overdue.
      StartRoundLocked(key, group, after);
    }
  }
  Run(after);
}

WatchRegistry::PollSet GroupPoller::PollSetLocked(const GroupKey& key) const {
  WatchRegistry::PollSet set = registry_->PollSetOf(key);
  // What other replicas' watchers want of a group this replica polls.
  for (int64_t id : ownership_->OthersWant(
           PollGroupKey(key.token_fingerprint, key.counter_id))) {
    if (const int type = CounterWantType(id); type != 0) {
      const auto t = static_cast<v1::Uploading::Type>(type);
      if (v1::Uploading::Type_IsValid(type) &&
          std::find(set.counter_types.begin(), set.counter_types.end(), t) ==
              set.counter_types.end()) {
        set.counter_types.push_back(t);
      }
    } else if (id > 0) {
      set.uploading_ids.insert(id);
    }
  }
  absl::erase_if(set.uploading_ids, [&](int64_t id) {
    return !ownership_->ShouldPoll(OwnershipName(key, id));
  });
  set.counter_types.erase(
      std::remove_if(set.counter_types.begin(), set.counter_types.end(),
                     [&](v1::Uploading::Type type) {
                       return !ownership_->ShouldPoll(PollCounterKey(
                           key.token_fingerprint, key.counter_id, type));
                     }),
      set.counter_types.end());
  return set;
}

size_t GroupPoller::groups() const {
  absl::MutexLock lock(&mu_);
  return groups_.size();
}

void GroupPoller::EraseLocked(Groups::iterator it, Actions& after) {
  Group& group = it->second;
  if (group.timer != 0) scheduler_->Cancel(group.timer);
  if (group.round_get) {
    after.push_back([this, t = *group.round_get] { reader_->Leave(t); });
  }
  if (group.round_list) {
    after.push_back([this, t = *group.round_list] { reader_->Leave(t); });
  }
  for (auto& [id, side] : group.side_gets) {
    if (side.ticket) {
      after.push_back([this, t = *side.ticket] { reader_->Leave(t); });
    }
  }
  pacer_->Forget(it->first);
  auto count = token_groups_.find(it->first.token_fingerprint);
  if (count != token_groups_.end() && --count->second == 0) {
    token_groups_.erase(count);
  }
  groups_.erase(it);
}

void GroupPoller::OnTimer(const GroupKey& key) {
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(key);
    if (it == groups_.end()) return;
    Group& group = it->second;
    group.timer = 0;
    if (!registry_->GroupWatched(key)) {
      EraseLocked(it, after);
    } else {
      const absl::Time now = clock_->Now();
      // Another group of the token met Metrica's quota meanwhile: wait with it.
      const absl::Time paused = pacer_->PausedUntil(key.token_fingerprint);
      if (now < paused) {
        group.timer = scheduler_->RunAt(paused, [this, key] { OnTimer(key); });
      } else if (PollSetLocked(key).empty()) {  // another replica polls
        group.timer = scheduler_->RunAt(now + options_.poll_interval,
                                        [this, key] { OnTimer(key); });
      } else {
        StartRoundLocked(key, group, after);
      }
    }
  }
  Run(after);
}

void GroupPoller::StartRoundLocked(const GroupKey& key, Group& group,
                                   Actions& after) {
  if (group.timer != 0) scheduler_->Cancel(group.timer);
  group.timer = 0;
  group.polling = true;
  const WatchRegistry::PollSet set = PollSetLocked(key);
  group.round = BeginRound(key.counter_id, set.uploading_ids,
                           set.counter_types, options_.planner);
  ContinueLocked(key, group, clock_->Now(), after);
}

void GroupPoller::ContinueLocked(const GroupKey& key, Group& group,
                                 absl::Time now, Actions& after) {
  const WatchRegistry::PollSet set = PollSetLocked(key);
  PollStep step = NextStep(group.round, set.uploading_ids, options_.planner);
  const uint64_t n = ++group.step;
  group.round_get.reset();
  group.round_list.reset();
  group.round_get_id = 0;
  switch (step.kind) {
    case PollStep::kGet: {
      group.round_get_id = step.uploading_id;
      const UploadingKey uk{key.token_fingerprint, key.counter_id,
                            step.uploading_id};
      after.push_back([this, key, uk, n, token = group.token] {
        auto ticket = reader_->FetchGet(
            token, uk,
            [this, key, n, id = uk.uploading_id](
                absl::StatusOr<UploadingState> r) {
              OnRoundGet(key, n, id, r.status());
            });
        absl::MutexLock lock(&mu_);
        auto it = groups_.find(key);
        if (it != groups_.end() && it->second.polling && it->second.step == n) {
          it->second.round_get = ticket;
        }
      });
      return;
    }
    case PollStep::kList: {
      const ListKey lk{key.token_fingerprint, step.page.counter_id,
                       step.page.limit, step.page.offset,
                       static_cast<int32_t>(step.page.type)};
      after.push_back([this, key, lk, n, token = group.token] {
        auto ticket = reader_->FetchList(
            token, lk,
            [this, key, n](absl::StatusOr<v1::ListUploadingsResponse> r) {
              OnRoundList(key, n, r);
            });
        absl::MutexLock lock(&mu_);
        auto it = groups_.find(key);
        if (it != groups_.end() && it->second.polling && it->second.step == n) {
          it->second.round_list = ticket;
        }
      });
      return;
    }
    case PollStep::kDone:
      for (int64_t id : step.gets) SideGetLocked(key, group, id, after);
      EndRoundLocked(key, absl::OkStatus(), now, after);
      return;
  }
}

void GroupPoller::EndRoundLocked(const GroupKey& key,
                                 const absl::Status& status, absl::Time now,
                                 Actions& after) {
  auto it = groups_.find(key);
  if (it == groups_.end()) return;
  Group& group = it->second;
  group.polling = false;
  group.round = PollRound();
  group.round_get.reset();
  group.round_list.reset();
  group.round_get_id = 0;
  ++group.step;  // answers still on their way are stale now
  if (!registry_->GroupWatched(key)) {
    EraseLocked(it, after);
    return;
  }
  absl::Time when = pacer_->NextPoll(key, status, now,
                                     TokenGroupsLocked(key.token_fingerprint));
  if (group.rerun && status.ok()) {
    // Newcomers waited for this round to end: their first state comes from
    // the next one, now (a pause of the token still holds).
    when = std::max(now, pacer_->PausedUntil(key.token_fingerprint));
  }
  group.rerun = false;
  if (group.timer != 0) scheduler_->Cancel(group.timer);
  group.timer = scheduler_->RunAt(when, [this, key] { OnTimer(key); });
}

void GroupPoller::SideGetLocked(const GroupKey& key, Group& group, int64_t id,
                                Actions& after) {
  auto [it, created] = group.side_gets.try_emplace(id);
  if (!created) return;  // already on its way
  const uint64_t n = next_n_++;
  it->second.n = n;
  const UploadingKey uk{key.token_fingerprint, key.counter_id, id};
  after.push_back([this, key, uk, n, token = group.token] {
    auto ticket = reader_->FetchGet(
        token, uk,
        [this, key, n, id = uk.uploading_id](absl::StatusOr<UploadingState> r) {
          OnSideGet(key, id, n, r.status());
        });
    absl::MutexLock lock(&mu_);
    auto g = groups_.find(key);
    if (g == groups_.end()) return;
    auto side = g->second.side_gets.find(uk.uploading_id);
    if (side != g->second.side_gets.end() && side->second.n == n) {
      side->second.ticket = ticket;
    }
  });
}

void GroupPoller::OnRoundGet(const GroupKey& key, uint64_t step, int64_t id,
                             const absl::Status& status) {
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(key);
    if (it == groups_.end() || !it->second.polling || it->second.step != step) {
      return;
    }
    if (IsPermanent(status)) {
      after.push_back([this, key, id, status] {
        listener_->PollFailed(key, id, status);
      });
    }
    EndRoundLocked(key, status, clock_->Now(), after);
  }
  Run(after);
}

void GroupPoller::OnRoundList(
    const GroupKey& key, uint64_t step,
    const absl::StatusOr<v1::ListUploadingsResponse>& result) {
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(key);
    if (it == groups_.end() || !it->second.polling || it->second.step != step) {
      return;
    }
    const absl::Time now = clock_->Now();
    if (result.ok()) {
      PageSeen(it->second.round, *result);
      ContinueLocked(key, it->second, now, after);
    } else {
      if (IsPermanent(result.status())) {
        // The token cannot read the counter (or it is gone): every watch of
        // it ends, as a Get would have ended it.
        after.push_back([this, key, status = result.status()] {
          listener_->PollFailed(key, 0, status);
        });
      }
      EndRoundLocked(key, result.status(), now, after);
    }
  }
  Run(after);
}

void GroupPoller::OnSideGet(const GroupKey& key, int64_t id, uint64_t n,
                            const absl::Status& status) {
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    auto it = groups_.find(key);
    if (it == groups_.end()) return;
    Group& group = it->second;
    auto side = group.side_gets.find(id);
    if (side == group.side_gets.end() || side->second.n != n) return;
    group.side_gets.erase(side);
    if (IsPermanent(status)) {
      after.push_back([this, key, id, status] {
        listener_->PollFailed(key, id, status);
      });
    }
    if (!group.polling && group.timer == 0) {
      // A watcher's first fetch: the group's timer takes over from here.
      EndRoundLocked(key, status, clock_->Now(), after);
    }
  }
  Run(after);
}

}  // namespace uploadwatch
