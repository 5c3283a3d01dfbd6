#include "service/redis/group_wants.h"

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "service/redis/testing/redis_server.h"

namespace uploadwatch::redis {
namespace {

using testing::RedisServer;
using testing::WaitFor;

constexpr char kFingerprint[] = "0123456789abcdef";
constexpr char kGroup[] = "0123456789abcdef:2215573";
constexpr char kOtherGroup[] = "0123456789abcdef:42";

// One "replica": its own loop, connection and wants.
struct Replica {
  Replica(const RedisServer& server, std::string name) {
    connection = std::make_unique<RedisConnection>(
        testing::ClientOptions(server), &loop);
    GroupWantsOptions o;
    o.ttl = absl::Milliseconds(900);
    o.refresh_interval = absl::Milliseconds(300);
    o.owner_id = std::move(name);
    wants = std::make_unique<GroupWants>(
        connection.get(), o,
        [this](const std::string& group, const std::vector<int64_t>& ids) {
          absl::MutexLock lock(&mu);
          read[group] = ids;
          std::sort(read[group].begin(), read[group].end());
        });
  }
  ~Replica() {
    wants.reset();
    connection.reset();
  }
  std::vector<int64_t> Read(const std::string& group) {
    absl::MutexLock lock(&mu);
    auto it = read.find(group);
    return it == read.end() ? std::vector<int64_t>{} : it->second;
  }

  EventLoop loop;
  std::unique_ptr<RedisConnection> connection;
  std::unique_ptr<GroupWants> wants;
  absl::Mutex mu;
  std::map<std::string, std::vector<int64_t>> read ABSL_GUARDED_BY(mu);
};

class GroupWantsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start().ok()); }
  RedisServer server_;
};

using Ids = std::vector<int64_t>;

TEST_F(GroupWantsTest, TheReaderSeesEveryReplicasWantsOnce) {
  Replica a(server_, "replica-a"), b(server_, "replica-b");
  a.wants->Add(kGroup, 1);
  a.wants->Add(kGroup, 2);
  b.wants->Add(kGroup, 2);  // both want it: read once
  b.wants->Add(kGroup, 3);
  a.wants->Read(kGroup, true);
  EXPECT_TRUE(WaitFor([&] { return a.Read(kGroup) == Ids{1, 2, 3}; }));
  EXPECT_TRUE(b.Read(kGroup).empty());  // b does not read
  // b's last watcher of 3 leaves; 2 stays wanted by a.
  b.wants->Remove(kGroup, 3);
  b.wants->Remove(kGroup, 2);
  EXPECT_TRUE(WaitFor([&] { return a.Read(kGroup) == Ids{1, 2}; }));
  // a's own leaving of 2 is not b's: b wants it again, a still reads it.
  b.wants->Add(kGroup, 2);
  a.wants->Remove(kGroup, 2);
  absl::SleepFor(absl::Milliseconds(700));  // two refreshes
  EXPECT_EQ(a.Read(kGroup), (Ids{1, 2}));
}

// A graceful stop removes the replica's wants at once (the holder stops
// polling for them at its next read, not a TTL later), counter watches' too
// (their ids are below zero), and sends no more.
TEST_F(GroupWantsTest, RemoveAllTakesTheReplicasWantsAwayAtOnce) {
  Replica a(server_, "replica-a");
  auto b = std::make_unique<Replica>(server_, "replica-b");
  a.wants->Add(kGroup, 1);
  b->wants->Add(kGroup, 7);
  b->wants->Add(kGroup, -1);  // a counter watch of BASIC
  a.wants->Read(kGroup, true);
  ASSERT_TRUE(WaitFor([&] { return a.Read(kGroup) == Ids{-1, 1, 7}; }));
  absl::Notification removed;
  b->wants->RemoveAll([&] { removed.Notify(); });
  ASSERT_TRUE(removed.WaitForNotificationWithTimeout(absl::Seconds(5)));
  auto members = server_.Run({"ZRANGE", a.wants->WantsKey(kGroup), "0", "-1"});
  ASSERT_TRUE(members.ok());
  EXPECT_EQ(members->find("replica-b"), std::string::npos) << *members;
  // b's refreshes (every 300 ms) do not bring them back.
  absl::SleepFor(absl::Milliseconds(700));
  EXPECT_EQ(a.Read(kGroup), (Ids{1}));
}

