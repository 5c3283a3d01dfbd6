#include "service/metrica/quota_guard.h"

#include <algorithm>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/clock.h"

namespace uploadwatch {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr absl::Duration kLong = absl::Hours(1);

class QuotaGuardTest : public ::testing::Test {
 protected:
  // No rate limit unless a test asks for one.
  QuotaGuard::Options Unlimited() {
    QuotaGuard::Options options;
    options.requests_per_second = 0;
    return options;
  }

  absl::Time Later(absl::Duration d = kLong) { return clock_.Now() + d; }

  FakeClock clock_;
};

TEST_F(QuotaGuardTest, DefaultsStayInsideMetricasQuotas) {
  QuotaGuard::Options options;
  EXPECT_EQ(options.max_in_flight_per_token, 3);
  EXPECT_LT(options.requests_per_second, 30);
  EXPECT_LE(options.burst + options.requests_per_second, 30);
}

TEST_F(QuotaGuardTest, AtMostThreeInFlightPerToken) {
  QuotaGuard guard(Unlimited(), &clock_);
  for (QuotaGuard::Ticket t = 1; t <= 5; ++t) guard.Enqueue(t, "alice", Later());
  QuotaGuard::Step step = guard.Advance();
  EXPECT_THAT(step.send, ElementsAre(1, 2, 3));
  EXPECT_EQ(guard.in_flight("alice"), 3);
  EXPECT_EQ(guard.queued(), 2u);
  EXPECT_THAT(guard.Advance().send, IsEmpty());

  guard.Release(2);
  EXPECT_THAT(guard.Advance().send, ElementsAre(4));
  guard.Release(1);
  guard.Release(3);
  EXPECT_THAT(guard.Advance().send, ElementsAre(5));
  EXPECT_EQ(guard.in_flight("alice"), 2);
}

TEST_F(QuotaGuardTest, OtherTokensAreNotHeldUpByACappedOne) {
  QuotaGuard guard(Unlimited(), &clock_);
  for (QuotaGuard::Ticket t = 1; t <= 5; ++t) guard.Enqueue(t, "alice", Later());
  guard.Enqueue(6, "bob", Later());
  guard.Enqueue(7, "bob", Later());
  EXPECT_THAT(guard.Advance().send, ElementsAre(1, 2, 3, 6, 7));
  EXPECT_EQ(guard.in_flight("bob"), 2);
}

TEST_F(QuotaGuardTest, CapIsConfigurable) {
  QuotaGuard::Options options = Unlimited();
  options.max_in_flight_per_token = 1;
  QuotaGuard guard(options, &clock_);
  guard.Enqueue(1, "alice", Later());
  guard.Enqueue(2, "alice", Later());
  EXPECT_THAT(guard.Advance().send, ElementsAre(1));
}

TEST_F(QuotaGuardTest, ReleasingAnUnknownTicketIsHarmless) {
  QuotaGuard guard(Unlimited(), &clock_);
  guard.Release(42);
  guard.Enqueue(1, "alice", Later());
  EXPECT_THAT(guard.Advance().send, ElementsAre(1));
  guard.Release(1);
  guard.Release(1);
  EXPECT_EQ(guard.in_flight("alice"), 0);
}

TEST_F(QuotaGuardTest, RateLimitReleasesABurstThenOneSendPerInterval) {
  QuotaGuard::Options options;
  options.max_in_flight_per_token = 0;
  options.requests_per_second = 10;  // one every 100 ms
  options.burst = 2;
  QuotaGuard guard(options, &clock_);
  for (QuotaGuard::Ticket t = 1; t <= 5; ++t) guard.Enqueue(t, "alice", Later());

  QuotaGuard::Step step = guard.Advance();
  EXPECT_THAT(step.send, ElementsAre(1, 2));
  EXPECT_EQ(step.next_check, clock_.Now() + absl::Milliseconds(100));

  clock_.Advance(absl::Milliseconds(99));
  EXPECT_THAT(guard.Advance().send, IsEmpty());
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_THAT(guard.Advance().send, ElementsAre(3));
  clock_.Advance(absl::Milliseconds(250));
  EXPECT_THAT(guard.Advance().send, ElementsAre(4, 5));
}

// The shape CurlMetricaClientTest.RateLimitSpacesRequests checks on the
// wire: after an idle start, a bucket of one releases one request at once
// and then exactly one per interval, measured from that first send.
TEST_F(QuotaGuardTest, AfterAnIdleStartABurstOfOneSpacesEverySend) {
  QuotaGuard::Options options;
  options.max_in_flight_per_token = 0;
  options.requests_per_second = 10;
  options.burst = 1;
  QuotaGuard guard(options, &clock_);
  clock_.Advance(absl::Seconds(7));  // idle: the bucket stays at one
  const absl::Time start = clock_.Now();
  for (QuotaGuard::Ticket t = 1; t <= 3; ++t) guard.Enqueue(t, "alice", Later());
  QuotaGuard::Step step = guard.Advance();
  EXPECT_THAT(step.send, ElementsAre(1));
  EXPECT_EQ(step.next_check, start + absl::Milliseconds(100));
  clock_.Advance(absl::Microseconds(99999));
  EXPECT_THAT(guard.Advance().send, IsEmpty());
  clock_.Advance(absl::Microseconds(1));
  step = guard.Advance();
  EXPECT_THAT(step.send, ElementsAre(2));
  EXPECT_EQ(step.next_check, start + absl::Milliseconds(200));
  clock_.Advance(absl::Microseconds(99999));
  EXPECT_THAT(guard.Advance().send, IsEmpty());
  clock_.Advance(absl::Microseconds(1));
  EXPECT_THAT(guard.Advance().send, ElementsAre(3));
}

TEST_F(QuotaGuardTest, RateLimitIsSharedByAllTokens) {
  QuotaGuard::Options options;
  options.requests_per_second = 10;
  options.burst = 1;
  QuotaGuard guard(options, &clock_);
  guard.Enqueue(1, "alice", Later());
  guard.Enqueue(2, "bob", Later());
  EXPECT_THAT(guard.Advance().send, ElementsAre(1));
  clock_.Advance(absl::Milliseconds(100));
  EXPECT_THAT(guard.Advance().send, ElementsAre(2));
}

TEST_F(QuotaGuardTest, BucketDoesNotFillPastTheBurst) {
  QuotaGuard::Options options;
  options.max_in_flight_per_token = 0;
  options.requests_per_second = 10;
  options.burst = 3;
  QuotaGuard guard(options, &clock_);
  clock_.Advance(absl::Hours(1));
  for (QuotaGuard::Ticket t = 1; t <= 10; ++t) guard.Enqueue(t, "alice", Later());
  EXPECT_EQ(guard.Advance().send.size(), 3u);
}

TEST_F(QuotaGuardTest, WaitingRequestsLeaveInArrivalOrder) {
  QuotaGuard::Options options;
  options.max_in_flight_per_token = 1;
  options.requests_per_second = 0;
  QuotaGuard guard(options, &clock_);
  guard.Enqueue(1, "alice", Later());
  guard.Enqueue(2, "alice", Later());
  guard.Enqueue(3, "bob", Later());
  guard.Enqueue(4, "alice", Later());
  guard.Enqueue(5, "bob", Later());
  EXPECT_THAT(guard.Advance().send, ElementsAre(1, 3));
  guard.Release(1);
  guard.Release(3);
  EXPECT_THAT(guard.Advance().send, ElementsAre(2, 5));
  guard.Release(2);
  EXPECT_THAT(guard.Advance().send, ElementsAre(4));
}

TEST_F(QuotaGuardTest, RateLimitedRequestsLeaveInArrivalOrder) {
  QuotaGuard::Options options;
  options.requests_per_second = 1;
  options.burst = 1;
  QuotaGuard guard(options, &clock_);
  std::vector<QuotaGuard::Ticket> sent;
  for (QuotaGuard::Ticket t = 1; t <= 4; ++t) {
    guard.Enqueue(t, t % 2 ? "alice" : "bob", Later());
  }
  for (int i = 0; i < 4; ++i) {
    for (QuotaGuard::Ticket t : guard.Advance().send) {
      sent.push_back(t);
      guard.Release(t);
    }
    clock_.Advance(absl::Seconds(1));
  }
  EXPECT_THAT(sent, ElementsAre(1, 2, 3, 4));
}

TEST_F(QuotaGuardTest, QueuedRequestExpiresAtItsDeadlineAndIsNeverSent) {
  QuotaGuard guard(Unlimited(), &clock_);
  for (QuotaGuard::Ticket t = 1; t <= 3; ++t) guard.Enqueue(t, "alice", Later());
  guard.Enqueue(4, "alice", Later(absl::Seconds(2)));
  guard.Enqueue(5, "alice", Later(absl::Seconds(5)));
  QuotaGuard::Step step = guard.Advance();
  EXPECT_THAT(step.send, ElementsAre(1, 2, 3));
  EXPECT_EQ(step.next_check, clock_.Now() + absl::Seconds(2));

  clock_.Advance(absl::Seconds(2));
  step = guard.Advance();
  EXPECT_THAT(step.expired, ElementsAre(4));
  EXPECT_THAT(step.send, IsEmpty());
  EXPECT_EQ(step.next_check, clock_.Now() + absl::Seconds(3));

  // A slot frees after the deadline: the expired request still is not sent.
  guard.Release(1);
  step = guard.Advance();
  EXPECT_THAT(step.send, ElementsAre(5));
  EXPECT_THAT(step.expired, IsEmpty());
}

TEST_F(QuotaGuardTest, RateLimitedRequestExpiresInsteadOfBeingSentLate) {
  QuotaGuard::Options options;
  options.requests_per_second = 1;
  options.burst = 1;
  QuotaGuard guard(options, &clock_);
  guard.Enqueue(1, "alice", Later());
  guard.Enqueue(2, "bob", Later(absl::Milliseconds(500)));
  EXPECT_THAT(guard.Advance().send, ElementsAre(1));
  clock_.Advance(absl::Seconds(1));
  QuotaGuard::Step step = guard.Advance();
  EXPECT_THAT(step.expired, ElementsAre(2));
  EXPECT_THAT(step.send, IsEmpty());
}

TEST_F(QuotaGuardTest, RemovedRequestIsNeverSent) {
  QuotaGuard guard(Unlimited(), &clock_);
  for (QuotaGuard::Ticket t = 1; t <= 4; ++t) guard.Enqueue(t, "alice", Later());
  EXPECT_TRUE(guard.Remove(2));
  EXPECT_FALSE(guard.Remove(2));
  EXPECT_THAT(guard.Advance().send, ElementsAre(1, 3, 4));
  EXPECT_FALSE(guard.Remove(1));  // in flight, not queued
}

TEST_F(QuotaGuardTest, NothingQueuedMeansNoWakeUp) {
  QuotaGuard guard(QuotaGuard::Options(), &clock_);
  EXPECT_EQ(guard.Advance().next_check, absl::InfiniteFuture());
}

// --- Callers who give up ------------------------------------------------------

// Issue 13's burst: callers give up on requests Metrica takes 3 s to answer.
QuotaGuard::Options HoldFor(absl::Duration hold) {
  QuotaGuard::Options options;
  options.requests_per_second = 0;
  options.abandoned_hold = hold;
  return options;
}

TEST_F(QuotaGuardTest, AnAbandonedRequestKeepsItsSlotUntilItsAnswerArrives) {
  QuotaGuard guard(HoldFor(absl::Seconds(20)), &clock_);
  for (QuotaGuard::Ticket t = 1; t <= 4; ++t) guard.Enqueue(t, "alice", Later());
  EXPECT_THAT(guard.Advance().send, ElementsAre(1, 2, 3));
  clock_.Advance(absl::Milliseconds(300));
  EXPECT_TRUE(guard.Abandon(1));  // keep the transfer: Metrica still works on it
  EXPECT_EQ(guard.held(), 1u);
  QuotaGuard::Step step = guard.Advance();
  EXPECT_THAT(step.send, IsEmpty());
  EXPECT_EQ(guard.in_flight("alice"), 3);
  EXPECT_EQ(step.next_check, clock_.Now() + absl::Seconds(20) -
                                 absl::Milliseconds(300));

  clock_.Advance(absl::Milliseconds(2700));  // Metrica answers anyway
  guard.Release(1);
  EXPECT_EQ(guard.held(), 0u);
  EXPECT_THAT(guard.Advance().send, ElementsAre(4));
}

TEST_F(QuotaGuardTest, AnAbandonedRequestWithoutAnswerIsHeldForTheHoldOnly) {
  QuotaGuard guard(HoldFor(absl::Seconds(20)), &clock_);
  guard.Enqueue(1, "alice", Later());
  guard.Enqueue(2, "alice", Later());
  guard.Enqueue(3, "alice", Later());
  guard.Enqueue(4, "alice", Later());
  EXPECT_THAT(guard.Advance().send, ElementsAre(1, 2, 3));
  clock_.Advance(absl::Seconds(5));
  EXPECT_TRUE(guard.Abandon(2));
  EXPECT_TRUE(guard.Abandon(2));  // twice: no change
  clock_.Advance(absl::Seconds(15) - absl::Milliseconds(1));
  QuotaGuard::Step step = guard.Advance();
  EXPECT_THAT(step.hold_over, IsEmpty());
  EXPECT_THAT(step.send, IsEmpty());
  clock_.Advance(absl::Milliseconds(1));  // 20 s after it was sent
  step = guard.Advance();
  EXPECT_THAT(step.hold_over, ElementsAre(2));
  EXPECT_THAT(step.send, ElementsAre(4));  // the freed slot, in the same pass
  EXPECT_EQ(guard.in_flight("alice"), 3);
  guard.Release(2);  // a late Release of a hold that ended: harmless
  EXPECT_EQ(guard.in_flight("alice"), 3);
}

TEST_F(QuotaGuardTest, AbandoningAfterTheHoldFreesTheSlotAtOnce) {
  QuotaGuard guard(HoldFor(absl::Seconds(2)), &clock_);
  guard.Enqueue(1, "alice", Later());
  EXPECT_THAT(guard.Advance().send, ElementsAre(1));
  clock_.Advance(absl::Seconds(2));
  EXPECT_FALSE(guard.Abandon(1));
  EXPECT_EQ(guard.in_flight("alice"), 0);
  EXPECT_FALSE(guard.Abandon(99));  // unknown
}

TEST_F(QuotaGuardTest, ABurstOfImpatientCallersNeverExceedsTheCap) {
  // 50 callers with a 300 ms deadline, each request taking Metrica 3 s: at
  // no moment are more than 3 at Metrica, and requests nobody waits for any
  // more are never sent.
  QuotaGuard guard(HoldFor(absl::Seconds(20)), &clock_);
  const absl::Time start = clock_.Now();
  const absl::Time deadline = start + absl::Milliseconds(300);
  std::vector<absl::Time> answer_at(51, absl::InfiniteFuture());
  std::vector<bool> abandoned(51, false);
  int sent = 0;
  int expired = 0;
  int max_at_metrica = 0;
  for (QuotaGuard::Ticket t = 1; t <= 50; ++t) {
    guard.Enqueue(t, "alice", deadline);
  }
  for (int tick = 0; tick <= 100; ++tick) {  // 10 s in steps of 100 ms
    if (tick > 0) clock_.Advance(absl::Milliseconds(100));
    for (QuotaGuard::Ticket t = 1; t <= 50; ++t) {
      if (answer_at[t] <= clock_.Now()) {  // Metrica answers, 3 s after
        guard.Release(t);
        answer_at[t] = absl::InfiniteFuture();
      } else if (answer_at[t] != absl::InfiniteFuture() && !abandoned[t] &&
                 clock_.Now() >= deadline) {  // the caller gives up
        EXPECT_TRUE(guard.Abandon(t));
        abandoned[t] = true;
      }
    }
    QuotaGuard::Step step = guard.Advance();
    expired += step.expired.size();
    for (QuotaGuard::Ticket t : step.send) {
      ++sent;
      answer_at[t] = clock_.Now() + absl::Seconds(3);
    }
    max_at_metrica = std::max(max_at_metrica, guard.in_flight("alice"));
  }
  EXPECT_EQ(sent, 3);
  EXPECT_EQ(expired, 47);
  EXPECT_EQ(max_at_metrica, 3);
  EXPECT_EQ(guard.in_flight("alice"), 0);  // all answered by now

  // A fresh request goes out at once.
  guard.Enqueue(100, "alice", Later());
  EXPECT_THAT(guard.Advance().send, ElementsAre(100));
}

}  // namespace
}  // namespace uploadwatch
