#include "service/core/pacer.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "service/common/status_details.h"
#include "service/testing/fixed_random.h"

namespace uploadwatch {
namespace {

using ::uploadwatch::testing::FixedRandom;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);
const GroupKey kA{"fp-1", 1};
const GroupKey kB{"fp-1", 2};
const GroupKey kOtherToken{"fp-2", 1};

Pacer::Options Opts(RandomSource* random) {
  Pacer::Options o;
  o.poll_interval = absl::Seconds(30);
  o.max_backoff = absl::Minutes(5);
  o.random = random;
  return o;
}

absl::Status MetricaQuota(absl::Duration retry_after) {
  absl::Status s = absl::ResourceExhaustedError("429");
  SetErrorInfo(s, "QUOTA_REQUESTS_BY_UID", "api-metrika.yandex.net");
  if (retry_after > absl::ZeroDuration()) SetRetryInfo(s, retry_after);
  return s;
}

TEST(Pacer, SuccessPollsAfterTheInterval) {
  FixedRandom random(0.5);
  Pacer pacer(Opts(&random), nullptr);
  EXPECT_EQ(pacer.NextPoll(kA, absl::OkStatus(), kT0, 1), kT0 + absl::Seconds(30));
  // Permanent errors end watches; they do not back off what remains.
  EXPECT_EQ(pacer.NextPoll(kA, absl::NotFoundError("x"), kT0, 1),
            kT0 + absl::Seconds(30));
}

TEST(Pacer, TransientErrorsBackOffExponentiallyToTheCapThenReset) {
  FixedRandom random(0.5);
  Pacer pacer(Opts(&random), nullptr);
  const absl::Status down = absl::UnavailableError("503");
  std::vector<absl::Duration> delays;
  for (int i = 0; i < 6; ++i) delays.push_back(pacer.NextPoll(kA, down, kT0, 1) - kT0);
  EXPECT_EQ(delays, (std::vector<absl::Duration>{
                        absl::Seconds(30), absl::Seconds(60), absl::Seconds(120),
                        absl::Seconds(240), absl::Minutes(5), absl::Minutes(5)}));
  // Another group of the token is not affected.
  EXPECT_EQ(pacer.NextPoll(kB, absl::OkStatus(), kT0, 1) - kT0, absl::Seconds(30));
  EXPECT_EQ(pacer.NextPoll(kA, absl::OkStatus(), kT0, 1) - kT0, absl::Seconds(30));
  EXPECT_EQ(pacer.NextPoll(kA, down, kT0, 1) - kT0, absl::Seconds(30));
}

TEST(Pacer, BackoffIsJitteredWithinTwentyPercent) {
  FixedRandom low(0.0), high(0.999999);
  Pacer early(Opts(&low), nullptr), late(Opts(&high), nullptr);
  const absl::Status down = absl::UnavailableError("503");
  EXPECT_EQ(early.NextPoll(kA, down, kT0, 1) - kT0, absl::Seconds(24));
  const absl::Duration d = late.NextPoll(kA, down, kT0, 1) - kT0;
  EXPECT_GT(d, absl::Seconds(35.9));
  EXPECT_LE(d, absl::Seconds(36));
}

TEST(Pacer, RetryInfoIsALowerBound) {
  FixedRandom random(0.5);
  Pacer pacer(Opts(&random), nullptr);
  absl::Status down = absl::UnavailableError("503");
  SetRetryInfo(down, absl::Seconds(100));
  EXPECT_EQ(pacer.NextPoll(kA, down, kT0, 1) - kT0, absl::Seconds(100));
}

TEST(Pacer, MetricasQuotaPausesEveryGroupOfTheTokenAndGrows) {
  FixedRandom random(0.5);
  Pacer pacer(Opts(&random), nullptr);
  EXPECT_EQ(pacer.NextPoll(kA, MetricaQuota(absl::Seconds(45)), kT0, 2) - kT0,
            absl::Seconds(45));
  EXPECT_EQ(pacer.PausedUntil("fp-1"), kT0 + absl::Seconds(45));
  EXPECT_EQ(pacer.PausedUntil("fp-2"), absl::InfinitePast());
  // Still refused later: the pause doubles (30 s base, then 60 s).
  const absl::Time t1 = kT0 + absl::Seconds(50);
  pacer.NextPoll(kA, MetricaQuota(absl::ZeroDuration()), t1, 2);
  EXPECT_EQ(pacer.PausedUntil("fp-1"), t1 + absl::Seconds(60));
  // The other group of the token, however well it did, waits with it; its
  // success shows Metrica serves the token again (the pause starts over).
  EXPECT_EQ(pacer.NextPoll(kB, absl::OkStatus(), t1, 2), t1 + absl::Seconds(60));
  EXPECT_EQ(pacer.NextPoll(kOtherToken, absl::OkStatus(), t1, 1),
            t1 + absl::Seconds(30));
  const absl::Time t2 = t1 + absl::Minutes(2);
  pacer.NextPoll(kA, MetricaQuota(absl::ZeroDuration()), t2, 2);
  EXPECT_EQ(pacer.PausedUntil("fp-1"), t2 + absl::Seconds(30));
}

TEST(Pacer, TheLocalBudgetBacksOffOneGroupWithoutPausingTheToken) {
  FixedRandom random(0.5);
  Pacer pacer(Opts(&random), nullptr);
  absl::Status spent = absl::ResourceExhaustedError("budget");
  SetErrorInfo(spent, "DAILY_BUDGET_EXHAUSTED", "uploadwatch");
  SetRetryInfo(spent, absl::Hours(2));
  EXPECT_EQ(pacer.NextPoll(kA, spent, kT0, 2) - kT0, absl::Hours(2));
  EXPECT_EQ(pacer.PausedUntil("fp-1"), absl::InfinitePast());
}

TEST(Pacer, PollsStretchToLeaveTheBudgetsReserve) {
  FixedRandom random(0.5);
  QuotaUsage usage;
  usage.budget = 1000;
  usage.used = 400;
  usage.resets_at = kT0 + absl::Hours(10);
  Pacer pacer(Opts(&random), [&](const std::string&) {
    return std::optional<QuotaUsage>(usage);
  });
  // 600 left, 100 kept: 500 requests over 10 h for 5 groups: one per 6 min.
  EXPECT_EQ(pacer.NextPoll(kA, absl::OkStatus(), kT0, 5) - kT0, absl::Minutes(6));
  // Plenty: the interval.
  usage.used = 0;
  usage.budget = 1000000;
  EXPECT_EQ(pacer.NextPoll(kA, absl::OkStatus(), kT0, 5) - kT0, absl::Seconds(30));
  // Nothing left but the reserve: wait for the reset.
  usage.budget = 1000;
  usage.used = 950;
  EXPECT_EQ(pacer.NextPoll(kA, absl::OkStatus(), kT0, 5), kT0 + absl::Hours(10));
}

// Three replicas, one group of the token each, one shared day of it: each
// replica alone would spread the budget over its one group and the three
// would spend three times it; counted over all replicas, they spend it once.
TEST(Pacer, TheBudgetIsSpreadOverEveryReplicasGroups) {
  FixedRandom random(0.5);
  QuotaUsage usage;
  usage.budget = 1000;
  usage.used = 400;
  usage.resets_at = kT0 + absl::Hours(10);
  auto quota = [&](const std::string&) {
    return std::optional<QuotaUsage>(usage);
  };
  std::optional<size_t> shared = 3;
  Pacer::Options options = Opts(&random);
  options.shared_groups = [&](const std::string& fingerprint) {
    return fingerprint == kA.token_fingerprint ? shared : std::nullopt;
  };
  std::vector<std::unique_ptr<Pacer>> replicas;
  for (int i = 0; i < 3; ++i) {
    replicas.push_back(std::make_unique<Pacer>(options, quota));
  }
  // 500 spendable over 10 h: the three groups together poll 500 times, one
  // per 72 s overall, each every 216 s.
  double polls_per_hour = 0;
  for (auto& pacer : replicas) {
    const absl::Duration delay =
        pacer->NextPoll(kA, absl::OkStatus(), kT0, 1) - kT0;
    EXPECT_EQ(delay, absl::Seconds(216));
    polls_per_hour += absl::FDivDuration(absl::Hours(1), delay);
  }
  EXPECT_NEAR(polls_per_hour * 10, 500, 1e-6);
  // Without the shared count each replica would think its group alone.
  Pacer alone(Opts(&random), quota);
  EXPECT_EQ(alone.NextPoll(kA, absl::OkStatus(), kT0, 1) - kT0,
            absl::Seconds(72));
  // The higher count wins: this replica's own, when the shared one lags.
  EXPECT_EQ(replicas[0]->NextPoll(kA, absl::OkStatus(), kT0, 5) - kT0,
            absl::Minutes(6));
  // Unknown (Redis unreachable): this replica's count.
  shared = std::nullopt;
  EXPECT_EQ(replicas[0]->NextPoll(kA, absl::OkStatus(), kT0, 1) - kT0,
            absl::Seconds(72));
  // Another token's groups are not this one's.
  shared = 3;
  EXPECT_EQ(replicas[0]->NextPoll(kOtherToken, absl::OkStatus(), kT0, 1) - kT0,
            absl::Seconds(72));
}

}  // namespace
}  // namespace uploadwatch
