#include "service/grpc/rpc_log.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace uploadwatch {

RpcLog::RpcLog(Sink sink) : sink_(std::move(sink)) {
  if (!sink_) {
    sink_ = [](absl::string_view line) {
      // One fwrite per line: stdio's lock keeps concurrent lines whole.
      std::string text = absl::StrCat(line, "\n");
      std::fwrite(text.data(), 1, text.size(), stderr);
    };
  }
}

void RpcLog::Log(absl::string_view method, int32_t counter_id,
                 int64_t uploading_id, const absl::Status& status,
                 absl::Duration latency,
                 absl::string_view token_fingerprint) const {
  std::string line = absl::StrFormat(
      "%s rpc=%s counter=%d id=%d code=%s latency_ms=%.1f token=%s",
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
      method, counter_id, uploading_id,
      absl::StatusCodeToString(status.code()),
      absl::ToDoubleMilliseconds(latency),
      token_fingerprint.empty() ? "-" : token_fingerprint);
  if (!status.ok()) absl::StrAppend(&line, " msg=\"", status.message(), "\"");
  sink_(line);
}

}  // namespace uploadwatch
