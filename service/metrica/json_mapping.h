#ifndef UPLOADWATCH_SERVICE_METRICA_JSON_MAPPING_H_
#define UPLOADWATCH_SERVICE_METRICA_JSON_MAPPING_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"

namespace uploadwatch {

// Metrica JSON bodies <-> the API's protobuf messages, via protobuf's json_util.
//
// Parsing is lenient where Metrica evolves: unknown fields are ignored, enum
// strings match case-insensitively, and an enum string this API does not know
// leaves the enum UNSPECIFIED with the original text in `*_raw`. Parsing is
// strict about syntax: malformed or truncated JSON, or a body without the
// envelope's key, is INVALID_ARGUMENT with a message saying what was wrong
// (never the body itself, which may be huge).

// `{"uploading": {...}}` (GET .../uploading/{id}).
absl::StatusOr<metrika::offline_conversions::v1::GetUploadingResponse>
ParseUploadingBody(absl::string_view json);

// `{"uploadings": [...]}` (GET .../uploadings).
absl::StatusOr<metrika::offline_conversions::v1::ListUploadingsResponse>
ParseUploadingsBody(absl::string_view json);

// Metrica's error body:
// {"errors":[{"error_type":"...","message":"...","location":"..."}],"code":N,"message":"..."}
struct MetricaError {
  int http_code = 0;       // `code`, or the HTTP status when the body lacks it
  std::string error_type;  // first error's error_type, e.g. "access_denied"
  std::string message;     // first error's message, else the top-level one
  // All error_types in the body, in order (a body may list several).
  std::vector<std::string> error_types;
};

// Never fails: a body that is not Metrica's error JSON gives a MetricaError
// with only `http_code` (= http_status) set.
MetricaError ParseErrorBody(int http_status, absl::string_view json);

// Serializes as Metrica does (original field names, enum names, RFC 3339
// times); a `*_raw` value is written back into its field. For the simulator
// and for the CLI's --json output.
std::string UploadingToJson(
    const metrika::offline_conversions::v1::Uploading& uploading);
std::string GetUploadingResponseToJson(
    const metrika::offline_conversions::v1::GetUploadingResponse& response);
std::string ListUploadingsResponseToJson(
    const metrika::offline_conversions::v1::ListUploadingsResponse& response);

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICA_JSON_MAPPING_H_
