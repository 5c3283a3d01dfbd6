#include "service/metrica/backoff.h"

#include <optional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/testing/fixed_random.h"

namespace uploadwatch {
namespace {

using ::uploadwatch::testing::FixedRandom;

BackoffOptions Options() {
  BackoffOptions options;
  options.initial = absl::Milliseconds(100);
  options.multiplier = 2.0;
  options.jitter = 0.2;
  options.max = absl::Seconds(1);
  return options;
}

TEST(BackoffTest, DefaultsAreGrpcNumbersScaledForShortCalls) {
  BackoffOptions options;
  EXPECT_EQ(options.initial, absl::Milliseconds(200));
  EXPECT_DOUBLE_EQ(options.multiplier, 1.6);
  EXPECT_DOUBLE_EQ(options.jitter, 0.2);
  EXPECT_EQ(options.max, absl::Seconds(5));
}

TEST(BackoffTest, WithoutJitterDelaysGrowByTheMultiplierUpToTheCap) {
  FixedRandom middle(0.5);  // factor 1.0
  Backoff backoff(Options(), &middle);
  EXPECT_EQ(backoff.NextDelay(), absl::Milliseconds(100));
  EXPECT_EQ(backoff.NextDelay(), absl::Milliseconds(200));
  EXPECT_EQ(backoff.NextDelay(), absl::Milliseconds(400));
  EXPECT_EQ(backoff.NextDelay(), absl::Milliseconds(800));
  EXPECT_EQ(backoff.NextDelay(), absl::Seconds(1));
  EXPECT_EQ(backoff.NextDelay(), absl::Seconds(1));
}

TEST(BackoffTest, JitterStaysWithinItsBounds) {
  FixedRandom lowest(0.0);  // factor 1 - jitter
  Backoff low(Options(), &lowest);
  EXPECT_EQ(low.NextDelay(), absl::Milliseconds(80));
  EXPECT_EQ(low.NextDelay(), absl::Milliseconds(160));

  FixedRandom highest(1.0);  // factor 1 + jitter (Uniform01 never quite reaches it)
  Backoff high(Options(), &highest);
  EXPECT_EQ(high.NextDelay(), absl::Milliseconds(120));
  EXPECT_EQ(high.NextDelay(), absl::Milliseconds(240));
}

TEST(BackoffTest, JitteredDelayNeverExceedsTheCap) {
  FixedRandom highest(1.0);
  Backoff backoff(Options(), &highest);
  for (int i = 0; i < 10; ++i) {
    EXPECT_LE(backoff.NextDelay(), absl::Seconds(1));
  }
}

TEST(BackoffTest, RealRandomSourceStaysWithinJitterBounds) {
  BitGenRandomSource random;
  for (int i = 0; i < 1000; ++i) {
    Backoff backoff(Options(), &random);
    const absl::Duration delay = backoff.NextDelay();
    EXPECT_GE(delay, absl::Milliseconds(80));
    EXPECT_LE(delay, absl::Milliseconds(120));
  }
}

TEST(NextAttemptTimeTest, WaitsTheBackoffDelay) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  EXPECT_EQ(NextAttemptTime(now, absl::Milliseconds(300), std::nullopt,
                            now + absl::Seconds(10)),
            now + absl::Milliseconds(300));
}

TEST(NextAttemptTimeTest, RetryAfterIsALowerBound) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  const absl::Time deadline = now + absl::Seconds(10);
  EXPECT_EQ(NextAttemptTime(now, absl::Milliseconds(300), absl::Seconds(2),
                            deadline),
            now + absl::Seconds(2));
  // A Retry-After shorter than the backoff does not shorten it.
  EXPECT_EQ(NextAttemptTime(now, absl::Milliseconds(300), absl::ZeroDuration(),
                            deadline),
            now + absl::Milliseconds(300));
}

TEST(NextAttemptTimeTest, NeverPastTheDeadline) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  EXPECT_EQ(NextAttemptTime(now, absl::Milliseconds(300), std::nullopt,
                            now + absl::Milliseconds(300)),
            std::nullopt);
  EXPECT_EQ(NextAttemptTime(now, absl::Milliseconds(10), absl::Seconds(60),
                            now + absl::Seconds(5)),
            std::nullopt);
}

}  // namespace
}  // namespace uploadwatch
