#!/usr/bin/env bash
# Runs the language clients' tests (client/python, client/node, client/go)
# against the real server on the Metrica simulator, plus two more servers on
# the same simulator serving TLS and mutual TLS with certificates made here
# (UPLOADWATCH_TLS_ADDR, UPLOADWATCH_MTLS_ADDR, UPLOADWATCH_CERTS). Assumes
# //service:uploading_server and //service/simulator:metrica_simulator are
# built. Prepares every language first (stubs, npm ci, Go test binaries), then
# starts the stack once and runs the three suites in parallel (they watch the
# same moving uploading, sharing one poller). Never hangs: every step has a
# timeout; the stack is always stopped.
#
# Last line on stdout: `N passed, M failed` (test cases, all languages).
# Exit code: 0 only when nothing failed.
#   scripts/lib/client_tests.sh
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1

# The tests run against the simulator's demo world, never real Metrica.
unset METRIKA_OAUTH_TOKEN
source scripts/lib/stack.sh

PY=${UPLOADWATCH_PYTHON:-/usr/bin/python3}   # Debian's, with python3-grpcio
SUITE_TIMEOUT=${UPLOADWATCH_CLIENT_TEST_TIMEOUT:-240}   # seconds per language
# 1 (default): also the counter watch's end-to-end cases (the server's
# WatchUploadings); 0 skips them.
E2E_COUNTER_WATCH=${UPLOADWATCH_E2E_COUNTER_WATCH:-1}
export UPLOADWATCH_E2E_COUNTER_WATCH=$E2E_COUNTER_WATCH
go_tags=()
[[ $E2E_COUNTER_WATCH == 1 ]] && go_tags=(-tags counterwatch_e2e)
work=$(mktemp -d)
UPLOADWATCH_STACK_LOGS="$work/stack"
mkdir -p "$UPLOADWATCH_STACK_LOGS"
# live_check: scripts/live_check.sh's tests (its live path on the simulator).
langs=(python node go live_check)
declare -A prep_ok=() pid=() passed=() failed=() secs=() tls_pid=()
started=$SECONDS

cleanup() {
  local p
  for p in "${pid[@]}" "${tls_pid[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${tls_pid[@]}"; do wait "$p" 2>/dev/null; done
  uploadwatch_stop_stack
  rm -rf "$work"
}
summarized=0
interrupted() {  # still ends with the summary line the callers parse
  echo "client tests: interrupted" >&2
  [[ $summarized == 1 ]] || echo "0 passed, 1 failed"
  exit "$1"
}
trap cleanup EXIT
trap 'interrupted 130' INT
trap 'interrupted 143' TERM

note() { echo "client tests: $*" >&2; }

# Shows the end of a failed suite's log on stderr.
show_log() {
  echo "---- $1 (last 60 lines of $2) ----" >&2
  tail -n 60 "$2" >&2
  echo "----" >&2
}

# --- Preparation (before the stack starts, so the watches start together) ---

prep_python() {
  timeout 60 client/python/generate_stubs.sh >"$work/python.prep" 2>&1 || return 1
  timeout 30 "$PY" -c 'import grpc, google.protobuf' >>"$work/python.prep" 2>&1
}

prep_live_check() {
  timeout 30 "$PY" -c 'import json, unittest' >"$work/live_check.prep" 2>&1 &&
    command -v curl >>"$work/live_check.prep" 2>&1
}

prep_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "node/npm not found" >"$work/node.prep"
    return 1
  fi
  [[ -d client/node/node_modules ]] && return 0
  (cd client/node && timeout 300 npm ci --no-audit --no-fund --loglevel=error) >"$work/node.prep" 2>&1
}

