#include "service/redis/redis_connection.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace uploadwatch::redis {

absl::string_view ConnectionStateName(ConnectionState state) {
  switch (state) {
    case ConnectionState::kConnecting:
      return "connecting";
    case ConnectionState::kConnected:
      return "connected";
    case ConnectionState::kDegraded:
      return "degraded";
  }
  return "unknown";
}

RedisScript::RedisScript(std::string source) : source_(std::move(source)) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(source_.data()), source_.size(),
       digest);
  for (unsigned char b : digest) absl::StrAppendFormat(&sha1_, "%02x", b);
}

absl::Status ParseRedisAddress(absl::string_view address,
                               RedisOptions* options) {
  size_t colon = address.rfind(':');
  int port = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port <= 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--redis must be HOST:PORT (e.g. 127.0.0.1:6379), got \"", address,
        "\""));
  }
  options->host = std::string(address.substr(0, colon));
  options->port = port;
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadPasswordFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read the Redis password file ", path));
  }
  std::stringstream content;
  content << in.rdbuf();
  std::string password = content.str();
  while (!password.empty() &&
         (password.back() == '\n' || password.back() == '\r')) {
    password.pop_back();
  }
  if (password.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the Redis password file ", path, " is empty"));
  }
  return password;
}

std::string MakeReplicaId() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = 0;
  absl::BitGen gen;
  return absl::StrCat(host[0] ? host : "replica", "-", getpid(), "-",
                      absl::Uniform<uint32_t>(gen));
}

namespace {

RedisReply ConvertReply(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) {
        out.elements.push_back(ConvertReply(r->element[i]));
      }
      break;
    default:
      out.type = RedisReply::Type::kNil;
  }
  return out;
}

RedisConnection* Self(const redisAsyncContext* ac) {
  return static_cast<RedisConnection*>(ac->data);
}

}  // namespace

struct RedisConnection::Pending {
  RedisConnection* connection;
  ReplyCallback done;  // empty once completed
  EventLoop::TimerId timer = 0;
};

RedisConnection::RedisConnection(RedisOptions options, EventLoop* loop)
    : options_(std::move(options)),
      loop_(loop),
      backoff_(options_.reconnect_backoff, &random_) {
  watch_.on_readable = [this] {
    if (context_ != nullptr) redisAsyncHandleRead(context_);
  };
  watch_.on_writable = [this] {
    if (context_ != nullptr) redisAsyncHandleWrite(context_);
  };
  loop_->Post([this] { Connect(); });
}

RedisConnection::~RedisConnection() {
  loop_->RunSync([this] {
    closing_ = true;
    loop_->Cancel(connect_timer_);
    loop_->Cancel(reconnect_timer_);
    DropContext();
    loop_->Unwatch(&watch_);
  });
}

std::string RedisConnection::Key(absl::string_view name) const {
  return absl::StrCat(options_.key_prefix, name);
}

ConnectionStats RedisConnection::stats() const {
  return {commands_.load(), failures_.load(), connects_.load(),
          noscript_.load()};
}

int RedisConnection::AddStateListener(StateListener listener) {
  absl::MutexLock lock(&listeners_mu_);
  int id = next_listener_++;
  listeners_.emplace(id, std::make_shared<StateListener>(std::move(listener)));
  return id;
}

void RedisConnection::RemoveStateListener(int id) {
  // Listeners only run on the loop: once this ran there, none is running.
  loop_->RunSync([this, id] {
    absl::MutexLock lock(&listeners_mu_);
    listeners_.erase(id);
  });
}

void RedisConnection::SetState(ConnectionState state) {
  // The state changes at once (callbacks of failed commands already see it);
  // listeners hear of it from the loop, never from inside hiredis.
  if (state_.exchange(state) == state) return;
  loop_->Post([this, state] {
    if (closing_) return;
    std::vector<std::shared_ptr<StateListener>> listeners;
    {
      absl::MutexLock lock(&listeners_mu_);
      for (auto& [id, l] : listeners_) listeners.push_back(l);
    }
    for (auto& l : listeners) (*l)(state);
  });
}

