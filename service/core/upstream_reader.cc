#include "service/core/upstream_reader.h"

#include <atomic>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace uploadwatch {

UpstreamReader::UpstreamReader(MetricaClient* client, const Clock* clock,
                               ObservationSink* sink, Options options)
    : client_(client), clock_(clock), sink_(sink), options_(options) {
  if (Metrics* metrics = options_.metrics) {
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
        "GetUploading/ListUploadings answered from cache (hit), from a "
        "remembered NOT_FOUND/PERMISSION_DENIED (negative_hit) or not (miss).",
        {"rpc", "result"});
    get_hits_ = std::make_unique<Metrics::Counter::Handle>(
        cache_lookups_, Metrics::Labels{"GetUploading", "hit"});
  }
}

void UpstreamReader::Count(const char* endpoint, const absl::Status& status,
                           absl::Time sent, absl::Time now) {
  if (upstream_requests_ == nullptr) return;
  upstream_requests_->Inc({endpoint, absl::StatusCodeToString(status.code())});
  upstream_latency_->ObserveDuration({endpoint}, now - sent);
}

template <typename Callback, typename Fetch>
CallerWait UpstreamReader::FetchAdmitted(const Credentials& credentials,
                                         bool joining, Callback done,
                                         Fetch fetch) {
  // How the slot taken is given back: (refund) -> void; none taken if null.
  std::function<void(bool)> give_back;
  absl::Status admitted;
  if (joining) {
    // A request under way answers it: nothing to admit.
  } else if (credentials.server_token()) {
    if (CallerAdmission* const a = options_.admission) {
      admitted = a->Admit(credentials.fingerprint(), credentials.caller(),
                          clock_->Now());
      give_back = [a, caller = credentials.caller()](bool refund) {
        refund ? a->Refund(caller) : a->Release(caller);
      };
    }
  } else if (TokenTracker* const t = options_.tokens;
             t != nullptr && !t->Accepted(credentials.fingerprint())) {
    admitted = t->AdmitUnverified(clock_->Now());
    give_back = [t](bool refund) { t->ReleaseUnverified(refund); };
  }
  if (!admitted.ok()) {
    std::move(done)(std::move(admitted));
    return CallerWait();
  }
  if (!give_back) {
    return CallerWait(
        [this, ticket = fetch(std::move(done))] { Leave(ticket); });
  }
  // Whoever clears it first gives the slot back: the answer, the caller
  // leaving (refunded if the request was never sent), or, for a call that
  // joined one under way, this function (refunded: it cost nothing).
  auto held = std::make_shared<std::atomic<bool>>(true);
  const auto ticket =
      fetch([done = std::move(done), held, give_back](auto result) mutable {
        if (held->exchange(false)) give_back(false);
        std::move(done)(std::move(result));
      });
  if (!ticket.send && held->exchange(false)) give_back(true);
  return CallerWait([this, ticket, held, give_back] {
    const bool never_sent = Leave(ticket);
    if (held->exchange(false)) give_back(never_sent);
  });
}

std::optional<absl::Status> UpstreamReader::RejectedLocked(
    const std::string& fingerprint) {
  auto it = rejected_.find(fingerprint);
  if (it == rejected_.end()) return std::nullopt;
  if (clock_->Now() - it->second.stored >= options_.negative_ttl) {
    rejected_.erase(it);
    return std::nullopt;
  }
  return it->second.status;
}

bool UpstreamReader::Learn(const std::string& token_fingerprint,
                           const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
      rejected_.erase(token_fingerprint);
      return true;
    case absl::StatusCode::kUnauthenticated:
      if (options_.negative_ttl > absl::ZeroDuration()) {
        rejected_[token_fingerprint] = NegativeEntry{status, clock_->Now()};
      }
      return false;
    default:
      return false;  // says nothing of the token
  }
}

std::optional<absl::Status> UpstreamReader::Negative(const UploadingKey& key) {
  std::optional<absl::Status> out;
  {
    absl::MutexLock lock(&mu_);
    out = RejectedLocked(key.token_fingerprint);
    auto it = negative_.find(key);
    if (!out && it != negative_.end()) {
      if (clock_->Now() - it->second.stored >= options_.negative_ttl) {
        negative_.erase(it);
      } else {
        out = it->second.status;
      }
    }
    if (!out) return std::nullopt;
  }
  if (cache_lookups_) cache_lookups_->Inc({"GetUploading", "negative_hit"});
  return out;
}

