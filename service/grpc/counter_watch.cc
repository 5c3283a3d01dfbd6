#include "service/grpc/counter_watch.h"

#include <algorithm>
#include <array>
#include <optional>
#include <utility>

#include "absl/hash/hash.h"
#include "service/core/resume_token.h"
#include "service/grpc/state_proto.h"
#include "service/metrica/metrica_limits.h"
#include "service/metrica/upstream_status.h"

namespace uploadwatch {
namespace {

using ::metrika::offline_conversions::v1::UploadingEvent;

// By value: a state that is not needed any more is moved in.
void FillEvent(UploadingState state, bool added, UploadingEvent* e) {
  e->set_type(added ? UploadingEvent::ADDED : UploadingEvent::MODIFIED);
  *e->mutable_uploading() = std::move(state.uploading);
  SetTime(state.observe_time, e->mutable_observe_time());
  SetTime(state.check_time, e->mutable_check_time());
  AddStatusHistory(state.statuses, e->mutable_status_history());
}

uint64_t ContentOf(const v1::Uploading& u) {
  return SharedChanges::ContentHash(u);
}

std::shared_ptr<const std::string> SerializedEvent(const UploadingState& state,
                                                   bool added) {
  UploadingEvent e;
  FillEvent(state, added, &e);
  auto bytes = std::make_shared<std::string>();
  e.SerializeToString(bytes.get());
  return bytes;
}

// What a watch derives from a state the fan-out hands it, made once per
// state object and thread and shared by the watchers it is handed to: the
// fan-out gives one UploadingState object to each of a counter's watchers,
// and 1,000 watchers of a 100-uploading counter each hashed, recorded and
// built (serialized) every state, 100,000 times per round. A watcher gets a
// round's states one after the other, so the memo holds many states: slots
// by the object's address, each checked against what names the state's
// content (uploading, version, observation and check times) -- an address
// reused for another state differs in one of them.
struct Derived {
  const UploadingState* state = nullptr;
  int64_t id = 0;
  int64_t version = 0;
  absl::Time observed;
  absl::Time checked;
  // Each filled on first use.
  std::optional<uint64_t> content;              // ContentOf(state.uploading)
  std::shared_ptr<const std::string> modified;  // its MODIFIED event
  // history->Record(target, state), by that history's serial() and when.
  uint64_t history = 0;
  WatchTarget target;
  absl::Time recorded_at;
  uint64_t sequence = 0;
};

Derived& DerivedOf(const UploadingState& state) {
  // 4-way: a state finds its slot among kWays from its address's, and a new
  // one takes the least recently used of them, so that two states of a
  // round landing on one slot do not evict each other for every watcher.
  constexpr size_t kSlots = 1024, kWays = 4;
  struct Slot {
    Derived derived;
    uint64_t used = 0;
  };
  thread_local std::array<Slot, kSlots> memo;
  thread_local uint64_t clock = 0;
  const size_t base = absl::HashOf(&state) % kSlots & ~(kWays - 1);
  Slot* victim = &memo[base];
  ++clock;
  for (size_t i = base; i < base + kWays; ++i) {
    Derived& d = memo[i].derived;
    if (d.state == &state && d.id == state.uploading.id() &&
        d.version == state.version && d.observed == state.observe_time &&
        d.checked == state.check_time) {
      memo[i].used = clock;
      return d;
    }
    if (memo[i].used < victim->used) victim = &memo[i];
  }
  victim->used = clock;
  Derived& d = victim->derived;
  d = Derived{};
  d.state = &state;
  d.id = state.uploading.id();
  d.version = state.version;
  d.observed = state.observe_time;
  d.checked = state.check_time;
  return d;
}

uint64_t ContentOfState(const UploadingState& state) {
  Derived& d = DerivedOf(state);
  if (!d.content) d.content = ContentOf(state.uploading);
  return *d.content;
}

// The serialized MODIFIED event of `state`, shared: building and
// serializing it per watcher was most of a round's CPU.
std::shared_ptr<const std::string> ModifiedEventOf(
    const UploadingState& state) {
  Derived& d = DerivedOf(state);
  if (d.modified == nullptr) d.modified = SerializedEvent(state, false);
  return d.modified;
}

// history->Record(target, state), once per state, target and history:
// 1,000 watchers recorded each change 1,000 times under the history's one
// lock. Record is idempotent for a version it holds, so the first answer
// stands for the others; at most it is older than a newer state recorded
// meanwhile, which this watcher is then shown (and records) next. It lasts
// `kRecordMemo` at most, so that a state object seen again much later (its
// target forgotten meanwhile) is recorded again.
constexpr absl::Duration kRecordMemo = absl::Seconds(1);

uint64_t RecordOnce(ChangeHistory* history, const WatchTarget& target,
                    const UploadingState& state, absl::Time now) {
  Derived& d = DerivedOf(state);
  if (d.history != history->serial() || now - d.recorded_at > kRecordMemo ||
      now < d.recorded_at || !(d.target == target)) {
    d.history = history->serial();
    d.target = target;
    d.recorded_at = now;
    d.sequence = history->Record(target, state);
  }
  return d.sequence;
}

// How old a shared position may be, as LocalChangeHistory's max_age.
constexpr absl::Duration kSharedMaxAge = absl::Minutes(15);
// How long a watch lets a burst of entries read settle before it looks
// whether its position moved (OnStreamRead).
constexpr absl::Duration kNudgeDelay = absl::Milliseconds(5);
// The same while a live message waits for its states' entries: shorter, as
// the message's latency is in it, yet a round's entries mostly come together.
constexpr absl::Duration kEntryReadDelay = absl::Milliseconds(1);

// The list type the poll planner asks for: BASIC as TYPE_UNSPECIFIED, so
// that the snapshot's pages join the poll round's flights.
v1::Uploading::Type ListTypeOf(v1::Uploading::Type type) {
  return type == v1::Uploading::BASIC ? v1::Uploading::TYPE_UNSPECIFIED : type;
}

}  // namespace

CounterWatch::CounterWatch(UploadingHub* hub, ChangeHistory* history,
                           Scheduler* scheduler, const Clock* clock,
                           Sink* sink, Options options)
    : hub_(hub),
      history_(history),
      scheduler_(scheduler),
      clock_(clock),
      sink_(sink),
      options_(options),
      alive_(std::make_shared<Alive>()) {
  absl::MutexLock lock(&alive_->mu);
  alive_->watch = this;
}

CounterWatch::~CounterWatch() { Stop(); }

Scheduler::TaskId CounterWatch::After(absl::Duration d,
                                      void (CounterWatch::*fn)()) {
  return scheduler_->RunAt(clock_->Now() + d, [alive = alive_, fn] {
    absl::MutexLock lock(&alive->mu);
    if (alive->watch != nullptr) (alive->watch->*fn)();
  });
}

absl::Status CounterWatch::Start(const Credentials& credentials,
                                 int32_t counter_id, v1::Uploading::Type type,
                                 const std::string& resume_token) {
  const WatchTarget target = WatchTarget::Counter(
      GroupKey{credentials.fingerprint(), counter_id}, type);
  std::optional<ResumeToken> token;
  if (!resume_token.empty()) {
    absl::StatusOr<ResumeToken> decoded = DecodeResumeToken(resume_token);
    if (!decoded.ok()) return decoded.status();
    token = *decoded;
  }
  bool snapshot = true;
  const bool caller_counter_type =
      token &&
      token->fingerprint_hash == FingerprintHash(credentials.fingerprint()) &&
      token->counter_id == counter_id && token->type == target.type;
  // A position every replica shares: caught up once subscribed (below),
  // unless this process's own history has it (exact: see the README).
  bool shared_resume = caller_counter_type && options_.shared != nullptr &&
                       token->format == ResumeToken::kSharedFormat;
  {
    absl::MutexLock lock(&mu_);
    credentials_ = credentials;
    target_ = target;
    retry_ = options_.list_retry;
    last_write_ = clock_->Now();
    if (caller_counter_type && token->format == ResumeToken::kSharedFormat) {
      token_held_.insert(token->held.begin(), token->held.end());
    }
    std::optional<ChangeHistory::CatchUp> local;
    if (caller_counter_type && token->instance == history_->instance() &&
        (token->format == ResumeToken::kFormat ||
         token->format == ResumeToken::kSharedFormat)) {
      local = history_->Since(target, token->sequence);
    }
    if (local) {
      shared_resume = false;
      // Still a shared position too: moved on from here.
      if (token->format == ResumeToken::kSharedFormat) {
        position_ = StreamIdOf(*token);
      }
    }
    if (shared_resume) {
      snapshot = false;  // unless the catch-up cannot be had
    } else if (token) {
      // Ours (this process, caller, counter and type) and still kept.
      std::optional<ChangeHistory::CatchUp> catch_up = std::move(local);
      if (catch_up) {
        // Resume: the client holds every known state once it has these.
        snapshot = false;
        live_ = true;
        sequence_ = catch_up->head;
        for (const UploadingState& s : catch_up->known) {
          sent_[s.uploading.id()] =
              Sent{s.version, ContentOf(s.uploading), s.check_time};
        }
        // Still beyond the token's position: what it listed as held (if
        // still so), and every change sent now.
        for (const auto& [id, content] : token_held_) {
          if (auto it = sent_.find(id);
              it != sent_.end() && it->second.content == content) {
            HeldBeyondLocked(id);
          }
        }
        token_held_.clear();
        std::vector<std::pair<UploadingState, bool>> events;
        for (ChangeHistory::Change& c : catch_up->changes) {
          HeldBeyondLocked(c.state.uploading.id());
          events.emplace_back(std::move(c.state), c.added);
        }
        QueueChunksLocked(events, /*synced=*/true);
      } else {
        Message reset;
        reset.set_reset(true);
        reset.set_resume_token(TokenLocked());
        out_.push_back(std::move(reset));
      }
    }
  }
  // Not under mu_: deliveries may start before it returns.
  absl::Status status = hub_->SubscribeCounter(credentials, counter_id, type,
                                               this);
  {
    absl::MutexLock lock(&mu_);
    if (!status.ok()) {
      out_.clear();
      finished_ = true;  // the caller finishes the stream
      return status;
    }
    subscribed_ = true;
  }
  // Told of entries read, so that the position can move after them.
  if (options_.shared != nullptr) options_.shared->Listen(target, this);
  if (snapshot) RequestPage(hub_, alive_, 0);
  if (shared_resume) {
    // Subscribed first: every entry after what the catch-up reads comes as
    // a state (held in received_ meanwhile).
    options_.shared->CatchUp(
        target, StreamIdOf(*token), clock_->Now() - kSharedMaxAge,
        [alive = alive_](std::optional<SharedChanges::Missed> missed) {
          absl::MutexLock lock(&alive->mu);
          if (alive->watch != nullptr) alive->watch->OnCatchUp(std::move(missed));
        });
  }
  absl::MutexLock lock(&mu_);
  bookmark_timer_ =
      After(options_.bookmark_interval, &CounterWatch::OnBookmarkTimer);
  MaybeWriteLocked();
  return absl::OkStatus();
}

void CounterWatch::OnCatchUp(std::optional<SharedChanges::Missed> missed) {
  absl::MutexLock lock(&mu_);
  if (finished_ || live_) return;
  if (!missed) {
    // Trimmed past, too old, another Redis, or unreachable: as for any
    // token that cannot be honoured. What arrived meanwhile stays in
    // received_ for the snapshot.
    Message reset;
    reset.set_reset(true);
    reset.set_resume_token(TokenLocked());
    out_.push_back(std::move(reset));
    // Runs under alive_->mu: the list on a fresh task (as OnRetryTimer).
    scheduler_->RunAt(clock_->Now(), [hub = hub_, alive = alive_] {
      RequestPage(hub, alive, 0);
    });
    MaybeWriteLocked();
    return;
  }
  // The client holds every uploading's newest state up to the position;
  // with the changes after it, up to the head.
  auto holds = [this](const UploadingState& s)
                   ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    sent_[s.uploading.id()] =
        Sent{s.version, ContentOf(s.uploading), s.check_time, /*foreign=*/true};
  };
  for (const UploadingState& s : missed->known) holds(s);
  // Not shown again: a change whose state the token says the client holds
  // beyond its position (sent before its entry was read, elsewhere).
  std::vector<std::pair<UploadingState, bool>> shown;
  for (auto& [s, added] : missed->changes) {
    holds(s);
    if (auto h = token_held_.find(s.uploading.id()); h != token_held_.end()) {
      const bool same = h->second == ContentOf(s.uploading);
      token_held_.erase(h);
      if (same) continue;
    }
    shown.emplace_back(std::move(s), added);
  }
  // Held states the stream has no entry of yet: what the client holds (its
  // version elsewhere unknown: the same content here is no change), still
  // beyond the position.
  const absl::Time oldest =
      sent_.empty() ? clock_->Now() : OldestCheckLocked();
  for (const auto& [id, content] : token_held_) {
    auto [it, created] = sent_.try_emplace(id);
    if (created) it->second.checked = oldest;
    if (it->second.content != content) {
      it->second.content = content;
      it->second.foreign = true;
    }
    HeldBeyondLocked(id);
  }
  token_held_.clear();
  position_ = missed->head;
  live_ = true;
  QueueChunksLocked(shown, /*synced=*/true);
  // What came meanwhile: only what the catch-up does not hold already.
  for (auto& [id, state] : received_) ChangeLocked(state);
  received_.clear();
  MaybeWriteLocked();
}

