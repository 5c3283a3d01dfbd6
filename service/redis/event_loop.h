#ifndef UPLOADWATCH_SERVICE_REDIS_EVENT_LOOP_H_
#define UPLOADWATCH_SERVICE_REDIS_EVENT_LOOP_H_

#include <cstdint>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace uploadwatch::redis {

// One file descriptor the loop polls. Owned by its user (a RedisConnection),
// registered and changed on the loop thread only.
struct FdWatch {
  int fd = -1;
  bool want_read = false;
  bool want_write = false;
  absl::AnyInvocable<void()> on_readable;
  absl::AnyInvocable<void()> on_writable;
};

// The one thread on which every Redis socket is read and written and every
// Redis callback runs: a poll(2) loop with timers and a task queue. Choose it
// so that no gRPC reaction or upstream callback ever waits on Redis: they post
// here and get an answer later.
//
// Post, RunAfter and Cancel are thread-safe; everything posted runs on the
// loop thread, in order. Tasks and timers still pending at destruction are
// dropped unrun. Work running on the loop must not block.
class EventLoop {
 public:
  using TimerId = uint64_t;

  EventLoop();  // starts the thread
  ~EventLoop();  // stops and joins it; must not run on the loop thread
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  void Post(absl::AnyInvocable<void()> task);
  TimerId RunAfter(absl::Duration delay, absl::AnyInvocable<void()> task);
  // No effect when the timer already ran or was cancelled. A timer cancelled
  // before it starts never runs, even when it is already due (so a task on
  // the loop may cancel a timer and free what the timer would touch).
  void Cancel(TimerId id);
  // Runs `task` on the loop and waits for it: for setup and teardown outside
  // the loop thread only (runs inline when called on it).
  void RunSync(absl::AnyInvocable<void()> task);

  bool InLoopThread() const;

  // Loop thread only. The watch must stay valid until Unwatch.
  void Watch(FdWatch* watch);
  void Unwatch(FdWatch* watch);

 private:
  void Run();
  void Wake();

  const int wake_fd_;  // an eventfd
  std::thread::id loop_thread_id_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<absl::AnyInvocable<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  TimerId next_timer_ ABSL_GUARDED_BY(mu_) = 1;
  // (due, id) -> task; ordered so the earliest is first.
  std::map<std::pair<absl::Time, TimerId>, absl::AnyInvocable<void()>> timers_
      ABSL_GUARDED_BY(mu_);
  std::map<TimerId, absl::Time> timer_due_ ABSL_GUARDED_BY(mu_);
  // Loop thread only.
  std::vector<FdWatch*> watches_;
  std::thread thread_;
};

}  // namespace uploadwatch::redis

#endif  // UPLOADWATCH_SERVICE_REDIS_EVENT_LOOP_H_
