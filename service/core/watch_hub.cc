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
// Metrica's bound on `limit`.
constexpr int32_t kMaxPageSize = 10000;
// Batched pages are at least this big: recent uploadings, the ones still
// moving, come first, so one page usually covers everything watched.
constexpr int32_t kMinPageSize = 100;

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
  if (options_.metrics != nullptr) RegisterMetrics(options_.metrics);
  absl::MutexLock lock(&mu_);
  sweep_timer_ = scheduler_->RunAt(clock_->Now() + kSweepEvery,
                                   [this] { OnSweepTimer(); });
}

void WatchHub::RegisterMetrics(Metrics* metrics) {
  upstream_requests_ = metrics->AddCounter(
      "uploadwatch_upstream_requests_total",
      "Requests to Metrica (retries inside one count once), by endpoint and "
      "outcome.",
      {"endpoint", "outcome"});
  upstream_latency_ = metrics->AddHistogram(
      "uploadwatch_upstream_latency_seconds",
      "Time from asking Metrica to its answer, retries included.",
      {"endpoint"}, Metrics::LatencyBuckets());
  cache_lookups_ = metrics->AddCounter(
      "uploadwatch_cache_lookups_total",
      "GetUploading/ListUploadings answered from cache (hit) or not (miss).",
      {"rpc", "result"});
  using Samples = std::vector<std::pair<Metrics::Labels, double>>;
  auto stat = [this](size_t Stats::*field) {
    return [this, field] {
      return Samples{{{}, static_cast<double>(stats().*field)}};
    };
  };
  metrics->AddGauge("uploadwatch_open_watches", "Open WatchUploading streams.",
                    {}, stat(&Stats::watchers));
  metrics->AddGauge("uploadwatch_pollers",
                    "Watched uploadings (one poller each, shared by watchers).",
                    {}, stat(&Stats::pollers));
  metrics->AddGauge("uploadwatch_poll_groups",
                    "(token, counter) groups polling together.", {},
                    stat(&Stats::groups));
  metrics->AddGauge("uploadwatch_cached_states", "Uploading states in cache.",
                    {}, stat(&Stats::cached_states));
  metrics->AddGauge(
      "uploadwatch_quota_used_today",
      "Metrica requests sent today per token fingerprint (daily budget).",
      {"token"}, [this] {
        Samples out;
        for (const auto& [fp, usage] : client_->AllDailyUsage()) {
          out.push_back({{fp}, static_cast<double>(usage.used)});
        }
        return out;
      });
  metrics->AddGauge(
      "uploadwatch_quota_remaining_today",
      "Metrica requests left today per token fingerprint (quota headroom).",
      {"token"}, [this] {
        Samples out;
        for (const auto& [fp, usage] : client_->AllDailyUsage()) {
          out.push_back({{fp}, static_cast<double>(usage.remaining())});
        }
        return out;
      });
}

