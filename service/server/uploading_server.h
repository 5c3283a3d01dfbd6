#ifndef UPLOADWATCH_SERVICE_SERVER_UPLOADING_SERVER_H_
#define UPLOADWATCH_SERVICE_SERVER_UPLOADING_SERVER_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "service/common/clock.h"
#include "service/core/executor.h"
#include "service/core/scheduler.h"
#include "service/core/uploading_hub.h"
#include "service/grpc/reactor_tracker.h"
#include "service/grpc/rpc_log.h"
#include "service/grpc/uploading_service_impl.h"
#include "service/grpc/watch_limits.h"
#include "service/metrica/metrica_client.h"
#include "service/metrics/metrics.h"
#include "service/metrics/metrics_http_server.h"
#include "service/redis/redis_coordinator.h"
#include "service/redis/stream_bridge.h"
#include "service/server/transport_limits.h"
#include "service/web/grpc_web_gateway.h"

namespace uploadwatch {

struct ServerConfig {
  // host:port; port 0 picks a free one (see UploadingServer::port()).
  std::string listen = "0.0.0.0:50051";
  // The server's own Metrica token ("" for none: calls must bring theirs).
  std::string default_token;
  // Who a caller without a token is (see grpc/request_checks.h), and
  // whether such calls are refused.
  std::string caller_identity_header;
  bool require_caller_token = false;
  UploadingHub::Options hub;
  // Threads that deliver states to watchers (never the upstream I/O thread).
  int fan_out_threads = 2;
  // Added to their nice value, so that a large fan-out yields the cores to
  // calls (ThreadPoolExecutor). The binary's flag defaults to 10; the
  // library leaves its embedder's (and tests') scheduling alone.
  int fan_out_nice = 0;
  // Requests are a few ids: anything bigger is a mistake or an attack.
  int max_receive_message_bytes = 64 * 1024;
  // RPC log destination; stderr when unset.
  RpcLog::Sink log_sink;
  // host:port for the Prometheus endpoint GET /metrics; "" for none.
  std::string metrics_listen;
  // Bounds the registry: label sets per metric family (see Metrics).
  Metrics::Options metrics_options;
  WatchLimits::Options watch_limits;
  // HTTP/2 streams, memory and compression: see TransportLimits.
  TransportLimits transport;
  // Undecodable requests get INVALID_ARGUMENT with a message and a log line
  // (DecodeErrorInterceptor) instead of gRPC's bare UNIMPLEMENTED. Only
  // ListUploadings' calls carry the interceptor: the other methods parse
  // their own requests (kParsesOwnRequests), so cached Gets do not pay it.
  bool explain_undecodable_requests = true;
  // TLS on the listener when both are set (PEM text, not paths); plaintext
  // clients are then refused. With a client CA, clients must present a
  // certificate it signed (mTLS).
  std::string tls_cert_pem;
  std::string tls_key_pem;
  std::string tls_client_ca_pem;
  Clock* clock = Clock::Real();
  // Multi-replica mode (--redis): leases per watched uploading, the shared
  // state history, health service "uploadwatch.redis" and the Redis gauges.
  // Null: one replica alone, nothing changes. Not owned; outlives the server
  // (main makes it first: the fetcher's shared quota uses its coordinator).
  redis::StreamBridge* replicas = nullptr;
  // gRPC-Web for browsers on a second listener when web.listen is set; its
  // TLS comes from the tls_* fields above.
  web::GrpcWebGateway::Options web;
};

// The health service name that is NOT_SERVING while Redis is unreachable
// (the replica then polls on its own). The overall status ("") stays
// SERVING: a degraded replica still answers every call, and taking all
// replicas out of the load balancer when Redis fails would be an outage.
inline constexpr char kRedisHealthService[] = "uploadwatch.redis";

// The whole service wired together: upstream client, scheduler, hub, the
// gRPC UploadingService plus health and reflection, on one listening port.
class UploadingServer {
 public:
  // Starts serving. `upstream` is Metrica (a CurlMetricaClient in production).
  static absl::StatusOr<std::unique_ptr<UploadingServer>> Start(
      ServerConfig config, std::unique_ptr<MetricaClient> upstream);

  // Shuts down with no grace if Shutdown() was not called.
  ~UploadingServer();

  int port() const { return port_; }
  // The metrics port, or 0 without --metrics_listen.
  int metrics_port() const;
  const Metrics& metrics() const { return *metrics_; }
  // The gRPC-Web port, or 0 without web.listen.
  int web_port() const { return web_ == nullptr ? 0 : web_->port(); }

  // Starts draining: health turns NOT_SERVING so load balancers and
  // Kubernetes readiness stop sending new calls, while everything keeps
  // serving (new calls included) until Shutdown. Idempotent.
  void StartDraining();

  // Graceful stop: health turns NOT_SERVING, open watches end with
  // UNAVAILABLE telling clients to re-watch, new calls are refused, unary
  // calls in progress get until `grace` to finish. Idempotent.
  void Shutdown(absl::Duration grace);

  UploadingHub::Stats stats() { return hub_->stats(); }


 private:
  UploadingServer() = default;

  // Destroyed bottom-up; the hub outlives the client, scheduler and
  // executor (see UploadingHub), the service outlives the gRPC server, and
  // the tracker outlives every call (Shutdown waits for them on it).
  ReactorTracker reactors_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<RpcLog> log_;
  // Outlives the hub, which polls and publishes through it. Not owned.
  redis::StreamBridge* bridge_ = nullptr;
  std::vector<std::pair<redis::RedisConnection*, int>> redis_listeners_;
  std::unique_ptr<UploadingHub> hub_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<MetricaClient> upstream_;
  std::unique_ptr<WatchLimits> limits_;
  std::unique_ptr<UploadingServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  std::unique_ptr<web::GrpcWebGateway> web_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_SERVER_UPLOADING_SERVER_H_
