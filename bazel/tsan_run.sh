#!/usr/bin/env bash
# --run_under wrapper of --config=tsan (see .bazelrc): runs a test (or a
# `bazel run` binary) with the ThreadSanitizer-built Abseil first on
# LD_LIBRARY_PATH, and TSAN_OPTIONS naming bazel/tsan.supp.
#
# Why a wrapper: the instrumented Abseil lives in the user's cache folder
# (built once by scripts/lib/tsan_absl.sh), a path .bazelrc cannot spell.
# Child processes a test starts (the server binary, the simulator) inherit
# the environment, so they use the same instrumented copy. Debian's libgrpc
# and libprotobuf link libabsl_*.so.20220623 by SONAME and so load it too.
set -uo pipefail

# This script's runfiles: under `bazel test` the test's (TEST_SRCDIR), under
# `bazel run` our own.
find_runfile() {
  local rel=$1 root
  for root in "${TEST_SRCDIR:-}" "${RUNFILES_DIR:-}" "$0.runfiles"; do
    [[ -n "$root" && -e "$root/uploadwatch/$rel" ]] && { echo "$root/uploadwatch/$rel"; return 0; }
  done
  return 1
}

tsan_absl=$(find_runfile scripts/lib/tsan_absl.sh) \
  || { echo "tsan_run: scripts/lib/tsan_absl.sh is not in the runfiles" >&2; exit 1; }
supp=$(find_runfile bazel/tsan.supp) \
  || { echo "tsan_run: bazel/tsan.supp is not in the runfiles" >&2; exit 1; }
if ! lib=$(bash "$tsan_absl" --where); then
  echo "tsan_run: the ThreadSanitizer build of Abseil is missing (or stale)." >&2
  echo "tsan_run: build it once with: scripts/lib/tsan_absl.sh   (scripts/test.sh --tsan does)" >&2
  exit 1
fi

export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The suppressions file must be named by an absolute path.
export TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}suppressions=$(cd "$(dirname "$supp")" && pwd)/$(basename "$supp")"
exec "$@"
