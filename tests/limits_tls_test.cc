// Resource limits (per-connection watch cap, stream lifetime) and TLS/mTLS.
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "tests/service_fixture.h"

namespace uploadwatch::testing {
namespace {

using ::testing::HasSubstr;

class LimitsTest : public ServiceTest {
 protected:
  // A channel with its own connection (not shared with channel_).
  std::unique_ptr<v1::UploadingService::Stub> NewConnection() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return v1::UploadingService::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", server_->port()),
        grpc::InsecureChannelCredentials(), args));
  }
};

TEST_F(LimitsTest, WatchesPerConnectionAreCappedWithAClearMessage) {
  config_.watch_limits.max_per_connection = 2;
  metrica_.AddUploading(kCounter, MakeUploading(51, v1::Uploading::MATCHED));
  StartServer();
  OpenWatch w1 = Watch(51), w2 = Watch(51);
  WatchResult third = WatchToEnd(51);  // same channel, same connection
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(third.status.error_message(), HasSubstr("per connection"));

  v1::WatchUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(51);
  v1::WatchUploadingResponse m;
  auto other = NewConnection();
  auto c3 = Context();
  auto w3 = other->WatchUploading(c3.get(), request);
  EXPECT_TRUE(w3->Read(&m)) << "another connection has its own allowance";

  // A closed watch frees its slot.
  w1.ctx->TryCancel();
  w1.reader->Finish();
  absl::SleepFor(absl::Milliseconds(100));
  OpenWatch w4 = Watch(51);  // would fail its first Read if still refused
  w2.ctx->TryCancel();
  c3->TryCancel();
  w4.ctx->TryCancel();
}

TEST_F(LimitsTest, ALifetimeBeforeTheFirstStateEndsTheWatchRightAfterIt) {
  // Metrica takes 800 ms to give the first state; the lifetime is 90-100 %
  // of 200 ms. The client gets the state, then the re-watch (ended at its
  // lifetime it would get nothing, and clients give up on an UNAVAILABLE
  // before any message).
  config_.watch_limits.max_lifetime = absl::Milliseconds(200);
  metrica_.AddUploading(kCounter, MakeUploading(53, v1::Uploading::MATCHED));
  StartServer();
  FakeMetrica::Fault slow;
  slow.delay = absl::Milliseconds(800);
  slow.times = -1;
  metrica_.InjectFault(slow);
  WatchResult r = WatchToEnd(53);
  ASSERT_EQ(r.messages.size(), 1u) << r.status.error_message();
  EXPECT_EQ(r.messages[0].uploading().status(), v1::Uploading::MATCHED);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(r.status.error_message(), HasSubstr("re-watch"));
}

TEST_F(LimitsTest, LongWatchesEndAtTheirJitteredLifetimeAskingToRewatch) {
  // The watch is to end at its lifetime, after showing the state: the state
  // is cached first (a Get), so the first message does not wait for Metrica
  // (under TSan on a loaded machine that took longer than the lifetime).
  config_.watch_limits.max_lifetime = absl::Seconds(1);
  metrica_.AddUploading(kCounter, MakeUploading(52, v1::Uploading::MATCHED));
  StartServer();
  {
    v1::GetUploadingRequest get;
    get.set_counter_id(kCounter);
    get.set_uploading_id(52);
    v1::GetUploadingResponse got;
    ASSERT_TRUE(stub_->GetUploading(Context().get(), get, &got).ok());
  }
  const absl::Time start = absl::Now();
  WatchResult r = WatchToEnd(52);
  const absl::Duration lasted = absl::Now() - start;
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(r.status.error_message(), HasSubstr("re-watch"));
  ASSERT_EQ(r.messages.size(), 1u);  // r.messages[0] is read below
  EXPECT_GE(lasted, absl::Milliseconds(875));  // 90 % of 1 s, minus slack
  EXPECT_LT(lasted, absl::Milliseconds(2100));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(server_->stats().watchers, 0u);

  // The re-watch carries on with the same version.
  config_.watch_limits.max_lifetime = absl::InfiniteDuration();
  auto ctx = Context();
  v1::WatchUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(52);
  auto reader = stub_->WatchUploading(ctx.get(), request);
  v1::WatchUploadingResponse m;
  ASSERT_TRUE(reader->Read(&m));
  EXPECT_EQ(m.version(), r.messages[0].version());
  ctx->TryCancel();
}

