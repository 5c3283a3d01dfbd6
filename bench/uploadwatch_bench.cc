// uploadwatch_bench: the figures of issue 6, each next to a baseline measured
// in the same run on the same machine. Prints one `name: value` line per
// figure on stdout (progress goes to stderr).
//
//   scripts/bench.sh                       # builds with -c opt and runs this
//   uploadwatch_bench --phases=unary --unary_pairs=9   # paths: see the flags
//
// The servers run as child processes, so that /proc shows their memory,
// threads and CPU alone: the real `uploading_server` binary, and
// `bare_server` (the same generated service on the same gRPC build, doing
// nothing of its own). Metrica is a FakeMetrica inside this process, which
// the server reaches through --upstream_url: the harness changes uploadings
// on it and reads its request log. The load generator runs here too, on the
// callback API.
//
// Phases:
//   unary  cached GetUploading: QPS and server CPU per call, uploadwatch vs
//          bare, in alternating A/B runs; figures are medians over the pairs.
//   watch  10,000 WatchUploading streams on each server (100 uploadings,
//          100 connections): memory and threads with the streams open; the
//          fan-out latency from a change's observe_time to its last
//          watcher's receipt, in rounds where a few uploadings change and in
//          rounds where all change in the same poll, alternating between the
//          servers; cached GetUploading latency meanwhile; uploadwatch's
//          upstream requests per poll interval against naive polling.
//   watch100k  the watch phase at 100,000 streams (issue 15): 1,000
//          uploadings x 100 watchers over 1,000 connections, rounds in which
//          10% of the uploadings change (no all-change rounds); figures
//          named watch100k_*.
//   instructions  cached GetUploading under valgrind's callgrind, each
//          server in turn: machine instructions the server executes per
//          call (all its threads), which the machine's other users do not
//          move as they move time. Slow (valgrind runs the server ~50x
//          slower), so not in the default phases.
//   scheduling  runs --scheduling_binary (//service/core:poll_scheduling_bench):
//          CPU per poll round with 100 to 10,000 (token, counter) groups,
//          in simulated time; its figures are passed through.
//   web    gRPC-Web (issue 12): runs --web_bench_binary (//tests:web_bench),
//          which opens --web_watches gRPC-Web watches (one HTTP/1.1
//          connection each) on the server's web listener and reads its
//          threads (the listener's own, by name, and the process's) and RSS;
//          its figures are passed through as web_*. Then the same number of
//          native gRPC watches on a server of its own (web_native_*): bare
//          gRPC has no web listener to compare with.
//   counter --counter_watches WatchUploadings (counter) streams of one
//          counter of --counter_uploadings uploadings (issue 11): upstream
//          requests per poll interval, memory and threads with the streams
//          open, and the change-to-last-watcher latency in rounds where
//          every uploading changes in the same poll. The same dashboards
//          done with one WatchUploading per uploading are the watch phase.
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/child_process.h"
#include "bench/counter_load.h"
#include "bench/load.h"
#include "bench/replica_phase.h"
#include "bench/workload.h"
#include "grpcpp/grpcpp.h"
#include "metrika/offline_conversions/v1/uploading_service.grpc.pb.h"
#include "service/simulator/fake_metrica.h"

ABSL_FLAG(std::string, server_binary, "bazel-bin/service/uploading_server",
          "the uploadwatch server binary (build it with -c opt)");
ABSL_FLAG(std::string, bare_binary, "bazel-bin/bench/bare_server",
          "the bare baseline server binary");
ABSL_FLAG(std::vector<std::string>, server_env, {},
          "NAME=value pairs added to the environment of both servers (for "
          "experiments, e.g. GRPC_* settings)");
ABSL_FLAG(std::vector<std::string>, server_wrapper, {},
          "command and flags uploadwatch runs under in every phase, e.g. "
          "/usr/bin/valgrind,--tool=callgrind (then also raise "
          "--server_start_timeout); the instructions phase brings its own");
ABSL_FLAG(absl::Duration, server_start_timeout, absl::Seconds(30),
          "how long uploadwatch may take to start serving");
ABSL_FLAG(std::string, work_dir, "",
          "where the servers' logs go; a new temporary directory when empty");
ABSL_FLAG(std::string, phases, "unary,watch",
          "comma-separated: unary, watch, watch100k, counter, web, replicas, "
          "scheduling, "
          "instructions");
ABSL_FLAG(std::string, scheduling_binary, "",
          "scheduling phase: //service/core:poll_scheduling_bench");
ABSL_FLAG(std::string, web_bench_binary, "",
          "//tests:web_bench, for the web phase");
ABSL_FLAG(int, web_watches, 1000,
          "web phase: open watches, over gRPC-Web and then over native gRPC");
ABSL_FLAG(std::string, valgrind, "/usr/bin/valgrind",
          "instructions phase: valgrind");
ABSL_FLAG(std::string, callgrind_control, "/usr/bin/callgrind_control",
          "instructions phase: callgrind_control");
ABSL_FLAG(int64_t, callgrind_warmup_calls, 1000,
          "instructions phase: calls before counting starts");
ABSL_FLAG(int64_t, callgrind_calls, 4000,
          "instructions phase: calls counted on each server");
ABSL_FLAG(std::string, callgrind_out_dir, "",
          "instructions phase: where callgrind's profiles go (read them "
          "with callgrind_annotate); the work dir when empty");
ABSL_FLAG(std::vector<std::string>, uploadwatch_flags, {},
          "extra flags for the uploadwatch server, e.g. --max_watches=100000 "
          "for a watch phase beyond the default cap");
ABSL_FLAG(int, watch100k_uploadings, 1000,
          "watch100k phase: uploadings of its one counter, 100,000 / this "
          "watchers each (the phase gives the server --batch_max_pages to "
          "list them all in every poll round)");
ABSL_FLAG(int, watch100k_channels, 1000,
          "watch100k phase: client connections per server (the streams "
          "spread evenly over them)");
ABSL_FLAG(int, counter_watches, 1000,
          "counter phase: concurrent WatchUploadings streams of one counter");
