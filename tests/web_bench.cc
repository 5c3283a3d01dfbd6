// web_bench: the figures of issue 12 for gRPC-Web. Not a test (nothing is
// asserted on timing): a small bounded tool that prints `name: value` lines.
//
//   bazel build -c opt //tests:web_bench //service:uploading_server
//   bazel-bin/tests/web_bench --server_binary=bazel-bin/service/uploading_server
//
// It runs the real server binary as a child process (so /proc shows its
// threads and memory alone) against a FakeMetrica in this process, then
//   1. opens --watches gRPC-Web WatchUploading streams (one HTTP/1.1
//      connection each, as browsers do) over --uploadings uploadings that
//      never change, waits for every first message, and reads the server's
//      threads and RSS (idle before, with the streams open);
//   2. times cached GetUploading calls one at a time over gRPC-Web (one
//      keep-alive connection) and over native gRPC (one channel), in
//      alternating rounds, and prints the medians and their ratio, with the
//      server's CPU per call.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "metrika/offline_conversions/v1/uploading_service.grpc.pb.h"
#include "service/simulator/fake_metrica.h"

ABSL_FLAG(std::string, server_binary, "bazel-bin/service/uploading_server",
          "the uploadwatch server binary (build it with -c opt)");
ABSL_FLAG(int, watches, 1000, "gRPC-Web watches to hold open");
ABSL_FLAG(int, uploadings, 100, "uploadings the watches spread over");
ABSL_FLAG(int, unary_calls, 2000, "calls per round and transport");
ABSL_FLAG(int, unary_rounds, 5, "alternating rounds (the median is printed)");
ABSL_FLAG(std::string, listener_thread_name, "grpc-web",
          "the web listener's thread name (GrpcWebGateway::kThreadName)");

namespace uploadwatch {
namespace {

namespace v1 = ::metrika::offline_conversions::v1;
constexpr char kToken[] = "bench-token";
constexpr int32_t kCounter = 2215573;
constexpr char kService[] = "/metrika.offline_conversions.v1.UploadingService/";

struct Usage {
  int threads = 0;
  int64_t rss_kb = 0;
  double cpu_seconds = 0;
};

Usage ReadUsage(pid_t pid) {
  Usage u;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    std::vector<std::string> f = absl::StrSplit(line, absl::ByAnyChar(" \t"),
                                                absl::SkipEmpty());
    if (f.size() < 2) continue;
    if (f[0] == "Threads:") (void)absl::SimpleAtoi(f[1], &u.threads);
    if (f[0] == "VmRSS:") (void)absl::SimpleAtoi(f[1], &u.rss_kb);
  }
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(stat)),
                   std::istreambuf_iterator<char>());
  // Fields after the command name, which may hold spaces: utime is the
  // 14th field of the line, stime the 15th.
  std::vector<std::string> f =
      absl::StrSplit(text.substr(text.rfind(')') + 2), ' ');
  int64_t utime = 0, stime = 0;
  if (f.size() > 13) {
    (void)absl::SimpleAtoi(f[11], &utime);
    (void)absl::SimpleAtoi(f[12], &stime);
  }
  u.cpu_seconds = static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
  return u;
}

// Threads of `pid` named `name` (/proc/PID/task/TID/comm): the web
// listener's own, told apart from gRPC's and the core's.
int NamedThreads(pid_t pid, const std::string& name) {
  int n = 0;
  const std::string dir = absl::StrCat("/proc/", pid, "/task");
  std::unique_ptr<DIR, int (*)(DIR*)> tasks(opendir(dir.c_str()), closedir);
  if (tasks == nullptr) return -1;
  while (const dirent* entry = readdir(tasks.get())) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream comm(absl::StrCat(dir, "/", entry->d_name, "/comm"));
    std::string line;
    if (std::getline(comm, line) && line == name) ++n;
  }
  return n;
}

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

