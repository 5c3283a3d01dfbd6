// gRPC-Web against the real server: the protocol (grpc/grpc
// doc/PROTOCOL-WEB.md) on --web_listen, driven by a Boost.Beast HTTP client,
// compared with the same calls over native gRPC.
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "tests/service_fixture.h"
#include "tests/web_client.h"

namespace uploadwatch::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kService[] = "/metrika.offline_conversions.v1.UploadingService/";

std::string PercentDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    int byte = 0;
    if (s[i] == '%' && i + 2 < s.size() + 0 &&
        absl::SimpleHexAtoi(s.substr(i + 1, 2), &byte)) {
      out.push_back(static_cast<char>(byte));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

class WebTest : public ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    config_.web.listen = "127.0.0.1:0";
    metrica_.AddUploading(kCounter, MakeUploading(12, v1::Uploading::PROCESSED));
    metrica_.AddUploading(kCounter, MakeUploading(13, v1::Uploading::MATCHED));
  }

  int web_port() const { return server_->web_port(); }

  std::vector<std::unique_ptr<grpc::ClientReader<v1::WatchUploadingResponse>>>
      readers_;

  static std::string GetRequest(int64_t id, int32_t counter = kCounter) {
    v1::GetUploadingRequest request;
    request.set_counter_id(counter);
    request.set_uploading_id(id);
    return request.SerializeAsString();
  }
  static std::string WatchRequest(int64_t id) {
    v1::WatchUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(id);
    return request.SerializeAsString();
  }

  // The grpc-status of an answer, -1 when it has none.
  static int GrpcStatus(const WebClient::Response& r) {
    auto it = r.trailers.find("grpc-status");
    int code = -1;
    if (it == r.trailers.end() || !absl::SimpleAtoi(it->second, &code)) return -1;
    return code;
  }
  static std::string GrpcMessage(const WebClient::Response& r) {
    auto it = r.trailers.find("grpc-message");
    return it == r.trailers.end() ? "" : PercentDecode(it->second);
  }

  // A Get over native gRPC still works (bad input broke nothing).
  void ExpectServerStillServes() {
    v1::GetUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(12);
    v1::GetUploadingResponse response;
    EXPECT_TRUE(stub_->GetUploading(Context().get(), request, &response).ok());
    WebClient web(web_port());
    EXPECT_EQ(GrpcStatus(web.Call(absl::StrCat(kService, "GetUploading"),
                                  GetRequest(12))),
              0);
  }

  // Waits until no watcher is left in the hub.
  bool NoWatchersWithin(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (server_->stats().watchers == 0) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }
};

TEST_F(WebTest, UnaryGetIsTheSameMessageAsNativeGrpc) {
  StartServer();
  WebClient web(web_port());
  ASSERT_EQ(web.connect_error(), "");
  WebClient::Response r =
      web.Call(absl::StrCat(kService, "GetUploading"), GetRequest(12));
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "application/grpc-web+proto");
  EXPECT_EQ(r.headers["transfer-encoding"], "chunked");
  ASSERT_EQ(r.frames.size(), 1u);
  ASSERT_TRUE(r.trailer_frame);
  EXPECT_EQ(GrpcStatus(r), 0);

  v1::GetUploadingResponse via_web;
  ASSERT_TRUE(via_web.ParseFromString(r.frames[0].payload));
  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(12);
  v1::GetUploadingResponse native;
  ASSERT_TRUE(stub_->GetUploading(Context().get(), request, &native).ok());
  EXPECT_EQ(via_web.SerializeAsString(), native.SerializeAsString());
  EXPECT_EQ(via_web.uploading().status(), v1::Uploading::PROCESSED);
}

TEST_F(WebTest, ListAndKeepAliveServeManyCallsOnOneConnection) {
  StartServer();
  WebClient web(web_port());
  v1::ListUploadingsRequest list;
  list.set_counter_id(kCounter);
  for (int i = 0; i < 3; ++i) {
    WebClient::Response r = web.Call(absl::StrCat(kService, "ListUploadings"),
                                     list.SerializeAsString());
    ASSERT_EQ(GrpcStatus(r), 0) << i << " " << r.error;
    ASSERT_EQ(r.frames.size(), 1u);
    v1::ListUploadingsResponse response;
    ASSERT_TRUE(response.ParseFromString(r.frames[0].payload));
    EXPECT_EQ(response.uploadings_size(), 2);
  }
}

