#include "service/grpc/rpc_log.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace uploadwatch {

RpcLog::RpcLog(Sink sink, Metrics* metrics) : sink_(std::move(sink)) {
  if (metrics != nullptr) {
    rpcs_ = metrics->AddCounter("uploadwatch_rpcs_total",
                                "Finished RPCs by method and status code.",
                                {"method", "code"});
    latency_ = metrics->AddHistogram(
        "uploadwatch_rpc_latency_seconds",
        "RPC duration (for WatchUploading: the stream's lifetime).",
        {"method"}, Metrics::LatencyBuckets());
  }
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
  if (rpcs_ != nullptr) {
    rpcs_->Inc({std::string(method), absl::StatusCodeToString(status.code())});
    latency_->ObserveDuration({std::string(method)}, latency);
  }
}

}  // namespace uploadwatch