ABSL_FLAG(int, counter_uploadings, 100,
          "counter phase: uploadings of the watched counter");
ABSL_FLAG(int, counter_channels, 10,
          "counter phase: client channels (one connection each)");
ABSL_FLAG(int, counter_rounds, 5,
          "counter phase: rounds in which every uploading changes");

ABSL_FLAG(int, unary_channels, 2, "client channels (one connection each)");
ABSL_FLAG(int, unary_outstanding, 16, "calls in flight per channel");
ABSL_FLAG(absl::Duration, unary_warmup, absl::Milliseconds(500),
          "warmup of each run (the connections stay up between runs)");
ABSL_FLAG(absl::Duration, unary_duration, absl::Seconds(2),
          "measured time of each run");
ABSL_FLAG(int, unary_pairs, 12,
          "A/B pairs (uploadwatch, then bare); figures are medians");

ABSL_FLAG(int, watches, 10000, "concurrent WatchUploading streams");
ABSL_FLAG(int, uploadings, 100,
          "uploadings they watch (one counter, one token)");
ABSL_FLAG(int, watch_channels, 100, "client channels (one connection each)");
ABSL_FLAG(absl::Duration, poll_interval, absl::Seconds(1),
          "the server's --poll_interval");
ABSL_FLAG(int, quiet_intervals, 5,
          "poll intervals without changes before the change rounds");
ABSL_FLAG(int, some_rounds, 20,
          "rounds in which --some_uploadings uploadings change together");
ABSL_FLAG(int, some_uploadings, 10,
          "uploadings that change together in a 'some' round");
ABSL_FLAG(int, all_rounds, 10,
          "rounds in which every watched uploading changes in the same poll");
ABSL_FLAG(absl::Duration, probe_every, absl::Milliseconds(10),
          "during the watch phase, one GetUploading per this interval on "
          "each server, to see how Gets fare during a fan-out");