TEST_F(WebTest, WatchFramesArriveAsChangesHappenNotAtTheEnd) {
  metrica_.AddUploading(kCounter, MakeUploading(30, v1::Uploading::PREPARED));
  StartServer();
  WebClient web(web_port());
  ASSERT_TRUE(web.Send(absl::StrCat(kService, "WatchUploading"),
                       WebClient::FrameOf(WatchRequest(30)),
                       {{"content-type", "application/grpc-web+proto"}}));
  WebClient::Response r;
  ASSERT_TRUE(web.ReadHeader(&r)) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.count("grpc-status"), 0u);  // not trailers-only

  // Each change is made only after the previous frame was read: frames
  // cannot have been held back to the end.
  for (v1::Uploading::Status next :
       {v1::Uploading::UPLOADED, v1::Uploading::MATCHED,
        v1::Uploading::PROCESSED}) {
    std::optional<WebClient::Frame> frame = web.NextFrame(&r);
    ASSERT_TRUE(frame.has_value()) << r.error;
    ASSERT_EQ(frame->flags, 0);
    v1::WatchUploadingResponse m;
    ASSERT_TRUE(m.ParseFromString(frame->payload));
    EXPECT_FALSE(m.terminal());
    metrica_.SetUploading(kCounter, MakeUploading(30, next));
  }
  std::optional<WebClient::Frame> last = web.NextFrame(&r);
  ASSERT_TRUE(last.has_value()) << r.error;
  v1::WatchUploadingResponse m;
  ASSERT_TRUE(m.ParseFromString(last->payload));
  EXPECT_EQ(m.uploading().status(), v1::Uploading::PROCESSED);
  EXPECT_TRUE(m.terminal());
  std::optional<WebClient::Frame> trailer = web.NextFrame(&r);
  ASSERT_TRUE(trailer.has_value()) << r.error;
  EXPECT_EQ(trailer->flags, 0x80);
  EXPECT_EQ(GrpcStatus(r), 0);
  EXPECT_FALSE(web.NextFrame(&r).has_value());
  EXPECT_EQ(r.error, "");
}

TEST_F(WebTest, ErrorsCarryTheSameStatusAndDetailsAsNativeGrpc) {
  StartServer();
  WebClient web(web_port());
  WebClient::Response r =
      web.Call(absl::StrCat(kService, "GetUploading"), GetRequest(999));
  // Failed before any message: trailers-only, the status in the headers.
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.frames.empty());
  EXPECT_FALSE(r.trailer_frame);
  EXPECT_EQ(r.headers["content-length"], "0");
  EXPECT_EQ(GrpcStatus(r), static_cast<int>(grpc::StatusCode::NOT_FOUND));

  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(999);
  v1::GetUploadingResponse ignored;
  grpc::Status native = stub_->GetUploading(Context().get(), request, &ignored);
  EXPECT_EQ(GrpcMessage(r), native.error_message());

  std::string details;
  std::string b64 = r.trailers["grpc-status-details-bin"];
  ASSERT_FALSE(b64.empty());
  ASSERT_TRUE(absl::Base64Unescape(b64, &details));
  EXPECT_EQ(details, native.error_details());
  google::rpc::Status status;
  ASSERT_TRUE(status.ParseFromString(details));
  EXPECT_EQ(status.code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));
  ASSERT_EQ(status.details_size(), 1);
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(status.details(0).UnpackTo(&info));
  EXPECT_EQ(info.reason(), "NOT_FOUND");
}

