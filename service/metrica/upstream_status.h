#ifndef UPLOADWATCH_SERVICE_METRICA_UPSTREAM_STATUS_H_
#define UPLOADWATCH_SERVICE_METRICA_UPSTREAM_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace uploadwatch {

// What an upstream outcome means for whoever polls: the one place that reads
// codes and ErrorInfo reasons (never domains or messages) to decide.
enum class UpstreamOutcome {
  kOk,
  // Asking again cannot help (no access, no such uploading, bad request):
  // watches of it end with the status.
  kPermanent,
  // May pass (Metrica down, a network failure, a deadline): back off, retry.
  kTransient,
  // Metrica's own quota refused the token (429/420, quota_*): every poll of
  // that token would meet the same answer.
  kUpstreamQuota,
  // This process's daily budget for the token is spent; nothing was sent.
  kLocalBudgetSpent,
  // The request was called off here; it says nothing about Metrica.
  kCancelled,
};

// The ErrorInfo reason the fetcher gives a call refused by its daily budget.
inline constexpr absl::string_view kDailyBudgetExhaustedReason =
    "DAILY_BUDGET_EXHAUSTED";

UpstreamOutcome ClassifyUpstream(const absl::Status& status);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICA_UPSTREAM_STATUS_H_
