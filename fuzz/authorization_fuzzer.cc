// ResolveCredentials on arbitrary call metadata and server token.
//
// Input: "<authorization metadata value>\n<server's default token>".
//
// Invariants: a failure is UNAUTHENTICATED and its message never echoes the
// header or the token in it; a success carries a token of printable ASCII
// without spaces (it goes into an HTTP header to Metrica) whose fingerprint is
// 16 hex digits and differs from the token.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_check.h"
#include "service/auth/token.h"

namespace uploadwatch::fuzz {
namespace {

// Shorter inputs can appear in any English sentence.
constexpr size_t kMinEchoCheckedChars = 8;

// The fixed text of each kind of failure (got from inputs too short to be
// checked): an input found inside it was not echoed.
bool InFixedText(absl::string_view text) {
  static const auto* const kFixed = new std::string(absl::StrCat(
      ResolveCredentials(std::nullopt, "").status().message(), "\n",
      ResolveCredentials("", "").status().message(), "\n",
      ResolveCredentials("Basic x", "").status().message(), "\n",
      ResolveCredentials("OAuth \x01", "").status().message()));
  return absl::StrContains(*kFixed, text);
}

void CheckNotEchoed(absl::string_view message, absl::string_view input) {
  input = absl::StripAsciiWhitespace(input);
  if (input.size() < kMinEchoCheckedChars || InFixedText(input)) return;
  FUZZ_CHECK(!absl::StrContains(message, input),
             absl::StrCat("echoed \"", absl::CHexEscape(input), "\""));
}

bool IsPrintableWord(absl::string_view token) {
  return !token.empty() && std::all_of(token.begin(), token.end(), [](char c) {
    return c > 0x20 && c < 0x7f;
  });
}

}  // namespace
}  // namespace uploadwatch::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace uploadwatch::fuzz;
  const Split input = SplitFirstLine(AsText(data, size));
  const absl::string_view header = input.line;
  const absl::string_view default_token = input.rest;
  const auto credentials = uploadwatch::ResolveCredentials(header, default_token);
  if (!credentials.ok()) {
    FUZZ_CHECK(credentials.status().code() == absl::StatusCode::kUnauthenticated,
               credentials.status().ToString());
    const absl::string_view message = credentials.status().message();
    CheckNotEchoed(message, header);
    const size_t space = absl::StripAsciiWhitespace(header).find(' ');
    if (space != absl::string_view::npos) {
      CheckNotEchoed(message, absl::StripAsciiWhitespace(header).substr(space));
    }
    return 0;
  }
  const std::string& token = credentials->token();
  FUZZ_CHECK(IsPrintableWord(token),
             absl::StrCat("token \"", absl::CHexEscape(token), "\""));
  const std::string& fingerprint = credentials->fingerprint();
  FUZZ_CHECK(fingerprint.size() == 16 && fingerprint != token &&
                 std::all_of(fingerprint.begin(), fingerprint.end(),
                             [](char c) { return absl::ascii_isxdigit(c); }),
             fingerprint);
  return 0;
}
