#ifndef UPLOADWATCH_SERVICE_METRICA_ERROR_MAPPING_H_
#define UPLOADWATCH_SERVICE_METRICA_ERROR_MAPPING_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace uploadwatch {

// Metrica's answers and transport failures -> absl::Status, per the error
// table of the README (issue 3). Every status this file makes has a message
// naming what was asked, and all but the deadline one carry a
// google.rpc.ErrorInfo {reason, domain = the API host}; a RetryInfo is
// attached when the upstream said how long to wait. Pure functions: no I/O.

// What a failed attempt was about, for the status message and ErrorInfo.
struct ErrorContext {
  absl::string_view domain;  // the API host, e.g. "api-metrika.yandex.net"
  absl::string_view what;    // what was asked, e.g. "counter 5, uploading 12"
  int attempts = 1;          // attempts made so far; named in the message when > 1
};

// Metrica answered with a non-2xx HTTP status and `body` (its error JSON, or
// anything else). `retry_after` is the parsed Retry-After header, if any.
//   400 -> INVALID_ARGUMENT; 401, 403 invalid_token -> UNAUTHENTICATED;
//   other 403 -> PERMISSION_DENIED; 404 -> NOT_FOUND; 409 -> ABORTED;
//   429, 420 or a quota_* error_type in the body (any status) ->
//   RESOURCE_EXHAUSTED; 5xx -> UNAVAILABLE; anything else (1xx, 3xx: redirects
//   are not followed, other 4xx) -> UNKNOWN.
// ErrorInfo.reason is the body's error_type upper-cased, else "HTTP_<status>".
absl::Status HttpErrorToStatus(int http_status, absl::string_view body,
                               std::optional<absl::Duration> retry_after,
                               const ErrorContext& context);

// Why a transfer failed below HTTP. The fetcher classifies its transport's
// error codes into these; this file never sees libcurl.
enum class TransportFailure {
  kResolve,         // DNS failure
  kConnect,         // connection refused or unreachable
  kConnectionLost,  // reset, or closed before a complete reply
  kTls,             // handshake or certificate failure
  kStalled,         // connect timeout or the low-speed limit
  kTruncated,       // fewer body bytes than announced
  kMalformed,       // not parsable as HTTP, or an undecodable content encoding
  kTooLarge,        // the reply exceeded the response-size cap
  kOther,
};

// All UNAVAILABLE. kTruncated, kMalformed and kTooLarge say "upstream reply
// was bad", as BadReplyStatus does. `detail` (the transport's own text) is appended.
absl::Status TransportFailureToStatus(TransportFailure failure,
                                      absl::string_view detail,
                                      const ErrorContext& context);

// A 2xx reply whose body is not what Metrica sends (malformed, truncated or
// shaped wrong): UNAVAILABLE, "upstream reply was bad: <why>", as a 502 would be.
absl::Status BadReplyStatus(absl::string_view why, const ErrorContext& context);

// The caller's deadline passed. `last_error`, if not OK, is what the last
// attempt got and is quoted.
absl::Status DeadlineExceededStatus(const absl::Status& last_error,
                                    const ErrorContext& context);

// Whether another attempt may help: UNAVAILABLE and RESOURCE_EXHAUSTED.
bool IsRetryable(const absl::Status& status);

// An HTTP Retry-After value: delta-seconds or an HTTP-date (RFC 9110 10.2.3),
// as a wait from `now` (a date in the past gives zero). nullopt if unparsable.
std::optional<absl::Duration> ParseRetryAfter(absl::string_view value,
                                              absl::Time now);

// `status` with every occurrence of `secret` in its message replaced by
// "<redacted>"; code and payloads kept. The fetcher passes every status through
// this with the caller's token before handing it out, whatever Metrica echoed.
absl::Status RedactSecret(const absl::Status& status, absl::string_view secret);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICA_ERROR_MAPPING_H_
