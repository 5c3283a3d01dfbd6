#!/usr/bin/env bash
# Benchmarks of issue 6: builds with -c opt and runs //bench:uploadwatch_bench,
# which measures uploadwatch against a bare gRPC server built from the same
# libraries, in the same run. Prints one `name: value` line per figure on
# stdout (progress on stderr); docs/PERFORMANCE.md explains them.
#
#   scripts/bench.sh                          # everything, a few minutes
#   scripts/bench.sh --phases=unary --unary_pairs=9
#   scripts/bench.sh --phases=replicas        # issue 14: 1 vs 3 replicas on Redis
#   scripts/bench.sh --server_env=LD_PRELOAD=...   # bench/no_deadlock_detection.cc
#   scripts/bench.sh --phases=instructions      # callgrind: instructions/call
#   scripts/bench.sh --phases=scheduling        # CPU per poll round vs groups
#   scripts/bench.sh --phases=counter           # 1,000 counter watches
#   scripts/bench.sh --phases=watch100k         # 100,000 WatchUploading streams
#   scripts/bench.sh --phases=web               # 1,000 gRPC-Web watches (threads)
#
# Arguments go to the harness: see
# "$(bazel info -c opt bazel-bin)/bench/uploadwatch_bench" --help.
# The harness starts the servers as its child processes and stops them; they
# also die with it (PR_SET_PDEATHSIG). This script stops the harness on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
uploadwatch_install_deps

work=$(mktemp -d /tmp/uploadwatch-bench.XXXXXX)
harness=""
finish() {
  local status=$?
  if [[ -n "$harness" ]] && kill -0 "$harness" 2>/dev/null; then
    kill "$harness" 2>/dev/null || true
    wait "$harness" 2>/dev/null || true
  fi
  if [[ $status -eq 0 ]]; then
    rm -rf "$work"
  else
    echo "bench: failed (exit $status); server logs kept in $work" >&2
  fi
}
trap finish EXIT
trap 'exit 130' INT TERM

echo "bench: building (-c opt)..." >&2
targets=(//bench:uploadwatch_bench //bench:bare_server
         //bench:libno_deadlock_detection.so //service:uploading_server
         //service/core:poll_scheduling_bench //tests:web_bench)
if ! bazel build -c opt "${targets[@]}" >"$work/build.log" 2>&1; then
  cat "$work/build.log" >&2
  exit 1
fi
# Not the bazel-bin symlink: a build in another configuration moves it.
bin=$(bazel info -c opt bazel-bin 2>/dev/null)

# 10,000 watches: 100 connections to each server, plus the simulator's;
# watch100k: 1,000 to each (both servers' stay open together), so ~4,000
# descriptors across the processes. As far as the machine allows: the hard
# limit, and above it only if we may (root with a higher fs.nr_open).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -n 1048576 2>/dev/null || true
echo "bench: file descriptors: soft $(ulimit -Sn), hard $(ulimit -Hn)" >&2

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
echo "bench: $(nproc) CPUs, $cpu, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$bin/bench/uploadwatch_bench" \
  --server_binary="$bin/service/uploading_server" \
  --bare_binary="$bin/bench/bare_server" \
  --scheduling_binary="$bin/service/core/poll_scheduling_bench" \
  --web_bench_binary="$bin/tests/web_bench" \
  --work_dir="$work" "$@" &
harness=$!
wait "$harness"
