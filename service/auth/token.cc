#include "service/auth/token.h"

#include <openssl/sha.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"

namespace uploadwatch {
namespace {

std::string Fingerprint(absl::string_view token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(),
         digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), 8));
}

// A token is one visible-ASCII word; anything else in a header is a mistake
// we would rather report than forward to Metrica.
bool IsTokenText(absl::string_view t) {
  if (t.empty() || t.size() > 4096) return false;
  for (char c : t) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

}  // namespace

std::shared_ptr<const Credentials::Identity> Credentials::IdentityOf(
    absl::string_view token) {
  // Every call resolves its token: the SHA-256 (and OpenSSL's digest
  // lookup) was ~8% of a cached Get's instructions, and the copies of the
  // token and fingerprint a few allocations more. The token stays in memory
  // either way (the poller keeps it); this reference is the thread's and
  // never leaves it.
  thread_local std::shared_ptr<const Identity> last;
  if (last != nullptr && last->token == token) return last;
  last = std::make_shared<const Identity>(
      Identity{std::string(token), Fingerprint(token)});
  return last;
}

Credentials::Credentials(absl::string_view token) : id_(IdentityOf(token)) {}

absl::StatusOr<Credentials> ResolveCredentials(
    std::optional<absl::string_view> authorization,
    absl::string_view default_token) {
  if (!authorization.has_value()) {
    if (default_token.empty()) {
      return absl::UnauthenticatedError(
          "no Metrica OAuth token: send call metadata "
          "'authorization: OAuth <token>', or start the server with "
          "METRIKA_OAUTH_TOKEN or --oauth_token_file");
    }
    if (!IsTokenText(default_token)) {
      return absl::UnauthenticatedError("the server's Metrica OAuth token is malformed");
    }
    Credentials server(default_token);
    server.set_server_token(true);
    return server;
  }
  absl::string_view header = absl::StripAsciiWhitespace(*authorization);
  if (header.empty()) {
    return absl::UnauthenticatedError(
        "empty authorization metadata: send 'authorization: OAuth <token>', "
        "or no authorization at all to use the server's token");
  }
  const size_t space = header.find(' ');
  absl::string_view scheme = header.substr(0, space);
  absl::string_view token =
      space == absl::string_view::npos
          ? absl::string_view()
          : absl::StripLeadingAsciiWhitespace(header.substr(space + 1));
  if (!absl::EqualsIgnoreCase(scheme, "OAuth") &&
      !absl::EqualsIgnoreCase(scheme, "Bearer")) {
    return absl::UnauthenticatedError(
        "unsupported authorization scheme: send 'authorization: OAuth <token>' "
        "or 'Bearer <token>'");
  }
  if (!IsTokenText(token)) {
    return absl::UnauthenticatedError(
        "malformed authorization metadata: expected 'OAuth <token>' with a "
        "token of printable ASCII and no spaces");
  }
  return Credentials(token);
}

}  // namespace uploadwatch
