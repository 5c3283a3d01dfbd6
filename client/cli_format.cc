#include "client/cli_format.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "service/common/status_details.h"
#include "service/metrica/json_mapping.h"

namespace uploadwatch {
namespace {

namespace v1 = ::metrika::offline_conversions::v1;
using ::google::protobuf::util::TimeUtil;

// An enum field as text: its name, else what Metrica sent, else "-".
std::string EnumText(int value, const std::string& name, const std::string& raw) {
  if (value != 0) return name;
  return raw.empty() ? "-" : raw;
}

std::string StatusText(const v1::Uploading& u) {
  return EnumText(u.status(), v1::Uploading::Status_Name(u.status()),
                  u.status_raw());
}
std::string TypeText(const v1::Uploading& u) {
  return EnumText(u.type(), v1::Uploading::Type_Name(u.type()), u.type_raw());
}
std::string ClientIdTypeText(const v1::Uploading& u) {
  return EnumText(u.client_id_type(),
                  v1::Uploading::ClientIdType_Name(u.client_id_type()),
                  u.client_id_type_raw());
}

std::string TimeText(const v1::Uploading& u) {
  return u.has_create_time() ? TimeUtil::ToString(u.create_time()) : "-";
}

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// Free text on one line: control characters become spaces. Bytes >= 0x80
// are kept, so UTF-8 (Metrica comments are often Cyrillic) passes through.
std::string SingleLine(absl::string_view text) {
  std::string out(text);
  for (char& c : out) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) c = ' ';
  }
  return out;
}

// The quantity fields: proto name (for `get`), short name (for `watch`;
// null: not on the timeline).
struct Quantity {
  const char* field;
  const char* short_name;
  int32_t (v1::Uploading::*value)() const;
  bool calls_only;  // Metrica sends it for CALLS uploadings only
};
constexpr Quantity kQuantities[] = {
    {"source_quantity", nullptr, &v1::Uploading::source_quantity, false},
    {"line_quantity", "lines", &v1::Uploading::line_quantity, false},
    {"linked_quantity", "linked", &v1::Uploading::linked_quantity, false},
    {"user_not_found_quantity", "user_not_found",
     &v1::Uploading::user_not_found_quantity, false},
    {"goal_not_found_quantity", "goal_not_found",
     &v1::Uploading::goal_not_found_quantity, false},
    {"static_calls_quantity", "static_calls",
     &v1::Uploading::static_calls_quantity, true},
    {"dynamic_calls_quantity", "dynamic_calls",
     &v1::Uploading::dynamic_calls_quantity, true},
};

bool Shown(const Quantity& q, const v1::Uploading& u) {
  return !q.calls_only || u.type() == v1::Uploading::CALLS || (u.*q.value)() != 0;
}

}  // namespace

std::string FormatUploading(const v1::Uploading& u) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"id", absl::StrCat(u.id())},
      {"status", StatusText(u)},
      {"type", TypeText(u)},
      {"client_id_type", ClientIdTypeText(u)},
      {"create_time", TimeText(u)},
  };
  for (const Quantity& q : kQuantities) {
    if (Shown(q, u)) fields.emplace_back(q.field, absl::StrCat((u.*q.value)()));
  }
  fields.emplace_back("comment", SingleLine(u.comment()));

  size_t width = 0;
  for (const auto& [name, value] : fields) width = std::max(width, name.size());
  std::string out;
  for (const auto& [name, value] : fields) {
    absl::StrAppendFormat(&out, "%-*s %s\n", width + 1, name + ":", value);
  }
  return out;
}

