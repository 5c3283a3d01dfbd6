#include "service/metrica/json_mapping.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

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
    return v != nullptr && v->kind_case() == Value::kStringValue
               ? v->string_value()
               : std::string();
  };
  if (uploading.status() == Uploading::STATUS_UNSPECIFIED) {
    uploading.set_status_raw(raw("status"));
  }
  if (uploading.client_id_type() == Uploading::CLIENT_ID_TYPE_UNSPECIFIED) {
    uploading.set_client_id_type_raw(raw("client_id_type"));
  }
  if (uploading.type() == Uploading::TYPE_UNSPECIFIED) {
    uploading.set_type_raw(raw("type"));
  }
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

// Writes `uploading` as Metrica does: original names, enum names, and the
// raw enum strings back in their fields.
Value UploadingToValue(const Uploading& uploading) {
  json::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string text;
  json::MessageToJsonString(uploading, &text, options);
  Struct s;
  json::JsonStringToMessage(text, &s);
  auto& fields = *s.mutable_fields();
  auto restore = [&](const std::string& key, const std::string& raw,
                     bool unspecified) {
    fields.erase(key + "_raw");
    if (!raw.empty()) {
      fields[key].set_string_value(raw);
    } else if (unspecified) {
      fields.erase(key);  // Metrica never sends "*_UNSPECIFIED"
    }
  };
  restore("status", uploading.status_raw(),
          uploading.status() == Uploading::STATUS_UNSPECIFIED);
  restore("client_id_type", uploading.client_id_type_raw(),
          uploading.client_id_type() == Uploading::CLIENT_ID_TYPE_UNSPECIFIED);
  restore("type", uploading.type_raw(),
          uploading.type() == Uploading::TYPE_UNSPECIFIED);
  if (!uploading.has_create_time()) fields.erase("create_time");
  // proto3 JSON writes int64 as a string; Metrica writes a number. Keep the
  // string only where a JSON number (a double) could not hold the id exactly.
  if (uploading.id() >= -(int64_t{1} << 53) && uploading.id() <= (int64_t{1} << 53)) {
    fields["id"].set_number_value(static_cast<double>(uploading.id()));
  }
  Value out;
  *out.mutable_struct_value() = std::move(s);
  return out;
}

std::string StructToJson(const Struct& s) {
  std::string out;
  json::MessageToJsonString(s, &out);
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
  for (int i = 0; i < out->uploadings_size() && i < items.size(); ++i) {
    if (items[i].kind_case() == Value::kStructValue) {
      KeepRawEnums(items[i].struct_value(), *out->mutable_uploadings(i));
    }
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
  return StructToJson(UploadingToValue(uploading).struct_value());
}

std::string GetUploadingResponseToJson(const GetUploadingResponse& response) {
  Struct s;
  (*s.mutable_fields())["uploading"] = UploadingToValue(response.uploading());
  return StructToJson(s);
}

std::string ListUploadingsResponseToJson(
    const ListUploadingsResponse& response) {
  Struct s;
  auto* list = (*s.mutable_fields())["uploadings"].mutable_list_value();
  for (const Uploading& u : response.uploadings()) {
    *list->add_values() = UploadingToValue(u);
  }
  return StructToJson(s);
}

}  // namespace uploadwatch
