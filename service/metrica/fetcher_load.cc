// Measures the fetcher: fires N concurrent GetUploading calls at a Metrica
// simulator (in a child process) and prints wall time, the fetcher process's
// threads and the per-token parallelism Metrica would have seen.
//
//   bazel run //service/metrica:fetcher_load -- --requests=1000 --rate=25
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "service/metrica/curl_metrica_client.h"
#include "service/simulator/fake_metrica.h"

ABSL_FLAG(int, requests, 1000, "concurrent GetUploading calls");
ABSL_FLAG(int, tokens, 1, "distinct OAuth tokens the calls are spread over");
ABSL_FLAG(double, rate, 0,
          "process-wide requests/s of the quota guard (0: no rate limit; the "
          "fetcher's default is 25)");
ABSL_FLAG(int, per_token, 3, "in-flight cap per token");
ABSL_FLAG(int, delay_ms, 0, "simulated Metrica latency per request");

namespace uploadwatch {
namespace {

constexpr int32_t kCounter = 2215573;

int ThreadCount() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    absl::string_view rest = line;
    int threads = 0;
    if (absl::ConsumePrefix(&rest, "Threads:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &threads)) {
      return threads;
    }
  }
  return -1;
}

std::string TokenName(int i) { return absl::StrCat("load-token-", i); }

// The simulator runs in a child process, so that its thread pool does not
// count among the fetcher's threads. Protocol over two pipes: the child writes
// its port; the parent writes one byte when done; the child answers with the
// highest per-token parallelism it saw, then exits.
int RunSimulator(int tokens, int to_parent, int from_parent) {
  FakeMetrica fake{FakeMetrica::Options()};
  if (!fake.Start().ok()) return 1;
  for (int i = 0; i < tokens; ++i) fake.GrantAccess(TokenName(i), kCounter);
  v1::Uploading uploading;
  uploading.set_id(12);
  uploading.set_status(v1::Uploading::MATCHED);
  fake.AddUploading(kCounter, uploading);
  if (absl::GetFlag(FLAGS_delay_ms) > 0) {
    FakeMetrica::Fault slow;
    slow.delay = absl::Milliseconds(absl::GetFlag(FLAGS_delay_ms));
    slow.times = -1;
    fake.InjectFault(slow);
  }
  const int port = fake.port();
  if (write(to_parent, &port, sizeof(port)) != sizeof(port)) return 1;
  char done;
  if (read(from_parent, &done, 1) != 1) return 1;
  int max_in_flight = 0;
  for (int i = 0; i < tokens; ++i) {
    max_in_flight = std::max(max_in_flight, fake.max_in_flight(TokenName(i)));
  }
  return write(to_parent, &max_in_flight, sizeof(max_in_flight)) ==
                 sizeof(max_in_flight)
             ? 0
             : 1;
}

int Main() {
  const int requests = absl::GetFlag(FLAGS_requests);
  const int tokens = std::max(1, absl::GetFlag(FLAGS_tokens));

  int up[2];
  int down[2];
  if (pipe(up) != 0 || pipe(down) != 0) return 1;
  const pid_t child = fork();  // before this process has any other thread
  if (child < 0) return 1;
  if (child == 0) _exit(RunSimulator(tokens, up[1], down[0]));
  int port = 0;
  if (read(up[0], &port, sizeof(port)) != sizeof(port)) {
    std::fprintf(stderr, "the simulator did not start\n");
    return 1;
  }
  const int threads_without_client = ThreadCount();

  CurlMetricaClient::Options options;
  options.base_url = absl::StrCat("http://127.0.0.1:", port);
  options.quota.requests_per_second = absl::GetFlag(FLAGS_rate);
  options.quota.max_in_flight_per_token = absl::GetFlag(FLAGS_per_token);
  absl::StatusOr<std::unique_ptr<CurlMetricaClient>> client =
      CurlMetricaClient::Create(options);
  if (!client.ok()) {
    std::fprintf(stderr, "client: %s\n", client.status().ToString().c_str());
    return 1;
  }

  absl::BlockingCounter done(requests);
  absl::Mutex mu;
  int ok = 0;
  std::string first_error;
  const absl::Time start = absl::Now();
  for (int i = 0; i < requests; ++i) {
    (*client)->GetUploading(
        TokenName(i % tokens), kCounter, 12, start + absl::Minutes(10),
        [&](absl::StatusOr<v1::GetUploadingResponse> result) {
          absl::MutexLock lock(&mu);
          if (result.ok()) {
            ++ok;
          } else if (first_error.empty()) {
            first_error = result.status().ToString();
          }
          done.DecrementCount();
        });
  }
  const int threads_with_calls = ThreadCount();
  done.Wait();
  const absl::Duration wall = absl::Now() - start;

  int max_in_flight = -1;
  if (write(down[1], "x", 1) != 1 ||
      read(up[0], &max_in_flight, sizeof(max_in_flight)) !=
          sizeof(max_in_flight)) {
    std::fprintf(stderr, "the simulator did not report\n");
  }
  waitpid(child, nullptr, 0);

  std::printf(
      "requests %d over %d token(s), rate limit %s, cap %d per token, "
      "simulated latency %d ms\n"
      "ok %d, wall time %s (%.0f requests/s)\n"
      "fetcher process threads: %d before the client, %d with %d calls "
      "outstanding\n"
      "max in flight per token seen by the simulator: %d\n",
      requests, tokens,
      options.quota.requests_per_second > 0
          ? absl::StrCat(options.quota.requests_per_second, "/s").c_str()
          : "none",
      options.quota.max_in_flight_per_token, absl::GetFlag(FLAGS_delay_ms), ok,
      absl::FormatDuration(wall).c_str(),
      requests / absl::ToDoubleSeconds(wall), threads_without_client,
      threads_with_calls, requests, max_in_flight);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("fetcher process CPU: user %.2f s, system %.2f s\n",
              usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6,
              usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6);
  if (!first_error.empty()) std::printf("first error: %s\n", first_error.c_str());
  return ok == requests ? 0 : 1;
}

}  // namespace
}  // namespace uploadwatch

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return uploadwatch::Main();
}
