// Metrica through a company proxy: libcurl's standard https_proxy and
// no_proxy environment variables, against a real CONNECT proxy (Debian's
// tinyproxy) that the test starts on a free loopback port.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "tests/upstream_fixture.h"

extern char** environ;

namespace uploadwatch::testing {
namespace {

// A free loopback port (the kernel's pick; free again once closed).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return -1;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

bool Accepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok =
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

class UpstreamProxyTest : public UpstreamTest {
 protected:
  void SetUp() override {
    dir_ = std::string(std::getenv("TEST_TMPDIR"));
    log_ = dir_ + "/tinyproxy.log";
    std::remove(log_.c_str());
    port_ = FreePort();
    ASSERT_GT(port_, 0);
    const std::string config = dir_ + "/tinyproxy.conf";
    std::ofstream(config) << "Port " << port_ << "\n"
                          << "Listen 127.0.0.1\n"
                          << "Timeout 30\n"
                          << "LogFile \"" << log_ << "\"\n"
                          << "LogLevel Connect\n"
                          << "MaxClients 20\n"
                          << "Allow 127.0.0.1\n";
    std::vector<std::string> args = {"tinyproxy", "-d", "-c", config};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawnp(&proxy_pid_, "tinyproxy", nullptr, nullptr,
                           argv.data(), environ),
              0)
        << "tinyproxy is missing: apt-get install tinyproxy-bin "
           "(scripts/lib/deps.sh installs it)";
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (!Accepts(port_)) {
      ASSERT_LT(absl::Now(), give_up) << "tinyproxy did not start";
      int status;
      ASSERT_EQ(waitpid(proxy_pid_, &status, WNOHANG), 0)
          << "tinyproxy exited";
      absl::SleepFor(absl::Milliseconds(20));
    }
    // Read by libcurl for every transfer; nothing else of the test runs yet.
    setenv("https_proxy", absl::StrCat("http://127.0.0.1:", port_).c_str(), 1);
  }

  void TearDown() override {
    UpstreamTest::TearDown();
    unsetenv("https_proxy");
    unsetenv("no_proxy");
    StopProxy();
  }

  void StopProxy() {
    if (proxy_pid_ <= 0) return;
    kill(proxy_pid_, SIGTERM);
    waitpid(proxy_pid_, nullptr, 0);
    proxy_pid_ = -1;
  }

  // The tunnels the proxy opened to `port`, from its log (read once it has
  // stopped, so that every line is written).
  int TunnelsTo(int port) {
    StopProxy();
    std::ifstream in(log_);
    std::stringstream text;
    text << in.rdbuf();
    int n = 0;
    for (absl::string_view line : absl::StrSplit(text.str(), '\n')) {
      if (absl::StrContains(line,
                            absl::StrCat("CONNECT 127.0.0.1:", port, " "))) {
        ++n;
      }
    }
    return n;
  }

  std::string dir_;
  std::string log_;
  int port_ = 0;
  pid_t proxy_pid_ = -1;
};

TEST_F(UpstreamProxyTest, GetListAndWatchGoThroughTheHttpsProxy) {
  StartMetrica("good");
  StartServer(Upstream());
  v1::GetUploadingResponse got;
  grpc::Status status = Get(12, &got);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(got.uploading().status(), v1::Uploading::PROCESSED);
  StartJourney20();
  v1::ListUploadingsResponse listed;
  ASSERT_TRUE(List(&listed).ok());
  std::vector<v1::WatchUploadingResponse> messages;
  status = WatchToEnd(20, &messages);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(messages.back().terminal());

  const int metrica_port = metrica_->port();
  const size_t requests = metrica_->requests().size();
  EXPECT_GE(requests, 3u);
  // Every connection to Metrica was a tunnel through the proxy (connections
  // are reused, so there are fewer tunnels than requests, at least one).
  EXPECT_GE(TunnelsTo(metrica_port), 1);
}

TEST_F(UpstreamProxyTest, NoProxyBypassesTheProxy) {
  setenv("no_proxy", "127.0.0.1", 1);
  StartMetrica("good");
  StartServer(Upstream());
  v1::GetUploadingResponse got;
  grpc::Status status = Get(12, &got);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(TunnelsTo(metrica_->port()), 0);
}

// The proxy is only a tunnel: the fetcher still verifies Metrica's
// certificate end to end.
TEST_F(UpstreamProxyTest, TheCertificateIsStillVerifiedThroughTheProxy) {
  StartMetrica("foreign");
  StartServer(Upstream());
  v1::GetUploadingResponse got;
  grpc::Status status = Get(12, &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("TLS"));
  EXPECT_GE(TunnelsTo(metrica_->port()), 1);
}

}  // namespace
}  // namespace uploadwatch::testing