void RedisConnection::Connect() {
  reconnect_timer_ = 0;
  if (closing_ || context_ != nullptr) return;
  handshake_done_ = false;
  redisAsyncContext* ac =
      redisAsyncConnect(options_.host.c_str(), options_.port);
  if (ac == nullptr || ac->err) {
    if (ac != nullptr) redisAsyncFree(ac);
    SetState(ConnectionState::kDegraded);
    ScheduleReconnect();
    return;
  }
  context_ = ac;
  ac->data = this;
  ac->ev.data = this;
  ac->ev.addRead = [](void* p) {
    auto* self = static_cast<RedisConnection*>(p);
    self->watch_.want_read = true;
    self->loop_->Watch(&self->watch_);
  };
  ac->ev.delRead = [](void* p) {
    static_cast<RedisConnection*>(p)->watch_.want_read = false;
  };
  ac->ev.addWrite = [](void* p) {
    auto* self = static_cast<RedisConnection*>(p);
    self->watch_.want_write = true;
    self->loop_->Watch(&self->watch_);
  };
  ac->ev.delWrite = [](void* p) {
    static_cast<RedisConnection*>(p)->watch_.want_write = false;
  };
  ac->ev.cleanup = [](void* p) { static_cast<RedisConnection*>(p)->ContextGone(); };
  watch_.fd = ac->c.fd;
  watch_.want_read = watch_.want_write = false;
  redisAsyncSetConnectCallback(ac, &RedisConnection::OnConnect);
  redisAsyncSetDisconnectCallback(ac, &RedisConnection::OnDisconnect);
  connect_timer_ = loop_->RunAfter(options_.connect_timeout, [this] {
    connect_timer_ = 0;
    if (!handshake_done_) DropContext();
  });
}

void RedisConnection::OnConnect(const redisAsyncContext* ac, int status) {
  // On failure hiredis frees the context right after this; cleanup follows.
  if (status == REDIS_OK) {
    RedisConnection* self = Self(ac);
    self->loop_->Post([self] { self->Handshake(); });
  }
}

void RedisConnection::OnDisconnect(const redisAsyncContext*, int) {
  // Everything is done in ContextGone, which every way of losing the context
  // goes through.
}

void RedisConnection::Handshake() {
  if (context_ == nullptr || closing_) return;
  auto fail = [this](const absl::Status& status, absl::string_view step) {
    // Never the password: only which step failed and Redis's reason; once
    // until a handshake succeeds, not at every retry.
    if (!handshake_failure_logged_) std::fprintf(stderr, "uploadwatch: redis %s:%d: %s failed: %s\n",
                 options_.host.c_str(), options_.port,
                 std::string(step).c_str(), status.ToString().c_str());
    handshake_failure_logged_ = true;
    DropContext();
  };
  if (!options_.password.empty()) {
    Send({"AUTH", options_.password},
         [this, fail](absl::StatusOr<RedisReply> r) {
           if (!r.ok()) fail(r.status(), "AUTH");
         },
         options_.command_timeout, /*handshake=*/true);
  }
  if (!options_.client_name.empty()) {
    Send({"CLIENT", "SETNAME", options_.client_name},
         [](absl::StatusOr<RedisReply>) {}, options_.command_timeout, true);
  }
  for (const RedisScript* script : preloaded_) {
    Send({"SCRIPT", "LOAD", script->source()},
         [](absl::StatusOr<RedisReply>) {}, options_.command_timeout, true);
  }
  // Replies come in order: the PING's means AUTH went through.
  Send({"PING"},
       [this, fail](absl::StatusOr<RedisReply> r) {
         if (!r.ok()) {
           if (context_ != nullptr) fail(r.status(), "PING");
           return;
         }
         if (context_ == nullptr || closing_) return;
         handshake_done_ = true;
         handshake_failure_logged_ = false;
         loop_->Cancel(connect_timer_);
         connect_timer_ = 0;
         backoff_ = Backoff(options_.reconnect_backoff, &random_);
         connects_.fetch_add(1);
         SetState(ConnectionState::kConnected);
       },
       options_.command_timeout, true);
}

void RedisConnection::DropContext() {
  if (context_ == nullptr) return;
  redisAsyncContext* ac = context_;
  // Runs the pending callbacks with no reply, then cleanup -> ContextGone.
  redisAsyncFree(ac);
}

void RedisConnection::ContextGone() {
  context_ = nullptr;
  handshake_done_ = false;
  watch_.want_read = watch_.want_write = false;
  loop_->Unwatch(&watch_);
  watch_.fd = -1;
  loop_->Cancel(connect_timer_);
  connect_timer_ = 0;
  if (closing_) return;
  SetState(ConnectionState::kDegraded);
  ScheduleReconnect();
}

