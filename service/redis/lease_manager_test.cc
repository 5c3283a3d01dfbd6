#include "service/redis/lease_manager.h"

#include <memory>
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

constexpr char kGroup[] = "0123456789abcdef:2215573";

// One "replica": its own loop, connection and lease manager.
struct Replica {
  Replica(const RedisServer& server, absl::Duration ttl, std::string name) {
    RedisOptions o = testing::ClientOptions(server);
    connection = std::make_unique<RedisConnection>(o, &loop);
    LeaseOptions l;
    l.ttl = ttl;
    l.owner_id = std::move(name);
    leases = std::make_unique<LeaseManager>(
        connection.get(), l, [this](const std::string& group, bool poll) {
          absl::MutexLock lock(&mu);
          changes.push_back(poll);
        });
  }
  ~Replica() {
    leases.reset();
    connection.reset();
  }
  std::vector<bool> Changes() {
    absl::MutexLock lock(&mu);
    return changes;
  }
  bool Connected() const {
    return connection->state() == ConnectionState::kConnected;
  }

  EventLoop loop;
  std::unique_ptr<RedisConnection> connection;
  std::unique_ptr<LeaseManager> leases;
  absl::Mutex mu;
  std::vector<bool> changes ABSL_GUARDED_BY(mu);
};

class LeaseManagerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start().ok()); }

  void StartReplicas(int n, absl::Duration ttl) {
    for (int i = 0; i < n; ++i) {
      replicas_.push_back(std::make_unique<Replica>(
          server_, ttl, "replica-" + std::to_string(i)));
    }
    ASSERT_TRUE(WaitFor([&] {
      for (auto& r : replicas_) {
        if (!r->Connected()) return false;
      }
      return true;
    }));
    for (auto& r : replicas_) r->leases->Want(kGroup);
  }

  // Replicas (not destroyed) that would poll the group now.
  int Pollers() {
    int n = 0;
    for (auto& r : replicas_) {
      if (r != nullptr && r->leases->ShouldPoll(kGroup)) ++n;
    }
    return n;
  }
  int Poller() {
    for (size_t i = 0; i < replicas_.size(); ++i) {
      if (replicas_[i] != nullptr && replicas_[i]->leases->ShouldPoll(kGroup)) {
        return static_cast<int>(i);
      }
    }
    return -1;
  }
  bool AllConnected(bool connected) {
    for (auto& r : replicas_) {
      if (r->Connected() != connected) return false;
    }
    return true;
  }
  std::string Owner() {
    auto v = server_.Run({"GET", std::string("t:lease:") + kGroup});
    return v.ok() ? *v : "";
  }

  RedisServer server_;
  std::vector<std::unique_ptr<Replica>> replicas_;
};