namespace uploadwatch::bench {
namespace {

void Print(absl::string_view name, double value, int decimals = 0) {
  std::printf("%s: %.*f\n", std::string(name).c_str(), decimals, value);
  std::fflush(stdout);
}

void Progress(absl::string_view what) {
  std::fprintf(stderr, "bench: %s\n", std::string(what).c_str());
}

double LoadAverage() {
  double load = 0;
  return getloadavg(&load, 1) == 1 ? load : -1;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// Nearest-rank percentile of sorted, non-empty `values`, q in (0, 1].
double Percentile(const std::vector<double>& sorted, double q) {
  const size_t rank = std::clamp<size_t>(
      static_cast<size_t>(std::ceil(q * sorted.size())), 1, sorted.size());
  return sorted[rank - 1];
}

double Megabytes(int64_t kb) { return static_cast<double>(kb) / 1024; }

std::string Target(const ChildProcess& server) {
  return absl::StrCat("127.0.0.1:", server.port());
}

// What the unary benchmark and the probes ask: always cached by uploadwatch.
v1::GetUploadingRequest TerminalGet() {
  v1::GetUploadingRequest request;
  request.set_counter_id(kCounter);
  request.set_uploading_id(kTerminalId);
  return request;
}

// One blocking GetUploading; the serialized answer.
absl::StatusOr<std::string> GetOnce(
    std::shared_ptr<grpc::Channel> channel,
    const v1::GetUploadingRequest& request,
    absl::Duration deadline = absl::Seconds(10)) {
  auto stub = v1::UploadingService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  v1::GetUploadingResponse response;
  const grpc::Status status = stub->GetUploading(&context, request, &response);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("GetUploading failed: ", status.error_message()));
  }
  return response.SerializeAsString();
}

// One kind of change round on one server: the latency from a change's
// observe_time to its last watcher's receipt, and what the rounds cost.
struct FanOut {
  std::vector<double> latencies_ms;  // sorted; changes every watcher received
  int incomplete = 0;   // changes some watcher skipped (a later state won)
  int late_rounds = 0;  // rounds not received everywhere within the timeout
  double server_cpu_seconds = 0;
  double client_cpu_seconds = 0;  // this process: the fleet and the simulator
  int rounds = 0;
  // When the rounds ran (from the change to its last receipt), and the
  // GetUploading probe's latencies within them.
  std::vector<std::pair<absl::Time, absl::Time>> windows;
  std::vector<double> get_latencies_ms;  // sorted
};

void PrintLatencies(absl::string_view prefix,
                    const std::vector<double>& sorted) {
  if (sorted.empty()) return;
  Print(absl::StrCat(prefix, "_p50_ms"), Percentile(sorted, 0.5), 1);
  Print(absl::StrCat(prefix, "_p99_ms"), Percentile(sorted, 0.99), 1);
  Print(absl::StrCat(prefix, "_max_ms"), sorted.back(), 1);
}

void PrintFanOut(absl::string_view prefix, const FanOut& fan_out) {
  Print(absl::StrCat(prefix, "_samples"), fan_out.latencies_ms.size());
  Print(absl::StrCat(prefix, "_incomplete"), fan_out.incomplete);
  Print(absl::StrCat(prefix, "_late_rounds"), fan_out.late_rounds);
  Print(absl::StrCat(prefix, "_server_cpu_ms_per_round"),
        1000 * fan_out.server_cpu_seconds / fan_out.rounds, 1);
  Print(absl::StrCat(prefix, "_client_cpu_ms_per_round"),
        1000 * fan_out.client_cpu_seconds / fan_out.rounds, 1);
  PrintLatencies(absl::StrCat(prefix, "_latency"), fan_out.latencies_ms);
  Print(absl::StrCat(prefix, "_get_samples"), fan_out.get_latencies_ms.size());
  PrintLatencies(absl::StrCat(prefix, "_get_latency"),
                 fan_out.get_latencies_ms);
}

std::vector<double> SortedMillis(
    const std::vector<UnaryProbe::Sample>& samples) {
  std::vector<double> out;
  for (const UnaryProbe::Sample& s : samples) {
    out.push_back(absl::ToDoubleMilliseconds(s.latency));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A server under watch load: its process, its watchers, and how to make the
// first `uploadings` watched uploadings change (all to `marker`) on it.
struct WatchTarget {
  std::string name;
  std::unique_ptr<ChildProcess> server;
  std::unique_ptr<PeakSampler> sampler;
  WatchFleet fleet;
  std::function<void(int32_t marker, int uploadings)> change;
  absl::Duration open_time;           // until every watch had its first message
  ProcessUsage open_usage;            // right after that
  std::unique_ptr<UnaryProbe> probe;  // a dashboard's Gets meanwhile
  FanOut some, all;
};

class Harness {
 public:
  Harness(FakeMetrica* metrica, std::string work_dir)
      : metrica_(metrica), work_dir_(std::move(work_dir)) {}

  absl::Status RunUnary();
  // `prefix` names the figures ("watch"); `first_id` the uploadings'.
  absl::Status RunWatch(const std::string& prefix = "watch",
                        int64_t first_id = kFirstWatchedId);
  absl::Status RunWatch100k();
  absl::Status RunCounter();
  absl::Status RunInstructions();
  absl::Status RunScheduling();
  absl::Status RunWeb();

 private:
  // The real server against the in-process simulator, with its production
  // defaults except --poll_interval and the daily budget: a budget stretches
  // 1 s polls to its pace (one every ~20 s for 4000/day), which is the
  // scheduler's job but not what these figures are about. The one client
  // stands for many callers: no per-caller watch cap.
  // `wrapper` goes before the binary (valgrind and its flags).
  absl::StatusOr<std::unique_ptr<ChildProcess>> StartUploadwatch(
      absl::string_view name, std::vector<std::string> wrapper = {},
      absl::Duration timeout = absl::Seconds(30)) {
    std::vector<std::string> env = absl::GetFlag(FLAGS_server_env);
    env.push_back(absl::StrCat("METRIKA_OAUTH_TOKEN=", kToken));
    std::vector<std::string> args = std::move(wrapper);
    if (args.empty()) {
      args = absl::GetFlag(FLAGS_server_wrapper);
      timeout = std::max(timeout, absl::GetFlag(FLAGS_server_start_timeout));
    }
    for (std::string arg : {
        absl::GetFlag(FLAGS_server_binary), std::string("--listen=127.0.0.1:0"),
        absl::StrCat("--upstream_url=", metrica_->base_url()),
        absl::StrCat("--poll_interval=",
                     absl::FormatDuration(absl::GetFlag(FLAGS_poll_interval))),
        std::string("--daily_budget=0"),
        std::string("--max_watches_per_caller=0")}) {
      args.push_back(std::move(arg));
    }
    if (absl::GetFlag(FLAGS_watches) > 20000) {  // above the default cap
      args.push_back(
          absl::StrCat("--max_watches=", absl::GetFlag(FLAGS_watches)));
    }
    for (const std::string& flag : absl::GetFlag(FLAGS_uploadwatch_flags)) {
      args.push_back(flag);
    }
    return ChildProcess::Start(
        args, env, absl::StrCat(work_dir_, "/", name, ".log"), timeout);
  }
  absl::StatusOr<std::unique_ptr<ChildProcess>> StartBare(
      absl::string_view name, std::vector<std::string> wrapper = {},
      absl::Duration timeout = absl::Seconds(30)) {
    std::vector<std::string> args = std::move(wrapper);
    args.push_back(absl::GetFlag(FLAGS_bare_binary));
    args.push_back("--listen=127.0.0.1:0");
    return ChildProcess::Start(args, absl::GetFlag(FLAGS_server_env),
                               absl::StrCat(work_dir_, "/", name, ".log"),
                               timeout);
  }
  // Instructions per cached GetUploading of one server under callgrind.
  absl::StatusOr<double> InstructionsPerCall(bool bare);

  // Starts `server` and opens the watches on it.
  absl::Status OpenWatches(absl::StatusOr<std::unique_ptr<ChildProcess>> server,
                           WatchTarget& target);
  // Rounds of changes, alternating between the targets (A/B, so that drift
  // in the machine's load hits both alike): `some_rounds` in which
  // `some_uploadings` change, then `all_rounds` in which every watched
  // uploading changes in the same poll. Each round waits until every watcher
  // concerned has received the change.
  void ChangeRounds(const std::vector<WatchTarget*>& targets);

  FakeMetrica* const metrica_;
  const std::string work_dir_;
  std::vector<int64_t> watched_ids_;
};

absl::Status Harness::RunUnary() {
  Progress("unary: starting uploadwatch and the bare server");
  absl::StatusOr<std::unique_ptr<ChildProcess>> uploadwatch =
      StartUploadwatch("unary_uploadwatch");
  if (!uploadwatch.ok()) return uploadwatch.status();
  absl::StatusOr<std::unique_ptr<ChildProcess>> bare = StartBare("unary_bare");
  if (!bare.ok()) return bare.status();
  const int channels = absl::GetFlag(FLAGS_unary_channels);
  const int outstanding = absl::GetFlag(FLAGS_unary_outstanding);
  const auto uploadwatch_channels =
      MakeChannels(Target(**uploadwatch), channels);
  const auto bare_channels = MakeChannels(Target(**bare), channels);

  const v1::GetUploadingRequest request = TerminalGet();
  // Same answer from both, byte for byte: the comparison is about the
  // server, not the message. This first call also fills uploadwatch's cache.
  std::string answers[2];
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::string> answer =
        GetOnce((i == 0 ? uploadwatch_channels : bare_channels)[0], request);
    if (!answer.ok()) return answer.status();
    answers[i] = *std::move(answer);
  }
  if (answers[0] != answers[1]) {
    return absl::InternalError(
        absl::StrCat("uploadwatch and the bare server answer differently (",
                     answers[0].size(), " vs ", answers[1].size(),
                     " bytes): fix MakeUploading"));
  }
  metrica_->ClearRequests();

  auto cpu_of = [](const ChildProcess& server) {
    return [pid = server.pid()] {
      absl::StatusOr<ProcessUsage> usage = ReadUsage(pid);
      return usage.ok() ? usage->cpu_seconds : 0.0;
    };
  };
  const absl::Duration warmup = absl::GetFlag(FLAGS_unary_warmup);
  const absl::Duration duration = absl::GetFlag(FLAGS_unary_duration);
  std::vector<double> qps[2], cpu[2], client_cpu[2], qps_ratios, cpu_ratios,
      efficiency_ratios;
  int64_t failed = 0;
  for (int pair = 0; pair < absl::GetFlag(FLAGS_unary_pairs); ++pair) {
    const UnaryFigures a =
        RunUnaryLoad(uploadwatch_channels, request, outstanding, warmup,
                     duration, cpu_of(**uploadwatch));
    const UnaryFigures b = RunUnaryLoad(bare_channels, request, outstanding,
                                        warmup, duration, cpu_of(**bare));
    Progress(absl::StrFormat(
        "unary: pair %d: uploadwatch %.0f qps %.1f us/call, bare %.0f qps "
        "%.1f us/call",
        pair + 1, a.qps, a.server_cpu_us_per_call, b.qps,
        b.server_cpu_us_per_call));
    qps[0].push_back(a.qps);
    qps[1].push_back(b.qps);
    cpu[0].push_back(a.server_cpu_us_per_call);
    cpu[1].push_back(b.server_cpu_us_per_call);
    client_cpu[0].push_back(a.client_cpu_us_per_call);
    client_cpu[1].push_back(b.client_cpu_us_per_call);
    qps_ratios.push_back(a.qps / b.qps);
    cpu_ratios.push_back(b.server_cpu_us_per_call / a.server_cpu_us_per_call);
    // Calls per CPU-second of client and server together: what the QPS
    // ratio would be if the two were alone on the machine and kept its
    // cores busy. Other users' load moves it much less than the QPS.
    efficiency_ratios.push_back(
        (b.server_cpu_us_per_call + b.client_cpu_us_per_call) /
        (a.server_cpu_us_per_call + a.client_cpu_us_per_call));
    failed += a.failed + b.failed;
  }
  const int upstream_requests = static_cast<int>(metrica_->requests().size());
  (*uploadwatch)->Stop();
  (*bare)->Stop();

  Print("unary_response_bytes", static_cast<double>(answers[0].size()));
  Print("unary_calls_in_flight", channels * outstanding);
  Print("unary_pairs", static_cast<double>(qps_ratios.size()));
  Print("unary_uploadwatch_qps", Median(qps[0]));
  Print("unary_bare_qps", Median(qps[1]));
  Print("unary_qps_ratio", Median(qps_ratios), 3);
  Print("unary_qps_ratio_min",
        *std::min_element(qps_ratios.begin(), qps_ratios.end()), 3);
  Print("unary_qps_ratio_max",
        *std::max_element(qps_ratios.begin(), qps_ratios.end()), 3);
  Print("unary_uploadwatch_server_cpu_us_per_call", Median(cpu[0]), 1);
  Print("unary_bare_server_cpu_us_per_call", Median(cpu[1]), 1);
  Print("unary_uploadwatch_client_cpu_us_per_call", Median(client_cpu[0]), 1);
  Print("unary_bare_client_cpu_us_per_call", Median(client_cpu[1]), 1);
  Print("unary_cpu_ratio", Median(cpu_ratios), 3);
  Print("unary_cpu_efficiency_ratio", Median(efficiency_ratios), 3);
  Print("unary_failed_calls", static_cast<double>(failed));
  Print("unary_upstream_requests", upstream_requests);
  return absl::OkStatus();
}

absl::Status Harness::OpenWatches(
    absl::StatusOr<std::unique_ptr<ChildProcess>> server, WatchTarget& target) {
  if (!server.ok()) return server.status();
  target.server = *std::move(server);
  target.sampler = std::make_unique<PeakSampler>(target.server->pid());
  const int watches = absl::GetFlag(FLAGS_watches);
  Progress(
      absl::StrCat("watch: opening ", watches, " watches on ", target.name));
  const absl::Time start = absl::Now();
  target.fleet.Open(
      MakeChannels(Target(*target.server), absl::GetFlag(FLAGS_watch_channels)),
      kCounter, watched_ids_, watches);
  // 2 minutes per 10,000 streams: opening them is CPU-bound.
  if (!target.fleet.AwaitFirstMessages(
          absl::Seconds(120) * std::max(1, watches / 10000))) {
    return absl::DeadlineExceededError(absl::StrCat(
        "only ", target.fleet.streams_with_message(), " of ", watches,
        " watches on ", target.name, " got their first message (",
        target.fleet.ended(), " ended)"));
  }
  target.open_time = absl::Now() - start;
  absl::SleepFor(absl::Seconds(1));  // let allocations settle
  target.open_usage = target.sampler->Peak();
  return absl::OkStatus();
}

void Harness::ChangeRounds(const std::vector<WatchTarget*>& targets) {
  const int uploadings = static_cast<int>(watched_ids_.size());
  const int per_uploading = absl::GetFlag(FLAGS_watches) / uploadings;
  const absl::Duration timeout = absl::GetFlag(FLAGS_poll_interval) * 5;
  int32_t marker = 0;
  for (const bool all : {false, true}) {
    const int changing =
        all ? uploadings
            : std::min(absl::GetFlag(FLAGS_some_uploadings), uploadings);
    const int32_t first_marker = marker + 1;
    const int rounds =
        absl::GetFlag(all ? FLAGS_all_rounds : FLAGS_some_rounds);
    for (int round = 0; round < rounds; ++round) {
      ++marker;
      for (WatchTarget* target : targets) {
        FanOut& kind = all ? target->all : target->some;
        const double server_cpu = target->sampler->Peak().cpu_seconds;
        const double client_cpu = OwnCpuSeconds();
        const absl::Time start = absl::Now();
        target->change(marker, changing);
        if (!target->fleet.AwaitMarker(marker, changing * per_uploading,
                                       timeout)) {
          ++kind.late_rounds;
        }
        kind.windows.emplace_back(start, absl::Now());
        kind.server_cpu_seconds +=
            target->sampler->Peak().cpu_seconds - server_cpu;
        kind.client_cpu_seconds += OwnCpuSeconds() - client_cpu;
        kind.rounds += 1;
      }
    }
    for (WatchTarget* target : targets) {
      FanOut& kind = all ? target->all : target->some;
      for (const auto& [key, delivery] : target->fleet.deliveries()) {
        if (delivery.marker < first_marker || delivery.marker > marker)
          continue;
        if (delivery.receivers < per_uploading) {
          ++kind.incomplete;
          continue;
        }
        kind.latencies_ms.push_back(absl::ToDoubleMilliseconds(
            delivery.last_receipt - delivery.observe_time));
      }
      std::sort(kind.latencies_ms.begin(), kind.latencies_ms.end());
      std::vector<UnaryProbe::Sample> gets;
      for (const auto& [from, to] : kind.windows) {
        for (const UnaryProbe::Sample& s :
             target->probe->SamplesBetween(from, to)) {
          gets.push_back(s);
        }
      }
      kind.get_latencies_ms = SortedMillis(gets);
    }
  }
}

absl::Status Harness::RunWatch(const std::string& prefix, int64_t first_id) {
  const int watches = absl::GetFlag(FLAGS_watches);
  const int uploadings = absl::GetFlag(FLAGS_uploadings);
  const absl::Duration poll = absl::GetFlag(FLAGS_poll_interval);
  if (uploadings <= 0 || watches % uploadings != 0) {
    return absl::InvalidArgumentError(
        "--watches must be a positive multiple of --uploadings");
  }
  watched_ids_.clear();
  for (int i = 0; i < uploadings; ++i) {
    watched_ids_.push_back(first_id + i);
    metrica_->AddUploading(
        kCounter, MakeUploading(watched_ids_.back(), v1::Uploading::MATCHED));
  }

  // The baseline first, alone, so that its memory and threads are those of
  // open streams on a server that does nothing else.
  WatchTarget bare{.name = "the bare server"};
  if (absl::Status s = OpenWatches(StartBare(prefix + "_bare"), bare); !s.ok()) {
    return s;
  }
  bare.change = [&bare](int32_t /*marker*/, int n) {
    bare.server->Signal(SIGUSR1, n);
  };
  WatchTarget uploadwatch{.name = "uploadwatch"};
  if (absl::Status s =
          OpenWatches(StartUploadwatch(prefix + "_uploadwatch"), uploadwatch);
      !s.ok()) {
    return s;
  }
  uploadwatch.change = [this](int32_t marker, int n) {
    for (int i = 0; i < n; ++i) {
      metrica_->SetUploading(
          kCounter,
          MakeUploading(watched_ids_[i], v1::Uploading::MATCHED, marker));
    }
  };

  // The probes' Get is of the terminal uploading: once in the cache, it
  // costs Metrica nothing.
  const v1::GetUploadingRequest get = TerminalGet();
  if (absl::StatusOr<std::string> first =
          GetOnce(MakeChannels(Target(*uploadwatch.server), 1)[0], get);
      !first.ok()) {
    return first.status();
  }

  // Steady state from here: the window of the upstream figures starts.
  metrica_->ClearRequests();
  const absl::Time window_start = absl::Now();
  const double quiet_cpu_before = uploadwatch.sampler->Peak().cpu_seconds;
  absl::SleepFor(poll * absl::GetFlag(FLAGS_quiet_intervals));
  const double quiet_cpu =
      uploadwatch.sampler->Peak().cpu_seconds - quiet_cpu_before;

  for (WatchTarget* target : {&bare, &uploadwatch}) {
    target->probe = std::make_unique<UnaryProbe>(
        MakeChannels(Target(*target->server), 1)[0], get,
        absl::GetFlag(FLAGS_probe_every));
  }
  const absl::Time probes_start = absl::Now();
  absl::SleepFor(absl::Seconds(2));  // the probes' quiet samples
  const absl::Time probes_quiet_end = absl::Now();

  Progress("watch: change rounds, alternating bare and uploadwatch");
  ChangeRounds({&bare, &uploadwatch});
  const absl::Duration window = absl::Now() - window_start;
  const std::vector<FakeMetrica::RecordedRequest> requests =
      metrica_->requests();

  Print(prefix + "_streams", watches);
  Print(prefix + "_uploadings", uploadings);
  Print(prefix + "_channels", absl::GetFlag(FLAGS_watch_channels));
  Print(prefix + "_some_uploadings",
        std::min(absl::GetFlag(FLAGS_some_uploadings), uploadings));
  for (WatchTarget* target : {&bare, &uploadwatch}) {
    const std::string name =
        prefix + (target == &bare ? "_bare" : "_uploadwatch");
    const ProcessUsage peak = target->sampler->Peak();
    const int ended = target->fleet.ended();
    const std::vector<double> quiet_gets = SortedMillis(
        target->probe->SamplesBetween(probes_start, probes_quiet_end));
    target->probe.reset();
    if (!target->fleet.CancelAll()) {
      return absl::InternalError(
          absl::StrCat("watches on ", target->name, " did not end"));
    }
    target->sampler.reset();
    target->server->Stop();
    Print(name + "_open_seconds", absl::ToDoubleSeconds(target->open_time),
          2);
    Print(name + "_rss_open_mb", Megabytes(target->open_usage.hwm_kb), 1);
    Print(name + "_rss_peak_mb", Megabytes(peak.hwm_kb), 1);
    Print(name + "_threads_open", target->open_usage.threads);
    Print(name + "_threads_peak", peak.threads);
    Print(name + "_streams_ended", ended);
    PrintLatencies(name + "_quiet_get_latency", quiet_gets);
    PrintFanOut(name + "_change_some", target->some);
    if (target->all.rounds > 0) {
      PrintFanOut(name + "_change_all", target->all);
    }
  }
  Print(prefix + "_uploadwatch_cpu_quiet_pct",
        100 * quiet_cpu /
            absl::ToDoubleSeconds(poll * absl::GetFlag(FLAGS_quiet_intervals)),
        1);

  // The watch phase's upstream figures keep their names.
  const std::string upstream = prefix == "watch" ? "" : prefix + "_";
  int lists = 0, gets = 0;
  for (const auto& r : requests) {
    (absl::EndsWith(r.path, "/uploadings") ? lists : gets) += 1;
  }
  const double intervals = window / poll;
  const double per_interval = requests.size() / intervals;
  const double naive =
      static_cast<double>(watches);  // N * k: each watcher polls
  Print(upstream + "upstream_watchers_per_uploading", watches / uploadings);
  Print(upstream + "upstream_uploadings", uploadings);
  Print(upstream + "upstream_poll_intervals", intervals, 1);
  Print(upstream + "upstream_list_requests", lists);
  Print(upstream + "upstream_get_requests", gets);
  Print(upstream + "upstream_requests_per_interval", per_interval, 2);
  Print(upstream + "upstream_naive_requests_per_interval", naive);
  Print(upstream + "upstream_vs_naive_ratio", per_interval / naive, 6);
  return absl::OkStatus();
}

absl::Status Harness::RunWatch100k() {
  // The phase's shape (it overrides these flags); the rest as given.
  const int k100kUploadings = absl::GetFlag(FLAGS_watch100k_uploadings);
  struct Default {
    absl::Flag<int>* flag;
    int value;
  };
  for (const Default& d : {Default{&FLAGS_watches, 100000},
                           Default{&FLAGS_uploadings, k100kUploadings},
                           Default{&FLAGS_watch_channels,
                                   absl::GetFlag(FLAGS_watch100k_channels)},
                           Default{&FLAGS_some_uploadings, k100kUploadings / 10},
                           Default{&FLAGS_some_rounds, 5},
                           Default{&FLAGS_all_rounds, 0}}) {
    absl::SetFlag(d.flag, d.value);
  }
  // Every watched uploading on the List pages of each poll round, so that
  // the server sees a change at the next poll and the latency is the
  // fan-out's: by default a round lists 3 pages of 200 and Gets the rest,
  // which for 1,000 uploadings at 30 requests/s is ~40 s per uploading.
  // The counter also holds the other phases' uploadings: one page more.
  std::vector<std::string> flags = absl::GetFlag(FLAGS_uploadwatch_flags);
  if (std::none_of(flags.begin(), flags.end(), [](const std::string& f) {
        return absl::StartsWith(f, "--batch_max_pages=");
      })) {
    const int pages = (k100kUploadings + 199) / 200 + 1;
    flags.push_back(absl::StrCat("--batch_max_pages=", pages));
    absl::SetFlag(&FLAGS_uploadwatch_flags, flags);
    Print("watch100k_uploadwatch_batch_max_pages", pages);
  }
  // The bare server changes the first N ids from kFirstWatchedId.
  return RunWatch("watch100k", kFirstWatchedId);
}

absl::Status Harness::RunCounter() {
  // A counter of its own: the other phases' uploadings are not on its list.
  constexpr int32_t kDashboardCounter = kCounter + 1;
  const int watches = absl::GetFlag(FLAGS_counter_watches);
  const int uploadings = absl::GetFlag(FLAGS_counter_uploadings);
  const absl::Duration poll = absl::GetFlag(FLAGS_poll_interval);
  metrica_->GrantAccess(kToken, kDashboardCounter);
  std::vector<int64_t> ids;
  for (int i = 0; i < uploadings; ++i) {
    ids.push_back(kFirstWatchedId + 100000 + i);
    metrica_->AddUploading(kDashboardCounter,
                           MakeUploading(ids.back(), v1::Uploading::MATCHED));
  }
  absl::StatusOr<std::unique_ptr<ChildProcess>> server =
      StartUploadwatch("counter_uploadwatch");
  if (!server.ok()) return server.status();
  auto sampler = std::make_unique<PeakSampler>((*server)->pid());
  Progress(absl::StrCat("counter: opening ", watches, " counter watches"));
  const absl::Time start = absl::Now();
  CounterFleet fleet;
  fleet.Open(MakeChannels(Target(**server), absl::GetFlag(FLAGS_counter_channels)),
             kDashboardCounter, watches);
  if (!fleet.AwaitSynced(absl::Seconds(120))) {
    return absl::DeadlineExceededError(
        absl::StrCat("not every counter watch synced (", fleet.ended(),
                     " ended)"));
  }
  const absl::Duration open_time = absl::Now() - start;
  absl::SleepFor(absl::Seconds(1));  // let allocations settle
  const ProcessUsage open_usage = sampler->Peak();

  metrica_->ClearRequests();
  Progress("counter: quiet poll intervals");
  const absl::Time window_start = absl::Now();
  absl::SleepFor(poll * absl::GetFlag(FLAGS_quiet_intervals));
  const double intervals = (absl::Now() - window_start) / poll;
  const int quiet_requests = static_cast<int>(metrica_->requests().size());

  Progress("counter: rounds in which every uploading changes");
  int late_rounds = 0;
  double server_cpu = 0;
  double client_cpu = 0;
  const int rounds = absl::GetFlag(FLAGS_counter_rounds);
  for (int32_t marker = 1; marker <= rounds; ++marker) {
    const double cpu_before = sampler->Peak().cpu_seconds;
    const double client_before = OwnCpuSeconds();
    for (int64_t id : ids) {
      metrica_->SetUploading(kDashboardCounter,
                             MakeUploading(id, v1::Uploading::MATCHED, marker));
    }
    if (!fleet.AwaitMarker(marker, uploadings * watches, poll * 5)) {
      ++late_rounds;
    }
    server_cpu += sampler->Peak().cpu_seconds - cpu_before;
    client_cpu += OwnCpuSeconds() - client_before;
  }
  std::vector<double> latencies;
  int incomplete = 0;
  for (const auto& [key, d] : fleet.deliveries()) {
    if (key.second < 1 || key.second > rounds) continue;
    if (d.receivers < watches) {
      ++incomplete;
      continue;
    }
    latencies.push_back(
        absl::ToDoubleMilliseconds(d.last_receipt - d.observe_time));
  }
  std::sort(latencies.begin(), latencies.end());
  const ProcessUsage peak = sampler->Peak();
  const int ended = fleet.ended();
  if (!fleet.CancelAll()) {
    return absl::InternalError("counter watches did not end");
  }
  sampler.reset();
  (*server)->Stop();

  Print("counter_streams", watches);
  Print("counter_uploadings", uploadings);
  Print("counter_channels", absl::GetFlag(FLAGS_counter_channels));
  Print("counter_open_seconds", absl::ToDoubleSeconds(open_time), 2);
  Print("counter_rss_open_mb", Megabytes(open_usage.hwm_kb), 1);
  Print("counter_rss_peak_mb", Megabytes(peak.hwm_kb), 1);
  Print("counter_threads_open", open_usage.threads);
  Print("counter_threads_peak", peak.threads);
  Print("counter_streams_ended", ended);
  Print("counter_poll_intervals", intervals, 1);
  Print("counter_upstream_requests_per_interval", quiet_requests / intervals,
        2);
  Print("counter_change_all_rounds", rounds);
  Print("counter_change_all_late_rounds", late_rounds);
  Print("counter_change_all_samples", latencies.size());
  Print("counter_change_all_incomplete", incomplete);
  Print("counter_change_all_server_cpu_ms_per_round",
        1000 * server_cpu / std::max(rounds, 1), 1);
  // The harness: Metrica's poll answers, and parsing every event of every
  // stream (100,000 per round by default) on the same cores.
  Print("counter_change_all_client_cpu_ms_per_round",
        1000 * client_cpu / std::max(rounds, 1), 1);
  PrintLatencies("counter_change_all_latency", latencies);
  return absl::OkStatus();
}

// The Ir total of a callgrind profile (its "totals:" line, or "summary:").
absl::StatusOr<double> CallgrindTotal(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("no profile ", path));
  std::string line;
  double total = -1;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "totals:") ||
        (total < 0 && absl::ConsumePrefix(&rest, "summary:"))) {
      rest = absl::StripAsciiWhitespace(rest);
      int64_t ir = 0;
      if (absl::SimpleAtoi(rest.substr(0, rest.find(' ')), &ir)) total = ir;
    }
  }
  if (total < 0) {
    return absl::InternalError(absl::StrCat("no totals in ", path));
  }
  return total;
}

