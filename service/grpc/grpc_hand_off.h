#ifndef UPLOADWATCH_SERVICE_GRPC_GRPC_HAND_OFF_H_
#define UPLOADWATCH_SERVICE_GRPC_GRPC_HAND_OFF_H_

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace uploadwatch {

// Tells ThreadSanitizer about the ordering gRPC gives a reactor: whatever a
// thread did before starting an operation (the reactor's construction,
// StartWrite, Finish) happens before the reaction gRPC runs for it, on
// another thread (OnWriteDone, OnCancel, OnDone). gRPC orders the two inside
// libgrpc, which is not instrumented, so without this TSan reports the
// reaction's first touch of the reactor (even of its mutex) as a race.
// Call HandOffToGrpc(this) right before starting an operation (and at the
// end of the constructor), ReceiveFromGrpc(this) first in every reaction.
// No code at all outside TSan builds: gRPC's ordering is real.
inline void HandOffToGrpc(const void* reactor) {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(const_cast<void*>(reactor));
#else
  (void)reactor;
#endif
}

inline void ReceiveFromGrpc(const void* reactor) {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(const_cast<void*>(reactor));
#else
  (void)reactor;
#endif
}

}  // namespace uploadwatch

#endif  // UPLOADWATCH_SERVICE_GRPC_GRPC_HAND_OFF_H_
