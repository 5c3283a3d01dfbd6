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
  // The coordinator is degraded as soon as one connection is; the other
  // notices the closed socket on its own event-loop turn, which can come a
  // little later on a loaded (sanitizer) build.
  constexpr char kCommandsDegraded[] =
      "uploadwatch_redis_connection_state{connection=\"commands\",state=\"degraded\"} 1";
  EXPECT_TRUE(WaitFor([&] {
    return metrics.Render().find(kCommandsDegraded) != std::string::npos;
  })) << metrics.Render();
}

}  // namespace
}  // namespace uploadwatch::redis
