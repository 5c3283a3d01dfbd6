#include "service/core/single_flight.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

using Flights = SingleFlight<std::string, int>;
const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

struct Answers {
  std::vector<int> got;
  Flights::Callback Waiter() {
    return [this](const absl::StatusOr<int>& r, absl::Time) {
      got.push_back(r.ok() ? *r : -1);
    };
  }
};

void Answer(std::vector<Flights::Callback> waiters, int value) {
  for (auto& w : waiters) std::move(w)(value, kT0);
}

TEST(SingleFlight, LateCallersJoinTheFlightUnderWay) {
  Flights flights;
  Answers a;
  const Flights::Ticket first = flights.Join("k", a.Waiter(), kT0);
  const Flights::Ticket second = flights.Join("k", a.Waiter(), kT0);
  const Flights::Ticket other = flights.Join("other", a.Waiter(), kT0);
  EXPECT_TRUE(first.send);
  EXPECT_FALSE(second.send);  // one upstream call per key
  EXPECT_TRUE(other.send);
  EXPECT_EQ(first.flight, second.flight);
  absl::Time sent;
  Answer(flights.Complete("k", first.flight, &sent), 7);
  EXPECT_EQ(sent, kT0);
  EXPECT_EQ(a.got, (std::vector<int>{7, 7}));
  EXPECT_EQ(flights.size(), 1u);
  // After the answer a new caller starts a new flight.
  EXPECT_TRUE(flights.Join("k", a.Waiter(), kT0).send);
}

TEST(SingleFlight, TheLastWaiterLeavingBeforeTheSendMeansItIsNeverSent) {
  Flights flights;
  Answers a;
  const Flights::Ticket t = flights.Join("k", a.Waiter(), kT0);
  ASSERT_TRUE(t.send);
  const std::optional<Flights::RequestId> cancel = flights.Leave(t);
  ASSERT_TRUE(cancel.has_value());
  EXPECT_EQ(*cancel, 0u);  // nothing was sent: nothing to cancel
  EXPECT_FALSE(flights.ShouldSend("k", t.flight));
  EXPECT_FALSE(flights.Sent("k", t.flight, 42));  // too late: cancel it
}

TEST(SingleFlight, TheLastWaiterLeavingASentCallNamesItForCancelling) {
  Flights flights;
  Answers a;
  const Flights::Ticket t1 = flights.Join("k", a.Waiter(), kT0);
  const Flights::Ticket t2 = flights.Join("k", a.Waiter(), kT0);
  ASSERT_TRUE(flights.ShouldSend("k", t1.flight));
  ASSERT_TRUE(flights.Sent("k", t1.flight, 42));
  EXPECT_FALSE(flights.Leave(t1).has_value());  // t2 still waits
  EXPECT_FALSE(flights.Leave(t1).has_value());  // idempotent
  const std::optional<Flights::RequestId> cancel = flights.Leave(t2);
  ASSERT_TRUE(cancel.has_value());
  EXPECT_EQ(*cancel, 42u);
  EXPECT_EQ(flights.size(), 0u);
}

TEST(SingleFlight, TheAnswerOfALeftOrSupersededFlightIsDropped) {
  Flights flights;
  Answers a;
  const Flights::Ticket old = flights.Join("k", a.Waiter(), kT0);
  flights.Sent("k", old.flight, 1);
  flights.Leave(old);
  const Flights::Ticket fresh =
      flights.Join("k", a.Waiter(), kT0 + absl::Seconds(1));
  EXPECT_TRUE(fresh.send);
  EXPECT_NE(fresh.flight, old.flight);
  absl::Time sent;
  EXPECT_TRUE(flights.Complete("k", old.flight, &sent).empty());
  EXPECT_TRUE(a.got.empty());
  Answer(flights.Complete("k", fresh.flight, &sent), 9);
  EXPECT_EQ(sent, kT0 + absl::Seconds(1));
  EXPECT_EQ(a.got, (std::vector<int>{9}));
}

TEST(SingleFlight, TakeAllHandsOverRequestsAndWaiters) {
  Flights flights;
  Answers a;
  const Flights::Ticket t = flights.Join("k", a.Waiter(), kT0);
  flights.Join("k", a.Waiter(), kT0);
  flights.Sent("k", t.flight, 5);
  flights.Join("j", a.Waiter(), kT0);
  std::vector<Flights::Abandoned> all = flights.TakeAll();
  ASSERT_EQ(all.size(), 2u);
  size_t waiters = 0;
  std::vector<Flights::RequestId> requests;
  for (auto& f : all) {
    waiters += f.waiters.size();
    requests.push_back(f.request);
  }
  EXPECT_EQ(waiters, 3u);
  std::sort(requests.begin(), requests.end());
  EXPECT_EQ(requests, (std::vector<Flights::RequestId>{0, 5}));
  EXPECT_EQ(flights.size(), 0u);
}

}  // namespace
}  // namespace uploadwatch
