#include "service/metrica/error_mapping.h"

#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/status_details.h"

namespace uploadwatch {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::string_view kHost = "api-metrika.yandex.net";

ErrorContext Context(int attempts = 1) {
  return ErrorContext{kHost, "counter 2215573, uploading 12", attempts};
}

std::string Body(int code, absl::string_view error_type,
                 absl::string_view message) {
  return absl::StrCat(R"({"errors":[{"error_type":")", error_type,
                      R"(","message":")", message, R"("}],"code":)", code,
                      R"(,"message":")", message, R"("})");
}

std::string ReasonOf(const absl::Status& status) {
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  return info ? info->reason() : "<none>";
}

struct Row {
  int http_status;
  std::string error_type;
  absl::StatusCode code;
};

class HttpTableTest : public ::testing::TestWithParam<Row> {};

TEST_P(HttpTableTest, MapsToTheCodeOfTheTable) {
  const Row& row = GetParam();
  const absl::Status status = HttpErrorToStatus(
      row.http_status, Body(row.http_status, row.error_type, "Some text"),
      std::nullopt, Context());
  EXPECT_EQ(status.code(), row.code) << status;
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr(absl::StrCat("Metrica ", row.http_status, " ",
                                           row.error_type, ": Some text")),
                    HasSubstr("counter 2215573, uploading 12")));
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->domain(), kHost);
  EXPECT_EQ(info->reason(), absl::AsciiStrToUpper(row.error_type));
}

INSTANTIATE_TEST_SUITE_P(
    IssueThreeTable, HttpTableTest,
    ::testing::Values(
        Row{400, "invalid_parameter", absl::StatusCode::kInvalidArgument},
        Row{400, "missing_parameter", absl::StatusCode::kInvalidArgument},
        Row{401, "unauthorized", absl::StatusCode::kUnauthenticated},
        Row{403, "invalid_token", absl::StatusCode::kUnauthenticated},
        Row{403, "access_denied", absl::StatusCode::kPermissionDenied},
        Row{403, "counter_in_connect", absl::StatusCode::kPermissionDenied},
        Row{403, "something_new", absl::StatusCode::kPermissionDenied},
        Row{404, "not_found", absl::StatusCode::kNotFound},
        Row{409, "conflict", absl::StatusCode::kAborted},
        Row{429, "quota_requests_by_uid", absl::StatusCode::kResourceExhausted},
        Row{429, "quota_parallel_requests",
            absl::StatusCode::kResourceExhausted},
        Row{420, "quota_requests_by_ip", absl::StatusCode::kResourceExhausted},
        Row{403, "quota_delegate_requests",
            absl::StatusCode::kResourceExhausted},
        Row{400, "quota_grants_requests",
            absl::StatusCode::kResourceExhausted},
        Row{500, "internal_error", absl::StatusCode::kUnavailable},
        Row{503, "backend_error", absl::StatusCode::kUnavailable},
        Row{504, "timeout", absl::StatusCode::kUnavailable}),
    [](const ::testing::TestParamInfo<Row>& info) {
      return absl::StrCat("Http", info.param.http_status, "_",
                          info.param.error_type);
    });

TEST(HttpErrorToStatusTest, ExampleMessageReadsAsDocumented) {
  const absl::Status status = HttpErrorToStatus(
      403, Body(403, "access_denied", "Access is denied"), std::nullopt,
      Context());
  EXPECT_EQ(status.message(),
            "Metrica 403 access_denied: Access is denied "
            "(counter 2215573, uploading 12)");
}

