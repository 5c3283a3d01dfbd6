// ParseUploadingBody on arbitrary bytes (a GET .../uploading/{id} reply).
// Invariants: a rejection follows json_mapping.h's contract; an accepted body
// keeps the proto's enum contract, and UploadingToJson re-parses to an equal
// message.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "fuzz/envelope_checks.h"
#include "fuzz/fuzz_check.h"
#include "service/metrica/json_mapping.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace uploadwatch::fuzz;
  using ::metrika::offline_conversions::v1::GetUploadingResponse;
  const absl::string_view body = AsText(data, size);
  const auto parsed = uploadwatch::ParseUploadingBody(body);
  if (!parsed.ok()) {
    CheckRejection(parsed.status(), "uploading", body);
    return 0;
  }
  CheckRawEnums(parsed->uploading());
  CheckRoundTrip(
      *parsed,
      [](const GetUploadingResponse& r) {
        return absl::StrCat("{\"uploading\":",
                            uploadwatch::UploadingToJson(r.uploading()), "}");
      },
      uploadwatch::ParseUploadingBody);
  return 0;
}