std::optional<std::pair<ListParams, Credentials>> CounterWatch::PageRequest(
    int32_t offset) {
  absl::MutexLock lock(&mu_);
  if (finished_ || live_ || !credentials_) return std::nullopt;
  ListParams params;
  params.counter_id = target_.group.counter_id;
  params.type = ListTypeOf(target_.type);
  params.limit = kMetricaMaxListLimit;
  params.offset = offset;
  return std::make_pair(params, *credentials_);
}

void CounterWatch::RequestPage(UploadingHub* hub, std::shared_ptr<Alive> alive,
                               int32_t offset) {
  std::optional<std::pair<ListParams, Credentials>> request;
  {
    absl::MutexLock lock(&alive->mu);
    if (alive->watch == nullptr) return;
    request = alive->watch->PageRequest(offset);
  }
  if (!request) return;
  hub->List(request->second, request->first,
            [hub, alive, offset](
                absl::StatusOr<v1::ListUploadingsResponse> page) {
              std::optional<int32_t> next;
              {
                absl::MutexLock lock(&alive->mu);
                if (alive->watch == nullptr) return;
                next = alive->watch->OnPage(offset, page);
              }
              // Outside every lock: the next answer may come inline.
              if (next) RequestPage(hub, alive, *next);
            });
}

std::optional<int32_t> CounterWatch::OnPage(
    int32_t offset, const absl::StatusOr<v1::ListUploadingsResponse>& page) {
  // The recorded states of the page's uploadings, asked of the hub without
  // mu_: what the snapshot shows of them. A page from the list cache is
  // older than what the store holds by now (on a replica that does not
  // poll the counter, the holder's relays went there since), and a fetched
  // one is recorded before it is handed out; either way no wait for the
  // fan-out's copy.
  std::vector<UploadingState> stored;
  if (page.ok()) {
    GroupKey group;
    {
      absl::MutexLock lock(&mu_);
      group = target_.group;
    }
    for (const v1::Uploading& u : page->uploadings()) {
      if (std::optional<UploadingState> s = hub_->Stored(UploadingKey{
              group.token_fingerprint, group.counter_id, u.id()})) {
        stored.push_back(*std::move(s));
      }
    }
  }
  absl::MutexLock lock(&mu_);
  if (finished_ || live_) return std::nullopt;
  if (!page.ok()) {
    if (ClassifyUpstream(page.status()) == UpstreamOutcome::kPermanent) {
      pending_error_ = page.status();
      MaybeWriteLocked();
      return std::nullopt;
    }
    // Transient: the stream stays; ask again later (the poll rounds go on
    // meanwhile, with their own backoff).
    retry_offset_ = offset;
    retry_timer_ = After(retry_, &CounterWatch::OnRetryTimer);
    retry_ = std::min(retry_ * 2, options_.max_list_retry);
    return std::nullopt;
  }
  retry_ = options_.list_retry;
  for (const v1::Uploading& u : page->uploadings()) listed_[u.id()] = u;
  for (UploadingState& state : stored) {
    // What the client will hold: in the history (the history is a leaf with
    // its own lock), so that the snapshot's token covers it, as for a state
    // that arrives (OnState).
    sequence_ = std::max(sequence_, history_->Record(target_, state));
    const int64_t id = state.uploading.id();
    auto it = received_.find(id);
    if (it == received_.end()) {
      received_.emplace(id, std::move(state));
    } else if (state.version > it->second.version) {
      it->second = std::move(state);
    }
  }
  if (page->uploadings_size() >= kMetricaMaxListLimit) {
    return offset + kMetricaMaxListLimit;
  }
  list_done_ = true;
  MaybeSyncLocked(/*grace_over=*/false);
  if (!live_) {
    grace_timer_ = After(options_.snapshot_grace, &CounterWatch::OnGraceTimer);
  }
  return std::nullopt;
}

