// ParseRetryAfter on a raw header value, as libcurl hands it over after
// "retry-after:" (leading space and CRLF included), e.g. " 120\r\n" or
// " Sun, 06 Nov 1994 08:49:37 GMT\r\n".
//
// Invariants: a result is a finite, non-negative wait; delta-seconds do not
// depend on `now` and are exact up to the parser's longest wait (if it caps);
// an HTTP-date's wait shrinks as `now` moves on (never below zero); the wait
// survives a trip through RetryInfo, and that RetryInfo is a valid
// google.protobuf.Duration (what every client's rich-error helpers decode).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "fuzz/fuzz_check.h"
#include "service/common/status_details.h"
#include "service/metrica/error_mapping.h"

namespace uploadwatch::fuzz {
namespace {

// google/protobuf/duration.proto: seconds within +-10,000 years.
constexpr int64_t kMaxDurationSeconds = 315'576'000'000;

std::string Show(std::optional<absl::Duration> d) {
  return d ? absl::FormatDuration(*d) : "nullopt";
}

void CheckRetryInfo(absl::Duration wait) {
  absl::Status status = absl::UnavailableError("x");
  SetRetryInfo(status, wait);
  FUZZ_CHECK(GetRetryDelay(status) == wait, absl::FormatDuration(wait));
  FUZZ_CHECK(wait <= absl::Seconds(kMaxDurationSeconds),
             absl::StrCat("RetryInfo with an invalid Duration: ",
                          absl::FormatDuration(wait)));
}

// The longest wait the parser gives: what it makes of the largest number.
absl::Duration Longest(absl::Time now) {
  return uploadwatch::ParseRetryAfter("9223372036854775807", now)
      .value_or(absl::InfiniteDuration());
}

}  // namespace
}  // namespace uploadwatch::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace uploadwatch::fuzz;
  const absl::string_view value = AsText(data, size);
  const absl::Time now = absl::FromUnixSeconds(1672336921);  // 2022-12-29T18:02:01Z
  const absl::Duration later = absl::Hours(1);
  const auto wait = uploadwatch::ParseRetryAfter(value, now);
  const auto wait_later = uploadwatch::ParseRetryAfter(value, now + later);
  const std::string shown = absl::StrCat("\"", absl::CHexEscape(value), "\": ",
                                         Show(wait), " then ", Show(wait_later));
  FUZZ_CHECK(wait.has_value() == wait_later.has_value(), shown);
  if (!wait.has_value()) return 0;
  FUZZ_CHECK(*wait >= absl::ZeroDuration() && *wait < absl::InfiniteDuration(),
             shown);
  const absl::Duration longest = Longest(now);
  const absl::string_view stripped = absl::StripAsciiWhitespace(value);
  int64_t seconds = 0;
  if (absl::SimpleAtoi(stripped, &seconds) &&
      absl::ascii_isdigit(static_cast<unsigned char>(stripped[0]))) {
    FUZZ_CHECK(*wait == std::min(absl::Seconds(seconds), longest) &&
                   *wait_later == *wait,
               shown);
  } else if (*wait < longest) {
    FUZZ_CHECK(*wait_later == std::max(absl::ZeroDuration(), *wait - later), shown);
  } else {
    FUZZ_CHECK(*wait_later <= *wait, shown);
  }
  CheckRetryInfo(*wait);
  return 0;
}
