#include "service/core/resume_token.h"

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

// How many of `text` with one character bent the decoder refuses.
int CaughtBends(const std::string& text) {
  int caught = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    std::string bent = text;
    bent[i] = bent[i] == 'A' ? 'B' : 'A';
    absl::StatusOr<ResumeToken> t = DecodeResumeToken(bent);
    if (!t.ok()) {
      EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
      ++caught;
    }
  }
  return caught;
}

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
  // The last character carries only padding bits of the checksum's last
  // byte; every other change must be refused.
  EXPECT_GE(CaughtBends(text), static_cast<int>(text.size()) - 1);
}

ResumeToken SharedSample() {
  absl::StatusOr<ResumeToken> t = SharedResumeToken(
      FingerprintHash("a1b2c3d4e5f60718"), 2215573, 2, "1764620000123-7");
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

TEST(ResumeTokenTest, SharedFormatNamesAStreamEntryAndRoundTrips) {
  const ResumeToken t = SharedSample();
  EXPECT_EQ(t.format, ResumeToken::kSharedFormat);
  EXPECT_EQ(t.stream_ms, 1764620000123ULL);
  EXPECT_EQ(t.stream_seq, 7u);
  EXPECT_EQ(StreamIdOf(t), "1764620000123-7");
  EXPECT_EQ(t.instance, 0u);
  ResumeToken with_local = t;  // and the issuer's own sequence
  with_local.instance = 0x0123456789abcdefULL;
  with_local.sequence = 42;
  absl::StatusOr<ResumeToken> both =
      DecodeResumeToken(EncodeResumeToken(with_local));
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(*both, with_local);
  const std::string text = EncodeResumeToken(t);
  EXPECT_EQ(text.find_first_of("+/="), std::string::npos) << text;
  absl::StatusOr<ResumeToken> back = DecodeResumeToken(text);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, t);
  // Never taken for a format 1 token of some process, or the other way.
  EXPECT_NE(text, EncodeResumeToken(Sample()));
  EXPECT_EQ(DecodeResumeToken(EncodeResumeToken(Sample()))->format,
            ResumeToken::kFormat);
}

TEST(ResumeTokenTest, SharedFormatKeepsWholeSixtyFourBitIds) {
  absl::StatusOr<ResumeToken> t = SharedResumeToken(
      1, -5, 0, "18446744073709551615-18446744073709551615");
  ASSERT_TRUE(t.ok()) << t.status();
  absl::StatusOr<ResumeToken> back = DecodeResumeToken(EncodeResumeToken(*t));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(StreamIdOf(*back), "18446744073709551615-18446744073709551615");
  EXPECT_EQ(back->counter_id, -5);
}

TEST(ResumeTokenTest, SharedFormatIsCheckedLikeFormatOne) {
  const std::string text = EncodeResumeToken(SharedSample());
  EXPECT_GE(CaughtBends(text), static_cast<int>(text.size()) - 1);
  // Cut short or padded: the wrong length.
  for (const std::string& bad :
       {text.substr(0, text.size() - 4), text + "AAAA"}) {
    EXPECT_EQ(DecodeResumeToken(bad).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

// The states a client holds beyond its position travel in the token; a
// token without them (written before they existed) reads as none.
TEST(ResumeTokenTest, SharedFormatCarriesHeldStates) {
  ResumeToken t = SharedSample();
  const std::string plain = EncodeResumeToken(t);
  t.held = {{11, 0xfedcba9876543210ULL}, {-3, 1}};
  const std::string text = EncodeResumeToken(t);
  std::string plain_bytes, bytes;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(plain, &plain_bytes));
  ASSERT_TRUE(absl::WebSafeBase64Unescape(text, &bytes));
  EXPECT_EQ(bytes.size(), plain_bytes.size() + 1 + 2 * 16);  // n, 2 x (id, hash)
  absl::StatusOr<ResumeToken> back = DecodeResumeToken(text);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, t);
  absl::StatusOr<ResumeToken> none = DecodeResumeToken(plain);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->held.empty());
  // At most kMaxHeld are written.
  t.held.clear();
  for (int64_t id = 1; id <= 40; ++id) t.held.emplace_back(id, id * 7);
  back = DecodeResumeToken(EncodeResumeToken(t));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->held.size(), ResumeToken::kMaxHeld);
  EXPECT_EQ(back->held.back(), (std::pair<int64_t, uint64_t>{32, 32 * 7}));
  // Checked like the rest: every bent character, a cut held state.
  EXPECT_GE(CaughtBends(text), static_cast<int>(text.size()) - 1);
  EXPECT_FALSE(DecodeResumeToken(text.substr(0, text.size() - 22)).ok());
}

TEST(ResumeTokenTest, SharedTokenNeedsAStreamId) {
  for (const char* bad : {"", "12", "-", "a-1", "1-b", "1-2-3"}) {
    EXPECT_EQ(SharedResumeToken(1, 2, 0, bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

}  // namespace
}  // namespace uploadwatch
