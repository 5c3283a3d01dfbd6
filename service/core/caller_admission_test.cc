// The rules of the server token's fair share, on a fixed clock: each caller's
// share of the callers' part of the budget and of the parallel slots, the
// callers' part as a whole, the reset, and the polls' view.
#include "service/core/caller_admission.h"

#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "service/common/status_details.h"

namespace uploadwatch {
namespace {

constexpr char kServer[] = "server-fp";
const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);
const absl::Time kReset = kNow + absl::Hours(5);

class CallerAdmissionTest : public ::testing::Test {
 protected:
  CallerAdmission Make(double share, double pool, int parallel) {
    return CallerAdmission(
        CallerAdmission::Options{
            .share = share, .pool = pool, .parallel = parallel},
        [this](const std::string& fp) -> std::optional<QuotaUsage> {
          if (fp != kServer || budget_ <= 0) return std::nullopt;
          return QuotaUsage{used_, budget_, resets_at_};
        });
  }
  // One admitted request, sent and answered.
  absl::Status Call(CallerAdmission& a, const std::string& caller) {
    absl::Status s = a.Admit(kServer, caller, kNow);
    if (s.ok()) {
      ++used_;
      a.Release(caller);
    }
    return s;
  }
  static std::string Reason(const absl::Status& s) {
    std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(s);
    return info ? info->reason() : "";
  }
  static std::string Flag(const absl::Status& s) {
    std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(s);
    return info && info->metadata().contains("flag")
               ? info->metadata().at("flag")
               : "";
  }
  int64_t budget_ = 40, used_ = 0;
  absl::Time resets_at_ = kReset;
};

TEST_F(CallerAdmissionTest, EachCallerGetsItsShareOfTheCallersPart) {
  // 40 a day, half for callers (20), a quarter of that each (5).
  CallerAdmission a = Make(0.25, 0.5, 3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Call(a, "ip:10.0.0.1").ok()) << i;
  const absl::Status refused = Call(a, "ip:10.0.0.1");
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Reason(refused), "CALLER_BUDGET_EXHAUSTED");
  EXPECT_EQ(Flag(refused), "--caller_budget_share");
  EXPECT_EQ(GetRetryDelay(refused), absl::Hours(5));  // until the reset
  // Another caller is not affected.
  EXPECT_TRUE(Call(a, "ip:10.0.0.2").ok());
}

TEST_F(CallerAdmissionTest, CallersTogetherNeverSpendMoreThanTheirPart) {
  CallerAdmission a = Make(0.25, 0.5, 3);
  int admitted = 0;
  absl::Status last;
  for (int c = 0; c < 10; ++c) {
    for (int i = 0; i < 5; ++i) {
      last = Call(a, "ip:10.0.0." + std::to_string(c));
      if (last.ok()) ++admitted;
    }
  }
  EXPECT_EQ(admitted, 20);
  EXPECT_EQ(Reason(last), "CALLERS_BUDGET_EXHAUSTED");
  EXPECT_EQ(Flag(last), "--budget_reserve");
}

TEST_F(CallerAdmissionTest, ACallerHoldsItsShareOfTheParallelSlots) {
  budget_ = 4000;
  CallerAdmission a = Make(0.25, 0.5, 8);  // 2 slots each
  // A lone caller may take every slot...
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(a.Admit(kServer, "cert:CN=a", kNow).ok());
  // ...but not more, and not keep others out: beyond its 2 it is refused
  // once the 8 are taken, while another caller still gets in.
  const absl::Status ninth = a.Admit(kServer, "cert:CN=a", kNow);
  EXPECT_EQ(Reason(ninth), "CALLER_CONCURRENCY");
  EXPECT_TRUE(a.Admit(kServer, "cert:CN=b", kNow).ok());
  EXPECT_TRUE(a.Admit(kServer, "cert:CN=b", kNow).ok());
  EXPECT_EQ(Reason(a.Admit(kServer, "cert:CN=b", kNow)), "CALLER_CONCURRENCY");
  a.Release("cert:CN=a");
  EXPECT_EQ(Reason(a.Admit(kServer, "cert:CN=a", kNow)), "CALLER_CONCURRENCY");
  EXPECT_TRUE(a.Admit(kServer, "cert:CN=c", kNow).ok());
}

