#include "service/simulator/fake_metrica.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "service/common/clock.h"
#include "service/metrica/json_mapping.h"

namespace uploadwatch {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::metrika::offline_conversions::v1::Uploading;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr int32_t kCounter = 2215573;
constexpr char kToken[] = "token-a";

std::string UploadingPath(absl::string_view counter, absl::string_view id) {
  return absl::StrCat("/management/v1/counter/", counter,
                      "/offline_conversions/uploading/", id);
}
std::string UploadingPath(int32_t counter, int64_t id) {
  return UploadingPath(absl::StrCat(counter), absl::StrCat(id));
}
std::string ListPath(int32_t counter, absl::string_view query = "") {
  return absl::StrCat("/management/v1/counter/", counter,
                      "/offline_conversions/uploadings",
                      query.empty() ? "" : "?", query);
}

Uploading MakeUploading(int64_t id,
                        Uploading::Status status = Uploading::PREPARED,
                        Uploading::Type type = Uploading::BASIC) {
  Uploading u;
  u.set_id(id);
  *u.mutable_create_time() =
      google::protobuf::util::TimeUtil::SecondsToTimestamp(1700000000 + id);
  u.set_comment(absl::StrCat("upload ", id));
  u.set_client_id_type(Uploading::CLIENT_ID);
  u.set_status(status);
  u.set_type(type);
  u.set_source_quantity(100);
  u.set_line_quantity(98);
  return u;
}

std::vector<int64_t> IdsOf(const std::string& body) {
  auto parsed = ParseUploadingsBody(body);
  EXPECT_TRUE(parsed.ok()) << parsed.status() << " in " << body;
  std::vector<int64_t> ids;
  if (parsed.ok()) {
    for (const Uploading& u : parsed->uploadings()) ids.push_back(u.id());
  }
  return ids;
}

// Everything a server sent on one plain connection until it closed it.
struct RawExchange {
  std::string bytes;
  bool reset = false;  // ended by ECONNRESET rather than a clean close
};

// One GET over a plain socket: shows what no HTTP library would (a
// connection closed before any byte, a body shorter than announced).
RawExchange RawGet(int port, const std::string& path) {
  RawExchange exchange;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ADD_FAILURE() << "connect: " << errno;
    close(fd);
    return exchange;
  }
  const std::string request = absl::StrCat(
      "GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: OAuth ",
      kToken, "\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  char buffer[4096];
  for (;;) {
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      exchange.bytes.append(buffer, n);
      continue;
    }
    if (n < 0) {
      EXPECT_EQ(errno, ECONNRESET) << "the server neither closed nor reset";
      exchange.reset = true;
    }
    break;
  }
  close(fd);
  return exchange;
}

void ExpectMetricaError(const httplib::Result& result, int status,
                        const std::string& error_type) {
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, status) << result->body;
  const MetricaError error = ParseErrorBody(result->status, result->body);
  EXPECT_EQ(error.http_code, status) << result->body;
  EXPECT_EQ(error.error_type, error_type) << result->body;
  EXPECT_FALSE(error.message.empty()) << result->body;
}

class FakeMetricaTest : public ::testing::Test {
 protected:
  FakeMetricaTest() : metrica_(MakeOptions(&clock_)) {}

  // The canonical JSON, so that tests may look for exact bytes; the
  // variations are tested in metrica_json_writer_test and below.
  static FakeMetrica::Options MakeOptions(Clock* clock) {
    FakeMetrica::Options options;
    options.clock = clock;
    options.vary_json = false;
    return options;
  }

  void SetUp() override {
    const absl::Status started = metrica_.Start();
    ASSERT_TRUE(started.ok()) << started;
    metrica_.GrantAccess(kToken, kCounter);
  }

  httplib::Result Get(const std::string& path,
                      const std::string& token = kToken) {
    httplib::Client client(metrica_.base_url());
    client.set_read_timeout(10, 0);
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "OAuth " + token);
    return client.Get(path.c_str(), headers);
  }

  FakeClock clock_;
  FakeMetrica metrica_;
};

// --- Serving and lifecycle --------------------------------------------------

TEST_F(FakeMetricaTest, StartsOnAFreePort) {
  EXPECT_GT(metrica_.port(), 0);
  EXPECT_EQ(metrica_.base_url(),
            absl::StrCat("http://127.0.0.1:", metrica_.port()));
}

TEST_F(FakeMetricaTest, StartTwiceFails) {
  EXPECT_FALSE(metrica_.Start().ok());
}

TEST_F(FakeMetricaTest, StartOnABusyPortFails) {
  FakeMetrica::Options options;
  options.port = metrica_.port();
  FakeMetrica second(options);
  EXPECT_FALSE(second.Start().ok());
}

