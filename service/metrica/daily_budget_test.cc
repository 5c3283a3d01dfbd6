#include "service/metrica/daily_budget.h"

#include <algorithm>
#include <string>
#include <vector>

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
  DailyBudget budget({.per_token = 1, .reset = DailyReset::Moscow()}, &clock);
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

absl::Time Utc(int day, int hour, int minute = 0) {
  return absl::FromCivil(absl::CivilSecond(2026, 11, day, hour, minute, 0),
                         absl::UTCTimeZone());
}

TEST(DailyBudget, ResetsAtMidnightUtc) {
  FakeClock clock(Utc(28, 23, 59));
  DailyBudget budget({.per_token = 1, .reset = DailyReset::Utc()}, &clock);
  EXPECT_TRUE(budget.TryCharge("a"));
  EXPECT_FALSE(budget.TryCharge("a"));
  EXPECT_EQ(budget.ResetsAt(), Utc(29, 0));
  clock.Advance(absl::Minutes(1));
  EXPECT_TRUE(budget.TryCharge("a"));
}

TEST(DailyBudget, ConservativeIsTheDefaultAndEndsTheDayAtTheLaterReset) {
  FakeClock clock(Utc(28, 12));
  DailyBudget budget({.per_token = 2}, &clock);
  EXPECT_EQ(budget.ResetsAt(), Utc(29, 0));  // 00:00 GMT, after 00:00 MSK
  EXPECT_TRUE(budget.TryCharge("a"));
  EXPECT_TRUE(budget.TryCharge("a"));
  clock.Advance(absl::Hours(9) + absl::Minutes(30));  // 21:30 UTC: Moscow's
  EXPECT_FALSE(budget.TryCharge("a"));  // reset is not trusted alone
  clock.Advance(absl::Hours(2) + absl::Minutes(30));  // 00:00 UTC
  EXPECT_TRUE(budget.TryCharge("a"));
}

// Whichever page is right, no Metrica day may see more than the budget.
TEST(DailyBudget, ConservativeKeepsBothCandidateDaysInsideTheBudget) {
  constexpr int64_t kBudget = 10;
  // A first request at 22:00 UTC, between the two candidate resets; then
  // spending greedily every 10 minutes for three days. A counter reset at
  // 00:00 UTC alone would allow 20 in the Moscow day 21:00-21:00 UTC.
  FakeClock clock(Utc(27, 22));
  DailyBudget budget({.per_token = kBudget}, &clock);
  std::vector<absl::Time> sent;
  for (int i = 0; i < 3 * 24 * 6; ++i) {
    while (budget.TryCharge("a")) sent.push_back(clock.Now());
    clock.Advance(absl::Minutes(10));
  }
  auto count_in = [&](absl::Time from) {
    return std::count_if(sent.begin(), sent.end(), [&](absl::Time t) {
      return t >= from && t < from + absl::Hours(24);
    });
  };
  for (int day = 27; day <= 30; ++day) {
    SCOPED_TRACE(day);
    EXPECT_LE(count_in(Utc(day, 0)), kBudget) << "a GMT day";
    EXPECT_LE(count_in(Utc(day, 21)), kBudget) << "a Moscow day";
  }
  // And the budget is used: 10 at 22:00 on the 27th (they count on the 28th
  // too), then 10 at 00:00 on the 29th and on the 30th.
  EXPECT_EQ(sent.size(), 3 * kBudget);
  EXPECT_EQ(count_in(Utc(28, 0)), 0);
  EXPECT_EQ(count_in(Utc(29, 0)), kBudget);
  EXPECT_EQ(count_in(Utc(30, 0)), kBudget);
}

TEST(DailyBudget, RequestsInTheCarryOverCountInTheNextDay) {
  FakeClock clock(Utc(28, 22));
  DailyBudget budget({.per_token = 5}, &clock);
  EXPECT_TRUE(budget.TryCharge("a"));
  EXPECT_TRUE(budget.TryCharge("a"));
  clock.Advance(absl::Hours(2));  // 00:00 UTC
  EXPECT_EQ(budget.Usage("a").used, 2);
  clock.Advance(absl::Hours(24));  // nothing sent in that day's carry-over
  EXPECT_EQ(budget.Usage("a").used, 0);
}

TEST(DailyBudget, MarkSpentStopsTheTokenUntilTheReset) {
  FakeClock clock(Utc(28, 10));
  DailyBudget budget({.per_token = 100, .reset = DailyReset::Utc()}, &clock);
  EXPECT_TRUE(budget.TryCharge("a"));
  budget.MarkSpent("a");
  EXPECT_FALSE(budget.TryCharge("a"));
  EXPECT_TRUE(budget.TryCharge("b"));
  EXPECT_EQ(budget.Usage("a").remaining(), 0);
  clock.Advance(absl::Hours(14));  // 00:00 UTC
  EXPECT_TRUE(budget.TryCharge("a"));
}

TEST(DailyBudget, MarkSpentHonoursAnEarlierRetryAfter) {
  FakeClock clock(Utc(28, 10));
  DailyBudget budget({.per_token = 100, .reset = DailyReset::Utc()}, &clock);
  EXPECT_EQ(budget.MarkSpent("a", clock.Now() + absl::Minutes(5)),
            Utc(28, 10, 5));
  EXPECT_FALSE(budget.TryCharge("a"));
  clock.Advance(absl::Minutes(5));
  EXPECT_TRUE(budget.TryCharge("a"));
  // A Retry-After beyond the reset ends at the reset.
  EXPECT_EQ(budget.MarkSpent("b", clock.Now() + absl::Hours(48)), Utc(29, 0));
}

TEST(DailyBudget, MarkSpentWorksWithoutABudget) {
  FakeClock clock(Utc(28, 10));
  DailyBudget budget({.per_token = 0, .reset = DailyReset::Utc()}, &clock);
  budget.MarkSpent("a");
  EXPECT_FALSE(budget.TryCharge("a"));
  EXPECT_TRUE(budget.TryCharge("b"));
  EXPECT_TRUE(budget.All().empty());
  clock.Advance(absl::Hours(14));
  EXPECT_TRUE(budget.TryCharge("a"));
}

TEST(DailyBudget, ParsesTheResetZoneFlag) {
  ASSERT_TRUE(ParseDailyReset("conservative").ok());
  EXPECT_EQ(ParseDailyReset("conservative")->carry_over, absl::Hours(3));
  EXPECT_EQ(ParseDailyReset("MOSCOW")->carry_over, absl::ZeroDuration());
  EXPECT_EQ(ParseDailyReset("utc")->zone, absl::UTCTimeZone());
  EXPECT_EQ(ParseDailyReset("gmt")->zone, absl::UTCTimeZone());
  const absl::StatusOr<DailyReset> bad = ParseDailyReset("Mars/Olympus");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("conservative"), std::string::npos);
}

}  // namespace
}  // namespace uploadwatch
