#include "service/web/grpc_web_codec.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace uploadwatch::web {

absl::StatusOr<WireMode> ParseContentType(absl::string_view content_type) {
  absl::string_view type = content_type.substr(0, content_type.find(';'));
  type = absl::StripAsciiWhitespace(type);
  const std::string lower = absl::AsciiStrToLower(type);
  if (lower == "application/grpc-web" || lower == "application/grpc-web+proto") {
    return WireMode::kBinary;
  }
  if (lower == "application/grpc-web-text" ||
      lower == "application/grpc-web-text+proto") {
    return WireMode::kText;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "content-type '", type,
      "' is not served here: use application/grpc-web(+proto) or "
      "application/grpc-web-text(+proto) (messages are protobuf; for "
      "Connect-ES, createGrpcWebTransport with useBinaryFormat: true)"));
}

absl::string_view ResponseContentType(WireMode mode) {
  return mode == WireMode::kText ? "application/grpc-web-text+proto"
                                 : "application/grpc-web+proto";
}

absl::StatusOr<std::string> ParseRequestBody(absl::string_view body) {
  if (body.empty()) {
    return absl::InvalidArgumentError(
        "gRPC-Web request body is empty: it must be one 5-byte-prefixed "
        "message frame");
  }
  if (body.size() < 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gRPC-Web request body has ", body.size(),
        " bytes, fewer than a frame's 5-byte prefix"));
  }
  const uint8_t flags = static_cast<uint8_t>(body[0]);
  const uint64_t length = (uint64_t{static_cast<uint8_t>(body[1])} << 24) |
                          (uint64_t{static_cast<uint8_t>(body[2])} << 16) |
                          (uint64_t{static_cast<uint8_t>(body[3])} << 8) |
                          uint64_t{static_cast<uint8_t>(body[4])};
  if (flags & kTrailerFrame) {
    return absl::InvalidArgumentError(
        "gRPC-Web request body starts with a trailer frame (flag 0x80); a "
        "request is one data frame");
  }
  if (flags & kCompressedFlag) {
    return absl::InvalidArgumentError(
        "gRPC-Web request frame is compressed (flag 0x01); this server takes "
        "uncompressed messages only (send no grpc-encoding)");
  }
  if (flags != kDataFrame) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gRPC-Web request frame has unknown flags 0x",
        absl::Hex(flags, absl::kZeroPad2)));
  }
  const uint64_t present = body.size() - 5;
  if (length > present) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gRPC-Web request frame says ", length, " bytes but the body has ",
        present, " after the prefix"));
  }
  if (length < present) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gRPC-Web request body has ", present - length,
        " bytes after its message frame; unary and server-streaming rpcs "
        "take exactly one request message"));
  }
  return std::string(body.substr(5));
}

std::string Frame(uint8_t flags, absl::string_view payload) {
  const uint32_t n = static_cast<uint32_t>(payload.size());
  std::string out;
  out.reserve(5 + payload.size());
  out.push_back(static_cast<char>(flags));
  out.push_back(static_cast<char>(n >> 24));
  out.push_back(static_cast<char>(n >> 16));
  out.push_back(static_cast<char>(n >> 8));
  out.push_back(static_cast<char>(n));
  out.append(payload.data(), payload.size());
  return out;
}

absl::StatusOr<std::string> DecodeTextBody(absl::string_view text) {
  std::string out;
  // Pieces end after a 4-character group that holds padding.
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = begin;
    while (end < text.size()) {
      const size_t group_end = std::min(end + 4, text.size());
      const bool padded =
          text.substr(end, group_end - end).find('=') != absl::string_view::npos;
      end = group_end;
      if (padded) break;
    }
    const absl::string_view piece = text.substr(begin, end - begin);
    for (size_t i = 0; i < piece.size(); ++i) {
      const char c = piece[i];
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '+' &&
          c != '/' && c != '=') {
        return absl::InvalidArgumentError(absl::StrCat(
            "gRPC-Web text body is not base64: byte 0x",
            absl::Hex(static_cast<uint8_t>(c), absl::kZeroPad2), " at offset ",
            begin + i));
      }
    }
    std::string decoded;
    if (!absl::Base64Unescape(piece, &decoded)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gRPC-Web text body is not valid base64 (at offset ", begin, ")"));
    }
    out += decoded;
    begin = end;
  }
  return out;
}

std::string EncodeText(absl::string_view bytes) {
  return absl::Base64Escape(bytes);
}

std::string TrailerBlock(const TrailerMap& trailers) {
  std::string out;
  for (const auto& [key, value] : trailers) {
    absl::StrAppend(&out, key, ": ", value, "\r\n");
  }
  return out;
}

std::string PercentEncode(absl::string_view message) {
  static constexpr char kHex[] = "0123456789ABCDEF";  // upper case, as gRPC
  std::string out;
  for (char c : message) {
    const uint8_t b = static_cast<uint8_t>(c);
    if (b < 0x20 || b > 0x7e || b == '%') {
      out.push_back('%');
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

TrailerMap StatusTrailers(int code, absl::string_view message,
                          absl::string_view details_bin) {
  TrailerMap trailers;
  trailers["grpc-status"] = absl::StrCat(code);
  if (!message.empty()) trailers["grpc-message"] = PercentEncode(message);
  if (!details_bin.empty()) {
    std::string b64 = absl::Base64Escape(details_bin);
    // Binary headers are sent unpadded (gRPC's HTTP/2 protocol).
    while (!b64.empty() && b64.back() == '=') b64.pop_back();
    trailers["grpc-status-details-bin"] = std::move(b64);
  }
  return trailers;
}

absl::StatusOr<absl::Duration> ParseGrpcTimeout(absl::string_view value) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "grpc-timeout '", value,
        "' is malformed: 1 to 8 digits and a unit H, M, S, m, u or n "
        "(e.g. 10S, 500m)"));
  };
  if (value.size() < 2 || value.size() > 9) return bad();
  const absl::string_view digits = value.substr(0, value.size() - 1);
  for (char c : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return bad();
  }
  int64_t n = 0;
  if (!absl::SimpleAtoi(digits, &n)) return bad();
  switch (value.back()) {
    case 'H': return absl::Hours(n);
    case 'M': return absl::Minutes(n);
    case 'S': return absl::Seconds(n);
    case 'm': return absl::Milliseconds(n);
    case 'u': return absl::Microseconds(n);
    case 'n': return absl::Nanoseconds(n);
    default: return bad();
  }
}

bool IsRpcPath(absl::string_view path) {
  if (!absl::ConsumePrefix(&path, "/")) return false;
  const std::vector<absl::string_view> parts = absl::StrSplit(path, '/');
  if (parts.size() != 2) return false;
  const auto is_identifier = [](absl::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') {
        return false;
      }
    }
    return true;
  };
  // The service's full name: dot-separated identifiers.
  for (absl::string_view segment : absl::StrSplit(parts[0], '.')) {
    if (!is_identifier(segment)) return false;
  }
  return is_identifier(parts[1]);
}

bool IsMetadataValue(absl::string_view value) {
  for (char c : value) {
    const uint8_t b = static_cast<uint8_t>(c);
    if (b < 0x20 || b > 0x7e) return false;
  }
  return true;
}

}  // namespace uploadwatch::web
