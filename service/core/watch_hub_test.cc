// WatchHub against the real fetcher and the Metrica simulator.
#include "service/core/watch_hub.h"

#include <memory>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "service/metrica/curl_metrica_client.h"
#include "service/simulator/fake_metrica.h"

namespace uploadwatch {
namespace {

constexpr int32_t kCounter = 2215573;
constexpr char kToken[] = "AQAAAAA-hub-test-token";

// Blocks inside its first OnState until released (the contract says a
// subscriber must not block; this one does, to show what it holds up).
class BlockingSubscriber : public WatchHub::Subscriber {
 public:
  void OnState(const UploadingState&, bool) override {
    if (!entered_.HasBeenNotified()) entered_.Notify();
    release_.WaitForNotification();
  }
  void OnError(const absl::Status&) override {}
  absl::Notification entered_, release_;
};

TEST(WatchHub, AFanOutDoesNotHoldUpCachedGets) {
  FakeMetrica metrica(FakeMetrica::Options{});
  ASSERT_TRUE(metrica.Start().ok());
  metrica.GrantAccess(kToken, kCounter);
  for (auto [id, status] : {std::pair{1, v1::Uploading::MATCHED},
                            std::pair{2, v1::Uploading::PROCESSED}}) {
    v1::Uploading u;
    u.set_id(id);
    u.set_status(status);
    metrica.AddUploading(kCounter, u);
  }
  CurlMetricaClient::Options upstream;
  upstream.base_url = metrica.base_url();
  upstream.daily_budget.per_token = 0;
  auto client = CurlMetricaClient::Create(upstream);
  ASSERT_TRUE(client.ok()) << client.status();
  ThreadScheduler scheduler;
  WatchHub::Options options;
  options.poll_interval = absl::Seconds(30);
  auto hub = std::make_unique<WatchHub>(client->get(), &scheduler,
                                        Clock::Real(), options);
  const Credentials credentials(kToken);

  auto get = [&](int64_t id) {
    auto done = std::make_shared<absl::Notification>();
    hub->Get(credentials, kCounter, id,
             [done](absl::StatusOr<UploadingState> s) {
               EXPECT_TRUE(s.ok()) << s.status();
               done->Notify();
             });
    return done;
  };
  ASSERT_TRUE(get(2)->WaitForNotificationWithTimeout(absl::Seconds(5)));

  BlockingSubscriber watcher;
  ASSERT_TRUE(hub->Subscribe(credentials, kCounter, 1, &watcher).ok());
  ASSERT_TRUE(watcher.entered_.WaitForNotificationWithTimeout(absl::Seconds(5)));
  // The delivery is under way (and stuck): a cached Get is still answered.
  EXPECT_TRUE(get(2)->WaitForNotificationWithTimeout(absl::Seconds(2)));
  EXPECT_EQ(hub->stats().watchers, 1u);

  watcher.release_.Notify();
  hub->Unsubscribe(&watcher);
  hub->Shutdown(absl::UnavailableError("test over"));
  client->reset();
  hub.reset();
}

}  // namespace
}  // namespace uploadwatch
