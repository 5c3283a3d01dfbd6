#include "service/core/token_tracker.h"

#include <algorithm>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "service/common/status_details.h"

namespace uploadwatch {
namespace {

absl::Status Refused(std::string message, const char* reason,
                     const char* flag, std::optional<absl::Duration> retry) {
  absl::Status status = absl::ResourceExhaustedError(std::move(message));
  google::rpc::ErrorInfo info;
  info.set_reason(reason);
  info.set_domain("uploadwatch");
  (*info.mutable_metadata())["flag"] = flag;
  status.SetPayload(kErrorInfoUrl, absl::Cord(info.SerializeAsString()));
  if (retry) SetRetryInfo(status, *retry);
  return status;
}

}  // namespace

TokenTracker::TokenTracker(Options options) : options_(options) {}

void TokenTracker::Accept(const std::string& fingerprint) {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(fingerprint);
  if (it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.push_front(fingerprint);
  index_[fingerprint] = lru_.begin();
  while (lru_.size() > std::max<size_t>(options_.max_tracked, 1)) {
    index_.erase(lru_.back());
    lru_.pop_back();
  }
}

bool TokenTracker::Accepted(const std::string& fingerprint) {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(fingerprint);
  if (it == index_.end()) return false;
  lru_.splice(lru_.begin(), lru_, it->second);
  return true;
}

bool TokenTracker::Known(const std::string& fingerprint) const {
  absl::MutexLock lock(&mu_);
  return index_.contains(fingerprint);
}

size_t TokenTracker::tracked() const {
  absl::MutexLock lock(&mu_);
  return lru_.size();
}

absl::Status TokenTracker::ChargeLocked(absl::Time now) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  if (now >= unverified_day_ends_) {
    unverified_day_ends_ =
        absl::FromCivil(absl::CivilDay(absl::ToCivilDay(now, utc)) + 1, utc);
    unverified_used_ = 0;
  }
  if (options_.unverified_per_day > 0 &&
      unverified_used_ >= options_.unverified_per_day) {
    return Refused(
        absl::StrCat("today's ", options_.unverified_per_day,
                     " requests with tokens Metrica has not accepted yet are "
                     "used (--unverified_token_budget); a token Metrica has "
                     "accepted is not limited by this"),
        "UNVERIFIED_TOKEN_BUDGET_EXHAUSTED", "--unverified_token_budget",
        unverified_day_ends_ - now);
  }
  ++unverified_used_;
  return absl::OkStatus();
}

absl::Status TokenTracker::AdmitUnverified(absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (unverified_busy_) {
    return Refused(
        "a request with a token Metrica has not accepted yet is in flight; "
        "new tokens are checked one at a time: retry in a moment",
        "UNVERIFIED_TOKEN_CONCURRENCY", "--unverified_token_budget",
        absl::Seconds(1));
  }
  absl::Status charged = ChargeLocked(now);
  if (charged.ok()) unverified_busy_ = true;
  return charged;
}

void TokenTracker::ReleaseUnverified(bool refund) {
  absl::MutexLock lock(&mu_);
  unverified_busy_ = false;
  if (refund && unverified_used_ > 0) --unverified_used_;
}

absl::StatusOr<bool> TokenTracker::ChargeUnverified(
    const std::string& fingerprint, absl::Time now) {
  constexpr absl::Duration kShared = absl::Seconds(1);
  absl::MutexLock lock(&mu_);
  absl::erase_if(watch_charges_,
                 [&](const auto& entry) { return now - entry.second >= kShared; });
  if (watch_charges_.contains(fingerprint)) return true;
  if (absl::Status charged = ChargeLocked(now); !charged.ok()) return charged;
  watch_charges_[fingerprint] = now;
  return false;
}

void TokenTracker::UnchargeUnverified() {
  absl::MutexLock lock(&mu_);
  if (unverified_used_ > 0) --unverified_used_;
}

}  // namespace uploadwatch
