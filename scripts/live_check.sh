#!/usr/bin/env bash
# An opt-in check against the REAL Yandex Metrica, for a user with a token:
# starts our server against the real API and runs Get, List, a short Watch of
# one uploading and a short counter watch through it with the `uploadwatch`
# CLI; then reports every field Metrica sent that we do not map, comparing the
# raw JSON Metrica returned (fetched with curl) with the proto's Uploading.
#
#   METRIKA_OAUTH_TOKEN=... scripts/live_check.sh COUNTER_ID
#   METRIKA_OAUTH_TOKEN=... METRIKA_COUNTER_ID=... scripts/live_check.sh
#   scripts/live_check.sh --field-diff BODY.json...   # the diff alone, on saved bodies
#
# Without METRIKA_OAUTH_TOKEN it says so and exits 0 (CI has no token).
# Environment: UPLOADWATCH_LIVE_WATCH_SECONDS (default 20) bounds each watch;
# METRIKA_API_URL (default https://api-metrika.yandex.net) for the raw bodies
# and, when set, our server's --upstream_url (tests point both at the
# simulator); https_proxy / no_proxy as for curl. The token is passed to curl through a
# mode-600 header file, never on a command line, and is never printed.
#
# Exit status: 0 all checks passed and every field is mapped; 1 a check
# failed; 2 the checks passed but Metrica sent fields (or enum values) that
# we do not map; 64 bad usage.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
PROTO="$root/proto/metrika/offline_conversions/v1/uploading_service.proto"
PY=${UPLOADWATCH_PYTHON:-python3}

# The field diff: BODY.json files (Metrica's {"uploading": {...}} or
# {"uploadings": [...]}) against the proto's Uploading. Prints one line per
# finding and a summary; exit 0 when everything is mapped, 2 otherwise.
field_diff() {
  "$PY" - "$PROTO" "$@" <<'PYEOF'
import json, re, sys

proto_path, bodies = sys.argv[1], sys.argv[2:]
text = open(proto_path, encoding="utf-8").read()

def block(source, keyword, name):
    """The body of `keyword name { ... }` (balanced braces)."""
    m = re.search(r"\b%s\s+%s\s*\{" % (keyword, name), source)
    if not m:
        sys.exit(f"live_check: no {keyword} {name} in {proto_path}")
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(source[i], 0)
        i += 1
    return source[m.end():i - 1]

uploading = block(text, "message", "Uploading")
# Fields at the message's own level (enums' bodies removed first).
flat = re.sub(r"\benum\s+\w+\s*\{[^}]*\}", "", uploading)
fields = {m.group(2): m.group(1) for m in
          re.finditer(r"^\s*([\w.]+)\s+(\w+)\s*=\s*\d+\s*;", flat, re.M)}
# *_raw fields are ours (the text of an unknown enum value), not Metrica's.
metrica_fields = {f for f in fields if not f.endswith("_raw")}
enums = {}
for m in re.finditer(r"\benum\s+(\w+)\s*\{([^}]*)\}", uploading):
    enums[m.group(1)] = {v for v in re.findall(r"^\s*(\w+)\s*=", m.group(2), re.M)
                         if not v.endswith("_UNSPECIFIED")}
enum_of_field = {f: enums[t] for f, t in fields.items() if t in enums}

findings = []  # (where, what) pairs, each reported once
def note(where, what):
    if (where, what) not in findings:
        findings.append((where, what))

checked = 0
for path in bodies:
    try:
        body = json.load(open(path, encoding="utf-8"))
    except (OSError, ValueError) as e:
        sys.exit(f"live_check: cannot read {path}: {e}")
    if not isinstance(body, dict):
        note(path, "the body is not a JSON object")
        continue
    items = []
    for key, value in body.items():
        if key == "uploading" and isinstance(value, dict):
            items.append(value)
        elif key == "uploadings" and isinstance(value, list):
            items.extend(v for v in value if isinstance(v, dict))
        else:
            note("envelope", f"key {key!r} (example {json.dumps(value)[:60]})")
    for item in items:
        checked += 1
        for key, value in item.items():
            if key not in metrica_fields:
                note("uploading", f"field {key!r} (example {json.dumps(value)[:60]})")
            elif key in enum_of_field and isinstance(value, str) \
                    and value.upper() not in enum_of_field[key]:
                note("uploading", f"{key} value {value!r} (kept in {key}_raw)")

for where, what in findings:
    print(f"live_check: unmapped: {where}: {what}")
print(f"live_check: field diff: {checked} uploading(s) in {len(bodies)} body(ies), "
      f"{len(findings)} unmapped")
sys.exit(2 if findings else 0)
PYEOF
}

