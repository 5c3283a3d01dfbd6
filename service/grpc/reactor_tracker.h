#ifndef UPLOADWATCH_SERVICE_GRPC_REACTOR_TRACKER_H_
#define UPLOADWATCH_SERVICE_GRPC_REACTOR_TRACKER_H_

#include "absl/synchronization/mutex.h"

namespace uploadwatch {

// The server's lifetime gate: counts the calls that may still touch the
// server's objects (hub, RPC log, metrics, limits) from gRPC's threads, so
// that the server is torn down only after the last of them let go. gRPC
// orders a reactor's OnDone before Server::Wait() returns too, but only
// inside its own code; this makes the guarantee ours and visible (to
// ThreadSanitizer as well), instead of an accident of gRPC's internals.
//
// Adopting it is one line: a Ticket member, declared FIRST in the reactor
// (members die in reverse order, so it dies last, after everything that
// touched the server), initialized with `deps.reactors->Enter()`. A reactor
// that `delete this` in OnDone then lets go as the very last step.
// Thread-safe.
class ReactorTracker {
 public:
  // One live call. Move-only; lets go when destroyed or at Release(),
  // whichever is first. After that the call must touch nothing of the server.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept : tracker_(other.tracker_) {
      other.tracker_ = nullptr;
    }
    Ticket& operator=(Ticket&& other) noexcept;
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket() { Release(); }

    // Lets go now (for a call whose last step is not a destructor, such as
    // a unary call's completion callback). Idempotent; not thread-safe.
    void Release();

   private:
    friend class ReactorTracker;
    explicit Ticket(ReactorTracker* tracker) : tracker_(tracker) {}
    ReactorTracker* tracker_ = nullptr;
  };

  ReactorTracker() = default;
  ReactorTracker(const ReactorTracker&) = delete;
  ReactorTracker& operator=(const ReactorTracker&) = delete;
  // Every Ticket must be gone (call WaitForNone first).
  ~ReactorTracker() = default;

  // A call starts: take a ticket before touching the server's objects.
  Ticket Enter();
  // Blocks until no ticket is live. Call once no new call can start
  // (after grpc::Server::Shutdown and Wait, when it returns at once in
  // practice) and before destroying what the calls use.
  void WaitForNone();
  // Tickets live now (for tests and stats).
  int live() const;

 private:
  void Leave();

  mutable absl::Mutex mu_;
  int live_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_REACTOR_TRACKER_H_
