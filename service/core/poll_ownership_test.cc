// The PollOwnership seam through the hub, on simulated time against the
// in-memory Metrica: what a replica that polls a group for other replicas
// asks Metrica, and how the token's groups on every replica pace its polls.
#include "service/core/poll_ownership.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "service/core/uploading_hub.h"
#include "service/testing/fake_metrica_client.h"
#include "service/testing/fixed_random.h"
#include "service/testing/hub_test_util.h"
#include "service/testing/simulated_time.h"

namespace uploadwatch {
namespace {

using ::uploadwatch::testing::CountingSubscriber;
using ::uploadwatch::testing::FakeMetricaClient;
using ::uploadwatch::testing::FixedRandom;
using ::uploadwatch::testing::kCounter;
using ::uploadwatch::testing::MakeUploading;
using ::uploadwatch::testing::SimulatedTime;

constexpr char kToken[] = "AQAAAAA-ownership-test-token";

// A replica that polls every group it wants, for itself and for the ids
// `others` names; `token_groups` as counted over all replicas.
class FakeOwnership : public PollOwnership {
 public:
  void Want(const std::string& name) override {
    absl::MutexLock lock(&mu_);
    wanted_.push_back(name);
  }
  void Unwant(const std::string&) override {}
  bool ShouldPoll(const std::string&) const override { return true; }
  std::vector<int64_t> OthersWant(const std::string& group) const override {
    absl::MutexLock lock(&mu_);
    return group == group_ ? others_ : std::vector<int64_t>{};
  }
  std::optional<size_t> TokenGroups(const std::string&) const override {
    absl::MutexLock lock(&mu_);
    return token_groups_;
  }

  void SetOthers(std::string group, std::vector<int64_t> ids) {
    absl::MutexLock lock(&mu_);
    group_ = std::move(group);
    others_ = std::move(ids);
  }
  void SetTokenGroups(std::optional<size_t> n) {
    absl::MutexLock lock(&mu_);
    token_groups_ = n;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> wanted_ ABSL_GUARDED_BY(mu_);
  std::string group_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> others_ ABSL_GUARDED_BY(mu_);
  std::optional<size_t> token_groups_ ABSL_GUARDED_BY(mu_);
};

class PollOwnershipTest : public ::testing::Test {
 protected:
  PollOwnershipTest() : client_(&time_) {
    client_.set_latency(absl::ZeroDuration());
    options_.poll_interval = absl::Seconds(30);
    options_.random = &random_;
    options_.ownership = &ownership_;
  }
  void TearDown() override {
    if (hub_ != nullptr) hub_->Shutdown(absl::UnavailableError("test over"));
    time_.RunPending();
    hub_.reset();
  }
  void Start() {
    hub_ = std::make_unique<UploadingHub>(&client_, &time_, &time_, &time_,
                                          options_);
  }
  std::string Group() const {
    return PollGroupKey(credentials_.fingerprint(), kCounter);
  }