void WatchHub::CountUpstream(const char* endpoint, const absl::Status& status,
                             absl::Time started, absl::Time now) {
  if (upstream_requests_ == nullptr) return;
  upstream_requests_->Inc({endpoint, absl::StatusCodeToString(status.code())});
  upstream_latency_->ObserveDuration({endpoint}, now - started);
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

void WatchHub::QueueStateLocked(std::vector<Subscriber*> to,
                                const UploadingState& state, bool terminal) {
  if (to.empty()) return;
  pending_.push_back(Delivery{std::move(to),
                              std::make_shared<const UploadingState>(state),
                              terminal, absl::OkStatus()});
}

void WatchHub::QueueErrorLocked(std::vector<Subscriber*> to,
                                const absl::Status& error) {
  if (to.empty()) return;
  pending_.push_back(Delivery{std::move(to), nullptr, false, error});
}

std::vector<WatchHub::Delivery> WatchHub::TakeDeliveriesLocked() {
  std::vector<Delivery> out;
  out.swap(pending_);
  return out;
}

void WatchHub::Deliver(std::vector<Delivery> batch) {
  if (batch.empty()) return;
  absl::MutexLock lock(&delivery_mu_);
  for (const Delivery& d : batch) {
    for (Subscriber* s : d.to) {
      if (!live_.contains(s)) continue;  // unsubscribed meanwhile
      if (d.state != nullptr) {
        s->OnState(*d.state, d.terminal);
      } else {
        s->OnError(d.error);
      }
    }
  }
}

// ---------------------------------------------------------------- fetching

template <typename Flights>
void WatchHub::AdoptRequest(Flights& flights,
                            const typename Flights::key_type& key,
                            uint64_t seq, MetricaClient::RequestId id) {
  bool orphaned;
  {
    absl::MutexLock lock(&mu_);
    auto f = flights.find(key);
    orphaned = f == flights.end() || f->second.seq != seq;
    if (!orphaned) f->second.request = id;
  }
  // Everyone left before the request went out: call it off.
  if (orphaned) client_->Cancel(id);
}

void WatchHub::StartFetchLocked(const UploadingKey& key,
                                const std::string& token, bool for_group,
                                StateCallback waiter, Actions& after) {
  auto [it, inserted] = flights_.try_emplace(key);
  Flight& flight = it->second;
  if (for_group) flight.group_waiting = true;
  if (waiter) flight.waiters.push_back(std::move(waiter));
  if (!inserted) return;  // joins the request already on its way
  const uint64_t seq = next_seq_++;
  flight.seq = seq;
  flight.started = clock_->Now();
  const absl::Time deadline = clock_->Now() + options_.upstream_timeout;
  // Issued after the lock is released: the client may take locks of its own.
  after.push_back([this, key, token, seq, deadline] {
    const MetricaClient::RequestId id = client_->GetUploading(
        token, key.counter_id, key.uploading_id, deadline,
        [this, key, seq](absl::StatusOr<v1::GetUploadingResponse> r) {
          OnFetched(key, seq, std::move(r));
        });
    AdoptRequest(flights_, key, seq, id);
  });
}

void WatchHub::StartListLocked(const ListKey& key, const std::string& token,
                               bool for_group, ListCallback waiter,
                               Actions& after) {
  auto [it, inserted] = list_flights_.try_emplace(key);
  if (for_group) it->second.group_waiting = true;
  if (waiter) it->second.waiters.push_back(std::move(waiter));
  if (!inserted) return;
  const uint64_t seq = next_seq_++;
  it->second.seq = seq;
  it->second.started = clock_->Now();
  ListParams params;
  params.counter_id = key.counter_id;
  params.limit = key.limit;
  params.offset = key.offset;
  params.type = static_cast<v1::Uploading::Type>(key.type);
  const absl::Time deadline = clock_->Now() + options_.upstream_timeout;
  after.push_back([this, key, token, params, seq, deadline] {
    const MetricaClient::RequestId id = client_->ListUploadings(
        token, params, deadline,
        [this, key, seq](absl::StatusOr<v1::ListUploadingsResponse> r) {
          OnListed(key, seq, std::move(r));
        });
    AdoptRequest(list_flights_, key, seq, id);
  });
}

void WatchHub::RecordLocked(const UploadingKey& key,
                            const v1::Uploading& uploading, absl::Time now,
                            absl::Time sent, UploadingState* out) {
  bool changed = false;
  const UploadingState& state =
      cache_.Record(key, uploading, now, sent, &changed);
  if (out != nullptr) *out = state;
  auto p = pollers_.find(key);
  if (p == pollers_.end()) return;
  Poller& poller = p->second;
  if (!changed && poller.has_state) return;  // never a duplicate
  poller.has_state = true;
  const bool terminal = IsTerminal(state.uploading);
  QueueStateLocked({poller.subscribers.begin(), poller.subscribers.end()},
                   state, terminal);
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
  std::vector<Delivery> deliveries;
  {
    absl::MutexLock lock(&mu_);
    auto f = flights_.find(key);
    if (f == flights_.end() || f->second.seq != seq) return;  // called off
    waiters = std::move(f->second.waiters);
    const bool group_waited = f->second.group_waiting;
    const absl::Time now = clock_->Now();
    const absl::Time sent = f->second.started;
    CountUpstream("get", result.status(), sent, now);
    flights_.erase(f);

    if (result.ok() && result->uploading().id() != key.uploading_id) {
      result = absl::UnavailableError(absl::StrCat(
          "bad upstream reply: Metrica answered for uploading ",
          result->uploading().id(), " when asked for ", key.uploading_id));
    }
    if (result.ok()) {
      UploadingState state;
      RecordLocked(key, result->uploading(), now, sent, &state);
      answer = std::move(state);
    } else {
      answer = result.status();
      FailPollerLocked(key, result.status());
    }
    auto g = groups_.find(GroupOf(key));
    if (group_waited) {
      EndRoundLocked(GroupOf(key), result.status(), now);
    } else if (g != groups_.end() && pollers_.contains(key) &&
               !g->second.polling && g->second.timer == 0) {
      // A watcher's first fetch: the group's timer takes over from here.
      EndRoundLocked(GroupOf(key), result.status(), now);
    }
    deliveries = TakeDeliveriesLocked();
  }
  Deliver(std::move(deliveries));
  for (auto& waiter : waiters) std::move(waiter)(answer);
}

void WatchHub::FailPollerLocked(const UploadingKey& key,
                                const absl::Status& status) {
  if (!IsPermanent(status)) return;
  auto p = pollers_.find(key);
  if (p == pollers_.end()) return;
  QueueErrorLocked({p->second.subscribers.begin(), p->second.subscribers.end()},
                   status);
  Actions none;
  RemovePollerLocked(key, none);
}

void WatchHub::EndRoundLocked(const GroupKey& key, const absl::Status& status,
                              absl::Time now) {
  auto g = groups_.find(key);
  if (g == groups_.end()) return;
  Group& group = g->second;
  group.polling = false;
  group.unseen.clear();
  if (group.ids.empty()) {
    groups_.erase(g);
    return;
  }
  absl::Time when = NextPollLocked(key, group, status, now);
  if (group.rerun && status.ok()) {
    // Newcomers waited for this round to end: their first state comes from
    // the next one, now (a pause of the token still holds).
    when = std::max(now, pace_[key.token_fingerprint].paused_until);
  }
  group.rerun = false;
  if (group.timer != 0) scheduler_->Cancel(group.timer);
  group.timer = scheduler_->RunAt(when, [this, key] { OnGroupTimer(key); });
}

absl::Time WatchHub::NextPollLocked(const GroupKey& key, Group& group,
                                    const absl::Status& status,
                                    absl::Time now) {
  absl::Duration delay = options_.poll_interval;
  TokenPace& pace = pace_[key.token_fingerprint];
  const auto info = GetErrorInfo(status);
  const bool ours = info && info->domain() == "uploadwatch";
  if (status.ok() || IsPermanent(status) ||
      status.code() == absl::StatusCode::kCancelled) {
    group.failures = 0;
    pace.exhausted = 0;
  } else {
    // Transient: the fetcher has already retried; wait longer each time so a
    // struggling Metrica is not hammered, but at least as long as it asked.
    group.failures += 1;
    for (int i = 1; i < group.failures && delay < options_.max_backoff; ++i) {
      delay *= 2;
    }
    delay = std::min(delay, options_.max_backoff);
    if (auto asked = GetRetryDelay(status)) delay = std::max(delay, *asked);
    if (status.code() == absl::StatusCode::kResourceExhausted && !ours) {
      // Metrica's quota is per user: every poll of this token would meet
      // the same answer, so the whole token waits.
      pace.exhausted += 1;
      absl::Duration pause = options_.poll_interval;
      for (int i = 1; i < pace.exhausted && pause < options_.max_backoff; ++i) {
        pause *= 2;
      }
      pause = std::min(pause, options_.max_backoff);
      if (auto asked = GetRetryDelay(status)) pause = std::max(pause, *asked);
      pace.paused_until = std::max(pace.paused_until, now + pause);
    }
  }
  // Spread what is left of today's budget over what is watched until the
  // reset: G groups polling every I spend G * left / I requests.
  if (std::optional<QuotaUsage> usage =
          client_->DailyUsage(key.token_fingerprint)) {
    const absl::Duration left = usage->resets_at - now;
    const double spendable =
        usage->remaining() - options_.budget_reserve * usage->budget;
    size_t groups = 0;
    for (const auto& [k, g] : groups_) {
      if (k.token_fingerprint == key.token_fingerprint && !g.ids.empty()) {
        ++groups;
      }
    }
    if (spendable < 1) {
      delay = std::max(delay, left);  // nothing left to poll with today
    } else if (left > absl::ZeroDuration()) {
      delay = std::max(delay, left * (static_cast<double>(groups) / spendable));
    }
  }
  return std::max(now + delay, pace.paused_until);
}

void WatchHub::OnGroupTimer(const GroupKey& key) {
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    auto g = groups_.find(key);
    if (g == groups_.end()) return;
    Group& group = g->second;
    group.timer = 0;
    if (group.ids.empty()) {
      groups_.erase(g);
      return;
    }
    // Another group of the token met Metrica's quota meanwhile: wait with it.
    const absl::Time paused_until = pace_[key.token_fingerprint].paused_until;
    if (clock_->Now() < paused_until) {
      group.timer =
          scheduler_->RunAt(paused_until, [this, key] { OnGroupTimer(key); });
      return;
    }
    StartRoundLocked(key, group, after);
  }
  Run(after);
}