absl::StatusOr<double> Harness::InstructionsPerCall(bool bare) {
  const std::string name = bare ? "callgrind_bare" : "callgrind_uploadwatch";
  std::string dir = absl::GetFlag(FLAGS_callgrind_out_dir);
  if (dir.empty()) dir = work_dir_;
  const std::string profile = absl::StrCat(dir, "/", name, ".out");
  // Counting starts zeroed by callgrind_control -z after the warm-up and
  // ends with its dump (-d), which callgrind writes to `profile`.1.
  std::vector<std::string> wrapper = {
      absl::GetFlag(FLAGS_valgrind), "--tool=callgrind",
      absl::StrCat("--callgrind-out-file=", profile)};
  absl::StatusOr<std::unique_ptr<ChildProcess>> server =
      bare ? StartBare(name, wrapper, absl::Minutes(3))
           : StartUploadwatch(name, wrapper, absl::Minutes(3));
  if (!server.ok()) return server.status();
  const auto channels = MakeChannels(Target(**server),
                                     absl::GetFlag(FLAGS_unary_channels));
  const int outstanding = absl::GetFlag(FLAGS_unary_outstanding);
  const v1::GetUploadingRequest request = TerminalGet();
  // Under valgrind the first call (connection, upstream fetch) takes seconds.
  if (absl::StatusOr<std::string> first =
          GetOnce(channels[0], request, absl::Minutes(2));
      !first.ok()) {
    return first.status();
  }
  int64_t failed = RunUnaryCalls(channels, request, outstanding,
                                 absl::GetFlag(FLAGS_callgrind_warmup_calls));
  const std::string control = absl::GetFlag(FLAGS_callgrind_control);
  const std::string log = absl::StrCat(work_dir_, "/", name, "_control.log");
  const std::string pid = absl::StrCat((*server)->pid());
  if (absl::Status s = RunCommand({control, "-z", pid}, log); !s.ok()) return s;
  const int64_t calls = absl::GetFlag(FLAGS_callgrind_calls);
  failed += RunUnaryCalls(channels, request, outstanding, calls);
  if (absl::Status s = RunCommand({control, "-d", pid}, log); !s.ok()) return s;
  (*server)->Stop(absl::Seconds(60));
  if (failed > 0) {
    return absl::InternalError(
        absl::StrCat(failed, " GetUploading calls failed under callgrind"));
  }
  absl::StatusOr<double> total = CallgrindTotal(absl::StrCat(profile, ".1"));
  if (!total.ok()) return total.status();
  Progress(absl::StrFormat("instructions: %s: %.0f per call; profile %s.1",
                           name, *total / calls, profile));
  return *total / calls;
}