TEST_F(FakeMetricaTest, StopIsIdempotentAndRefusesConnections) {
  metrica_.Stop();
  metrica_.Stop();
  EXPECT_FALSE(Get(UploadingPath(kCounter, 1)));
}

TEST_F(FakeMetricaTest, StopIsPromptWithAnIdleKeepAliveConnection) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  httplib::Client client(metrica_.base_url());
  client.set_keep_alive(true);
  auto result = client.Get(UploadingPath(kCounter, 12).c_str(),
                           {{"Authorization", absl::StrCat("OAuth ", kToken)}});
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200);
  // httplib alone would hold the connection's worker for 5 s.
  const absl::Time start = absl::Now();
  metrica_.Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(FakeMetricaTest, StopCutsAStalledReplyShort) {
  FakeMetrica::Fault stall;
  stall.delay = absl::Seconds(30);
  metrica_.InjectFault(stall);
  std::thread client([this] { Get(UploadingPath(kCounter, 12)); });
  while (metrica_.requests().empty()) absl::SleepFor(absl::Milliseconds(5));
  const absl::Time start = absl::Now();
  metrica_.Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  client.join();
}

// --- GET .../uploading/{id}
// ---------------------------------------------------

TEST_F(FakeMetricaTest, GetUploadingAnswersMetricaJson) {
  Uploading u = MakeUploading(12, Uploading::MATCHED, Uploading::CALLS);
  u.set_linked_quantity(90);
  u.set_static_calls_quantity(3);
  metrica_.AddUploading(kCounter, u);

  auto result = Get(UploadingPath(kCounter, 12));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_THAT(result->get_header_value("Content-Type"),
              StartsWith("application/json"));
  EXPECT_THAT(result->body, HasSubstr(R"("status":"MATCHED")"));
  EXPECT_THAT(result->body,
              HasSubstr(R"("create_time":"2023-11-14T22:13:32Z")"));
  auto parsed = ParseUploadingBody(result->body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(MessageDifferencer::Equals(parsed->uploading(), u))
      << parsed->uploading().DebugString();
}

TEST(FakeMetricaVariedJsonTest, VariesItsJsonByDefaultAndStillMeansTheSame) {
  FakeMetrica metrica{FakeMetrica::Options{}};
  ASSERT_TRUE(metrica.Start().ok());
  metrica.GrantAccess(kToken, kCounter);
  const Uploading u = MakeUploading(12, Uploading::MATCHED);
  metrica.AddUploading(kCounter, u);
  httplib::Client client(metrica.base_url());
  std::set<std::string> bodies;
  for (int i = 0; i < 10; ++i) {
    auto result = client.Get(UploadingPath(kCounter, 12).c_str(),
                             {{"Authorization", absl::StrCat("OAuth ", kToken)}});
    ASSERT_TRUE(result);
    ASSERT_EQ(result->status, 200);
    bodies.insert(result->body);
    auto parsed = ParseUploadingBody(result->body);
    ASSERT_TRUE(parsed.ok()) << parsed.status() << " in " << result->body;
    EXPECT_TRUE(MessageDifferencer::Equals(parsed->uploading(), u))
        << result->body;
  }
  EXPECT_GT(bodies.size(), 1u);
}

TEST_F(FakeMetricaTest, HeadIsServedLikeGet) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  httplib::Client client(metrica_.base_url());
  auto result =
      client.Head(UploadingPath(kCounter, 12).c_str(),
                  {{"Authorization", absl::StrCat("OAuth ", kToken)}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_TRUE(result->body.empty());
}

// --- Authentication and validation, in Metrica's order -----------------------

TEST_F(FakeMetricaTest, NoTokenIsUnauthorized) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  ExpectMetricaError(Get(UploadingPath(kCounter, 12), ""), 401, "unauthorized");
  ExpectMetricaError(Get(ListPath(kCounter), ""), 401, "unauthorized");
}

TEST_F(FakeMetricaTest, UnknownTokenIsUnauthorized) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  ExpectMetricaError(Get(UploadingPath(kCounter, 12), "stranger"), 401,
                     "unauthorized");
}

TEST_F(FakeMetricaTest, OnlyTheOAuthSchemeIsAccepted) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  httplib::Client client(metrica_.base_url());
  auto bearer =
      client.Get(UploadingPath(kCounter, 12).c_str(),
                 {{"Authorization", absl::StrCat("Bearer ", kToken)}});
  ExpectMetricaError(bearer, 401, "unauthorized");
  auto lower = client.Get(UploadingPath(kCounter, 12).c_str(),
                          {{"Authorization", absl::StrCat("oauth ", kToken)}});
  ASSERT_TRUE(lower);
  EXPECT_EQ(lower->status, 200);
}

