// HTTPS to Metrica: the real server, the real fetcher, the simulator served
// over TLS with certificates made at test time.
#include <cstdio>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "tests/upstream_fixture.h"

namespace uploadwatch::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

class UpstreamTlsTest : public UpstreamTest {
 protected:
  // A Get against a simulator with certificate `name` fails UNAVAILABLE with
  // a message naming the TLS problem (`expected`), never the token; then the
  // simulator comes back with a good certificate on the same port and the
  // same server answers: it kept serving.
  void ExpectTlsFailureThenRecovery(const std::string& name,
                                    const std::string& expected) {
    StartMetrica(name);
    const int port = metrica_->port();
    StartServer(Upstream());
    v1::GetUploadingResponse response;
    grpc::Status status = Get(12, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << status.error_message();
    EXPECT_THAT(status.error_message(),
                AllOf(HasSubstr("TLS"), HasSubstr(expected),
                      Not(HasSubstr(kToken))));
    EXPECT_TRUE(metrica_->requests().empty()) << "a request got through";
    std::printf("%s: %s\n", name.c_str(), status.error_message().c_str());

    StartMetrica("good", port);
    status = Get(12, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.uploading().status(), v1::Uploading::PROCESSED);
  }
};

TEST_F(UpstreamTlsTest, GetListAndWatchWorkOverTls) {
  StartMetrica("good");
  ASSERT_EQ(metrica_->base_url().rfind("https://", 0), 0u);
  StartServer(Upstream());

  v1::GetUploadingResponse got;
  grpc::Status status = Get(12, &got);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(got.uploading().id(), 12);
  EXPECT_EQ(got.uploading().status(), v1::Uploading::PROCESSED);

  StartJourney20();
  v1::ListUploadingsResponse listed;
  status = List(&listed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(listed.uploadings_size(), 2);
  EXPECT_EQ(listed.uploadings(0).id(), 20);  // newest first

  std::vector<v1::WatchUploadingResponse> messages;
  status = WatchToEnd(20, &messages);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_FALSE(messages.empty());
  EXPECT_TRUE(messages.back().terminal());
  EXPECT_EQ(messages.back().uploading().status(), v1::Uploading::PROCESSED);
  EXPECT_GE(metrica_->requests().size(), 3u);
}

TEST_F(UpstreamTlsTest, ACertificateFromAnotherCaIsUnavailable) {
  ExpectTlsFailureThenRecovery("foreign", "unable to get local issuer certificate");
}

TEST_F(UpstreamTlsTest, AnExpiredCertificateIsUnavailable) {
  ExpectTlsFailureThenRecovery("expired", "certificate has expired");
}

TEST_F(UpstreamTlsTest, ACertificateForAnotherHostIsUnavailable) {
  ExpectTlsFailureThenRecovery("wronghost", "target host name");
}

// Without --upstream_ca_file the system store decides, and it does not know
// the test CA: verification is on by default, not skipped.
TEST_F(UpstreamTlsTest, WithoutACaFileTheSystemStoreIsUsed) {
  StartMetrica("good");
  CurlMetricaClient::Options upstream = Upstream();
  upstream.ca_file.clear();
  StartServer(upstream);
  v1::GetUploadingResponse response;
  grpc::Status status = Get(12, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("TLS"));
}

TEST_F(UpstreamTlsTest, AnUnusableCaFileIsRefusedAtStartup) {
  CurlMetricaClient::Options upstream;
  upstream.ca_file = Cert("missing.pem");
  absl::StatusOr<std::unique_ptr<CurlMetricaClient>> client =
      CurlMetricaClient::Create(upstream);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("missing.pem"));

  upstream.ca_file = Cert("ca.key");  // a key, not a certificate
  client = CurlMetricaClient::Create(upstream);
  EXPECT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("no PEM certificate"));
}

}  // namespace
}  // namespace uploadwatch::testing
