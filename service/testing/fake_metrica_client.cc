#include "service/testing/fake_metrica_client.h"

#include <algorithm>

namespace uploadwatch::testing {

void FakeMetricaClient::SetUploading(int32_t counter_id,
                                     const v1::Uploading& uploading) {
  absl::MutexLock lock(&mu_);
  world_[counter_id][uploading.id()] = uploading;
}

void FakeMetricaClient::Fail(Failure failure) {
  absl::MutexLock lock(&mu_);
  failures_.push_back(std::move(failure));
}

void FakeMetricaClient::ClearFailures() {
  absl::MutexLock lock(&mu_);
  failures_.clear();
}

void FakeMetricaClient::set_latency(absl::Duration latency) {
  absl::MutexLock lock(&mu_);
  latency_ = latency;
}

void FakeMetricaClient::set_hold(bool hold) {
  absl::MutexLock lock(&mu_);
  hold_ = hold;
}

bool FakeMetricaClient::Release(RequestId id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(id);
    if (it == pending_.end() || !it->second.held) return false;
    it->second.held = false;
  }
  time_->Run([this, id] { Finish(id, absl::OkStatus()); });
  return true;
}

void FakeMetricaClient::SetDailyUsage(const std::string& token_fingerprint,
                                      QuotaUsage usage) {
  absl::MutexLock lock(&mu_);
  usage_[token_fingerprint] = usage;
}

std::vector<FakeMetricaClient::Request> FakeMetricaClient::requests() const {
  absl::MutexLock lock(&mu_);
  return std::vector<Request>(log_.begin() + log_base_, log_.end());
}

int FakeMetricaClient::count(absl::string_view endpoint) const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(
      std::count_if(log_.begin() + log_base_, log_.end(),
                    [&](const Request& r) { return r.endpoint == endpoint; }));
}

void FakeMetricaClient::ClearLog() {
  absl::MutexLock lock(&mu_);
  log_base_ = log_.size();
}

int FakeMetricaClient::in_flight() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(pending_.size());
}

int FakeMetricaClient::max_in_flight() const {
  absl::MutexLock lock(&mu_);
  return max_in_flight_;
}

std::optional<absl::Status> FakeMetricaClient::ScriptedLocked(
    absl::string_view endpoint, int32_t counter_id, int64_t uploading_id) {
  for (auto it = failures_.begin(); it != failures_.end(); ++it) {
    if ((!it->endpoint.empty() && it->endpoint != endpoint) ||
        (it->counter_id != 0 && it->counter_id != counter_id) ||
        (it->uploading_id != 0 && it->uploading_id != uploading_id)) {
      continue;
    }
    absl::Status status = it->status;
    if (it->times > 0 && --it->times == 0) failures_.erase(it);
    return status;
  }
  return std::nullopt;
}

MetricaClient::RequestId FakeMetricaClient::StartLocked(
    Request request, absl::Time deadline,
    absl::AnyInvocable<void(absl::Status) &&> finish) {
  const RequestId id = next_id_++;
  request.id = id;
  request.sent = time_->Now();
  log_.push_back(std::move(request));
  Pending& p = pending_[id];
  p.log_index = log_.size() - 1;
  p.finish = std::move(finish);
  p.deadline = deadline;
  max_in_flight_ = std::max(max_in_flight_, static_cast<int>(pending_.size()));
  const absl::Time answer_at = time_->Now() + latency_;
  if (answer_at >= deadline) {
    p.timer = time_->RunAt(deadline, [this, id] {
      Finish(id, absl::DeadlineExceededError("the caller's deadline passed"));
    });
  } else if (hold_) {
    p.held = true;
    p.timer = time_->RunAt(deadline, [this, id] {
      Finish(id, absl::DeadlineExceededError("the caller's deadline passed"));
    });
  } else {
    p.timer = time_->RunAt(answer_at,
                           [this, id] { Finish(id, absl::OkStatus()); });
  }
  return id;
}

void FakeMetricaClient::Finish(RequestId id, absl::Status status) {
  absl::AnyInvocable<void(absl::Status) &&> finish;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    log_[it->second.log_index].answered = true;
    if (absl::IsCancelled(status)) log_[it->second.log_index].cancelled = true;
    finish = std::move(it->second.finish);
    time_->Cancel(it->second.timer);
    pending_.erase(it);
  }
  std::move(finish)(std::move(status));
}

MetricaClient::RequestId FakeMetricaClient::GetUploading(
    absl::string_view token, int32_t counter_id, int64_t uploading_id,
    absl::Time deadline, GetCallback done) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::GetUploadingResponse> answer =
      absl::NotFoundError("no such uploading");
  if (auto failure = ScriptedLocked("get", counter_id, uploading_id)) {
    answer = *failure;
  } else if (auto c = world_.find(counter_id); c != world_.end()) {
    if (auto u = c->second.find(uploading_id); u != c->second.end()) {
      v1::GetUploadingResponse response;
      *response.mutable_uploading() = u->second;
      answer = std::move(response);
    }
  }
  Request request;
  request.endpoint = "get";
  request.token = std::string(token);
  request.counter_id = counter_id;
  request.uploading_id = uploading_id;
  return StartLocked(
      std::move(request), deadline,
      [answer = std::move(answer), done = std::move(done)](
          absl::Status status) mutable {
        if (!status.ok()) {
          std::move(done)(std::move(status));
        } else {
          std::move(done)(std::move(answer));
        }
      });
}

MetricaClient::RequestId FakeMetricaClient::ListUploadings(
    absl::string_view token, const ListParams& params, absl::Time deadline,
    ListCallback done) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::ListUploadingsResponse> answer =
      v1::ListUploadingsResponse();
  if (auto failure = ScriptedLocked("list", params.counter_id, 0)) {
    answer = *failure;
  } else if (auto c = world_.find(params.counter_id); c != world_.end()) {
    const auto wanted = params.type == v1::Uploading::TYPE_UNSPECIFIED
                            ? v1::Uploading::BASIC
                            : params.type;
    const int limit = params.limit == 0 ? 10000 : params.limit;
    int skipped = 0;
    for (auto u = c->second.rbegin(); u != c->second.rend(); ++u) {
      const auto type = u->second.type() == v1::Uploading::TYPE_UNSPECIFIED
                            ? v1::Uploading::BASIC
                            : u->second.type();
      if (type != wanted) continue;
      if (skipped++ < params.offset) continue;
      if (answer->uploadings_size() >= limit) break;
      *answer->add_uploadings() = u->second;
    }
  }
  Request request;
  request.endpoint = "list";
  request.token = std::string(token);
  request.counter_id = params.counter_id;
  request.list = params;
  return StartLocked(
      std::move(request), deadline,
      [answer = std::move(answer), done = std::move(done)](
          absl::Status status) mutable {
        if (!status.ok()) {
          std::move(done)(std::move(status));
        } else {
          std::move(done)(std::move(answer));
        }
      });
}

void FakeMetricaClient::Cancel(RequestId id) {
  {
    absl::MutexLock lock(&mu_);
    if (!pending_.contains(id)) return;
  }
  time_->Run([this, id] {
    Finish(id, absl::CancelledError("the request was cancelled"));
  });
}

std::optional<QuotaUsage> FakeMetricaClient::DailyUsage(
    const std::string& token_fingerprint) {
  absl::MutexLock lock(&mu_);
  auto it = usage_.find(token_fingerprint);
  if (it == usage_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::pair<std::string, QuotaUsage>>
FakeMetricaClient::AllDailyUsage() {
  absl::MutexLock lock(&mu_);
  return {usage_.begin(), usage_.end()};
}

}  // namespace uploadwatch::testing