TEST(HttpErrorToStatusTest, BodiesThatAreNotMetricasMapByStatusAlone) {
  EXPECT_EQ(HttpErrorToStatus(429, "", std::nullopt, Context()).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(HttpErrorToStatus(420, "<html>", std::nullopt, Context()).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(HttpErrorToStatus(502, "<html>Bad Gateway</html>", std::nullopt,
                              Context())
                .code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(HttpErrorToStatus(401, "{", std::nullopt, Context()).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(HttpErrorToStatus(403, "", std::nullopt, Context()).code(),
            absl::StatusCode::kPermissionDenied);
  const absl::Status status =
      HttpErrorToStatus(502, "<html>", std::nullopt, Context());
  EXPECT_EQ(ReasonOf(status), "HTTP_502");
  EXPECT_THAT(std::string(status.message()), HasSubstr("Metrica 502"));
}

TEST(HttpErrorToStatusTest, UnexpectedStatusesAreUnknown) {
  EXPECT_EQ(HttpErrorToStatus(302, "", std::nullopt, Context()).code(),
            absl::StatusCode::kUnknown);
  EXPECT_EQ(HttpErrorToStatus(418, "", std::nullopt, Context()).code(),
            absl::StatusCode::kUnknown);
}

TEST(HttpErrorToStatusTest, AQuotaTypeAnywhereInTheBodyWins) {
  const std::string body =
      R"({"errors":[{"error_type":"access_denied","message":"no"},)"
      R"({"error_type":"quota_requests_by_counter_id","message":"slow down"}],)"
      R"("code":403,"message":"no"})";
  const absl::Status status =
      HttpErrorToStatus(403, body, std::nullopt, Context());
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReasonOf(status), "QUOTA_REQUESTS_BY_COUNTER_ID");
}

TEST(HttpErrorToStatusTest, RetryAfterBecomesRetryInfo) {
  const absl::Status status =
      HttpErrorToStatus(429, Body(429, "quota_requests_by_uid", "Too many"),
                        absl::Seconds(7), Context());
  EXPECT_EQ(GetRetryDelay(status), absl::Seconds(7));
  EXPECT_EQ(GetRetryDelay(HttpErrorToStatus(
                429, Body(429, "quota_requests_by_uid", "Too many"),
                std::nullopt, Context())),
            std::nullopt);
}

TEST(HttpErrorToStatusTest, AttemptsAreCountedWhenThereWereSeveral) {
  EXPECT_THAT(std::string(HttpErrorToStatus(503, "", std::nullopt, Context(4))
                              .message()),
              HasSubstr("(counter 2215573, uploading 12; 4 attempts)"));
  EXPECT_THAT(std::string(HttpErrorToStatus(503, "", std::nullopt, Context(1))
                              .message()),
              Not(HasSubstr("attempt")));
}

TEST(HttpErrorToStatusTest, UpstreamTextIsBoundedAndOnOneLine) {
  const std::string long_message(5000, 'x');
  const absl::Status status = HttpErrorToStatus(
      400, Body(400, "invalid_parameter", long_message + "\\nnext line"),
      std::nullopt, Context());
  EXPECT_LT(status.message().size(), 500u);
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("\n")));
}

TEST(HttpErrorToStatusTest, ReasonIsUpperSnakeCaseAndBounded) {
  const absl::Status status = HttpErrorToStatus(
      400, Body(400, std::string(100, 'a') + "-b c", "m"), std::nullopt,
      Context());
  EXPECT_EQ(ReasonOf(status), std::string(63, 'A'));
  EXPECT_EQ(ReasonOf(HttpErrorToStatus(400, Body(400, "weird-type x", "m"),
                                       std::nullopt, Context())),
            "WEIRD_TYPE_X");
}

TEST(TransportFailureToStatusTest, NetworkFailuresAreUnavailable) {
  for (TransportFailure failure :
       {TransportFailure::kResolve, TransportFailure::kConnect,
        TransportFailure::kConnectionLost, TransportFailure::kTls,
        TransportFailure::kStalled, TransportFailure::kOther}) {
    const absl::Status status =
        TransportFailureToStatus(failure, "curl says why", Context());
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
    EXPECT_THAT(std::string(status.message()),
                AllOf(HasSubstr("curl says why"),
                      HasSubstr("counter 2215573, uploading 12")));
    ASSERT_TRUE(GetErrorInfo(status).has_value());
    EXPECT_EQ(GetErrorInfo(status)->domain(), kHost);
    EXPECT_TRUE(IsRetryable(status));
  }
  EXPECT_THAT(std::string(TransportFailureToStatus(TransportFailure::kResolve,
                                                   "", Context())
                              .message()),
              HasSubstr("DNS"));
  EXPECT_THAT(std::string(TransportFailureToStatus(TransportFailure::kConnect,
                                                   "", Context())
                              .message()),
              HasSubstr("refused"));
}

TEST(TransportFailureToStatusTest, TruncatedMalformedAndOversizedRepliesAreBadReplies) {
  const absl::Status truncated =
      TransportFailureToStatus(TransportFailure::kTruncated, "", Context());
  const absl::Status malformed =
      TransportFailureToStatus(TransportFailure::kMalformed, "", Context());
  const absl::Status too_large = TransportFailureToStatus(
      TransportFailure::kTooLarge, "more than 4194304 bytes", Context());
  for (const absl::Status& status : {truncated, malformed, too_large}) {
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(status.message()),
                HasSubstr("upstream reply was bad"));
    EXPECT_EQ(ReasonOf(status), "BAD_REPLY");
    EXPECT_TRUE(IsRetryable(status));
  }
  EXPECT_THAT(std::string(too_large.message()),
              HasSubstr("upstream reply too large"));
}