class TlsTest : public ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    dir_ = std::string(std::getenv("TEST_TMPDIR"));
    const std::string script =
        std::string(std::getenv("TEST_SRCDIR")) +
        "/uploadwatch/tests/make_test_certs.sh";
    ASSERT_EQ(std::system((script + " " + dir_).c_str()), 0);
    metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
  }

  std::string Read(const std::string& name) {
    std::ifstream in(dir_ + "/" + name);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // A Get of `id` on a connection of its own; `caller_header`, if any, is
  // sent as x-caller.
  grpc::Status CallWith(std::shared_ptr<grpc::ChannelCredentials> creds,
                        int64_t id = 12, const std::string& caller_header = "") {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto stub = v1::UploadingService::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", server_->port()), creds, args));
    v1::GetUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(id);
    v1::GetUploadingResponse response;
    auto ctx = Context(absl::Seconds(3));
    if (!caller_header.empty()) ctx->AddMetadata("x-caller", caller_header);
    return stub->GetUploading(ctx.get(), request, &response);
  }

  std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& client) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = Read("ca.pem");
    if (!client.empty()) {
      options.pem_private_key = Read(client + ".key");
      options.pem_cert_chain = Read(client + ".pem");
    }
    return grpc::SslCredentials(options);
  }

  std::string dir_;
};

TEST_F(TlsTest, ServesTlsAndRefusesPlaintext) {
  config_.listen = "127.0.0.1:0";
  config_.tls_cert_pem = Read("server.pem");
  config_.tls_key_pem = Read("server.key");
  StartServer();
  grpc::Status tls = CallWith(Tls(""));
  EXPECT_TRUE(tls.ok()) << tls.error_message();
  EXPECT_EQ(CallWith(grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  config_.listen = "127.0.0.1:0";
  config_.tls_cert_pem = Read("server.pem");
  config_.tls_key_pem = Read("server.key");
  config_.tls_client_ca_pem = Read("ca.pem");
  StartServer();
  grpc::Status with_cert = CallWith(Tls("client"));
  EXPECT_TRUE(with_cert.ok()) << with_cert.error_message();
  EXPECT_EQ(CallWith(Tls("")).error_code(), grpc::StatusCode::UNAVAILABLE);
  // A certificate from another CA is refused too.
  grpc::SslCredentialsOptions stranger;
  stranger.pem_root_certs = Read("ca.pem");
  stranger.pem_private_key = Read("stranger.key");
  stranger.pem_cert_chain = Read("stranger.pem");
  EXPECT_EQ(CallWith(grpc::SslCredentials(stranger)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(CallWith(grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsCallersAreToldApartByTheirCertificate) {
  // 40 a day, a tenth for callers without a token, a quarter of that each:
  // one request per caller. Every client here is 127.0.0.1.
  daily_budget_ = 40;
  config_.caller_identity_header = "x-caller";
  config_.listen = "127.0.0.1:0";
  config_.tls_cert_pem = Read("server.pem");
  config_.tls_key_pem = Read("server.key");
  config_.tls_client_ca_pem = Read("ca.pem");
  StartServer();
  EXPECT_EQ(CallWith(Tls("client"), 900).error_code(),
            grpc::StatusCode::NOT_FOUND);
  const grpc::Status spent = CallWith(Tls("client"), 901);
  EXPECT_EQ(spent.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << spent.error_message();
  EXPECT_THAT(spent.error_message(), HasSubstr("--caller_budget_share"));
  // The certificate names the caller, whatever the header says...
  EXPECT_EQ(CallWith(Tls("client"), 902, "someone else").error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // ...and another certificate is another caller, from the same address.
  EXPECT_EQ(CallWith(Tls("client2"), 903).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(CallWith(Tls("client2"), 904).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Without mTLS the same two would be one caller (127.0.0.1): see
  // //tests:caller_share_test for the header and the address.
}

TEST_F(TlsTest, HalfATlsConfigurationIsRefusedAtStart) {
  config_.listen = "127.0.0.1:0";
  config_.tls_cert_pem = Read("server.pem");  // no key
  CurlMetricaClient::Options upstream;
  upstream.base_url = metrica_.base_url();
  auto server = UploadingServer::Start(config_, *CurlMetricaClient::Create(upstream));
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("private key"));
}

}  // namespace
}  // namespace uploadwatch::testing
