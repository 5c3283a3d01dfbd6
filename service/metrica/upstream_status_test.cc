#include "service/metrica/upstream_status.h"

#include "gtest/gtest.h"
#include "service/common/status_details.h"

namespace uploadwatch {
namespace {

TEST(ClassifyUpstream, PermanentCodes) {
  for (const absl::Status& s :
       {absl::NotFoundError("x"), absl::PermissionDeniedError("x"),
        absl::UnauthenticatedError("x"), absl::InvalidArgumentError("x"),
        absl::FailedPreconditionError("x")}) {
    EXPECT_EQ(ClassifyUpstream(s), UpstreamOutcome::kPermanent) << s;
  }
}

TEST(ClassifyUpstream, TransientCodes) {
  for (const absl::Status& s :
       {absl::UnavailableError("x"), absl::DeadlineExceededError("x"),
        absl::UnknownError("x"), absl::AbortedError("x")}) {
    EXPECT_EQ(ClassifyUpstream(s), UpstreamOutcome::kTransient) << s;
  }
}

TEST(ClassifyUpstream, QuotaIsTheUpstreamsUnlessTheReasonSaysTheBudget) {
  absl::Status metrica = absl::ResourceExhaustedError("429");
  SetErrorInfo(metrica, "QUOTA_REQUESTS_BY_UID", "api-metrika.yandex.net");
  EXPECT_EQ(ClassifyUpstream(metrica), UpstreamOutcome::kUpstreamQuota);
  EXPECT_EQ(ClassifyUpstream(absl::ResourceExhaustedError("bare")),
            UpstreamOutcome::kUpstreamQuota);
  // The domain does not matter, only the reason.
  absl::Status budget = absl::ResourceExhaustedError("spent");
  SetErrorInfo(budget, kDailyBudgetExhaustedReason, "anything.example");
  EXPECT_EQ(ClassifyUpstream(budget), UpstreamOutcome::kLocalBudgetSpent);
}

TEST(ClassifyUpstream, OkAndCancelled) {
  EXPECT_EQ(ClassifyUpstream(absl::OkStatus()), UpstreamOutcome::kOk);
  EXPECT_EQ(ClassifyUpstream(absl::CancelledError("x")),
            UpstreamOutcome::kCancelled);
}

}  // namespace
}  // namespace uploadwatch