TEST_F(CallerAdmissionTest, EveryCallerHasAtLeastOneSlot) {
  CallerAdmission a = Make(0.25, 0.5, 3);  // 0.75 slots: rounded up to 1
  ASSERT_TRUE(a.Admit(kServer, "ip:1", kNow).ok());
  ASSERT_TRUE(a.Admit(kServer, "ip:2", kNow).ok());
  ASSERT_TRUE(a.Admit(kServer, "ip:3", kNow).ok());
  EXPECT_EQ(Reason(a.Admit(kServer, "ip:1", kNow)), "CALLER_CONCURRENCY");
}

TEST_F(CallerAdmissionTest, ARefundedRequestCostsNothing) {
  CallerAdmission a = Make(0.25, 0.5, 3);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(a.Admit(kServer, "ip:1", kNow).ok()) << i;
    a.Refund("ip:1");  // joined a request under way
  }
  EXPECT_EQ(a.callers(), 0u);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(Call(a, "ip:1").ok()) << i;
}

TEST_F(CallerAdmissionTest, TheResetGivesEveryCallerItsShareAgain) {
  CallerAdmission a = Make(0.25, 0.5, 3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Call(a, "ip:1").ok());
  ASSERT_FALSE(Call(a, "ip:1").ok());
  resets_at_ = kReset + absl::Hours(24);
  used_ = 0;
  EXPECT_TRUE(Call(a, "ip:1").ok());
}

TEST_F(CallerAdmissionTest, WithoutADailyBudgetOnlySlotsAreCounted) {
  budget_ = 0;
  CallerAdmission a = Make(0.25, 0.5, 3);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(Call(a, "ip:1").ok()) << i;
  EXPECT_EQ(a.callers(), 0u);  // nothing kept for idle callers
}

TEST_F(CallerAdmissionTest, PollsDoNotSeeWhatCallersSpentFromTheirPart) {
  CallerAdmission a = Make(0.25, 0.5, 3);
  used_ = 7;  // polls so far
  for (int c = 0; c < 4; ++c) {
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(Call(a, "ip:" + std::to_string(c)).ok());
  }
  ASSERT_EQ(used_, 27);
  std::optional<QuotaUsage> polls = a.PollersView(kServer);
  ASSERT_TRUE(polls.has_value());
  EXPECT_EQ(polls->used, 7);
  EXPECT_EQ(polls->budget, 40);
}

TEST_F(CallerAdmissionTest, AWatchChargeCountsTheDayButTakesNoSlot) {
  CallerAdmission a = Make(0.25, 0.5, 3);  // 5 a day each
  // Three requests in flight take every slot...
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a.Admit(kServer, "ip:1", kNow).ok());
  // ...yet a watch's first state is still charged, not refused for a slot.
  ASSERT_TRUE(a.Charge(kServer, "ip:1", kNow).ok());
  ASSERT_TRUE(a.Charge(kServer, "ip:1", kNow).ok());
  const absl::Status spent = a.Charge(kServer, "ip:1", kNow);
  EXPECT_EQ(Reason(spent), "CALLER_BUDGET_EXHAUSTED");
  EXPECT_EQ(GetRetryDelay(spent), absl::Hours(5));
  // A charge that turned out free is given back.
  a.Uncharge("ip:1");
  EXPECT_TRUE(a.Charge(kServer, "ip:1", kNow).ok());
  for (int i = 0; i < 3; ++i) a.Release("ip:1");
  // The polls' view takes the watch charges out like the Gets.
  used_ = 5;
  EXPECT_EQ(a.PollersView(kServer)->used, 0);
}

TEST_F(CallerAdmissionTest, OpenWatchesArePerCallerAndCapped) {
  CallerAdmission a(CallerAdmission::Options{.max_watches = 2}, nullptr);
  ASSERT_TRUE(a.OpenWatch("ip:1").ok());
  ASSERT_TRUE(a.OpenWatch("ip:1").ok());
  const absl::Status third = a.OpenWatch("ip:1");
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Reason(third), "CALLER_WATCH_LIMIT");
  EXPECT_EQ(Flag(third), "--max_watches_per_caller");
  EXPECT_TRUE(a.OpenWatch("ip:2").ok());
  a.CloseWatch("ip:1");
  EXPECT_TRUE(a.OpenWatch("ip:1").ok());
  CallerAdmission uncapped(CallerAdmission::Options{}, nullptr);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(uncapped.OpenWatch("ip:1").ok());
}

}  // namespace
}  // namespace uploadwatch
