#include "service/core/fan_out.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "service/testing/simulated_time.h"

namespace uploadwatch {
namespace {

using ::uploadwatch::testing::SimulatedTime;

class Recorder : public Subscriber {
 public:
  void OnState(const UploadingState& state) override {
    absl::MutexLock lock(&mu_);
    got_.push_back(state.uploading.id() * 100 + state.version);
  }
  void OnError(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    got_.push_back(-static_cast<int>(status.code()));
  }
  std::vector<int64_t> got() {
    absl::MutexLock lock(&mu_);
    return got_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int64_t> got_;
};

std::shared_ptr<const UploadingState> State(int64_t id, int64_t version) {
  auto s = std::make_shared<UploadingState>();
  s->uploading.set_id(id);
  s->version = version;
  return s;
}

TEST(FanOut, DeliversOnTheExecutorNeverInline) {
  SimulatedTime time;
  FanOut fan_out(&time);
  Recorder a, b;
  fan_out.Add(&a);
  fan_out.Add(&b);
  fan_out.Post({&a, &b}, State(1, 1));
  EXPECT_TRUE(a.got().empty());
  time.RunPending();
  EXPECT_EQ(a.got(), (std::vector<int64_t>{101}));
  EXPECT_EQ(b.got(), (std::vector<int64_t>{101}));
}

TEST(FanOut, InOrderPerSubscriberWithoutDuplicatesOrStepsBack) {
  SimulatedTime time;
  FanOut fan_out(&time);
  Recorder a;
  fan_out.Add(&a);
  fan_out.Post({&a}, State(1, 1));
  fan_out.Post({&a}, State(1, 2));
  fan_out.Post({&a}, State(1, 2));  // a duplicate
  fan_out.Post({&a}, State(2, 1));  // another uploading (a counter watch)
  fan_out.Post({&a}, State(1, 1));  // older news
  fan_out.Post({&a}, State(1, 3));
  time.RunPending();
  EXPECT_EQ(a.got(), (std::vector<int64_t>{101, 102, 201, 103}));
}

class ConfirmationRecorder : public Recorder {
 public:
  void OnConfirmed(const UploadingState& state) override {
    absl::MutexLock lock(&mu_);
    confirmed_.push_back(absl::ToUnixSeconds(state.check_time));
  }
  std::vector<int64_t> confirmed() {
    absl::MutexLock lock(&mu_);
    return confirmed_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int64_t> confirmed_;
};

std::shared_ptr<const UploadingState> Checked(int64_t id, int64_t version,
                                              int64_t check_seconds) {
  auto s = std::make_shared<UploadingState>(*State(id, version));
  s->check_time = absl::FromUnixSeconds(check_seconds);
  return s;
}

TEST(FanOut, TheSameVersionCheckedLaterIsAConfirmationNeverAState) {
  SimulatedTime time;
  FanOut fan_out(&time);
  ConfirmationRecorder a;
  fan_out.Add(&a);
  fan_out.Post({&a}, Checked(1, 1, 10));
  fan_out.Post({&a}, Checked(1, 1, 20));  // confirmed again
  fan_out.Post({&a}, Checked(1, 1, 20));  // nothing new
  fan_out.Post({&a}, Checked(1, 1, 15));  // older news
  fan_out.Post({&a}, Checked(1, 2, 30));  // a change
  fan_out.Post({&a}, Checked(1, 1, 40));  // a step back, however recent
  fan_out.Post({&a}, Checked(1, 2, 50));
  time.RunPending();
  EXPECT_EQ(a.got(), (std::vector<int64_t>{101, 102}));
  EXPECT_EQ(a.confirmed(), (std::vector<int64_t>{20, 50}));
}

TEST(FanOut, AnErrorIsTheLastCall) {
  SimulatedTime time;
  FanOut fan_out(&time);
  Recorder a;
  fan_out.Add(&a);
  fan_out.Post({&a}, State(1, 1));
  fan_out.PostError({&a}, absl::UnavailableError("bye"));
  fan_out.Post({&a}, State(1, 2));
  time.RunPending();
  EXPECT_EQ(a.got(), (std::vector<int64_t>{
                         101, -static_cast<int>(absl::StatusCode::kUnavailable)}));
}

TEST(FanOut, NothingReachesASubscriberRemovedOrNeverAdded) {
  SimulatedTime time;
  FanOut fan_out(&time);
  Recorder a, stranger;
  fan_out.Add(&a);
  fan_out.Post({&a, &stranger}, State(1, 1));
  fan_out.Remove(&a);
  time.RunPending();
  EXPECT_TRUE(a.got().empty());
  EXPECT_TRUE(stranger.got().empty());
  EXPECT_EQ(fan_out.size(), 0u);
}

// Leaves from inside its own delivery.
class Leaver : public Subscriber {
 public:
  explicit Leaver(FanOut* fan_out) : fan_out_(fan_out) {}
  void OnState(const UploadingState&) override {
    ++calls;
    fan_out_->Remove(this);
  }
  void OnError(const absl::Status&) override { ++calls; }
  int calls = 0;

