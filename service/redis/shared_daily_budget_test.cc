#include "service/redis/shared_daily_budget.h"

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "service/redis/testing/redis_server.h"

namespace uploadwatch::redis {
namespace {

using testing::RedisServer;
using testing::WaitFor;

constexpr char kToken[] = "00112233aabbccdd";  // a fingerprint

struct Replica {
  Replica(const RedisServer& server, SharedBudgetOptions options) {
    RedisOptions o = testing::ClientOptions(server);
    connection = std::make_unique<RedisConnection>(o, &loop);
    budget = std::make_unique<SharedDailyBudget>(connection.get(), options);
  }
  ~Replica() {
    budget.reset();
    connection.reset();
  }
  BudgetCharge Charge() {
    return testing::Await<BudgetCharge>(
        [&](auto done) { budget->TryCharge(kToken, std::move(done)); });
  }
  bool Connected() const {
    return connection->state() == ConnectionState::kConnected;
  }

  EventLoop loop;
  std::unique_ptr<RedisConnection> connection;
  std::unique_ptr<SharedDailyBudget> budget;
};

class SharedDailyBudgetTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start().ok()); }
  std::unique_ptr<Replica> NewReplica(SharedBudgetOptions o) {
    auto r = std::make_unique<Replica>(server_, o);
    EXPECT_TRUE(WaitFor([&] { return r->Connected(); }));
    return r;
  }
  RedisServer server_;
};

TEST_F(SharedDailyBudgetTest, ThreeReplicasTogetherNeverSpendMoreThanTheBudget) {
  SharedBudgetOptions o;
  o.per_token = 50;
  std::vector<std::unique_ptr<Replica>> replicas;
  for (int i = 0; i < 3; ++i) replicas.push_back(NewReplica(o));
  std::atomic<int> granted{0}, answered{0}, unshared{0};
  constexpr int kPerReplica = 40;  // 120 asks for 50
  for (auto& r : replicas) {
    for (int i = 0; i < kPerReplica; ++i) {
      r->budget->TryCharge(kToken, [&](BudgetCharge c) {
        if (c.granted) ++granted;
        if (!c.shared) ++unshared;
        EXPECT_LE(c.used, 50);
        ++answered;
      });
    }
  }
  ASSERT_TRUE(WaitFor([&] { return answered.load() == 3 * kPerReplica; }));
  EXPECT_EQ(granted.load(), 50);
  EXPECT_EQ(unshared.load(), 0);
  std::string key = replicas[0]->budget->Key(kToken, absl::Now());
  EXPECT_EQ(server_.Integer({"GET", key}), 50);
}

TEST_F(SharedDailyBudgetTest, AnswersUsedAndRemainingAndExpiresAfterTheReset) {
  SharedBudgetOptions o;
  o.per_token = 3;
  auto r = NewReplica(o);
  for (int i = 1; i <= 3; ++i) {
    BudgetCharge c = r->Charge();
    EXPECT_TRUE(c.granted);
    EXPECT_TRUE(c.shared);
    EXPECT_EQ(c.used, i);
    EXPECT_EQ(c.remaining, 3 - i);
  }
  BudgetCharge spent = r->Charge();
  EXPECT_FALSE(spent.granted);
  EXPECT_EQ(spent.remaining, 0);
  // The next reset (00:00 UTC by default), within a day from now.
  absl::Time now = absl::Now();
  EXPECT_GT(spent.resets_at, now);
  EXPECT_LE(spent.resets_at, now + absl::Hours(24));
  std::string key = r->budget->Key(kToken, now);
  EXPECT_NE(key.find(kToken), std::string::npos);
  long long ttl = server_.Integer({"TTL", key});
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 25 * 3600);
}

TEST_F(SharedDailyBudgetTest, WithoutRedisItSpendsOnlyItsShareAndAddsItLater) {
  SharedBudgetOptions o;
  o.per_token = 100;
  o.fallback_per_token = 3;
  auto r = NewReplica(o);
  EXPECT_TRUE(r->Charge().granted);  // 1 in Redis
  server_.Kill();
  ASSERT_TRUE(WaitFor([&] { return !r->Connected(); }));
  for (int i = 0; i < 3; ++i) {
    BudgetCharge c = r->Charge();
    EXPECT_TRUE(c.granted);
    EXPECT_FALSE(c.shared);
  }
  BudgetCharge over = r->Charge();
  EXPECT_FALSE(over.granted);
  EXPECT_EQ(over.remaining, 0);
  ASSERT_TRUE(server_.Start().ok());  // empty again
  ASSERT_TRUE(WaitFor([&] { return r->Connected(); }));
  BudgetCharge back = r->Charge();
  EXPECT_TRUE(back.shared);
  EXPECT_TRUE(back.granted);
  // The 3 spent alone were added before this one.
  EXPECT_EQ(back.used, 4);
  EXPECT_EQ(server_.Integer({"GET", r->budget->Key(kToken, absl::Now())}), 4);
}

