#ifndef UPLOADWATCH_TESTS_SERVICE_FIXTURE_H_
#define UPLOADWATCH_TESTS_SERVICE_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "metrika/offline_conversions/v1/uploading_service.grpc.pb.h"
#include "service/metrica/curl_metrica_client.h"
#include "service/server/uploading_server.h"
#include "service/simulator/fake_metrica.h"

namespace uploadwatch::testing {

namespace v1 = ::metrika::offline_conversions::v1;

// The real server on a loopback port against the Metrica simulator, driven
// through the generated stub. Timings are scaled down (poll every 100 ms).
class ServiceTest : public ::testing::Test {
 protected:
  static constexpr char kToken[] = "AQAAAAA-tenant-a-secret";
  static constexpr int32_t kCounter = 2215573;

  void SetUp() override {
    ASSERT_TRUE(metrica_.Start().ok());
    metrica_.GrantAccess(kToken, kCounter);
    config_.listen = "127.0.0.1:0";
    config_.default_token = kToken;
    config_.hub.poll_interval = absl::Milliseconds(100);
    config_.hub.cache_ttl = absl::Milliseconds(50);
    config_.hub.upstream_timeout = absl::Seconds(3);
    config_.hub.max_backoff = absl::Milliseconds(400);
    // Kept if a test's constructor set its own.
    if (!config_.log_sink) {
      config_.log_sink = [this](absl::string_view line) {
        absl::MutexLock lock(&log_mu_);
        log_lines_.emplace_back(line);
      };
    }
  }

  // host:port of the server under test.
  std::string address() const {
    return absl::StrCat("127.0.0.1:", server_->port());
  }

  void TearDown() override {
    stub_.reset();
    if (server_ != nullptr) server_->Shutdown(absl::ZeroDuration());
    server_.reset();
    metrica_.Stop();
  }

  // Starts the server with config_ (tests adjust it first).
  void StartServer() {
    CurlMetricaClient::Options upstream;
    upstream.base_url = metrica_.base_url();
    upstream.backoff.initial = absl::Milliseconds(20);
    upstream.backoff.max = absl::Milliseconds(100);
    upstream.max_attempts = 2;
    // Unlimited unless a test is about the budget: at 100 ms polls a real
    // daily budget would (rightly) stretch the intervals.
    upstream.daily_budget.per_token = daily_budget_;
    auto client = CurlMetricaClient::Create(upstream);
    ASSERT_TRUE(client.ok()) << client.status();
    auto server = UploadingServer::Start(config_, *std::move(client));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::UploadingService::NewStub(channel_);
  }

  static v1::Uploading MakeUploading(int64_t id, v1::Uploading::Status status) {
    v1::Uploading u;
    u.set_id(id);
    u.mutable_create_time()->set_seconds(1700000000);
    u.set_source_quantity(100);
    u.set_line_quantity(98);
    u.set_comment(absl::StrCat("upload ", id));
    u.set_client_id_type(v1::Uploading::CLIENT_ID);
    u.set_type(v1::Uploading::BASIC);
    u.set_status(status);
    return u;
  }

  // An uploading that walks PREPARED -> ... -> `last`, one step every
  // `step` (so ~0.8 s by default).
  void AddJourney(int64_t id,
                  v1::Uploading::Status last = v1::Uploading::PROCESSED,
                  absl::Duration step = absl::Milliseconds(200)) {
    metrica_.AddUploading(kCounter, MakeUploading(id, v1::Uploading::PREPARED),
                          {{step, v1::Uploading::UPLOADED},
                           {step * 2, v1::Uploading::EXPORTED},
                           {step * 3, v1::Uploading::MATCHED},
                           {step * 4, last}});
  }

  // A watch that has received its first message.
  struct OpenWatch {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientReader<v1::WatchUploadingResponse>> reader;
  };
  OpenWatch Watch(int64_t id, int32_t counter = kCounter) {
    OpenWatch w{Context(absl::Seconds(30)), nullptr};
    v1::WatchUploadingRequest request;
    request.set_counter_id(counter);
    request.set_uploading_id(id);
    w.reader = stub_->WatchUploading(w.ctx.get(), request);
    v1::WatchUploadingResponse m;
    EXPECT_TRUE(w.reader->Read(&m));
    return w;
  }

  // Requests that reached the simulator for one uploading.
  int UpstreamCallsFor(int64_t uploading_id) {
    const std::string suffix = absl::StrCat("/uploading/", uploading_id);
    int n = 0;
    for (const auto& r : metrica_.requests()) {
      if (absl::EndsWith(r.path, suffix)) ++n;
    }
    return n;
  }

  std::vector<std::string> LogLines() {
    absl::MutexLock lock(&log_mu_);
    return log_lines_;
  }

  static std::unique_ptr<grpc::ClientContext> Context(
      absl::Duration timeout = absl::Seconds(10), std::string token = "") {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    if (!token.empty()) ctx->AddMetadata("authorization", "OAuth " + token);
    return ctx;
  }

  // Reads a whole watch: every message and the final status.
  struct WatchResult {
    std::vector<v1::WatchUploadingResponse> messages;
    grpc::Status status;
  };
  WatchResult WatchToEnd(int64_t id, absl::Duration timeout = absl::Seconds(10),
                         std::string token = "") {
    auto ctx = Context(timeout, token);
    v1::WatchUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(id);
    auto reader = stub_->WatchUploading(ctx.get(), request);
    WatchResult result;
    v1::WatchUploadingResponse message;
    while (reader->Read(&message)) result.messages.push_back(message);
    result.status = reader->Finish();
    return result;
  }

  int64_t daily_budget_ = 0;
  FakeMetrica metrica_{FakeMetrica::Options{}};
  ServerConfig config_;
  std::unique_ptr<UploadingServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::UploadingService::Stub> stub_;
  absl::Mutex log_mu_;
  std::vector<std::string> log_lines_ ABSL_GUARDED_BY(log_mu_);
};

}  // namespace uploadwatch::testing

#endif  // UPLOADWATCH_TESTS_SERVICE_FIXTURE_H_
