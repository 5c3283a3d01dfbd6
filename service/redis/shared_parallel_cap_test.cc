#include "service/redis/shared_parallel_cap.h"

#include <atomic>
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

constexpr char kToken[] = "fedcba9876543210";  // a fingerprint

struct Replica {
  Replica(const RedisServer& server, ParallelCapOptions options) {
    RedisOptions o = testing::ClientOptions(server);
    connection = std::make_unique<RedisConnection>(o, &loop);
    cap = std::make_unique<SharedParallelCap>(connection.get(), options);
  }
  ~Replica() {
    cap.reset();
    connection.reset();
  }
  absl::StatusOr<ParallelSlot> Acquire(absl::Duration wait) {
    return testing::Await<absl::StatusOr<ParallelSlot>>([&](auto done) {
      cap->Acquire(kToken, absl::Now() + wait, std::move(done));
    });
  }
  bool Connected() const {
    return connection->state() == ConnectionState::kConnected;
  }

  EventLoop loop;
  std::unique_ptr<RedisConnection> connection;
  std::unique_ptr<SharedParallelCap> cap;
};

class SharedParallelCapTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start().ok()); }
  std::unique_ptr<Replica> NewReplica(ParallelCapOptions o = {}) {
    auto r = std::make_unique<Replica>(server_, o);
    EXPECT_TRUE(WaitFor([&] { return r->Connected(); }));
    return r;
  }
  long long Holders() {
    return server_.Integer({"ZCARD", std::string("t:cap:") + kToken});
  }
  RedisServer server_;
};

TEST_F(SharedParallelCapTest, ThreeReplicasNeverHaveMoreThanTheCapAtOnce) {
  ParallelCapOptions o;
  o.cap = 3;
  std::vector<std::unique_ptr<Replica>> replicas;
  for (int i = 0; i < 3; ++i) replicas.push_back(NewReplica(o));
  constexpr int kPerReplica = 10;
  std::atomic<int> in_flight{0}, max_in_flight{0}, granted{0}, finished{0};
  for (auto& r : replicas) {
    for (int i = 0; i < kPerReplica; ++i) {
      Replica* replica = r.get();
      r->cap->Acquire(
          kToken, absl::Now() + absl::Seconds(60),
          [&, replica](absl::StatusOr<ParallelSlot> slot) {
            if (!slot.ok()) {
              ++finished;
              return;
            }
            EXPECT_TRUE(slot->shared());
            ++granted;
            int now = ++in_flight;
            int seen = max_in_flight.load();
            while (now > seen && !max_in_flight.compare_exchange_weak(seen, now)) {
            }
            // A 30 ms "request at Metrica", then the slot goes back.
            replica->loop.RunAfter(
                absl::Milliseconds(30),
                [&, s = std::make_shared<ParallelSlot>(std::move(*slot))] {
                  --in_flight;
                  s->Release();
                  ++finished;
                });
          });
    }
  }
  ASSERT_TRUE(WaitFor([&] { return finished.load() == 3 * kPerReplica; },
                      absl::Seconds(60)));
  EXPECT_EQ(granted.load(), 3 * kPerReplica);
  EXPECT_LE(max_in_flight.load(), 3);
  EXPECT_GE(max_in_flight.load(), 2);  // it did run requests side by side
  std::printf("most requests at once over 3 replicas: %d (cap 3)\n",
              max_in_flight.load());
  ASSERT_TRUE(WaitFor([&] { return Holders() == 0; }));
}

TEST_F(SharedParallelCapTest, ADeadReplicasSlotsComeBackAfterTheHolderTtl) {
  ParallelCapOptions o;
  o.cap = 3;
  o.holder_ttl = absl::Milliseconds(700);
  auto dead = NewReplica(o);
  auto alive = NewReplica(o);
  std::vector<ParallelSlot> slots;
  for (int i = 0; i < 3; ++i) {
    auto s = dead->Acquire(absl::Seconds(5));
    ASSERT_TRUE(s.ok()) << s.status();
    slots.push_back(std::move(*s));
  }
  EXPECT_EQ(Holders(), 3);
  // A crash: the process is gone, nothing is released.
  dead->cap.reset();
  slots.clear();
  EXPECT_EQ(Holders(), 3);
  auto early = alive->Acquire(absl::Milliseconds(100));
  EXPECT_EQ(early.status().code(), absl::StatusCode::kDeadlineExceeded);
  absl::Time start = absl::Now();
  auto later = alive->Acquire(absl::Seconds(5));
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_TRUE(later->shared());
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  // All three dead slots come back, and the cap still holds.
  auto second = alive->Acquire(absl::Seconds(5));
  auto third = alive->Acquire(absl::Seconds(5));
  ASSERT_TRUE(second.ok() && third.ok());
  EXPECT_EQ(Holders(), 3);
  EXPECT_EQ(alive->Acquire(absl::Milliseconds(100)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(SharedParallelCapTest, WithoutRedisALocalCapOfFallbackParallelAnswersAtOnce) {
  ParallelCapOptions o;
  o.cap = 3;
  o.fallback_parallel = 1;
  auto r = NewReplica(o);
  server_.Kill();
  ASSERT_TRUE(WaitFor([&] { return !r->Connected(); }));
  auto first = r->Acquire(absl::Seconds(5));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->shared());
  auto second = r->Acquire(absl::Milliseconds(200));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kDeadlineExceeded);
  first->Release();
  auto third = r->Acquire(absl::Milliseconds(200));
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(r->cap->HeldByThisReplica(kToken), 1);
}

TEST_F(SharedParallelCapTest, LocalSlotsCountInRedisOnceItIsBack) {
  ParallelCapOptions o;
  o.cap = 2;
  auto r = NewReplica(o);
  auto other = NewReplica(o);
  server_.Kill();
  ASSERT_TRUE(WaitFor([&] { return !r->Connected(); }));
  auto local = r->Acquire(absl::Seconds(1));
  ASSERT_TRUE(local.ok());
  EXPECT_FALSE(local->shared());
  ASSERT_TRUE(server_.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return r->Connected() && other->Connected(); }));
  ASSERT_TRUE(WaitFor([&] { return Holders() == 1; }));
  // The other replica sees one slot taken: one left of two.
  auto one = other->Acquire(absl::Seconds(1));
  ASSERT_TRUE(one.ok());
  EXPECT_TRUE(one->shared());
  auto none = other->Acquire(absl::Milliseconds(150));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kDeadlineExceeded);
  local->Release();
  ASSERT_TRUE(WaitFor([&] { return Holders() == 1; }));
  auto freed = other->Acquire(absl::Seconds(2));
  EXPECT_TRUE(freed.ok());
}

}  // namespace
}  // namespace uploadwatch::redis
