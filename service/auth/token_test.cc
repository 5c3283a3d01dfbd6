#include "service/auth/token.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ResolveCredentials, CallTokenWinsOverServerToken) {
  auto c = ResolveCredentials("OAuth call-token", "server-token");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->token(), "call-token");
}

TEST(ResolveCredentials, BearerAndAnyCaseSchemeAreAccepted) {
  EXPECT_EQ(ResolveCredentials("Bearer abc", "")->token(), "abc");
  EXPECT_EQ(ResolveCredentials("oauth abc", "")->token(), "abc");
  EXPECT_EQ(ResolveCredentials("  BEARER   abc  ", "")->token(), "abc");
}

TEST(ResolveCredentials, ServerTokenIsTheFallback) {
  EXPECT_EQ(ResolveCredentials(std::nullopt, "server-token")->token(), "server-token");
}

TEST(ResolveCredentials, AMalformedServerTokenIsRefusedToo) {
  auto c = ResolveCredentials(std::nullopt, "server token");  // found by fuzzing
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(c.status().message(), Not(HasSubstr("server token")));
}

TEST(ResolveCredentials, NoTokenAnywhereIsUnauthenticated) {
  auto c = ResolveCredentials(std::nullopt, "");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(c.status().message(), HasSubstr("authorization: OAuth <token>"));
}

TEST(ResolveCredentials, AnEmptyHeaderIsRefusedNotTheServerToken) {
  for (const char* header : {"", "   "}) {
    auto c = ResolveCredentials(header, "server-token");
    ASSERT_FALSE(c.ok()) << "'" << header << "'";
    EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(c.status().message(), HasSubstr("empty authorization"));
  }
}

TEST(ResolveCredentials, MalformedHeadersAreRejectedWithoutEchoingThem) {
  for (const char* header : {"Basic dXNlcjpwYXNz", "OAuth", "OAuth ",
                             "OAuth two words", "secret-without-scheme",
                             "OAuth t\x01oken"}) {
    auto c = ResolveCredentials(header, "server-token");
    ASSERT_FALSE(c.ok()) << header;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(c.status().message(), Not(HasSubstr("dXNlcjpwYXNz")));
    EXPECT_THAT(c.status().message(), Not(HasSubstr("secret-without-scheme")));
    EXPECT_THAT(c.status().message(), Not(HasSubstr("two words")));
  }
}

TEST(Credentials, FingerprintIsStableShortAndNotTheToken) {
  Credentials a("AQAAAAAsecret"), b("AQAAAAAsecret"), c("other");
  EXPECT_EQ(a.fingerprint(), b.fingerprint());
  EXPECT_NE(a.fingerprint(), c.fingerprint());
  EXPECT_EQ(a.fingerprint().size(), 16u);
  EXPECT_THAT(a.fingerprint(), Not(HasSubstr("secret")));
  // SHA-256("abc") starts with ba7816bf8f01cfea.
  EXPECT_EQ(Credentials("abc").fingerprint(), "ba7816bf8f01cfea");
}

}  // namespace
}  // namespace uploadwatch
