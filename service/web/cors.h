#ifndef UPLOADWATCH_SERVICE_WEB_CORS_H_
#define UPLOADWATCH_SERVICE_WEB_CORS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace uploadwatch::web {

// Which browser origins may call the gRPC-Web listener, and the CORS headers
// that say so. Immutable, so thread-safe.
class CorsPolicy {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  // `allowed` is --web_allowed_origins: "" (same origin only), "*" (any), or
  // a comma-separated list of origins such as "https://dash.example.com".
  // INVALID_ARGUMENT for an entry that is not scheme://host[:port].
  static absl::StatusOr<CorsPolicy> Parse(absl::string_view allowed);

  // Whether a request with this Origin header may be served. No Origin
  // (curl, Node, grpc tools: not a browser) is always allowed; an origin
  // equal to `self_origin` (scheme://Host of the request) too.
  bool Allows(absl::string_view origin, absl::string_view self_origin) const;

  // Headers for a served (non-preflight) answer to a request from an allowed
  // `origin` ("" when the request had none: then only Vary).
  Headers ResponseHeaders(absl::string_view origin) const;

  // Headers for the answer to an allowed preflight (OPTIONS) request.
  Headers PreflightHeaders(absl::string_view origin) const;

 private:
  bool any_ = false;
  absl::flat_hash_set<std::string> origins_;
};

}  // namespace uploadwatch::web

#endif  // UPLOADWATCH_SERVICE_WEB_CORS_H_
