# Sourced by scripts: starts the Metrica simulator and the uploadwatch server
# (both already built) and stops them again.
#
#   uploadwatch_start_stack [LISTEN] [POLL_INTERVAL] [extra server flags...]
#     LISTEN defaults to 127.0.0.1:0 (any free port). Without
#     METRIKA_OAUTH_TOKEN the simulator is started and the server points at it
#     with the simulator's demo token (UPLOADWATCH_DEMO_SPEED, default 1, runs
#     its live uploads faster). Sets UPLOADWATCH_ADDR (host:port),
#     UPLOADWATCH_SIM_URL (empty against real Metrica), UPLOADWATCH_DEMO_TOKEN.
#   uploadwatch_stop_stack
#     SIGTERM to both, waits for them to exit.
UPLOADWATCH_BIN="${UPLOADWATCH_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/bazel-bin}"
UPLOADWATCH_DEMO_TOKEN="demo-token"

_uploadwatch_wait_for() {  # FILE REGEX SECONDS -> prints the first match
  local file=$1 regex=$2 deadline=$((SECONDS + $3)) match
  while ((SECONDS < deadline)); do
    match=$(grep -oE "$regex" "$file" 2>/dev/null | head -n1)
    [[ -n "$match" ]] && { echo "$match"; return 0; }
    sleep 0.1
  done
  return 1
}

uploadwatch_start_stack() {
  local listen=${1:-127.0.0.1:0} poll=${2:-30s}
  shift 2 2>/dev/null || shift $#
  UPLOADWATCH_STACK_LOGS=${UPLOADWATCH_STACK_LOGS:-$(mktemp -d)}
  local upstream_flag=() token_env=()
  UPLOADWATCH_SIM_URL=""
  if [[ -z "${METRIKA_OAUTH_TOKEN:-}" ]]; then
    "$UPLOADWATCH_BIN/service/simulator/metrica_simulator" --port=0 \
      --token="$UPLOADWATCH_DEMO_TOKEN" --demo_speed="${UPLOADWATCH_DEMO_SPEED:-1}" >"$UPLOADWATCH_STACK_LOGS/simulator.log" 2>&1 &
    UPLOADWATCH_SIM_PID=$!
    UPLOADWATCH_SIM_URL=$(_uploadwatch_wait_for "$UPLOADWATCH_STACK_LOGS/simulator.log" \
      'http://127\.0\.0\.1:[0-9]+' 15) || {
      echo "uploadwatch: the Metrica simulator did not start:" >&2
      cat "$UPLOADWATCH_STACK_LOGS/simulator.log" >&2
      return 1
    }
    upstream_flag=(--upstream_url="$UPLOADWATCH_SIM_URL")
    token_env=(METRIKA_OAUTH_TOKEN="$UPLOADWATCH_DEMO_TOKEN")
  fi
  # A local stack has no load balancer to drain (--drain_period); flags the
  # caller passes come later and win.
  env "${token_env[@]}" "$UPLOADWATCH_BIN/service/uploading_server" --listen="$listen" \
    --poll_interval="$poll" --drain_period=0s "${upstream_flag[@]}" "$@" \
    >"$UPLOADWATCH_STACK_LOGS/server.log" 2>&1 &
  UPLOADWATCH_SERVER_PID=$!
  local port
  port=$(_uploadwatch_wait_for "$UPLOADWATCH_STACK_LOGS/server.log" 'serving on port [0-9]+' 15) || {
    echo "uploadwatch: the server did not start:" >&2
    cat "$UPLOADWATCH_STACK_LOGS/server.log" >&2
    uploadwatch_stop_stack
    return 1
  }
  UPLOADWATCH_ADDR="127.0.0.1:${port##* }"
  export UPLOADWATCH_ADDR UPLOADWATCH_SIM_URL UPLOADWATCH_DEMO_TOKEN
}

uploadwatch_stop_stack() {
  local pid
  for pid in ${UPLOADWATCH_SERVER_PID:-} ${UPLOADWATCH_SIM_PID:-}; do
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in ${UPLOADWATCH_SERVER_PID:-} ${UPLOADWATCH_SIM_PID:-}; do
    wait "$pid" 2>/dev/null
  done
  UPLOADWATCH_SERVER_PID="" UPLOADWATCH_SIM_PID=""
}
