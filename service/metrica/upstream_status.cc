#include "service/metrica/upstream_status.h"

#include "service/common/status_details.h"

namespace uploadwatch {

UpstreamOutcome ClassifyUpstream(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return UpstreamOutcome::kOk;
    case absl::StatusCode::kCancelled:
      return UpstreamOutcome::kCancelled;
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
      return UpstreamOutcome::kPermanent;
    case absl::StatusCode::kResourceExhausted: {
      const auto info = GetErrorInfo(status);
      if (info && info->reason() == kDailyBudgetExhaustedReason) {
        return UpstreamOutcome::kLocalBudgetSpent;
      }
      return UpstreamOutcome::kUpstreamQuota;
    }
    default:
      return UpstreamOutcome::kTransient;
  }
}

}  // namespace uploadwatch