void CounterWatch::OnRetryTimer() {
  int32_t offset;
  {
    absl::MutexLock lock(&mu_);
    retry_timer_ = 0;
    offset = retry_offset_;
  }
  // Runs under alive_->mu: hand the request to a fresh task (a cached
  // answer comes inline and would take alive_->mu again).
  scheduler_->RunAt(clock_->Now(), [hub = hub_, alive = alive_, offset] {
    RequestPage(hub, alive, offset);
  });
}

void CounterWatch::OnGraceTimer() {
  absl::MutexLock lock(&mu_);
  grace_timer_ = 0;
  MaybeSyncLocked(/*grace_over=*/true);
}

void CounterWatch::MaybeSyncLocked(bool grace_over) {
  if (live_ || finished_ || !list_done_) return;
  for (const auto& [id, u] : listed_) {
    if (!received_.contains(id) && !grace_over) return;
  }
  // Every recorded state received (or waited long enough): the snapshot is
  // the listed uploadings and any other the polls showed meanwhile.
  const absl::Time now = clock_->Now();
  for (const auto& [id, u] : listed_) {
    if (!received_.contains(id)) {
      // Never routed to this target (no recorded state): the list's copy,
      // version 0 so any recorded state replaces it (if it differs).
      received_[id] = UploadingState{
          u, 0, now, now, {StatusSeen{u.status(), u.status_raw(), now}}};
    }
  }
  std::vector<std::pair<UploadingState, bool>> events;
  events.reserve(received_.size());
  for (auto& [id, s] : received_) {
    sent_[id] = Sent{s.version, ContentOf(s.uploading), s.check_time};
    HeldBeyondLocked(id);
    events.emplace_back(std::move(s), true);
  }
  // Metrica's order is not relied on; ids make the snapshot reproducible.
  std::sort(events.begin(), events.end(), [](const auto& a, const auto& b) {
    return a.first.uploading.id() < b.first.uploading.id();
  });
  received_.clear();
  listed_.clear();
  live_ = true;
  QueueChunksLocked(events, /*synced=*/true);
  MaybeWriteLocked();
}

