#include "bench/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

extern char** environ;

namespace uploadwatch::bench {
namespace {

constexpr absl::string_view kReadyMarker = "serving on port ";

// The port in the first "serving on port N" line of the log, if any yet.
int PortInLog(const std::string& log_path) {
  std::ifstream in(log_path);
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view text = line;
    const size_t at = text.find(kReadyMarker);
    if (at == absl::string_view::npos) continue;
    absl::string_view rest = text.substr(at + kReadyMarker.size());
    const size_t end = rest.find_first_not_of("0123456789");
    int port = 0;
    if (absl::SimpleAtoi(rest.substr(0, end), &port)) return port;
  }
  return 0;
}

// VmRSS, VmHWM and Threads from /proc/<pid>/status.
void ReadStatus(pid_t pid, ProcessUsage& usage) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    int64_t value = 0;
    auto number = [&](absl::string_view key) {
      if (!absl::ConsumePrefix(&rest, key)) return false;
      rest = absl::StripAsciiWhitespace(rest);
      absl::ConsumeSuffix(&rest, " kB");
      return absl::SimpleAtoi(rest, &value);
    };
    if (number("VmRSS:")) {
      usage.rss_kb = value;
    } else if (number("VmHWM:")) {
      usage.hwm_kb = value;
    } else if (number("Threads:")) {
      usage.threads = static_cast<int>(value);
    }
  }
}

// utime + stime from /proc/<pid>/stat (fields 14 and 15, after the comm).
double ReadCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::stringstream text;
  text << in.rdbuf();
  const std::string stat = text.str();
  const size_t comm_end = stat.rfind(')');
  if (comm_end == std::string::npos) return 0;
  const std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(stat).substr(comm_end + 2), ' ');
  // fields[0] is field 3 (state); utime is field 14.
  int64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return 0;
  }
  return static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
}

}  // namespace

absl::StatusOr<ProcessUsage> ReadUsage(pid_t pid) {
  ProcessUsage usage;
  ReadStatus(pid, usage);
  if (usage.threads == 0) {
    return absl::NotFoundError(absl::StrCat("no process ", pid));
  }
  usage.cpu_seconds = ReadCpuSeconds(pid);
  return usage;
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv, const std::vector<std::string>& env,
    const std::string& log_path, absl::Duration timeout) {
  // Everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls until exec.
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const int log_fd =
      open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot open ", log_path, ": ", std::strerror(errno)));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the harness died meanwhile
    // A shell starts background jobs with SIGINT ignored; the servers wait
    // for their stop signals with sigwait, which ignored signals never reach.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGINT, &dfl, nullptr);
    sigaction(SIGTERM, &dfl, nullptr);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    close_range(3, ~0U, 0);  // no sockets of the harness in the server
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  close(log_fd);
  std::unique_ptr<ChildProcess> child(new ChildProcess(pid));
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    child->port_ = PortInLog(log_path);
    if (child->port_ != 0) return child;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      child->reaped_ = true;
      return absl::InternalError(
          absl::StrCat(argv[0], " exited before serving (wait status ", status,
                       "); see ", log_path));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError(
      absl::StrCat(argv[0], " did not start serving; see ", log_path));
}

ChildProcess::~ChildProcess() { Stop(); }

void ChildProcess::Signal(int signal, int value) {
  if (reaped_) return;
  sigval v{};
  v.sival_int = value;
  sigqueue(pid_, signal, v);
}

int ChildProcess::Stop(absl::Duration grace) {
  if (reaped_) return wait_status_;
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + grace;
  while (waitpid(pid_, &wait_status_, WNOHANG) != pid_) {
    if (absl::Now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &wait_status_, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  reaped_ = true;
  return wait_status_;
}

absl::Status RunCommand(const std::vector<std::string>& argv,
                        const std::string& log_path) {
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int log_fd =
      open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot open ", log_path, ": ", std::strerror(errno)));
  }
  const pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    close_range(3, ~0U, 0);
    execve(args[0], args.data(), environ);
    _exit(127);
  }
  close(log_fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(argv[0], " failed (wait status ",
                                            status, "); see ", log_path));
  }
  return absl::OkStatus();
}

PeakSampler::PeakSampler(pid_t pid, absl::Duration every)
    : pid_(pid), every_(every), thread_([this] { Sample(); }) {}

PeakSampler::~PeakSampler() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void PeakSampler::Sample() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    if (absl::StatusOr<ProcessUsage> now = ReadUsage(pid_); now.ok()) {
      peak_.rss_kb = std::max(peak_.rss_kb, now->rss_kb);
      peak_.threads = std::max(peak_.threads, now->threads);
    }
    mu_.AwaitWithTimeout(absl::Condition(&stop_), every_);
  }
}

ProcessUsage PeakSampler::Peak() {
  absl::MutexLock lock(&mu_);
  ProcessUsage out = peak_;
  if (absl::StatusOr<ProcessUsage> now = ReadUsage(pid_); now.ok()) {
    out.hwm_kb = now->hwm_kb;
    out.cpu_seconds = now->cpu_seconds;
    out.rss_kb = std::max(out.rss_kb, now->rss_kb);
    out.threads = std::max(out.threads, now->threads);
  }
  return out;
}

}  // namespace uploadwatch::bench