void RedisConnection::ScheduleReconnect() {
  if (closing_ || reconnect_timer_ != 0 || context_ != nullptr) return;
  reconnect_timer_ = loop_->RunAfter(backoff_.NextDelay(), [this] { Connect(); });
}

void RedisConnection::Command(std::vector<std::string> argv, ReplyCallback done,
                              absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) timeout = options_.command_timeout;
  loop_->Post([this, argv = std::move(argv), done = std::move(done),
               timeout]() mutable {
    Send(std::move(argv), std::move(done), timeout, /*handshake=*/false);
  });
}

void RedisConnection::Send(std::vector<std::string> argv, ReplyCallback done,
                           absl::Duration timeout, bool handshake) {
  bool usable = context_ != nullptr && !closing_ &&
                (handshake || state_.load() == ConnectionState::kConnected);
  if (!usable) {
    failures_.fetch_add(1);
    done(absl::UnavailableError("Redis is not connected"));
    return;
  }
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* pending = new Pending{this, std::move(done)};
  if (redisAsyncCommandArgv(context_, &RedisConnection::OnReply, pending,
                            static_cast<int>(args.size()), args.data(),
                            lens.data()) != REDIS_OK) {
    ReplyCallback cb = std::move(pending->done);
    delete pending;
    failures_.fetch_add(1);
    cb(absl::UnavailableError("Redis connection is closing"));
    return;
  }
  commands_.fetch_add(1);
  pending->timer = loop_->RunAfter(timeout, [this, pending] {
    pending->timer = 0;
    Complete(pending, absl::DeadlineExceededError(
                          "Redis did not answer in time"));
    // A Redis that stalls is treated like one that is gone: re-connect.
    DropContext();
  });
}

void RedisConnection::OnReply(redisAsyncContext*, void* reply, void* privdata) {
  auto* pending = static_cast<Pending*>(privdata);
  RedisConnection* self = pending->connection;
  const auto* r = static_cast<const redisReply*>(reply);
  if (pending->done) {
    absl::StatusOr<RedisReply> result;
    if (r == nullptr) {
      result = absl::UnavailableError("lost the Redis connection");
    } else if (r->type == REDIS_REPLY_ERROR) {
      result = absl::FailedPreconditionError(std::string(r->str, r->len));
    } else {
      result = ConvertReply(r);
    }
    self->Complete(pending, std::move(result));
  }
  self->loop_->Cancel(pending->timer);
  delete pending;
}

void RedisConnection::Complete(Pending* pending,
                               absl::StatusOr<RedisReply> result) {
  if (!pending->done) return;
  if (!result.ok()) failures_.fetch_add(1);
  // Not from inside hiredis: the callback may send commands or drop things.
  loop_->Post([done = std::move(pending->done),
               result = std::move(result)]() mutable {
    done(std::move(result));
  });
}

void RedisConnection::Preload(const RedisScript& script) {
  loop_->Post([this, script = &script] {
    for (const RedisScript* s : preloaded_) {
      if (s->sha1() == script->sha1()) return;
    }
    preloaded_.push_back(script);
    if (state_.load() == ConnectionState::kConnected) {
      Send({"SCRIPT", "LOAD", script->source()},
           [](absl::StatusOr<RedisReply>) {}, options_.command_timeout, false);
    }
  });
}

void RedisConnection::Eval(const RedisScript& script,
                           std::vector<std::string> keys,
                           std::vector<std::string> args, ReplyCallback done) {
  auto build = [&](const std::string& verb, const std::string& body) {
    std::vector<std::string> argv = {verb, body, std::to_string(keys.size())};
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  };
  std::vector<std::string> evalsha = build("EVALSHA", script.sha1());
  std::vector<std::string> eval = build("EVAL", script.source());
  Command(std::move(evalsha),
          [this, eval = std::move(eval),
           done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
            if (!r.ok() && absl::StartsWith(r.status().message(), "NOSCRIPT")) {
              noscript_.fetch_add(1);
              Send(std::move(eval), std::move(done), options_.command_timeout,
                   false);
              return;
            }
            done(std::move(r));
          });
}

}  // namespace uploadwatch::redis