void CounterWatch::QueueChunksLocked(
    const std::vector<std::pair<UploadingState, bool>>& events, bool synced) {
  const size_t chunk = std::max<size_t>(options_.max_events_per_message, 1);
  size_t i = 0;
  do {
    Message m;
    for (size_t end = std::min(i + chunk, events.size()); i < end; ++i) {
      FillEvent(events[i].first, events[i].second, m.add_events());
    }
    m.set_synced(synced && i >= events.size());
    m.set_resume_token(TokenLocked(/*shared_ok=*/m.synced()));
    out_.push_back(std::move(m));
  } while (i < events.size());
}

absl::Time CounterWatch::OldestCheckLocked() const {
  absl::Time oldest = absl::InfiniteFuture();
  for (const auto& [id, sent] : sent_) oldest = std::min(oldest, sent.checked);
  return oldest;
}

std::optional<std::string> CounterWatch::AdvanceLocked(
    absl::FunctionRef<void(int64_t)> own_entry) {
  // As far as what the client holds covers the stream: every entry's
  // content, or a version at least the one this replica gave it.
  return options_.shared->Advance(
      target_, position_,
      [this, own_entry](const SharedChanges::Entry& e)
          ABSL_NO_THREAD_SAFETY_ANALYSIS {
            auto it = sent_.find(e.uploading_id);
            if (it == sent_.end()) return false;
            if (it->second.content == e.content) {
              // The entry of what the client holds (not an older one that
              // its higher version covers).
              own_entry(e.uploading_id);
              return true;
            }
            return it->second.version >= e.version;
          });
}

