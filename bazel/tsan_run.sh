#!/usr/bin/env bash
# --run_under wrapper of --config=tsan (see .bazelrc): runs a test (or a
# `bazel run` binary) once it has checked that the ThreadSanitizer-built
# Abseil the binaries' run path names (/usr/local/lib/uploadwatch-tsan) is
# the current build, and with TSAN_OPTIONS naming bazel/tsan.supp.
#
# Why not LD_LIBRARY_PATH: it would also reach uninstrumented programs a
# test runs (python3 loading Debian's grpcio, and so the instrumented Abseil
# and with it libtsan: "cannot allocate memory in static TLS block").
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
lib=$(bash "$tsan_absl" --where)
if [[ -z "$lib" || $(readlink /usr/local/lib/uploadwatch-tsan) != "$lib" ]]; then
  echo "tsan_run: the ThreadSanitizer build of Abseil is missing or stale." >&2
  echo "tsan_run: build it once with: scripts/lib/tsan_absl.sh   (scripts/test.sh --tsan does)" >&2
  exit 1
fi

# The suppressions file must be named by an absolute path.
supp_abs="$(cd "$(dirname "$supp")" && pwd)/$(basename "$supp")"
export TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}suppressions=$supp_abs"
exec "$@"
