#include "service/redis/redis_coordinator.h"

#include <algorithm>
#include <fstream>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "service/redis/testing/redis_server.h"

namespace uploadwatch::redis {
namespace {

using testing::RedisServer;
using testing::WaitFor;

TEST(RedisCoordinatorTest, FlagsAreCheckedWithMessagesNamingThem) {
  MultiReplicaFlags f;
  f.redis = "nohost";
  EXPECT_NE(OptionsFromFlags(f).status().message().find("--redis"),
            std::string::npos);
  f.redis = "127.0.0.1:6379";
  f.redis_password_file = "/nonexistent";
  EXPECT_NE(OptionsFromFlags(f).status().message().find("--redis_password_file"),
            std::string::npos);
  f.redis_password_file = "";
  f.redis_fallback_parallel = 0;
  EXPECT_FALSE(OptionsFromFlags(f).ok());
  f.redis_fallback_parallel = 5;
  auto o = OptionsFromFlags(f);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->parallel_cap.fallback_parallel, 3);  // never above the cap
  EXPECT_EQ(o->parallel_cap.cap, 3);
  EXPECT_EQ(o->daily_budget.fallback_per_token, 1000);
}

TEST(RedisCoordinatorTest, AllPartsWorkThroughOneCoordinatorAndReportDegraded) {
  RedisServer server("pw");
  ASSERT_TRUE(server.Start().ok());
  std::string pw = std::string(std::getenv("TEST_TMPDIR")) + "/redis-pw";
  std::ofstream(pw) << "pw\n";
  MultiReplicaFlags f;
  f.redis = server.address();
  f.redis_password_file = pw;
  f.redis_key_prefix = "uw:test:";
  auto options = OptionsFromFlags(f);
  ASSERT_TRUE(options.ok()) << options.status();
  options->redis.reconnect_backoff.max = absl::Milliseconds(200);
  RedisCoordinator c(*options, [](const std::string&, bool) {});
  ASSERT_TRUE(WaitFor([&] { return c.state() == ConnectionState::kConnected; }));

  const std::string group = PollGroupKey("0123456789abcdef", 2215573);
  c.leases().Want(group);
  ASSERT_TRUE(WaitFor([&] { return c.leases().ShouldPoll(group); }));
  EXPECT_EQ(*server.Run({"GET", "uw:test:lease:" + group}), c.replica_id());

  absl::Notification charged;
  c.daily_budget().TryCharge("0123456789abcdef", [&](BudgetCharge b) {
    EXPECT_TRUE(b.granted && b.shared);
    charged.Notify();
  });
  charged.WaitForNotification();

  absl::Notification got;
  c.history().Subscribe(group, "0-0", [&](const std::string&, const StreamEntry& e) {
    if (e.version == 1) got.Notify();
  }).IgnoreError();
  // Both the reply and the subscriber's copy, before Redis is killed: the
  // subscriber can see the entry before the publisher's reply arrives.
  absl::Notification published;
  c.history().Publish(group, 1, "s",
                      PublishFence{c.leases().LeaseKey(group), c.replica_id()},
                      [&](absl::StatusOr<std::string> id) {
                        EXPECT_TRUE(id.ok()) << id.status();
                        published.Notify();
                      });
  got.WaitForNotification();
  published.WaitForNotification();

  server.Kill();
  ASSERT_TRUE(WaitFor([&] { return c.state() == ConnectionState::kDegraded; }));
  EXPECT_TRUE(c.leases().ShouldPoll(group));  // fallback: poll locally
  ASSERT_TRUE(server.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return c.state() == ConnectionState::kConnected; }));
  ASSERT_TRUE(WaitFor([&] {
    return server.Run({"GET", "uw:test:lease:" + group}).value_or("") ==
           c.replica_id();
  }));
}

// What one poll costs in Redis on the polling replica, and how long a state
// takes to reach a watcher's replica beside it: the figures issue 14 asks for
// (here for the Redis side alone; the server does not use it yet).
TEST(RedisCoordinatorTest, APollCostsFourCommandsAndReachesTheOtherReplica) {
  RedisServer server;
  ASSERT_TRUE(server.Start().ok());
  MultiReplicaFlags f;
  f.redis = server.address();
  auto options = OptionsFromFlags(f);
  ASSERT_TRUE(options.ok());
  RedisCoordinator poller(*options, [](const std::string&, bool) {});
  RedisCoordinator watcher(*options, [](const std::string&, bool) {});
  ASSERT_TRUE(WaitFor([&] {
    return poller.state() == ConnectionState::kConnected &&
           watcher.state() == ConnectionState::kConnected;
  }));
  const std::string fp = "0123456789abcdef";
  const std::string group = PollGroupKey(fp, 2215573);
  poller.leases().Want(group);
  ASSERT_TRUE(WaitFor([&] { return poller.leases().ShouldPoll(group); }));

  constexpr int kPolls = 200;
  absl::Mutex mu;
  std::vector<absl::Time> published(kPolls + 1);
  std::vector<absl::Duration> latency;
  ASSERT_TRUE(watcher.history()
                  .Subscribe(group, "",
                             [&](const std::string&, const StreamEntry& e) {
                               absl::MutexLock lock(&mu);
                               latency.push_back(absl::Now() - published[e.version]);
                             })
                  .ok());
  ASSERT_TRUE(WaitFor([&] { return !watcher.history().LastDeliveredId(group).empty(); }));

  int64_t commands_before = poller.commands().stats().commands;
  for (int v = 1; v <= kPolls; ++v) {
    // One poll: a parallel slot, a budget charge, the request (not here),
    // the slot back, the state published.
    auto slot = testing::Await<absl::StatusOr<ParallelSlot>>([&](auto done) {
      poller.parallel_cap().Acquire(fp, absl::Now() + absl::Seconds(5),
                                    std::move(done));
    });
    ASSERT_TRUE(slot.ok() && slot->shared());
    BudgetCharge charge = testing::Await<BudgetCharge>(
        [&](auto done) { poller.daily_budget().TryCharge(fp, std::move(done)); });
    ASSERT_TRUE(charge.granted && charge.shared);
    slot->Release();
    {
      absl::MutexLock lock(&mu);
      published[v] = absl::Now();
    }
    auto id = testing::Await<absl::StatusOr<std::string>>([&](auto done) {
      poller.history().Publish(
          group, v, "state",
          PublishFence{poller.leases().LeaseKey(group), poller.replica_id()},
          std::move(done));
    });
    ASSERT_TRUE(id.ok()) << id.status();
  }
  ASSERT_TRUE(WaitFor([&] {
    absl::MutexLock lock(&mu);
    return latency.size() == kPolls;
  }));
  // Lease renewals (one per group every ttl/3) may fall in between.
  int64_t commands = poller.commands().stats().commands - commands_before;
  EXPECT_GE(commands, 4 * kPolls);
  EXPECT_LE(commands, 4 * kPolls + 5);
  absl::MutexLock lock(&mu);
  std::sort(latency.begin(), latency.end());
  std::printf(
      "Redis commands per poll on the poller: %.2f; publish -> other replica: "
      "p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d polls)\n",
      static_cast<double>(commands) / kPolls,
      absl::ToDoubleMilliseconds(latency[kPolls / 2]),
      absl::ToDoubleMilliseconds(latency[kPolls * 99 / 100]),
      absl::ToDoubleMilliseconds(latency.back()), kPolls);
}

}  // namespace
}  // namespace uploadwatch::redis