void CounterWatch::HeldBeyondLocked(int64_t id) {
  if (options_.shared != nullptr) beyond_.insert(id);
}

bool CounterWatch::EntriesReadLocked() {
  auto go = [this] {
    awaiting_entries_ = false;
    entry_wait_over_ = false;
    if (entry_wait_timer_ != 0) {
      scheduler_->Cancel(entry_wait_timer_);  // never waits for it
      entry_wait_timer_ = 0;
    }
    return true;
  };
  if (options_.shared == nullptr || entry_wait_over_ ||
      !options_.shared->Reading(target_)) {
    return go();
  }
  absl::flat_hash_set<int64_t> unread(pending_order_.begin(),
                                      pending_order_.end());
  // No position (the stream not held from its first entry here): the token
  // is this replica's sequence whatever comes.
  if (!AdvanceLocked([&unread](int64_t id) { unread.erase(id); }) ||
      unread.empty()) {
    return go();
  }
  awaiting_entries_ = true;
  if (entry_wait_timer_ == 0) {
    entry_wait_timer_ =
        After(options_.max_entry_wait, &CounterWatch::OnEntryWaitTimer);
  }
  return false;
}

void CounterWatch::OnEntryWaitTimer() {
  absl::MutexLock lock(&mu_);
  entry_wait_timer_ = 0;
  if (!awaiting_entries_) return;
  entry_wait_over_ = true;
  MaybeWriteLocked();
}