void WatchHub::StartRoundLocked(const GroupKey& key, Group& group,
                                Actions& after) {
  if (group.timer != 0) scheduler_->Cancel(group.timer);
  group.timer = 0;
  group.polling = true;
  if (group.ids.size() < std::max<size_t>(options_.batch_min_uploadings, 2)) {
    const int64_t id = *group.ids.begin();
    StartFetchLocked(UploadingKey{key.token_fingerprint, key.counter_id, id},
                     group.token, /*for_group=*/true, nullptr, after);
  } else {
    group.page = 0;
    group.page_size = static_cast<int32_t>(std::clamp<size_t>(
        group.ids.size() * 2, kMinPageSize, kMaxPageSize));
    group.unseen = group.ids;
    ContinueBatchLocked(key, group, clock_->Now(), after);
  }
}

// Fetches the next page of a batched round, or ends the round with Gets for
// what the pages did not show.
void WatchHub::ContinueBatchLocked(const GroupKey& key, Group& group,
                                   absl::Time now, Actions& after) {
  // Only uploadings still watched matter.
  for (auto it = group.unseen.begin(); it != group.unseen.end();) {
    if (!group.ids.contains(*it)) {
      group.unseen.erase(it++);
    } else {
      ++it;
    }
  }
  if (!group.unseen.empty() && group.page < options_.batch_max_pages) {
    const ListKey list{key.token_fingerprint, key.counter_id, group.page_size,
                       group.page * group.page_size,
                       static_cast<int32_t>(v1::Uploading::TYPE_UNSPECIFIED)};
    group.page += 1;
    StartListLocked(list, group.token, /*for_group=*/true, nullptr, after);
    return;
  }
  // Not on the pages (older, or another type): one Get each.
  for (int64_t id : group.unseen) {
    StartFetchLocked(UploadingKey{key.token_fingerprint, key.counter_id, id},
                     group.token, /*for_group=*/false, nullptr, after);
  }
  EndRoundLocked(key, absl::OkStatus(), now);
}

