#include "service/web/grpc_web_codec.h"

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace uploadwatch::web {
namespace {

TEST(ContentTypeTest, AcceptsTheFourGrpcWebTypes) {
  EXPECT_EQ(*ParseContentType("application/grpc-web"), WireMode::kBinary);
  EXPECT_EQ(*ParseContentType("application/grpc-web+proto"), WireMode::kBinary);
  EXPECT_EQ(*ParseContentType("Application/GRPC-Web+proto; charset=utf-8"),
            WireMode::kBinary);
  EXPECT_EQ(*ParseContentType("application/grpc-web-text"), WireMode::kText);
  EXPECT_EQ(*ParseContentType("application/grpc-web-text+proto"),
            WireMode::kText);
}

TEST(ContentTypeTest, RefusesOthersSayingWhatWorks) {
  for (const char* type : {"application/grpc-web+json", "application/json",
                           "application/grpc", "text/plain", ""}) {
    absl::StatusOr<WireMode> mode = ParseContentType(type);
    ASSERT_FALSE(mode.ok()) << type;
    EXPECT_EQ(mode.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(mode.status().message().find("application/grpc-web(+proto)"),
              absl::string_view::npos);
  }
}

TEST(FrameTest, PrefixIsFlagAndBigEndianLength) {
  const std::string frame = Frame(kTrailerFrame, std::string(258, 'x'));
  ASSERT_EQ(frame.size(), 5u + 258);
  EXPECT_EQ(static_cast<uint8_t>(frame[0]), 0x80);
  EXPECT_EQ(frame.substr(1, 4), std::string("\0\0\x01\x02", 4));
}

TEST(RequestBodyTest, OneDataFrameGivesItsMessage) {
  EXPECT_EQ(*ParseRequestBody(Frame(kDataFrame, "abc")), "abc");
  EXPECT_EQ(*ParseRequestBody(Frame(kDataFrame, "")), "");
}

TEST(RequestBodyTest, DefectsAreInvalidArgumentNamingThem) {
  struct Case {
    std::string body;
    const char* says;
  } cases[] = {
      {"", "empty"},
      {std::string("\0\0\0", 3), "fewer than a frame's 5-byte prefix"},
      {Frame(kDataFrame, "abc").substr(0, 7), "says 3 bytes but the body has 2"},
      {Frame(kDataFrame, "abc") + "z", "1 bytes after its message frame"},
      {Frame(kDataFrame, "a") + Frame(kDataFrame, "b"), "exactly one request"},
      {Frame(kCompressedFlag, "abc"), "compressed"},
      {Frame(kTrailerFrame, "grpc-status: 0\r\n"), "trailer frame"},
      {Frame(0x02, "abc"), "unknown flags 0x02"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> message = ParseRequestBody(c.body);
    ASSERT_FALSE(message.ok()) << c.says;
    EXPECT_EQ(message.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(message.status().message().find(c.says), absl::string_view::npos)
        << message.status().message();
  }
}

TEST(RequestBodyTest, HugeLengthPrefixIsRefusedWithoutAllocating) {
  // 4 GiB - 1 announced, 3 bytes present.
  const std::string body = std::string("\0\xff\xff\xff\xff", 5) + "abc";
  absl::StatusOr<std::string> message = ParseRequestBody(body);
  ASSERT_FALSE(message.ok());
  EXPECT_NE(message.status().message().find("says 4294967295 bytes"),
            absl::string_view::npos);
}

TEST(TextTest, DecodesPaddedUnpaddedAndConcatenatedPieces) {
  EXPECT_EQ(*DecodeTextBody(absl::Base64Escape("hello")), "hello");
  EXPECT_EQ(*DecodeTextBody("aGVsbG8"), "hello");  // unpadded
  EXPECT_EQ(*DecodeTextBody(absl::Base64Escape("ab") + absl::Base64Escape("cde") +
                            absl::Base64Escape("f")),
            "abcdef");
  EXPECT_EQ(*DecodeTextBody(""), "");
}

TEST(TextTest, RefusesWhatIsNotBase64) {
  for (const char* text : {"aGVs*G8=", "aGVsbG8=\n", "a", "-_-_"}) {
    absl::StatusOr<std::string> bytes = DecodeTextBody(text);
    ASSERT_FALSE(bytes.ok()) << text;
    EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(bytes.status().message().find("base64"), absl::string_view::npos);
  }
}

TEST(TextTest, EncodeRoundTrips) {
  const std::string frame = Frame(kDataFrame, std::string("\0\x01\xfe", 3));
  EXPECT_EQ(*DecodeTextBody(EncodeText(frame) + EncodeText(frame)),
            frame + frame);
}

TEST(TrailersTest, StatusMessageAndDetails) {
  TrailerMap t = StatusTrailers(5, "no such uploading: 100%\n", "\x08\x05");
  EXPECT_EQ(t["grpc-status"], "5");
  EXPECT_EQ(t["grpc-message"], "no such uploading: 100%25%0A");
  EXPECT_EQ(t["grpc-status-details-bin"], "CAU");  // unpadded base64
  EXPECT_EQ(TrailerBlock(t),
            "grpc-message: no such uploading: 100%25%0A\r\n"
            "grpc-status: 5\r\n"
            "grpc-status-details-bin: CAU\r\n");
}

TEST(TrailersTest, OkHasOnlyTheStatus) {
  EXPECT_EQ(TrailerBlock(StatusTrailers(0, "", "")), "grpc-status: 0\r\n");
}

TEST(PercentEncodeTest, Utf8AndControlBytes) {
  EXPECT_EQ(PercentEncode("caf\xc3\xa9\t!"), "caf%C3%A9%09!");
}

TEST(GrpcTimeoutTest, EveryUnit) {
  EXPECT_EQ(*ParseGrpcTimeout("2H"), absl::Hours(2));
  EXPECT_EQ(*ParseGrpcTimeout("3M"), absl::Minutes(3));
  EXPECT_EQ(*ParseGrpcTimeout("10S"), absl::Seconds(10));
  EXPECT_EQ(*ParseGrpcTimeout("500m"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseGrpcTimeout("7u"), absl::Microseconds(7));
  EXPECT_EQ(*ParseGrpcTimeout("99999999n"), absl::Nanoseconds(99999999));
}

TEST(GrpcTimeoutTest, MalformedIsInvalidArgument) {
  for (const char* v : {"", "S", "10", "10s", "-1S", "123456789S", "1.5S",
                        " 1S"}) {
    absl::StatusOr<absl::Duration> d = ParseGrpcTimeout(v);
    ASSERT_FALSE(d.ok()) << v;
    EXPECT_NE(d.status().message().find("1 to 8 digits"),
              absl::string_view::npos);
  }
}

TEST(RpcPathTest, ServiceSlashMethod) {
  EXPECT_TRUE(IsRpcPath("/metrika.offline_conversions.v1.UploadingService/GetUploading"));
  EXPECT_TRUE(IsRpcPath("/S/M"));
  for (const char* p : {"", "/", "//M", "/S/", "/S", "/S/M/x", "S/M",
                        "/S/M.x", "/S/M?x=1", "/a b/M", "/../etc", "/.S/M", "/S./M"}) {
    EXPECT_FALSE(IsRpcPath(p)) << p;
  }
}

TEST(MetadataValueTest, PrintableAsciiOnly) {
  EXPECT_TRUE(IsMetadataValue("OAuth AQAAAA-x_y"));
  EXPECT_FALSE(IsMetadataValue("OAuth \x01"));
  EXPECT_FALSE(IsMetadataValue("OAuth caf\xc3\xa9"));
}

}  // namespace
}  // namespace uploadwatch::web
