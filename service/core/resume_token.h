#ifndef UPLOADWATCH_SERVICE_CORE_RESUME_TOKEN_H_
#define UPLOADWATCH_SERVICE_CORE_RESUME_TOKEN_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

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
// little-endian.
//
// Format 2 (issue 14, replicas on one Redis): also an entry id of the
// group's changes stream, the same on every replica, beside the issuing
// process's own sequence (exact there):
//   u8 format | u64 instance | u32 fingerprint hash | i32 counter |
//   i32 type | u64 sequence | u64 stream id ms | u64 stream id seq |
//   [u8 n | n x (i64 uploading id | u64 content hash)] | u32 checksum.
// The bracketed part, present when n > 0: the states the client holds that
// the position does not cover yet (sent before their entries were read, or
// while Redis was unreachable), so that a catch-up elsewhere does not show
// them again.
// The format byte tells them apart; an unknown format is well-formed but
// not honoured.
struct ResumeToken {
  static constexpr uint8_t kFormat = 1;
  static constexpr uint8_t kSharedFormat = 2;
  uint8_t format = kFormat;
  uint64_t instance = 0;
  uint32_t fingerprint_hash = 0;
  int32_t counter_id = 0;
  int32_t type = 0;
  uint64_t sequence = 0;
  // Format 2: the changes stream entry id "<stream_ms>-<stream_seq>".
  uint64_t stream_ms = 0;
  uint64_t stream_seq = 0;
  // Format 2: uploadings whose state the client holds beyond the position,
  // with SharedChanges::ContentHash of that state; at most kMaxHeld.
  static constexpr size_t kMaxHeld = 32;
  std::vector<std::pair<int64_t, uint64_t>> held;

  friend bool operator==(const ResumeToken& a, const ResumeToken& b) {
    return a.format == b.format && a.instance == b.instance &&
           a.fingerprint_hash == b.fingerprint_hash &&
           a.counter_id == b.counter_id && a.type == b.type &&
           a.sequence == b.sequence && a.stream_ms == b.stream_ms &&
           a.stream_seq == b.stream_seq && a.held == b.held;
  }
};

// By token.format: kSharedFormat writes format 2, anything else format 1
// with that format byte.
std::string EncodeResumeToken(const ResumeToken& token);
// INVALID_ARGUMENT (saying what to do) unless `text` is a token this
// server's code wrote: base64url, the right length, the checksum matching.
absl::StatusOr<ResumeToken> DecodeResumeToken(absl::string_view text);
// A format 2 token at the changes stream entry `stream_id` ("<ms>-<seq>"),
// instance and sequence 0; INVALID_ARGUMENT when it is not one.
absl::StatusOr<ResumeToken> SharedResumeToken(uint32_t fingerprint_hash,
                                              int32_t counter_id, int32_t type,
                                              absl::string_view stream_id);
// "<stream_ms>-<stream_seq>" of a format 2 token.
std::string StreamIdOf(const ResumeToken& token);
// A stable 32-bit hash of a token fingerprint, for ResumeToken.
uint32_t FingerprintHash(absl::string_view fingerprint);
// A stable 64-bit hash (FNV-1a) of `bytes`: the same in every process and
// on every replica (what SharedChanges::ContentHash is).
uint64_t StableHash64(absl::string_view bytes);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_CORE_RESUME_TOKEN_H_
