#ifndef UPLOADWATCH_SERVICE_AUTH_TOKEN_H_
#define UPLOADWATCH_SERVICE_AUTH_TOKEN_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace uploadwatch {

// A Metrica OAuth token together with its fingerprint. Everything that is
// kept, keyed, logged or counted uses the fingerprint; the token itself only
// travels to Metrica.
class Credentials {
 public:
  explicit Credentials(std::string token);

  const std::string& token() const { return token_; }
  // 16 hex digits of SHA-256(token): stable across processes, safe to show
  // in logs and metrics, and not reversible to the token.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  std::string token_;
  std::string fingerprint_;
};

// Picks the token for a call: the call's own `authorization` metadata
// (`OAuth <t>` or `Bearer <t>`, scheme case-insensitive) wins over the server's
// `default_token`. `authorization` is nullopt when the call sent none; a
// header that is sent but empty is malformed like "OAuth " (never a silent
// fallback to the server's token). UNAUTHENTICATED, with a message that says
// what to send, when there is no token at all or the header is malformed. The
// message never echoes the header.
absl::StatusOr<Credentials> ResolveCredentials(
    std::optional<absl::string_view> authorization,
    absl::string_view default_token);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_AUTH_TOKEN_H_
