#include "service/core/watch_hub.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service/common/status_details.h"

namespace uploadwatch {
namespace {

// Errors after which polling again cannot help: the watch ends with them.
bool IsPermanent(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
      return true;
    default:
      return false;
  }
}

constexpr absl::Duration kSweepEvery = absl::Minutes(1);

}  // namespace

WatchHub::WatchHub(MetricaClient* client, Scheduler* scheduler, Clock* clock,
                   Options options)
    : client_(client),
      scheduler_(scheduler),
      clock_(clock),
      options_(options),
      cache_(StateCache::Options{
          .fresh_for = std::min(options.cache_ttl, options.poll_interval),
          .terminal_fresh_for = options.terminal_ttl,
          .retention = options.retention}) {
  absl::MutexLock lock(&mu_);
  sweep_timer_ = scheduler_->RunAt(clock_->Now() + kSweepEvery,
                                   [this] { OnSweepTimer(); });
}

WatchHub::~WatchHub() {
  Shutdown(absl::UnavailableError("server is shutting down"));
}

absl::Duration WatchHub::FreshFor() const {
  return std::min(options_.cache_ttl, options_.poll_interval);
}

void WatchHub::Run(Actions& actions) {
  for (auto& action : actions) action();
  actions.clear();
}

// ---------------------------------------------------------------- fetching

void WatchHub::StartFetchLocked(const UploadingKey& key,
                                const std::string& token, bool for_poller,
                                StateCallback waiter, Actions& after) {
  auto [it, inserted] = flights_.try_emplace(key);
  Flight& flight = it->second;
  if (for_poller) flight.poller_waiting = true;
  if (waiter) flight.waiters.push_back(std::move(waiter));
  if (!inserted) return;  // joins the request already on its way
  const uint64_t seq = next_seq_++;
  flight.seq = seq;
  const absl::Time deadline = clock_->Now() + options_.upstream_timeout;
  // Issued after the lock is released: the client may take locks of its own.
  after.push_back([this, key, token, seq, deadline] {
    const MetricaClient::RequestId id = client_->GetUploading(
        token, key.counter_id, key.uploading_id, deadline,
        [this, key, seq](absl::StatusOr<v1::GetUploadingResponse> r) {
          OnFetched(key, seq, std::move(r));
        });
    bool orphaned;
    {
      absl::MutexLock lock(&mu_);
      auto f = flights_.find(key);
      orphaned = f == flights_.end() || f->second.seq != seq;
      if (!orphaned) f->second.request = id;
    }
    // Everyone left before the request went out: call it off.
    if (orphaned) client_->Cancel(id);
  });
}

void WatchHub::RecordLocked(const UploadingKey& key,
                            const v1::Uploading& uploading, absl::Time now,
                            UploadingState* out) {
  bool changed = false;
  const UploadingState& state = cache_.Record(key, uploading, now, &changed);
  if (out != nullptr) *out = state;
  auto p = pollers_.find(key);
  if (p == pollers_.end()) return;
  Poller& poller = p->second;
  if (!changed && poller.has_state) return;  // never a duplicate
  poller.has_state = true;
  const bool terminal = IsTerminal(state.uploading);
  for (Subscriber* s : poller.subscribers) s->OnState(state, terminal);
  if (terminal) {
    // A terminal state never changes: the watch is over for everyone.
    Actions none;
    RemovePollerLocked(key, none);
  }
}

void WatchHub::OnFetched(const UploadingKey& key, uint64_t seq,
                         absl::StatusOr<v1::GetUploadingResponse> result) {
  std::vector<StateCallback> waiters;
  absl::StatusOr<UploadingState> answer = absl::UnknownError("");
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    auto f = flights_.find(key);
    if (f == flights_.end() || f->second.seq != seq) return;  // called off
    waiters = std::move(f->second.waiters);
    const bool poller_waited = f->second.poller_waiting;
    flights_.erase(f);
    const absl::Time now = clock_->Now();

    if (result.ok() && result->uploading().id() != key.uploading_id) {
      result = absl::UnavailableError(absl::StrCat(
          "bad upstream reply: Metrica answered for uploading ",
          result->uploading().id(), " when asked for ", key.uploading_id));
    }
    if (result.ok()) {
      UploadingState state;
      RecordLocked(key, result->uploading(), now, &state);
      answer = std::move(state);
      auto p = pollers_.find(key);
      if (p != pollers_.end()) {
        p->second.failures = 0;
        if (poller_waited) {
          SchedulePollLocked(key, p->second, now + options_.poll_interval);
        }
      }
    } else {
      answer = result.status();
      PollErrorLocked(key, result.status(), poller_waited, now);
    }
  }
  for (auto& waiter : waiters) std::move(waiter)(answer);
}

