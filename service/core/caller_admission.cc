#include "service/core/caller_admission.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "service/common/status_details.h"

namespace uploadwatch {
namespace {

constexpr char kDomain[] = "uploadwatch";

absl::Status Refused(std::string message, const char* reason,
                     const char* flag, std::optional<absl::Duration> retry) {
  absl::Status status = absl::ResourceExhaustedError(std::move(message));
  google::rpc::ErrorInfo info;
  info.set_reason(reason);
  info.set_domain(kDomain);
  (*info.mutable_metadata())["flag"] = flag;
  status.SetPayload(kErrorInfoUrl, absl::Cord(info.SerializeAsString()));
  if (retry) SetRetryInfo(status, *retry);
  return status;
}

}  // namespace

CallerAdmission::CallerAdmission(Options options, QuotaView quota)
    : options_(options), quota_(std::move(quota)) {}

void CallerAdmission::NewDayLocked(absl::Time resets_at) {
  if (resets_at == day_ends_) return;
  day_ends_ = resets_at;
  total_used_ = 0;
  for (auto it = callers_.begin(); it != callers_.end();) {
    it->second.used = 0;
    if (it->second.in_flight == 0) {
      callers_.erase(it++);
    } else {
      ++it;
    }
  }
}

absl::Status CallerAdmission::Admit(const std::string& server,
                                    const std::string& caller,
                                    absl::Time now) {
  std::optional<QuotaUsage> usage = quota_ ? quota_(server) : std::nullopt;
  absl::MutexLock lock(&mu_);
  server_ = server;
  const int slots = std::max(
      1, static_cast<int>(std::floor(options_.share * options_.parallel)));
  Share& share = callers_[caller];
  // Work-conserving: beyond its share only while the token's slots are all
  // taken by callers (then the others' requests still get in).
  if (share.in_flight >= slots && in_flight_ >= options_.parallel) {
    DropIfIdleLocked(caller);
    return Refused(
        absl::StrCat("this caller already has ", slots,
                     " request(s) to Metrica in flight on the server's token, "
                     "its share of the token's parallel slots "
                     "(--caller_budget_share); wait for them, or send your own "
                     "token in 'authorization: OAuth <token>'"),
        "CALLER_CONCURRENCY", "--caller_budget_share", std::nullopt);
  }
  if (absl::Status charged = ChargeLocked(usage, caller, now);
      !charged.ok()) {
    DropIfIdleLocked(caller);
    return charged;
  }
  ++callers_[caller].in_flight;
  ++in_flight_;
  return absl::OkStatus();
}

absl::Status CallerAdmission::ChargeLocked(
    const std::optional<QuotaUsage>& usage, const std::string& caller,
    absl::Time now) {
  if (!usage || usage->budget <= 0) return absl::OkStatus();
  NewDayLocked(usage->resets_at);
  const int64_t pool =
      static_cast<int64_t>(std::floor(options_.pool * usage->budget));
  const int64_t mine = std::max<int64_t>(
      1, static_cast<int64_t>(std::floor(options_.share * pool)));
  const absl::Duration until_reset =
      std::max(usage->resets_at - now, absl::ZeroDuration());
  Share& s = callers_[caller];
  if (s.used >= mine) {
    return Refused(
        absl::StrCat("this caller has used its ", mine,
                     " Metrica requests for today on the server's token "
                     "(--caller_budget_share of the callers' part of "
                     "--daily_budget); send your own token in "
                     "'authorization: OAuth <token>', or wait for the reset"),
        "CALLER_BUDGET_EXHAUSTED", "--caller_budget_share", until_reset);
  }
  if (total_used_ >= pool) {
    return Refused(
        absl::StrCat("callers without a token have used today's ", pool,
                     " Metrica requests of the server's token kept for them "
                     "(--budget_reserve of --daily_budget; the rest is kept "
                     "for watches); send your own token in "
                     "'authorization: OAuth <token>', or wait for the reset"),
        "CALLERS_BUDGET_EXHAUSTED", "--budget_reserve", until_reset);
  }
  ++s.used;
  ++total_used_;
  return absl::OkStatus();
}

absl::Status CallerAdmission::Charge(const std::string& server,
                                     const std::string& caller,
                                     absl::Time now) {
  std::optional<QuotaUsage> usage = quota_ ? quota_(server) : std::nullopt;
  absl::MutexLock lock(&mu_);
  server_ = server;
  absl::Status charged = ChargeLocked(usage, caller, now);
  DropIfIdleLocked(caller);
  return charged;
}

void CallerAdmission::Uncharge(const std::string& caller) {
  absl::MutexLock lock(&mu_);
  auto it = callers_.find(caller);
  if (it == callers_.end() || it->second.used == 0) return;
  --it->second.used;
  if (total_used_ > 0) --total_used_;
  DropIfIdleLocked(caller);
}

absl::Status CallerAdmission::OpenWatch(const std::string& caller) {
  absl::MutexLock lock(&mu_);
  size_t& open = watches_[caller];
  if (options_.max_watches > 0 && open >= options_.max_watches) {
    return Refused(
        absl::StrCat("this caller already has ", open,
                     " open watches on the server's token, the limit per "
                     "caller (--max_watches_per_caller); close some, or send "
                     "your own token in 'authorization: OAuth <token>'"),
        "CALLER_WATCH_LIMIT", "--max_watches_per_caller", std::nullopt);
  }
  ++open;
  return absl::OkStatus();
}

void CallerAdmission::CloseWatch(const std::string& caller) {
  absl::MutexLock lock(&mu_);
  auto it = watches_.find(caller);
  if (it == watches_.end()) return;
  if (--it->second == 0) watches_.erase(it);
}

void CallerAdmission::DropIfIdleLocked(const std::string& caller) {
  auto it = callers_.find(caller);
  if (it != callers_.end() && it->second.used == 0 &&
      it->second.in_flight == 0) {
    callers_.erase(it);
  }
}

void CallerAdmission::Release(const std::string& caller) {
  absl::MutexLock lock(&mu_);
  auto it = callers_.find(caller);
  if (it == callers_.end() || it->second.in_flight == 0) return;
  --it->second.in_flight;
  --in_flight_;
  DropIfIdleLocked(caller);
}

void CallerAdmission::Refund(const std::string& caller) {
  absl::MutexLock lock(&mu_);
  auto it = callers_.find(caller);
  if (it == callers_.end() || it->second.in_flight == 0) return;
  --it->second.in_flight;
  --in_flight_;
  if (it->second.used > 0) {
    --it->second.used;
    if (total_used_ > 0) --total_used_;
  }
  DropIfIdleLocked(caller);
}

std::optional<QuotaUsage> CallerAdmission::PollersView(
    const std::string& fingerprint) const {
  std::optional<QuotaUsage> usage = quota_ ? quota_(fingerprint) : std::nullopt;
  if (!usage || usage->budget <= 0) return usage;
  absl::MutexLock lock(&mu_);
  if (fingerprint != server_ || usage->resets_at != day_ends_) return usage;
  const int64_t pool =
      static_cast<int64_t>(std::floor(options_.pool * usage->budget));
  // What callers spent came out of their own part, which the Pacer keeps
  // untouched anyway: the polls' part is what polls alone have used.
  usage->used -= std::min({total_used_, pool, usage->used});
  return usage;
}

size_t CallerAdmission::callers() const {
  absl::MutexLock lock(&mu_);
  return callers_.size();
}

}  // namespace uploadwatch