void CounterWatch::OnStreamRead() {
  absl::MutexLock lock(&mu_);
  if (finished_ || !live_ || nudge_timer_ != 0) return;
  // A burst of entries (a round's) settles first: one look for all.
  nudge_timer_ = After(awaiting_entries_ ? kEntryReadDelay : kNudgeDelay,
                       &CounterWatch::OnNudgeTimer);
}

void CounterWatch::OnNudgeTimer() {
  absl::MutexLock lock(&mu_);
  nudge_timer_ = 0;
  if (awaiting_entries_) {
    // The waiting message goes if they are its entries.
    MaybeWriteLocked();
    return;
  }
  // A message on its way gets a fresh token anyway.
  if (finished_ || !live_ || !pending_.empty() || flush_scheduled_) return;
  std::optional<std::string> at = AdvanceLocked();
  if (!at || *at == position_) return;
  Message bookmark;
  bookmark.set_resume_token(TokenLocked());
  out_.push_back(std::move(bookmark));
  MaybeWriteLocked();
}

std::string CounterWatch::TokenLocked(bool shared_ok) {
  if (options_.shared != nullptr && shared_ok && live_) {
    std::vector<int64_t> reached;
    if (std::optional<std::string> at =
            AdvanceLocked([&reached](int64_t id) { reached.push_back(id); })) {
      position_ = *at;
      for (int64_t id : reached) beyond_.erase(id);
    }
  }
  if (!position_.empty()) {
    absl::StatusOr<ResumeToken> shared = SharedResumeToken(
        FingerprintHash(target_.group.token_fingerprint),
        target_.group.counter_id, target_.type, position_);
    if (shared.ok()) {
      shared->instance = history_->instance();
      shared->sequence = sequence_;
      // What the client holds beyond it (at most kMaxHeld: more may be
      // shown again by a catch-up elsewhere).
      for (int64_t id : beyond_) {
        if (shared->held.size() >= ResumeToken::kMaxHeld) break;
        if (auto it = sent_.find(id); it != sent_.end()) {
          shared->held.emplace_back(id, it->second.content);
        }
      }
      std::sort(shared->held.begin(), shared->held.end());
      return EncodeResumeToken(*shared);
    }
  }
  ResumeToken token;
  token.instance = history_->instance();
  token.fingerprint_hash = FingerprintHash(target_.group.token_fingerprint);
  token.counter_id = target_.group.counter_id;
  token.type = target_.type;
  token.sequence = sequence_;
  return EncodeResumeToken(token);
}

