// UploadingClient against the real server on the Metrica simulator, and
// against a scripted fake service for what the real one cannot be made to do.
#include "client/uploading_client.h"

#include <atomic>
#include <utility>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "client/channel_credentials.h"
#include "client/testing/counter_messages.h"
#include "client/testing/scripted_service.h"
#include "client/testing/service_fixture.h"
#include "client/testing/tls_fixture.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "service/common/status_details.h"

namespace uploadwatch::client_testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class UploadingClientTest : public ServiceFixture {
 protected:
  std::unique_ptr<UploadingClient> Client(UploadingClient::Options options = {}) {
    if (options.token.empty()) options.token = kToken;
    return std::make_unique<UploadingClient>(
        grpc::CreateChannel(address(), grpc::InsecureChannelCredentials()),
        options);
  }

  // Watches `id` with kToken until the watch ends, keeping every message.
  absl::Status WatchToEnd(int64_t id,
                          std::vector<v1::WatchUploadingResponse>* messages) {
    return Client()->WatchUploading(
        kCounter, id,
        [messages](const v1::WatchUploadingResponse& m) { messages->push_back(m); });
  }
};

TEST_F(UploadingClientTest, GetReturnsTheUploading) {
  v1::Uploading u = MakeUploading(12, v1::Uploading::MATCHED);
  u.set_linked_quantity(90);
  metrica_.AddUploading(kCounter, u);
  absl::StatusOr<v1::Uploading> got = Client()->GetUploading(kCounter, 12);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->SerializeAsString(), u.SerializeAsString())
      << got->DebugString();
}

TEST_F(UploadingClientTest, NotFoundKeepsTheServersMessageAndErrorInfo) {
  absl::StatusOr<v1::Uploading> got = Client()->GetUploading(kCounter, 404);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(got.status().message().empty());
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(got.status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "NOT_FOUND");
}

TEST_F(UploadingClientTest, TheTokenTravelsAsOAuthMetadata) {
  // The server has no token of its own: only the client's can work.
  metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
  EXPECT_TRUE(Client()->GetUploading(kCounter, 12).ok());

  metrica_.AddToken("tenant-b-token");
  UploadingClient::Options other;
  other.token = "tenant-b-token";
  absl::StatusOr<v1::Uploading> denied = Client(other)->GetUploading(kCounter, 12);
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(denied.status());
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->reason(), "ACCESS_DENIED");
}