std::string FormatUploadingTable(const std::vector<v1::Uploading>& uploadings) {
  using Row = std::vector<std::string>;
  std::vector<Row> rows = {
      {"ID", "STATUS", "TYPE", "CREATED", "LINES", "LINKED", "COMMENT"}};
  for (const v1::Uploading& u : uploadings) {
    rows.push_back({absl::StrCat(u.id()), StatusText(u), TypeText(u),
                    TimeText(u), absl::StrCat(u.line_quantity()),
                    absl::StrCat(u.linked_quantity()), SingleLine(u.comment())});
  }
  // Numbers align right. The last column is free text: never padded, so
  // multi-byte characters cannot misalign anything.
  constexpr bool kRightAligned[] = {true, false, false, false, true, true, false};
  const size_t columns = rows.front().size();
  std::vector<size_t> widths(columns, 0);
  for (const Row& row : rows) {
    for (size_t i = 0; i < columns; ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const Row& row : rows) {
    for (size_t i = 0; i + 1 < columns; ++i) {
      absl::StrAppendFormat(&out, kRightAligned[i] ? "%*s  " : "%-*s  ",
                            widths[i], row[i]);
    }
    absl::StrAppend(&out, row.back(), "\n");
  }
  return out;
}

std::string WatchResponseToJsonLine(const v1::WatchUploadingResponse& response) {
  v1::WatchUploadingResponse envelope = response;
  envelope.clear_uploading();
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string rest;
  google::protobuf::util::MessageToJsonString(envelope, &rest, options);
  // `rest` is `{"version":...}`, never `{}` with the option above: the
  // uploading goes in as its first member.
  return absl::StrCat("{\"uploading\":", UploadingToJson(response.uploading()),
                      ",", absl::string_view(rest).substr(1));
}

std::string CounterWatchResponseToJsonLine(
    const v1::WatchUploadingsResponse& response) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::vector<std::string> events;
  for (const v1::UploadingEvent& event : response.events()) {
    v1::UploadingEvent rest = event;
    rest.clear_uploading();
    std::string json;
    google::protobuf::util::MessageToJsonString(rest, &json, options);
    // `json` is `{"type":...}`, never `{}` with the option above.
    events.push_back(absl::StrCat("{\"uploading\":",
                                  UploadingToJson(event.uploading()), ",",
                                  absl::string_view(json).substr(1)));
  }
  v1::WatchUploadingsResponse rest = response;
  rest.clear_events();
  std::string json;
  google::protobuf::util::MessageToJsonString(rest, &json, options);
  // `json` is `{"events":[],"synced":...}` with the option above: the events
  // go in place of its empty list.
  constexpr absl::string_view kNoEvents = "{\"events\":[],";
  absl::string_view tail(json);
  if (absl::StartsWith(tail, kNoEvents)) {
    tail.remove_prefix(kNoEvents.size());
  } else {
    tail.remove_prefix(1);
  }
  return absl::StrCat("{\"events\":[", absl::StrJoin(events, ","), "],", tail);
}

CounterWatchPrinter::CounterWatchPrinter(Mode mode, int32_t counter_id,
                                         v1::Uploading::Type type,
                                         absl::TimeZone zone)
    : mode_(mode),
      counter_id_(counter_id),
      type_(v1::Uploading::Type_Name(
          type == v1::Uploading::TYPE_UNSPECIFIED ? v1::Uploading::BASIC : type)),
      zone_(zone) {}

