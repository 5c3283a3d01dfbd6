#!/usr/bin/env bash
# deploy/haproxy/haproxy.cfg with real HAProxy in front of three real
# uploadwatch replicas on one real redis-server (multi-replica mode), against
# the Metrica simulator: the C++ CLI and the Python client (client/python, its
# stubs generated here) go through it; calls spread over the replicas; a watch
# of a moving uploading by each client, wherever HAProxy puts it, sees the
# same versions to the terminal status; calls keep going when a replica is
# killed.
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
fail_setup() { echo "$1"; [[ -n "${2:-}" ]] && cat "$2"; echo "0 passed, 1 failed"; exit 1; }

redis_bin=$(command -v redis-server || echo /usr/bin/redis-server)
[[ -x "$redis_bin" ]] || fail_setup "redis-server is not installed (scripts/lib/deps.sh installs it)"
rport=$(free_port)
mkdir -p "$tmp/redis"
"$redis_bin" --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$tmp/redis" >"$tmp/redis.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $rport), 1)" 2>/dev/null && break
  sleep 0.1
done
replica_flags=(--redis="127.0.0.1:$rport" --redis_key_prefix=hatest: --redis_lease_ttl=1500ms)

# Three replicas on one simulator and one Redis (the stack helper starts the
# simulator and the first server; the others point at the same simulator).
# Live demo uploads finish within 9 s.
export UPLOADWATCH_DEMO_SPEED=10
UPLOADWATCH_STACK_LOGS="$tmp/one" && mkdir -p "$UPLOADWATCH_STACK_LOGS"
m=("" "$(free_port)")
uploadwatch_start_stack 127.0.0.1:0 1s --metrics_listen=127.0.0.1:${m[1]} "${replica_flags[@]}" ||
  fail_setup "the first replica did not start"
pids+=("$UPLOADWATCH_SERVER_PID" "$UPLOADWATCH_SIM_PID")
server_pid=("" "$UPLOADWATCH_SERVER_PID")
replica=("" "$UPLOADWATCH_ADDR")
for n in 2 3; do
  m[$n]=$(free_port)
  METRIKA_OAUTH_TOKEN="$UPLOADWATCH_DEMO_TOKEN" "$runfiles/service/uploading_server" \
    --listen=127.0.0.1:0 --poll_interval=1s --drain_period=0s --upstream_url="$UPLOADWATCH_SIM_URL" \
    --metrics_listen=127.0.0.1:${m[$n]} "${replica_flags[@]}" >"$tmp/server$n.log" 2>&1 &
  server_pid[$n]=$!
  pids+=("$!")
  port=$(_uploadwatch_wait_for "$tmp/server$n.log" 'serving on port [0-9]+' 15) ||
    fail_setup "replica $n did not start" "$tmp/server$n.log"
  replica[$n]="127.0.0.1:${port##* }"
done

listen="127.0.0.1:$(free_port)"
UW_HAPROXY_LISTEN=$listen UW_REPLICA_1=${replica[1]} UW_REPLICA_2=${replica[2]} \
  UW_REPLICA_3=${replica[3]} UW_HAPROXY_STATS="127.0.0.1:$(free_port)" \
  "$haproxy_bin" -db -f "$runfiles/deploy/haproxy/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
haproxy_pid=$!
pids+=("$haproxy_pid")
for _ in $(seq 100); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', ${listen##*:}), 1)" 2>/dev/null && break
  sleep 0.1
done
check "haproxy runs the config" kill -0 "$haproxy_pid" || cat "$tmp/haproxy.log"

# The Python client's stubs, from the repository's protos.
py_dir="$runfiles/client/python"
export UPLOADWATCH_PY_GEN="$tmp/py_gen"
"$py_dir/generate_stubs.sh" "$UPLOADWATCH_PY_GEN" >"$tmp/stubs.log" 2>&1
check "python stubs generated" test $? -eq 0 || cat "$tmp/stubs.log"
py() { python3 "$py_dir/uploadwatch_client.py" --server="$listen" "$@"; }