TEST_F(WebTest, ErrorAfterMessagesComesInTheTrailerFrame) {
  // Long enough for the first message to come first even under TSan on a
  // loaded machine (300 ms was not); the uploading never changes, so it
  // stays the only one.
  config_.watch_limits.max_lifetime = absl::Seconds(2);
  metrica_.AddUploading(kCounter, MakeUploading(31, v1::Uploading::PREPARED));
  StartServer();
  WebClient web(web_port());
  WebClient::Response r =
      web.Call(absl::StrCat(kService, "WatchUploading"), WatchRequest(31));
  EXPECT_EQ(r.error, "");
  ASSERT_EQ(r.frames.size(), 1u);
  ASSERT_TRUE(r.trailer_frame);
  EXPECT_EQ(GrpcStatus(r), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  EXPECT_THAT(GrpcMessage(r), HasSubstr("re-watch"));
}

TEST_F(WebTest, TextModeDecodesTheRequestAndEncodesEveryFrame) {
  StartServer();
  WebClient web(web_port());
  WebClient::Response r = web.Call(absl::StrCat(kService, "WatchUploading"),
                                   WatchRequest(12), {}, /*text=*/true);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.headers["content-type"], "application/grpc-web-text+proto");
  // The body is base64 throughout.
  for (char c : r.body) {
    ASSERT_TRUE(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '+' ||
                c == '/' || c == '=')
        << r.body;
  }
  ASSERT_EQ(r.frames.size(), 1u);
  v1::WatchUploadingResponse m;
  ASSERT_TRUE(m.ParseFromString(r.frames[0].payload));
  EXPECT_EQ(m.uploading().id(), 12);
  EXPECT_TRUE(m.terminal());
  EXPECT_TRUE(r.trailer_frame);
  EXPECT_EQ(GrpcStatus(r), 0);
}

TEST_F(WebTest, AuthorizationHeaderIsTheCallersToken) {
  metrica_.AddToken("AQAAAAA-stranger");
  StartServer();
  WebClient web(web_port());
  WebClient::Response r =
      web.Call(absl::StrCat(kService, "GetUploading"), GetRequest(12),
               {{"authorization", "OAuth AQAAAAA-stranger"}});
  EXPECT_EQ(GrpcStatus(r), static_cast<int>(grpc::StatusCode::PERMISSION_DENIED));
  // The log line is the service's own, with the token's fingerprint only.
  bool logged = false;
  for (const std::string& line : LogLines()) {
    EXPECT_THAT(line, ::testing::Not(HasSubstr("stranger")));
    logged |= absl::StrContains(line, "code=PERMISSION_DENIED");
  }
  EXPECT_TRUE(logged);
}

