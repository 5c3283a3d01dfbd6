// Accepted tokens in an LRU with a cap, and the unverified bucket shared by
// every token Metrica has not accepted yet.
#include "service/core/token_tracker.h"

#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "service/common/status_details.h"

namespace uploadwatch {
namespace {

const absl::Time kNoon = absl::FromCivil(absl::CivilSecond(2026, 12, 1, 12, 0, 0),
                                         absl::UTCTimeZone());

std::string Reason(const absl::Status& s) {
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(s);
  return info ? info->reason() : "";
}

TEST(TokenTrackerTest, OnlyAcceptedTokensAreKnown) {
  TokenTracker t({.max_tracked = 10});
  EXPECT_FALSE(t.Accepted("a"));
  t.Accept("a");
  EXPECT_TRUE(t.Accepted("a"));
  EXPECT_TRUE(t.Known("a"));
  EXPECT_FALSE(t.Known("b"));
  EXPECT_EQ(t.tracked(), 1u);
}

TEST(TokenTrackerTest, TheLeastRecentlyUsedTokenGoesFirstAtTheCap) {
  TokenTracker t({.max_tracked = 2});
  t.Accept("a");
  t.Accept("b");
  ASSERT_TRUE(t.Accepted("a"));  // a is now the most recent
  t.Accept("c");
  EXPECT_TRUE(t.Known("a"));
  EXPECT_FALSE(t.Known("b"));
  EXPECT_TRUE(t.Known("c"));
  EXPECT_EQ(t.tracked(), 2u);
}

TEST(TokenTrackerTest, UnverifiedTokensShareOneSlot) {
  TokenTracker t({.unverified_per_day = 100});
  ASSERT_TRUE(t.AdmitUnverified(kNoon).ok());
  const absl::Status second = t.AdmitUnverified(kNoon);
  EXPECT_EQ(second.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Reason(second), "UNVERIFIED_TOKEN_CONCURRENCY");
  t.ReleaseUnverified(false);
  EXPECT_TRUE(t.AdmitUnverified(kNoon).ok());
}

TEST(TokenTrackerTest, UnverifiedTokensShareOneSmallDailyBudget) {
  TokenTracker t({.unverified_per_day = 3});
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(t.AdmitUnverified(kNoon).ok()) << i;
    t.ReleaseUnverified(false);
  }
  const absl::Status spent = t.AdmitUnverified(kNoon);
  EXPECT_EQ(Reason(spent), "UNVERIFIED_TOKEN_BUDGET_EXHAUSTED");
  EXPECT_EQ(GetRetryDelay(spent), absl::Hours(12));  // to 00:00 UTC
  // A refunded request (it joined another) costs nothing; the next day
  // starts afresh.
  EXPECT_TRUE(t.AdmitUnverified(kNoon + absl::Hours(12)).ok());
  t.ReleaseUnverified(true);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(t.AdmitUnverified(kNoon + absl::Hours(13)).ok()) << i;
    t.ReleaseUnverified(false);
  }
}

TEST(TokenTrackerTest, WatchesOfOneTokenWithinASecondShareOneCharge) {
  TokenTracker t({.unverified_per_day = 2});
  EXPECT_EQ(*t.ChargeUnverified("a", kNoon), false);  // charged
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(*t.ChargeUnverified("a", kNoon + absl::Milliseconds(i)), true);
  }
  EXPECT_EQ(*t.ChargeUnverified("b", kNoon), false);  // another token pays
  // A second later the token pays again (it is still unverified), and the
  // bucket's day is spent: watches are refused like Gets.
  const absl::StatusOr<bool> later =
      t.ChargeUnverified("a", kNoon + absl::Seconds(1));
  EXPECT_EQ(Reason(later.status()), "UNVERIFIED_TOKEN_BUDGET_EXHAUSTED");
  // Charges take no slot: a Get is refused for the day, not for a slot.
  EXPECT_EQ(Reason(t.AdmitUnverified(kNoon)),
            "UNVERIFIED_TOKEN_BUDGET_EXHAUSTED");
}

}  // namespace
}  // namespace uploadwatch