absl::Status Harness::RunInstructions() {
  absl::StatusOr<double> ours = InstructionsPerCall(/*bare=*/false);
  if (!ours.ok()) return ours.status();
  absl::StatusOr<double> bare = InstructionsPerCall(/*bare=*/true);
  if (!bare.ok()) return bare.status();
  Print("unary_callgrind_calls", absl::GetFlag(FLAGS_callgrind_calls));
  Print("unary_uploadwatch_instructions_per_call", *ours);
  Print("unary_bare_instructions_per_call", *bare);
  // Like unary_cpu_ratio: bare / ours, 1 when ours costs what gRPC does.
  Print("unary_instructions_ratio", *bare / *ours, 3);
  return absl::OkStatus();
}

absl::Status Harness::RunScheduling() {
  const std::string binary = absl::GetFlag(FLAGS_scheduling_binary);
  if (binary.empty()) {
    return absl::InvalidArgumentError("--scheduling_binary is not set");
  }
  Progress("scheduling: CPU per poll round, 100 to 10,000 groups");
  const std::string log = absl::StrCat(work_dir_, "/scheduling.log");
  if (absl::Status s = RunCommand({binary}, log); !s.ok()) return s;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "scheduling_")) {
      std::printf("%s\n", line.c_str());
    }
  }
  std::fflush(stdout);
  return absl::OkStatus();
}

