#include "service/redis/shared_usage_client.h"

#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "service/core/pacer.h"
#include "service/testing/fake_metrica_client.h"
#include "service/testing/simulated_time.h"

namespace uploadwatch::redis {
namespace {

constexpr char kFp[] = "00112233aabbccdd";

// No jitter: a poll's delay is exactly what pacing says.
class MiddleRandom : public RandomSource {
 public:
  double Uniform01() override { return 0.5; }
};

class SharedUsageMetricaClientTest : public ::testing::Test {
 protected:
  SharedUsageMetricaClientTest() {
    auto fake = std::make_unique<testing::FakeMetricaClient>(&time_);
    local_ = fake.get();
    client_ = std::make_unique<SharedUsageMetricaClient>(
        std::move(fake), [this](const std::string& fp) -> std::optional<QuotaUsage> {
          auto it = shared_.find(fp);
          if (it == shared_.end()) return std::nullopt;
          return it->second;
        });
  }
  QuotaUsage Usage(int64_t used) const { return QuotaUsage{used, 4000, resets_}; }
  // The delay of a poll that just ended, with the pacer reading `view`.
  absl::Duration PollDelay(const Pacer::QuotaView& view) {
    Pacer pacer(Pacer::Options{.poll_interval = absl::Seconds(1),
                               .budget_reserve = 0.1,
                               .jitter = 0,
                               .random = &random_},
                view);
    const absl::Time now = time_.Now();
    return pacer.NextPoll(GroupKey{kFp, 1}, absl::OkStatus(), now, 1) - now;
  }

  testing::SimulatedTime time_;
  const absl::Time resets_ = time_.Now() + absl::Hours(10);
  MiddleRandom random_;
  testing::FakeMetricaClient* local_;
  absl::flat_hash_map<std::string, QuotaUsage> shared_;
  std::unique_ptr<SharedUsageMetricaClient> client_;
};

TEST_F(SharedUsageMetricaClientTest, ReportsTheSharedUseWhenAboveItsOwn) {
  local_->SetDailyUsage(kFp, Usage(100));
  EXPECT_EQ(client_->DailyUsage(kFp)->used, 100);  // nothing shared known yet
  shared_[kFp] = Usage(3000);  // the other replicas spent most of the day
  std::optional<QuotaUsage> usage = client_->DailyUsage(kFp);
  ASSERT_TRUE(usage.has_value());
  EXPECT_EQ(usage->used, 3000);
  EXPECT_EQ(usage->budget, 4000);
  EXPECT_EQ(usage->resets_at, resets_);
  ASSERT_EQ(client_->AllDailyUsage().size(), 1u);
  EXPECT_EQ(client_->AllDailyUsage()[0].second.used, 3000);
  // Its own count can be ahead (Metrica said the day is spent, or the shared
  // answer is older): the higher one wins.
  local_->SetDailyUsage(kFp, Usage(4000));
  EXPECT_EQ(client_->DailyUsage(kFp)->used, 4000);
}

TEST_F(SharedUsageMetricaClientTest, KeepsItsOwnFigureAcrossAResetAndWithoutABudget) {
  local_->SetDailyUsage(kFp, Usage(10));
  // Redis already counts the next day (its answer came after the reset).
  shared_[kFp] = QuotaUsage{3000, 4000, resets_ + absl::Hours(24)};
  EXPECT_EQ(client_->DailyUsage(kFp)->used, 10);
  // No local budget (--daily_budget=0): nothing to pace with.
  EXPECT_FALSE(client_->DailyUsage("ffffffffffffffff").has_value());
}

TEST_F(SharedUsageMetricaClientTest, SendsEveryRequestToTheInnerClient) {
  v1::Uploading u;
  u.set_id(7);
  u.set_status(v1::Uploading::PROCESSED);
  local_->SetUploading(1, u);
  std::optional<absl::Status> got;
  client_->GetUploading("token", 1, 7, time_.Now() + absl::Seconds(5),
                        [&](absl::StatusOr<v1::GetUploadingResponse> r) {
                          got = r.status();
                        });
  time_.Advance(absl::Seconds(1));
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->ok()) << *got;
  EXPECT_EQ(local_->count("get"), 1);
}

TEST_F(SharedUsageMetricaClientTest, PollsArePacedAgainstTheSharedBudget) {
  local_->SetDailyUsage(kFp, Usage(0));
  shared_[kFp] = Usage(3000);
  // This replica alone spent nothing: 3600 spendable (4000 less the 10 %
  // reserve) over 10 h for one group. Shared: 600 left for the same 10 h.
  const absl::Duration alone = PollDelay(
      [this](const std::string& fp) { return local_->DailyUsage(fp); });
  const absl::Duration shared = PollDelay(
      [this](const std::string& fp) { return client_->DailyUsage(fp); });
  EXPECT_EQ(alone, absl::Seconds(36000.0 / 3600));
  EXPECT_EQ(shared, absl::Seconds(36000.0 / 600));
}

}  // namespace
}  // namespace uploadwatch::redis
