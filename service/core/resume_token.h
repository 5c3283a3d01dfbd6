#ifndef UPLOADWATCH_SERVICE_CORE_RESUME_TOKEN_H_
#define UPLOADWATCH_SERVICE_CORE_RESUME_TOKEN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace uploadwatch {

// What a WatchUploadings resume token says: which history it points into
// (the process instance that issued it, the caller's token fingerprint, the
// counter and type) and how far the client got in it (a change sequence
// number of that (token, counter, type)). Clients see it as opaque text.
//
// Wire form, format 1: base64url (no padding) of
//   u8 format | u64 instance | u32 fingerprint hash | i32 counter |
//   i32 type | u64 sequence | u32 checksum (FNV-1a of the bytes before it),
// little-endian. The format byte lets a later format (issue 14: sequence
// numbers shared by every replica through Redis Streams) tell its own
// tokens from these; an unknown format is well-formed but not honoured.
struct ResumeToken {
  static constexpr uint8_t kFormat = 1;
  uint8_t format = kFormat;
  uint64_t instance = 0;
  uint32_t fingerprint_hash = 0;
  int32_t counter_id = 0;
  int32_t type = 0;
  uint64_t sequence = 0;

  friend bool operator==(const ResumeToken& a, const ResumeToken& b) {
    return a.format == b.format && a.instance == b.instance &&
           a.fingerprint_hash == b.fingerprint_hash &&
           a.counter_id == b.counter_id && a.type == b.type &&
           a.sequence == b.sequence;
  }
};

std::string EncodeResumeToken(const ResumeToken& token);
// INVALID_ARGUMENT (saying what to do) unless `text` is a token this
// server's code wrote: base64url, the right length, the checksum matching.
absl::StatusOr<ResumeToken> DecodeResumeToken(absl::string_view text);
// A stable 32-bit hash of a token fingerprint, for ResumeToken.
uint32_t FingerprintHash(absl::string_view fingerprint);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_RESUME_TOKEN_H_
