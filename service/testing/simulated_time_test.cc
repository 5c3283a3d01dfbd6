#include "service/testing/simulated_time.h"

#include <vector>

#include "gtest/gtest.h"

namespace uploadwatch::testing {
namespace {

TEST(SimulatedTime, RunsDueTasksInTimeOrderWithNowAtTheirTime) {
  SimulatedTime time;
  const absl::Time t0 = time.Now();
  std::vector<std::pair<int, absl::Duration>> ran;
  auto record = [&](int i) {
    return [&, i] { ran.push_back({i, time.Now() - t0}); };
  };
  time.RunAt(t0 + absl::Seconds(3), record(3));
  time.RunAt(t0 + absl::Seconds(1), record(1));
  time.RunAt(t0 + absl::Seconds(2), record(2));
  time.Advance(absl::Seconds(2));
  ASSERT_EQ(ran.size(), 2u);
  EXPECT_EQ(ran[0], std::make_pair(1, absl::Seconds(1)));
  EXPECT_EQ(ran[1], std::make_pair(2, absl::Seconds(2)));
  EXPECT_EQ(time.Now() - t0, absl::Seconds(2));
  time.Advance(absl::Seconds(5));
  ASSERT_EQ(ran.size(), 3u);
  EXPECT_EQ(ran[2], std::make_pair(3, absl::Seconds(3)));
  EXPECT_EQ(time.Now() - t0, absl::Seconds(7));
}

TEST(SimulatedTime, TasksScheduledByTasksRunIfDueWithinTheAdvance) {
  SimulatedTime time;
  int runs = 0;
  std::function<void()> tick = [&] {
    ++runs;
    time.RunAt(time.Now() + absl::Seconds(1), tick);
  };
  time.RunAt(time.Now() + absl::Seconds(1), tick);
  time.Advance(absl::Seconds(10));
  EXPECT_EQ(runs, 10);
  EXPECT_EQ(time.pending(), 1u);
}

TEST(SimulatedTime, CancelledTasksNeverRunAndRunIsNeverInline) {
  SimulatedTime time;
  bool cancelled_ran = false, run_ran = false;
  const auto id = time.RunAt(time.Now() + absl::Seconds(1),
                             [&] { cancelled_ran = true; });
  EXPECT_TRUE(time.Cancel(id));
  EXPECT_FALSE(time.Cancel(id));
  time.Run([&] { run_ran = true; });
  EXPECT_FALSE(run_ran);
  time.RunPending();
  EXPECT_TRUE(run_ran);
  time.Advance(absl::Seconds(2));
  EXPECT_FALSE(cancelled_ran);
}

}  // namespace
}  // namespace uploadwatch::testing