std::optional<absl::Status> UpstreamReader::Rejected(
    const std::string& token_fingerprint) {
  absl::MutexLock lock(&mu_);
  return RejectedLocked(token_fingerprint);
}

CallerWait UpstreamReader::Get(const Credentials& credentials,
                               int32_t counter_id, int64_t uploading_id,
                               StateCallback done) {
  const UploadingKey key{credentials.fingerprint(), counter_id, uploading_id};
  std::optional<absl::Status> refused;
  {
    absl::MutexLock lock(&mu_);
    refused = shut_down_;
  }
  if (refused) {
    std::move(done)(*std::move(refused));
    return CallerWait();
  }
  if (std::optional<UploadingState> s = sink_->Servable(key, clock_->Now())) {
    if (get_hits_) get_hits_->Inc();
    std::move(done)(*std::move(s));
    return CallerWait();
  }
  if (std::optional<absl::Status> negative = Negative(key)) {
    std::move(done)(*std::move(negative));
    return CallerWait();
  }
  if (cache_lookups_) cache_lookups_->Inc({"GetUploading", "miss"});
  bool joining;
  {
    absl::MutexLock lock(&mu_);
    joining = gets_.contains(key);
  }
  return FetchAdmitted(credentials, joining, std::move(done),
                       [this, &credentials, &key](StateCallback d) {
                         return FetchGet(credentials.token(), key,
                                         std::move(d));
                       });
}

bool UpstreamReader::UseCached(
    const UploadingKey& key,
    absl::FunctionRef<void(const UploadingState&)> use) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return false;
  }
  if (!sink_->UseServable(key, clock_->Now(), use)) return false;
  if (get_hits_) get_hits_->Inc();
  return true;
}

CallerWait UpstreamReader::List(const Credentials& credentials,
                                const ListParams& params, ListCallback done) {
  const ListKey key{credentials.fingerprint(), params.counter_id, params.limit,
                    params.offset, static_cast<int32_t>(params.type)};
  std::optional<absl::StatusOr<v1::ListUploadingsResponse>> immediate;
  {
    absl::MutexLock lock(&mu_);
    auto cached = list_cache_.find(key);
    std::optional<absl::Status> rejected =
        RejectedLocked(credentials.fingerprint());
    if (shut_down_) {
      immediate = *shut_down_;
    } else if (rejected) {
      if (cache_lookups_) {
        cache_lookups_->Inc({"ListUploadings", "negative_hit"});
      }
      immediate = *std::move(rejected);
    } else if (cached != list_cache_.end() &&
               clock_->Now() - cached->second.fetched <=
                   options_.list_fresh_for) {
      if (cache_lookups_) cache_lookups_->Inc({"ListUploadings", "hit"});
      immediate = cached->second.response;
    }
  }
  if (immediate) {
    std::move(done)(*std::move(immediate));
    return CallerWait();
  }
  if (cache_lookups_) cache_lookups_->Inc({"ListUploadings", "miss"});
  bool joining;
  {
    absl::MutexLock lock(&mu_);
    joining = lists_.contains(key);
  }
  return FetchAdmitted(credentials, joining, std::move(done),
                       [this, &credentials, &key](ListCallback d) {
                         return FetchList(credentials.token(), key,
                                          std::move(d));
                       });
}

UpstreamReader::GetFlights::Ticket UpstreamReader::FetchGet(
    const std::string& token, const UploadingKey& key, StateCallback done) {
  GetFlights::Ticket ticket;
  std::optional<absl::Status> refused;
  {
    absl::MutexLock lock(&mu_);
    if (!shut_down_) {
      ticket = gets_.Join(
          key,
          [done = std::move(done)](const absl::StatusOr<UploadingState>& r,
                                   absl::Time) mutable { std::move(done)(r); },
          clock_->Now());
    } else {
      refused = *shut_down_;
    }
  }
  if (refused) {
    std::move(done)(*std::move(refused));
    return ticket;
  }
  // Sent without the lock: the client may take locks of its own.
  if (ticket.send) SendGet(token, ticket);
  return ticket;
}

