#include "service/metrica/json_mapping.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "service/metrica/metrica_json.pb.h"

namespace uploadwatch {
namespace {

using ::google::protobuf::Struct;
using ::google::protobuf::Value;
using ::metrika::offline_conversions::v1::GetUploadingResponse;
using ::metrika::offline_conversions::v1::ListUploadingsResponse;
using ::metrika::offline_conversions::v1::Uploading;
namespace json = ::google::protobuf::util;

// Metrica adds fields and enum values without notice, and some of its pages
// print enum values in lower case: accept all of that rather than fail.
json::JsonParseOptions LenientOptions() {
  json::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // also leaves unknown enum values at 0
  options.case_insensitive_enum_parsing = true;
  return options;
}

absl::Status BadJson(absl::string_view what, absl::string_view detail) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed Metrica ", what, " body: ", detail));
}

// Parses `json` into a Struct: the syntax check, and the view of the original
// strings that the typed parse may have dropped.
absl::StatusOr<Struct> ParseStruct(absl::string_view what,
                                   absl::string_view json) {
  Struct out;
  json::Status status = json::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &out);
  if (!status.ok()) {
    return BadJson(what, std::string(status.message()));
  }
  return out;
}

const Value* Field(const Struct& s, absl::string_view key) {
  auto it = s.fields().find(std::string(key));
  return it == s.fields().end() ? nullptr : &it->second;
}

// Keeps the original text of enum values the typed parse could not place.
void KeepRawEnums(const Struct& original, Uploading& uploading) {
  auto raw = [&](absl::string_view key) -> std::string {
    const Value* v = Field(original, key);
    if (v == nullptr) return std::string();
    if (v->kind_case() == Value::kNumberValue) return absl::StrCat(v->number_value());
    return v->kind_case() == Value::kStringValue ? v->string_value() : std::string();
  };
  // A number this API has no name for is as unknown as a new string.
  if (!Uploading::Status_IsValid(uploading.status())) uploading.clear_status();
  if (!Uploading::ClientIdType_IsValid(uploading.client_id_type())) uploading.clear_client_id_type();
  if (!Uploading::Type_IsValid(uploading.type())) uploading.clear_type();
  uploading.set_status_raw(
      uploading.status() == Uploading::STATUS_UNSPECIFIED ? raw("status") : "");
  uploading.set_client_id_type_raw(
      uploading.client_id_type() == Uploading::CLIENT_ID_TYPE_UNSPECIFIED
          ? raw("client_id_type") : "");
  uploading.set_type_raw(
      uploading.type() == Uploading::TYPE_UNSPECIFIED ? raw("type") : "");
}

template <typename Envelope>
absl::StatusOr<Envelope> ParseEnvelope(absl::string_view what,
                                       absl::string_view json,
                                       absl::string_view key,
                                       Value::KindCase expected_kind,
                                       Struct* original) {
  absl::StatusOr<Struct> parsed = ParseStruct(what, json);
  if (!parsed.ok()) return parsed.status();
  const Value* body = Field(*parsed, key);
  if (body == nullptr || body->kind_case() != expected_kind) {
    return BadJson(what, absl::StrCat("expected a \"", key, "\" ",
                                      expected_kind == Value::kListValue
                                          ? "array"
                                          : "object"));
  }
  Envelope out;
  json::Status status = json::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &out,
      LenientOptions());
  if (!status.ok()) {
    return BadJson(what, std::string(status.message()));
  }
  *original = std::move(*parsed);
  return out;
}

// Metrica's shape (see metrica_json.proto): original names and order,
// numeric id, enum names or the raw strings kept from Metrica.
internal::UploadingJson ToWire(const Uploading& u) {
  internal::UploadingJson out;
  constexpr int64_t kExactInDouble = int64_t{1} << 53;
  if (u.id() >= -kExactInDouble && u.id() <= kExactInDouble) {
    out.mutable_id()->set_number_value(static_cast<double>(u.id()));
  } else {
    out.mutable_id()->set_string_value(absl::StrCat(u.id()));
  }
  if (u.has_create_time()) *out.mutable_create_time() = u.create_time();
  out.set_source_quantity(u.source_quantity());
  out.set_line_quantity(u.line_quantity());
  out.set_comment(u.comment());
  // The enum's name, else the raw string Metrica sent; nothing when neither
  // (Metrica never sends "*_UNSPECIFIED").
  auto text = [](int value, const std::string& name,
                 const std::string& raw) -> std::string {
    return value != 0 ? name : raw;
  };
  if (std::string t = text(u.client_id_type(),
                           Uploading::ClientIdType_Name(u.client_id_type()),
                           u.client_id_type_raw());
      !t.empty()) {
    out.mutable_client_id_type()->set_string_value(t);
  }
  if (std::string t = text(u.status(), Uploading::Status_Name(u.status()),
                           u.status_raw());
      !t.empty()) {
    out.mutable_status()->set_string_value(t);
  }
  if (std::string t =
          text(u.type(), Uploading::Type_Name(u.type()), u.type_raw());
      !t.empty()) {
    out.mutable_type()->set_string_value(t);
  }
  out.set_goal_not_found_quantity(u.goal_not_found_quantity());
  out.set_user_not_found_quantity(u.user_not_found_quantity());
  out.set_linked_quantity(u.linked_quantity());
  out.set_static_calls_quantity(u.static_calls_quantity());
  out.set_dynamic_calls_quantity(u.dynamic_calls_quantity());
  return out;
}