std::string Post(const std::string& method, const std::string& message) {
  const uint32_t n = static_cast<uint32_t>(message.size());
  std::string body = {0, static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                      static_cast<char>(n >> 8), static_cast<char>(n)};
  body += message;
  return absl::StrCat("POST ", kService, method,
                      " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Type: application/grpc-web+proto\r\n"
                      "Content-Length: ",
                      body.size(), "\r\n\r\n", body);
}

// Reads until `done(bytes)` or 10 s pass; false on timeout or EOF.
template <typename Done>
bool ReadUntil(int fd, std::string* bytes, Done done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  char buf[16384];
  while (!done(*bytes)) {
    pollfd p{fd, POLLIN, 0};
    const int ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (ms <= 0 || poll(&p, 1, ms) <= 0) return false;
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return false;
    bytes->append(buf, static_cast<size_t>(n));
  }
  return true;
}

bool SendAll(int fd, const std::string& data) {
  size_t at = 0;
  while (at < data.size()) {
    const ssize_t n = write(fd, data.data() + at, data.size() - at);
    if (n <= 0) return false;
    at += static_cast<size_t>(n);
  }
  return true;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

void Print(const std::string& name, double value, int decimals = 0) {
  std::printf("%s: %.*f\n", name.c_str(), decimals, value);
  std::fflush(stdout);
}

int Run() {
  FakeMetrica metrica{FakeMetrica::Options{}};
  if (!metrica.Start().ok()) return 1;
  metrica.GrantAccess(kToken, kCounter);
  const int uploadings = absl::GetFlag(FLAGS_uploadings);
  for (int i = 0; i < uploadings; ++i) {
    v1::Uploading u;
    u.set_id(1000 + i);
    u.set_status(i == 0 ? v1::Uploading::PROCESSED : v1::Uploading::PREPARED);
    u.set_comment(absl::StrCat("bench ", i));
    u.mutable_create_time()->set_seconds(1700000000);
    metrica.AddUploading(kCounter, u);
  }

  char dir_template[] = "/tmp/web_bench.XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const std::string log = dir + "/server.log";
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    setenv("METRIKA_OAUTH_TOKEN", kToken, 1);
    const std::string binary = absl::GetFlag(FLAGS_server_binary);
    const std::string upstream = "--upstream_url=" + metrica.base_url();
    execl(binary.c_str(), binary.c_str(), "--listen=127.0.0.1:0",
          "--web_listen=127.0.0.1:0", upstream.c_str(), "--poll_interval=30s",
          "--max_watches_per_connection=0", static_cast<char*>(nullptr));
    _exit(127);
  }
  int grpc_port = 0, web_port = 0;
  for (int i = 0; i < 300 && web_port == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    std::ifstream in(log);
    std::string line;
    while (std::getline(in, line)) {
      const size_t at = line.rfind("port ");
      if (at == std::string::npos) continue;
      int port = 0;
      if (!absl::SimpleAtoi(line.substr(at + 5, line.find(' ', at + 5) - at - 5),
                            &port)) {
        continue;
      }
      if (absl::StrContains(line, "serving on port")) grpc_port = port;
      if (absl::StrContains(line, "gRPC-Web on port")) web_port = port;
    }
  }
  if (web_port == 0) {
    std::fprintf(stderr, "web_bench: the server did not start; see %s\n",
                 log.c_str());
    kill(pid, SIGKILL);
    return 1;
  }
  std::fprintf(stderr, "web_bench: server pid %d, gRPC %d, gRPC-Web %d\n", pid,
               grpc_port, web_port);

  const Usage idle = ReadUsage(pid);
  Print("web_idle_threads", idle.threads);
  Print("web_idle_rss_mb", idle.rss_kb / 1024.0, 1);
  const std::string listener = absl::GetFlag(FLAGS_listener_thread_name);
  Print("web_idle_listener_threads", NamedThreads(pid, listener));

  // 1. Open watches.
  const int watches = absl::GetFlag(FLAGS_watches);
  std::vector<int> fds;
  int opened = 0;
  const absl::Time open_start = absl::Now();
  for (int i = 0; i < watches; ++i) {
    const int fd = Connect(web_port);
    if (fd < 0) break;
    fds.push_back(fd);
    v1::WatchUploadingRequest request;
    request.set_counter_id(kCounter);
    request.set_uploading_id(1000 + 1 + i % std::max(1, uploadings - 1));
    std::string got;
    if (SendAll(fd, Post("WatchUploading", request.SerializeAsString())) &&
        ReadUntil(fd, &got, [](const std::string& b) {
          const size_t head = b.find("\r\n\r\n");
          return head != std::string::npos && b.size() > head + 4 + 8;
        }) &&
        absl::StartsWith(got, "HTTP/1.1 200") &&
        !absl::StrContains(got.substr(0, got.find("\r\n\r\n")), "grpc-status")) {
      ++opened;
    }
  }
  Print("web_watches_open", opened);
  Print("web_watches_open_seconds", absl::ToDoubleSeconds(absl::Now() - open_start), 1);
  absl::SleepFor(absl::Seconds(1));
  const Usage open = ReadUsage(pid);
  Print("web_watches_threads", open.threads);
  Print("web_watches_rss_mb", open.rss_kb / 1024.0, 1);
  Print("web_watches_listener_threads", NamedThreads(pid, listener));
  Print("web_watches_rss_per_watch_kb",
        opened == 0 ? 0 : static_cast<double>(open.rss_kb - idle.rss_kb) / opened, 1);
  for (int fd : fds) close(fd);

  // 2. Unary cost, gRPC-Web beside native.
  auto stub = v1::UploadingService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", grpc_port), grpc::InsecureChannelCredentials()));
  v1::GetUploadingRequest get;
  get.set_counter_id(kCounter);
  get.set_uploading_id(1000);  // terminal: served from the cache
  const std::string post = Post("GetUploading", get.SerializeAsString());
  const int web_fd = Connect(web_port);
  const int calls = absl::GetFlag(FLAGS_unary_calls);
  const auto native_call = [&] {
    grpc::ClientContext ctx;
    v1::GetUploadingResponse response;
    return stub->GetUploading(&ctx, get, &response).ok();
  };
  const auto web_call = [&] {
    std::string got;
    return SendAll(web_fd, post) &&
           ReadUntil(web_fd, &got, [](const std::string& b) {
             return absl::EndsWith(b, "\r\n0\r\n\r\n");
           }) &&
           absl::StrContains(got, "grpc-status: 0");
  };
  for (int i = 0; i < 200; ++i) {  // warm-up: connections, cache
    native_call();
    web_call();
  }
  std::vector<double> native_us, web_us, native_cpu_us, web_cpu_us;
  int failures = 0;
  for (int round = 0; round < absl::GetFlag(FLAGS_unary_rounds); ++round) {
    for (bool web : {false, true}) {
      const Usage before = ReadUsage(pid);
      const absl::Time start = absl::Now();
      for (int i = 0; i < calls; ++i) failures += (web ? web_call() : native_call()) ? 0 : 1;
      const double us = absl::ToDoubleMicroseconds(absl::Now() - start) / calls;
      const double cpu = (ReadUsage(pid).cpu_seconds - before.cpu_seconds) * 1e6 / calls;
      (web ? web_us : native_us).push_back(us);
      (web ? web_cpu_us : native_cpu_us).push_back(cpu);
    }
  }
  close(web_fd);
  Print("unary_failures", failures);
  Print("unary_native_latency_us", Median(native_us), 1);
  Print("unary_web_latency_us", Median(web_us), 1);
  Print("unary_web_vs_native_latency_ratio", Median(web_us) / Median(native_us), 2);
  Print("unary_native_server_cpu_us_per_call", Median(native_cpu_us), 1);
  Print("unary_web_server_cpu_us_per_call", Median(web_cpu_us), 1);
  Print("unary_web_vs_native_cpu_ratio",
        Median(native_cpu_us) > 0 ? Median(web_cpu_us) / Median(native_cpu_us) : 0, 2);

  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  metrica.Stop();
  return opened == watches && failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace uploadwatch

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  return uploadwatch::Run();
}
