#include "service/redis/redis_metrics.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/redis/testing/redis_server.h"

namespace uploadwatch::redis {
namespace {

using ::testing::HasSubstr;
using testing::RedisServer;
using testing::WaitFor;

TEST(RedisMetricsTest, ShowSharedModeLeasesAndDegradedMode) {
  RedisServer server;
  ASSERT_TRUE(server.Start().ok());
  MultiReplicaFlags f;
  f.redis = server.address();
  auto options = OptionsFromFlags(f);
  ASSERT_TRUE(options.ok());
  options->redis.reconnect_backoff.max = absl::Milliseconds(200);
  RedisCoordinator c(*options, [](const std::string&, bool) {});
  Metrics metrics;
  RegisterRedisMetrics(&c, &metrics);
  ASSERT_TRUE(WaitFor([&] { return c.state() == ConnectionState::kConnected; }));
  const std::string group = PollGroupKey("0123456789abcdef", 1);
  c.leases().Want(group);
  ASSERT_TRUE(WaitFor([&] { return c.leases().HeldCount() == 1; }));
  std::string text = metrics.Render();
  EXPECT_THAT(text, HasSubstr("uploadwatch_redis_degraded 0"));
  EXPECT_THAT(text, HasSubstr("uploadwatch_poll_leases_held 1"));
  EXPECT_THAT(text, HasSubstr(
      "uploadwatch_redis_connection_state{connection=\"reader\",state=\"connected\"} 1"));
  EXPECT_THAT(text, HasSubstr("uploadwatch_redis_connects{connection=\"commands\"} 1"));

  server.Kill();
  ASSERT_TRUE(WaitFor([&] { return c.state() == ConnectionState::kDegraded; }));
  text = metrics.Render();
  EXPECT_THAT(text, HasSubstr("uploadwatch_redis_degraded 1"));
  EXPECT_THAT(text, HasSubstr(
      "uploadwatch_redis_connection_state{connection=\"commands\",state=\"degraded\"} 1"));
}

}  // namespace
}  // namespace uploadwatch::redis
