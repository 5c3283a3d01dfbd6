#include "service/metrica/error_mapping.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "service/common/status_details.h"
#include "service/metrica/json_mapping.h"

namespace uploadwatch {
namespace {

// Upstream text is quoted in messages, so it is bounded: a message is for
// people and logs, not a channel for a whole reply.
constexpr size_t kMaxQuotedChars = 300;
// google.rpc.ErrorInfo.reason: UPPER_SNAKE_CASE, at most 63 characters.
constexpr size_t kMaxReasonChars = 63;
// Shorter "secrets" are not real OAuth tokens (Yandex's run to 40-60
// characters); replacing them would only mangle ordinary words.
constexpr size_t kMinRedactedChars = 6;
constexpr absl::Duration kMaxRetryAfter = absl::Hours(24);

std::string Quote(absl::string_view text) {
  std::string out;
  for (char c : text.substr(0, kMaxQuotedChars)) {
    out.push_back(absl::ascii_iscntrl(static_cast<unsigned char>(c)) ? ' ' : c);
  }
  if (text.size() > kMaxQuotedChars) out += "...";
  return out;
}

std::string Reason(absl::string_view error_type) {
  std::string out;
  for (char c : error_type) {
    if (out.size() == kMaxReasonChars) break;
    out.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c))
                      ? absl::ascii_toupper(static_cast<unsigned char>(c))
                      : '_');
  }
  return out;
}

// "<text> (<what>[; N attempts])".
std::string WithSubject(absl::string_view text, const ErrorContext& context) {
  std::string message = absl::StrCat(text, " (", context.what);
  if (context.attempts > 1) {
    absl::StrAppend(&message, "; ", context.attempts, " attempts");
  }
  message += ")";
  return message;
}

absl::Status Make(absl::StatusCode code, absl::string_view text,
                  absl::string_view reason, const ErrorContext& context) {
  absl::Status status(code, WithSubject(text, context));
  SetErrorInfo(status, reason, context.domain);
  return status;
}

absl::StatusCode CodeForHttp(int http_status, const MetricaError& error) {
  const bool quota = std::any_of(
      error.error_types.begin(), error.error_types.end(),
      [](const std::string& type) { return absl::StartsWith(type, "quota_"); });
  if (quota || http_status == 429 || http_status == 420) {
    return absl::StatusCode::kResourceExhausted;
  }
  if (http_status >= 500 && http_status <= 599) {
    return absl::StatusCode::kUnavailable;
  }
  switch (http_status) {
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return error.error_type == "invalid_token"
                 ? absl::StatusCode::kUnauthenticated
                 : absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 409:
      return absl::StatusCode::kAborted;
    default:
      return absl::StatusCode::kUnknown;
  }
}

}  // namespace

absl::Status HttpErrorToStatus(int http_status, absl::string_view body,
                               std::optional<absl::Duration> retry_after,
                               const ErrorContext& context) {
  MetricaError error = ParseErrorBody(http_status, body);
  // For a quota error the quota type is the reason, wherever it is listed.
  for (const std::string& type : error.error_types) {
    if (absl::StartsWith(type, "quota_")) {
      error.error_type = type;
      break;
    }
  }
  std::string text = absl::StrCat("Metrica ", http_status);
  if (!error.error_type.empty()) absl::StrAppend(&text, " ", Quote(error.error_type));
  if (!error.message.empty()) absl::StrAppend(&text, ": ", Quote(error.message));
  const std::string reason = error.error_type.empty()
                                 ? absl::StrCat("HTTP_", http_status)
                                 : Reason(error.error_type);
  absl::Status status =
      Make(CodeForHttp(http_status, error), text, reason, context);
  if (retry_after.has_value()) SetRetryInfo(status, *retry_after);
  return status;
}

absl::Status TransportFailureToStatus(TransportFailure failure,
                                      absl::string_view detail,
                                      const ErrorContext& context) {
  absl::string_view what;
  absl::string_view reason;
  switch (failure) {
    case TransportFailure::kResolve:
      what = "Metrica unreachable: DNS failure";
      reason = "DNS_FAILURE";
      break;
    case TransportFailure::kConnect:
      what = "Metrica unreachable: connection refused or unreachable";
      reason = "CONNECTION_FAILED";
      break;
    case TransportFailure::kConnectionLost:
      what = "Metrica connection lost before a complete reply";
      reason = "CONNECTION_LOST";
      break;
    case TransportFailure::kTls:
      what = "Metrica TLS failure";
      reason = "TLS_FAILURE";
      break;
    case TransportFailure::kStalled:
      what = "Metrica stalled (connect timeout or below the low-speed limit)";
      reason = "UPSTREAM_STALLED";
      break;
    case TransportFailure::kTruncated:
      return BadReplyStatus(absl::StrCat("truncated body: ", detail), context);
    case TransportFailure::kMalformed:
      return BadReplyStatus(absl::StrCat("malformed HTTP: ", detail), context);
    case TransportFailure::kTooLarge:
      return BadReplyStatus(absl::StrCat("upstream reply too large: ", detail),
                            context);
    case TransportFailure::kOther:
      what = "Metrica transfer failed";
      reason = "TRANSPORT_FAILURE";
      break;
  }
  std::string text(what);
  if (!detail.empty()) absl::StrAppend(&text, ": ", Quote(detail));
  return Make(absl::StatusCode::kUnavailable, text, reason, context);
}

absl::Status BadReplyStatus(absl::string_view why, const ErrorContext& context) {
  return Make(absl::StatusCode::kUnavailable,
              absl::StrCat("upstream reply was bad: ", Quote(why)), "BAD_REPLY",
              context);
}

absl::Status DeadlineExceededStatus(const absl::Status& last_error,
                                    const ErrorContext& context) {
  std::string message =
      WithSubject("deadline reached before Metrica answered", context);
  if (!last_error.ok()) {
    absl::StrAppend(&message, "; last error: ", last_error.message());
  }
  return absl::DeadlineExceededError(message);
}

bool IsRetryable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kResourceExhausted;
}

std::optional<absl::Duration> ParseRetryAfter(absl::string_view value,
                                              absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return std::nullopt;
  if (absl::ascii_isdigit(static_cast<unsigned char>(value[0]))) {
    int64_t seconds = 0;
    if (!absl::SimpleAtoi(value, &seconds) || seconds < 0) return std::nullopt;
    return std::min(absl::Seconds(seconds), kMaxRetryAfter);
  }
  // IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
  absl::Time at;
  std::string error;
  if (!absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", std::string(value),
                       absl::UTCTimeZone(), &at, &error) ||
      at == absl::InfiniteFuture() || at == absl::InfinitePast()) {
    return std::nullopt;
  }
  return std::clamp(at - now, absl::ZeroDuration(), kMaxRetryAfter);
}

absl::Status RedactSecret(const absl::Status& status, absl::string_view secret) {
  if (secret.size() < kMinRedactedChars ||
      !absl::StrContains(status.message(), secret)) {
    return status;
  }
  std::string message =
      absl::StrReplaceAll(status.message(), {{secret, "<redacted>"}});
  if (absl::StrContains(message, secret)) message.clear();  // e.g. secret "redacted"
  absl::Status out(status.code(), message);
  status.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  return out;
}

}  // namespace uploadwatch