TEST_F(SharedDailyBudgetTest, ABudgetOfZeroIsNoBudgetWithRedisOrWithout) {
  SharedBudgetOptions o;
  o.per_token = 0;  // --daily_budget=0
  o.fallback_per_token = 1;
  auto r = NewReplica(o);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(r->Charge().granted);
  EXPECT_EQ(server_.Integer({"EXISTS", r->budget->Key(kToken, absl::Now())}), 0);
  EXPECT_FALSE(r->budget->Usage(kToken).has_value());  // nothing to pace by
  server_.Kill();
  ASSERT_TRUE(WaitFor([&] { return !r->Connected(); }));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(r->Charge().granted);
}

TEST_F(SharedDailyBudgetTest, UsageIsTheSharedCountAsRedisLastAnswered) {
  SharedBudgetOptions o;
  o.per_token = 100;
  auto a = NewReplica(o);
  auto b = NewReplica(o);
  EXPECT_FALSE(b->budget->Usage(kToken).has_value());  // nothing known today
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(a->Charge().granted);
  EXPECT_EQ(a->budget->Usage(kToken)->used, 5);
  EXPECT_TRUE(b->Charge().granted);  // its first: Redis says 6
  std::optional<QuotaUsage> usage = b->budget->Usage(kToken);
  ASSERT_TRUE(usage.has_value());
  EXPECT_EQ(usage->used, 6);
  EXPECT_EQ(usage->budget, 100);
  EXPECT_EQ(usage->remaining(), 94);
  EXPECT_GT(usage->resets_at, absl::Now());
}

TEST_F(SharedDailyBudgetTest, ARequestInTheCarryOverWindowCountsInBothDays) {
  // 22:30 UTC today (in the future, so that Redis keeps the keys): within
  // the conservative rule's 3 h before 00:00 UTC.
  const absl::CivilDay today = absl::ToCivilDay(absl::Now(), absl::UTCTimeZone());
  FakeClock clock(absl::FromCivil(absl::CivilSecond(today.year(), today.month(),
                                                    today.day(), 22, 30, 0),
                                  absl::UTCTimeZone()));
  SharedBudgetOptions o;
  o.per_token = 5;
  o.clock = &clock;
  auto r = NewReplica(o);
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(r->Charge().granted);
  const std::string day1 = r->budget->Key(kToken, clock.Now());
  clock.Advance(absl::Hours(2));  // 00:30 UTC: the next day
  const std::string day2 = r->budget->Key(kToken, clock.Now());
  ASSERT_NE(day1, day2);
  EXPECT_EQ(server_.Integer({"GET", day1}), 2);
  EXPECT_EQ(server_.Integer({"GET", day2}), 2);  // carried
  // The new day starts with the two: three more, then spent.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(r->Charge().granted) << i;
  BudgetCharge spent = r->Charge();
  EXPECT_FALSE(spent.granted);
  EXPECT_EQ(spent.used, 5);
  // Outside the window nothing is carried.
  EXPECT_EQ(server_.Integer({"EXISTS", r->budget->Key(kToken,
                                                      clock.Now() + absl::Hours(24))}),
            0);
}

// A replica that runs for months keeps no count of every day it saw: the
// days that are over (and their hour of grace) are dropped.
TEST_F(SharedDailyBudgetTest, DaysThatAreOverAreForgotten) {
  const absl::CivilDay today = absl::ToCivilDay(absl::Now(), absl::UTCTimeZone());
  FakeClock clock(absl::FromCivil(absl::CivilSecond(today.year(), today.month(),
                                                    today.day(), 12, 0, 0),
                                  absl::UTCTimeZone()));
  SharedBudgetOptions o;
  o.per_token = 100;
  o.clock = &clock;
  auto r = NewReplica(o);
  auto charge = [&](const std::string& fingerprint) {
    return testing::Await<BudgetCharge>([&](auto done) {
      r->budget->TryCharge(fingerprint, std::move(done));
    });
  };
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(charge("token-" + std::to_string(i)).granted);
  }
  EXPECT_EQ(r->budget->LocalDays(), 20u);
  EXPECT_TRUE(r->budget->Usage("token-3").has_value());
  // The next day, before the hour of grace is over: yesterday is still kept
  // (a late answer may still sync it).
  clock.Advance(absl::Hours(12) + absl::Minutes(30));
  EXPECT_TRUE(charge("token-0").granted);
  EXPECT_EQ(r->budget->LocalDays(), 21u);
  // Past the next day's hour of grace too: only today's entry of the one
  // token charged.
  clock.Advance(absl::Hours(25));
  EXPECT_TRUE(charge("token-0").granted);
  EXPECT_EQ(r->budget->LocalDays(), 1u);
  EXPECT_FALSE(r->budget->Usage("token-3").has_value());
  ASSERT_TRUE(r->budget->Usage("token-0").has_value());
  EXPECT_EQ(r->budget->Usage("token-0")->used, 1);  // a new day's count
  // Redis's counters of every day expire on their own.
  EXPECT_GT(server_.Integer({"TTL", r->budget->Key("token-0", clock.Now())}), 0);
  // Without Redis too: the fallback's entries are pruned the same way.
  server_.Kill();
  ASSERT_TRUE(WaitFor([&] { return !r->Connected(); }));
  clock.Advance(absl::Hours(48));
  EXPECT_TRUE(charge("token-9").granted);
  EXPECT_EQ(r->budget->LocalDays(), 1u);
}

}  // namespace
}  // namespace uploadwatch::redis
