// poll_scheduling_bench: what one poll round of a (token, counter) group
// costs the scheduler as the number of groups grows (issue 15). One token
// watches G counters (a counter watch each, so G groups), with a daily
// budget set so that the Pacer spreads it over the token's groups every
// round; Metrica is the in-memory fake and time is simulated, so a round is
// the hub's own work: the timer, the Pacer, the planner, the reader, the
// fake's answer and the observation (no network, no other thread).
//
// For each G in --groups it measures the process's CPU time over
// --intervals poll intervals and divides by the rounds polled (the fake's
// List requests), in --reps alternating repetitions (medians). Prints
// `name: value` lines like uploadwatch_bench:
//   scheduling_groups_<G>_cpu_us_per_round
//   scheduling_cpu_per_round_ratio   (largest G / smallest G; 1 when flat)
// scripts/bench.sh --phases=scheduling runs it. Instructions per round (the
// repeatable figure): run it under callgrind, one group count at a time,
//   valgrind --tool=callgrind --collect-atstart=no poll_scheduling_bench \
//     --reps=1 --groups=10000
// and divide the "Collected" instructions by scheduling_groups_10000_rounds.
#include <time.h>
#include <valgrind/callgrind.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/marshalling.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "service/auth/token.h"
#include "service/core/uploading_hub.h"
#include "service/testing/fake_metrica_client.h"
#include "service/testing/simulated_time.h"

ABSL_FLAG(std::vector<std::string>, groups,
          std::vector<std::string>({"100", "1000", "10000"}),
          "group counts to measure");
ABSL_FLAG(int, intervals, 5, "poll intervals measured per repetition");
ABSL_FLAG(int, reps, 5, "repetitions of every group count (alternating)");

namespace uploadwatch {
namespace {

namespace v1 = ::metrika::offline_conversions::v1;
using testing::FakeMetricaClient;
using testing::SimulatedTime;

constexpr absl::Duration kInterval = absl::Seconds(30);

// A counter watch that keeps nothing: delivery is not what is measured.
class NullSubscriber : public Subscriber {
 public:
  void OnState(const UploadingState&) override {}
  void OnError(const absl::Status&) override {}
};

double ProcessCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

// CPU microseconds per poll round with `groups` groups of one token.
// `rounds`: the rounds polled in the measured window.
double CpuPerRound(int groups, int* rounds_out) {
  SimulatedTime time;
  FakeMetricaClient client(&time);
  client.set_latency(absl::ZeroDuration());
  const Credentials credentials("poll-scheduling-bench-token");
  // A budget so large that it never stretches the interval, but set, so
  // that every round's next time goes through the budget's arithmetic.
  client.SetDailyUsage(credentials.fingerprint(),
                       QuotaUsage{.used = 0,
                                  .budget = int64_t{1} << 50,
                                  .resets_at = time.Now() + absl::Hours(24)});
  for (int c = 1; c <= groups; ++c) {
    v1::Uploading u;
    u.set_id(c);
    u.set_status(v1::Uploading::MATCHED);
    client.SetUploading(c, u);
  }
  UploadingHub::Options options;
  options.poll_interval = kInterval;
  options.max_watches = static_cast<size_t>(groups) + 1;
  // Polls are not what the per-token cap is about here: every group's
  // round goes out when its timer fires.
  options.max_in_flight_per_token = groups + 1;
  auto hub = std::make_unique<UploadingHub>(&client, &time, &time, &time,
                                            options);
  std::vector<NullSubscriber> subscribers(groups);
  for (int c = 1; c <= groups; ++c) {
    const absl::Status s = hub->SubscribeCounter(
        credentials, c, v1::Uploading::BASIC, &subscribers[c - 1]);
    if (!s.ok()) {
      std::fprintf(stderr, "poll_scheduling_bench: %s\n",
                   s.ToString().c_str());
      std::exit(1);
    }
  }
  time.Advance(kInterval);  // the first states, and the timers settle
  client.ClearLog();
  const double before = ProcessCpuSeconds();
  // Under `valgrind --tool=callgrind --collect-atstart=no` only these rounds
  // are counted (no-ops otherwise): instructions per round, which neither
  // caches nor the machine's load move.
  CALLGRIND_TOGGLE_COLLECT;
  time.Advance(kInterval * absl::GetFlag(FLAGS_intervals));
  CALLGRIND_TOGGLE_COLLECT;
  const double cpu = ProcessCpuSeconds() - before;
  const int rounds = client.count("list");
  hub->Shutdown(absl::UnavailableError("bench over"));
  time.RunPending();
  if (rounds == 0) {
    std::fprintf(stderr, "poll_scheduling_bench: no rounds polled\n");
    std::exit(1);
  }
  *rounds_out = rounds;
  return 1e6 * cpu / rounds;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int Main() {
  // As the server does (service/main.cc): Debian's Abseil would otherwise
  // track every lock in a deadlock graph.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<int> counts;
  for (const std::string& g : absl::GetFlag(FLAGS_groups)) {
    counts.push_back(std::stoi(g));
  }
  std::sort(counts.begin(), counts.end());
  std::vector<std::vector<double>> samples(counts.size());
  std::vector<int> rounds(counts.size());
  for (int rep = 0; rep < absl::GetFlag(FLAGS_reps); ++rep) {
    for (size_t i = 0; i < counts.size(); ++i) {
      samples[i].push_back(CpuPerRound(counts[i], &rounds[i]));
    }
  }
  std::vector<double> medians;
  for (size_t i = 0; i < counts.size(); ++i) {
    medians.push_back(Median(samples[i]));
    std::printf("scheduling_groups_%d_cpu_us_per_round: %.2f\n", counts[i],
                medians.back());
    std::printf("scheduling_groups_%d_rounds: %d\n", counts[i],
                rounds[i]);
  }
  std::printf("scheduling_cpu_per_round_ratio: %.3f\n",
              medians.back() / medians.front());
  std::fflush(stdout);
  return 0;
}

}  // namespace
}  // namespace uploadwatch

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return uploadwatch::Main();
}