TEST_F(FakeMetricaTest, TokenWithoutAccessIsAccessDenied) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  metrica_.AddToken("token-no-counters");
  metrica_.GrantAccess("token-other-counter", 42);
  ExpectMetricaError(Get(UploadingPath(kCounter, 12), "token-no-counters"), 403,
                     "access_denied");
  ExpectMetricaError(Get(ListPath(kCounter), "token-other-counter"), 403,
                     "access_denied");
}

TEST_F(FakeMetricaTest, ErrorBodyHasMetricaShape) {
  metrica_.AddToken("token-no-counters");
  auto result = Get(UploadingPath(kCounter, 12), "token-no-counters");
  ASSERT_TRUE(result);
  EXPECT_EQ(
      result->body,
      R"({"errors":[{"error_type":"access_denied","message":"Access is denied"}],)"
      R"("code":403,"message":"Access is denied"})");
}

TEST_F(FakeMetricaTest, UnknownCounterOrUploadingIsNotFound) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  ExpectMetricaError(Get(UploadingPath(77, 12)), 404, "not_found");
  ExpectMetricaError(Get(ListPath(77)), 404, "not_found");
  ExpectMetricaError(Get(UploadingPath(kCounter, 13)), 404, "not_found");
}

TEST_F(FakeMetricaTest, UnknownPathIsNotFound) {
  ExpectMetricaError(Get("/management/v1/counters"), 404, "not_found");
  ExpectMetricaError(
      Get(absl::StrCat("/management/v1/counter/", kCounter, "/goals")), 404,
      "not_found");
}

TEST_F(FakeMetricaTest, OtherMethodsAreNotAllowed) {
  httplib::Client client(metrica_.base_url());
  auto result = client.Post(UploadingPath(kCounter, 12).c_str(),
                            {{"Authorization", absl::StrCat("OAuth ", kToken)}},
                            "{}", "application/json");
  ExpectMetricaError(result, 405, "method_not_allowed");
  EXPECT_EQ(metrica_.requests().back().method, "POST");
}

TEST_F(FakeMetricaTest, MalformedOrNonPositiveIdsAreInvalidParameters) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  for (const char* counter : {"abc", "0", "-1", "+5", "1.5", "99999999999"}) {
    SCOPED_TRACE(counter);
    ExpectMetricaError(Get(UploadingPath(counter, "12")), 400,
                       "invalid_parameter");
  }
  for (const char* id : {"abc", "0", "-3", "12x", ""}) {
    SCOPED_TRACE(id);
    ExpectMetricaError(Get(UploadingPath(absl::StrCat(kCounter), id)), 400,
                       "invalid_parameter");
  }
}

TEST_F(FakeMetricaTest, TokenIsCheckedBeforeParameters) {
  ExpectMetricaError(Get(UploadingPath("abc", "12"), ""), 401, "unauthorized");
}

// --- GET .../uploadings
// -------------------------------------------------------

TEST_F(FakeMetricaTest, ListIsNewestFirst) {
  for (int64_t id : {5, 40, 12})
    metrica_.AddUploading(kCounter, MakeUploading(id));
  auto result = Get(ListPath(kCounter));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_THAT(IdsOf(result->body), ElementsAre(40, 12, 5));
}

TEST_F(FakeMetricaTest, EmptyCounterListsNothing) {
  auto result = Get(ListPath(kCounter));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_THAT(IdsOf(result->body), ElementsAre());
}

TEST_F(FakeMetricaTest, ListHonoursLimitAndOffset) {
  for (int64_t id = 1; id <= 5; ++id) {
    metrica_.AddUploading(kCounter, MakeUploading(id));
  }
  auto page = Get(ListPath(kCounter, "limit=2&offset=1"));
  ASSERT_TRUE(page);
  EXPECT_THAT(IdsOf(page->body), ElementsAre(4, 3));
  auto last = Get(ListPath(kCounter, "offset=4"));
  ASSERT_TRUE(last);
  EXPECT_THAT(IdsOf(last->body), ElementsAre(1));
  auto beyond = Get(ListPath(kCounter, "offset=5&limit=10000"));
  ASSERT_TRUE(beyond);
  EXPECT_EQ(beyond->status, 200);
  EXPECT_THAT(IdsOf(beyond->body), ElementsAre());
}

TEST_F(FakeMetricaTest, ListDefaultLimitIsTenThousand) {
  for (int64_t id = 1; id <= 10001; ++id) {
    metrica_.AddUploading(kCounter, MakeUploading(id));
  }
  auto all = Get(ListPath(kCounter));
  ASSERT_TRUE(all);
  const std::vector<int64_t> ids = IdsOf(all->body);
  ASSERT_EQ(ids.size(), 10000u);
  EXPECT_EQ(ids.front(), 10001);
  EXPECT_EQ(ids.back(), 2);
}

