#include "service/core/uploading_hub.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "service/core/change_history.h"

namespace uploadwatch {
namespace {

constexpr absl::Duration kSweepEvery = absl::Minutes(1);

absl::Duration FreshFor(const UploadingHub::Options& o) {
  return std::min(o.cache_ttl, o.poll_interval);
}

}  // namespace

UploadingHub::UploadingHub(MetricaClient* client, Scheduler* scheduler,
                           Executor* executor, const Clock* clock,
                           Options options)
    : client_(client),
      scheduler_(scheduler),
      clock_(clock),
      publisher_(options.publisher),
      store_(StateCache::Options{.fresh_for = FreshFor(options),
                                 .terminal_fresh_for = options.terminal_ttl,
                                 .retention = options.retention}),
      registry_(WatchRegistry::Options{.max_watches = options.max_watches}),
      fan_out_(executor),
      tokens_(options.tokens),
      admission_(
          CallerAdmission::Options{
              .share = options.caller_budget_share,
              .pool = options.budget_reserve,
              .parallel = options.max_in_flight_per_token,
              .max_watches = options.max_watches_per_caller},
          [client](const std::string& fingerprint) {
            return client->DailyUsage(fingerprint);
          }),
      pacer_(Pacer::Options{.poll_interval = options.poll_interval,
                            .max_backoff = options.max_backoff,
                            .budget_reserve = options.budget_reserve,
                            .random = options.random,
                            // Groups over all replicas, where known.
                            .shared_groups =
                                [ownership = options.ownership](
                                    const std::string& fingerprint)
                                    -> std::optional<size_t> {
                                  if (ownership == nullptr) return std::nullopt;
                                  return ownership->TokenGroups(fingerprint);
                                }},
             // Callers' requests come out of the reserve, not the polls'.
             [this](const std::string& fingerprint) {
               return admission_.PollersView(fingerprint);
             }),
      reader_(client, clock, this,
              UpstreamReader::Options{
                  .upstream_timeout = options.upstream_timeout,
                  .list_fresh_for = FreshFor(options),
                  .negative_ttl = options.negative_cache_ttl,
                  .metrics = options.metrics,
                  .admission = &admission_,
                  .tokens = &tokens_}),
      poller_(&reader_, &registry_, &pacer_,
              options.ownership != nullptr ? options.ownership
                                           : &local_ownership_,
              scheduler, clock, this,
              GroupPoller::Options{
                  .planner = {.batch_min_uploadings =
                                  options.batch_min_uploadings,
                              .batch_max_pages = options.batch_max_pages},
                  .poll_interval = options.poll_interval}) {
  if (options.metrics != nullptr) RegisterGauges(options.metrics);
  absl::MutexLock lock(&mu_);
  sweep_timer_ = scheduler_->RunAt(clock_->Now() + kSweepEvery,
                                   [this] { OnSweepTimer(); });
}

UploadingHub::~UploadingHub() {
  Shutdown(absl::UnavailableError("server is shutting down"));
}

void UploadingHub::RegisterGauges(Metrics* metrics) {
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
  auto quota = [this](bool used) {
    return [this, used] {
      Samples out;
      for (const auto& [fp, usage] : client_->AllDailyUsage()) {
        // Only tokens Metrica has accepted: series stay bounded by
        // --max_tracked_tokens whatever clients send.
        if (!tokens_.Known(fp)) continue;
        out.push_back(
            {{fp}, static_cast<double>(used ? usage.used : usage.remaining())});
      }
      return out;
    };
  };
  metrics->AddGauge(
      "uploadwatch_quota_used_today",
      "Metrica requests sent today per token fingerprint (daily budget).",
      {"token"}, quota(true));
  metrics->AddGauge(
      "uploadwatch_quota_remaining_today",
      "Metrica requests left today per token fingerprint (quota headroom).",
      {"token"}, quota(false));
}

CallerWait UploadingHub::Get(const Credentials& credentials,
                             int32_t counter_id, int64_t uploading_id,
                             StateCallback done) {
  return reader_.Get(credentials, counter_id, uploading_id, std::move(done));
}

bool UploadingHub::UseCached(
    const Credentials& credentials, int32_t counter_id, int64_t uploading_id,
    absl::FunctionRef<void(const UploadingState&)> use) {
  return reader_.UseCached(
      UploadingKey{credentials.fingerprint(), counter_id, uploading_id}, use);
}

CallerWait UploadingHub::List(const Credentials& credentials,
                              const ListParams& params, ListCallback done) {
  return reader_.List(credentials, params, std::move(done));
}

absl::Status UploadingHub::Subscribe(const Credentials& credentials,
                                     int32_t counter_id, int64_t uploading_id,
                                     Subscriber* subscriber) {
  const UploadingKey key{credentials.fingerprint(), counter_id, uploading_id};
  const WatchTarget target = WatchTarget::Uploading(key);
  // Metrica said so a moment ago: no poll, and no watch.
  if (std::optional<absl::Status> negative = reader_.Negative(key)) {
    return *std::move(negative);
  }
  if (absl::Status opened = OpenWatch(credentials, subscriber); !opened.ok()) {
    return opened;
  }
  // A first state from Metrica is the caller's request, as a Get's would be:
  // paid before anything is registered, so that a refusal leaves nothing
  // behind; refunded below if it turns out free after all.
  Payer payer = Payer::kNobody;
  if (!registry_.Watched(key) && !store_.GetFresh(key, clock_->Now())) {
    absl::StatusOr<Payer> charged = ChargeFirstState(credentials);
    if (!charged.ok()) {
      CloseWatch(subscriber);
      return charged.status();
    }
    payer = *charged;
  }
  absl::StatusOr<WatchRegistry::Added> added = Register(target, subscriber);
  if (!added.ok()) {
    Refund(credentials, payer);
    CloseWatch(subscriber);
    return added.status();
  }
  if (!added->new_target) {
    Refund(credentials, payer);  // someone else's fetch shows it
    // Join: the current state first, then changes with everyone else.
    if (added->has_state) {
      if (std::optional<UploadingState> s = store_.Find(key)) {
        fan_out_.Post({subscriber},
                      std::make_shared<const UploadingState>(*std::move(s)));
      }
    }
    return absl::OkStatus();
  }
  std::optional<UploadingState> fresh = store_.GetFresh(key, clock_->Now());
  if (!fresh) {
    poller_.Watch(target, credentials.token(), /*needs_first_state=*/true);
    return absl::OkStatus();
  }
  Refund(credentials, payer);
  // To everyone the target has by now: others may have joined it since
  // Register, before it was shown anything.
  const WatchRegistry::Match match = registry_.ShowFresh(target, *fresh);
  fan_out_.Post(match.to,
                std::make_shared<const UploadingState>(*std::move(fresh)));
  // Terminal: nothing to poll, the watch is over as soon as it is told so.
  if (!match.ended && !match.to.empty()) {
    poller_.Watch(target, credentials.token(), /*needs_first_state=*/false);
  }
  return absl::OkStatus();
}

absl::StatusOr<UploadingHub::Payer> UploadingHub::ChargeFirstState(
    const Credentials& credentials) {
  if (credentials.server_token()) {
    absl::Status charged = admission_.Charge(
        credentials.fingerprint(), credentials.caller(), clock_->Now());
    if (!charged.ok()) return charged;
    return Payer::kCaller;
  }
  if (!tokens_.Accepted(credentials.fingerprint())) {
    absl::StatusOr<bool> shared =
        tokens_.ChargeUnverified(credentials.fingerprint(), clock_->Now());
    if (!shared.ok()) return shared.status();
    return *shared ? Payer::kNobody : Payer::kUnverified;
  }
  return Payer::kNobody;
}

void UploadingHub::Refund(const Credentials& credentials, Payer payer) {
  switch (payer) {
    case Payer::kCaller:
      admission_.Uncharge(credentials.caller());
      return;
    case Payer::kUnverified:
      tokens_.UnchargeUnverified();
      return;
    case Payer::kNobody:
      return;
  }
}

absl::Status UploadingHub::OpenWatch(const Credentials& credentials,
                                     Subscriber* subscriber) {
  if (!credentials.server_token()) return absl::OkStatus();
  if (absl::Status opened = admission_.OpenWatch(credentials.caller());
      !opened.ok()) {
    return opened;
  }
  absl::MutexLock lock(&mu_);
  watch_callers_[subscriber] = credentials.caller();
  return absl::OkStatus();
}

void UploadingHub::CloseWatch(Subscriber* subscriber) {
  std::string caller;
  {
    absl::MutexLock lock(&mu_);
    auto it = watch_callers_.find(subscriber);
    if (it == watch_callers_.end()) return;
    caller = std::move(it->second);
    watch_callers_.erase(it);
  }
  admission_.CloseWatch(caller);
}

absl::StatusOr<WatchRegistry::Added> UploadingHub::Register(
    const WatchTarget& target, Subscriber* subscriber) {
  // Reachable before the registry knows it, so that no delivery misses it.
  fan_out_.Add(subscriber);
  absl::StatusOr<WatchRegistry::Added> added =
      registry_.Add(target, subscriber);
  if (!added.ok()) fan_out_.Remove(subscriber);
  return added;
}

absl::Status UploadingHub::SubscribeCounter(const Credentials& credentials,
                                            int32_t counter_id,
                                            v1::Uploading::Type type,
                                            Subscriber* subscriber) {
  const WatchTarget target = WatchTarget::Counter(
      GroupKey{credentials.fingerprint(), counter_id}, type);
  if (std::optional<absl::Status> rejected =
          reader_.Rejected(credentials.fingerprint())) {
    return *std::move(rejected);
  }
  if (absl::Status opened = OpenWatch(credentials, subscriber); !opened.ok()) {
    return opened;
  }
  // Every subscriber, the first or a later one, is shown the counter by the
  // next round: it starts now (or right after the one under way), for this
  // caller, who pays for it.
  absl::StatusOr<Payer> payer = ChargeFirstState(credentials);
  if (!payer.ok()) {
    CloseWatch(subscriber);
    return payer.status();
  }
  absl::StatusOr<WatchRegistry::Added> added = Register(target, subscriber);
  if (!added.ok()) {
    Refund(credentials, *payer);
    CloseWatch(subscriber);
    return added.status();
  }
  poller_.Watch(target, credentials.token(), /*needs_first_state=*/true);
  return absl::OkStatus();
}

void UploadingHub::Unsubscribe(Subscriber* subscriber) {
  if (std::optional<WatchRegistry::Removed> removed =
          registry_.Remove(subscriber)) {
    if (removed->target_gone) poller_.Unwatch(removed->target);
  }
  fan_out_.Remove(subscriber);
  CloseWatch(subscriber);
}

void UploadingHub::Shutdown(const absl::Status& reason) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    scheduler_->Cancel(sweep_timer_);
  }
  const WatchRegistry::Ended ended = registry_.Close();
  fan_out_.PostError(ended.to, reason);
  poller_.Shutdown();
  reader_.Shutdown(reason);
}