UpstreamReader::ListFlights::Ticket UpstreamReader::FetchList(
    const std::string& token, const ListKey& key, ListCallback done) {
  ListFlights::Ticket ticket;
  std::optional<absl::Status> refused;
  {
    absl::MutexLock lock(&mu_);
    if (!shut_down_) {
      ticket = lists_.Join(
          key,
          [done = std::move(done)](
              const absl::StatusOr<v1::ListUploadingsResponse>& r,
              absl::Time) mutable { std::move(done)(r); },
          clock_->Now());
    } else {
      refused = *shut_down_;
    }
  }
  if (refused) {
    std::move(done)(*std::move(refused));
    return ticket;
  }
  if (ticket.send) SendList(token, ticket);
  return ticket;
}

void UpstreamReader::SendGet(const std::string& token,
                             const GetFlights::Ticket& ticket) {
  {
    absl::MutexLock lock(&mu_);
    if (!gets_.ShouldSend(ticket.key, ticket.flight)) return;  // never sent
  }
  const UploadingKey key = ticket.key;
  const uint64_t flight = ticket.flight;
  const MetricaClient::RequestId id = client_->GetUploading(
      token, key.counter_id, key.uploading_id,
      clock_->Now() + options_.upstream_timeout,
      [this, key, flight](absl::StatusOr<v1::GetUploadingResponse> r) {
        OnGet(key, flight, std::move(r));
      });
  bool wanted;
  {
    absl::MutexLock lock(&mu_);
    wanted = gets_.Sent(key, flight, id);
  }
  // Everyone left while it was being sent: call it off.
  if (!wanted) client_->Cancel(id);
}

void UpstreamReader::SendList(const std::string& token,
                              const ListFlights::Ticket& ticket) {
  {
    absl::MutexLock lock(&mu_);
    if (!lists_.ShouldSend(ticket.key, ticket.flight)) return;
  }
  const ListKey key = ticket.key;
  const uint64_t flight = ticket.flight;
  ListParams params;
  params.counter_id = key.counter_id;
  params.limit = key.limit;
  params.offset = key.offset;
  params.type = static_cast<v1::Uploading::Type>(key.type);
  const MetricaClient::RequestId id = client_->ListUploadings(
      token, params, clock_->Now() + options_.upstream_timeout,
      [this, key, flight](absl::StatusOr<v1::ListUploadingsResponse> r) {
        OnList(key, flight, std::move(r));
      });
  bool wanted;
  {
    absl::MutexLock lock(&mu_);
    wanted = lists_.Sent(key, flight, id);
  }
  if (!wanted) client_->Cancel(id);
}

template <typename Flights>
bool UpstreamReader::LeaveFlight(Flights& flights,
                                 const typename Flights::Ticket& ticket) {
  std::optional<MetricaClient::RequestId> cancel;
  typename Flights::Callback left;  // destroyed after the lock
  {
    absl::MutexLock lock(&mu_);
    cancel = flights.Leave(ticket, &left);
  }
  if (!cancel) return false;
  if (*cancel == 0) return true;  // not sent yet: now never will be
  // Nobody waits for it any more: stop it, Metrica's quota is precious.
  client_->Cancel(*cancel);
  return false;
}

bool UpstreamReader::Leave(const GetFlights::Ticket& ticket) {
  return LeaveFlight(gets_, ticket);
}

bool UpstreamReader::Leave(const ListFlights::Ticket& ticket) {
  return LeaveFlight(lists_, ticket);
}

