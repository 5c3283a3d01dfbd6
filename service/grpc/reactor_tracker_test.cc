#include "service/grpc/reactor_tracker.h"

#include <thread>
#include <utility>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

TEST(ReactorTracker, CountsLiveTicketsUntilTheyAreGone) {
  ReactorTracker tracker;
  EXPECT_EQ(tracker.live(), 0);
  {
    ReactorTracker::Ticket a = tracker.Enter();
    ReactorTracker::Ticket b = tracker.Enter();
    EXPECT_EQ(tracker.live(), 2);
    b.Release();
    EXPECT_EQ(tracker.live(), 1);
    b.Release();  // idempotent
    EXPECT_EQ(tracker.live(), 1);
  }
  EXPECT_EQ(tracker.live(), 0);
}

TEST(ReactorTracker, AMovedTicketLetsGoOnce) {
  ReactorTracker tracker;
  ReactorTracker::Ticket a = tracker.Enter();
  ReactorTracker::Ticket b = std::move(a);
  EXPECT_EQ(tracker.live(), 1);
  a.Release();  // moved from: nothing to let go
  EXPECT_EQ(tracker.live(), 1);
  ReactorTracker::Ticket c = tracker.Enter();
  c = std::move(b);  // c's own ticket goes, b's is now c's
  EXPECT_EQ(tracker.live(), 1);
  c.Release();
  EXPECT_EQ(tracker.live(), 0);
}

TEST(ReactorTracker, WaitForNoneReturnsAtOnceWithoutCalls) {
  ReactorTracker tracker;
  tracker.WaitForNone();
  ReactorTracker::Ticket ticket = tracker.Enter();
  ticket.Release();
  tracker.WaitForNone();
}

TEST(ReactorTracker, WaitForNoneWaitsForTheLastTicketOnAnotherThread) {
  ReactorTracker tracker;
  ReactorTracker::Ticket ticket = tracker.Enter();
  absl::Notification waiting;
  absl::Notification returned;
  int written = 0;
  int seen = -1;
  std::thread waiter([&] {
    waiting.Notify();
    tracker.WaitForNone();
    seen = written;  // under TSan: ordered by the tracker alone
    returned.Notify();
  });
  waiting.WaitForNotification();
  // The waiter cannot return while the ticket lives, however long it runs.
  EXPECT_FALSE(returned.HasBeenNotified());
  EXPECT_EQ(tracker.live(), 1);
  // What the call wrote before letting go is visible to the waiter.
  std::thread call([&, t = std::move(ticket)]() mutable {
    written = 42;
    t.Release();
  });
  waiter.join();
  call.join();
  EXPECT_TRUE(returned.HasBeenNotified());
  EXPECT_EQ(seen, 42);
  EXPECT_EQ(tracker.live(), 0);
}

}  // namespace
}  // namespace uploadwatch