void WatchHub::RemovePollerLocked(const UploadingKey& key, Actions& after) {
  auto p = pollers_.find(key);
  if (p == pollers_.end()) return;
  for (Subscriber* s : p->second.subscribers) subscribers_.erase(s);
  pollers_.erase(p);
  auto g = groups_.find(GroupOf(key));
  if (g != groups_.end()) {
    g->second.ids.erase(key.uploading_id);
    if (g->second.ids.empty() && !g->second.polling) {
      if (g->second.timer != 0) scheduler_->Cancel(g->second.timer);
      groups_.erase(g);
    }
  }
  // Nobody else waits for its request: stop it, Metrica's quota is precious.
  auto f = flights_.find(key);
  if (f == flights_.end() || !f->second.waiters.empty()) return;
  const MetricaClient::RequestId request = f->second.request;
  const bool group_waited = f->second.group_waiting;
  flights_.erase(f);
  if (request != 0) after.push_back([this, request] { client_->Cancel(request); });
  if (group_waited) EndRoundLocked(GroupOf(key), absl::OkStatus(), clock_->Now());
}

// ---------------------------------------------------------------- Get / List

void WatchHub::Get(const Credentials& credentials, int32_t counter_id,
                   int64_t uploading_id, StateCallback done) {
  const UploadingKey key{credentials.fingerprint(), counter_id, uploading_id};
  std::optional<absl::StatusOr<UploadingState>> immediate;
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    // A poller that is running has the freshest state there is.
    std::optional<UploadingState> fresh = cache_.GetFresh(key, clock_->Now());
    auto p = pollers_.find(key);
    if (!fresh && p != pollers_.end() && p->second.has_state) {
      if (const UploadingState* s = cache_.Find(key)) fresh = *s;
    }
    if (shut_down_) {
      immediate = absl::UnavailableError("server is shutting down");
    } else if (fresh) {
      if (cache_lookups_) cache_lookups_->Inc({"GetUploading", "hit"});
      immediate = std::move(*fresh);
    } else {
      if (cache_lookups_) cache_lookups_->Inc({"GetUploading", "miss"});
      StartFetchLocked(key, credentials.token(), /*for_group=*/false,
                       std::move(done), after);
    }
  }
  Run(after);
  if (immediate) std::move(done)(*std::move(immediate));
}

