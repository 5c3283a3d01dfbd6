#include "service/redis/redis_coordinator.h"

#include <fstream>

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
  c.history().Publish(group, 1, "s",
                      PublishFence{c.leases().LeaseKey(group), c.replica_id()},
                      [](absl::StatusOr<std::string> id) { EXPECT_TRUE(id.ok()); });
  got.WaitForNotification();

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

}  // namespace
}  // namespace uploadwatch::redis
