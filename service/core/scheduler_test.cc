#include "service/core/scheduler.h"

#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

TEST(ThreadScheduler, RunsTasksInTimeOrder) {
  ThreadScheduler scheduler;
  absl::Mutex mu;
  std::vector<int> order;
  absl::Notification done;
  const absl::Time now = absl::Now();
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
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  absl::MutexLock lock(&mu);
  EXPECT_THAT(order, ::testing::ElementsAre(1, 2, 3));
}

TEST(ThreadScheduler, CancelledTasksNeverRun) {
  ThreadScheduler scheduler;
  std::atomic<bool> ran{false};
  absl::Notification done;
  auto id = scheduler.RunAt(absl::Now() + absl::Milliseconds(30), [&] { ran = true; });
  scheduler.RunAt(absl::Now() + absl::Milliseconds(60), [&] { done.Notify(); });
  EXPECT_TRUE(scheduler.Cancel(id));
  EXPECT_FALSE(scheduler.Cancel(id));  // already gone
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(5)));
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
