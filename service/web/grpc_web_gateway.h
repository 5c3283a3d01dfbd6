#ifndef UPLOADWATCH_SERVICE_WEB_GRPC_WEB_GATEWAY_H_
#define UPLOADWATCH_SERVICE_WEB_GRPC_WEB_GATEWAY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"

namespace uploadwatch::web {

// gRPC-Web (grpc/grpc doc/PROTOCOL-WEB.md) on an HTTP/1.1 listener, for
// browsers, in the server process. Every request is forwarded, as raw bytes,
// through a generic stub on `channel` (the gRPC server's in-process channel),
// so it reaches the real handlers: limits, metrics, logs and error details
// are exactly those of native gRPC, and a new rpc needs no code here.
// Unary and server-streaming rpcs; answers stream out frame by frame
// (chunked), with the gRPC status in the trailer frame or, for a call that
// fails before its first message, in the headers (trailers-only).
//
// One event loop thread serves every connection (Boost.Asio); an open watch
// costs a socket and a few buffers, no thread. Reading the request, each
// write and an idle keep-alive connection have timeouts; an open stream has
// none (watches idle for hours). A client that goes away cancels its call.
// Thread-safe.
class GrpcWebGateway {
 public:
  // The name (/proc/PID/task/TID/comm) of the event loop's thread.
  static constexpr char kThreadName[] = "grpc-web";

  struct Options {
    // host:port; port 0 picks a free one (see port()).
    std::string listen;
    // --web_allowed_origins: "" same origin only, "*", or a comma-separated
    // list of origins (see CorsPolicy).
    std::string allowed_origins;
    // TLS when both are set (PEM text); with a client CA, clients must
    // present a certificate it signed. The same flags as the gRPC listener.
    std::string tls_cert_pem;
    std::string tls_key_pem;
    std::string tls_client_ca_pem;
    // A directory of static files served for GET (the dashboard: `/` is
    // index.html); "" serves none (GET answers 404).
    std::string static_dir;
    // Bounds a request's body (base64 included). The service's own message
    // limit still applies behind it, with its own error.
    size_t max_request_body_bytes = 256 * 1024;
    // Bounds a request's start line and headers.
    size_t max_request_header_bytes = 16 * 1024;
    // Connections beyond this are closed at once.
    int max_connections = 10000;
    // Reading one request, from its first byte to the end of its body.
    absl::Duration request_timeout = absl::Seconds(30);
    // A keep-alive connection with no request in progress.
    absl::Duration idle_timeout = absl::Seconds(75);
    // One write to a client that does not read.
    absl::Duration write_timeout = absl::Seconds(30);
  };

  // Listens and serves until Shutdown. INVALID_ARGUMENT for bad options,
  // UNAVAILABLE when it cannot listen.
  static absl::StatusOr<std::unique_ptr<GrpcWebGateway>> Start(
      Options options, std::shared_ptr<grpc::Channel> channel);

  // Shuts down if Shutdown() was not called.
  ~GrpcWebGateway();

  int port() const;

  // Stops taking connections and requests and waits until the calls in
  // flight have ended or `deadline` passed. Call it before the gRPC server's
  // own shutdown (after ending its watches), so every call's final status
  // reaches its browser: the in-process transport drops what it has not
  // delivered when the server stops.
  void Drain(absl::Time deadline);

  // Stops accepting, cancels the calls still open, closes every connection,
  // and returns once no call or connection is left. Idempotent.
  void Shutdown();

  // For tests and figures: connections open, calls in flight.
  int open_connections() const;
  int open_calls() const;

  class Impl;

 private:
  explicit GrpcWebGateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace uploadwatch::web

#endif  // UPLOADWATCH_SERVICE_WEB_GRPC_WEB_GATEWAY_H_