void WatchHub::List(const Credentials& credentials, const ListParams& params,
                    ListCallback done) {
  const ListKey key{credentials.fingerprint(), params.counter_id, params.limit,
                    params.offset, static_cast<int32_t>(params.type)};
  std::optional<absl::StatusOr<v1::ListUploadingsResponse>> immediate;
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    auto cached = list_cache_.find(key);
    if (shut_down_) {
      immediate = absl::UnavailableError("server is shutting down");
    } else if (cached != list_cache_.end() &&
               clock_->Now() - cached->second.fetched <= FreshFor()) {
      if (cache_lookups_) cache_lookups_->Inc({"ListUploadings", "hit"});
      immediate = cached->second.response;
    } else {
      if (cache_lookups_) cache_lookups_->Inc({"ListUploadings", "miss"});
      StartListLocked(key, credentials.token(), /*for_group=*/false,
                      std::move(done), after);
    }
  }
  Run(after);
  if (immediate) std::move(done)(*std::move(immediate));
}

void WatchHub::OnListed(const ListKey& key, uint64_t seq,
                        absl::StatusOr<v1::ListUploadingsResponse> result) {
  std::vector<ListCallback> waiters;
  Actions after;
  std::vector<Delivery> deliveries;
  {
    absl::MutexLock lock(&mu_);
    auto f = list_flights_.find(key);
    if (f == list_flights_.end() || f->second.seq != seq) return;
    waiters = std::move(f->second.waiters);
    const bool group_waited = f->second.group_waiting;
    const absl::Time now = clock_->Now();
    const absl::Time sent = f->second.started;
    CountUpstream("list", result.status(), sent, now);
    list_flights_.erase(f);
    const GroupKey group_key{key.token_fingerprint, key.counter_id};
    if (result.ok()) {
      list_cache_[key] = ListEntry{*result, now};
      // A list is as good as a Get for every uploading in it. (Recording may
      // end a watch, and with it the group: look the group up each time.)
      for (const v1::Uploading& u : result->uploadings()) {
        RecordLocked(UploadingKey{key.token_fingerprint, key.counter_id, u.id()},
                     u, now, sent, nullptr);
        auto g = groups_.find(group_key);
        if (g != groups_.end()) g->second.unseen.erase(u.id());
      }
    }
    auto g = groups_.find(group_key);
    if (group_waited && g != groups_.end() && g->second.polling) {
      if (result.ok()) {
        if (result->uploadings_size() < key.limit) {
          g->second.page = options_.batch_max_pages;  // that was the last page
        }
        ContinueBatchLocked(group_key, g->second, now, after);
      } else {
        if (IsPermanent(result.status())) {
          // The token cannot read the counter (or it is gone): every watch
          // of it ends, as a Get would have ended it.
          std::vector<int64_t> ids(g->second.ids.begin(), g->second.ids.end());
          for (int64_t id : ids) {
            FailPollerLocked(
                UploadingKey{key.token_fingerprint, key.counter_id, id},
                result.status());
          }
        }
        EndRoundLocked(group_key, result.status(), now);
      }
    }
    deliveries = TakeDeliveriesLocked();
  }
  Deliver(std::move(deliveries));
  Run(after);
  for (auto& waiter : waiters) std::move(waiter)(result);
}

// ---------------------------------------------------------------- watching