TEST_F(GroupWantsTest, ADeadReplicasWantsExpireWithinTheTtl) {
  Replica a(server_, "replica-a");
  auto b = std::make_unique<Replica>(server_, "replica-b");
  a.wants->Add(kGroup, 1);
  b->wants->Add(kGroup, 7);
  a.wants->Read(kGroup, true);
  ASSERT_TRUE(WaitFor([&] { return a.Read(kGroup) == Ids{1, 7}; }));
  b.reset();  // no Remove: as a crash, its refreshes stop
  const absl::Time gone = absl::Now();
  EXPECT_TRUE(WaitFor([&] { return a.Read(kGroup) == Ids{1}; }));
  // ttl 900 ms after its last refresh, seen at a's next (300 ms): 1.2 s
  // on an idle machine; the bound leaves room for a loaded one, far below
  // "never".
  EXPECT_LT(absl::Now() - gone, absl::Seconds(3));
}

TEST_F(GroupWantsTest, AWantNobodyHadIsNoticedOnceInTheGroupsStream) {
  Replica a(server_, "replica-a"), b(server_, "replica-b");
  const std::string stream = std::string("t:history:") + kGroup;
  a.wants->Add(kGroup, 5);
  ASSERT_TRUE(WaitFor([&] { return server_.Integer({"XLEN", stream}) == 1; }));
  absl::SleepFor(absl::Milliseconds(700));  // refreshes add no notice
  EXPECT_EQ(server_.Integer({"XLEN", stream}), 1);
  b.wants->Add(kGroup, 5);  // b's own want of it: the holder may not know b
  EXPECT_TRUE(WaitFor([&] { return server_.Integer({"XLEN", stream}) == 2; }));
  // The notice names the uploading (field s), not the replica.
  absl::StatusOr<std::string> last = server_.Run(
      {"EVAL",
       "return redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1][2][2]",
       "1", stream});
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(*last, "5");
  // Nothing in Redis outlives the wants: every key expires.
  for (const std::string& key :
       {stream, std::string("t:wants:") + kGroup,
        std::string("t:groups:") + kFingerprint}) {
    const long long ttl = server_.Integer({"PTTL", key});
    EXPECT_GT(ttl, 0) << key;
    EXPECT_LE(ttl, 900) << key;
  }
}

TEST_F(GroupWantsTest, TokenGroupsCountsTheGroupsOfEveryReplica) {
  Replica a(server_, "replica-a"), b(server_, "replica-b");
  EXPECT_FALSE(a.wants->TokenGroups(kFingerprint).has_value());
  a.wants->Add(kGroup, 1);
  b.wants->Add(kGroup, 2);       // the same group on two replicas: one
  b.wants->Add(kOtherGroup, 3);  // and one of b alone
  EXPECT_TRUE(WaitFor([&] { return a.wants->TokenGroups(kFingerprint) == 2u; }));
  EXPECT_TRUE(WaitFor([&] { return b.wants->TokenGroups(kFingerprint) == 2u; }));
  EXPECT_FALSE(a.wants->TokenGroups("another-token").has_value());
  // b's group ends; it expires from the count within the ttl.
  b.wants->Remove(kOtherGroup, 3);
  EXPECT_TRUE(WaitFor([&] { return a.wants->TokenGroups(kFingerprint) == 1u; },
                      absl::Seconds(3)));
  // Redis gone: unknown, each replica paces on its own count.
  server_.Kill();
  EXPECT_TRUE(WaitFor([&] { return !a.wants->TokenGroups(kFingerprint); }));
}

TEST_F(GroupWantsTest, ARestartedRedisGetsTheWantsBack) {
  Replica a(server_, "replica-a");
  a.wants->Add(kGroup, 1);
  a.wants->Read(kGroup, true);
  ASSERT_TRUE(WaitFor([&] { return a.Read(kGroup) == Ids{1}; }));
  server_.Kill();
  ASSERT_TRUE(server_.Start().ok());  // same port, empty
  EXPECT_TRUE(WaitFor([&] {
    return server_.Integer({"ZCARD", std::string("t:wants:") + kGroup}) == 1;
  }));
}

}  // namespace
}  // namespace uploadwatch::redis