TEST(BadReplyStatusTest, IsUnavailableLikeA502) {
  const absl::Status status = BadReplyStatus("not JSON", Context());
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status.message(),
            "upstream reply was bad: not JSON (counter 2215573, uploading 12)");
  EXPECT_TRUE(IsRetryable(status));
}

TEST(DeadlineExceededStatusTest, QuotesTheLastError) {
  const absl::Status last =
      HttpErrorToStatus(503, Body(503, "backend_error", "Try later"),
                        std::nullopt, Context(2));
  const absl::Status status = DeadlineExceededStatus(last, Context(2));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(status.message()),
              AllOf(HasSubstr("deadline"), HasSubstr("uploading 12"),
                    HasSubstr("last error: Metrica 503 backend_error")));
  EXPECT_FALSE(IsRetryable(status));
  EXPECT_THAT(std::string(DeadlineExceededStatus(absl::OkStatus(), Context())
                              .message()),
              Not(HasSubstr("last error")));
}

TEST(IsRetryableTest, OnlyTransientCodes) {
  EXPECT_TRUE(IsRetryable(absl::UnavailableError("")));
  EXPECT_TRUE(IsRetryable(absl::ResourceExhaustedError("")));
  for (const absl::Status& status :
       {absl::InvalidArgumentError(""), absl::UnauthenticatedError(""),
        absl::PermissionDeniedError(""), absl::NotFoundError(""),
        absl::DeadlineExceededError(""), absl::CancelledError(""),
        absl::UnknownError(""), absl::AbortedError("")}) {
    EXPECT_FALSE(IsRetryable(status)) << status;
  }
}

TEST(ParseRetryAfterTest, DeltaSeconds) {
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  EXPECT_EQ(ParseRetryAfter("1", now), absl::Seconds(1));
  EXPECT_EQ(ParseRetryAfter(" 120 ", now), absl::Seconds(120));
  EXPECT_EQ(ParseRetryAfter("0", now), absl::ZeroDuration());
}

TEST(ParseRetryAfterTest, HttpDate) {
  const absl::Time now = absl::FromUnixSeconds(784111777);  // 08:49:37
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:47 GMT", now),
            absl::Seconds(10));
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:00:00 GMT", now),
            absl::ZeroDuration());
}

TEST(ParseRetryAfterTest, GarbageIsIgnored) {
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  EXPECT_EQ(ParseRetryAfter("", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("soon", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("1.5", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("-3", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("99999999999999999999999", now), std::nullopt);
}

TEST(RedactSecretTest, ReplacesTheSecretAndKeepsDetails) {
  const std::string token = "AQAAAAAsecretTOKEN0123456789";
  absl::Status status = HttpErrorToStatus(
      401, Body(401, "unauthorized", "Bad token " + token), absl::Seconds(3),
      Context());
  ASSERT_THAT(std::string(status.message()), HasSubstr(token));
  const absl::Status redacted = RedactSecret(status, token);
  EXPECT_EQ(redacted.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(redacted.message()),
              AllOf(Not(HasSubstr(token)), HasSubstr("Bad token <redacted>")));
  EXPECT_EQ(ReasonOf(redacted), "UNAUTHORIZED");
  EXPECT_EQ(GetRetryDelay(redacted), absl::Seconds(3));
}

TEST(ParseRetryAfterTest, IsCappedAtADayAndNeverInfinite) {
  // Found by fuzzing: huge values made invalid google.protobuf.Durations,
  // and absl::ParseTime accepts "infinite-future" whatever the format.
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  EXPECT_EQ(ParseRetryAfter("315576000001", now), absl::Hours(24));
  EXPECT_EQ(ParseRetryAfter("infinite-future", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("infinite-past", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 2094 08:49:47 GMT", now),
            absl::Hours(24));
}

TEST(RedactSecretTest, ASecretThatSurvivesReplacementClearsTheMessage) {
  // Found by review with the fuzzer: the secret "redacted" is inside the
  // replacement text itself.
  const absl::Status redacted =
      RedactSecret(absl::UnauthenticatedError("token redacted"), "redacted");
  EXPECT_THAT(std::string(redacted.message()), Not(HasSubstr("redacted")));
  EXPECT_EQ(redacted.code(), absl::StatusCode::kUnauthenticated);
}

TEST(RedactSecretTest, LeavesOtherStatusesAlone) {
  const absl::Status status = absl::NotFoundError("counter 5");
  EXPECT_EQ(RedactSecret(status, "AQAAAAAsecret"), status);
  EXPECT_EQ(RedactSecret(absl::OkStatus(), "AQAAAAAsecret"), absl::OkStatus());
  // Too short to be a real token: ordinary words survive.
  EXPECT_EQ(RedactSecret(status, "count"), status);
}

}  // namespace
}  // namespace uploadwatch
