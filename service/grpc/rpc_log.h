#ifndef UPLOADWATCH_SERVICE_GRPC_RPC_LOG_H_
#define UPLOADWATCH_SERVICE_GRPC_RPC_LOG_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/metrics/metrics.h"

namespace uploadwatch {

// Records every finished RPC: one log line, and (with a registry) the
// uploadwatch_rpcs_total counter and uploadwatch_rpc_latency_seconds histogram.
// The line:
//   2026-12-01T10:00:00.123Z rpc=GetUploading counter=2215573 id=12 code=OK
//   latency_ms=3.1 token=ba78…
// `token` is the token's fingerprint, never the token. Error messages are
// included (they never contain tokens: see token.h). Thread-safe.
//
// Without a sink, lines go to stderr through a buffer that a thread of its
// own writes out every kFlushEvery (or when it holds kFlushBytes), so that
// an RPC does not pay a write(2) of its own; a line of a failed RPC is
// written at once, with everything before it, so that errors show without
// delay; the destructor writes what is left.
class RpcLog {
 public:
  using Sink = std::function<void(absl::string_view line)>;
  static constexpr absl::Duration kFlushEvery = absl::Milliseconds(50);
  static constexpr size_t kFlushBytes = 64 * 1024;

  // Writes to stderr unless a sink is given (tests capture lines, in order,
  // synchronously).
  explicit RpcLog(Sink sink = nullptr, Metrics* metrics = nullptr);
  ~RpcLog();
  RpcLog(const RpcLog&) = delete;
  RpcLog& operator=(const RpcLog&) = delete;

  void Log(absl::string_view method, int32_t counter_id, int64_t uploading_id,
           const absl::Status& status, absl::Duration latency,
           absl::string_view token_fingerprint) const;
  // Writes out what the stderr buffer holds (nothing to do with a sink).
  void Flush() const;

 private:
  class BufferedStderr;
  // The metric series of one method, resolved once: a call's Log finds
  // them by the method's name and its status code, with no label vector.
  struct MethodSeries {
    std::string method;
    // By absl::StatusCode (0..16, all of gRPC's codes).
    std::array<std::unique_ptr<Metrics::Counter::Handle>, 17> rpcs;
    std::unique_ptr<Metrics::Histogram::Handle> latency;
  };
  void Count(absl::string_view method, const absl::Status& status,
             absl::Duration latency) const;

  Sink sink_;
  std::unique_ptr<BufferedStderr> stderr_;  // when there is no sink
  Metrics::Counter* rpcs_ = nullptr;
  Metrics::Histogram* latency_ = nullptr;
  std::vector<MethodSeries> methods_;  // the service's rpcs; const after construction
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_RPC_LOG_H_