void CounterWatch::OnState(const UploadingState& state) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  // The history is a leaf with its own lock.
  sequence_ = std::max(
      sequence_, RecordOnce(history_, target_, state, clock_->Now()));
  if (!live_) {
    auto [it, created] = received_.try_emplace(state.uploading.id(), state);
    if (!created && state.version > it->second.version) it->second = state;
    MaybeSyncLocked(/*grace_over=*/false);
    return;
  }
  ChangeLocked(state);
}

void CounterWatch::OnConfirmed(const UploadingState& state) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  const int64_t id = state.uploading.id();
  if (!live_) {
    if (auto it = received_.find(id);
        it != received_.end() && it->second.version == state.version) {
      it->second.check_time = std::max(it->second.check_time, state.check_time);
    }
    return;
  }
  if (auto it = sent_.find(id); it != sent_.end()) {
    it->second.checked = std::max(it->second.checked, state.check_time);
  }
}

void CounterWatch::ChangeLocked(const UploadingState& state) {
  const int64_t id = state.uploading.id();
  const uint64_t content = ContentOfState(state);
  auto sent = sent_.find(id);
  const bool added = sent == sent_.end();
  if (!added) {
    sent->second.checked = std::max(sent->second.checked, state.check_time);
    if (sent->second.foreign) {
      if (content == sent->second.content) {
        // What the client holds, as this replica numbers it from now on.
        sent->second.version = state.version;
        sent->second.foreign = false;
        return;
      }
      sent->second.version = 0;  // any state with other content is news
      sent->second.foreign = false;
    }
    // Never a duplicate, never backwards.
    if (state.version <= sent->second.version ||
        content == sent->second.content) {
      sent->second.version = std::max(sent->second.version, state.version);
      return;
    }
  }
  sent_[id] = Sent{state.version, content,
                   added ? state.check_time : sent->second.checked};
  HeldBeyondLocked(id);
  auto [p, created] = pending_.try_emplace(id);
  if (created) {
    pending_order_.push_back(id);
    p->second.added = added;
  }
  // The latest wins; an ADDED stays ADDED (rare: made for this watch alone).
  p->second.event = p->second.added ? SerializedEvent(state, /*added=*/true)
                                    : ModifiedEventOf(state);
  if (write_in_flight_ || flush_scheduled_) return;
  // Let the rest of the poll round arrive: one message per round.
  flush_scheduled_ = true;
  if (options_.coalesce_delay <= absl::ZeroDuration()) {
    // OnDrained, once the fan-out has delivered what it holds for us: on
    // its executor's threads, not all 1,000 watches' writes on the one
    // scheduler thread behind 1,000 timers.
    flush_on_drain_ = true;
    return;
  }
  flush_timer_ = After(options_.coalesce_delay, &CounterWatch::OnFlushTimer);
}