TEST_F(FakeMetricaTest, ListRejectsBadParameters) {
  for (const char* query : {"limit=0", "limit=10001", "limit=-1", "limit=abc",
                            "limit=", "offset=-1", "offset=x", "type=calls",
                            "type=TYPE_UNSPECIFIED", "type=FILES"}) {
    SCOPED_TRACE(query);
    ExpectMetricaError(Get(ListPath(kCounter, query)), 400,
                       "invalid_parameter");
  }
}

TEST_F(FakeMetricaTest, ListFiltersByTypeWithUnspecifiedCountingAsBasic) {
  metrica_.AddUploading(
      kCounter, MakeUploading(1, Uploading::PREPARED, Uploading::BASIC));
  metrica_.AddUploading(kCounter, MakeUploading(2, Uploading::PREPARED,
                                                Uploading::TYPE_UNSPECIFIED));
  metrica_.AddUploading(
      kCounter, MakeUploading(3, Uploading::PREPARED, Uploading::CALLS));
  metrica_.AddUploading(
      kCounter, MakeUploading(4, Uploading::PREPARED, Uploading::CHATS));
  auto basic_by_default = Get(ListPath(kCounter));
  ASSERT_TRUE(basic_by_default);
  EXPECT_THAT(IdsOf(basic_by_default->body), ElementsAre(2, 1));
  auto basic = Get(ListPath(kCounter, "type=BASIC"));
  ASSERT_TRUE(basic);
  EXPECT_THAT(IdsOf(basic->body), ElementsAre(2, 1));
  auto calls = Get(ListPath(kCounter, "type=CALLS"));
  ASSERT_TRUE(calls);
  EXPECT_THAT(IdsOf(calls->body), ElementsAre(3));
  auto chats = Get(ListPath(kCounter, "type=CHATS&offset=0&limit=1"));
  ASSERT_TRUE(chats);
  EXPECT_THAT(IdsOf(chats->body), ElementsAre(4));
}

// --- Schedules ---------------------------------------------------------------

Uploading::Status StatusOf(const httplib::Result& result) {
  EXPECT_TRUE(result);
  if (!result) return Uploading::STATUS_UNSPECIFIED;
  auto parsed = ParseUploadingBody(result->body);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? parsed->uploading().status()
                     : Uploading::STATUS_UNSPECIFIED;
}

TEST_F(FakeMetricaTest, ScheduleMovesTheStatusWithTheClock) {
  // Steps in any order: they are applied by time.
  metrica_.AddUploading(kCounter, MakeUploading(12),
                        {{absl::Seconds(30), Uploading::PROCESSED},
                         {absl::Seconds(10), Uploading::UPLOADED},
                         {absl::Seconds(20), Uploading::MATCHED}});
  const std::string path = UploadingPath(kCounter, 12);
  EXPECT_EQ(StatusOf(Get(path)), Uploading::PREPARED);
  clock_.Advance(absl::Seconds(9));
  EXPECT_EQ(StatusOf(Get(path)), Uploading::PREPARED);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(StatusOf(Get(path)), Uploading::UPLOADED);
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(StatusOf(Get(path)), Uploading::MATCHED);
  auto listed = Get(ListPath(kCounter));
  ASSERT_TRUE(listed);
  EXPECT_THAT(listed->body, HasSubstr(R"("status":"MATCHED")"));
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(StatusOf(Get(path)), Uploading::PROCESSED);
  clock_.Advance(absl::Hours(24));
  EXPECT_EQ(StatusOf(Get(path)), Uploading::PROCESSED);
  EXPECT_EQ(metrica_.GetUploading(kCounter, 12)->status(),
            Uploading::PROCESSED);
}

TEST_F(FakeMetricaTest, ScheduleCountsFromAddUploading) {
  clock_.Advance(absl::Hours(1));
  metrica_.AddUploading(kCounter, MakeUploading(12),
                        {{absl::Seconds(10), Uploading::UPLOADED}});
  EXPECT_EQ(metrica_.GetUploading(kCounter, 12)->status(), Uploading::PREPARED);
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(metrica_.GetUploading(kCounter, 12)->status(), Uploading::UPLOADED);
}

