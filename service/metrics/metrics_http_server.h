#ifndef UPLOADWATCH_SERVICE_METRICS_METRICS_HTTP_SERVER_H_
#define UPLOADWATCH_SERVICE_METRICS_METRICS_HTTP_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "service/metrics/metrics.h"

namespace uploadwatch {

// Serves `GET /metrics` (Prometheus text format) for a Metrics registry on
// its own small thread pool, apart from the gRPC port.
class MetricsHttpServer {
 public:
  // `listen` is host:port (port 0: any free one). `metrics` is not owned and
  // must outlive the server.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& listen, const Metrics* metrics);
  ~MetricsHttpServer();  // stops serving

  int port() const;

 private:
  class Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICS_METRICS_HTTP_SERVER_H_
