#!/usr/bin/env bash
# deploy/haproxy/haproxy.cfg with real HAProxy in front of two real
# uploadwatch servers (the third backend is a closed port: a dead replica),
# against the Metrica simulator: calls go through, spread over both servers,
# and keep going when one of them is killed.
set -uo pipefail
runfiles="${TEST_SRCDIR:-$PWD/..}/uploadwatch"
export UPLOADWATCH_BIN="$runfiles"
source "$runfiles/scripts/lib/stack.sh"
cli="$runfiles/client/uploadwatch"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
passed=0 failed=0
check() {  # NAME CONDITION...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "PASS $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}
haproxy_bin=$(command -v haproxy || echo /usr/sbin/haproxy)
if [[ ! -x "$haproxy_bin" ]]; then
  echo "haproxy is not installed (scripts/lib/deps.sh installs it)"; echo "0 passed, 1 failed"; exit 1
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
metrics_count() {  # METRICS_PORT -> uploadwatch_rpcs_total summed over labels
  python3 - "$1" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
print(int(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
              if l.startswith("uploadwatch_rpcs_total{"))))
PY
}

pids=()
# Teardown needs no graceful drain: SIGKILL, then reap.
cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT

# Two replicas on one simulator (the stack helper starts one server and the
# simulator; the second server points at the same simulator).
UPLOADWATCH_STACK_LOGS="$tmp/one" && mkdir -p "$UPLOADWATCH_STACK_LOGS"
m1=$(free_port)
uploadwatch_start_stack 127.0.0.1:0 1s --metrics_listen=127.0.0.1:$m1 || { echo "0 passed, 1 failed"; exit 1; }
pids+=("$UPLOADWATCH_SERVER_PID" "$UPLOADWATCH_SIM_PID")
server1_pid=$UPLOADWATCH_SERVER_PID
replica1=$UPLOADWATCH_ADDR
m2=$(free_port)
METRIKA_OAUTH_TOKEN="$UPLOADWATCH_DEMO_TOKEN" "$runfiles/service/uploading_server" \
  --listen=127.0.0.1:0 --poll_interval=1s --upstream_url="$UPLOADWATCH_SIM_URL" \
  --metrics_listen=127.0.0.1:$m2 >"$tmp/server2.log" 2>&1 &
server2_pid=$!
pids+=("$server2_pid")
port2=$(_uploadwatch_wait_for "$tmp/server2.log" 'serving on port [0-9]+' 15) || { cat "$tmp/server2.log"; echo "0 passed, 1 failed"; exit 1; }
replica2="127.0.0.1:${port2##* }"
dead="127.0.0.1:$(free_port)"  # nobody listens there

listen="127.0.0.1:$(free_port)"
UW_HAPROXY_LISTEN=$listen UW_REPLICA_1=$replica1 UW_REPLICA_2=$replica2 \
  UW_REPLICA_3=$dead UW_HAPROXY_STATS="127.0.0.1:$(free_port)" \
  "$haproxy_bin" -db -f "$runfiles/deploy/haproxy/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
haproxy_pid=$!
pids+=("$haproxy_pid")
for _ in $(seq 100); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', ${listen##*:}), 1)" 2>/dev/null && break
  sleep 0.1
done
check "haproxy runs the config" kill -0 "$haproxy_pid" || cat "$tmp/haproxy.log"

before1=$(metrics_count "$m1"); before2=$(metrics_count "$m2")
ok=0
for i in $(seq 12); do
  "$cli" --server="$listen" get 2215573 12 >"$tmp/get.$i" 2>&1 && ok=$((ok + 1))
done
check "12 Gets through haproxy succeed ($ok)" test "$ok" -eq 12
check "  ...and answer the uploading" grep -qi "status" "$tmp/get.1"
cat "$tmp/get.1"
after1=$(metrics_count "$m1"); after2=$(metrics_count "$m2")
echo "calls served: replica1 $((after1 - before1)), replica2 $((after2 - before2))"
check "replica 1 served some" test $((after1 - before1)) -gt 0
check "replica 2 served some" test $((after2 - before2)) -gt 0

"$cli" --server="$listen" list 2215573 >"$tmp/list" 2>&1
check "a List through haproxy succeeds" test $? -eq 0

# A server-streaming call through haproxy: the watch sends the current state
# first; the CLI's watch runs until the uploading is terminal (12 already is).
timeout 20 "$cli" --server="$listen" watch 2215573 12 >"$tmp/watch" 2>&1
rc=$?
check "a Watch through haproxy streams to the end (rc $rc)" test "$rc" -eq 0 -a -s "$tmp/watch"

kill -KILL "$server1_pid"; wait "$server1_pid" 2>/dev/null
ok=0
for i in $(seq 6); do
  "$cli" --server="$listen" get 2215573 12 >"$tmp/after.$i" 2>&1 && ok=$((ok + 1))
done
check "after a replica is killed every Get still succeeds ($ok of 6)" test "$ok" -eq 6

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
