#include "service/redis/redis_connection.h"

#include <fstream>
#include <memory>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "service/redis/testing/redis_server.h"

namespace uploadwatch::redis {
namespace {

using testing::RedisServer;
using testing::WaitFor;

absl::StatusOr<RedisReply> Call(RedisConnection& c,
                                std::vector<std::string> argv,
                                absl::Duration timeout = absl::ZeroDuration()) {
  return testing::Await<absl::StatusOr<RedisReply>>(
      [&](auto done) { c.Command(std::move(argv), std::move(done), timeout); });
}

absl::StatusOr<RedisReply> CallEval(RedisConnection& c, const RedisScript& s,
                                    std::vector<std::string> keys,
                                    std::vector<std::string> args) {
  return testing::Await<absl::StatusOr<RedisReply>>([&](auto done) {
    c.Eval(s, std::move(keys), std::move(args), std::move(done));
  });
}

RedisOptions OptionsFor(const RedisServer& server) {
  return testing::ClientOptions(server);
}

bool Connected(const RedisConnection& c) {
  return c.state() == ConnectionState::kConnected;
}

TEST(RedisConnectionTest, ConnectsAndRunsCommandsUnderItsKeyPrefix) {
  RedisServer server;
  ASSERT_TRUE(server.Start().ok());
  EventLoop loop;
  RedisConnection c(OptionsFor(server), &loop);
  ASSERT_TRUE(WaitFor([&] { return Connected(c); }));
  auto set = Call(c, {"SET", c.Key("k"), "v"});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->str, "OK");
  EXPECT_EQ(*server.Run({"GET", "t:k"}), "v");
  auto get = Call(c, {"GET", c.Key("k")});
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get->type, RedisReply::Type::kString);
  EXPECT_EQ(get->str, "v");
  auto missing = Call(c, {"GET", c.Key("none")});
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->type, RedisReply::Type::kNil);
  auto error = Call(c, {"INCR", c.Key("k")});
  EXPECT_EQ(error.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(error.status().message().find("not an integer"), std::string::npos);
}

TEST(RedisConnectionTest, AuthenticatesWithThePasswordFromAFile) {
  RedisServer server("s3cret-pw");
  ASSERT_TRUE(server.Start().ok());
  std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/pw";
  std::ofstream(path) << "s3cret-pw\n";
  auto password = ReadPasswordFile(path);
  ASSERT_TRUE(password.ok());
  EventLoop loop;
  RedisOptions o = OptionsFor(server);
  o.password = *password;
  RedisConnection c(o, &loop);
  ASSERT_TRUE(WaitFor([&] { return Connected(c); }));
  EXPECT_TRUE(Call(c, {"PING"}).ok());

  RedisOptions wrong = OptionsFor(server);
  wrong.password = "not-it";
  RedisConnection bad(wrong, &loop);
  ASSERT_TRUE(WaitFor([&] { return bad.state() == ConnectionState::kDegraded; }));
  auto r = Call(bad, {"PING"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message().find("not-it"), std::string::npos);
  EXPECT_FALSE(Connected(bad));
}

TEST(RedisConnectionTest, PasswordFileErrorsNameTheFileNotTheContent) {
  auto r = ReadPasswordFile("/nonexistent/pw");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("/nonexistent/pw"), std::string::npos);
  RedisOptions o;
  EXPECT_TRUE(ParseRedisAddress("redis.local:6380", &o).ok());
  EXPECT_EQ(o.host, "redis.local");
  EXPECT_EQ(o.port, 6380);
  EXPECT_FALSE(ParseRedisAddress("redis.local", &o).ok());
  EXPECT_FALSE(ParseRedisAddress("h:0", &o).ok());
  EXPECT_FALSE(ParseRedisAddress(":6379", &o).ok());
}

TEST(RedisConnectionTest, ScriptsRunAsEvalshaAndFallBackToEvalOnNoscript) {
  RedisServer server;
  ASSERT_TRUE(server.Start().ok());
  EventLoop loop;
  RedisConnection c(OptionsFor(server), &loop);
  ASSERT_TRUE(WaitFor([&] { return Connected(c); }));
  RedisScript script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  // Not cached yet: NOSCRIPT, then EVAL (which caches it).
  auto first = CallEval(c, script, {c.Key("n")}, {"5"});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->integer, 5);
  EXPECT_EQ(c.stats().noscript, 1);
  auto second = CallEval(c, script, {c.Key("n")}, {"2"});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->integer, 7);
  EXPECT_EQ(c.stats().noscript, 1);
  EXPECT_EQ(*server.Run({"SCRIPT", "EXISTS", script.sha1()}), "1");
  ASSERT_TRUE(server.Run({"SCRIPT", "FLUSH"}).ok());
  auto third = CallEval(c, script, {c.Key("n")}, {"1"});
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->integer, 8);
  EXPECT_EQ(c.stats().noscript, 2);
}