void UploadingHub::Deliver(const UploadingKey& key,
                           const StateStore::Recorded& recorded) {
  WatchRegistry::Match match =
      registry_.Observed(key, recorded.state, recorded.changed);
  if (!match.to.empty()) {
    fan_out_.Post(match.to,
                  std::make_shared<const UploadingState>(recorded.state));
  }
  if (match.ended) poller_.Unwatch(*match.ended);
}

UploadingState UploadingHub::Observe(const UploadingKey& key,
                                     const v1::Uploading& uploading,
                                     absl::Time sent, absl::Time now) {
  StateStore::Recorded recorded = store_.Record(key, uploading, now, sent);
  if (publisher_ != nullptr) {
    publisher_->Publish(key, recorded.state);
  }
  Deliver(key, recorded);
  return std::move(recorded.state);
}

void UploadingHub::ObserveShared(const UploadingKey& key,
                                 const v1::Uploading& uploading,
                                 int64_t version) {
  StateStore::Recorded recorded =
      store_.RecordShared(key, uploading, version, clock_->Now());
  Deliver(key, recorded);
}

int64_t UploadingHub::ObserveRelayed(const UploadingKey& key,
                                     const v1::Uploading& uploading,
                                     int64_t version, absl::Time sent) {
  StateStore::Recorded recorded =
      store_.RecordRelayed(key, uploading, version, clock_->Now(), sent);
  Deliver(key, recorded);
  return recorded.state.version;
}

