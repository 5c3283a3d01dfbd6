#ifndef UPLOADWATCH_FUZZ_ENVELOPE_CHECKS_H_
#define UPLOADWATCH_FUZZ_ENVELOPE_CHECKS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_check.h"
#include "google/protobuf/util/message_differencer.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"

namespace uploadwatch::fuzz {

// protobuf's JSON errors quote ~40 bytes around the error position, and a
// value they reject; with the fixed text, a shorter body can be found in a
// message without having been echoed (the fuzzer builds such bodies).
inline constexpr size_t kMinEchoCheckedBytes = 256;

// The rejection contract of json_mapping.h: INVALID_ARGUMENT, saying which
// envelope was malformed, and never quoting the whole body.
inline void CheckRejection(const absl::Status& status, absl::string_view what,
                           absl::string_view body) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument,
             status.ToString());
  FUZZ_CHECK(absl::StartsWith(status.message(),
                              absl::StrCat("malformed Metrica ", what, " body")),
             status.ToString());
  FUZZ_CHECK(body.size() < kMinEchoCheckedBytes ||
                 !absl::StrContains(status.message(), body),
             status.ToString());
}

// The proto's contract for enums: a value this API does not know is
// UNSPECIFIED (with Metrica's text in `*_raw`), and `*_raw` is set only then.
inline void CheckRawEnums(
    const metrika::offline_conversions::v1::Uploading& u) {
  using ::metrika::offline_conversions::v1::Uploading;
  FUZZ_CHECK(Uploading::Status_IsValid(u.status()) &&
                 Uploading::ClientIdType_IsValid(u.client_id_type()) &&
                 Uploading::Type_IsValid(u.type()),
             u.DebugString());
  FUZZ_CHECK(u.status_raw().empty() || u.status() == Uploading::STATUS_UNSPECIFIED,
             u.DebugString());
  FUZZ_CHECK(u.client_id_type_raw().empty() ||
                 u.client_id_type() == Uploading::CLIENT_ID_TYPE_UNSPECIFIED,
             u.DebugString());
  FUZZ_CHECK(u.type_raw().empty() || u.type() == Uploading::TYPE_UNSPECIFIED,
             u.DebugString());
}

// A parsed envelope that `to_json` writes and `parse` reads back is the same
// message: what the simulator and the CLI's --json output rely on.
template <typename Envelope, typename ToJson, typename Parse>
void CheckRoundTrip(const Envelope& parsed, ToJson to_json, Parse parse) {
  const std::string json = to_json(parsed);
  const auto again = parse(json);
  FUZZ_CHECK(again.ok(), absl::StrCat(again.status().ToString(), "\nfrom: ", json));
  FUZZ_CHECK(google::protobuf::util::MessageDifferencer::Equals(*again, parsed),
             absl::StrCat("parsed:\n", parsed.DebugString(), "re-serialized: ",
                          json, "\nre-parsed:\n", again->DebugString()));
}

}  // namespace uploadwatch::fuzz

#endif  // UPLOADWATCH_FUZZ_ENVELOPE_CHECKS_H_