std::string PrintWire(const google::protobuf::Message& message) {
  json::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  // For an empty list: `{"uploadings":[]}` as Metrica writes it. The
  // uploading's scalars all have presence, so their order stays.
  options.always_print_primitive_fields = true;
  std::string out;
  json::MessageToJsonString(message, &out, options);
  return out;
}

}  // namespace

absl::StatusOr<GetUploadingResponse> ParseUploadingBody(absl::string_view json) {
  Struct original;
  absl::StatusOr<GetUploadingResponse> out = ParseEnvelope<GetUploadingResponse>(
      "uploading", json, "uploading", Value::kStructValue, &original);
  if (!out.ok()) return out;
  KeepRawEnums(Field(original, "uploading")->struct_value(),
               *out->mutable_uploading());
  return out;
}

absl::StatusOr<ListUploadingsResponse> ParseUploadingsBody(
    absl::string_view json) {
  Struct original;
  absl::StatusOr<ListUploadingsResponse> out =
      ParseEnvelope<ListUploadingsResponse>("uploadings", json, "uploadings",
                                            Value::kListValue, &original);
  if (!out.ok()) return out;
  const auto& items = Field(original, "uploadings")->list_value().values();
  // The typed parse keeps one message per array element, in order.
  int next = 0;
  for (const Value& item : items) {
    if (item.kind_case() == Value::kNullValue) continue;  // the typed parse skips nulls
    if (next == out->uploadings_size()) break;
    if (item.kind_case() == Value::kStructValue) {
      KeepRawEnums(item.struct_value(), *out->mutable_uploadings(next));
    }
    ++next;
  }
  return out;
}

MetricaError ParseErrorBody(int http_status, absl::string_view json) {
  MetricaError error;
  error.http_code = http_status;
  absl::StatusOr<Struct> parsed = ParseStruct("error", json);
  if (!parsed.ok()) return error;
  const Value* code = Field(*parsed, "code");
  if (code != nullptr && code->kind_case() == Value::kNumberValue &&
      std::isfinite(code->number_value()) && code->number_value() >= 100 &&
      code->number_value() < 600) {
    error.http_code = static_cast<int>(code->number_value());
  }
  if (const Value* message = Field(*parsed, "message");
      message != nullptr && message->kind_case() == Value::kStringValue) {
    error.message = message->string_value();
  }
  const Value* errors = Field(*parsed, "errors");
  if (errors == nullptr || errors->kind_case() != Value::kListValue) {
    return error;
  }
  for (const Value& item : errors->list_value().values()) {
    if (item.kind_case() != Value::kStructValue) continue;
    const Value* type = Field(item.struct_value(), "error_type");
    if (type == nullptr || type->kind_case() != Value::kStringValue) continue;
    error.error_types.push_back(type->string_value());
    if (error.error_type.empty()) {
      error.error_type = type->string_value();
      const Value* message = Field(item.struct_value(), "message");
      if (message != nullptr && message->kind_case() == Value::kStringValue &&
          !message->string_value().empty()) {
        error.message = message->string_value();
      }
    }
  }
  return error;
}

std::string UploadingToJson(const Uploading& uploading) {
  return PrintWire(ToWire(uploading));
}

std::string GetUploadingResponseToJson(const GetUploadingResponse& response) {
  internal::GetUploadingJson wire;
  *wire.mutable_uploading() = ToWire(response.uploading());
  return PrintWire(wire);
}

std::string ListUploadingsResponseToJson(
    const ListUploadingsResponse& response) {
  internal::ListUploadingsJson wire;
  for (const Uploading& u : response.uploadings()) {
    *wire.add_uploadings() = ToWire(u);
  }
  return PrintWire(wire);
}

}  // namespace uploadwatch