TEST_F(LeaseManagerTest, ExactlyOneOfThreeReplicasPollsAGroup) {
  StartReplicas(3, absl::Milliseconds(600));
  ASSERT_TRUE(WaitFor([&] { return Pollers() == 1; }));
  int poller = Poller();
  EXPECT_EQ(Owner(), "replica-" + std::to_string(poller));
  // Through several renewals (ttl 600 ms, renewed every 200 ms): never two,
  // and the same one.
  absl::Time until = absl::Now() + absl::Seconds(2);
  while (absl::Now() < until) {
    ASSERT_LE(Pollers(), 1);
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(Poller(), poller);
  EXPECT_TRUE(replicas_[poller]->leases->Holds(kGroup));
  EXPECT_EQ(replicas_[poller]->Changes(), std::vector<bool>{true});
  // Renewed: Redis still gives it most of a ttl.
  EXPECT_GT(server_.Integer({"PTTL", std::string("t:lease:") + kGroup}), 0);
}

TEST_F(LeaseManagerTest, AnotherReplicaTakesOverWithinTheTtlAfterTheHolderCrashes) {
  const absl::Duration ttl = absl::Milliseconds(800);
  StartReplicas(3, ttl);
  ASSERT_TRUE(WaitFor([&] { return Pollers() == 1; }));
  int crashed = Poller();
  const std::string key = std::string("t:lease:") + kGroup;
  // A crash: gone without releasing.
  replicas_[crashed].reset();
  absl::Time crash = absl::Now();
  // While Redis still holds the dead replica's lease nobody else polls.
  while (server_.Integer({"PTTL", key}) > 50) {
    ASSERT_EQ(Pollers(), 0);
    absl::SleepFor(absl::Milliseconds(5));
  }
  // Expired by Redis's clock; the next attempt (every ttl/3) takes it.
  ASSERT_TRUE(WaitFor([&] { return Pollers() == 1; }, ttl + absl::Seconds(2)));
  absl::Duration took = absl::Now() - crash;
  int successor = Poller();
  EXPECT_NE(successor, crashed);
  EXPECT_EQ(Owner(), "replica-" + std::to_string(successor));
  EXPECT_EQ(replicas_[successor]->Changes(), std::vector<bool>{true});
  std::printf("takeover after a crash: %lld ms (ttl %lld ms)\n",
              static_cast<long long>(absl::ToInt64Milliseconds(took)),
              static_cast<long long>(absl::ToInt64Milliseconds(ttl)));
}

TEST_F(LeaseManagerTest, TheLastWatcherLeavingHandsTheGroupOverBeforeTheTtl) {
  // Without the release the other replica would wait for the expiry (3 s);
  // with it, only for its next attempt (every ttl/3 = 1 s).
  const absl::Duration ttl = absl::Seconds(3);
  StartReplicas(2, ttl);
  ASSERT_TRUE(WaitFor([&] { return Pollers() == 1; }));
  int holder = Poller();
  int other = 1 - holder;
  absl::Time start = absl::Now();
  replicas_[holder]->leases->Unwant(kGroup);
  ASSERT_TRUE(WaitFor(
      [&] { return replicas_[other]->leases->ShouldPoll(kGroup); }, ttl));
  EXPECT_LT(absl::Now() - start, ttl);
  EXPECT_FALSE(replicas_[holder]->leases->ShouldPoll(kGroup));
  EXPECT_EQ(Owner(), "replica-" + std::to_string(other));
}

TEST_F(LeaseManagerTest, ALeaseTakenAwayIsReportedLost) {
  StartReplicas(1, absl::Milliseconds(600));
  ASSERT_TRUE(WaitFor([&] { return Pollers() == 1; }));
  // Someone else's now (an operator, or a replica after an expiry).
  ASSERT_TRUE(server_
                  .Run({"SET", std::string("t:lease:") + kGroup, "intruder",
                        "PX", "60000"})
                  .ok());
  ASSERT_TRUE(WaitFor([&] { return Pollers() == 0; }, absl::Seconds(3)));
  ASSERT_TRUE(WaitFor([&] {
    return replicas_[0]->Changes() == std::vector<bool>{true, false};
  }));
  // Its release must not delete the intruder's lease (compare-and-delete).
  replicas_[0]->leases->Unwant(kGroup);
  // Commands run in order: once a later one is answered, the release was.
  absl::Notification pinged;
  replicas_[0]->connection->Command(
      {"PING"}, [&](absl::StatusOr<RedisReply>) { pinged.Notify(); });
  pinged.WaitForNotification();
  EXPECT_EQ(Owner(), "intruder");
}

TEST_F(LeaseManagerTest, WithoutRedisEveryReplicaPollsAndOneAgainWhenItIsBack) {
  StartReplicas(3, absl::Milliseconds(600));
  ASSERT_TRUE(WaitFor([&] { return Pollers() == 1; }));
  server_.Kill();
  // Fallback: each polls on its own (within the fallback parallel cap), once
  // it noticed.
  ASSERT_TRUE(WaitFor([&] { return AllConnected(false) && Pollers() == 3; }));
  for (auto& r : replicas_) {
    ASSERT_TRUE(WaitFor([&] {
      auto c = r->Changes();
      return !c.empty() && c.back();
    }));
  }
  ASSERT_TRUE(server_.Start().ok());  // empty: no lease survived
  // Shared mode again once all are back: exactly the lease holder polls.
  ASSERT_TRUE(WaitFor([&] {
    return AllConnected(true) && Pollers() == 1 &&
           Owner() == "replica-" + std::to_string(Poller());
  }));
  int poller = Poller();
  for (size_t i = 0; i < replicas_.size(); ++i) {
    if (static_cast<int>(i) == poller) continue;
    ASSERT_TRUE(WaitFor([&] {
      auto c = replicas_[i]->Changes();
      return !c.empty() && !c.back();
    }));
  }
}

}  // namespace
}  // namespace uploadwatch::redis