if [[ "${1:-}" == "--field-diff" ]]; then
  shift
  [[ $# -gt 0 ]] || { echo "usage: live_check.sh --field-diff BODY.json..." >&2; exit 64; }
  field_diff "$@"
  exit $?
fi

if [[ -z "${METRIKA_OAUTH_TOKEN:-}" ]]; then
  echo "live_check: METRIKA_OAUTH_TOKEN is not set: skipping the check against real Metrica."
  echo "live_check: to run it: METRIKA_OAUTH_TOKEN=<token> scripts/live_check.sh COUNTER_ID"
  exit 0
fi
counter=${1:-${METRIKA_COUNTER_ID:-}}
if [[ ! "$counter" =~ ^[1-9][0-9]*$ ]]; then
  echo "live_check: a counter id is needed: scripts/live_check.sh COUNTER_ID (or METRIKA_COUNTER_ID)" >&2
  exit 64
fi
api=${METRIKA_API_URL:-https://api-metrika.yandex.net}
watch_s=${UPLOADWATCH_LIVE_WATCH_SECONDS:-20}
bin=${UPLOADWATCH_BIN:-$root/bazel-bin}
cli="$bin/client/uploadwatch"

work=$(mktemp -d)
UPLOADWATCH_STACK_LOGS="$work/stack"
mkdir -p "$UPLOADWATCH_STACK_LOGS"
source "$root/scripts/lib/stack.sh"
trap 'uploadwatch_stop_stack; rm -rf "$work"' EXIT
failed=0
check() {  # NAME OK? DETAIL
  if [[ $2 == 1 ]]; then echo "live_check: ok:   $1${3:+ ($3)}"
  else echo "live_check: FAIL: $1${3:+ ($3)}"; failed=1; fi
}

if [[ ! -x "$cli" || ! -x "$bin/service/uploading_server" ]]; then
  (cd "$root" && bazel build //client:uploadwatch //service:uploading_server) >"$work/build.log" 2>&1 ||
    { tail -n 30 "$work/build.log" >&2; echo "live_check: the build failed" >&2; exit 1; }
fi

# 1. Raw bodies straight from Metrica.
umask 077
printf 'Authorization: OAuth %s\n' "$METRIKA_OAUTH_TOKEN" >"$work/auth.header"
raw() {  # FILE PATH_AND_QUERY -> the HTTP status
  curl -sS --max-time 30 -H @"$work/auth.header" -o "$work/$1" -w '%{http_code}' \
    "$api/management/v1/counter/$counter/offline_conversions/$2" 2>"$work/$1.err"
}
bodies=()
for type in BASIC CALLS CHATS; do
  code=$(raw "list_$type.json" "uploadings?limit=100&type=$type")
  check "Metrica lists $type uploadings" "$([[ $code == 200 ]] && echo 1)" "HTTP $code"
  [[ $code == 200 ]] && bodies+=("$work/list_$type.json")
done
id=$("$PY" -c 'import json,sys; u=json.load(open(sys.argv[1])).get("uploadings") or [{}]; print(u[0].get("id",""))' \
  "$work/list_BASIC.json" 2>/dev/null)
if [[ -n "$id" ]]; then
  code=$(raw get.json "uploading/$id")
  check "Metrica gets uploading $id" "$([[ $code == 200 ]] && echo 1)" "HTTP $code"
  [[ $code == 200 ]] && bodies+=("$work/get.json")
else
  echo "live_check: counter $counter has no BASIC uploadings: Get and Watch are skipped"
fi

# 2. The same through our server.
upstream=()
[[ -n "${METRIKA_API_URL:-}" ]] && upstream=(--upstream_url="$METRIKA_API_URL")
if ! uploadwatch_start_stack 127.0.0.1:0 30s "${upstream[@]}"; then
  check "our server starts against $api" 0
  exit 1
fi
check "our server starts" 1 "$UPLOADWATCH_ADDR"
uw() { timeout $((watch_s + 30)) "$cli" --server="$UPLOADWATCH_ADDR" "$@"; }
uw list "$counter" >"$work/list.out" 2>"$work/list.err"
check "uploadwatch list $counter" "$([[ $? == 0 ]] && echo 1)" "$(head -c 200 "$work/list.err")"
if [[ -n "$id" ]]; then
  uw --json get "$counter" "$id" >"$work/ours_get.json" 2>"$work/get.err"
  check "uploadwatch get $counter $id" "$([[ $? == 0 ]] && echo 1)" "$(head -c 200 "$work/get.err")"
  # What Metrica sent for this uploading, of the fields we map, that our
  # answer lacks (fields we do not map are reported below as "unmapped").
  if [[ -s "$work/ours_get.json" && -s "$work/get.json" ]]; then
    lost=$("$PY" -c 'import json,re,sys
theirs = json.load(open(sys.argv[1]))["uploading"]; ours = json.load(open(sys.argv[2]))["uploading"]
body = re.search(r"^message Uploading \{(.*?)^\}", open(sys.argv[3]).read(), re.S | re.M).group(1)
mapped = set(re.findall(r"^  \w+ (\w+) = \d+;", body, re.M))
print(" ".join(sorted((set(theirs) & mapped) - set(ours))))' "$work/get.json" "$work/ours_get.json" "$PROTO")
    check "our get keeps every field Metrica sent" "$([[ -z "$lost" ]] && echo 1)" "${lost:+lost: $lost}"
  fi
  uw --timeout="${watch_s}s" watch "$counter" "$id" >"$work/watch.out" 2>"$work/watch.err"
  rc=$?  # 0: reached a terminal status; 4: still moving when the time was up
  check "uploadwatch watch $counter $id for ${watch_s}s" \
    "$([[ ($rc == 0 || $rc == 4) && -s "$work/watch.out" ]] && echo 1)" "exit $rc, $(wc -l <"$work/watch.out") line(s)"
fi
uw --timeout="${watch_s}s" watch "$counter" >"$work/counter_watch.out" 2>"$work/counter_watch.err"
rc=$?
if [[ $rc == 12 ]]; then
  echo "live_check: note: this server does not implement WatchUploadings yet (UNIMPLEMENTED)"
else
  check "uploadwatch watch $counter for ${watch_s}s" \
    "$([[ $rc == 4 ]] && grep -q ' SYNCED ' "$work/counter_watch.out" && echo 1)" "exit $rc"
fi
# Never the token in what we print or log.
if grep -rqF -- "$METRIKA_OAUTH_TOKEN" "$work"/*.out "$work"/*.err "$UPLOADWATCH_STACK_LOGS" 2>/dev/null; then
  check "the token appears in no output or log" 0
fi

# 3. The field diff.
diff_rc=0
if [[ ${#bodies[@]} -gt 0 ]]; then
  field_diff "${bodies[@]}"
  diff_rc=$?
fi
if [[ $failed == 1 ]]; then exit 1; fi
[[ $diff_rc == 0 ]] && echo "live_check: all checks passed" || echo "live_check: checks passed; see the unmapped fields above"
exit "$diff_rc"
