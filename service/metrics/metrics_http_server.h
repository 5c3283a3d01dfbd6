#ifndef UPLOADWATCH_SERVICE_METRICS_METRICS_HTTP_SERVER_H_
#define UPLOADWATCH_SERVICE_METRICS_METRICS_HTTP_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/metrics/metrics.h"

namespace uploadwatch {

// Serves `GET /metrics` (Prometheus text format) for a Metrics registry on
// one event-driven thread, apart from the gRPC port. One request per
// connection (HTTP/1.x, "Connection: close"), which is what scrapers do.
// Idle, half-sent or dripping connections cannot block a scrape: each has one
// deadline for its whole request and response, and when every slot is taken
// the oldest connection is dropped for the new one.
class MetricsHttpServer {
 public:
  struct Options {
    // From accept to the last byte of the response. A scrape on a healthy
    // network takes milliseconds.
    absl::Duration request_deadline = absl::Seconds(3);
    // Connections held at once; beyond it the oldest is dropped.
    int max_connections = 64;
    // A request head larger than this is answered 431.
    size_t max_request_bytes = 8192;
  };

  // `listen` is host:port (port 0: any free one). `metrics` is not owned and
  // must outlive the server.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& listen, const Metrics* metrics, Options options);
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& listen, const Metrics* metrics) {
    return Start(listen, metrics, Options());
  }
  ~MetricsHttpServer();  // stops serving

  int port() const;

 private:
  class Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_METRICS_METRICS_HTTP_SERVER_H_