TEST_F(WebTest, GrpcTimeoutBecomesTheDeadline) {
  metrica_.AddUploading(kCounter, MakeUploading(32, v1::Uploading::PREPARED));
  StartServer();
  WebClient web(web_port());
  WebClient::Response r =
      web.Call(absl::StrCat(kService, "WatchUploading"), WatchRequest(32),
               {{"grpc-timeout", "300m"}});
  EXPECT_EQ(GrpcStatus(r),
            static_cast<int>(grpc::StatusCode::DEADLINE_EXCEEDED));
  WebClient::Response bad =
      web.Call(absl::StrCat(kService, "GetUploading"), GetRequest(12),
               {{"grpc-timeout", "soon"}});
  EXPECT_EQ(GrpcStatus(bad),
            static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(GrpcMessage(bad), HasSubstr("grpc-timeout"));
}

TEST_F(WebTest, CorsPreflightAndHeadersForAllowedOriginsOnly) {
  config_.web.allowed_origins = "http://dash.example";
  StartServer();
  WebClient web(web_port());
  const std::string path = absl::StrCat(kService, "GetUploading");
  WebClient::Response pre = web.CallRaw(
      path, "",
      {{"origin", "http://dash.example"},
       {"access-control-request-method", "POST"},
       {"access-control-request-headers", "content-type,x-grpc-web"}},
      false, "OPTIONS");
  EXPECT_EQ(pre.status, 204);
  EXPECT_EQ(pre.headers["access-control-allow-origin"], "http://dash.example");
  EXPECT_THAT(pre.headers["access-control-allow-methods"], HasSubstr("POST"));
  for (const char* h : {"content-type", "x-grpc-web", "x-user-agent",
                        "grpc-timeout", "authorization",
                        "connect-protocol-version"}) {
    EXPECT_THAT(pre.headers["access-control-allow-headers"], HasSubstr(h));
  }
  EXPECT_EQ(pre.headers["access-control-max-age"], "7200");
  EXPECT_THAT(pre.headers["vary"], HasSubstr("Origin"));

  WebClient::Response call = web.Call(path, GetRequest(12),
                                      {{"origin", "http://dash.example"}});
  EXPECT_EQ(GrpcStatus(call), 0);
  EXPECT_EQ(call.headers["access-control-allow-origin"], "http://dash.example");
  EXPECT_EQ(call.headers["access-control-expose-headers"],
            "grpc-status, grpc-message, grpc-status-details-bin");

  // Same origin needs no listing.
  WebClient::Response same = web.Call(
      path, GetRequest(12),
      {{"origin", "http://127.0.0.1"}});  // Host sent by WebClient
  EXPECT_EQ(GrpcStatus(same), 0);

  WebClient other(web_port());
  WebClient::Response denied = other.CallRaw(
      path, "", {{"origin", "http://evil.example"},
                 {"access-control-request-method", "POST"}},
      false, "OPTIONS");
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(denied.headers.count("access-control-allow-origin"), 0u);
  WebClient third(web_port());
  WebClient::Response refused =
      third.Call(path, GetRequest(12), {{"origin", "http://evil.example"}});
  EXPECT_EQ(refused.status, 403);
  EXPECT_THAT(refused.body, HasSubstr("--web_allowed_origins"));
}

TEST_F(WebTest, BadInputGetsAClearErrorAndCostsNothingElse) {
  StartServer();
  const std::string get = absl::StrCat(kService, "GetUploading");
  const std::string framed = WebClient::FrameOf(GetRequest(12));
  const size_t upstream_before = metrica_.requests().size();
  const size_t log_before = LogLines().size();
  {
    WebClient web(web_port());
    WebClient::Response r =
        web.CallRaw(get, framed, {{"content-type", "application/json"}});
    EXPECT_EQ(r.status, 415);
    EXPECT_THAT(r.body, HasSubstr("application/grpc-web"));
  }
  struct Case {
    std::string body;
    bool text;
    std::string says;
  } cases[] = {
      {framed.substr(0, framed.size() - 2), false, "but the body has"},
      {std::string("\0\x7f\xff\xff\xff", 5) + "x", false, "says 2147483647"},
      {"", false, "empty"},
      {framed + framed, false, "exactly one request message"},
      {"AAAA*AAA", true, "not base64"},
  };
  for (const Case& c : cases) {
    WebClient web(web_port());
    WebClient::Response r = web.CallRaw(
        get, c.body,
        {{"content-type", c.text ? "application/grpc-web-text"
                                 : "application/grpc-web"}},
        c.text);
    EXPECT_EQ(r.status, 200) << c.says;
    EXPECT_EQ(GrpcStatus(r), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT))
        << c.says;
    EXPECT_THAT(GrpcMessage(r), HasSubstr(c.says));
  }
  {
    WebClient web(web_port());
    WebClient::Response r = web.Call("/not-an-rpc", GetRequest(12));
    EXPECT_EQ(r.status, 404);
    EXPECT_THAT(r.body, HasSubstr("/package.Service/Method"));
  }
  {
    WebClient web(web_port());
    WebClient::Response r =
        web.Call(absl::StrCat(kService, "NoSuchRpc"), GetRequest(12));
    EXPECT_EQ(GrpcStatus(r), static_cast<int>(grpc::StatusCode::UNIMPLEMENTED));
    EXPECT_THAT(GrpcMessage(r), HasSubstr("NoSuchRpc"));
  }
  {
    WebClient web(web_port());
    WebClient::Response r = web.CallRaw(
        get, std::string(512 * 1024, 'A'),
        {{"content-type", "application/grpc-web-text"}}, true);
    EXPECT_EQ(r.status, 413);
    EXPECT_TRUE(web.ServerClosed());
  }
  {
    WebClient web(web_port());
    WebClient::Response r = web.CallRaw(
        get, framed,
        {{"content-type", "application/grpc-web"},
         {"x-padding", std::string(20 * 1024, 'p')}});
    EXPECT_EQ(r.status, 431);
  }
  {
    WebClient web(web_port());
    ASSERT_TRUE(web.WriteRaw(
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: zz\r\n\r\n"));
    WebClient::Response r;
    web.ExpectAnswer();
    ASSERT_TRUE(web.ReadHeader(&r)) << r.error;
    EXPECT_EQ(r.status, 400);
  }
  // None of it reached Metrica or the service.
  EXPECT_EQ(metrica_.requests().size(), upstream_before);
  EXPECT_EQ(LogLines().size(), log_before);
  ExpectServerStillServes();
}

TEST_F(WebTest, ExpectContinueGetsItsInterimAnswer) {
  StartServer();
  WebClient web(web_port());
  ASSERT_TRUE(web.Send(absl::StrCat(kService, "GetUploading"),
                       WebClient::FrameOf(GetRequest(12)),
                       {{"content-type", "application/grpc-web+proto"},
                        {"expect", "100-continue"}}));
  WebClient::Response interim;
  ASSERT_TRUE(web.ReadHeader(&interim)) << interim.error;
  EXPECT_EQ(interim.status, 100);
  web.ExpectAnswer();
  WebClient::Response r;
  ASSERT_TRUE(web.ReadHeader(&r)) << r.error;
  web.ReadToEnd(&r, /*text=*/false);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.frames.size(), 1u);
}

TEST_F(WebTest, ClientGoneMidStreamCancelsTheCall) {
  metrica_.AddUploading(kCounter, MakeUploading(33, v1::Uploading::PREPARED));
  StartServer();
  {
    WebClient web(web_port());
    ASSERT_TRUE(web.Send(absl::StrCat(kService, "WatchUploading"),
                         WebClient::FrameOf(WatchRequest(33)),
                         {{"content-type", "application/grpc-web+proto"}}));
    WebClient::Response r;
    ASSERT_TRUE(web.ReadHeader(&r));
    ASSERT_TRUE(web.NextFrame(&r).has_value()) << r.error;
    EXPECT_EQ(server_->stats().watchers, 1u);
    web.Close();
  }
  EXPECT_TRUE(NoWatchersWithin(absl::Seconds(5)));
  // The service's own log line for the call, written as it ends.
  bool cancelled = false;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(5);
       !cancelled && absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(10))) {
    for (const std::string& line : LogLines()) {
      cancelled |= absl::StrContains(line, "rpc=WatchUploading") &&
                   absl::StrContains(line, "code=CANCELLED");
    }
  }
  EXPECT_TRUE(cancelled);
  ExpectServerStillServes();
}