std::string CounterWatchPrinter::Print(const v1::WatchUploadingsResponse& message,
                                       absl::Time received) {
  const size_t held_before = view_.size();
  view_.Apply(message);
  if (mode_ == Mode::kJson) {
    return CounterWatchResponseToJsonLine(message) + "\n";
  }
  const bool bookmark =
      message.events().empty() && !message.synced() && !message.reset();
  if (bookmark) return "";
  const std::string now = absl::FormatTime("%H:%M:%S", received, zone_);

  if (mode_ == Mode::kTable) {
    // Cursor home, clear the screen: the table replaces the previous one.
    std::string out = "\x1b[H\x1b[2J";
    absl::StrAppend(&out, "counter ", counter_id_, " ", type_, ": ", view_.size(),
                    view_.size() == 1 ? " uploading, " : " uploadings, ",
                    view_.synced() ? "synced" : "syncing", ", updated ", now,
                    "\n");
    absl::StrAppend(&out, FormatUploadingTable(view_.Uploadings()));
    return out;
  }

  std::string out;
  if (message.reset()) {
    absl::StrAppendFormat(&out, "%s  %-8s  dropped %d uploadings, a fresh snapshot follows\n",
                          now, "RESET", held_before);
  }
  for (const v1::UploadingEvent& event : message.events()) {
    const v1::Uploading& u = event.uploading();
    std::vector<std::string> quantities;
    for (const Quantity& q : kQuantities) {
      if (q.short_name != nullptr && Shown(q, u)) {
        quantities.push_back(absl::StrCat(q.short_name, "=", (u.*q.value)()));
      }
    }
    const std::string kind =
        event.type() == v1::UploadingEvent::TYPE_UNSPECIFIED
            ? "-"
            : v1::UploadingEvent::Type_Name(event.type());
    absl::StrAppendFormat(&out, "%s  %-8s  %d  %-15s  %s  %s\n", now, kind,
                          u.id(), StatusText(u), absl::StrJoin(quantities, " "),
                          SingleLine(u.comment()));
  }
  if (message.synced()) {
    absl::StrAppendFormat(&out, "%s  %-8s  %d uploadings\n", now, "SYNCED",
                          view_.size());
  }
  return out;
}

std::string FormatError(const absl::Status& status) {
  std::string out =
      absl::StrCat("error: ", absl::StatusCodeToString(status.code()));
  if (!status.message().empty()) {
    absl::StrAppend(&out, ": ", SingleLine(status.message()));
  }
  std::vector<std::string> details;
  if (auto info = GetErrorInfo(status); info && !info->reason().empty()) {
    details.push_back(absl::StrCat("reason ", info->reason()));
  }
  if (auto delay = GetRetryDelay(status)) {
    details.push_back(absl::StrCat("retry after ", FormatElapsed(*delay)));
  }
  if (!details.empty()) {
    absl::StrAppend(&out, " (", absl::StrJoin(details, ", "), ")");
  }
  return out;
}

std::string FormatElapsed(absl::Duration duration) {
  const int64_t total = std::max<int64_t>(0, absl::ToInt64Seconds(duration));
  const int64_t h = total / 3600, m = total / 60 % 60, s = total % 60;
  if (h > 0) return absl::StrFormat("%dh%02dm%02ds", h, m, s);
  if (m > 0) return absl::StrFormat("%dm%02ds", m, s);
  return absl::StrFormat("%ds", s);
}

WatchTimeline::WatchTimeline(absl::Time start, absl::TimeZone zone)
    : start_(start), zone_(zone) {}

std::string WatchTimeline::Line(const v1::WatchUploadingResponse& message,
                                absl::Time received) {
  const v1::Uploading& u = message.uploading();
  const std::string status = StatusText(u);
  // The server always sets observe_time; arrival is the next best thing.
  const absl::Time observed =
      message.has_observe_time() ? ToTime(message.observe_time()) : received;

  std::string change;
  if (!previous_status_) {
    change = "(watching)";
    status_since_ = observed;
  } else if (*previous_status_ != status) {
    change = absl::StrCat("(in ", *previous_status_, " ",
                          FormatElapsed(observed - status_since_), ")");
    status_since_ = observed;
  } else {
    change = absl::StrCat("(updated after ",
                          FormatElapsed(observed - previous_observed_), ")");
  }
  previous_status_ = status;
  previous_observed_ = observed;

  std::vector<std::string> quantities;
  for (const Quantity& q : kQuantities) {
    if (q.short_name != nullptr && Shown(q, u)) {
      quantities.push_back(absl::StrCat(q.short_name, "=", (u.*q.value)()));
    }
  }
  // LINKAGE_FAILURE, the longest status, is 15 characters; "+59m59s" is 7.
  std::string line = absl::StrFormat(
      "%s  %-15s  %-7s  %-22s %s", absl::FormatTime("%H:%M:%S", received, zone_),
      status, "+" + FormatElapsed(received - start_), change,
      absl::StrJoin(quantities, " "));
  if (message.terminal()) absl::StrAppend(&line, "  terminal");
  return line;
}

}  // namespace uploadwatch