prep_go() {
  command -v go >/dev/null || { echo "go not found (golang-go)" >"$work/go.prep"; return 1; }
  GOPATH_DIRS=$(client/go/gopath.sh "$work/gopath" 2>"$work/go.prep") || return 1
  GO_PKG_DIR="$work/gopath/src/github.com/uploadwatch/uploadwatch/client/go"
  # GOPATH mode over Debian's /usr/share/gocode: no module proxy, no network.
  local go=(env GOPATH="$GOPATH_DIRS" GO111MODULE=off GOFLAGS= GOPROXY=off go)
  (cd "$GO_PKG_DIR" &&
    timeout 300 "${go[@]}" vet "${go_tags[@]}" . ./cmd/... &&
    timeout 300 "${go[@]}" test "${go_tags[@]}" -c -o "$work/go/uploadwatch.test" . &&
    timeout 300 "${go[@]}" build -o "$work/go/uploadwatch-watch" ./cmd/uploadwatch-watch) >>"$work/go.prep" 2>&1
}

for lang in "${langs[@]}"; do
  if "prep_$lang"; then
    prep_ok[$lang]=1
  else
    prep_ok[$lang]=0
    show_log "$lang preparation failed" "$work/$lang.prep"
  fi
done

# --- The stack and the suites ---

# Live demo uploads 10x faster: each watch ends within ~9 s.
if ! UPLOADWATCH_DEMO_SPEED=10 uploadwatch_start_stack 127.0.0.1:0 200ms; then
  note "the stack did not start"
  summarized=1
  echo "0 passed, ${#langs[@]} failed"
  exit 1
fi

# Another server on the stack's simulator: VAR NAME [server flags...]. Sets
# VAR to its host:port; its PID goes into tls_pid[NAME].
start_tls_server() {
  local var=$1 name=$2 log="$UPLOADWATCH_STACK_LOGS/$2.log" port
  shift 2
  METRIKA_OAUTH_TOKEN="$UPLOADWATCH_DEMO_TOKEN" "$UPLOADWATCH_BIN/service/uploading_server" \
    --listen=127.0.0.1:0 --poll_interval=200ms --upstream_url="$UPLOADWATCH_SIM_URL" "$@" \
    >"$log" 2>&1 &
  tls_pid[$name]=$!
  port=$(_uploadwatch_wait_for "$log" 'serving on port [0-9]+' 15) || {
    cat "$log" >&2
    return 1
  }
  printf -v "$var" '127.0.0.1:%s' "${port##* }"
}

UPLOADWATCH_CERTS="$work/certs"
mkdir -p "$UPLOADWATCH_CERTS"
tls_flags=(--tls_cert_file="$UPLOADWATCH_CERTS/server.pem" --tls_key_file="$UPLOADWATCH_CERTS/server.key")
if ! timeout 60 tests/make_test_certs.sh "$UPLOADWATCH_CERTS" ||
  ! start_tls_server UPLOADWATCH_TLS_ADDR tls "${tls_flags[@]}" ||
  ! start_tls_server UPLOADWATCH_MTLS_ADDR mtls "${tls_flags[@]}" \
    --tls_client_ca_file="$UPLOADWATCH_CERTS/ca.pem"; then
  note "the TLS servers did not start"
  summarized=1
  echo "0 passed, ${#langs[@]} failed"
  exit 1
fi
export UPLOADWATCH_CERTS UPLOADWATCH_TLS_ADDR UPLOADWATCH_MTLS_ADDR

run_python() {
  local modules=(test_client test_scripted)
  [[ $E2E_COUNTER_WATCH == 1 ]] && modules+=(test_counter_watch_e2e)
  cd client/python && exec timeout -k 10 "$SUITE_TIMEOUT" "$PY" -m unittest -v "${modules[@]}"
}
run_live_check() {
  UPLOADWATCH_LIVE_WATCH_SECONDS=3 exec timeout -k 10 "$SUITE_TIMEOUT" "$PY" -m unittest -v \
    client/testing/test_live_check.py
}
run_node() {
  cd client/node && exec timeout -k 10 "$SUITE_TIMEOUT" node --test --test-reporter=tap test/
}
run_go() {
  cd "$GO_PKG_DIR" && UPLOADWATCH_GO_WATCH_BIN="$work/go/uploadwatch-watch" \
    exec timeout -k 10 "$SUITE_TIMEOUT" "$work/go/uploadwatch.test" -test.v -test.count=1 \
    -test.timeout="$((SUITE_TIMEOUT - 5))s"
}

