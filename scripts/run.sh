#!/usr/bin/env bash
# The main job: installs what is missing, builds, and serves uploadwatch on
# 0.0.0.0:50051 until Ctrl-C.
#
#   scripts/run.sh                      demo: an embedded Metrica simulator
#   METRIKA_OAUTH_TOKEN=... scripts/run.sh   the real Metrica API
#
# Environment: UPLOADWATCH_LISTEN (default 0.0.0.0:50051),
# UPLOADWATCH_POLL_INTERVAL (default 2s in the demo, 30s against Metrica),
# UPLOADWATCH_WEB_LISTEN (gRPC-Web and the dashboard; default 127.0.0.1:8080).
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

# The dashboard page (client/web): npm packages, protoc-gen-es code, bundle.
web_listen=${UPLOADWATCH_WEB_LISTEN:-127.0.0.1:8080}
if ! (cd client/web && { [[ -d node_modules ]] || npm ci --no-audit --no-fund --loglevel=error; } &&
  npm run --silent build) >&2; then
  echo "uploadwatch: building the dashboard failed (gRPC-Web still served)" >&2
fi

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
uploadwatch_start_stack "$listen" "$poll" --web_listen="$web_listen" \
  --web_allowed_origins='*' --web_static_dir="$PWD/client/web/dist" "$@"
port=${UPLOADWATCH_ADDR##*:}
cli="bazel-bin/client/uploadwatch --server=localhost:$port"
# The newest uploading (in the demo: the live upload that just started).
watch_id=$($cli --json list 2215573 --limit=1 2>/dev/null | grep -oE '"id":"?[0-9]+' | head -n1 | grep -oE '[0-9]+$')
watch_id=${watch_id:-12}

web_host=${web_listen%:*}
[[ -z "$web_host" || "$web_host" == 0.0.0.0 ]] && web_host=127.0.0.1
cat <<BANNER

  uploadwatch is serving gRPC on $listen   (Ctrl-C to stop)
  Dashboard (gRPC-Web on $web_listen):  http://$web_host:${web_listen##*:}/?counter=2215573
BANNER
if [[ -n "$UPLOADWATCH_SIM_URL" ]]; then
  cat <<BANNER
  Upstream: the EMBEDDED METRICA SIMULATOR at $UPLOADWATCH_SIM_URL (no METRIKA_OAUTH_TOKEN set).
            Demo counter 2215573: uploadings 12-19 settled; a new live upload (101, 102, ...)
            every 30 s, each done in 90 s. Set METRIKA_OAUTH_TOKEN for the real Metrica API.
BANNER
else
  echo "  Upstream: the real Metrica API (token from METRIKA_OAUTH_TOKEN)."
fi
cat <<BANNER
  Polling every $poll. Logs: $UPLOADWATCH_STACK_LOGS/server.log

  Try, in another terminal:
    $cli list 2215573
    $cli get 2215573 12
    $cli watch 2215573 $watch_id
    $cli --json watch 2215573 $watch_id
    client/python/generate_stubs.sh && /usr/bin/python3 client/python/uploadwatch_client.py --server localhost:$port watch 2215573 $watch_id

BANNER
tail -n +1 -f "$UPLOADWATCH_STACK_LOGS/server.log" --pid="$UPLOADWATCH_SERVER_PID" &
wait "$UPLOADWATCH_SERVER_PID" || true