void UploadingHub::ConfirmRelayed(const UploadingKey& key, uint64_t content,
                                  absl::Time sent) {
  if (std::optional<StateStore::Recorded> recorded = store_.Confirm(
          key,
          [content](const UploadingState& s) {
            return SharedChanges::ContentHash(s.uploading) == content;
          },
          clock_->Now(), sent)) {
    Deliver(key, *recorded);
  }
}

void UploadingHub::PollOwnershipChanged(const std::string& name,
                                        bool should_poll) {
  poller_.OwnershipChanged(name, should_poll);
}

std::optional<UploadingState> UploadingHub::Servable(const UploadingKey& key,
                                                     absl::Time now) {
  if (std::optional<UploadingState> fresh = store_.GetFresh(key, now)) {
    return fresh;
  }
  // A poller that is running has the freshest state there is.
  if (registry_.Shown(key)) return store_.Find(key);
  return std::nullopt;
}

bool UploadingHub::UseServable(
    const UploadingKey& key, absl::Time now,
    absl::FunctionRef<void(const UploadingState&)> use) {
  // As Servable.
  return store_.Use(key, now, /*fresh_only=*/true, use) ||
         (registry_.Shown(key) && store_.Use(key, now, /*fresh_only=*/false, use));
}

void UploadingHub::PollFailed(const GroupKey& group, int64_t uploading_id,
                              const absl::Status& status) {
  End(uploading_id != 0
          ? registry_.EndTarget(WatchTarget::Uploading(
                UploadingKey{group.token_fingerprint, group.counter_id,
                             uploading_id}))
          : registry_.EndGroup(group),
      status);
}

void UploadingHub::End(const WatchRegistry::Ended& ended,
                       const absl::Status& status) {
  fan_out_.PostError(ended.to, status);
  for (const WatchTarget& t : ended.targets) poller_.Unwatch(t);
}

void UploadingHub::OnSweepTimer() {
  const absl::Time now = clock_->Now();
  // Watched uploadings keep their state however long polls are stretched:
  // their versions must never start again at 1.
  store_.Sweep(now,
               [this](const UploadingKey& key) { return registry_.Watched(key); });
  pacer_.Sweep(now);
  reader_.SweepListCache(now);
  absl::MutexLock lock(&mu_);
  if (!shut_down_) {
    sweep_timer_ =
        scheduler_->RunAt(now + kSweepEvery, [this] { OnSweepTimer(); });
  }
}

UploadingHub::Stats UploadingHub::stats() const {
  return Stats{registry_.subscribers(), registry_.uploading_targets(),
               poller_.groups(), reader_.flights(), store_.size()};
}

}  // namespace uploadwatch