TEST_F(FakeMetricaTest, SetUploadingReplacesTheStateAndCancelsTheSchedule) {
  metrica_.AddUploading(kCounter, MakeUploading(12),
                        {{absl::Seconds(10), Uploading::UPLOADED},
                         {absl::Seconds(20), Uploading::PROCESSED}});
  clock_.Advance(absl::Seconds(10));
  Uploading failed = MakeUploading(12, Uploading::LINKAGE_FAILURE);
  failed.set_user_not_found_quantity(98);
  metrica_.SetUploading(kCounter, failed);
  clock_.Advance(absl::Hours(1));
  auto result = Get(UploadingPath(kCounter, 12));
  ASSERT_TRUE(result);
  auto parsed = ParseUploadingBody(result->body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(MessageDifferencer::Equals(parsed->uploading(), failed))
      << parsed->uploading().DebugString();
}

TEST_F(FakeMetricaTest, GetUploadingAccessorSeesOnlyKnownUploadings) {
  EXPECT_FALSE(metrica_.GetUploading(kCounter, 12).has_value());
  EXPECT_FALSE(metrica_.GetUploading(77, 12).has_value());
  metrica_.AddUploading(77, MakeUploading(12));  // makes counter 77 exist
  ASSERT_TRUE(metrica_.GetUploading(77, 12).has_value());
  EXPECT_EQ(metrica_.GetUploading(77, 12)->comment(), "upload 12");
}

// --- Faults ------------------------------------------------------------------

TEST_F(FakeMetricaTest, QuotaErrorWithRetryAfter) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  FakeMetrica::Fault quota;
  quota.http_status = 429;
  quota.error_type = "quota_parallel_requests";
  quota.retry_after_seconds = 7;
  metrica_.InjectFault(quota);
  auto result = Get(UploadingPath(kCounter, 12));
  ExpectMetricaError(result, 429, "quota_parallel_requests");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->get_header_value("Retry-After"), "7");
  // Used up: the next request is answered normally.
  auto next = Get(UploadingPath(kCounter, 12));
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
}

TEST_F(FakeMetricaTest, QuotaErrorWithoutRetryAfter) {
  FakeMetrica::Fault quota;
  quota.http_status = 429;
  metrica_.InjectFault(quota);
  auto result = Get(UploadingPath(kCounter, 12));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 429);
  EXPECT_FALSE(result->has_header("Retry-After"));
  EXPECT_THAT(ParseErrorBody(429, result->body).error_type,
              StartsWith("quota_"));
}

TEST_F(FakeMetricaTest, BackendErrorIs503) {
  FakeMetrica::Fault outage;
  outage.http_status = 503;
  metrica_.InjectFault(outage);
  ExpectMetricaError(Get(ListPath(kCounter)), 503, "backend_error");
}

TEST_F(FakeMetricaTest, FaultTimesCountDown) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  FakeMetrica::Fault outage;
  outage.http_status = 503;
  outage.times = 2;
  metrica_.InjectFault(outage);
  std::vector<int> statuses;
  for (int i = 0; i < 3; ++i) {
    auto result = Get(UploadingPath(kCounter, 12));
    statuses.push_back(result ? result->status : -1);
  }
  EXPECT_THAT(statuses, ElementsAre(503, 503, 200));
}

TEST_F(FakeMetricaTest, ForeverFaultLastsUntilCleared) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  FakeMetrica::Fault outage;
  outage.http_status = 503;
  outage.times = -1;
  metrica_.InjectFault(outage);
  for (int i = 0; i < 5; ++i) {
    auto result = Get(UploadingPath(kCounter, 12));
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 503);
  }
  metrica_.ClearFaults();
  auto result = Get(UploadingPath(kCounter, 12));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
}

TEST_F(FakeMetricaTest, FirstMatchingFaultInInjectionOrderWins) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  FakeMetrica::Fault list_outage;
  list_outage.path_substring = "/uploadings";
  list_outage.http_status = 503;
  metrica_.InjectFault(list_outage);
  FakeMetrica::Fault quota;
  quota.http_status = 429;
  quota.times = -1;
  metrica_.InjectFault(quota);
  std::vector<int> statuses;
  for (const std::string& path :
       {UploadingPath(kCounter, 12), ListPath(kCounter), ListPath(kCounter)}) {
    auto result = Get(path);
    statuses.push_back(result ? result->status : -1);
  }
  EXPECT_THAT(statuses, ElementsAre(429, 503, 429));
}

TEST_F(FakeMetricaTest, DelayStallsThenAnswersNormally) {
  metrica_.AddUploading(kCounter, MakeUploading(12, Uploading::EXPORTED));
  FakeMetrica::Fault slow;
  slow.delay = absl::Milliseconds(300);
  metrica_.InjectFault(slow);
  const absl::Time start = absl::Now();
  auto result = Get(UploadingPath(kCounter, 12));
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_GE(elapsed, absl::Milliseconds(300));
  EXPECT_LT(elapsed, absl::Seconds(5));
  EXPECT_EQ(StatusOf(result), Uploading::EXPORTED);
}

TEST_F(FakeMetricaTest, RawBodyReplacesTheAnswer) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  FakeMetrica::Fault malformed;
  malformed.body = R"({"uploading": {"id": 12, "status": )";
  metrica_.InjectFault(malformed);
  auto result = Get(UploadingPath(kCounter, 12));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->body, *malformed.body);
  EXPECT_FALSE(ParseUploadingBody(result->body).ok());
}

