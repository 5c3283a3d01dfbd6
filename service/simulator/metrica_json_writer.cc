#include "service/simulator/metrica_json_writer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace uploadwatch {
namespace {

using ::metrika::offline_conversions::v1::Uploading;

// A known value's name, else the raw text Metrica sent (kept verbatim, never
// lower-cased: it is what an unknown value looks like); empty: absent.
std::string EnumText(bool known, const std::string& name,
                     const std::string& raw, bool lower) {
  if (!known) return raw;
  return lower ? absl::AsciiStrToLower(name) : name;
}

std::string Rfc3339(const google::protobuf::Timestamp& t, bool moscow) {
  const absl::Time time =
      absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
  return moscow ? absl::FormatTime("%Y-%m-%dT%H:%M:%E*S%Ez", time,
                                   absl::FixedTimeZone(3 * 60 * 60))
                : absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", time,
                                   absl::UTCTimeZone());
}

}  // namespace

std::string JsonQuote(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppend(&out, "\\u00", absl::Hex(c, absl::kZeroPad2));
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

bool MetricaJsonWriter::Coin() {
  return vary_ && (random_() & 1) == 1;
}

std::string MetricaJsonWriter::UploadingObject(const Uploading& u) {
  const bool id_as_string = Coin();
  const bool lower = Coin();
  const bool moscow = Coin();
  const bool unknown = Coin();
  const bool shuffle = Coin();

  // "name":value pairs, in the order of Metrica's reference page, then the
  // newer fields.
  std::vector<std::string> fields;
  auto add = [&fields](absl::string_view name, const std::string& value) {
    fields.push_back(absl::StrCat("\"", name, "\":", value));
  };
  add("id", id_as_string ? JsonQuote(absl::StrCat(u.id())) : absl::StrCat(u.id()));
  if (u.has_create_time()) add("create_time", JsonQuote(Rfc3339(u.create_time(), moscow)));
  add("source_quantity", absl::StrCat(u.source_quantity()));
  add("line_quantity", absl::StrCat(u.line_quantity()));
  add("comment", JsonQuote(u.comment()));
  auto add_enum = [&](absl::string_view name, const std::string& text) {
    if (!text.empty()) add(name, JsonQuote(text));
  };
  add_enum("client_id_type",
           EnumText(u.client_id_type() != Uploading::CLIENT_ID_TYPE_UNSPECIFIED,
                    Uploading::ClientIdType_Name(u.client_id_type()),
                    u.client_id_type_raw(), lower));
  add_enum("status", EnumText(u.status() != Uploading::STATUS_UNSPECIFIED,
                              Uploading::Status_Name(u.status()),
                              u.status_raw(), lower));
  add_enum("type", EnumText(u.type() != Uploading::TYPE_UNSPECIFIED,
                            Uploading::Type_Name(u.type()), u.type_raw(),
                            lower));
  add("goal_not_found_quantity", absl::StrCat(u.goal_not_found_quantity()));
  add("user_not_found_quantity", absl::StrCat(u.user_not_found_quantity()));
  add("linked_quantity", absl::StrCat(u.linked_quantity()));
  add("static_calls_quantity", absl::StrCat(u.static_calls_quantity()));
  add("dynamic_calls_quantity", absl::StrCat(u.dynamic_calls_quantity()));
  if (unknown) {
    // Fields a newer Metrica might send: every JSON kind, nested too.
    add("source_file_name", JsonQuote("crm-export.csv"));
    add("processing", R"({"stage":3,"hints":["dedup",null,true],"ratio":0.25})");
    add("deleted", "false");
    add("expires_at", "null");
  }
  if (shuffle) std::shuffle(fields.begin(), fields.end(), random_);
  return absl::StrCat("{", absl::StrJoin(fields, ","), "}");
}

std::string MetricaJsonWriter::UploadingBody(const Uploading& uploading) {
  std::string object = UploadingObject(uploading);
  if (Coin()) return absl::StrCat(R"({"request_id":"a1b2c3","uploading":)", object, "}");
  return absl::StrCat(R"({"uploading":)", object, "}");
}

std::string MetricaJsonWriter::UploadingsBody(
    const std::vector<Uploading>& uploadings) {
  std::vector<std::string> objects;
  objects.reserve(uploadings.size());
  for (const Uploading& u : uploadings) objects.push_back(UploadingObject(u));
  const std::string list = absl::StrCat("[", absl::StrJoin(objects, ","), "]");
  if (Coin()) return absl::StrCat(R"({"uploadings":)", list, R"(,"total":)", uploadings.size(), "}");
  return absl::StrCat(R"({"uploadings":)", list, "}");
}

}  // namespace uploadwatch
