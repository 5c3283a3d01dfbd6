#!/usr/bin/env bash
# The main job: installs what is missing, builds, and serves uploadwatch on
# 0.0.0.0:50051 until Ctrl-C.
#
#   scripts/run.sh                      demo: an embedded Metrica simulator
#   METRIKA_OAUTH_TOKEN=... scripts/run.sh   the real Metrica API
#
# Environment: UPLOADWATCH_LISTEN (default 0.0.0.0:50051),
# UPLOADWATCH_POLL_INTERVAL (default 2s in the demo, 30s against Metrica).
# Further arguments go to the server as flags (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
uploadwatch_install_deps

echo "uploadwatch: building..." >&2
bazel build -c opt //service:uploading_server //service/simulator:metrica_simulator \
  //client:uploadwatch 2>&1 | grep -E '^(ERROR|FAILED)' >&2 || true
for bin in service/uploading_server service/simulator/metrica_simulator; do
  [[ -x "bazel-bin/$bin" ]] || { echo "uploadwatch: build failed (bazel-bin/$bin missing)" >&2; exit 1; }
done

source scripts/lib/stack.sh
listen=${UPLOADWATCH_LISTEN:-0.0.0.0:50051}
if [[ -z "${METRIKA_OAUTH_TOKEN:-}" ]]; then
  poll=${UPLOADWATCH_POLL_INTERVAL:-2s}
else
  poll=${UPLOADWATCH_POLL_INTERVAL:-30s}
fi

stopping=0
stop() {
  ((stopping)) && return
  stopping=1
  echo >&2
  echo "uploadwatch: stopping..." >&2
  uploadwatch_stop_stack
  echo "uploadwatch: stopped." >&2
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

UPLOADWATCH_STACK_LOGS=$(mktemp -d)
uploadwatch_start_stack "$listen" "$poll" "$@"
port=${UPLOADWATCH_ADDR##*:}
cli="bazel-bin/client/uploadwatch --server=localhost:$port"

cat <<BANNER

  uploadwatch is serving gRPC on $listen   (Ctrl-C to stop)
BANNER
if [[ -n "$UPLOADWATCH_SIM_URL" ]]; then
  cat <<BANNER
  Upstream: the EMBEDDED METRICA SIMULATOR at $UPLOADWATCH_SIM_URL (no METRIKA_OAUTH_TOKEN set).
            Demo counter 2215573; uploadings 12-19 settled, 101-103 moving through the statuses.
            Set METRIKA_OAUTH_TOKEN to talk to the real Metrica API instead.
BANNER
else
  echo "  Upstream: the real Metrica API (token from METRIKA_OAUTH_TOKEN)."
fi
cat <<BANNER
  Polling every $poll. Logs: $UPLOADWATCH_STACK_LOGS/server.log

  Try, in another terminal:
    $cli list 2215573
    $cli get 2215573 12
    $cli watch 2215573 101
    $cli --json watch 2215573 102
    python3 client/python/uploadwatch_client.py --server=localhost:$port watch 2215573 103

BANNER
tail -n +1 -f "$UPLOADWATCH_STACK_LOGS/server.log" --pid="$UPLOADWATCH_SERVER_PID" &
wait "$UPLOADWATCH_SERVER_PID" || true
