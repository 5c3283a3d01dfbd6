#ifndef UPLOADWATCH_TESTS_UPSTREAM_FIXTURE_H_
#define UPLOADWATCH_TESTS_UPSTREAM_FIXTURE_H_

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "metrika/offline_conversions/v1/uploading_service.grpc.pb.h"
#include "service/metrica/curl_metrica_client.h"
#include "service/server/uploading_server.h"
#include "service/simulator/fake_metrica.h"

namespace uploadwatch::testing {

namespace v1 = ::metrika::offline_conversions::v1;

// The real server on loopback port 0 whose upstream is the Metrica simulator
// served over TLS, with certificates tests/make_upstream_certs.sh makes at
// test time (see that script for the set). Each test picks the simulator's
// certificate and the fetcher's options before StartServer().
class UpstreamTest : public ::testing::Test {
 protected:
  static constexpr char kToken[] = "AQAAAAA-upstream-tls-secret-7f3a9";
  static constexpr int32_t kCounter = 2215573;

  static void SetUpTestSuite() {
    certs_ = new std::string(std::string(std::getenv("TEST_TMPDIR")) + "/certs");
    const std::string script = std::string(std::getenv("TEST_SRCDIR")) +
                               "/uploadwatch/tests/make_upstream_certs.sh";
    ASSERT_EQ(std::system(("mkdir -p " + *certs_ + " && " + script + " " +
                           *certs_).c_str()),
              0);
  }
  static void TearDownTestSuite() {
    delete certs_;
    certs_ = nullptr;
  }

  static std::string Cert(const std::string& name) {
    return *certs_ + "/" + name;
  }

  void TearDown() override {
    stub_.reset();
    if (server_ != nullptr) server_->Shutdown(absl::ZeroDuration());
    server_.reset();
    if (metrica_ != nullptr) metrica_->Stop();
  }

  // (Re)starts the simulator with certificate `name` (good, wronghost,
  // expired, foreign), on `port` (0: a free one), seeded with uploading 12
  // (PROCESSED) and 20 (walking to PROCESSED in about a second).
  void StartMetrica(const std::string& name, int port = 0) {
    if (metrica_ != nullptr) metrica_->Stop();
    FakeMetrica::Options options;
    options.port = port;
    options.tls_cert_file = Cert(name + ".pem");
    options.tls_key_file = Cert(name + ".key");
    metrica_ = std::make_unique<FakeMetrica>(options);
    const absl::Status started = metrica_->Start();
    ASSERT_TRUE(started.ok()) << started;
    metrica_->GrantAccess(kToken, kCounter);
    metrica_->AddUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
    StartJourney20();
  }

  // (Re)starts uploading 20's 750 ms journey to PROCESSED from now. A test
  // that lists and then watches it restarts it just before, so that however
  // slow the steps before (TSan), the list sees it under way and the watch
  // has to poll Metrica.
  void StartJourney20() {
    metrica_->AddUploading(
        kCounter, MakeUploading(20, v1::Uploading::PREPARED),
        {{absl::Milliseconds(250), v1::Uploading::UPLOADED},
         {absl::Milliseconds(500), v1::Uploading::MATCHED},
         {absl::Milliseconds(750), v1::Uploading::PROCESSED}});
  }

  // Fetcher options against the simulator: trusts the test CA.
  CurlMetricaClient::Options Upstream() {
    CurlMetricaClient::Options upstream;
    upstream.base_url = metrica_->base_url();
    upstream.ca_file = Cert("ca.pem");
    upstream.backoff.initial = absl::Milliseconds(20);
    upstream.backoff.max = absl::Milliseconds(100);
    upstream.max_attempts = 2;
    upstream.daily_budget.per_token = 0;
    return upstream;
  }

  void StartServer(CurlMetricaClient::Options upstream) {
    auto client = CurlMetricaClient::Create(std::move(upstream));
    ASSERT_TRUE(client.ok()) << client.status();
    ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.default_token = kToken;
    config.hub.poll_interval = absl::Milliseconds(100);
    config.hub.cache_ttl = absl::Milliseconds(50);
    // Room for two TLS attempts that each load the system CA store (seen
    // taking over 3 s under TSan on a loaded machine), still inside the
    // callers' 10 s deadline so that the fetcher's verdict is what they see.
    config.hub.upstream_timeout = absl::Seconds(8);
    config.hub.max_backoff = absl::Milliseconds(400);
    config.log_sink = [](absl::string_view) {};
    auto server = UploadingServer::Start(config, *std::move(client));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::UploadingService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->port()),
        grpc::InsecureChannelCredentials()));
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

  static std::unique_ptr<grpc::ClientContext> Context(
      absl::Duration timeout = absl::Seconds(10)) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    return ctx;
  }

  grpc::Status Get(int64_t id, v1::GetUploadingResponse* response) {
    v1::GetUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(id);
    return stub_->GetUploading(Context().get(), request, response);
  }

  grpc::Status List(v1::ListUploadingsResponse* response) {
    v1::ListUploadingsRequest request;
    request.set_counter_id(kCounter);
    return stub_->ListUploadings(Context().get(), request, response);
  }

  // Every message of a watch and its final status.
  grpc::Status WatchToEnd(int64_t id,
                          std::vector<v1::WatchUploadingResponse>* messages) {
    auto ctx = Context(absl::Seconds(15));
    v1::WatchUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(id);
    auto reader = stub_->WatchUploading(ctx.get(), request);
    v1::WatchUploadingResponse message;
    while (reader->Read(&message)) messages->push_back(message);
    return reader->Finish();
  }

  static inline std::string* certs_ = nullptr;
  std::unique_ptr<FakeMetrica> metrica_;
  std::unique_ptr<UploadingServer> server_;
  std::unique_ptr<v1::UploadingService::Stub> stub_;
};

}  // namespace uploadwatch::testing

#endif  // UPLOADWATCH_TESTS_UPSTREAM_FIXTURE_H_
