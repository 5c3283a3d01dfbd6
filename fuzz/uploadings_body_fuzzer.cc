// ParseUploadingsBody on arbitrary bytes (a GET .../uploadings reply).
// Invariants: a rejection follows json_mapping.h's contract; an accepted body
// has one uploading per array element (nulls may be skipped), each element's
// raw enum strings land on that element's uploading, and
// ListUploadingsResponseToJson re-parses to an equal message.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fuzz/envelope_checks.h"
#include "fuzz/fuzz_check.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "service/metrica/json_mapping.h"

namespace uploadwatch::fuzz {
namespace {

using ::google::protobuf::Struct;
using ::google::protobuf::Value;
using ::metrika::offline_conversions::v1::ListUploadingsResponse;
using ::metrika::offline_conversions::v1::Uploading;

// A raw value on uploading `u` must be what its own element sent: that
// string, or a number (whose text a parser may format its own way).
void CheckRawFrom(const Value& element, const std::string& key,
                  const std::string& raw, const Uploading& u) {
  if (raw.empty()) return;
  const auto& fields = element.struct_value().fields();
  const auto it = fields.find(key);
  FUZZ_CHECK(element.kind_case() == Value::kStructValue && it != fields.end() &&
                 (it->second.kind_case() == Value::kNumberValue ||
                  it->second.string_value() == raw),
             absl::StrCat(key, "_raw \"", raw, "\" is not this element's:\n",
                          u.DebugString()));
}

void CheckElements(absl::string_view body, const ListUploadingsResponse& list) {
  Struct original;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(body.data(), body.size()), &original);
  FUZZ_CHECK(status.ok(), "accepted a body that is not a JSON object");
  std::vector<Value> items;
  for (const Value& item : original.fields().at("uploadings").list_value().values()) {
    if (item.kind_case() != Value::kNullValue) items.push_back(item);
  }
  FUZZ_CHECK(items.size() == list.uploadings_size(),
             absl::StrCat(items.size(), " elements besides nulls, ",
                          list.uploadings_size(), " uploadings"));
  for (int i = 0; i < items.size(); ++i) {
    const Uploading& u = list.uploadings(i);
    CheckRawEnums(u);
    CheckRawFrom(items[i], "status", u.status_raw(), u);
    CheckRawFrom(items[i], "client_id_type", u.client_id_type_raw(), u);
    CheckRawFrom(items[i], "type", u.type_raw(), u);
  }
}

}  // namespace
}  // namespace uploadwatch::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace uploadwatch::fuzz;
  const absl::string_view body = AsText(data, size);
  const auto parsed = uploadwatch::ParseUploadingsBody(body);
  if (!parsed.ok()) {
    CheckRejection(parsed.status(), "uploadings", body);
    return 0;
  }
  CheckElements(body, *parsed);
  CheckRoundTrip(*parsed, uploadwatch::ListUploadingsResponseToJson,
                 uploadwatch::ParseUploadingsBody);
  return 0;
}