TEST(RedisConnectionTest, PreloadedScriptsAreLoadedAgainAfterARestart) {
  RedisServer server;
  ASSERT_TRUE(server.Start().ok());
  EventLoop loop;
  RedisConnection c(OptionsFor(server), &loop);
  RedisScript script("return 7");
  c.Preload(script);
  ASSERT_TRUE(WaitFor([&] { return Connected(c); }));
  ASSERT_TRUE(WaitFor(
      [&] { return *server.Run({"SCRIPT", "EXISTS", script.sha1()}) == "1"; }));
  server.Kill();
  ASSERT_TRUE(WaitFor([&] { return !Connected(c); }));
  ASSERT_TRUE(server.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return Connected(c); }));
  // Loaded during the handshake, before the state said kConnected.
  EXPECT_EQ(*server.Run({"SCRIPT", "EXISTS", script.sha1()}), "1");
  auto r = CallEval(c, script, {}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->integer, 7);
  EXPECT_EQ(c.stats().noscript, 0);
}

TEST(RedisConnectionTest, WithoutRedisCommandsFailAtOnceAndStateIsDegraded) {
  RedisServer server;
  ASSERT_TRUE(server.Start().ok());
  server.Kill();  // a port nobody listens on
  EventLoop loop;
  RedisOptions o = OptionsFor(server);
  o.command_timeout = absl::Seconds(30);
  RedisConnection c(o, &loop);
  ASSERT_TRUE(WaitFor([&] { return c.state() == ConnectionState::kDegraded; }));
  absl::Time start = absl::Now();
  auto r = Call(c, {"PING"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  // Not the 30 s timeout: no caller waits for an absent Redis.
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(RedisConnectionTest, ReconnectsWhenRedisComesBack) {
  RedisServer server;
  ASSERT_TRUE(server.Start().ok());
  EventLoop loop;
  RedisConnection c(OptionsFor(server), &loop);
  std::atomic<int> degraded{0}, connected{0};
  c.AddStateListener([&](ConnectionState s) {
    if (s == ConnectionState::kDegraded) ++degraded;
    if (s == ConnectionState::kConnected) ++connected;
  });
  ASSERT_TRUE(WaitFor([&] { return Connected(c); }));
  server.Kill();
  ASSERT_TRUE(WaitFor([&] { return c.state() == ConnectionState::kDegraded; }));
  EXPECT_EQ(Call(c, {"PING"}).status().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(server.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return Connected(c); }));
  EXPECT_TRUE(Call(c, {"PING"}).ok());
  EXPECT_GE(degraded.load(), 1);
  EXPECT_GE(connected.load(), 2);
  EXPECT_EQ(c.stats().connects, 2);
}

TEST(RedisConnectionTest, AStalledRedisTimesOutAndIsReconnectedWhenItAnswers) {
  RedisServer server;
  ASSERT_TRUE(server.Start().ok());
  EventLoop loop;
  RedisConnection c(OptionsFor(server), &loop);
  ASSERT_TRUE(WaitFor([&] { return Connected(c); }));
  server.Pause();
  auto r = Call(c, {"PING"}, absl::Milliseconds(200));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(Connected(c));
  server.Resume();
  ASSERT_TRUE(WaitFor([&] { return Connected(c); }));
  EXPECT_TRUE(Call(c, {"PING"}).ok());
}

TEST(RedisConnectionTest, AConnectThatNeverCompletesTimesOutAndIsRetried) {
  RedisServer server;
  ASSERT_TRUE(server.Start().ok());
  // A stopped Redis: the kernel accepts the connection, nobody answers PING.
  server.Pause();
  EventLoop loop;
  RedisOptions o = OptionsFor(server);
  o.connect_timeout = absl::Milliseconds(200);
  RedisConnection c(o, &loop);
  ASSERT_TRUE(WaitFor([&] { return c.state() == ConnectionState::kDegraded; }));
  EXPECT_EQ(c.stats().connects, 0);
  server.Resume();
  ASSERT_TRUE(WaitFor([&] { return Connected(c); }));
  EXPECT_EQ(c.stats().connects, 1);
}

TEST(RedisConnectionTest, DestroyingItFailsPendingCommands) {
  RedisServer server;
  ASSERT_TRUE(server.Start().ok());
  EventLoop loop;
  auto c = std::make_unique<RedisConnection>(OptionsFor(server), &loop);
  ASSERT_TRUE(WaitFor([&] { return Connected(*c); }));
  absl::Notification done;
  absl::Status status;
  // Blocks in Redis for 5 s: still pending when the connection goes.
  c->Command({"BLPOP", c->Key("never"), "5"},
             [&](absl::StatusOr<RedisReply> r) {
               status = r.status();
               done.Notify();
             },
             absl::Seconds(10));
  ASSERT_TRUE(WaitFor([&] { return c->stats().commands >= 2; }));
  c.reset();
  done.WaitForNotification();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace uploadwatch::redis