TEST_F(FakeMetricaTest, RawBodyWithStatus) {
  FakeMetrica::Fault gateway;
  gateway.http_status = 502;
  gateway.body = "<html>Bad Gateway</html>";
  metrica_.InjectFault(gateway);
  auto result = Get(UploadingPath(kCounter, 12));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 502);
  EXPECT_EQ(result->body, "<html>Bad Gateway</html>");
}

TEST_F(FakeMetricaTest, HugeBodyIsChunkedValidJsonOfTheExactSize) {
  constexpr size_t kSize = 5 * 1024 * 1024 + 7;
  FakeMetrica::Fault huge;
  huge.huge_body_bytes = kSize;
  huge.times = 2;
  metrica_.InjectFault(huge);

  auto single = Get(UploadingPath(kCounter, 12));
  ASSERT_TRUE(single) << httplib::to_string(single.error());
  EXPECT_EQ(single->status, 200);
  EXPECT_EQ(single->get_header_value("Transfer-Encoding"), "chunked");
  EXPECT_EQ(single->body.size(), kSize);
  EXPECT_THAT(single->body, StartsWith(R"({"uploading":{)"));
  EXPECT_TRUE(ParseUploadingBody(single->body).ok());

  auto list = Get(ListPath(kCounter));
  ASSERT_TRUE(list);
  EXPECT_EQ(list->body.size(), kSize);
  EXPECT_TRUE(ParseUploadingsBody(list->body).ok());
}

TEST_F(FakeMetricaTest, TinyHugeBodyStillHasTheExactSize) {
  FakeMetrica::Fault huge;
  huge.huge_body_bytes = 10;
  metrica_.InjectFault(huge);
  auto result = Get(UploadingPath(kCounter, 12));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->body.size(), 10u);
}

TEST_F(FakeMetricaTest, TruncatedBodyFailsTheClient) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  FakeMetrica::Fault truncated;
  truncated.truncate = true;
  truncated.times = 2;
  metrica_.InjectFault(truncated);

  auto result = Get(UploadingPath(kCounter, 12));
  EXPECT_FALSE(result);

  const RawExchange raw = RawGet(metrica_.port(), UploadingPath(kCounter, 12));
  const size_t header_end = raw.bytes.find("\r\n\r\n");
  ASSERT_NE(header_end, std::string::npos) << raw.bytes;
  const std::string headers = raw.bytes.substr(0, header_end);
  EXPECT_THAT(headers, StartsWith("HTTP/1.1 200"));
  const size_t at = headers.find("Content-Length: ");
  ASSERT_NE(at, std::string::npos) << headers;
  size_t announced = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      headers.substr(at + 16, headers.find("\r\n", at) - at - 16), &announced));
  const size_t received = raw.bytes.size() - header_end - 4;
  EXPECT_GT(announced, 100u);
  EXPECT_EQ(received, announced / 2);

  const auto requests = metrica_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].http_status, 200);
}

TEST_F(FakeMetricaTest, TruncationAppliesToAFaultBodyToo) {
  FakeMetrica::Fault truncated;
  truncated.http_status = 503;
  truncated.truncate = true;
  metrica_.InjectFault(truncated);
  const RawExchange raw = RawGet(metrica_.port(), UploadingPath(kCounter, 12));
  EXPECT_THAT(raw.bytes, StartsWith("HTTP/1.1 503"));
  EXPECT_THAT(raw.bytes, HasSubstr(R"({"errors":[{"error_type":"backend)"));
  EXPECT_THAT(raw.bytes, Not(HasSubstr(R"("code":503)")));
}

TEST_F(FakeMetricaTest, DroppedConnectionGetsNoAnswer) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  FakeMetrica::Fault drop;
  drop.drop_connection = true;
  drop.times = 2;
  metrica_.InjectFault(drop);

  auto result = Get(UploadingPath(kCounter, 12));
  EXPECT_FALSE(result);

  const RawExchange raw = RawGet(metrica_.port(), UploadingPath(kCounter, 12));
  EXPECT_EQ(raw.bytes, "");

  const auto requests = metrica_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].http_status, 0);
  EXPECT_EQ(requests[1].http_status, 0);
  // The server itself lives on.
  auto after = Get(UploadingPath(kCounter, 12));
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
}

