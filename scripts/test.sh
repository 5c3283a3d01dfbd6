#!/usr/bin/env bash
# Installs what is missing, builds everything, runs every test.
# Last line: `N passed, N failed` (test cases, not targets).
#   scripts/test.sh               the whole suite
#   scripts/test.sh //service/... a subset (any Bazel target patterns)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
uploadwatch_install_deps || { echo "dependency install failed"; echo "0 passed, 1 failed"; exit 1; }

patterns=("$@")
[[ ${#patterns[@]} -eq 0 ]] && patterns=(//...)

log=$(mktemp)
trap 'rm -f "$log" "$log".*' EXIT

bazel build --keep_going -- "${patterns[@]}" 2>&1 | tee "$log.build" | grep -E '^(ERROR|FAILED)' >&2
build_rc=${PIPESTATUS[0]}

bazel query "tests(set(${patterns[*]}))" 2>/dev/null | sort >"$log.targets"
bazel test --keep_going -- "${patterns[@]}" 2>&1 | tee "$log" | grep -vE '^(Loading|Analyzing|INFO:|\[)' >&2
test_rc=${PIPESTATUS[0]}

# Targets Bazel reports as anything but PASSED.
grep -E '^//[^ ]+ +.*(FAILED|TIMEOUT|NO STATUS|INCOMPLETE|FLAKY)' "$log" | awk '{print $1}' | sort -u >"$log.failed"
if [[ $build_rc -ne 0 && ! -s "$log.failed" && $test_rc -eq 0 ]]; then
  echo "//:build" >>"$log.failed"; echo "//:build" >>"$log.targets"   # non-test targets failed to build
fi
summary=$(python3 scripts/lib/count_tests.py "$(bazel info bazel-testlogs 2>/dev/null)" "$log.targets" "$log.failed")
echo "bazel tests: $summary" >&2
read -r passed _ failed _ <<<"$summary"

# The Python and Node clients against a real server (whole-suite runs only).
client_rc=0
if [[ $# -eq 0 && -x scripts/lib/client_tests.sh ]]; then
  client_summary=$(scripts/lib/client_tests.sh | tee /dev/stderr | tail -n 1)
  client_rc=${PIPESTATUS[0]}
  if [[ "$client_summary" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
  else
    failed=$((failed + 1))  # the client suite did not even report
  fi
  ((client_rc == 0)) || ((failed > 0)) || failed=1
fi

echo "$passed passed, $failed failed"
[[ $test_rc -eq 0 && $build_rc -eq 0 && $client_rc -eq 0 && $failed -eq 0 ]]
