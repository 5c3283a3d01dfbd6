#include "service/metrica/daily_budget.h"

#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

// 2026-11-28 20:59:00 UTC = 23:59 in Moscow.
const absl::Time kBeforeMidnightMsk = absl::FromCivil(
    absl::CivilSecond(2026, 11, 28, 20, 59, 0), absl::UTCTimeZone());

TEST(DailyBudget, ChargesUntilTheBudgetIsSpent) {
  FakeClock clock(kBeforeMidnightMsk);
  DailyBudget budget({.per_token = 3}, &clock);
  EXPECT_TRUE(budget.TryCharge("a"));
  EXPECT_TRUE(budget.TryCharge("a"));
  EXPECT_TRUE(budget.TryCharge("a"));
  EXPECT_FALSE(budget.TryCharge("a"));
  EXPECT_TRUE(budget.TryCharge("b"));  // per token
  QuotaUsage a = budget.Usage("a");
  EXPECT_EQ(a.used, 3);
  EXPECT_EQ(a.remaining(), 0);
  EXPECT_EQ(budget.Usage("b").remaining(), 2);
  EXPECT_EQ(budget.All().size(), 2u);
}

TEST(DailyBudget, ResetsAtMidnightMoscowTime) {
  FakeClock clock(kBeforeMidnightMsk);
  DailyBudget budget({.per_token = 1}, &clock);
  EXPECT_TRUE(budget.TryCharge("a"));
  EXPECT_FALSE(budget.TryCharge("a"));
  EXPECT_EQ(budget.Usage("a").resets_at,
            kBeforeMidnightMsk + absl::Minutes(1));
  clock.Advance(absl::Seconds(59));
  EXPECT_FALSE(budget.TryCharge("a"));
  clock.Advance(absl::Seconds(1));  // 00:00 MSK
  EXPECT_TRUE(budget.TryCharge("a"));
  EXPECT_EQ(budget.Usage("a").resets_at,
            kBeforeMidnightMsk + absl::Minutes(1) + absl::Hours(24));
}

TEST(DailyBudget, ZeroMeansUnlimited) {
  FakeClock clock;
  DailyBudget budget({.per_token = 0}, &clock);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(budget.TryCharge("a"));
}

}  // namespace
}  // namespace uploadwatch
