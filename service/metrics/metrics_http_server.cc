#include "service/metrics/metrics_http_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <list>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"

namespace uploadwatch {
namespace {

// One scrape connection: read a request head, write one response, close.
struct Connection {
  int fd = -1;
  absl::Time deadline;
  std::string in;
  std::string out;  // non-empty once the response is ready
  size_t sent = 0;
};

std::string Response(absl::string_view status, absl::string_view extra_headers,
                     absl::string_view content_type, absl::string_view body) {
  return absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(), "\r\n",
                      extra_headers, "Connection: close\r\n\r\n", body);
}

std::string Plain(absl::string_view status, absl::string_view extra_headers,
                  absl::string_view message) {
  return Response(status, extra_headers, "text/plain",
                  absl::StrCat(message, "\n"));
}

}  // namespace

// Everything on one thread around poll(): no connection can hold a worker,
// because there are none. Each connection has one deadline for its whole
// request and response, so neither idle nor dripping clients last; when all
// slots are taken the oldest connection is dropped for the newcomer, so held
// connections cannot lock scrapes out.
class MetricsHttpServer::Impl {
 public:
  Impl(const Metrics* metrics, MetricsHttpServer::Options options)
      : metrics_(metrics), options_(options) {}

  ~Impl() {
    if (thread_.joinable()) {
      const char byte = 0;
      (void)!write(wake_[1], &byte, 1);
      thread_.join();
    }
    for (Connection& c : connections_) close(c.fd);
    for (int fd : {listener_, wake_[0], wake_[1]}) {
      if (fd >= 0) close(fd);
    }
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
    const absl::Status cannot = absl::UnavailableError(
        absl::StrCat("cannot listen for metrics on ", listen));
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.empty() ? nullptr : host.c_str(),
                    absl::StrCat(port).c_str(), &hints, &found) != 0) {
      return cannot;
    }
    for (addrinfo* a = found; a != nullptr && listener_ < 0; a = a->ai_next) {
      const int fd = socket(a->ai_family,
                            a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      const int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
        listener_ = fd;
      } else {
        close(fd);
      }
    }
    freeaddrinfo(found);
    if (listener_ < 0) return cannot;
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = ntohs(bound.ss_family == AF_INET6
                      ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                      : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    if (pipe2(wake_, O_NONBLOCK | O_CLOEXEC) != 0) return cannot;
    thread_ = std::thread([this] { Loop(); });
    return absl::OkStatus();
  }

  int port() const { return port_; }

 private:
  void Loop() {
    std::vector<pollfd> fds;
    for (;;) {
      const absl::Time now = absl::Now();
      for (auto it = connections_.begin(); it != connections_.end();) {
        it = it->deadline <= now ? Drop(it) : std::next(it);
      }
      fds.clear();
      fds.push_back({wake_[0], POLLIN, 0});
      // While accept fails (EMFILE: the process is out of descriptors), the
      // listener stays readable: leave it alone for a moment, not spin.
      const bool accepting = now >= accept_again_;
      fds.push_back({listener_, static_cast<short>(accepting ? POLLIN : 0), 0});
      absl::Time next = accepting ? absl::InfiniteFuture() : accept_again_;
      for (const Connection& c : connections_) {
        fds.push_back(
            {c.fd, static_cast<short>(c.out.empty() ? POLLIN : POLLOUT), 0});
        next = std::min(next, c.deadline);
      }
      const int timeout_ms =
          next == absl::InfiniteFuture()
              ? -1
              : static_cast<int>(absl::ToInt64Milliseconds(next - now) + 1);
      if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) {
        return;
      }
      if (fds[0].revents != 0) return;  // the destructor asks to stop
      // Connections first (fds[2..] match connections_ as they were), then
      // the listener, which may drop the oldest to make room.
      auto it = connections_.begin();
      for (size_t i = 2; i < fds.size(); ++i) {
        it = fds[i].revents == 0 ? std::next(it) : Serve(it, fds[i].revents);
      }
      if (fds[1].revents & POLLIN) Accept();
    }
  }

  void Accept() {
    for (;;) {
      const int fd = accept4(listener_, nullptr, nullptr,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          accept_again_ = absl::Now() + absl::Milliseconds(100);
        }
        return;
      }
      if (static_cast<int>(connections_.size()) >= options_.max_connections) {
        Drop(connections_.begin());  // the oldest
      }
      connections_.push_back(
          Connection{fd, absl::Now() + options_.request_deadline, {}, {}, 0});
    }
  }

  // Reads or writes what `revents` allows; the next connection to look at.
  std::list<Connection>::iterator Serve(std::list<Connection>::iterator it,
                                        short revents) {
    Connection& c = *it;
    if (c.out.empty()) {
      char buf[4096];
      const ssize_t n = recv(c.fd, buf, sizeof(buf), 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        return Drop(it);
      }
      if (n > 0) c.in.append(buf, n);
      if (c.in.find("\r\n\r\n") != std::string::npos) {
        c.out = Answer(c.in);
      } else if (c.in.size() > options_.max_request_bytes) {
        c.out = Plain("431 Request Header Fields Too Large", "",
                      "request head too large");
      } else if (revents & (POLLERR | POLLHUP)) {
        return Drop(it);
      }
      if (c.out.empty()) return std::next(it);
    }
    const ssize_t n =
        send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return Drop(it);
    if (n > 0) c.sent += n;
    if (c.sent == c.out.size()) return Drop(it);
    return std::next(it);
  }

  // The response to one request head (always "Connection: close").
  std::string Answer(absl::string_view head) const {
    const absl::string_view line = head.substr(0, head.find("\r\n"));
    const std::vector<absl::string_view> parts =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (parts.size() != 3 || !absl::StartsWith(parts[2], "HTTP/1.")) {
      return Plain("400 Bad Request", "", "expected an HTTP/1.x request line");
    }
    const absl::string_view path = parts[1].substr(0, parts[1].find('?'));
    if (path != "/metrics") {
      return Plain("404 Not Found", "", "only /metrics is served here");
    }
    if (parts[0] != "GET") {
      return Plain("405 Method Not Allowed", "Allow: GET\r\n",
                   "only GET /metrics");
    }
    return Response("200 OK", "", "text/plain; version=0.0.4",
                    metrics_->Render());
  }

  std::list<Connection>::iterator Drop(std::list<Connection>::iterator it) {
    close(it->fd);
    return connections_.erase(it);
  }

  const Metrics* const metrics_;
  const MetricsHttpServer::Options options_;
  int listener_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = -1;
  absl::Time accept_again_ = absl::InfinitePast();  // loop thread only
  // Only the loop thread touches it once started; oldest first.
  std::list<Connection> connections_;
  std::thread thread_;
};

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
MetricsHttpServer::~MetricsHttpServer() = default;

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, const Metrics* metrics, Options options) {
  auto impl = std::make_unique<Impl>(metrics, options);
  if (absl::Status s = impl->Start(listen); !s.ok()) return s;
  return std::unique_ptr<MetricsHttpServer>(
      new MetricsHttpServer(std::move(impl)));
}

int MetricsHttpServer::port() const { return impl_->port(); }

}  // namespace uploadwatch