declare -A begin=()
for lang in "${langs[@]}"; do
  [[ ${prep_ok[$lang]} == 1 ]] || continue
  begin[$lang]=$SECONDS
  "run_$lang" >"$work/$lang.log" 2>&1 &
  pid[$lang]=$!
done

# Counts of one suite's log: sets passed[lang] and failed[lang]. Skipped and
# cancelled tests count as failed (nothing may skip here), and a suite that
# failed without a countable failure (crash, timeout) counts one.
count_unittest() {  # LANG LOG: Python unittest's counts
  local lang=$1 log=$2 ran bad
  ran=$(grep -oE '^Ran [0-9]+ tests?' "$log" | tail -n1 | grep -oE '[0-9]+')
  if [[ -z "$ran" ]]; then  # killed before the summary: the tests done so far
    passed[$lang]=$(grep -cE ' \.\.\. ok$' "$log") failed[$lang]=0
    return
  fi
  bad=$(tail -n 3 "$log" | grep -E '^(OK|FAILED) ?\(' | grep -oE '(failures|errors|skipped|unexpected successes)=[0-9]+' |
    awk -F= '{s += $2} END {print s + 0}')
  passed[$lang]=$((ran - bad)) failed[$lang]=$bad
}
count_python() { count_unittest python "$1"; }
count_live_check() { count_unittest live_check "$1"; }
tap_total() {  # LOG NAME -> the N of node's `# NAME N` summary line
  grep -E "^# $2 [0-9]+$" "$1" | tail -n1 | awk '{print $3}'
}
count_node() {
  local log=$1 pass fail cancelled skipped todo
  pass=$(tap_total "$log" pass) fail=$(tap_total "$log" fail)
  cancelled=$(tap_total "$log" cancelled) skipped=$(tap_total "$log" skipped)
  todo=$(tap_total "$log" todo)
  [[ -z "$pass" ]] && pass=$(grep -cE '^ +ok [0-9]+ - ' "$log")  # killed before the summary
  passed[node]=$pass
  failed[node]=$(( ${fail:-0} + ${cancelled:-0} + ${skipped:-0} + ${todo:-0} ))
}
count_go() {
  local log=$1
  passed[go]=$(grep -cE '^--- PASS: ' "$log")
  failed[go]=$(grep -cE '^--- (FAIL|SKIP): ' "$log")
}

total_passed=0 total_failed=0
for lang in "${langs[@]}"; do
  if [[ ${prep_ok[$lang]} != 1 ]]; then
    passed[$lang]=0 failed[$lang]=1
    note "$lang: not run (preparation failed)"
  else
    wait "${pid[$lang]}"
    rc=$?
    unset "pid[$lang]"
    secs[$lang]=$((SECONDS - begin[$lang]))
    "count_$lang" "$work/$lang.log"
    if [[ $rc -ne 0 && ${failed[$lang]} -eq 0 ]]; then
      failed[$lang]=1   # crashed, timed out, or its output could not be read
    fi
    note "$lang: ${passed[$lang]} passed, ${failed[$lang]} failed in ${secs[$lang]}s (exit $rc)"
    if [[ $rc -ne 0 || ${failed[$lang]} -ne 0 ]]; then
      show_log "$lang tests" "$work/$lang.log"
    fi
  fi
  total_passed=$((total_passed + passed[$lang]))
  total_failed=$((total_failed + failed[$lang]))
done

if [[ $total_failed -ne 0 ]]; then
  show_log "server log" "$UPLOADWATCH_STACK_LOGS/server.log"
fi
note "done in $((SECONDS - started))s"
summarized=1
echo "$total_passed passed, $total_failed failed"
[[ $total_failed -eq 0 ]]
