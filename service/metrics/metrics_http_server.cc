#include "service/metrics/metrics_http_server.h"

#include <httplib.h>

#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace uploadwatch {

class MetricsHttpServer::Impl {
 public:
  explicit Impl(const Metrics* metrics) {
    // Scrapes are rare and small: two workers are plenty.
    server_.new_task_queue = [] { return new httplib::ThreadPool(2); };
    server_.Get("/metrics", [metrics](const httplib::Request&,
                                      httplib::Response& res) {
      res.set_content(metrics->Render(), "text/plain; version=0.0.4");
    });
  }
  ~Impl() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  absl::Status Start(const std::string& listen) {
    const size_t colon = listen.rfind(':');
    int port = -1;
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 ||
        port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("--metrics_listen must be host:port, got '", listen, "'"));
    }
    std::string host = listen.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    port_ = port == 0 ? server_.bind_to_any_port(host)
                      : (server_.bind_to_port(host, port) ? port : -1);
    if (port_ <= 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen for metrics on ", listen));
    }
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() is a no-op until the loop runs: wait for it, so the destructor
    // can never miss it.
    while (!server_.is_running()) std::this_thread::yield();
    return absl::OkStatus();
  }

  int port() const { return port_; }

 private:
  httplib::Server server_;
  int port_ = -1;
  std::thread thread_;
};

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
MetricsHttpServer::~MetricsHttpServer() = default;

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, const Metrics* metrics) {
  auto impl = std::make_unique<Impl>(metrics);
  if (absl::Status s = impl->Start(listen); !s.ok()) return s;
  return std::unique_ptr<MetricsHttpServer>(
      new MetricsHttpServer(std::move(impl)));
}

int MetricsHttpServer::port() const { return impl_->port(); }

}  // namespace uploadwatch