absl::Status Harness::RunWeb() {
  const std::string binary = absl::GetFlag(FLAGS_web_bench_binary);
  if (binary.empty()) {
    return absl::InvalidArgumentError("--web_bench_binary is not set");
  }
  const int watches = absl::GetFlag(FLAGS_web_watches);
  Progress(absl::StrCat("web: ", watches, " gRPC-Web watches (web_bench)"));
  const std::string log = absl::StrCat(work_dir_, "/web_bench.log");
  if (absl::Status s = RunCommand(
          {binary,
           absl::StrCat("--server_binary=", absl::GetFlag(FLAGS_server_binary)),
           absl::StrCat("--watches=", watches)},
          log);
      !s.ok()) {
    return s;
  }
  // Its `name: value` lines, under web_ (its unary_* are not the unary
  // phase's figures).
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(": ");
    double value = 0;
    if (colon == std::string::npos ||
        line.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") !=
            colon ||
        !absl::SimpleAtod(line.substr(colon + 2), &value)) {
      continue;
    }
    std::printf("%s%s\n", absl::StartsWith(line, "web_") ? "" : "web_",
                line.c_str());
  }
  std::fflush(stdout);

  // The same number of native watches, for the threads and memory beside.
  Progress(absl::StrCat("web: ", watches, " native gRPC watches"));
  std::vector<int64_t> ids;
  for (int i = 0; i < 100; ++i) {
    ids.push_back(kFirstWatchedId + i);
    metrica_->AddUploading(kCounter,
                           MakeUploading(ids.back(), v1::Uploading::MATCHED));
  }
  absl::StatusOr<std::unique_ptr<ChildProcess>> server =
      StartUploadwatch("web_native_uploadwatch");
  if (!server.ok()) return server.status();
  auto sampler = std::make_unique<PeakSampler>((*server)->pid());
  absl::SleepFor(absl::Seconds(1));
  const ProcessUsage idle = sampler->Peak();
  WatchFleet fleet;
  fleet.Open(MakeChannels(Target(**server), 10), kCounter, ids, watches);
  if (!fleet.AwaitFirstMessages(absl::Seconds(120))) {
    return absl::DeadlineExceededError(
        absl::StrCat("only ", fleet.streams_with_message(), " of ", watches,
                     " native watches got their first message"));
  }
  absl::SleepFor(absl::Seconds(1));
  absl::StatusOr<ProcessUsage> open = ReadUsage((*server)->pid());
  if (!open.ok()) return open.status();
  const ProcessUsage peak = sampler->Peak();
  if (!fleet.CancelAll()) {
    return absl::InternalError("native watches did not end");
  }
  sampler.reset();
  (*server)->Stop();
  Print("web_native_idle_threads", idle.threads);
  Print("web_native_idle_rss_mb", Megabytes(idle.rss_kb), 1);
  Print("web_native_watches_open", watches);
  Print("web_native_watches_threads", open->threads);
  Print("web_native_watches_threads_peak", peak.threads);
  Print("web_native_watches_rss_mb", Megabytes(open->rss_kb), 1);
  return absl::OkStatus();
}

