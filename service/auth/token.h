#ifndef UPLOADWATCH_SERVICE_AUTH_TOKEN_H_
#define UPLOADWATCH_SERVICE_AUTH_TOKEN_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace uploadwatch {

// A Metrica OAuth token together with its fingerprint. Everything that is
// kept, keyed, logged or counted uses the fingerprint; the token itself only
// travels to Metrica. Cheap to copy: the token and its fingerprint are
// shared, immutable, between copies.
class Credentials {
 public:
  explicit Credentials(absl::string_view token);

  const std::string& token() const { return id_->token; }
  // 16 hex digits of SHA-256(token): stable across processes, safe to show
  // in logs and metrics, and not reversible to the token.
  const std::string& fingerprint() const { return id_->fingerprint; }

  // True when the call brought no token and uses the server's own (set by
  // ResolveCredentials): such calls share that token's budget and are
  // admitted per caller (core/caller_admission.h).
  bool server_token() const { return server_token_; }
  void set_server_token(bool v) { server_token_ = v; }
  // Who is calling (a certificate subject, a trusted proxy's header or the
  // peer IP, set by the gRPC layer's request checks): the key of a caller's
  // fair share of the server token. Empty when unknown.
  const std::string& caller() const { return caller_; }
  void set_caller(std::string caller) { caller_ = std::move(caller); }

 private:
  struct Identity {
    std::string token;
    std::string fingerprint;
  };
  // Of the token a thread saw last (most calls a thread serves bring the
  // same token: the server's own, or one client's), else a new one.
  static std::shared_ptr<const Identity> IdentityOf(absl::string_view token);

  std::shared_ptr<const Identity> id_;  // never null
  bool server_token_ = false;
  std::string caller_;
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
