#ifndef UPLOADWATCH_CLIENT_CLI_FORMAT_H_
#define UPLOADWATCH_CLIENT_CLI_FORMAT_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/counter_view.h"
#include "metrika/offline_conversions/v1/uploading_service.pb.h"

namespace uploadwatch {

// What the `uploadwatch` CLI prints. Pure functions of their inputs (times and
// zones are passed in), so output is tested byte for byte. Human formats are
// one record per line, without blank lines, for grep and awk; scripts should
// prefer the JSON ones.
//
// Enum values print as their names; a value this API does not know prints as
// the raw string Metrica sent, and an unset one as "-". Times print in
// RFC 3339 UTC. Free text (comments) has control characters replaced by
// spaces so that a record stays on one line.

// `get`: aligned "field: value" lines named as the proto's fields, ending in
// a newline. Call quantities are shown for CALLS uploadings or when non-zero.
std::string FormatUploading(
    const metrika::offline_conversions::v1::Uploading& uploading);

// `list`: a header and one aligned row per uploading (ID, STATUS, TYPE,
// CREATED, LINES, LINKED, COMMENT), each ending in a newline.
std::string FormatUploadingTable(
    const std::vector<metrika::offline_conversions::v1::Uploading>& uploadings);

// `watch --json`: one line of JSON (no newline) for one stream message, with
// the proto's field names. The uploading is written as `get --json` writes it
// (Metrica's own JSON, see UploadingToJson); the rest follows the proto3 JSON
// mapping (int64 `version` as a string, times in RFC 3339), every field
// present.
std::string WatchResponseToJsonLine(
    const metrika::offline_conversions::v1::WatchUploadingResponse& response);

// `watch --json` of a counter: one line of JSON (no newline) for one
// WatchUploadingsResponse, every field present, each event's uploading
// written as `get --json` writes it (Metrica's JSON).
std::string CounterWatchResponseToJsonLine(
    const metrika::offline_conversions::v1::WatchUploadingsResponse& response);

// `watch COUNTER`: turns the stream's messages into output. Modes:
//   kTable: for a terminal. Each message that changes something redraws the
//     screen (ANSI: cursor home, clear screen) with a header line and the
//     `list` table of every uploading held, e.g.
//       counter 2215573 BASIC: 8 uploadings, synced, updated 17:02:41
//     ("syncing" until the snapshot is complete). Bookmarks print nothing.
//   kLines: one line per event, plus a line for `reset` and `synced`, e.g.
//       17:02:41  ADDED     101  PREPARED         lines=604 linked=0 ...  comment
//       17:02:41  SYNCED    8 uploadings
//       17:05:10  MODIFIED  101  UPLOADED         lines=604 linked=0 ...  comment
//       17:09:00  RESET     dropped 8 uploadings, a fresh snapshot follows
//     Bookmarks print nothing.
//   kJson: CounterWatchResponseToJsonLine of every message, bookmarks too.
// Every output ends in a newline unless empty. Not thread-safe.
class CounterWatchPrinter {
 public:
  enum class Mode { kTable, kLines, kJson };

  // `counter_id` and `type` (as requested; TYPE_UNSPECIFIED means BASIC)
  // for the header; `zone` for the wall-time columns.
  CounterWatchPrinter(Mode mode, int32_t counter_id,
                      metrika::offline_conversions::v1::Uploading::Type type,
                      absl::TimeZone zone);

  // What to write for the next message, which arrived at `received`.
  std::string Print(
      const metrika::offline_conversions::v1::WatchUploadingsResponse& message,
      absl::Time received);

  // The uploadings held (resets applied), for kTable and kLines alike.
  const CounterView& view() const { return view_; }

 private:
  const Mode mode_;
  const int32_t counter_id_;
  const std::string type_;
  const absl::TimeZone zone_;
  CounterView view_;
};

// Any failed call: "error: CODE: message", then the ErrorInfo reason and the
// RetryInfo delay when the status carries them, e.g.
//   error: NOT_FOUND: uploading 7 not found (reason NOT_FOUND)
//   error: RESOURCE_EXHAUSTED: quota spent (reason QUOTA_REQUESTS_BY_UID, retry after 30s)
// No newline.
std::string FormatError(const absl::Status& status);

// A duration as a timeline shows it, truncated to whole seconds: "0s", "31s",
// "1m02s", "1h03m05s". Negative durations (clock skew) print as "0s".
std::string FormatElapsed(absl::Duration duration);

// `watch`: turns stream messages into timeline lines, e.g.
//   17:02:41  EXPORTED         +0s      (watching)             lines=604 linked=0 user_not_found=0 goal_not_found=0
//   17:03:12  MATCHED          +31s     (in EXPORTED 31s)      lines=604 linked=302 user_not_found=60 goal_not_found=0
//   17:03:27  MATCHED          +46s     (updated after 15s)    lines=604 linked=483 user_not_found=75 goal_not_found=0
//   17:03:42  PROCESSED        +1m01s   (in MATCHED 30s)       lines=604 linked=523 user_not_found=75 goal_not_found=6  terminal
// Columns: the local wall time the message arrived; the status; the time
// since the watch began; what changed: the time spent in the previous status,
// or for a change of other fields the time since the previous message;
// the quantities; and `terminal` on the last line. Durations between
// messages come from the server's observe_time (when the change was first
// seen), so a slow network does not distort them. Not thread-safe.
class WatchTimeline {
 public:
  // `start`: when the watch began; `zone`: for the wall-time column.
  WatchTimeline(absl::Time start, absl::TimeZone zone);

  // The line (no newline) for the next message, which arrived at `received`.
  std::string Line(
      const metrika::offline_conversions::v1::WatchUploadingResponse& message,
      absl::Time received);

 private:
  const absl::Time start_;
  const absl::TimeZone zone_;
  // The previous message's status text and observe time, and when its status
  // was first observed; unset before the first message.
  std::optional<std::string> previous_status_;
  absl::Time previous_observed_;
  absl::Time status_since_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_CLIENT_CLI_FORMAT_H_
