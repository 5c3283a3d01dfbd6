#include "service/server/uploading_server.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "service/grpc/decode_error_interceptor.h"
#include "service/redis/redis_metrics.h"

namespace uploadwatch {

absl::StatusOr<std::unique_ptr<UploadingServer>> UploadingServer::Start(
    ServerConfig config, std::unique_ptr<MetricaClient> upstream) {
  std::unique_ptr<UploadingServer> s(new UploadingServer());
  s->metrics_ = std::make_unique<Metrics>(config.metrics_options);
  s->log_ = std::make_unique<RpcLog>(config.log_sink, s->metrics_.get());
  config.hub.metrics = s->metrics_.get();
  s->scheduler_ = std::make_unique<ThreadScheduler>(config.clock);
  s->executor_ = std::make_unique<ThreadPoolExecutor>(config.fan_out_threads,
                                                    config.fan_out_nice);
  s->upstream_ = std::move(upstream);
  if (config.replicas != nullptr) {
    s->bridge_ = config.replicas;
    config.hub.ownership = s->bridge_;
    config.hub.publisher = s->bridge_;
    redis::RegisterRedisMetrics(&s->bridge_->coordinator(), s->metrics_.get());
  }
  s->hub_ = std::make_unique<UploadingHub>(s->upstream_.get(),
                                           s->scheduler_.get(),
                                           s->executor_.get(), config.clock,
                                           config.hub);
  if (s->bridge_ != nullptr) s->bridge_->Attach(s->hub_.get());
  s->limits_ = std::make_unique<WatchLimits>(config.watch_limits);
  s->service_ = std::make_unique<UploadingServiceImpl>(ServiceDeps{
      s->hub_.get(), s->log_.get(), config.clock, s->scheduler_.get(),
      s->limits_.get(), &s->reactors_,
      CallerPolicy{config.default_token, config.caller_identity_header,
                   config.require_caller_token},
      s->bridge_});

  std::shared_ptr<grpc::ServerCredentials> credentials =
      grpc::InsecureServerCredentials();
  if (!config.tls_cert_pem.empty() || !config.tls_key_pem.empty()) {
    if (config.tls_cert_pem.empty() || config.tls_key_pem.empty()) {
      return absl::InvalidArgumentError(
          "TLS needs both a certificate and its private key");
    }
    grpc::SslServerCredentialsOptions tls;
    tls.pem_key_cert_pairs.push_back({config.tls_key_pem, config.tls_cert_pem});
    if (!config.tls_client_ca_pem.empty()) {
      tls.pem_root_certs = config.tls_client_ca_pem;
      tls.client_certificate_request =
          GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    credentials = grpc::SslServerCredentials(tls);
  } else if (!config.tls_client_ca_pem.empty()) {
    return absl::InvalidArgumentError(
        "a client CA (mTLS) needs the server's own certificate and key too");
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen, credentials, &s->port_);
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(config.max_receive_message_bytes);
  ApplyTransportLimits(config.transport, builder);
  if (config.explain_undecodable_requests) {
    std::vector<std::unique_ptr<
        grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(std::make_unique<DecodeErrorInterceptorFactory>(
        s->log_.get(), config.clock));
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
  }
  // Watches idle for hours: ping to keep proxies from dropping them and to
  // notice dead clients; let clients ping us as often as every 10 s.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 120 * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20 * 1000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             10 * 1000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", config.listen,
        " (address in use, not a valid host:port, or an unusable TLS "
        "certificate/key?)"));
  }
  s->server_->GetHealthCheckService()->SetServingStatus(true);
  if (s->bridge_ != nullptr) {
    redis::RedisCoordinator* coordinator = &s->bridge_->coordinator();
    grpc::HealthCheckServiceInterface* health =
        s->server_->GetHealthCheckService();
    auto report = [coordinator, health](redis::ConnectionState) {
      health->SetServingStatus(
          kRedisHealthService,
          coordinator->state() == redis::ConnectionState::kConnected);
    };
    report(coordinator->state());
    for (redis::RedisConnection* c :
         {&coordinator->commands(), &coordinator->reader()}) {
      s->redis_listeners_.emplace_back(c, c->AddStateListener(report));
    }
  }
  if (!config.metrics_listen.empty()) {
    auto http = MetricsHttpServer::Start(config.metrics_listen, s->metrics_.get());
    if (!http.ok()) {
      s->Shutdown(absl::ZeroDuration());
      return http.status();
    }
    s->metrics_http_ = *std::move(http);
  }
  if (!config.web.listen.empty()) {
    config.web.tls_cert_pem = config.tls_cert_pem;
    config.web.tls_key_pem = config.tls_key_pem;
    config.web.tls_client_ca_pem = config.tls_client_ca_pem;
    auto web = web::GrpcWebGateway::Start(
        config.web, s->server_->InProcessChannel(grpc::ChannelArguments()));
    if (!web.ok()) {
      s->Shutdown(absl::ZeroDuration());
      return web.status();
    }
    s->web_ = *std::move(web);
  }
  return s;
}

void UploadingServer::StartDraining() {
  if (server_ != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(false);
  }
}

void UploadingServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(false);
  }
  if (hub_ != nullptr) {
    hub_->Shutdown(absl::UnavailableError(
        "uploadwatch server is shutting down; re-watch to reconnect (the "
        "first message repeats the current state)"));
  }
  for (auto& [connection, id] : redis_listeners_) {
    connection->RemoveStateListener(id);
  }
  redis_listeners_.clear();
  if (bridge_ != nullptr) {
    // The next replica takes over at once instead of after the lease time.
    bridge_->Detach();
    bridge_->ReleaseLeases(absl::Seconds(1));
  }
  const absl::Time deadline = absl::Now() + grace;
  // Before the server: gRPC-Web calls deliver their final status (the
  // watches' UNAVAILABLE above) before the in-process transport goes.
  if (web_ != nullptr) web_->Drain(deadline);
  if (server_ != nullptr) {
    server_->Shutdown(absl::ToChronoTime(deadline));
    server_->Wait();
  }
  // gRPC has run every OnDone by now, but only its own code knows it: this
  // makes "no call touches what we free below" our guarantee (and visible
  // to ThreadSanitizer). Returns at once in practice.
  reactors_.WaitForNone();
  if (web_ != nullptr) web_->Shutdown();
  // Late upstream callbacks now find an empty hub (see UploadingHub). The
  // metrics endpoint reads the hub and the client: it goes first. The
  // executor runs the last deliveries (to watches already gone) and stops.
  metrics_http_.reset();
  upstream_.reset();
  scheduler_.reset();
  executor_.reset();
  if (log_ != nullptr) log_->Flush();  // every RPC's line before "stopped"
}

UploadingServer::~UploadingServer() { Shutdown(absl::ZeroDuration()); }

int UploadingServer::metrics_port() const {
  return metrics_http_ == nullptr ? 0 : metrics_http_->port();
}

}  // namespace uploadwatch
