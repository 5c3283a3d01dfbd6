#ifndef UPLOADWATCH_SERVICE_GRPC_RPC_LOG_H_
#define UPLOADWATCH_SERVICE_GRPC_RPC_LOG_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/metrics/metrics.h"

namespace uploadwatch {

// Records every finished RPC: one log line, and (with a registry) the
// uploadwatch_rpcs_total counter and uploadwatch_rpc_latency_seconds histogram.
// The line:
//   rpc=GetUploading counter=2215573 id=12 code=OK latency_ms=3.1 token=ba78…
// `token` is the token's fingerprint, never the token. Error messages are
// included (they never contain tokens: see token.h). Thread-safe.
class RpcLog {
 public:
  using Sink = std::function<void(absl::string_view line)>;
  // Writes to stderr unless a sink is given (tests capture lines).
  explicit RpcLog(Sink sink = nullptr, Metrics* metrics = nullptr);

  void Log(absl::string_view method, int32_t counter_id, int64_t uploading_id,
           const absl::Status& status, absl::Duration latency,
           absl::string_view token_fingerprint) const;

 private:
  Sink sink_;
  Metrics::Counter* rpcs_ = nullptr;
  Metrics::Histogram* latency_ = nullptr;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_RPC_LOG_H_