void WatchHub::PollErrorLocked(const UploadingKey& key,
                               const absl::Status& status, bool poller_waited,
                               absl::Time now) {
  auto p = pollers_.find(key);
  if (p == pollers_.end()) return;
  Poller& poller = p->second;
  if (IsPermanent(status)) {
    for (Subscriber* s : poller.subscribers) s->OnError(status);
    Actions none;
    RemovePollerLocked(key, none);
    return;
  }
  if (!poller_waited || status.code() == absl::StatusCode::kCancelled) return;
  // Transient: the fetcher has already retried; wait longer each time so a
  // struggling Metrica is not hammered, but at least as long as it asked.
  poller.failures += 1;
  absl::Duration delay = options_.poll_interval;
  for (int i = 1; i < poller.failures && delay < options_.max_backoff; ++i) {
    delay *= 2;
  }
  delay = std::min(delay, options_.max_backoff);
  if (auto asked = GetRetryDelay(status)) delay = std::max(delay, *asked);
  SchedulePollLocked(key, poller, now + delay);
}

void WatchHub::SchedulePollLocked(const UploadingKey& key, Poller& poller,
                                  absl::Time when) {
  if (poller.timer != 0) scheduler_->Cancel(poller.timer);
  poller.timer = scheduler_->RunAt(when, [this, key] { OnPollTimer(key); });
}

void WatchHub::OnPollTimer(const UploadingKey& key) {
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    auto p = pollers_.find(key);
    if (p == pollers_.end()) return;
    p->second.timer = 0;
    StartFetchLocked(key, p->second.token, /*for_poller=*/true, nullptr,
                     after);
  }
  Run(after);
}

void WatchHub::RemovePollerLocked(const UploadingKey& key, Actions& after) {
  auto p = pollers_.find(key);
  if (p == pollers_.end()) return;
  if (p->second.timer != 0) scheduler_->Cancel(p->second.timer);
  for (Subscriber* s : p->second.subscribers) subscribers_.erase(s);
  pollers_.erase(p);
  // Nobody else waits for its request: stop it, Metrica's quota is precious.
  auto f = flights_.find(key);
  if (f == flights_.end()) return;
  f->second.poller_waiting = false;
  if (!f->second.waiters.empty()) return;
  const MetricaClient::RequestId request = f->second.request;
  flights_.erase(f);
  if (request != 0) after.push_back([this, request] { client_->Cancel(request); });
}

// ---------------------------------------------------------------- Get / List

void WatchHub::Get(const Credentials& credentials, int32_t counter_id,
                   int64_t uploading_id, StateCallback done) {
  const UploadingKey key{credentials.fingerprint(), counter_id, uploading_id};
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) {
      std::move(done)(absl::UnavailableError("server is shutting down"));
      return;
    }
    // A poller that is running has the freshest state there is.
    std::optional<UploadingState> fresh = cache_.GetFresh(key, clock_->Now());
    auto p = pollers_.find(key);
    if (!fresh && p != pollers_.end() && p->second.has_state) {
      if (const UploadingState* s = cache_.Find(key)) fresh = *s;
    }
    if (fresh) {
      after.push_back([done = std::make_shared<StateCallback>(std::move(done)),
                       state = std::move(*fresh)]() mutable {
        std::move (*done)(std::move(state));
      });
    } else {
      StartFetchLocked(key, credentials.token(), /*for_poller=*/false,
                       std::move(done), after);
    }
  }
  Run(after);
}

void WatchHub::List(const Credentials& credentials, const ListParams& params,
                    ListCallback done) {
  const ListKey key{credentials.fingerprint(), params.counter_id, params.limit,
                    params.offset, static_cast<int32_t>(params.type)};
  uint64_t seq = 0;
  std::optional<absl::StatusOr<v1::ListUploadingsResponse>> immediate;
  {
    absl::MutexLock lock(&mu_);
    auto cached = list_cache_.find(key);
    if (shut_down_) {
      immediate = absl::UnavailableError("server is shutting down");
    } else if (cached != list_cache_.end() &&
               clock_->Now() - cached->second.fetched <= FreshFor()) {
      immediate = cached->second.response;
    } else {
      auto [it, inserted] = list_flights_.try_emplace(key);
      it->second.waiters.push_back(std::move(done));
      if (!inserted) return;  // joins the request already on its way
      seq = next_seq_++;
      it->second.seq = seq;
    }
  }
  if (immediate) {
    std::move(done)(*std::move(immediate));
    return;
  }
  const MetricaClient::RequestId id = client_->ListUploadings(
      credentials.token(), params, clock_->Now() + options_.upstream_timeout,
      [this, key, seq](absl::StatusOr<v1::ListUploadingsResponse> r) {
        OnListed(key, seq, std::move(r));
      });
  absl::MutexLock lock(&mu_);
  auto f = list_flights_.find(key);
  if (f != list_flights_.end() && f->second.seq == seq) f->second.request = id;
}