TEST_F(FakeMetricaTest, DelayThenDrop) {
  FakeMetrica::Fault drop;
  drop.delay = absl::Milliseconds(200);
  drop.drop_connection = true;
  metrica_.InjectFault(drop);
  const absl::Time start = absl::Now();
  EXPECT_FALSE(Get(UploadingPath(kCounter, 12)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
}

// --- Request log -------------------------------------------------------------

TEST_F(FakeMetricaTest, RecordsEveryRequest) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  ASSERT_TRUE(Get(ListPath(kCounter, "limit=5&offset=0")));
  clock_.Advance(absl::Seconds(3));
  ASSERT_TRUE(Get(UploadingPath(kCounter, 12), ""));

  const auto requests = metrica_.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].method, "GET");
  EXPECT_EQ(requests[0].path, ListPath(kCounter));
  EXPECT_EQ(requests[0].query, "limit=5&offset=0");
  EXPECT_EQ(requests[0].token, kToken);
  EXPECT_EQ(requests[0].time, clock_.Now() - absl::Seconds(3));
  EXPECT_EQ(requests[0].in_flight, 1);
  EXPECT_EQ(requests[0].http_status, 200);
  EXPECT_EQ(requests[1].path, UploadingPath(kCounter, 12));
  EXPECT_EQ(requests[1].query, "");
  EXPECT_EQ(requests[1].token, "");
  EXPECT_EQ(requests[1].time, clock_.Now());
  EXPECT_EQ(requests[1].http_status, 401);
  EXPECT_EQ(metrica_.max_in_flight(kToken), 1);

  metrica_.ClearRequests();
  EXPECT_TRUE(metrica_.requests().empty());
  EXPECT_EQ(metrica_.max_in_flight(kToken), 0);
  ASSERT_TRUE(Get(UploadingPath(kCounter, 12)));
  ASSERT_EQ(metrica_.requests().size(), 1u);
  EXPECT_EQ(metrica_.requests()[0].http_status, 200);
}

TEST_F(FakeMetricaTest, InFlightCountsConcurrentRequestsPerToken) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  metrica_.GrantAccess("token-b", kCounter);
  FakeMetrica::Fault slow;
  slow.delay = absl::Seconds(1);
  slow.times = -1;
  metrica_.InjectFault(slow);

  constexpr int kParallel = 6;
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kParallel; ++i) {
    clients.emplace_back([&] {
      auto result = Get(UploadingPath(kCounter, 12));
      if (result && result->status == 200) ++ok;
    });
  }
  clients.emplace_back([&] {
    auto result = Get(UploadingPath(kCounter, 12), "token-b");
    if (result && result->status == 200) ++ok;
  });
  for (std::thread& t : clients) t.join();

  EXPECT_EQ(ok, kParallel + 1);
  EXPECT_EQ(metrica_.max_in_flight(kToken), kParallel);
  EXPECT_EQ(metrica_.max_in_flight("token-b"), 1);
  EXPECT_EQ(metrica_.max_in_flight("nobody"), 0);
  std::vector<int> in_flight;
  for (const auto& request : metrica_.requests()) {
    if (request.token == kToken) in_flight.push_back(request.in_flight);
  }
  std::sort(in_flight.begin(), in_flight.end());
  EXPECT_THAT(in_flight, ElementsAre(1, 2, 3, 4, 5, 6));

  // Once they are answered, a new request is alone again.
  metrica_.ClearFaults();
  ASSERT_TRUE(Get(UploadingPath(kCounter, 12)));
  EXPECT_EQ(metrica_.requests().back().in_flight, 1);
}

TEST_F(FakeMetricaTest, SlowRepliesDoNotHoldUpOthers) {
  metrica_.AddUploading(kCounter, MakeUploading(12));
  FakeMetrica::Fault slow;
  slow.delay = absl::Seconds(1);
  slow.times = -1;
  metrica_.InjectFault(slow);

  constexpr int kParallel = 120;  // more than a 64-thread pool could hold
  std::atomic<int> ok{0};
  const absl::Time start = absl::Now();
  std::vector<std::thread> clients;
  for (int i = 0; i < kParallel; ++i) {
    clients.emplace_back([&] {
      auto result = Get(UploadingPath(kCounter, 12));
      if (result && result->status == 200) ++ok;
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok, kParallel);
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));  // serially: 120 s
  EXPECT_EQ(metrica_.max_in_flight(kToken), kParallel);
}

// --- The demo world ----------------------------------------------------------

class SeedDemoTest : public FakeMetricaTest {
 protected:
  void SetUp() override {
    FakeMetricaTest::SetUp();
    metrica_.SeedDemo("demo-token");
  }

  std::vector<Uploading> ListDemo(absl::string_view query = "") {
    auto result = Get(ListPath(kCounter, query), "demo-token");
    EXPECT_TRUE(result);
    if (!result) return {};
    EXPECT_EQ(result->status, 200);
    auto parsed = ParseUploadingsBody(result->body);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    if (!parsed.ok()) return {};
    return {parsed->uploadings().begin(), parsed->uploadings().end()};
  }
};

bool IsTerminal(Uploading::Status status) {
  return status == Uploading::PROCESSED || status == Uploading::LINKAGE_FAILURE;
}

