#!/usr/bin/env bash
# Installs what is missing, builds everything, runs every test.
# Last line: `N passed, N failed` (test cases, not targets).
#
#   scripts/test.sh                 the whole suite: Bazel tests, then the
#                                   Python/Node/Go clients against a real server
#   scripts/test.sh --sanitizers    also the whole Bazel suite under
#                                   AddressSanitizer + UBSan + LeakSanitizer
#   scripts/test.sh --tsan          also the concurrent code's Bazel tests
#                                   (tsan_patterns below) under
#                                   ThreadSanitizer (builds an instrumented
#                                   Abseil once: scripts/lib/tsan_absl.sh)
#   scripts/test.sh --tsan-all      the same over the whole Bazel suite
#   scripts/test.sh --fuzz          also every fuzzer for a bounded time
#   scripts/test.sh //service/...   only these Bazel targets
# CI (.ci/run) runs: scripts/test.sh --sanitizers --tsan-all --fuzz
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
source scripts/lib/step.sh
uploadwatch_install_deps || { echo "dependency install failed"; echo "0 passed, 1 failed"; exit 1; }

sanitizers=0 tsan=0 fuzz=0 patterns=()
for arg in "$@"; do
  case "$arg" in
    --sanitizers) sanitizers=1 ;;
    --tsan) tsan=1 ;;
    --tsan-all) tsan=2 ;;
    --fuzz) fuzz=1 ;;
    -*) echo "unknown option $arg" >&2; exit 2 ;;
    *) patterns+=("$arg") ;;
  esac
done
whole=0
[[ ${#patterns[@]} -eq 0 ]] && { patterns=(//...); whole=1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0 ok=1

# Builds and tests `patterns` with Bazel (extra build options as arguments)
# and adds the test cases to the totals.
bazel_suite() {
  local name=$1; shift
  local log="$work/$name"
  bazel build --keep_going "$@" -- "${patterns[@]}" 2>&1 \
    | tee "$log.build" | grep -E '^(ERROR|FAILED)' >&2
  local build_rc=${PIPESTATUS[0]}
  # `bazel test` skips manual targets, so they are not counted either (their
  # old results in bazel-testlogs would otherwise be read as this run's).
  bazel query "tests(set(${patterns[*]})) except attr(tags, manual, tests(set(${patterns[*]})))" \
    2>/dev/null | sort >"$log.targets"
  bazel test --keep_going "$@" -- "${patterns[@]}" 2>&1 \
    | tee "$log" | grep -vE '^(Loading|Analyzing|INFO:|\[)' >&2
  local test_rc=${PIPESTATUS[0]}
  # Targets Bazel reports as anything but PASSED.
  grep -E '^//[^ ]+ +.*(FAILED|TIMEOUT|NO STATUS|INCOMPLETE|FLAKY)' "$log" \
    | awk '{print $1}' | sort -u >"$log.failed"
  if [[ $build_rc -ne 0 && ! -s "$log.failed" ]]; then
    echo "//:build" >>"$log.failed"; echo "//:build" >>"$log.targets"  # a non-test target
  fi
  local summary info_args=() arg
  for arg in "$@"; do [[ $arg == --config=* ]] && info_args+=("$arg"); done
  summary=$(python3 scripts/lib/count_tests.py \
    "$(bazel info "${info_args[@]}" bazel-testlogs 2>/dev/null)" \
    "$log.targets" "$log.failed")
  echo "$name: $summary" >&2
  add_counts "$summary" $((build_rc || test_rc))
}

# Adds "N passed, M failed" to the totals; a non-zero rc fails the run.
add_counts() {
  if [[ "$1" =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
  else
    failed=$((failed + 1))  # the suite did not even report
  fi
  if [[ $2 -ne 0 ]]; then
    ok=0
    [[ "$1" =~ \ 0\ failed ]] && failed=$((failed + 1))  # failed without saying so
  fi
}

bazel_suite "bazel tests"

# The Python, Node and Go clients against a real server.
if ((whole)) && [[ -x scripts/lib/client_tests.sh ]]; then
  summary=$(uploadwatch_run_step scripts/lib/client_tests.sh)
  add_counts "$summary" $?
fi

# gRPC-Web: Connect-ES in Node, the dashboard in Chromium.
if ((whole)) && [[ -x scripts/lib/web_tests.sh ]]; then
  summary=$(uploadwatch_run_step scripts/lib/web_tests.sh)
  add_counts "$summary" $?
fi

if ((sanitizers)); then
  # Same output base (a second one would trip over the first one's
  # convenience symlinks when expanding //...); the disk cache keeps both
  # configurations, so switching back and forth costs little.
  bazel_suite "bazel tests (asan+ubsan+lsan)" --config=asan \
    --test_env=LSAN_OPTIONS=suppressions="$PWD/bazel/lsan.supp"
fi

# What --tsan covers of a whole run: the code where threads meet (the core,
# the gRPC layer, Redis, the gRPC-Web gateway) and the end-to-end tests that
# drive all of it, plus the TSan setup's own check. Left out, to keep CI's
# budget (README, ThreadSanitizer): the single-threaded logic (auth, JSON
# mapping, metrics text), the fetcher's unit tests (one event-loop thread;
# the end-to-end tests run it under TSan), the simulator's own tests.
tsan_patterns=(//bazel:tsan_setup_test //service/core/... //service/grpc/...
  //service/redis/... //service/web/... //tests/...)

if ((tsan)); then
  # Same output base as the others; bazel/tsan_run.sh (the config's
  # --run_under) finds the instrumented Abseil this builds or reuses.
  all_patterns=("${patterns[@]}")
  ((whole && tsan == 1)) && patterns=("${tsan_patterns[@]}")
  if bash scripts/lib/tsan_absl.sh >/dev/null; then
    tsan_start=$SECONDS
    bazel_suite "bazel tests (tsan)" --config=tsan
    echo "tsan: $(( (SECONDS - tsan_start) / 60 )) min" >&2
  else
    echo "tsan: the ThreadSanitizer build of Abseil failed" >&2
    add_counts "" 1
  fi
  patterns=("${all_patterns[@]}")
fi

if ((fuzz)) && [[ -x scripts/fuzz.sh ]]; then
  summary=$(uploadwatch_run_step scripts/fuzz.sh --smoke)
  add_counts "$summary" $?
fi

echo "$passed passed, $failed failed"
((ok && failed == 0))