void WatchHub::OnListed(const ListKey& key, uint64_t seq,
                        absl::StatusOr<v1::ListUploadingsResponse> result) {
  std::vector<ListCallback> waiters;
  {
    absl::MutexLock lock(&mu_);
    auto f = list_flights_.find(key);
    if (f == list_flights_.end() || f->second.seq != seq) return;
    waiters = std::move(f->second.waiters);
    list_flights_.erase(f);
    if (result.ok()) {
      const absl::Time now = clock_->Now();
      list_cache_[key] = ListEntry{*result, now};
      // A list is as good as a Get for every uploading in it.
      for (const v1::Uploading& u : result->uploadings()) {
        RecordLocked(UploadingKey{key.token_fingerprint, key.counter_id, u.id()},
                     u, now, nullptr);
      }
    }
  }
  for (auto& waiter : waiters) std::move(waiter)(result);
}

// ---------------------------------------------------------------- watching

absl::Status WatchHub::Subscribe(const Credentials& credentials,
                                 int32_t counter_id, int64_t uploading_id,
                                 Subscriber* subscriber) {
  const UploadingKey key{credentials.fingerprint(), counter_id, uploading_id};
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) {
      return absl::UnavailableError(
          "server is shutting down; re-watch to reconnect to another instance");
    }
    if (subscribers_.size() >= options_.max_watches) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "this server already serves its limit of ", options_.max_watches,
          " open watches; retry later (with backoff) or on another instance"));
    }
    auto [it, created] = pollers_.try_emplace(key);
    Poller& poller = it->second;
    poller.subscribers.insert(subscriber);
    subscribers_[subscriber] = key;
    if (!created) {
      // Join: the current state first, then changes with everyone else.
      if (poller.has_state) {
        if (const UploadingState* s = cache_.Find(key)) {
          subscriber->OnState(*s, /*terminal=*/false);
        }
      }
    } else {
      poller.token = credentials.token();
      const absl::Time now = clock_->Now();
      std::optional<UploadingState> fresh = cache_.GetFresh(key, now);
      if (fresh) {
        poller.has_state = true;
        const bool terminal = IsTerminal(fresh->uploading);
        subscriber->OnState(*fresh, terminal);
        if (terminal) {
          RemovePollerLocked(key, after);
        } else {
          SchedulePollLocked(key, poller,
                             fresh->check_time + options_.poll_interval);
        }
      } else {
        StartFetchLocked(key, poller.token, /*for_poller=*/true, nullptr,
                         after);
      }
    }
  }
  Run(after);
  return absl::OkStatus();
}

void WatchHub::Unsubscribe(Subscriber* subscriber) {
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    auto s = subscribers_.find(subscriber);
    if (s == subscribers_.end()) return;
    const UploadingKey key = s->second;
    subscribers_.erase(s);
    auto p = pollers_.find(key);
    if (p == pollers_.end()) return;
    p->second.subscribers.erase(subscriber);
    if (p->second.subscribers.empty()) RemovePollerLocked(key, after);
  }
  Run(after);
}

void WatchHub::Shutdown(const absl::Status& reason) {
  std::vector<StateCallback> gets;
  std::vector<ListCallback> lists;
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    scheduler_->Cancel(sweep_timer_);
    for (auto& [key, poller] : pollers_) {
      for (Subscriber* s : poller.subscribers) s->OnError(reason);
      if (poller.timer != 0) scheduler_->Cancel(poller.timer);
    }
    pollers_.clear();
    subscribers_.clear();
    for (auto& [key, flight] : flights_) {
      for (auto& w : flight.waiters) gets.push_back(std::move(w));
      if (flight.request != 0) {
        after.push_back([this, r = flight.request] { client_->Cancel(r); });
      }
    }
    flights_.clear();
    for (auto& [key, flight] : list_flights_) {
      for (auto& w : flight.waiters) lists.push_back(std::move(w));
      if (flight.request != 0) {
        after.push_back([this, r = flight.request] { client_->Cancel(r); });
      }
    }
    list_flights_.clear();
  }
  Run(after);
  for (auto& g : gets) std::move(g)(reason);
  for (auto& l : lists) std::move(l)(reason);
}

void WatchHub::OnSweepTimer() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  cache_.Sweep(now);
  for (auto it = list_cache_.begin(); it != list_cache_.end();) {
    if (now - it->second.fetched > FreshFor()) {
      list_cache_.erase(it++);
    } else {
      ++it;
    }
  }
  if (!shut_down_) {
    sweep_timer_ = scheduler_->RunAt(now + kSweepEvery, [this] { OnSweepTimer(); });
  }
}

WatchHub::Stats WatchHub::stats() {
  absl::MutexLock lock(&mu_);
  return Stats{subscribers_.size(), pollers_.size(), flights_.size(),
               cache_.size()};
}

}  // namespace uploadwatch
