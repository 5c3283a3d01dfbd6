#include "service/redis/event_loop.h"

#include <unistd.h>

#include <atomic>
#include <functional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace uploadwatch::redis {
namespace {

TEST(EventLoopTest, PostedTasksRunOnTheLoopThreadInOrder) {
  EventLoop loop;
  absl::Mutex mu;
  std::vector<int> order;
  bool on_loop = true;
  absl::Notification done;
  for (int i = 0; i < 100; ++i) {
    loop.Post([&, i] {
      absl::MutexLock lock(&mu);
      on_loop = on_loop && loop.InLoopThread();
      order.push_back(i);
      if (i == 99) done.Notify();
    });
  }
  done.WaitForNotification();
  absl::MutexLock lock(&mu);
  EXPECT_TRUE(on_loop);
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

TEST(EventLoopTest, TimersRunByDueTimeAndCancelledOnesNever) {
  EventLoop loop;
  absl::Mutex mu;
  std::vector<int> order;
  absl::Notification done;
  loop.RunAfter(absl::Milliseconds(30), [&] {
    absl::MutexLock lock(&mu);
    order.push_back(30);
    done.Notify();
  });
  EventLoop::TimerId cancelled = loop.RunAfter(absl::Milliseconds(10), [&] {
    absl::MutexLock lock(&mu);
    order.push_back(-1);
  });
  loop.RunAfter(absl::Milliseconds(1), [&] {
    absl::MutexLock lock(&mu);
    order.push_back(1);
  });
  loop.Cancel(cancelled);
  done.WaitForNotification();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(order, (std::vector<int>{1, 30}));
}

// The case TSan found in RedisConnection: a command's timeout timer and the
// work that frees its Pending (the reply, or a dropped connection) due in the
// same round. The earlier one cancels the later one, which must then not run.
TEST(EventLoopTest, ADueTimerCancelledByAnEarlierOneNeverRuns) {
  EventLoop loop;
  absl::Notification hold, done;
  loop.Post([&] { hold.WaitForNotification(); });  // keeps both timers waiting
  EventLoop::TimerId later = 0;
  std::atomic<bool> later_ran{false};
  loop.RunAfter(absl::ZeroDuration(), [&] { loop.Cancel(later); });
  later = loop.RunAfter(absl::ZeroDuration(), [&] { later_ran = true; });
  loop.RunAfter(absl::ZeroDuration(), [&] { done.Notify(); });
  hold.Notify();  // all three are due when the loop looks at its timers
  done.WaitForNotification();
  EXPECT_FALSE(later_ran.load());
}

TEST(EventLoopTest, SocketsAreServedWhileTasksKeepComing) {
  EventLoop loop;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::atomic<bool> readable{false}, stop{false};
  FdWatch watch;
  watch.fd = fds[0];
  watch.want_read = true;
  watch.on_readable = [&] { readable = true; };
  loop.RunSync([&] { loop.Watch(&watch); });
  // A task that always posts the next one: the loop is never idle.
  std::function<void()> again = [&] {
    if (!stop) loop.Post([&] { again(); });
  };
  loop.Post([&] { again(); });
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  absl::Time until = absl::Now() + absl::Seconds(10);
  while (!readable && absl::Now() < until) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_TRUE(readable.load());
  stop = true;
  loop.RunSync([&] { loop.Unwatch(&watch); });
  close(fds[0]);
  close(fds[1]);
}

TEST(EventLoopTest, RunSyncWaitsForTheTask) {
  EventLoop loop;
  int value = 0;
  loop.RunSync([&] { value = 42; });
  EXPECT_EQ(value, 42);
}

TEST(EventLoopTest, PendingWorkIsDroppedAtDestruction) {
  std::atomic<bool> ran{false};
  {
    EventLoop loop;
    loop.RunAfter(absl::Hours(1), [&] { ran = true; });
  }
  EXPECT_FALSE(ran.load());
}

}  // namespace
}  // namespace uploadwatch::redis
