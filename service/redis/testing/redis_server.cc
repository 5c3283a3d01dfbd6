#include "service/redis/testing/redis_server.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace uploadwatch::redis::testing {

namespace {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return 0;
  }
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

std::string RedisServerBinary() {
  const char* env = std::getenv("REDIS_SERVER");
  return env != nullptr ? env : "/usr/bin/redis-server";
}

}  // namespace

bool WaitFor(const std::function<bool()>& condition, absl::Duration limit) {
  absl::Time until = absl::Now() + limit;
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= until) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

RedisOptions ClientOptions(const RedisServer& server) {
  RedisOptions o;
  o.port = server.port();
  o.key_prefix = "t:";
  o.reconnect_backoff.initial = absl::Milliseconds(20);
  o.reconnect_backoff.max = absl::Milliseconds(200);
  return o;
}

RedisServer::RedisServer(std::string password) : password_(std::move(password)) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string pattern = absl::StrCat(tmp ? tmp : "/tmp", "/redis-XXXXXX");
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) != nullptr) dir_ = buf.data();
}

RedisServer::~RedisServer() { Kill(); }

std::string RedisServer::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

absl::Status RedisServer::Start() {
  if (pid_ > 0) return absl::FailedPreconditionError("already running");
  // A port found free may be taken before redis binds it: try a few.
  // A restart keeps its port, so that clients reconnect to it.
  const bool restart = port_ != 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (!restart) port_ = FreePort();
    std::vector<std::string> args = {
        RedisServerBinary(), "--port",     std::to_string(port_),
        "--bind",            "127.0.0.1",  "--save",
        "",                  "--appendonly", "no",
        "--dir",             dir_,         "--daemonize",
        "no",                "--loglevel", "warning"};
    if (!password_.empty()) {
      args.push_back("--requirepass");
      args.push_back(password_);
    }
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      std::perror("execv redis-server");
      _exit(127);
    }
    bool died = false;
    bool up = WaitFor(
        [&] {
          int status;
          if (waitpid(pid_, &status, WNOHANG) == pid_) {
            died = true;
            return true;
          }
          return Run({"PING"}).ok();
        },
        absl::Seconds(10));
    if (died) {
      pid_ = -1;
      continue;
    }
    if (up) return absl::OkStatus();
    Kill();
  }
  return absl::UnavailableError("redis-server did not start");
}

void RedisServer::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGCONT);
  kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void RedisServer::Pause() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}

void RedisServer::Resume() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

absl::StatusOr<std::string> RedisServer::Run(
    const std::vector<std::string>& argv) {
  timeval tv{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
  if (c == nullptr || c->err) {
    if (c) redisFree(c);
    return absl::UnavailableError("cannot connect");
  }
  redisSetTimeout(c, tv);
  auto command = [&](const std::vector<std::string>& a) -> redisReply* {
    std::vector<const char*> p;
    std::vector<size_t> l;
    for (auto& s : a) {
      p.push_back(s.data());
      l.push_back(s.size());
    }
    return static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(a.size()), p.data(), l.data()));
  };
  if (!password_.empty()) {
    redisReply* r = command({"AUTH", password_});
    if (r) freeReplyObject(r);
  }
  redisReply* r = command(argv);
  absl::StatusOr<std::string> out;
  if (r == nullptr) {
    out = absl::UnavailableError("no reply");
  } else if (r->type == REDIS_REPLY_ERROR) {
    out = absl::FailedPreconditionError(std::string(r->str, r->len));
  } else if (r->type == REDIS_REPLY_INTEGER) {
    out = std::to_string(r->integer);
  } else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
    out = std::string(r->str, r->len);
  } else if (r->type == REDIS_REPLY_ARRAY) {
    out = std::to_string(r->elements);  // the count
  } else {
    out = std::string();
  }
  if (r) freeReplyObject(r);
  redisFree(c);
  return out;
}

long long RedisServer::Integer(const std::vector<std::string>& argv) {
  auto r = Run(argv);
  if (!r.ok()) return -1;
  try {
    return std::stoll(*r);
  } catch (...) {
    return -1;
  }
}

}  // namespace uploadwatch::redis::testing
