#!/usr/bin/env bash
# Runs the browser-side tests against the real server on the Metrica
# simulator: Connect-ES's gRPC-Web transport in Node (client/web/test) and,
# when the dashboard is built, the page in headless Chromium
# (client/web/e2e). Assumes //service:uploading_server and
# //service/simulator:metrica_simulator are built. Prepares client/web
# (npm ci, protoc-gen-es code, the esbuild bundle), starts the stack once
# with --web_listen, runs the suites, always stops the stack.
#
# Last line on stdout: `N passed, M failed` (test cases). A test marked TODO
# (an rpc this server does not serve yet) counts as neither and is named on
# stderr. Exit code: 0 only when nothing failed.
#   scripts/lib/web_tests.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1

unset METRIKA_OAUTH_TOKEN  # the simulator's demo world, never real Metrica
source scripts/lib/stack.sh

SUITE_TIMEOUT=${UPLOADWATCH_WEB_TEST_TIMEOUT:-240}
work=$(mktemp -d)
UPLOADWATCH_STACK_LOGS="$work/stack"
mkdir -p "$UPLOADWATCH_STACK_LOGS"
summarized=0
cleanup() {
  uploadwatch_stop_stack
  rm -rf "$work"
}
trap cleanup EXIT
trap '[[ $summarized == 1 ]] || echo "0 passed, 1 failed"; exit 130' INT TERM
note() { echo "web tests: $*" >&2; }
fail_all() {
  note "$1"
  [[ -n "${2:-}" && -f "$2" ]] && tail -n 60 "$2" >&2
  summarized=1
  echo "0 passed, 1 failed"
  exit 1
}

command -v node >/dev/null && command -v npm >/dev/null || fail_all "node/npm not found"
(cd client/web && { [[ -d node_modules ]] || timeout 300 npm ci --no-audit --no-fund --loglevel=error; } &&
  timeout 120 npm run --silent build) >"$work/prep.log" 2>&1 ||
  fail_all "preparing client/web failed" "$work/prep.log"

# Live demo uploads 10x faster: each is done within ~9 s.
UPLOADWATCH_DEMO_SPEED=10 uploadwatch_start_stack 127.0.0.1:0 200ms \
  --web_listen=127.0.0.1:0 --web_allowed_origins='*' \
  --web_static_dir="$PWD/client/web/dist" || fail_all "the stack did not start"
web_port=$(grep -oE 'gRPC-Web on port [0-9]+' "$UPLOADWATCH_STACK_LOGS/server.log" | grep -oE '[0-9]+$')
[[ -n "$web_port" ]] || fail_all "the server printed no gRPC-Web port" "$UPLOADWATCH_STACK_LOGS/server.log"
export UPLOADWATCH_WEB_URL="http://127.0.0.1:$web_port"

total_passed=0 total_failed=0
tap_total() { grep -E "^# $2 [0-9]+$" "$1" | tail -n1 | awk '{print $3}'; }
# Runs one node --test suite (a directory of client/web) and adds its counts.
run_suite() {
  local name=$1 dir=$2 log="$work/$1.log" rc pass fail cancelled skipped todo
  (cd client/web && timeout -k 10 "$SUITE_TIMEOUT" node --test --test-reporter=tap "$dir/") >"$log" 2>&1
  rc=$?
  pass=$(tap_total "$log" pass) fail=$(tap_total "$log" fail)
  cancelled=$(tap_total "$log" cancelled) skipped=$(tap_total "$log" skipped)
  todo=$(tap_total "$log" todo)
  [[ -z "$pass" ]] && pass=$(grep -cE '^ +ok [0-9]+ - ' "$log")
  fail=$((${fail:-0} + ${cancelled:-0} + ${skipped:-0}))
  [[ $rc -ne 0 && $fail -eq 0 ]] && fail=1
  note "$name: $pass passed, $fail failed${todo:+, $todo todo} (exit $rc)"
  if [[ ${todo:-0} -gt 0 ]]; then
    grep -E '# TODO' "$log" | sed 's/^/web tests:   TODO /' >&2
  fi
  if [[ $fail -ne 0 ]]; then
    echo "---- $name (last 80 lines) ----" >&2
    tail -n 80 "$log" >&2
    echo "---- server log (last 30 lines) ----" >&2
    tail -n 30 "$UPLOADWATCH_STACK_LOGS/server.log" >&2
  fi
  total_passed=$((total_passed + pass)) total_failed=$((total_failed + fail))
}

run_suite "connect-es (node)" test
if [[ -d client/web/e2e ]]; then
  run_suite "dashboard (chromium)" e2e
fi

summarized=1
echo "$total_passed passed, $total_failed failed"
[[ $total_failed -eq 0 ]]
