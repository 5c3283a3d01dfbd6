#include "service/redis/event_loop.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace uploadwatch::redis {

namespace {

int MakeEventFd() {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) {
    // Without it the loop cannot be woken: nothing can work.
    std::perror("uploadwatch: eventfd");
    std::abort();
  }
  return fd;
}

}  // namespace

EventLoop::EventLoop() : wake_fd_(MakeEventFd()) {
  absl::Notification started;
  thread_ = std::thread([this, &started] {
    loop_thread_id_ = std::this_thread::get_id();
    started.Notify();
    Run();
  });
  started.WaitForNotification();
}

EventLoop::~EventLoop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  Wake();
  thread_.join();
  close(wake_fd_);
}

void EventLoop::Post(absl::AnyInvocable<void()> task) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    tasks_.push_back(std::move(task));
  }
  Wake();
}

EventLoop::TimerId EventLoop::RunAfter(absl::Duration delay,
                                       absl::AnyInvocable<void()> task) {
  TimerId id;
  {
    absl::MutexLock lock(&mu_);
    id = next_timer_++;
    if (stopping_) return id;
    absl::Time due = absl::Now() + std::max(delay, absl::ZeroDuration());
    timers_.emplace(std::make_pair(due, id), std::move(task));
    timer_due_.emplace(id, due);
  }
  Wake();
  return id;
}

void EventLoop::Cancel(TimerId id) {
  absl::MutexLock lock(&mu_);
  auto it = timer_due_.find(id);
  if (it == timer_due_.end()) return;
  timers_.erase(std::make_pair(it->second, id));
  timer_due_.erase(it);
}

void EventLoop::RunSync(absl::AnyInvocable<void()> task) {
  if (InLoopThread()) {
    task();
    return;
  }
  absl::Notification done;
  Post([&task, &done] {
    task();
    done.Notify();
  });
  done.WaitForNotification();
}

bool EventLoop::InLoopThread() const {
  return std::this_thread::get_id() == loop_thread_id_;
}

void EventLoop::Watch(FdWatch* watch) {
  if (std::find(watches_.begin(), watches_.end(), watch) == watches_.end()) {
    watches_.push_back(watch);
  }
}

void EventLoop::Unwatch(FdWatch* watch) {
  watches_.erase(std::remove(watches_.begin(), watches_.end(), watch),
                 watches_.end());
}

void EventLoop::Wake() {
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the loop will wake anyway.
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

void EventLoop::Run() {
  std::vector<pollfd> fds;
  std::vector<FdWatch*> polled;
  while (true) {
    // 1. Tasks, then due timers.
    std::vector<absl::AnyInvocable<void()>> ready;
    absl::Time now;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      ready.swap(tasks_);
      now = absl::Now();
    }
    for (auto& task : ready) task();
    bool ran = !ready.empty();
    // Due timers are taken one at a time, each only if it is still there:
    // a task or an earlier timer may cancel a later one (a reply that
    // arrived cancels its own timeout, whose Pending is then freed), and a
    // timer taken out in a batch could no longer be cancelled.
    absl::Duration wait = absl::InfiniteDuration();
    while (true) {
      absl::AnyInvocable<void()> timer;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
        if (timers_.empty()) break;
        if (timers_.begin()->first.first > now) {
          wait = timers_.begin()->first.first - now;
          break;
        }
        timer_due_.erase(timers_.begin()->first.second);
        timer = std::move(timers_.begin()->second);
        timers_.erase(timers_.begin());
      }
      timer();
      ran = true;
    }
    // Sockets are polled after every batch, even when more tasks keep coming:
    // a stream of commands must not keep their replies from being read.
    // (Tasks posted meanwhile wrote the eventfd: poll returns at once.)
    if (ran) wait = absl::ZeroDuration();

    // 2. Sockets.
    fds.clear();
    polled.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    for (FdWatch* w : watches_) {
      short events = (w->want_read ? POLLIN : 0) | (w->want_write ? POLLOUT : 0);
      if (w->fd < 0 || events == 0) continue;
      fds.push_back({w->fd, events, 0});
      polled.push_back(w);
    }
    int timeout_ms = -1;
    if (wait == absl::ZeroDuration()) {
      timeout_ms = 0;
    } else if (wait != absl::InfiniteDuration()) {
      timeout_ms = static_cast<int>(
          std::min<int64_t>(absl::ToInt64Milliseconds(wait) + 1, 60000));
    }
    int n = poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::perror("uploadwatch: poll");
      std::abort();
    }
    if (fds[0].revents & POLLIN) {
      uint64_t count;
      [[maybe_unused]] ssize_t r = read(wake_fd_, &count, sizeof(count));
    }
    for (size_t i = 0; i < polled.size(); ++i) {
      short revents = fds[i + 1].revents;
      if (revents == 0) continue;
      FdWatch* w = polled[i];
      // A callback may have unwatched (freed) this or a later watch.
      auto alive = [&] {
        return std::find(watches_.begin(), watches_.end(), w) !=
               watches_.end();
      };
      if (!alive()) continue;
      if ((revents & (POLLIN | POLLERR | POLLHUP)) && w->want_read) {
        w->on_readable();
      }
      if (!alive()) continue;
      if ((revents & (POLLOUT | POLLERR | POLLHUP)) && w->want_write) {
        w->on_writable();
      }
    }
  }
}

}  // namespace uploadwatch::redis