  SimulatedTime time_;
  FakeMetricaClient client_;
  FixedRandom random_;
  FakeOwnership ownership_;
  UploadingHub::Options options_;
  const Credentials credentials_{kToken};
  // Outlives the hub's last delivery (its shutdown error, in TearDown).
  CountingSubscriber here_;
  std::unique_ptr<UploadingHub> hub_;
};

TEST(PollKeys, GroupAndUploadingNamesParseBackAndNeverAsEachOther) {
  std::string fp;
  int64_t counter = 0, id = 0;
  EXPECT_TRUE(ParsePollGroupKey(PollGroupKey("00ff", 42), &fp, &counter));
  EXPECT_EQ(fp, "00ff");
  EXPECT_EQ(counter, 42);
  EXPECT_FALSE(ParsePollGroupKey(PollUploadingKey("00ff", 42, 7), &fp, &counter));
  EXPECT_FALSE(ParsePollUploadingKey(PollGroupKey("00ff", 42), &fp, &counter, &id));
  EXPECT_FALSE(ParsePollGroupKey(":42", &fp, &counter));
  EXPECT_FALSE(ParsePollGroupKey("00ff:x", &fp, &counter));
}

// Watchers here want 1; other replicas' want 2 and 3 of the same counter:
// one round lists the three together, and a round starts when the
// ownership says the group gained a newcomer elsewhere.
TEST_F(PollOwnershipTest, TheGroupsPollerListsWhatOtherReplicasWantInTheSameRound) {
  for (int64_t id : {1, 2, 3, 4}) {
    client_.SetUploading(kCounter, MakeUploading(id, v1::Uploading::MATCHED));
  }
  Start();
  CountingSubscriber& here = here_;
  ASSERT_TRUE(hub_->Subscribe(credentials_, kCounter, 1, &here).ok());
  time_.Advance(absl::Milliseconds(20));
  ASSERT_EQ(here.states, 1);
  client_.ClearLog();
  // Alone, one watched uploading is one Get per interval.
  time_.Advance(absl::Seconds(30));
  EXPECT_EQ(client_.count("get"), 1);
  EXPECT_EQ(client_.count("list"), 0);
  // Others want 2 and 3: a round now (not at the next interval), one List.
  ownership_.SetOthers(Group(), {2, 3});
  client_.ClearLog();
  hub_->PollOwnershipChanged(Group(), true);
  time_.Advance(absl::Milliseconds(20));
  EXPECT_EQ(client_.count("list"), 1);
  EXPECT_EQ(client_.count("get"), 0);
  // And every interval after it: one List for the three, whoever watches.
  client_.ClearLog();
  time_.Advance(absl::Seconds(30) * 3);
  EXPECT_EQ(client_.count("list"), 3);
  EXPECT_EQ(client_.count("get"), 0);
  // Their changes are observed here (and so published), though nobody here
  // watches them.
  client_.SetUploading(kCounter, MakeUploading(2, v1::Uploading::PROCESSED));
  time_.Advance(absl::Seconds(30));
  std::optional<UploadingState> seen =
      hub_->Servable(UploadingKey{credentials_.fingerprint(), kCounter, 2},
                     time_.Now());
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->uploading.status(), v1::Uploading::PROCESSED);
  EXPECT_EQ(here.states, 1);  // 1 never changed
}

// One group here, two more on other replicas: the budget is spread over the
// three, so this replica's share is a third of what it would take alone.
TEST_F(PollOwnershipTest, PollsPaceOverTheTokensGroupsOnEveryReplica) {
  client_.SetUploading(kCounter, MakeUploading(1, v1::Uploading::MATCHED));
  Start();
  QuotaUsage usage;
  usage.budget = 100000;
  usage.used = 40000;
  usage.resets_at = time_.Now() + absl::Hours(1000);
  client_.SetDailyUsage(credentials_.fingerprint(), usage);
  ownership_.SetTokenGroups(3);
  CountingSubscriber& w = here_;
  ASSERT_TRUE(hub_->Subscribe(credentials_, kCounter, 1, &w).ok());
  time_.Advance(absl::Milliseconds(20));
  client_.ClearLog();
  // 50,000 spendable over 1000 h for three groups: one poll per 216 s each
  // (alone: 72 s).
  time_.Advance(absl::Seconds(215));
  EXPECT_EQ(client_.count("get"), 0);
  time_.Advance(absl::Seconds(1));
  EXPECT_EQ(client_.count("get"), 1);
  // The count is not known (Redis unreachable): this replica's one group.
  ownership_.SetTokenGroups(std::nullopt);
  time_.Advance(absl::Seconds(216));  // the poll paced before: 216 s
  client_.ClearLog();
  time_.Advance(absl::Seconds(71));
  EXPECT_EQ(client_.count("get"), 0);
  time_.Advance(absl::Seconds(1));
  EXPECT_EQ(client_.count("get"), 1);
}

}  // namespace
}  // namespace uploadwatch
