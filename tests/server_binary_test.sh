#!/usr/bin/env bash
# The real uploading_server binary: start-up checks, signals, exit codes.
set -uo pipefail
runfiles="${TEST_SRCDIR:-$PWD/..}/uploadwatch"
export UPLOADWATCH_BIN="$runfiles"
server="$runfiles/service/uploading_server"
source "$runfiles/scripts/lib/stack.sh"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
passed=0 failed=0
check() {  # NAME CONDITION...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "PASS $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}

# 1. Against the simulator: serves, then SIGTERM -> exit 0 quickly.
unset METRIKA_OAUTH_TOKEN
UPLOADWATCH_STACK_LOGS="$tmp/stack" && mkdir -p "$UPLOADWATCH_STACK_LOGS"
if uploadwatch_start_stack 127.0.0.1:0 200ms --shutdown_grace=3s; then
  check "serves on a port" test -n "$UPLOADWATCH_ADDR"
  start=$SECONDS
  kill -TERM "$UPLOADWATCH_SERVER_PID"
  wait "$UPLOADWATCH_SERVER_PID"; rc=$?
  check "SIGTERM exits 0 (got $rc)" test "$rc" -eq 0
  check "SIGTERM exits within the grace" test $((SECONDS - start)) -le 3
  check "log says stopped" grep -q "stopped" "$UPLOADWATCH_STACK_LOGS/server.log"
  check "the token is not logged" bash -c "! grep -q '$UPLOADWATCH_DEMO_TOKEN' '$UPLOADWATCH_STACK_LOGS/server.log'"
  UPLOADWATCH_SERVER_PID=""
  uploadwatch_stop_stack
else
  check "stack starts" false
fi

# 2. SIGINT behaves like SIGTERM.
"$server" --listen=127.0.0.1:0 --upstream_url=http://127.0.0.1:9 >"$tmp/int.log" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q "serving on port" "$tmp/int.log" && break; sleep 0.1; done
# The fan-out threads run at nice +10 by default (--fan_out_nice), the rest
# of the process at its own priority (the first process-nice thread is main).
base_nice=$(ps -o ni= -p $$ | tr -d ' ')
niced=$(ps -L -o ni= -p "$pid" | awk -v want=$((base_nice + 10 > 19 ? 19 : base_nice + 10)) '$1 == want' | wc -l)
check "the two fan-out threads run at nice +10 (found $niced)" test "$niced" -eq 2
at_base=$(ps -L -o ni= -p "$pid" | awk -v want="$base_nice" '$1 == want' | wc -l)
check "the other threads keep the process's nice ($at_base)" test "$at_base" -ge 1
kill -INT "$pid"; wait "$pid"; rc=$?
check "SIGINT exits 0 (got $rc)" test "$rc" -eq 0
"$server" --listen=127.0.0.1:0 --upstream_url=http://127.0.0.1:9 --fan_out_nice=0 >"$tmp/nice0.log" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q "serving on port" "$tmp/nice0.log" && break; sleep 0.1; done
others=$(ps -L -o ni= -p "$pid" | awk -v base="$base_nice" '$1 != base' | wc -l)
check "--fan_out_nice=0 leaves every thread at the process's nice ($others other)" test "$others" -eq 0
kill -TERM "$pid"; wait "$pid"

# 3. Start-up mistakes are refused with a message that says what to fix.
"$server" --listen=127.0.0.1:0 --upstream_url=http://example.com >"$tmp/url.log" 2>&1; rc=$?
check "plain http to a remote host is refused (rc $rc)" test "$rc" -eq 2
check "  ...saying why" grep -qi "http" "$tmp/url.log"
"$server" --listen=127.0.0.1:0 --oauth_token_file="$tmp/missing" >"$tmp/file.log" 2>&1; rc=$?
check "a missing token file is refused (rc $rc)" test "$rc" -eq 2
check "  ...naming the flag" grep -q "oauth_token_file" "$tmp/file.log"
"$server" --listen=999.1.1.1:1 --upstream_url=http://127.0.0.1:9 >"$tmp/listen.log" 2>&1; rc=$?
check "an unusable listen address fails (rc $rc)" test "$rc" -ne 0
check "  ...saying so" grep -q "cannot listen" "$tmp/listen.log"
"$server" --listen=127.0.0.1:0 --upstream_url=http://127.0.0.1:9 --fan_out_nice=-5 >"$tmp/nice.log" 2>&1; rc=$?
check "a negative --fan_out_nice is refused (rc $rc)" test "$rc" -eq 2
check "  ...naming the flag" grep -q "fan_out_nice" "$tmp/nice.log"

METRIKA_OAUTH_TOKEN="two words" "$server" --listen=127.0.0.1:0 >"$tmp/badtok.log" 2>&1; rc=$?
check "a malformed server token is refused at start (rc $rc)" test "$rc" -eq 2
check "  ...without printing it" bash -c "! grep -q 'two words' '$tmp/badtok.log'"

# 4. The token file is read, and its content never printed.
printf 'file-token-secret\n' >"$tmp/token"
"$server" --listen=127.0.0.1:0 --upstream_url=http://127.0.0.1:9 \
  --oauth_token_file="$tmp/token" >"$tmp/tf.log" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q "serving on port" "$tmp/tf.log" && break; sleep 0.1; done
kill -TERM "$pid"; wait "$pid"
check "the token file sets the server token" grep -q "server token set" "$tmp/tf.log"
check "  ...and is not logged" bash -c "! grep -q file-token-secret '$tmp/tf.log'"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
