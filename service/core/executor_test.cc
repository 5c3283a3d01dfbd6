#include "service/core/executor.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

int ThreadNice() {
  return getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
}

TEST(ThreadPoolExecutorTest, RunsEveryTaskOffTheCallersThread) {
  std::atomic<int> ran{0};
  std::atomic<bool> inline_run{false};
  const pid_t caller = gettid();
  {
    ThreadPoolExecutor executor(2);
    for (int i = 0; i < 100; ++i) {
      executor.Run([&] {
        if (gettid() == caller) inline_run = true;
        ++ran;
      });
    }
  }  // the destructor drains what is still queued
  EXPECT_EQ(ran.load(), 100);
  EXPECT_FALSE(inline_run.load());
}

TEST(ThreadPoolExecutorTest, NiceLowersItsThreadsAloneNotTheCaller) {
  const int before = ThreadNice();
  if (before + 5 > 19) GTEST_SKIP() << "already at nice " << before;
  ThreadPoolExecutor executor(2, /*nice=*/5);
  std::vector<int> seen(2, -100);
  absl::Notification first, second;
  // The first task waits for the second: they run on the two threads.
  executor.Run([&] {
    seen[0] = ThreadNice();
    first.Notify();
    second.WaitForNotification();
  });
  executor.Run([&] {
    seen[1] = ThreadNice();
    second.Notify();
  });
  first.WaitForNotification();
  second.WaitForNotification();
  EXPECT_EQ(seen[0], before + 5);
  EXPECT_EQ(seen[1], before + 5);
  EXPECT_EQ(ThreadNice(), before);  // the creating thread keeps its own
  EXPECT_TRUE(executor.nice_applied());
}

TEST(ThreadPoolExecutorTest, NoNiceKeepsTheProcesssPriority) {
  const int before = ThreadNice();
  ThreadPoolExecutor executor(1);
  int seen = -100;
  absl::Notification done;
  executor.Run([&] {
    seen = ThreadNice();
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_EQ(seen, before);
}

}  // namespace
}  // namespace uploadwatch
