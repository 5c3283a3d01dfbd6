#ifndef UPLOADWATCH_SERVICE_WEB_GRPC_WEB_CODEC_H_
#define UPLOADWATCH_SERVICE_WEB_GRPC_WEB_CODEC_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

// The byte-level parts of the gRPC-Web protocol (grpc/grpc
// doc/PROTOCOL-WEB.md), apart from any HTTP server so they can be tested
// alone: content types, the 5-byte frames, the base64 of the -text mode, the
// trailer frame, and the gRPC header values the gateway reads and writes.
namespace uploadwatch::web {

// How a request's body and its answer are encoded.
enum class WireMode {
  kBinary,  // application/grpc-web, application/grpc-web+proto
  kText,    // application/grpc-web-text, application/grpc-web-text+proto
};

// The wire mode of a Content-Type value (parameters such as "; charset" are
// ignored). INVALID_ARGUMENT, saying what is accepted, for anything else,
// including grpc-web+json (this server speaks protobuf only).
absl::StatusOr<WireMode> ParseContentType(absl::string_view content_type);

// The Content-Type of an answer in `mode`.
absl::string_view ResponseContentType(WireMode mode);

// Frame flags (PROTOCOL-WEB.md): bit 0 compressed, bit 7 trailers.
inline constexpr uint8_t kDataFrame = 0x00;
inline constexpr uint8_t kCompressedFlag = 0x01;
inline constexpr uint8_t kTrailerFrame = 0x80;

// The one request message of a gRPC-Web request body (after base64 decoding
// in text mode). Unary and server-streaming rpcs take exactly one message, so
// the body must be exactly one uncompressed data frame. The length prefix is
// checked against the bytes present before anything is allocated, so a huge
// prefix costs nothing. INVALID_ARGUMENT naming the defect otherwise.
absl::StatusOr<std::string> ParseRequestBody(absl::string_view body);

// One 5-byte-prefixed frame: flag byte, big-endian length, payload.
std::string Frame(uint8_t flags, absl::string_view payload);

// Decodes a -text body: standard base64, padded or not, possibly several
// padded pieces back to back (clients may encode each write on its own).
// INVALID_ARGUMENT on any other byte.
absl::StatusOr<std::string> DecodeTextBody(absl::string_view text);

// Standard, padded base64 of one piece of a -text answer (each frame is
// encoded on its own, so it can be flushed as soon as it exists).
std::string EncodeText(absl::string_view bytes);

// The trailer block: "name: value\r\n" lines. Keys must be lower case.
// (std::map: a stable order, grpc-* first among usual keys.)
using TrailerMap = std::map<std::string, std::string>;
std::string TrailerBlock(const TrailerMap& trailers);

// The gRPC trailers of a finished call: grpc-status, grpc-message
// (percent-encoded as in gRPC's HTTP/2 protocol) and, when present,
// grpc-status-details-bin (unpadded base64 of a google.rpc.Status).
TrailerMap StatusTrailers(int code, absl::string_view message,
                          absl::string_view details_bin);

// gRPC's percent-encoding of grpc-message: bytes outside 0x20..0x7E and '%'
// become %XX.
std::string PercentEncode(absl::string_view message);

// A `grpc-timeout` value: 1 to 8 ASCII digits and a unit (H, M, S, m, u, n).
// INVALID_ARGUMENT, with the expected form, otherwise.
absl::StatusOr<absl::Duration> ParseGrpcTimeout(absl::string_view value);

// Whether `path` has the form "/package.Service/Method" (letters, digits, '_'
// and '.'), i.e. may be forwarded as a gRPC method name.
bool IsRpcPath(absl::string_view path);

// Whether a header value may be forwarded as ASCII gRPC metadata (printable
// ASCII, as gRPC requires; anything else would fail the call later with a
// less helpful message).
bool IsMetadataValue(absl::string_view value);

}  // namespace uploadwatch::web

#endif  // UPLOADWATCH_SERVICE_WEB_GRPC_WEB_CODEC_H_
