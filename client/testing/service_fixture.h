#ifndef UPLOADWATCH_CLIENT_TESTING_SERVICE_FIXTURE_H_
#define UPLOADWATCH_CLIENT_TESTING_SERVICE_FIXTURE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"
#include "service/metrica/curl_metrica_client.h"
#include "service/server/uploading_server.h"
#include "service/simulator/fake_metrica.h"

namespace uploadwatch::client_testing {

namespace v1 = ::metrika::offline_conversions::v1;

// The real server on a loopback port against the Metrica simulator, for the
// client's end-to-end tests. The server has no token of its own, so a call
// succeeds only when the client sends kToken. Timings are scaled down: the
// server polls every 100 ms, journeys take a second.
class ServiceFixture : public ::testing::Test {
 protected:
  static constexpr char kToken[] = "AQAAAAA-client-test-token";
  static constexpr int32_t kCounter = 2215573;

  void SetUp() override {
    ASSERT_TRUE(metrica_.Start().ok());
    metrica_.GrantAccess(kToken, kCounter);

    ServerConfig config = config_;
    config.listen = "127.0.0.1:0";
    config.default_token = "";
    config.hub.poll_interval = absl::Milliseconds(100);
    config.hub.cache_ttl = absl::Milliseconds(50);
    config.hub.upstream_timeout = absl::Seconds(3);
    config.hub.max_backoff = absl::Milliseconds(400);
    if (!config.log_sink) config.log_sink = [](absl::string_view) {};

    CurlMetricaClient::Options upstream;
    upstream.base_url = metrica_.base_url();
    upstream.backoff.initial = absl::Milliseconds(20);
    upstream.backoff.max = absl::Milliseconds(100);
    upstream.max_attempts = 2;
    // No daily budget: at 100 ms polls a real one would (rightly) stretch
    // the intervals to seconds.
    upstream.daily_budget.per_token = 0;
    auto client = CurlMetricaClient::Create(upstream);
    ASSERT_TRUE(client.ok()) << client.status();
    auto server = UploadingServer::Start(config, *std::move(client));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::ZeroDuration());
    server_.reset();
    metrica_.Stop();
  }

  // host:port of the server under test.
  std::string address() const {
    return absl::StrCat("127.0.0.1:", server_->port());
  }

  static v1::Uploading MakeUploading(int64_t id, v1::Uploading::Status status) {
    v1::Uploading u;
    u.set_id(id);
    u.mutable_create_time()->set_seconds(1700000000);  // 2023-11-14T22:13:20Z
    u.set_source_quantity(100);
    u.set_line_quantity(98);
    u.set_comment(absl::StrCat("upload ", id));
    u.set_client_id_type(v1::Uploading::CLIENT_ID);
    u.set_type(v1::Uploading::BASIC);
    u.set_status(status);
    return u;
  }

  // An uploading that goes PREPARED -> ... -> `last` in about a second.
  void AddJourney(int64_t id, v1::Uploading::Status last = v1::Uploading::PROCESSED) {
    metrica_.AddUploading(
        kCounter, MakeUploading(id, v1::Uploading::PREPARED),
        {{absl::Milliseconds(250), v1::Uploading::UPLOADED},
         {absl::Milliseconds(500), v1::Uploading::EXPORTED},
         {absl::Milliseconds(750), v1::Uploading::MATCHED},
         {absl::Milliseconds(1000), last}});
  }

  FakeMetrica metrica_{FakeMetrica::Options{}};
  // Starting point of the server's config: a test's constructor may adjust
  // what SetUp does not set (e.g. watch_limits).
  ServerConfig config_;
  std::unique_ptr<UploadingServer> server_;
};

}  // namespace uploadwatch::client_testing

#endif  // UPLOADWATCH_CLIENT_TESTING_SERVICE_FIXTURE_H_
