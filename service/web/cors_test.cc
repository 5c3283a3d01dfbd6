#include "service/web/cors.h"

#include <map>

#include "gtest/gtest.h"

namespace uploadwatch::web {
namespace {

std::map<std::string, std::string> AsMap(const CorsPolicy::Headers& headers) {
  return {headers.begin(), headers.end()};
}

TEST(CorsPolicyTest, DefaultIsSameOriginOnly) {
  CorsPolicy policy = *CorsPolicy::Parse("");
  EXPECT_TRUE(policy.Allows("", "http://127.0.0.1:8080"));  // not a browser
  EXPECT_TRUE(policy.Allows("http://127.0.0.1:8080", "http://127.0.0.1:8080"));
  EXPECT_FALSE(policy.Allows("http://evil.example", "http://127.0.0.1:8080"));
}

TEST(CorsPolicyTest, ListedOriginsCaseInsensitively) {
  CorsPolicy policy =
      *CorsPolicy::Parse(" https://Dash.example.com , http://localhost:3000");
  EXPECT_TRUE(policy.Allows("https://dash.example.com", "http://x"));
  EXPECT_TRUE(policy.Allows("http://localhost:3000", "http://x"));
  EXPECT_FALSE(policy.Allows("http://localhost:3001", "http://x"));
  EXPECT_FALSE(policy.Allows("http://dash.example.com", "http://x"));
}

TEST(CorsPolicyTest, StarAllowsAny) {
  CorsPolicy policy = *CorsPolicy::Parse("*");
  EXPECT_TRUE(policy.Allows("http://anything.example:1234", "http://x"));
}

TEST(CorsPolicyTest, MalformedEntryIsInvalidArgument) {
  for (const char* bad : {"dash.example.com", "https://x/path", "ftp://x",
                          "https://"}) {
    absl::StatusOr<CorsPolicy> policy = CorsPolicy::Parse(bad);
    ASSERT_FALSE(policy.ok()) << bad;
    EXPECT_NE(policy.status().message().find("scheme://host[:port]"),
              std::string::npos);
  }
}

TEST(CorsPolicyTest, PreflightAllowsPostAndTheClientsHeaders) {
  auto h = AsMap(CorsPolicy::Parse("*")->PreflightHeaders("http://a.example"));
  EXPECT_EQ(h["Access-Control-Allow-Origin"], "http://a.example");
  EXPECT_EQ(h["Access-Control-Allow-Methods"], "POST, OPTIONS");
  for (const char* header : {"content-type", "x-grpc-web", "x-user-agent",
                             "grpc-timeout", "authorization",
                             "connect-protocol-version"}) {
    EXPECT_NE(h["Access-Control-Allow-Headers"].find(header), std::string::npos)
        << header;
  }
  EXPECT_EQ(h["Access-Control-Expose-Headers"],
            "grpc-status, grpc-message, grpc-status-details-bin");
  EXPECT_EQ(h["Access-Control-Max-Age"], "7200");
  EXPECT_EQ(h["Vary"], "Origin");
}

TEST(CorsPolicyTest, ResponsesExposeTheGrpcTrailers) {
  auto h = AsMap(CorsPolicy::Parse("*")->ResponseHeaders("http://a.example"));
  EXPECT_EQ(h["Access-Control-Allow-Origin"], "http://a.example");
  EXPECT_EQ(h["Access-Control-Expose-Headers"],
            "grpc-status, grpc-message, grpc-status-details-bin");
  EXPECT_EQ(h["Vary"], "Origin");
  EXPECT_EQ(AsMap(CorsPolicy::Parse("")->ResponseHeaders("")).size(), 1u);
}

}  // namespace
}  // namespace uploadwatch::web