void UpstreamReader::OnGet(const UploadingKey& key, uint64_t flight,
                           absl::StatusOr<v1::GetUploadingResponse> result) {
  std::vector<GetFlights::Callback> waiters;
  absl::Time sent;
  bool accepted = false;
  {
    absl::MutexLock lock(&mu_);
    waiters = gets_.Complete(key, flight, &sent);
    if (!waiters.empty()) {
      accepted = Learn(key.token_fingerprint, result.status());
      const absl::StatusCode code = result.status().code();
      if ((code == absl::StatusCode::kNotFound ||
           code == absl::StatusCode::kPermissionDenied) &&
          options_.negative_ttl > absl::ZeroDuration()) {
        negative_[key] = NegativeEntry{result.status(), clock_->Now()};
      } else if (result.ok()) {
        negative_.erase(key);
      }
    }
  }
  if (accepted && options_.tokens != nullptr) {
    options_.tokens->Accept(key.token_fingerprint);
  }
  if (waiters.empty()) return;  // left or superseded: dropped
  const absl::Time now = clock_->Now();
  Count("get", result.status(), sent, now);
  if (result.ok() && result->uploading().id() != key.uploading_id) {
    result = absl::UnavailableError(absl::StrCat(
        "bad upstream reply: Metrica answered for uploading ",
        result->uploading().id(), " when asked for ", key.uploading_id));
  }
  absl::StatusOr<UploadingState> answer =
      result.ok() ? absl::StatusOr<UploadingState>(
                        sink_->Observe(key, result->uploading(), sent, now))
                  : absl::StatusOr<UploadingState>(result.status());
  for (auto& w : waiters) std::move(w)(answer, sent);
}

void UpstreamReader::OnList(const ListKey& key, uint64_t flight,
                            absl::StatusOr<v1::ListUploadingsResponse> result) {
  std::vector<ListFlights::Callback> waiters;
  absl::Time sent;
  bool accepted = false;
  {
    absl::MutexLock lock(&mu_);
    waiters = lists_.Complete(key, flight, &sent);
    if (!waiters.empty()) accepted = Learn(key.token_fingerprint, result.status());
    if (!waiters.empty() && result.ok()) {
      list_cache_[key] = ListEntry{*result, clock_->Now()};
      // It exists after all (created since, or access granted).
      for (const v1::Uploading& u : result->uploadings()) {
        negative_.erase(
            UploadingKey{key.token_fingerprint, key.counter_id, u.id()});
      }
    }
  }
  if (accepted && options_.tokens != nullptr) {
    options_.tokens->Accept(key.token_fingerprint);
  }
  if (waiters.empty()) return;
  const absl::Time now = clock_->Now();
  Count("list", result.status(), sent, now);
  if (result.ok()) {
    // A list is as good as a Get for every uploading in it.
    for (const v1::Uploading& u : result->uploadings()) {
      sink_->Observe(
          UploadingKey{key.token_fingerprint, key.counter_id, u.id()}, u, sent,
          now);
    }
  }
  for (auto& w : waiters) std::move(w)(result, sent);
}

void UpstreamReader::Shutdown(const absl::Status& reason) {
  std::vector<GetFlights::Abandoned> gets;
  std::vector<ListFlights::Abandoned> lists;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    // Calls made from now on; those waiting get `reason`.
    shut_down_ = absl::UnavailableError("server is shutting down");
    gets = gets_.TakeAll();
    lists = lists_.TakeAll();
  }
  for (auto& a : gets) {
    if (a.request != 0) client_->Cancel(a.request);
    for (auto& w : a.waiters) std::move(w)(reason, absl::InfinitePast());
  }
  for (auto& a : lists) {
    if (a.request != 0) client_->Cancel(a.request);
    for (auto& w : a.waiters) std::move(w)(reason, absl::InfinitePast());
  }
}

void UpstreamReader::SweepListCache(absl::Time now) {
  absl::MutexLock lock(&mu_);
  for (auto it = list_cache_.begin(); it != list_cache_.end();) {
    if (now - it->second.fetched > options_.list_fresh_for) {
      list_cache_.erase(it++);
    } else {
      ++it;
    }
  }
  for (auto it = negative_.begin(); it != negative_.end();) {
    if (now - it->second.stored >= options_.negative_ttl) {
      negative_.erase(it++);
    } else {
      ++it;
    }
  }
  for (auto it = rejected_.begin(); it != rejected_.end();) {
    if (now - it->second.stored >= options_.negative_ttl) {
      rejected_.erase(it++);
    } else {
      ++it;
    }
  }
}

size_t UpstreamReader::flights() const {
  absl::MutexLock lock(&mu_);
  return gets_.size() + lists_.size();
}

}  // namespace uploadwatch