int Main() {
  // Debian's Abseil is built without NDEBUG, so every Mutex::Lock would also
  // update a process-wide deadlock graph: the load generator is the same for
  // both servers, but the cheaper it is, the more of the 2 cores the servers
  // get. (The servers keep the libraries' defaults.)
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::string work_dir = absl::GetFlag(FLAGS_work_dir);
  if (work_dir.empty()) {
    char pattern[] = "/tmp/uploadwatch-bench.XXXXXX";
    if (mkdtemp(pattern) == nullptr) {
      std::perror("mkdtemp");
      return 1;
    }
    work_dir = pattern;
  }
  Progress(absl::StrCat("server logs in ", work_dir));

  FakeMetrica metrica(FakeMetrica::Options{});
  if (absl::Status s = metrica.Start(); !s.ok()) {
    std::fprintf(stderr, "bench: %s\n", s.ToString().c_str());
    return 1;
  }
  metrica.GrantAccess(kToken, kCounter);
  metrica.AddUploading(kCounter,
                       MakeUploading(kTerminalId, v1::Uploading::PROCESSED));

  Print("machine_load_avg_1m_start", LoadAverage(), 2);
  Harness harness(&metrica, work_dir);
  const std::vector<std::string> phases =
      absl::StrSplit(absl::GetFlag(FLAGS_phases), ',', absl::SkipEmpty());
  for (const std::string& phase : phases) {
    absl::Status status;
    if (phase == "unary") {
      status = harness.RunUnary();
    } else if (phase == "watch") {
      status = harness.RunWatch();
    } else if (phase == "watch100k") {
      status = harness.RunWatch100k();
    } else if (phase == "counter") {
      status = harness.RunCounter();
    } else if (phase == "replicas") {
      status = RunReplicaPhase(ReplicaPhaseSetup{
          &metrica, kToken, absl::GetFlag(FLAGS_server_binary),
          absl::GetFlag(FLAGS_server_env), work_dir,
          absl::GetFlag(FLAGS_poll_interval)});
    } else if (phase == "web") {
      status = harness.RunWeb();
    } else if (phase == "scheduling") {
      status = harness.RunScheduling();
    } else if (phase == "instructions") {
      status = harness.RunInstructions();
    } else {
      status =
          absl::InvalidArgumentError(absl::StrCat("unknown phase ", phase));
    }
    if (!status.ok()) {
      std::fprintf(stderr, "bench: %s failed: %s\n", phase.c_str(),
                   status.ToString().c_str());
      return 1;
    }
  }
  Print("machine_load_avg_1m_end", LoadAverage(), 2);
  metrica.Stop();
  return 0;
}

}  // namespace
}  // namespace uploadwatch::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "uploadwatch benchmarks against a bare gRPC server (see "
      "scripts/bench.sh)");
  absl::ParseCommandLine(argc, argv);
  return uploadwatch::bench::Main();
}
