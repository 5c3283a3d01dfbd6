#ifndef UPLOADWATCH_BENCH_CHILD_PROCESS_H_
#define UPLOADWATCH_BENCH_CHILD_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace uploadwatch::bench {

// What /proc says about a process.
struct ProcessUsage {
  int64_t rss_kb = 0;  // VmRSS: resident now
  int64_t hwm_kb = 0;  // VmHWM: peak resident since the process started
  int threads = 0;
  double cpu_seconds = 0;  // user + system
};

// Reads /proc/<pid>/status and /proc/<pid>/stat.
absl::StatusOr<ProcessUsage> ReadUsage(pid_t pid);

// A server under test in a process of its own, so that /proc shows its
// memory and threads alone. It dies with the harness (PR_SET_PDEATHSIG) even
// if the harness is killed. Not thread-safe.
class ChildProcess {
 public:
  // Runs `argv` with `env` ("NAME=value") added to the environment and
  // stdout+stderr appended to `log_path`; returns once the log shows
  // "serving on port N" (both servers print it when they accept).
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::vector<std::string>& argv, const std::vector<std::string>& env,
      const std::string& log_path, absl::Duration timeout = absl::Seconds(30));

  // Stops the process if Stop() was not called.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  int port() const { return port_; }

  // Sends `signal` with `value` (sigqueue), for the child's sigwaitinfo.
  void Signal(int signal, int value = 0);

  // SIGTERM, then SIGKILL if it has not exited after `grace`. Returns the
  // wait status. Idempotent.
  int Stop(absl::Duration grace = absl::Seconds(15));

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}

  pid_t pid_;
  int port_ = 0;
  bool reaped_ = false;
  int wait_status_ = 0;
};

// Runs `argv` (argv[0] an absolute path) to its end, its output appended to
// `log_path`; the exit status, or an error when it could not run or failed.
absl::Status RunCommand(const std::vector<std::string>& argv,
                        const std::string& log_path);

// Samples a process's usage every `every` on a thread of its own and keeps
// the peaks: thread counts move faster than one end-of-run reading shows.
class PeakSampler {
 public:
  PeakSampler(pid_t pid, absl::Duration every = absl::Milliseconds(50));
  ~PeakSampler();
  PeakSampler(const PeakSampler&) = delete;
  PeakSampler& operator=(const PeakSampler&) = delete;

  // Peak threads and VmRSS seen so far; hwm_kb and cpu_seconds as of now.
  ProcessUsage Peak();

 private:
  void Sample();

  const pid_t pid_;
  const absl::Duration every_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  ProcessUsage peak_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace uploadwatch::bench

#endif  // UPLOADWATCH_BENCH_CHILD_PROCESS_H_
