#include "service/core/resume_token.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace uploadwatch {
namespace {

constexpr size_t kBodySize = 1 + 8 + 4 + 4 + 4 + 8;
constexpr size_t kSize = kBodySize + 4;
// Format 2: format 1's body and two u64 of the stream id.
constexpr size_t kSharedBodySize = kBodySize + 8 + 8;
constexpr size_t kSharedSize = kSharedBodySize + 4;
// Each held state after the count byte.
constexpr size_t kHeldSize = 8 + 8;

// FNV-1a of either width (basis and prime of that width).
template <typename T>
T Fnv1aOf(absl::string_view bytes, T basis, T prime) {
  T h = basis;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= prime;
  }
  return h;
}

uint32_t Fnv1a(absl::string_view bytes) {
  return Fnv1aOf<uint32_t>(bytes, 2166136261u, 16777619u);
}

void Put(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t Take(absl::string_view& in, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v |= static_cast<uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  }
  in.remove_prefix(bytes);
  return v;
}

absl::Status Malformed(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "resume_token is malformed (", why,
      "): pass the resume_token of a WatchUploadingsResponse unchanged, or "
      "leave it empty to start with a snapshot"));
}

}  // namespace

uint32_t FingerprintHash(absl::string_view fingerprint) {
  return Fnv1a(fingerprint);
}

uint64_t StableHash64(absl::string_view bytes) {
  return Fnv1aOf<uint64_t>(bytes, 14695981039346656037ull, 1099511628211ull);
}

std::string EncodeResumeToken(const ResumeToken& token) {
  const bool shared = token.format == ResumeToken::kSharedFormat;
  std::string bytes;
  bytes.reserve(shared ? kSharedSize : kSize);
  // Format 1's body; format 2 is the same body and the stream id.
  Put(bytes, token.format, 1);
  Put(bytes, token.instance, 8);
  Put(bytes, token.fingerprint_hash, 4);
  Put(bytes, static_cast<uint32_t>(token.counter_id), 4);
  Put(bytes, static_cast<uint32_t>(token.type), 4);
  Put(bytes, token.sequence, 8);
  if (shared) {
    Put(bytes, token.stream_ms, 8);
    Put(bytes, token.stream_seq, 8);
    const size_t n = std::min(token.held.size(), ResumeToken::kMaxHeld);
    if (n > 0) {
      Put(bytes, n, 1);
      for (size_t i = 0; i < n; ++i) {
        Put(bytes, static_cast<uint64_t>(token.held[i].first), 8);
        Put(bytes, token.held[i].second, 8);
      }
    }
  }
  Put(bytes, Fnv1a(bytes), 4);
  return absl::WebSafeBase64Escape(bytes);
}

absl::StatusOr<ResumeToken> DecodeResumeToken(absl::string_view text) {
  std::string bytes;
  if (!absl::WebSafeBase64Unescape(text, &bytes)) {
    return Malformed("not base64url");
  }
  // Format 2 with n held states: the count byte says how long it is.
  size_t held = 0;
  if (bytes.size() > kSharedSize &&
      static_cast<uint8_t>(bytes[0]) == ResumeToken::kSharedFormat) {
    held = static_cast<uint8_t>(bytes[kSharedBodySize]);
    if (held == 0 || held > ResumeToken::kMaxHeld ||
        bytes.size() != kSharedSize + 1 + held * kHeldSize) {
      return Malformed("wrong length");
    }
  }
  const bool shared =
      (bytes.size() == kSharedSize || held > 0) &&
      static_cast<uint8_t>(bytes[0]) == ResumeToken::kSharedFormat;
  if (!shared && bytes.size() != kSize) return Malformed("wrong length");
  absl::string_view in(bytes);
  const uint32_t expected = Fnv1a(in.substr(0, bytes.size() - 4));
  ResumeToken token;
  token.format = static_cast<uint8_t>(Take(in, 1));
  token.instance = Take(in, 8);
  token.fingerprint_hash = static_cast<uint32_t>(Take(in, 4));
  token.counter_id = static_cast<int32_t>(Take(in, 4));
  token.type = static_cast<int32_t>(Take(in, 4));
  token.sequence = Take(in, 8);
  if (shared) {
    token.stream_ms = Take(in, 8);
    token.stream_seq = Take(in, 8);
    if (held > 0) {
      Take(in, 1);
      for (size_t i = 0; i < held; ++i) {
        const int64_t id = static_cast<int64_t>(Take(in, 8));
        token.held.emplace_back(id, Take(in, 8));
      }
    }
  }
  if (static_cast<uint32_t>(Take(in, 4)) != expected) {
    return Malformed("checksum mismatch");
  }
  return token;
}

absl::StatusOr<ResumeToken> SharedResumeToken(uint32_t fingerprint_hash,
                                              int32_t counter_id, int32_t type,
                                              absl::string_view stream_id) {
  ResumeToken token;
  token.format = ResumeToken::kSharedFormat;
  token.fingerprint_hash = fingerprint_hash;
  token.counter_id = counter_id;
  token.type = type;
  const size_t dash = stream_id.find('-');
  if (dash == absl::string_view::npos ||
      !absl::SimpleAtoi(stream_id.substr(0, dash), &token.stream_ms) ||
      !absl::SimpleAtoi(stream_id.substr(dash + 1), &token.stream_seq)) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a stream entry id: ", stream_id));
  }
  return token;
}

std::string StreamIdOf(const ResumeToken& token) {
  return absl::StrCat(token.stream_ms, "-", token.stream_seq);
}

}  // namespace uploadwatch
