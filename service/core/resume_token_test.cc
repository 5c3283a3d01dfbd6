#include "service/core/resume_token.h"

#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

ResumeToken Sample() {
  ResumeToken t;
  t.instance = 0x0123456789abcdefULL;
  t.fingerprint_hash = FingerprintHash("a1b2c3d4e5f60718");
  t.counter_id = 2215573;
  t.type = 2;
  t.sequence = 42;
  return t;
}

TEST(ResumeTokenTest, RoundTripsAndIsUrlSafe) {
  const std::string text = EncodeResumeToken(Sample());
  EXPECT_EQ(text.find_first_of("+/="), std::string::npos) << text;
  absl::StatusOr<ResumeToken> back = DecodeResumeToken(text);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, Sample());
}

TEST(ResumeTokenTest, MalformedTextIsInvalidArgument) {
  for (const char* bad : {"not a token", "AAAA", "%%%%"}) {
    absl::StatusOr<ResumeToken> t = DecodeResumeToken(bad);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(t.status().message().find("resume_token"), std::string::npos);
  }
}

TEST(ResumeTokenTest, AnyFlippedCharacterIsCaughtByTheChecksum) {
  const std::string text = EncodeResumeToken(Sample());
  int caught = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    std::string bent = text;
    bent[i] = bent[i] == 'A' ? 'B' : 'A';
    if (!DecodeResumeToken(bent).ok()) ++caught;
  }
  // The last character carries only padding bits of the checksum's last
  // byte; every other change must be refused.
  EXPECT_GE(caught, static_cast<int>(text.size()) - 1);
}

}  // namespace
}  // namespace uploadwatch
