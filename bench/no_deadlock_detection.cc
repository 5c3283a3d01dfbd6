// An LD_PRELOAD shim for experiments: turns off absl::Mutex deadlock
// detection in the process it is loaded into, before main() runs.
//
// Debian builds Abseil without NDEBUG, so detection is on by default: every
// Mutex::Lock updates a process-wide lock graph (GraphCycles), gRPC's own
// mutexes included. With this shim both servers run as if their main()
// called absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore):
//
//   shim=$(bazel info -c opt bazel-bin)/bench/libno_deadlock_detection.so
//   scripts/bench.sh --server_env=LD_PRELOAD=$shim
#include "absl/synchronization/mutex.h"

namespace {

__attribute__((constructor)) void TurnOffDeadlockDetection() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace
