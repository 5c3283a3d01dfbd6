#!/usr/bin/env bash
# Issue 16: the real uploading_server binary and simulator on loopback, driven
# by a hostile client (tests/abuse_client.py: raw HTTP/2 frames and grpcio).
# HTTP/2 stream bursts, compressed requests, undecodable requests, an empty
# authorization, and draining on SIGTERM. Prints the figures it measures.
#
# UPLOADWATCH_ABUSE_BIN (a directory laid out like bazel-bin) and
# UPLOADWATCH_ABUSE_FLAGS let the same checks run against another build, to
# record before/after figures; CI uses neither.
set -uo pipefail
runfiles="${TEST_SRCDIR:-$PWD/..}/uploadwatch"
export UPLOADWATCH_BIN="${UPLOADWATCH_ABUSE_BIN:-$runfiles}"
source "$runfiles/scripts/lib/stack.sh"
client=("/usr/bin/python3" "$runfiles/tests/abuse_client.py")
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
passed=0 failed=0
check() {  # NAME CONDITION...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "PASS $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}
contains() { [[ "$1" == *"$2"* ]]; }  # TEXT PART
# A sanitizer build's RSS is mostly the sanitizer's own (TSan keeps shadow
# memory several times the heap), so the RSS bounds say nothing about the
# server there: they are checked on the plain build (CI runs it too), and
# the figures are still printed.
sanitizer=$(ldd "$UPLOADWATCH_BIN/service/uploading_server" 2>/dev/null | grep -o 'lib[at]san' | head -1)
rss_check() {  # NAME CONDITION...
  if [[ -n "$sanitizer" ]]; then echo "SKIP $1: RSS under $sanitizer is the sanitizer's"; else check "$@"; fi
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$UPLOADWATCH_SERVER_PID/status"; }
json() {  # JSON FIELD -> that field of the JSON object ("" if absent)
  /usr/bin/python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$1" "$2" 2>/dev/null
}
service=/metrika.offline_conversions.v1.UploadingService
# Waits (up to a minute) until the server answers a health check, and says
# how long that took. Between a flood and the next finding: what follows
# checks answers and the drain's timing, not how fast the server works off
# a flood; instant on the plain build, seconds under TSan on a loaded
# machine (the 20,000 reset streams and the gzip bombs were still being
# worked off when the next call's 10 s deadline passed).
settle() {  # AFTER-WHAT
  local t0=$SECONDS out=""
  for _ in 1 2 3 4 5 6; do
    out=$("${client[@]}" unary "$addr" /grpc.health.v1.Health/Check "")
    [[ "$(json "$out" code)" == OK ]] && break
  done
  echo "settled after $1: health answered within $((SECONDS - t0)) s ($out)"
}
get12=08959d8701100c  # GetUploadingRequest{counter_id: 2215573, uploading_id: 12}

unset METRIKA_OAUTH_TOKEN
UPLOADWATCH_STACK_LOGS="$tmp/stack" && mkdir -p "$UPLOADWATCH_STACK_LOGS"
# The drain must outlast two client processes started after the signal
# (Python with grpcio takes a second or more each on a loaded machine): 6 s.
# The bursts name their caller (x-caller: burst), so that what they spend of
# the server token is theirs, not the later checks' (127.0.0.1).
drain_s=6 grace_s=3
read -r -a flags <<<"${UPLOADWATCH_ABUSE_FLAGS:---drain_period=${drain_s}s --shutdown_grace=${grace_s}s --caller_identity_header=x-caller}"
if ! uploadwatch_start_stack 127.0.0.1:0 2s "${flags[@]}"; then
  check "stack starts" false
  echo "$passed passed, $failed failed"
  exit 1
fi
addr=$UPLOADWATCH_ADDR
log="$UPLOADWATCH_STACK_LOGS/server.log"
before=$(rss_kb)
echo "baseline RSS ${before} kB"

# --- Finding 3: HTTP/2 stream bursts ------------------------------------------
out=$("${client[@]}" settings "$addr"); echo "settings: $out"
check "MAX_CONCURRENT_STREAMS is advertised (1100)" test "$(json "$out" max_concurrent_streams)" = 1100

# 5,000 streams left open on one connection, ignoring the advertised limit.
out=$("${client[@]}" burst "$addr" 5000 headers); echo "burst of open streams: $out"
sleep 2
after=$(rss_kb)
echo "RSS after 5000 open streams: ${before} -> ${after} kB"
check "a client exceeding MAX_CONCURRENT_STREAMS loses its connection" test "$(json "$out" closed)" = True
rss_check "5000 open streams do not grow RSS by 50 MB (+$(((after - before) / 1024)) MB)" \
  test $((after - before)) -lt $((50 * 1024))
out=$("${client[@]}" unary "$addr" "$service/GetUploading" "$get12")
check "well-behaved calls still work after the burst" test "$(json "$out" code)" = OK

# Open-and-reset at once ("rapid reset"): only recorded (see the README).
base=$(rss_kb)
out=$("${client[@]}" burst "$addr" 20000 reset); echo "open-and-reset burst: $out"
sleep 1
echo "RSS after 20000 open+reset streams: ${base} -> $(rss_kb) kB (recorded, not checked)"
reached=$(grep -c 'rpc=WatchUploading counter=2215573 id=16 ' "$log")
charged=$(grep -c 'rpc=WatchUploading counter=2215573 id=16 code=RESOURCE_EXHAUSTED.*has used its' "$log")
# Recorded, not checked: how many reach the watch code, and whether their
# fetches were cancelled before a state was stored, depends on timing.
echo "reset watches that reached the watch code: $reached, refused for their caller's spent share: $charged (recorded)"
out=$("${client[@]}" unary "$addr" "$service/GetUploading" "$get12")
check "another caller's calls still work after the rapid-reset burst" test "$(json "$out" code)" = OK

# --- Finding 4: compressed requests -------------------------------------------
base=$(rss_kb)
out=$("${client[@]}" gzip "$addr" 60 16); echo "gzip: ${out:0:300}"
sleep 1
after=$(rss_kb)
echo "RSS after 16 parallel 60 MiB gzip requests: ${base} -> ${after} kB"
check "a gzip request is refused as such" contains "$out" "Compression algorithm 'gzip' is disabled"
rss_check "16 gzip bombs do not grow RSS by 20 MB (+$(((after - base) / 1024)) MB)" \
  test $((after - base)) -lt $((20 * 1024))

settle "the gzip bombs"

# --- Finding 7: empty authorization, undecodable requests ---------------------
out=$("${client[@]}" unary "$addr" "$service/GetUploading" "$get12" ""); echo "empty authorization: $out"
check "an empty authorization is UNAUTHENTICATED" test "$(json "$out" code)" = UNAUTHENTICATED
out=$("${client[@]}" unary "$addr" "$service/GetUploading" "$get12" "OAuth ")
check "'OAuth ' is UNAUTHENTICATED" test "$(json "$out" code)" = UNAUTHENTICATED
out=$("${client[@]}" unary "$addr" "$service/GetUploading" ffffff); echo "undecodable: $out"
check "an undecodable request is INVALID_ARGUMENT" test "$(json "$out" code)" = INVALID_ARGUMENT
check "  ...saying what is wrong" contains "$out" "not a valid GetUploading request"
check "  ...and logged" grep -q "rpc=GetUploading .*code=INVALID_ARGUMENT.*not a valid" "$log"
out=$("${client[@]}" unary "$addr" "$service/NoSuchMethod" 00)
check "an unknown method is still UNIMPLEMENTED" test "$(json "$out" code)" = UNIMPLEMENTED

settle "the undecodable requests"

# --- Finding 6: draining on SIGTERM -------------------------------------------
"${client[@]}" watch "$addr" 2215573 19 >"$tmp/watch.out" 2>&1 &
watcher=$!
for _ in $(seq 50); do grep -q '"message": 1' "$tmp/watch.out" && break; sleep 0.1; done
check "a watch is open before the signal" grep -q '"message": 1' "$tmp/watch.out"
start=$(date +%s.%N)
kill -TERM "$UPLOADWATCH_SERVER_PID"
out=$("${client[@]}" unary "$addr" /grpc.health.v1.Health/Check ""); echo "health right after SIGTERM: $out"
check "health is NOT_SERVING right after SIGTERM, not refused" test "$(json "$out" reply)" = 0802
out=$("${client[@]}" unary "$addr" "$service/GetUploading" "$get12")
check "calls are still served while draining" test "$(json "$out" code)" = OK
check "the watch is still open while draining" kill -0 "$watcher"
wait "$UPLOADWATCH_SERVER_PID"; rc=$?
took=$(/usr/bin/python3 -c "import sys,time; print(round(time.time()-float(sys.argv[1]),2))" "$start")
echo "SIGTERM to exit: ${took} s (drain ${drain_s} s, grace ${grace_s} s)"
check "exit 0 after draining (rc $rc)" test "$rc" -eq 0
check "the drain lasted --drain_period (${took} s >= ${drain_s} - 0.1)" /usr/bin/python3 -c "import sys; sys.exit(float(sys.argv[1]) < float(sys.argv[2]) - 0.1)" "$took" "$drain_s"
check "exit within drain + grace (${took} s <= $((drain_s + grace_s)))" /usr/bin/python3 -c "import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))" "$took" "$((drain_s + grace_s))"
wait "$watcher"
echo "watch: $(tail -n1 "$tmp/watch.out")"
check "the watch ended UNAVAILABLE" test "$(json "$(tail -n1 "$tmp/watch.out")" code)" = UNAVAILABLE
check "  ...asking to re-watch" grep -q "re-watch" "$tmp/watch.out"
UPLOADWATCH_SERVER_PID=""
uploadwatch_stop_stack

# A failure (a sanitizer's report ends the server with its own exit code)
# is explained by the server's log, which lives in the test's temp folder.
if [[ $failed -ne 0 ]]; then
  echo "--- server log: sanitizer reports, then the last lines ---"
  sed -n '/^WARNING: ThreadSanitizer\|^==[0-9]*==ERROR/,/^SUMMARY/p' "$log"
  tail -n 40 "$log"
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
