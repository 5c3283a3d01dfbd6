// An upstream error reply: HTTP status + body (+ Retry-After) -> absl::Status,
// then redaction with the caller's token, as the fetcher does.
//
// Input: "<http status> <retry-after value or -> <secret>\n<body>", e.g.
//   429 60 y0_AgAAAAAexample
//   {"errors":[{"error_type":"quota_requests_by_uid",...}],"code":429}
//
// Invariants: never OK, a code from error_mapping.h's table, the table's
// RESOURCE_EXHAUSTED and UNAVAILABLE rows hold, no control characters in the
// message (upstream text cannot forge log lines), an ErrorInfo with a valid
// reason and the context's domain, RetryInfo exactly when Retry-After was
// given; after RedactSecret the secret is gone from the message while code and
// payloads are kept.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "fuzz/fuzz_check.h"
#include "service/common/status_details.h"
#include "service/metrica/error_mapping.h"
#include "service/metrica/json_mapping.h"

namespace uploadwatch::fuzz {
namespace {

constexpr absl::string_view kDomain = "api-metrika.yandex.net";
constexpr absl::string_view kWhat = "counter 2215573, uploading 12";
// RedactSecret leaves shorter strings alone (error_mapping.cc: they are not
// real OAuth tokens, and replacing them would mangle ordinary words).
constexpr size_t kMinSecretChars = 6;

bool IsDocumentedCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kUnknown:
      return true;
    default:
      return false;
  }
}

bool IsReason(absl::string_view reason) {
  return !reason.empty() && reason.size() <= 63 &&
         std::all_of(reason.begin(), reason.end(), [](char c) {
           return absl::ascii_isupper(static_cast<unsigned char>(c)) ||
                  absl::ascii_isdigit(static_cast<unsigned char>(c)) ||
                  c == '_' || c == '-';  // '-': "HTTP_-1" for a bogus status
         });
}

// ParseErrorBody's contract: it never fails, and takes `code` only when it is
// an HTTP status.
void CheckParsedError(int http_status, const MetricaError& error) {
  FUZZ_CHECK(error.http_code == http_status ||
                 (error.http_code >= 100 && error.http_code < 600),
             absl::StrCat(error.http_code));
  FUZZ_CHECK(error.error_types.empty() ? error.error_type.empty()
                                       : std::find(error.error_types.begin(),
                                                   error.error_types.end(),
                                                   error.error_type) !=
                                             error.error_types.end(),
             error.error_type);
}

void CheckMapping(int http_status, absl::string_view body,
                  std::optional<absl::Duration> retry_after,
                  const absl::Status& status) {
  const std::string shown = status.ToString();
  FUZZ_CHECK(!status.ok(), shown);
  FUZZ_CHECK(IsDocumentedCode(status.code()), shown);
  const MetricaError error = ParseErrorBody(http_status, body);
  CheckParsedError(http_status, error);
  const bool quota = std::any_of(
      error.error_types.begin(), error.error_types.end(),
      [](const std::string& t) { return absl::StartsWith(t, "quota_"); });
  if (quota || http_status == 429 || http_status == 420) {
    FUZZ_CHECK(status.code() == absl::StatusCode::kResourceExhausted, shown);
  } else if (http_status >= 500 && http_status <= 599) {
    FUZZ_CHECK(status.code() == absl::StatusCode::kUnavailable, shown);
  }
  FUZZ_CHECK(absl::StartsWith(status.message(), absl::StrCat("Metrica ", http_status)),
             shown);
  FUZZ_CHECK(absl::StrContains(status.message(), kWhat), shown);
  FUZZ_CHECK(std::none_of(status.message().begin(), status.message().end(),
                          [](char c) {
                            return absl::ascii_iscntrl(static_cast<unsigned char>(c));
                          }),
             shown);
  const auto info = GetErrorInfo(status);
  FUZZ_CHECK(info.has_value() && IsReason(info->reason()) &&
                 info->domain() == kDomain,
             shown);
  FUZZ_CHECK(GetRetryDelay(status) == retry_after, shown);
}

void CheckRedaction(const absl::Status& status, absl::string_view secret) {
  const absl::Status redacted = RedactSecret(status, secret);
  FUZZ_CHECK(redacted.code() == status.code(), redacted.ToString());
  FUZZ_CHECK(GetErrorInfo(redacted).has_value(), redacted.ToString());
  FUZZ_CHECK(GetRetryDelay(redacted) == GetRetryDelay(status), redacted.ToString());
  if (secret.size() >= kMinSecretChars) {
    FUZZ_CHECK(!absl::StrContains(redacted.message(), secret),
               absl::StrCat("secret \"", secret, "\" survives in: ",
                            redacted.message()));
  }
}

}  // namespace
}  // namespace uploadwatch::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace uploadwatch::fuzz;
  const Split input = SplitFirstLine(AsText(data, size));
  const std::vector<absl::string_view> head =
      absl::StrSplit(input.line, absl::MaxSplits(' ', 2));
  int http_status = 0;
  if (head.size() < 3 || !absl::SimpleAtoi(head[0], &http_status)) return 0;
  const absl::Time now = absl::FromUnixSeconds(1672336921);  // 2022-12-29T18:02:01Z
  const std::optional<absl::Duration> retry_after =
      head[1] == "-" ? std::nullopt : uploadwatch::ParseRetryAfter(head[1], now);
  const uploadwatch::ErrorContext context{kDomain, kWhat, 1};
  const absl::Status status = uploadwatch::HttpErrorToStatus(
      http_status, input.rest, retry_after, context);
  CheckMapping(http_status, input.rest, retry_after, status);
  CheckRedaction(status, head[2]);
  return 0;
}