absl::Status WatchHub::Subscribe(const Credentials& credentials,
                                 int32_t counter_id, int64_t uploading_id,
                                 Subscriber* subscriber) {
  const UploadingKey key{credentials.fingerprint(), counter_id, uploading_id};
  // Live before the hub knows it, so that no delivery can miss it.
  {
    absl::MutexLock lock(&delivery_mu_);
    live_.insert(subscriber);
  }
  auto refuse = [this, subscriber](absl::Status status) {
    absl::MutexLock lock(&delivery_mu_);
    live_.erase(subscriber);
    return status;
  };
  Actions after;
  std::vector<Delivery> deliveries;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) {
      return refuse(absl::UnavailableError(
          "server is shutting down; re-watch to reconnect to another instance"));
    }
    if (subscribers_.size() >= options_.max_watches) {
      return refuse(absl::ResourceExhaustedError(absl::StrCat(
          "this server already serves its limit of ", options_.max_watches,
          " open watches; retry later (with backoff) or on another instance")));
    }
    auto [it, created] = pollers_.try_emplace(key);
    Poller& poller = it->second;
    poller.subscribers.insert(subscriber);
    subscribers_[subscriber] = key;
    if (!created) {
      // Join: the current state first, then changes with everyone else.
      if (poller.has_state) {
        if (const UploadingState* s = cache_.Find(key)) {
          QueueStateLocked({subscriber}, *s, /*terminal=*/false);
        }
      }
    } else {
      poller.token = credentials.token();
      Group& group = groups_[GroupOf(key)];
      group.token = credentials.token();
      group.ids.insert(uploading_id);
      const absl::Time now = clock_->Now();
      std::optional<UploadingState> fresh = cache_.GetFresh(key, now);
      if (fresh) {
        poller.has_state = true;
        const bool terminal = IsTerminal(fresh->uploading);
        QueueStateLocked({subscriber}, *fresh, terminal);
        if (terminal) {
          RemovePollerLocked(key, after);
        } else if (!group.polling && group.timer == 0) {
          EndRoundLocked(GroupOf(key), absl::OkStatus(), now);
        }
      } else if (group.ids.size() >=
                 std::max<size_t>(options_.batch_min_uploadings, 2)) {
        // The group batches: one List gives this newcomer its first state,
        // and every other newcomer's (a dashboard opening 40 watches at once
        // costs a List, not 40 Gets).
        if (!group.polling &&
            clock_->Now() >= pace_[key.token_fingerprint].paused_until) {
          StartRoundLocked(GroupOf(key), group, after);
        } else {
          group.rerun = true;
        }
      } else {
        // The first state as soon as possible, whatever the group's timer.
        StartFetchLocked(key, poller.token, /*for_group=*/false, nullptr,
                         after);
      }
    }
    deliveries = TakeDeliveriesLocked();
  }
  Deliver(std::move(deliveries));
  Run(after);
  return absl::OkStatus();
}

void WatchHub::Unsubscribe(Subscriber* subscriber) {
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    auto s = subscribers_.find(subscriber);
    if (s != subscribers_.end()) {
      const UploadingKey key = s->second;
      subscribers_.erase(s);
      auto p = pollers_.find(key);
      if (p != pollers_.end()) {
        p->second.subscribers.erase(subscriber);
        if (p->second.subscribers.empty()) RemovePollerLocked(key, after);
      }
    }
  }
  {
    // Waits for a delivery in progress; none reaches it afterwards.
    absl::MutexLock lock(&delivery_mu_);
    live_.erase(subscriber);
  }
  Run(after);
}

void WatchHub::Shutdown(const absl::Status& reason) {
  std::vector<Delivery> deliveries;
  std::vector<StateCallback> gets;
  std::vector<ListCallback> lists;
  Actions after;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    scheduler_->Cancel(sweep_timer_);
    for (auto& [key, poller] : pollers_) {
      QueueErrorLocked({poller.subscribers.begin(), poller.subscribers.end()},
                       reason);
    }
    for (auto& [key, group] : groups_) {
      if (group.timer != 0) scheduler_->Cancel(group.timer);
    }
    pollers_.clear();
    groups_.clear();
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
    deliveries = TakeDeliveriesLocked();
  }
  Deliver(std::move(deliveries));
  Run(after);
  for (auto& g : gets) std::move(g)(reason);
  for (auto& l : lists) std::move(l)(reason);
}

void WatchHub::OnSweepTimer() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  // Watched uploadings keep their state however long polls are stretched:
  // their versions must never start again at 1.
  cache_.Sweep(now, [this](const UploadingKey& key)
                        ABSL_NO_THREAD_SAFETY_ANALYSIS {
                          return pollers_.contains(key);
                        });
  for (auto it = pace_.begin(); it != pace_.end();) {
    if (it->second.paused_until < now && it->second.exhausted == 0) {
      pace_.erase(it++);
    } else {
      ++it;
    }
  }
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
  return Stats{subscribers_.size(), pollers_.size(), groups_.size(),
               flights_.size(), cache_.size()};
}

}  // namespace uploadwatch