TEST_F(UploadingClientTest, WithoutAnyTokenCallsAreUnauthenticated) {
  UploadingClient anonymous(
      grpc::CreateChannel(address(), grpc::InsecureChannelCredentials()));
  EXPECT_EQ(anonymous.GetUploading(kCounter, 12).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(UploadingClientTest, ListReturnsAPageNewestFirst) {
  for (int64_t id : {5, 6, 7, 8}) {
    metrica_.AddUploading(kCounter, MakeUploading(id, v1::Uploading::PROCESSED));
  }
  v1::ListUploadingsRequest request;
  request.set_counter_id(kCounter);
  request.set_limit(2);
  request.set_offset(1);
  absl::StatusOr<std::vector<v1::Uploading>> page =
      Client()->ListUploadings(request);
  ASSERT_TRUE(page.ok()) << page.status();
  std::vector<int64_t> ids;
  for (const v1::Uploading& u : *page) ids.push_back(u.id());
  EXPECT_THAT(ids, ElementsAre(7, 6));
}

TEST_F(UploadingClientTest, ListErrorsAreStatuses) {
  v1::ListUploadingsRequest request;
  request.set_counter_id(kCounter);
  request.set_limit(20000);
  EXPECT_EQ(Client()->ListUploadings(request).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(UploadingClientTest, WatchCallsBackPerMessageThenReturnsOkAfterTheTerminal) {
  // One call first opens the server's upstream connection, so that the
  // watch's first fetch is not the one that pays for it (a slow build took
  // longer than the first step): the journey then starts at the watch.
  metrica_.AddUploading(kCounter, MakeUploading(21, v1::Uploading::PREPARED));
  ASSERT_TRUE(Client()->GetUploading(kCounter, 21).ok());
  AddJourney(21, v1::Uploading::PROCESSED, absl::Milliseconds(400));
  std::vector<v1::WatchUploadingResponse> messages;
  absl::Status status = WatchToEnd(21, &messages);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_FALSE(messages.empty());
  EXPECT_EQ(messages.front().uploading().status(), v1::Uploading::PREPARED);
  EXPECT_EQ(messages.back().uploading().status(), v1::Uploading::PROCESSED);
  EXPECT_TRUE(messages.back().terminal());
  for (size_t i = 0; i + 1 < messages.size(); ++i) {
    EXPECT_FALSE(messages[i].terminal()) << i;
  }
}

class StreamLifetimeTest : public UploadingClientTest {
 protected:
  // Streams end after 0.9-1 s: a journey of 2.4 s spans several of them,
  // and each stream's first state surely comes before its end, even on a
  // slow build (TSan).
  StreamLifetimeTest() {
    config_.watch_limits.max_lifetime = absl::Seconds(1);
    config_.log_sink = [this](absl::string_view line) {
      if (absl::StrContains(line, "rpc=WatchUploading")) ++watch_calls_;
    };
  }

  std::atomic<int> watch_calls_{0};
};

TEST_F(StreamLifetimeTest, AWatchOutlivesTheServersStreamLifetime) {
  AddJourney(21, v1::Uploading::PROCESSED, absl::Milliseconds(600));
  std::vector<v1::WatchUploadingResponse> messages;
  absl::Status status = WatchToEnd(21, &messages);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_GE(watch_calls_, 2);  // the server did end streams on the way
  ASSERT_GE(messages.size(), 2u);
  EXPECT_EQ(messages.back().uploading().status(), v1::Uploading::PROCESSED);
  for (size_t i = 1; i < messages.size(); ++i) {
    EXPECT_GT(messages[i].version(), messages[i - 1].version()) << i;
    EXPECT_NE(messages[i].uploading().status(),
              messages[i - 1].uploading().status()) << i;
  }
}

TEST_F(UploadingClientTest, WatchOfAnUnknownUploadingReturnsNotFound) {
  std::vector<v1::WatchUploadingResponse> messages;
  EXPECT_EQ(WatchToEnd(404, &messages).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(messages.empty());
}

TEST_F(UploadingClientTest, TheTimeoutIsEachCallsDeadline) {
  metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::MATCHED));
  FakeMetrica::Fault stall;
  stall.delay = absl::Seconds(5);
  stall.times = -1;
  metrica_.InjectFault(stall);
  UploadingClient::Options options;
  options.timeout = absl::Milliseconds(300);
  EXPECT_EQ(Client(options)->GetUploading(kCounter, 12).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  metrica_.ClearFaults();
}

TEST_F(UploadingClientTest, TheWatchTimeoutEndsAWatchThatDoesNotEnd) {
  metrica_.AddUploading(kCounter, MakeUploading(16, v1::Uploading::MATCHED));
  UploadingClient::Options options;
  // Long enough for the first state even on a slow build (TSan): what ends
  // the watch must be the timeout, after that state.
  options.watch_timeout = absl::Seconds(2);
  int messages = 0;
  absl::Status status = Client(options)->WatchUploading(
      kCounter, 16, [&](const v1::WatchUploadingResponse&) { ++messages; });
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(messages, 1);
}

v1::WatchUploadingResponse State(int64_t version, v1::Uploading::Status status) {
  v1::WatchUploadingResponse m;
  m.mutable_uploading()->set_id(7);
  m.mutable_uploading()->set_status(status);
  m.set_version(version);
  m.set_terminal(status == v1::Uploading::PROCESSED);
  return m;
}

class UploadingClientScriptedTest : public ::testing::Test {
 protected:
  // Through the StubInterface constructor, as a test double would be.
  UploadingClientScriptedTest()
      : service_(server_.service()),
        client_(std::make_unique<UploadingClient>(
            v1::UploadingService::NewStub(server_.Channel()))) {}

  ScriptedServer server_;
  ScriptedService& service_;
  std::unique_ptr<UploadingClient> client_;
};

TEST_F(UploadingClientScriptedTest, ErrorInfoAndRetryInfoBecomePayloads) {
  service_.get_status = absl::ResourceExhaustedError("quota spent");
  SetErrorInfo(service_.get_status, "QUOTA_REQUESTS_BY_UID",
               "api-metrika.yandex.net");
  SetRetryInfo(service_.get_status, absl::Seconds(30));
  absl::Status status = client_->GetUploading(1, 2).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(), "quota spent");
  ASSERT_TRUE(GetErrorInfo(status).has_value());
  EXPECT_EQ(GetErrorInfo(status)->reason(), "QUOTA_REQUESTS_BY_UID");
  EXPECT_EQ(GetErrorInfo(status)->domain(), "api-metrika.yandex.net");
  EXPECT_EQ(GetRetryDelay(status), absl::Seconds(30));
}

TEST_F(UploadingClientScriptedTest, AStreamEndingOkWithoutATerminalIsUnknown) {
  service_.watches = {{{State(1, v1::Uploading::PREPARED),
                        State(2, v1::Uploading::UPLOADED)},
                       absl::OkStatus()}};
  int messages = 0;
  absl::Status status = client_->WatchUploading(
      1, 7, [&](const v1::WatchUploadingResponse&) { ++messages; });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(status.message(), HasSubstr("terminal"));
  EXPECT_EQ(messages, 2);
}

TEST_F(UploadingClientScriptedTest, ARotatedStreamIsReWatchedWithoutRepeats) {
  const absl::Status rotated = absl::UnavailableError("maximum stream lifetime");
  service_.watches = {
      {{State(1, v1::Uploading::PREPARED), State(2, v1::Uploading::UPLOADED)},
       rotated},
      // Nothing changed meanwhile: only the repeat, then rotated again.
      {{State(2, v1::Uploading::UPLOADED)}, rotated},
      {{State(2, v1::Uploading::UPLOADED), State(3, v1::Uploading::PROCESSED)},
       absl::OkStatus()}};
  std::vector<int64_t> versions;
  absl::Status status = client_->WatchUploading(
      1, 7, [&](const v1::WatchUploadingResponse& m) {
        versions.push_back(m.version());
      });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_THAT(versions, ElementsAre(1, 2, 3));
  EXPECT_EQ(service_.watch_calls(), 3);
}

TEST_F(UploadingClientScriptedTest, AReWatchThatFailsBeforeAnAnswerEndsTheWatch) {
  service_.watches = {
      {{State(1, v1::Uploading::PREPARED)}, absl::UnavailableError("restarting")},
      {{}, absl::UnavailableError("shutting down")}};
  int messages = 0;
  absl::Status status = client_->WatchUploading(
      1, 7, [&](const v1::WatchUploadingResponse&) { ++messages; });
  EXPECT_EQ(status, absl::UnavailableError("shutting down"));
  EXPECT_EQ(messages, 1);
  EXPECT_EQ(service_.watch_calls(), 2);
}

TEST_F(UploadingClientScriptedTest, UnavailableBeforeAnyAnswerIsNotRetried) {
  service_.watches = {{{}, absl::UnavailableError("shutting down")}};
  absl::Status status =
      client_->WatchUploading(1, 7, [](const v1::WatchUploadingResponse&) {});
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(service_.watch_calls(), 1);
}


// --- A counter watch (WatchUploadings) against scripted streams ---

// Runs a counter watch of counter 1 to its end, keeping the messages' tokens.
absl::Status WatchCounterToEnd(const UploadingClient& client,
                               std::vector<std::string>* tokens,
                               const std::string& resume_token = "") {
  v1::WatchUploadingsRequest request;
  request.set_counter_id(1);
  request.set_type(v1::Uploading::CALLS);
  request.set_resume_token(resume_token);
  return client.WatchCounter(request, [&](const v1::WatchUploadingsResponse& m) {
    tokens->push_back(m.resume_token());
    return true;
  });
}

TEST_F(UploadingClientScriptedTest, ACounterWatchResumesWithTheLastTokenOnUnavailable) {
  const absl::Status rotated = absl::UnavailableError("maximum stream lifetime");
  service_.counter_watches = {
      {{CounterMessage("t1", {{5, v1::Uploading::PREPARED}}),
        CounterMessage("t2", {{6, v1::Uploading::MATCHED}}, /*synced=*/true),
        CounterMessage("t3", {})},  // a bookmark: its token counts too
       rotated},
      {{CounterMessage("t4", {}, /*synced=*/true)}, rotated},
      {{CounterMessage("t5", {{5, v1::Uploading::PROCESSED}}, true)},
       absl::PermissionDeniedError("access to counter 1 was revoked")}};
  std::vector<std::string> tokens;
  absl::Status status = WatchCounterToEnd(*client_, &tokens);
  EXPECT_EQ(status, absl::PermissionDeniedError("access to counter 1 was revoked"));
  EXPECT_THAT(tokens, ElementsAre("t1", "t2", "t3", "t4", "t5"));
  std::vector<std::string> sent;
  for (const auto& r : service_.counter_watch_requests()) {
    EXPECT_EQ(r.counter_id(), 1);
    EXPECT_EQ(r.type(), v1::Uploading::CALLS);  // the same request each time
    sent.push_back(r.resume_token());
  }
  EXPECT_THAT(sent, ElementsAre("", "t3", "t4"));
}

TEST_F(UploadingClientScriptedTest, ACounterWatchStartsFromTheCallersToken) {
  service_.counter_watches = {{{}, absl::NotFoundError("no counter 1")}};
  std::vector<std::string> tokens;
  EXPECT_EQ(WatchCounterToEnd(*client_, &tokens, "saved").code(),
            absl::StatusCode::kNotFound);
  ASSERT_EQ(service_.counter_watch_requests().size(), 1u);
  EXPECT_EQ(service_.counter_watch_requests()[0].resume_token(), "saved");
  EXPECT_TRUE(tokens.empty());
}

TEST_F(UploadingClientScriptedTest, ACounterWatchResumeThatFailsBeforeAnAnswerEnds) {
  service_.counter_watches = {
      {{CounterMessage("t1", {{5, v1::Uploading::PREPARED}}, true)},
       absl::UnavailableError("restarting")},
      {{}, absl::UnavailableError("shutting down")}};
  std::vector<std::string> tokens;
  EXPECT_EQ(WatchCounterToEnd(*client_, &tokens),
            absl::UnavailableError("shutting down"));
  EXPECT_THAT(tokens, ElementsAre("t1"));
  EXPECT_EQ(service_.counter_watch_requests().size(), 2u);
}

TEST_F(UploadingClientScriptedTest, ACounterWatchUnavailableBeforeAnyAnswerIsNotRetried) {
  service_.counter_watches = {{{}, absl::UnavailableError("shutting down")}};
  std::vector<std::string> tokens;
  EXPECT_EQ(WatchCounterToEnd(*client_, &tokens).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(service_.counter_watch_requests().size(), 1u);
}

TEST_F(UploadingClientScriptedTest, ACounterWatchStreamEndingOkIsUnknown) {
  service_.counter_watches = {
      {{CounterMessage("t1", {{5, v1::Uploading::PREPARED}}, true)},
       absl::OkStatus()}};
  std::vector<std::string> tokens;
  absl::Status status = WatchCounterToEnd(*client_, &tokens);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown);
  EXPECT_THAT(status.message(), HasSubstr("never ends by itself"));
}

TEST_F(UploadingClientScriptedTest, ACounterWatchStopsWhenTheCallbackSaysSo) {
  service_.counter_watches = {
      {{CounterMessage("t1", {{5, v1::Uploading::PREPARED}}),
        CounterMessage("t2", {}, /*synced=*/true), CounterMessage("t3", {})},
       absl::OkStatus(), /*hang=*/true}};
  std::vector<std::string> tokens;
  v1::WatchUploadingsRequest request;
  request.set_counter_id(1);
  absl::Status status =
      client_->WatchCounter(request, [&](const v1::WatchUploadingsResponse& m) {
        tokens.push_back(m.resume_token());
        return !m.synced();  // until the snapshot is complete
      });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_THAT(tokens, ElementsAre("t1", "t2"));
}

TEST_F(UploadingClientScriptedTest, ACounterWatchIsBoundedByTheWatchTimeout) {
  // Rotated once, then a stream that stays open: only the deadline ends it.
  service_.counter_watches = {
      {{CounterMessage("t1", {}, true)}, absl::UnavailableError("rotated")},
      {{CounterMessage("t2", {})}, absl::OkStatus(), /*hang=*/true}};
  UploadingClient::Options options;
  options.watch_timeout = absl::Milliseconds(300);
  UploadingClient bounded(server_.Channel(), options);
  std::vector<std::string> tokens;
  EXPECT_EQ(WatchCounterToEnd(bounded, &tokens).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(tokens, ElementsAre("t1", "t2"));
}

// --- TLS and mutual TLS to the real server ---

class UploadingClientTlsTest : public TlsServiceFixture {
 protected:
  explicit UploadingClientTlsTest(bool mutual = false)
      : TlsServiceFixture(mutual) {}

  absl::StatusCode GetWith(const ChannelSecurity& security,
                           const std::string& target = "") {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        CreateUploadingChannel(target.empty() ? address() : target, security);
    EXPECT_TRUE(channel.ok()) << channel.status();
    if (!channel.ok()) return channel.status().code();
    UploadingClient::Options options;
    options.token = kToken;
    options.timeout = absl::Seconds(5);
    UploadingClient client(*channel, options);
    return client.GetUploading(kCounter, 12).status().code();
  }
};

TEST_F(UploadingClientTlsTest, TrustsTheServerThroughTheCaFile) {
  metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
  ChannelSecurity security;
  security.ca_file = Path("ca.pem");  // implies TLS
  EXPECT_EQ(GetWith(security), absl::StatusCode::kOk);
  // The certificate names localhost too.
  EXPECT_EQ(GetWith(security, absl::StrCat("localhost:", server_->port())),
            absl::StatusCode::kOk);
}

TEST_F(UploadingClientTlsTest, RefusesAServerItDoesNotTrustAndPlaintext) {
  ChannelSecurity stranger;
  stranger.tls = true;
  stranger.ca_file = Path("stranger.pem");
  EXPECT_EQ(GetWith(stranger), absl::StatusCode::kUnavailable);
  EXPECT_EQ(GetWith(ChannelSecurity{}), absl::StatusCode::kUnavailable);
}

TEST_F(UploadingClientTlsTest, BadFilesAreClearErrorsBeforeAnyCall) {
  ChannelSecurity missing;
  missing.ca_file = Path("nope.pem");
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      CreateUploadingChannel(address(), missing);
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(channel.status().message(), HasSubstr("ca_file"));
  EXPECT_THAT(channel.status().message(), HasSubstr("nope.pem"));

  ChannelSecurity half;
  half.cert_file = Path("client.pem");
  EXPECT_EQ(CreateUploadingChannel(address(), half).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(metrica_.requests().empty());
}

class UploadingClientMtlsTest : public UploadingClientTlsTest {
 protected:
  UploadingClientMtlsTest() : UploadingClientTlsTest(/*mutual=*/true) {}
};

TEST_F(UploadingClientMtlsTest, AClientCertificateFromTheCaIsRequired) {
  metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
  ChannelSecurity mutual;
  mutual.ca_file = Path("ca.pem");
  mutual.cert_file = Path("client.pem");
  mutual.key_file = Path("client.key");
  EXPECT_EQ(GetWith(mutual), absl::StatusCode::kOk);

  ChannelSecurity no_cert;
  no_cert.ca_file = Path("ca.pem");
  EXPECT_EQ(GetWith(no_cert), absl::StatusCode::kUnavailable);

  ChannelSecurity strangers_cert = mutual;
  strangers_cert.cert_file = Path("stranger.pem");
  strangers_cert.key_file = Path("stranger.key");
  EXPECT_EQ(GetWith(strangers_cert), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace uploadwatch::client_testing