before=(); for n in 1 2 3; do before[$n]=$(metrics_count "${m[$n]}"); done
ok=0
for i in $(seq 12); do
  "$cli" --server="$listen" get 2215573 12 >"$tmp/get.$i" 2>&1 && ok=$((ok + 1))
done
check "12 CLI Gets through haproxy succeed ($ok)" test "$ok" -eq 12
check "  ...and answer the uploading" grep -qi "status" "$tmp/get.1"
cat "$tmp/get.1"
ok=0
for i in $(seq 6); do
  py get 2215573 12 >"$tmp/pyget.$i" 2>&1 && ok=$((ok + 1))
done
check "6 Python Gets through haproxy succeed ($ok)" test "$ok" -eq 6
check "  ...and answer the uploading" grep -q "PROCESSED" "$tmp/pyget.1" || cat "$tmp/pyget.1"
served=""
for n in 1 2 3; do
  served[$n]=$(( $(metrics_count "${m[$n]}") - before[$n] ))
done
echo "calls served: replica1 ${served[1]}, replica2 ${served[2]}, replica3 ${served[3]}"
for n in 1 2 3; do check "replica $n served some" test "${served[$n]}" -gt 0; done

"$cli" --server="$listen" list 2215573 >"$tmp/list" 2>&1
check "a CLI List through haproxy succeeds" test $? -eq 0
py list 2215573 >"$tmp/pylist" 2>&1
check "a Python List through haproxy succeeds" test $? -eq 0

# A moving uploading (a live demo upload still under way), watched to its
# terminal status by both clients at once through haproxy.
moving=$(py --json list 2215573 | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
live = [r for r in rows if int(r["id"]) > 100 and r.get("status") not in ("PROCESSED", "LINKAGE_FAILURE")]
print(min(int(r["id"]) for r in live) if live else "")')
check "a moving uploading to watch ($moving)" test -n "$moving"
timeout 40 "$cli" --server="$listen" --json watch 2215573 "$moving" >"$tmp/cliwatch" 2>"$tmp/cliwatch.err" &
cli_watch=$!
timeout 40 python3 "$py_dir/uploadwatch_client.py" --server="$listen" --json watch 2215573 "$moving" >"$tmp/pywatch" 2>"$tmp/pywatch.err"
py_rc=$?
wait "$cli_watch"
cli_rc=$?
check "the CLI watch ends at the terminal status (rc $cli_rc)" test "$cli_rc" -eq 0 || cat "$tmp/cliwatch.err"
check "the Python watch ends at the terminal status (rc $py_rc)" test "$py_rc" -eq 0 || cat "$tmp/pywatch.err"
versions() {  # FILE -> "version:status" per message
  python3 -c '
import json, sys
for l in open(sys.argv[1]):
    if l.strip():
        m = json.loads(l)
        print("%s:%s" % (m.get("version", "0"), m["uploading"].get("status")))' "$1"
}
cli_v=$(versions "$tmp/cliwatch" | tail -n 1); py_v=$(versions "$tmp/pywatch" | tail -n 1)
echo "last message: CLI $cli_v, Python $py_v"
check "both end at the same version and status (one history across replicas)" \
  test -n "$cli_v" -a "$cli_v" = "$py_v"
check "  ...a terminal one" grep -qE ':(PROCESSED|LINKAGE_FAILURE)$' <<<"$cli_v"

kill -KILL "${server_pid[1]}"; wait "${server_pid[1]}" 2>/dev/null
ok=0
for i in $(seq 6); do
  "$cli" --server="$listen" get 2215573 12 >"$tmp/after.$i" 2>&1 && ok=$((ok + 1))
done
check "after a replica is killed every CLI Get still succeeds ($ok of 6)" test "$ok" -eq 6
ok=0
for i in $(seq 6); do
  py get 2215573 13 >"$tmp/pyafter.$i" 2>&1 && ok=$((ok + 1))
done
check "  ...and every Python Get ($ok of 6)" test "$ok" -eq 6

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
