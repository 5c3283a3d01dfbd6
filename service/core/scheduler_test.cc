#include "service/core/scheduler.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"
#include "service/common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

// On a FakeClock that stands still while the tasks are queued, so that no
// task can come due before the others are in (however slow the machine):
// the order is the scheduler's alone.
TEST(ThreadScheduler, RunsTasksInTimeOrder) {
  FakeClock clock;
  ThreadScheduler scheduler(&clock);
  absl::Mutex mu;
  std::vector<int> order;
  absl::Notification done;
  const absl::Time now = clock.Now();
  auto record = [&](int i) {
    return [&, i] {
      absl::MutexLock lock(&mu);
      order.push_back(i);
    };
  };
  scheduler.RunAt(now + absl::Milliseconds(60), record(3));
  scheduler.RunAt(now + absl::Milliseconds(20), record(1));
  scheduler.RunAt(now + absl::Milliseconds(40), record(2));
  scheduler.RunAt(now + absl::Milliseconds(80), [&] { done.Notify(); });
  clock.Advance(absl::Milliseconds(100));  // all due at once
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  absl::MutexLock lock(&mu);
  EXPECT_THAT(order, ::testing::ElementsAre(1, 2, 3));
}

TEST(ThreadScheduler, NothingRunsBeforeItsTimeOnTheGivenClock) {
  FakeClock clock;
  ThreadScheduler scheduler(&clock);
  std::atomic<bool> ran{false};
  absl::Notification done;
  scheduler.RunAt(clock.Now() + absl::Milliseconds(30), [&] {
    ran = true;
    done.Notify();
  });
  // The scheduler waits on the clock it was given: wall time passing (its
  // real-time wait ends after 30 ms) does not make the task due.
  EXPECT_FALSE(done.WaitForNotificationWithTimeout(absl::Milliseconds(100)));
  EXPECT_FALSE(ran);
  clock.Advance(absl::Milliseconds(30));
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
}

TEST(ThreadScheduler, CancelledTasksNeverRun) {
  FakeClock clock;
  ThreadScheduler scheduler(&clock);
  std::atomic<bool> ran{false};
  absl::Notification done;
  auto id = scheduler.RunAt(clock.Now() + absl::Milliseconds(30),
                            [&] { ran = true; });
  scheduler.RunAt(clock.Now() + absl::Milliseconds(60), [&] { done.Notify(); });
  EXPECT_TRUE(scheduler.Cancel(id));
  EXPECT_FALSE(scheduler.Cancel(id));  // already gone
  clock.Advance(absl::Milliseconds(60));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_FALSE(ran);
}

TEST(ThreadScheduler, ATaskMayScheduleAnother) {
  ThreadScheduler scheduler;
  absl::Notification done;
  scheduler.RunAt(absl::Now(), [&] {
    scheduler.RunAt(absl::Now() + absl::Milliseconds(10), [&] { done.Notify(); });
  });
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(5)));
}

TEST(ThreadScheduler, PendingTasksAreDroppedOnDestruction) {
  std::atomic<bool> ran{false};
  {
    ThreadScheduler scheduler;
    scheduler.RunAt(absl::Now() + absl::Hours(1), [&] { ran = true; });
  }
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace uploadwatch
