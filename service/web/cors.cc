#include "service/web/cors.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace uploadwatch::web {
namespace {

// Chromium caps Access-Control-Max-Age at 2 hours; more buys nothing.
constexpr char kMaxAgeSeconds[] = "7200";

// What Connect-ES and grpc-web send (the list) besides simple headers.
constexpr char kAllowHeaders[] =
    "content-type, x-grpc-web, x-user-agent, grpc-timeout, authorization, "
    "connect-protocol-version";

constexpr char kExposeHeaders[] =
    "grpc-status, grpc-message, grpc-status-details-bin";

}  // namespace

absl::StatusOr<CorsPolicy> CorsPolicy::Parse(absl::string_view allowed) {
  CorsPolicy policy;
  for (absl::string_view entry :
       absl::StrSplit(allowed, ',', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    if (entry == "*") {
      policy.any_ = true;
      continue;
    }
    const size_t scheme_end = entry.find("://");
    const bool ok = (absl::StartsWith(entry, "http://") ||
                     absl::StartsWith(entry, "https://")) &&
                    scheme_end + 3 < entry.size() &&
                    entry.find('/', scheme_end + 3) == absl::string_view::npos;
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--web_allowed_origins: '", entry,
          "' is not an origin; use scheme://host[:port] (no path), e.g. "
          "https://dash.example.com, comma-separated, or *"));
    }
    // Origins compare case-insensitively in scheme and host.
    policy.origins_.insert(absl::AsciiStrToLower(entry));
  }
  return policy;
}

bool CorsPolicy::Allows(absl::string_view origin,
                        absl::string_view self_origin) const {
  if (origin.empty() || any_) return true;
  const std::string lower = absl::AsciiStrToLower(origin);
  return lower == absl::AsciiStrToLower(self_origin) || origins_.contains(lower);
}

CorsPolicy::Headers CorsPolicy::ResponseHeaders(absl::string_view origin) const {
  Headers headers = {{"Vary", "Origin"}};
  if (origin.empty()) return headers;
  headers.emplace_back("Access-Control-Allow-Origin", std::string(origin));
  headers.emplace_back("Access-Control-Expose-Headers", kExposeHeaders);
  return headers;
}

CorsPolicy::Headers CorsPolicy::PreflightHeaders(
    absl::string_view origin) const {
  Headers headers = {{"Vary", "Origin"}};
  if (origin.empty()) return headers;
  headers.emplace_back("Access-Control-Allow-Origin", std::string(origin));
  headers.emplace_back("Access-Control-Allow-Methods", "POST, OPTIONS");
  headers.emplace_back("Access-Control-Allow-Headers", kAllowHeaders);
  headers.emplace_back("Access-Control-Expose-Headers", kExposeHeaders);
  headers.emplace_back("Access-Control-Max-Age", kMaxAgeSeconds);
  return headers;
}

}  // namespace uploadwatch::web