TEST_F(WebTest, PerConnectionWatchCapCountsBrowserConnectionsApart) {
  config_.watch_limits.max_per_connection = 1;
  metrica_.AddUploading(kCounter, MakeUploading(34, v1::Uploading::PREPARED));
  StartServer();
  // Through the in-process channel every call has one peer; the gateway
  // names the browser connection, so two browsers get one watch each.
  WebClient a(web_port()), b(web_port());
  for (WebClient* web : {&a, &b}) {
    ASSERT_TRUE(web->Send(absl::StrCat(kService, "WatchUploading"),
                          WebClient::FrameOf(WatchRequest(34)),
                          {{"content-type", "application/grpc-web+proto"}}));
    WebClient::Response r;
    ASSERT_TRUE(web->ReadHeader(&r));
    EXPECT_EQ(r.headers.count("grpc-status"), 0u) << r.headers["grpc-message"];
    EXPECT_TRUE(web->NextFrame(&r).has_value()) << r.error;
  }
}

TEST_F(WebTest, NativeClientsCannotClaimAnotherConnection) {
  config_.watch_limits.max_per_connection = 1;
  metrica_.AddUploading(kCounter, MakeUploading(36, v1::Uploading::PREPARED));
  StartServer();
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<grpc::Status> statuses;
  for (const char* claimed : {"ipv4:10.0.0.1:1", "ipv4:10.0.0.2:2"}) {
    auto ctx = Context(absl::Seconds(5));
    ctx->AddMetadata("uploadwatch-web-peer", claimed);
    v1::WatchUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(36);
    auto reader = stub_->WatchUploading(ctx.get(), request);
    v1::WatchUploadingResponse m;
    if (reader->Read(&m)) {
      contexts.push_back(std::move(ctx));  // keep the first one open
      statuses.push_back(grpc::Status::OK);
      // Leak-free: the reader is cancelled with its context at the end.
      readers_.push_back(std::move(reader));
    } else {
      statuses.push_back(reader->Finish());
    }
  }
  ASSERT_EQ(statuses.size(), 2u);
  EXPECT_TRUE(statuses[0].ok());
  EXPECT_EQ(statuses[1].error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  for (auto& ctx : contexts) ctx->TryCancel();
  for (auto& reader : readers_) reader->Finish();
}

TEST_F(WebTest, ShutdownEndsOpenWatchesWithTheServersReWatchStatus) {
  metrica_.AddUploading(kCounter, MakeUploading(35, v1::Uploading::PREPARED));
  StartServer();
  WebClient web(web_port());
  ASSERT_TRUE(web.Send(absl::StrCat(kService, "WatchUploading"),
                       WebClient::FrameOf(WatchRequest(35)),
                       {{"content-type", "application/grpc-web+proto"}}));
  WebClient::Response r;
  ASSERT_TRUE(web.ReadHeader(&r));
  ASSERT_TRUE(web.NextFrame(&r).has_value()) << r.error;
  std::thread stopper([&] { server_->Shutdown(absl::Seconds(2)); });
  std::optional<WebClient::Frame> trailer = web.NextFrame(&r);
  stopper.join();
  ASSERT_TRUE(trailer.has_value()) << r.error;
  EXPECT_EQ(trailer->flags, 0x80);
  EXPECT_EQ(GrpcStatus(r), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  EXPECT_THAT(GrpcMessage(r), HasSubstr("re-watch"));
}

class WebTlsTest : public WebTest {
 protected:
  void SetUp() override {
    WebTest::SetUp();
    dir_ = std::string(std::getenv("TEST_TMPDIR"));
    const std::string script = std::string(std::getenv("TEST_SRCDIR")) +
                               "/uploadwatch/tests/make_test_certs.sh";
    ASSERT_EQ(std::system((script + " " + dir_).c_str()), 0);
    config_.tls_cert_pem = Read("server.pem");
    config_.tls_key_pem = Read("server.key");
  }
  std::string Read(const std::string& name) {
    std::ifstream in(dir_ + "/" + name);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  std::string dir_;
};

TEST_F(WebTlsTest, ServesOverTlsWithTheGrpcListenersCertificate) {
  StartServer();
  WebClient web(web_port(), Read("ca.pem"));
  ASSERT_EQ(web.connect_error(), "");
  WebClient::Response r =
      web.Call(absl::StrCat(kService, "GetUploading"), GetRequest(12));
  EXPECT_EQ(GrpcStatus(r), 0) << r.error;
  EXPECT_EQ(r.frames.size(), 1u);
  // Plaintext on the TLS port gets no answer.
  WebClient plain(web_port());
  WebClient::Response refused =
      plain.Call(absl::StrCat(kService, "GetUploading"), GetRequest(12));
  EXPECT_EQ(refused.status, 0);
  EXPECT_NE(refused.error, "");
}

TEST_F(WebTlsTest, ClientCaRequiresAClientCertificate) {
  config_.tls_client_ca_pem = Read("ca.pem");
  StartServer();
  WebClient with(web_port(), Read("ca.pem"), Read("client.pem"),
                 Read("client.key"));
  ASSERT_EQ(with.connect_error(), "");
  EXPECT_EQ(GrpcStatus(with.Call(absl::StrCat(kService, "GetUploading"),
                                 GetRequest(12))),
            0);
  WebClient without(web_port(), Read("ca.pem"));
  WebClient::Response r =
      without.Call(absl::StrCat(kService, "GetUploading"), GetRequest(12));
  EXPECT_EQ(GrpcStatus(r), -1);
}

}  // namespace
}  // namespace uploadwatch::testing
