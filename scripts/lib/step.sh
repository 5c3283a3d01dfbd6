# shellcheck shell=bash
# Sourced by scripts/test.sh (and its test, scripts/step_test.sh).

# Runs a command with its stdout shown on our stderr as it comes, and prints
# the command's last stdout line (its `N passed, N failed`) on stdout.
# Returns the command's status.
#
# Why not `cmd | tee /dev/stderr`: when stderr is a file (a CI log), tee
# opens /dev/stderr anew, truncating it and writing from offset 0 while our
# own fd 2 keeps its offset; the log ends up overwritten from its start and
# padded with NUL bytes. Writing to the inherited fd 2 shares its offset.
uploadwatch_run_step() {
  local copy rc
  copy=$(mktemp) || return 1
  "$@" | tee "$copy" >&2
  rc=${PIPESTATUS[0]}
  tail -n 1 "$copy"
  rm -f "$copy"
  return "$rc"
}