void CounterWatch::OnDrained() {
  absl::MutexLock lock(&mu_);
  if (!flush_on_drain_) return;
  flush_on_drain_ = false;
  flush_scheduled_ = false;
  MaybeWriteLocked();
}

void CounterWatch::OnFlushTimer() {
  absl::MutexLock lock(&mu_);
  flush_timer_ = 0;
  flush_scheduled_ = false;
  MaybeWriteLocked();
}

void CounterWatch::OnBookmarkTimer() {
  absl::MutexLock lock(&mu_);
  bookmark_timer_ = 0;
  if (finished_) return;
  const absl::Time now = clock_->Now();
  if (live_ && !write_in_flight_ && out_.empty() && pending_.empty() &&
      now - last_write_ >= options_.bookmark_interval) {
    Message bookmark;
    bookmark.set_resume_token(TokenLocked());
    out_.push_back(std::move(bookmark));
    MaybeWriteLocked();
  }
  const absl::Duration wait =
      std::max(last_write_ + options_.bookmark_interval - now,
               absl::Milliseconds(1));
  bookmark_timer_ = After(
      std::min(wait, options_.bookmark_interval), &CounterWatch::OnBookmarkTimer);
}

void CounterWatch::OnError(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  pending_error_ = status;
  MaybeWriteLocked();
}

void CounterWatch::MaybeWriteLocked() {
  if (finished_ || write_in_flight_ || !subscribed_) return;
  // The live message's events, as their shared serialized bytes: the wire
  // form of a repeated message field is its entries one after the other,
  // so the Sink sends them after the message and a client parses them as
  // events. Made only when out_ is empty, so it is the one written next.
  std::vector<std::shared_ptr<const std::string>> live_events;
  if (out_.empty() && !pending_.empty() && !flush_scheduled_) {
    if (!EntriesReadLocked()) return;
    Message m;
    live_events.reserve(pending_order_.size());
    for (int64_t id : pending_order_) {
      live_events.push_back(std::move(pending_[id].event));
    }
    pending_.clear();
    pending_order_.clear();
    m.set_resume_token(TokenLocked());
    out_.push_back(std::move(m));
  }
  if (!out_.empty()) {
    in_flight_ = std::move(out_.front());
    out_.pop_front();
    in_flight_events_ = std::move(live_events);
    synced_ = synced_ || in_flight_.synced();
    if (synced_ && !sent_.empty()) {
      SetTime(OldestCheckLocked(), in_flight_.mutable_check_time());
    }
    write_in_flight_ = true;
    last_write_ = clock_->Now();
    sink_->Write(&in_flight_, in_flight_events_);
    return;
  }
  if (pending_error_ && pending_.empty()) FinishLocked(*pending_error_);
}

void CounterWatch::WriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  write_in_flight_ = false;
  in_flight_events_.clear();
  if (!ok) {
    FinishLocked(absl::CancelledError("the stream to the client broke"));
    return;
  }
  MaybeWriteLocked();
}

void CounterWatch::End(const absl::Status& status) {
  hub_->Unsubscribe(this);  // first the hub's lock, then ours: never both
  absl::MutexLock lock(&mu_);
  FinishLocked(status);
}

void CounterWatch::Stop() {
  hub_->Unsubscribe(this);
  // Not under mu_: it waits for an OnStreamRead under way.
  if (options_.shared != nullptr) options_.shared->Unlisten(this);
  std::vector<Scheduler::TaskId> timers;
  {
    absl::MutexLock lock(&mu_);
    finished_ = true;
    timers = {bookmark_timer_, flush_timer_, grace_timer_, retry_timer_,
              nudge_timer_, entry_wait_timer_};
  }
  for (Scheduler::TaskId t : timers) {
    if (t != 0) scheduler_->Cancel(t);
  }
  absl::MutexLock lock(&alive_->mu);  // waits for a running timer or page
  alive_->watch = nullptr;
}

void CounterWatch::FinishLocked(const absl::Status& status) {
  if (finished_) return;
  finished_ = true;
  sink_->Finish(status);
}

}  // namespace uploadwatch
