#ifndef UPLOADWATCH_SERVICE_REDIS_REDIS_CONNECTION_H_
#define UPLOADWATCH_SERVICE_REDIS_REDIS_CONNECTION_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/metrica/backoff.h"
#include "service/redis/event_loop.h"

struct redisAsyncContext;

namespace uploadwatch::redis {

// Where a connection stands. Everything built on it reads kConnected as
// "shared mode" and anything else as "fallback mode".
enum class ConnectionState {
  kConnecting,  // never connected yet
  kConnected,   // connected, authenticated, answering
  kDegraded,    // was connected (or tried), now unreachable: reconnecting
};
absl::string_view ConnectionStateName(ConnectionState state);

// One Redis reply, owned (hiredis frees its own after the callback). Error
// replies never arrive as a RedisReply: they become a non-OK status.
struct RedisReply {
  enum class Type { kNil, kString, kStatus, kInteger, kArray };
  Type type = Type::kNil;
  std::string str;  // kString, kStatus
  int64_t integer = 0;  // kInteger
  std::vector<RedisReply> elements;  // kArray
};

// A Lua script and its SHA-1, sent as EVALSHA and, on NOSCRIPT (a restarted
// or flushed Redis), once as EVAL, which also caches it again.
class RedisScript {
 public:
  explicit RedisScript(std::string source);
  const std::string& source() const { return source_; }
  const std::string& sha1() const { return sha1_; }

 private:
  std::string source_;
  std::string sha1_;
};

struct RedisOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  // Sent with AUTH when non-empty; never logged or put in an error.
  std::string password;
  // Put before every key (`--redis_key_prefix`), so that several deployments
  // share one Redis.
  std::string key_prefix = "uploadwatch:";
  absl::Duration connect_timeout = absl::Seconds(1);
  // A command without an answer in this time fails with DEADLINE_EXCEEDED
  // and the connection is dropped and re-made: a Redis that stalls is treated
  // like one that is gone.
  absl::Duration command_timeout = absl::Seconds(1);
  BackoffOptions reconnect_backoff = {absl::Milliseconds(100), 1.6, 0.2,
                                      absl::Seconds(5)};
  // CLIENT SETNAME, for `CLIENT LIST` on the Redis side. Empty: none.
  std::string client_name;
};

// Parses `--redis=HOST:PORT`.
absl::Status ParseRedisAddress(absl::string_view address, RedisOptions* options);
// Reads `--redis_password_file` (trailing newline dropped). The error names
// the file, never its content.
absl::StatusOr<std::string> ReadPasswordFile(const std::string& path);

// A unique name for this process in Redis (lease owner, holder ids): host
// name, pid and a random suffix.
std::string MakeReplicaId();

// Counters for metrics and tests.
struct ConnectionStats {
  int64_t commands = 0;     // sent to Redis
  int64_t failures = 0;     // error replies, timeouts and lost connections
  int64_t connects = 0;     // successful (re)connects
  int64_t noscript = 0;     // EVALSHA answered NOSCRIPT, retried as EVAL
};

// One asynchronous Redis connection on an EventLoop: connects (with AUTH),
// reconnects with backoff for as long as it lives, and sends commands.
//
// Thread-safe. Every callback runs on the loop thread, exactly once, and must
// not block; it may send further commands. While the state is not kConnected
// a command fails at once (UNAVAILABLE) instead of waiting for Redis: that is
// what lets callers fall back without delay.
//
// Statuses: UNAVAILABLE (not connected, or the connection was lost before
// the answer), DEADLINE_EXCEEDED (no answer within the timeout),
// FAILED_PRECONDITION with Redis's own message (an error reply).
//
// A host name is resolved by hiredis at each connect attempt, synchronously,
// on the loop thread: Redis work waits for the resolver then, callers never
// do. Give an IP address (or a local resolver) where that matters.
class RedisConnection {
 public:
  using ReplyCallback = absl::AnyInvocable<void(absl::StatusOr<RedisReply>)>;
  using StateListener = absl::AnyInvocable<void(ConnectionState)>;

  // `loop` is not owned and must outlive this object. Starts connecting.
  RedisConnection(RedisOptions options, EventLoop* loop);
  // Fails what is still pending with UNAVAILABLE. Not on the loop thread.
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // `timeout` zero: options.command_timeout.
  void Command(std::vector<std::string> argv, ReplyCallback done,
               absl::Duration timeout = absl::ZeroDuration());
  // EVALSHA with fallback to EVAL on NOSCRIPT.
  void Eval(const RedisScript& script, std::vector<std::string> keys,
            std::vector<std::string> args, ReplyCallback done);

  // Loads `script` into Redis now (when connected) and after every
  // reconnect, before the connection counts as connected, so that EVALSHA
  // finds it even on a restarted Redis. `script` must outlive this object.
  void Preload(const RedisScript& script);

  // `name` with the key prefix.
  std::string Key(absl::string_view name) const;
  ConnectionState state() const { return state_.load(); }
  ConnectionStats stats() const;
  EventLoop* loop() const { return loop_; }

  // Called on the loop thread after every change of state (not with the
  // current one). Returns an id for RemoveStateListener.
  int AddStateListener(StateListener listener);
  // After it returns the listener is not running and never runs again.
  void RemoveStateListener(int id);

 private:
  struct Pending;
  static void OnReply(redisAsyncContext* ac, void* reply, void* privdata);
  static void OnConnect(const redisAsyncContext* ac, int status);
  static void OnDisconnect(const redisAsyncContext* ac, int status);

  // Loop thread only, below.
  void Connect();
  void Handshake();
  void ScheduleReconnect();
  void DropContext();  // frees the context; pending commands fail
  void ContextGone();  // hiredis freed (or is freeing) the context
  void SetState(ConnectionState state);
  void Send(std::vector<std::string> argv, ReplyCallback done,
            absl::Duration timeout, bool handshake);
  void Complete(Pending* pending, absl::StatusOr<RedisReply> result);

  const RedisOptions options_;
  EventLoop* const loop_;
  BitGenRandomSource random_;
  std::atomic<ConnectionState> state_{ConnectionState::kConnecting};
  std::atomic<int64_t> commands_{0}, failures_{0}, connects_{0}, noscript_{0};

  absl::Mutex listeners_mu_;
  int next_listener_ ABSL_GUARDED_BY(listeners_mu_) = 1;
  absl::flat_hash_map<int, std::shared_ptr<StateListener>> listeners_
      ABSL_GUARDED_BY(listeners_mu_);

  // Loop thread only.
  bool closing_ = false;
  redisAsyncContext* context_ = nullptr;
  bool handshake_done_ = false;
  bool handshake_failure_logged_ = false;
  FdWatch watch_;
  Backoff backoff_;
  EventLoop::TimerId connect_timer_ = 0;
  EventLoop::TimerId reconnect_timer_ = 0;
  std::vector<const RedisScript*> preloaded_;
};

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_REDIS_CONNECTION_H_