 private:
  FanOut* fan_out_;
};

TEST(FanOut, ASubscriberMayLeaveFromItsOwnDelivery) {
  SimulatedTime time;
  FanOut fan_out(&time);
  Leaver leaver(&fan_out);
  fan_out.Add(&leaver);
  fan_out.Post({&leaver}, State(1, 1));
  fan_out.Post({&leaver}, State(1, 2));
  time.RunPending();
  EXPECT_EQ(leaver.calls, 1);
  EXPECT_EQ(fan_out.size(), 0u);
}

// Blocks in OnState until released.
class Blocker : public Subscriber {
 public:
  void OnState(const UploadingState&) override {
    entered.Notify();
    release.WaitForNotification();
  }
  void OnError(const absl::Status&) override {}
  absl::Notification entered, release;
};

TEST(FanOut, RemoveWaitsOnlyForItsOwnDeliveryInProgress) {
  ThreadPoolExecutor executor(2);
  FanOut fan_out(&executor);
  Blocker stuck;
  Recorder other;
  fan_out.Add(&stuck);
  fan_out.Add(&other);
  fan_out.Post({&stuck}, State(1, 1));
  ASSERT_TRUE(stuck.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // A delivery to `stuck` is in progress: `other` comes and goes freely.
  fan_out.Remove(&other);
  absl::Notification removed;
  std::thread remover([&] {
    fan_out.Remove(&stuck);
    removed.Notify();
  });
  EXPECT_FALSE(removed.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  stuck.release.Notify();
  ASSERT_TRUE(removed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  remover.join();
}

// Records OnDrained as 0 among the deliveries.
class DrainRecorder : public Recorder {
 public:
  void OnDrained() override { OnState(UploadingState{}); }
};

TEST(FanOut, WhatIsQueuedGoesOutInOneStretchFollowedByOnDrained) {
  SimulatedTime time;
  FanOut fan_out(&time);
  DrainRecorder a;
  fan_out.Add(&a);
  fan_out.Post({&a}, State(1, 1));
  fan_out.Post({&a}, State(2, 1));
  fan_out.Post({&a}, State(3, 1));
  time.RunPending();
  EXPECT_EQ(a.got(), (std::vector<int64_t>{101, 201, 301, 0}));
  fan_out.Post({&a}, State(1, 2));
  fan_out.Post({&a}, State(1, 1));  // dropped: nothing new, still drained
  time.RunPending();
  EXPECT_EQ(a.got(), (std::vector<int64_t>{101, 201, 301, 0, 102, 0}));
}

TEST(FanOut, NoOnDrainedAfterAnError) {
  SimulatedTime time;
  FanOut fan_out(&time);
  DrainRecorder a;
  fan_out.Add(&a);
  fan_out.Post({&a}, State(1, 1));
  fan_out.PostError({&a}, absl::UnavailableError("bye"));
  time.RunPending();
  EXPECT_EQ(a.got(), (std::vector<int64_t>{
                         101, -static_cast<int>(absl::StatusCode::kUnavailable)}));
}

// Blocks in its first OnState until released; counts every call.
class FirstBlocker : public Subscriber {
 public:
  void OnState(const UploadingState&) override {
    if (calls.fetch_add(1) == 0) {
      entered.Notify();
      release.WaitForNotification();
    }
  }
  void OnError(const absl::Status&) override { calls.fetch_add(1); }
  void OnDrained() override { calls.fetch_add(1); }
  std::atomic<int> calls{0};
  absl::Notification entered, release;
};

TEST(FanOut, RemoveStopsTheRestOfAStretchInProgress) {
  ThreadPoolExecutor executor(2);
  FanOut fan_out(&executor);
  FirstBlocker s;
  fan_out.Add(&s);
  fan_out.Post({&s}, State(1, 1));
  fan_out.Post({&s}, State(2, 1));
  fan_out.Post({&s}, State(3, 1));
  ASSERT_TRUE(s.entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  absl::Notification removed;
  std::thread remover([&] {
    fan_out.Remove(&s);
    removed.Notify();
  });
  // Remove waits for the call in progress, not for the rest.
  EXPECT_FALSE(removed.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  s.release.Notify();
  ASSERT_TRUE(removed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  remover.join();
  EXPECT_EQ(s.calls.load(), 1);  // neither the other states nor OnDrained
}

}  // namespace
}  // namespace uploadwatch