TEST_F(SeedDemoTest, HasTheDocsExampleAndEveryStage) {
  auto twelve = Get(UploadingPath(kCounter, 12), "demo-token");
  ASSERT_TRUE(twelve);
  auto parsed = ParseUploadingBody(twelve->body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->uploading().status(), Uploading::PROCESSED);
  EXPECT_EQ(parsed->uploading().create_time().seconds(), 1672336921);

  std::vector<Uploading> all = ListDemo();
  for (const char* type : {"type=CALLS", "type=CHATS"}) {
    for (const Uploading& u : ListDemo(type)) all.push_back(u);
  }
  EXPECT_GE(all.size(), 8u);
  std::set<Uploading::Status> statuses;
  std::set<Uploading::Type> types;
  for (const Uploading& u : all) {
    statuses.insert(u.status());
    types.insert(u.type());
    EXPECT_FALSE(u.comment().empty());
    EXPECT_GT(u.source_quantity(), 0);
    EXPECT_NE(u.client_id_type(), Uploading::CLIENT_ID_TYPE_UNSPECIFIED);
    EXPECT_GT(u.create_time().seconds(), 0);
  }
  EXPECT_THAT(statuses,
              ElementsAre(Uploading::PREPARED, Uploading::UPLOADED,
                          Uploading::EXPORTED, Uploading::MATCHED,
                          Uploading::PROCESSED, Uploading::LINKAGE_FAILURE));
  EXPECT_THAT(
      types, ElementsAre(Uploading::BASIC, Uploading::CALLS, Uploading::CHATS));
}

TEST_F(SeedDemoTest, OnlyTheDemoTokenGetsIn) {
  ExpectMetricaError(Get(UploadingPath(kCounter, 12), "stranger"), 401,
                     "unauthorized");
  // kToken was granted the same counter by the fixture: it still may read.
  auto granted = Get(UploadingPath(kCounter, 12), kToken);
  ASSERT_TRUE(granted);
  EXPECT_EQ(granted->status, 200);
}

TEST_F(SeedDemoTest, LiveUploadsKeepComingAndEachOneEnds) {
  // Status history per live upload over 5 minutes, sampled every 5 s through
  // the list (requests are what start new uploads); duplicates collapsed.
  std::map<int64_t, std::vector<Uploading::Status>> history;
  std::map<int64_t, Uploading> last;
  int quantity_only_changes = 0;
  for (int step = 0; step <= 60; ++step) {
    bool some_under_way = false;
    for (const Uploading& u : ListDemo()) {
      if (u.id() < 100) continue;  // a settled uploading
      std::vector<Uploading::Status>& h = history[u.id()];
      if (h.empty() || h.back() != u.status()) h.push_back(u.status());
      if (last.count(u.id()) && last[u.id()].status() == u.status() &&
          !MessageDifferencer::Equals(last[u.id()], u)) {
        ++quantity_only_changes;
      }
      last[u.id()] = u;
      some_under_way |= !IsTerminal(u.status());
    }
    // A watch started now has something to show.
    EXPECT_TRUE(some_under_way) << "at step " << step;
    clock_.Advance(absl::Seconds(5));
  }

  // Three under way at the start, then one every 30 s: 101..113.
  ASSERT_EQ(history.size(), 13u);
  EXPECT_EQ(history.begin()->first, 101);
  EXPECT_EQ(history.rbegin()->first, 113);
  bool processed = false, failed = false;
  for (const auto& [id, h] : history) {
    SCOPED_TRACE(id);
    // Forward only, and a finished upload stays finished (ids never reused).
    for (size_t i = 1; i < h.size(); ++i) EXPECT_GT(h[i], h[i - 1]);
    if (id >= 104 && id <= 110) {  // seen from its start to its end
      EXPECT_THAT(h, ElementsAre(Uploading::PREPARED, Uploading::UPLOADED,
                                 Uploading::EXPORTED, Uploading::MATCHED,
                                 ::testing::AnyOf(Uploading::PROCESSED,
                                                  Uploading::LINKAGE_FAILURE)));
    }
    processed |= h.back() == Uploading::PROCESSED;
    failed |= h.back() == Uploading::LINKAGE_FAILURE;
  }
  EXPECT_TRUE(processed);
  EXPECT_TRUE(failed);
  EXPECT_GT(quantity_only_changes, 0);
}

TEST_F(FakeMetricaTest, DemoSpeedRunsLiveUploadsFaster) {
  metrica_.SeedDemo("demo-token", /*speed=*/10);
  clock_.Advance(absl::Seconds(9));  // a whole journey at 10x
  auto result = Get(UploadingPath(kCounter, 103), "demo-token");
  ASSERT_TRUE(result);
  auto parsed = ParseUploadingBody(result->body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(IsTerminal(parsed->uploading().status()));
  // And a new one every 3 s.
  EXPECT_TRUE(Get(UploadingPath(kCounter, 106), "demo-token"));
  EXPECT_EQ(Get(UploadingPath(kCounter, 106), "demo-token")->status, 200);
}

}  // namespace
}  // namespace uploadwatch
