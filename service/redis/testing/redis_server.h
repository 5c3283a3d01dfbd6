#ifndef UPLOADWATCH_SERVICE_REDIS_TESTING_REDIS_SERVER_H_
#define UPLOADWATCH_SERVICE_REDIS_TESTING_REDIS_SERVER_H_

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "service/redis/redis_connection.h"

namespace uploadwatch::redis::testing {

// A real redis-server on a free loopback port, in a temporary directory of
// its own, without persistence (`--save '' --appendonly no`). For tests only:
// its helpers block.
//
// Kill() is SIGKILL (what a crash or an OOM kill looks like); Start() again
// restarts it on the same port, empty.
class RedisServer {
 public:
  // `password` non-empty: started with --requirepass.
  explicit RedisServer(std::string password = "");
  ~RedisServer();  // kills it
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts it and waits (bounded) until it answers PING.
  absl::Status Start();
  void Kill();
  // SIGSTOP / SIGCONT: a Redis that holds connections but never answers.
  void Pause();
  void Resume();

  int port() const { return port_; }
  std::string address() const;

  // A blocking command on a fresh connection (test assertions only).
  absl::StatusOr<std::string> Run(const std::vector<std::string>& argv);
  // Runs `argv` and returns its integer reply (-1 on any failure).
  long long Integer(const std::vector<std::string>& argv);

 private:
  std::string password_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// Polls `condition` every few milliseconds until it holds or `limit` passes:
// for conditions that become true by Redis's own clock (TTLs) or by another
// thread, without fixed sleeps. True when it held.
bool WaitFor(const std::function<bool()>& condition,
             absl::Duration limit = absl::Seconds(10));

// Options for a client of `server`: key prefix "t:", reconnects within
// 200 ms so that tests of a restart do not wait long.
RedisOptions ClientOptions(const RedisServer& server);

// Starts an asynchronous operation with a completion callback and waits for
// its value: `Await<BudgetCharge>([&](auto done) { b.TryCharge(fp, done); })`.
template <typename T>
T Await(absl::FunctionRef<void(absl::AnyInvocable<void(T)>)> start) {
  absl::Notification done;
  std::optional<T> out;
  start([&](T value) {
    out.emplace(std::move(value));
    done.Notify();
  });
  done.WaitForNotification();
  return std::move(*out);
}

}  // namespace uploadwatch::redis::testing

#endif  // UPLOADWATCH_SERVICE_REDIS_TESTING_REDIS_SERVER_H_
