// The /metrics endpoint on loopback, against clients that connect and then
// send nothing, or half a request, or drip it byte by byte (issue 16).
#include "service/metrics/metrics_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace uploadwatch {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// A loopback TCP connection, closed on destruction.
class Connection {
 public:
  explicit Connection(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ =
        connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Connection() { close(fd_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool connected() const { return connected_; }
  bool Send(const std::string& text) {
    return ::send(fd_, text.data(), text.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(text.size());
  }
  // Everything until the peer closes, or until `timeout` passes.
  std::string ReadAll(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    std::string out;
    char buf[4096];
    while (absl::Now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      const int ms = static_cast<int>(
          absl::ToInt64Milliseconds(deadline - absl::Now()) + 1);
      if (poll(&p, 1, ms) <= 0) break;
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        closed_by_peer_ = true;
        break;
      }
      out.append(buf, n);
    }
    return out;
  }
  bool closed_by_peer() const { return closed_by_peer_; }

 private:
  const int fd_;
  bool connected_ = false;
  bool closed_by_peer_ = false;
};

class MetricsHttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    metrics_.AddGauge("uploadwatch_test_gauge", "A gauge.", {},
                      [] { return std::vector<std::pair<Metrics::Labels, double>>{{{}, 7}}; });
    auto server = MetricsHttpServer::Start("127.0.0.1:0", &metrics_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  // A whole GET /metrics, and how long it took.
  std::string Scrape(absl::Duration* took = nullptr) {
    const absl::Time start = absl::Now();
    Connection c(server_->port());
    EXPECT_TRUE(c.connected());
    c.Send("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    std::string reply = c.ReadAll(absl::Seconds(10));
    if (took != nullptr) *took = absl::Now() - start;
    return reply;
  }

  Metrics metrics_;
  std::unique_ptr<MetricsHttpServer> server_;
};

TEST_F(MetricsHttpServerTest, ServesTheRegistry) {
  const std::string reply = Scrape();
  EXPECT_THAT(reply, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(reply, HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(reply, HasSubstr("uploadwatch_test_gauge 7\n"));
}

TEST_F(MetricsHttpServerTest, OtherPathsAndMethodsAreRefused) {
  Connection c(server_->port());
  c.Send("GET /secret HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(c.ReadAll(absl::Seconds(5)), StartsWith("HTTP/1.1 404"));
  Connection d(server_->port());
  d.Send("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  EXPECT_THAT(d.ReadAll(absl::Seconds(5)), StartsWith("HTTP/1.1 405"));
  Connection e(server_->port());
  e.Send("garbage\r\n\r\n");
  EXPECT_THAT(e.ReadAll(absl::Seconds(5)), StartsWith("HTTP/1.1 400"));
}

TEST_F(MetricsHttpServerTest, IdleAndHalfSentConnectionsDoNotBlockAScrape) {
  Connection idle1(server_->port()), idle2(server_->port());
  Connection half1(server_->port()), half2(server_->port());
  ASSERT_TRUE(idle1.connected() && idle2.connected());
  half1.Send("GET /metr");
  half2.Send("GET /metrics HTTP/1.1\r\nHost: x\r\n");
  absl::Duration took;
  const std::string reply = Scrape(&took);
  EXPECT_THAT(reply, HasSubstr("uploadwatch_test_gauge 7"));
  EXPECT_LT(took, absl::Seconds(1)) << "a scrape waited for idle connections";
}

TEST_F(MetricsHttpServerTest, ManyIdleConnectionsDoNotBlockAScrape) {
  std::vector<std::unique_ptr<Connection>> idle;
  for (int i = 0; i < 300; ++i) {
    idle.push_back(std::make_unique<Connection>(server_->port()));
  }
  absl::Duration took;
  EXPECT_THAT(Scrape(&took), HasSubstr("uploadwatch_test_gauge 7"));
  EXPECT_LT(took, absl::Seconds(1));
}

TEST_F(MetricsHttpServerTest, ADrippedRequestIsCutOffAtTheRequestDeadline) {
  Connection slow(server_->port());
  const absl::Time start = absl::Now();
  // One byte every 200 ms never finishes the request; each byte would reset
  // a per-read timeout, so only a deadline for the whole request ends it.
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxx";
  bool cut = false;
  for (char c : request) {
    if (!slow.Send(std::string(1, c))) {
      cut = true;
      break;
    }
    slow.ReadAll(absl::Milliseconds(200));
    if (slow.closed_by_peer()) {
      cut = true;
      break;
    }
  }
  EXPECT_TRUE(cut) << "the whole dripped request was waited for";
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

}  // namespace
}  // namespace uploadwatch
