#!/usr/bin/env bash
# scripts/lib/step.sh keeps a log complete when stderr is a file (as in CI):
# every line before, during and after a step is there, in order, and no NUL
# byte. The same check run on the old `tee /dev/stderr` pipe must fail, so
# this test would have caught that defect. Also: nothing in scripts/ writes
# through /dev/stderr or /dev/stdout any more.
set -uo pipefail
root="$TEST_SRCDIR/uploadwatch"
source "$root/scripts/lib/step.sh"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# A step with many lines of output, a last line, and a status of 3.
step() {
  local i
  for ((i = 0; i < 2000; i++)); do echo "step line $i"; done
  echo "7 passed, 1 failed"
  return 3
}

# Checks that `log` holds the lines before, the step's and after, exactly.
check_log() {
  local log=$1 what=$2
  if [[ $(tr -d -c '\000' <"$log" | wc -c) -ne 0 ]]; then
    fail "$what: the log has NUL bytes"
  fi
  local expected="$tmp/expected"
  { for ((i = 0; i < 500; i++)); do echo "before line $i"; done
    for ((i = 0; i < 2000; i++)); do echo "step line $i"; done
    echo "7 passed, 1 failed"
    echo "after"; } >"$expected"
  cmp -s "$expected" "$log" || fail "$what: the log is not complete (diff: $(diff "$expected" "$log" | head -c 300))"
}

# The fixed helper, stderr a file with content already in it.
log="$tmp/fixed.log"
(
  for ((i = 0; i < 500; i++)); do echo "before line $i" >&2; done
  summary=$(uploadwatch_run_step step)
  rc=$?
  echo "after" >&2
  echo "$summary|$rc" >"$tmp/fixed.result"
) 2>"$log"
check_log "$log" "uploadwatch_run_step"
[[ $(cat "$tmp/fixed.result") == "7 passed, 1 failed|3" ]] \
  || fail "uploadwatch_run_step returned '$(cat "$tmp/fixed.result")', want '7 passed, 1 failed|3'"

# The old pipe, same setup: the check above must catch it.
before=$failures
log="$tmp/old.log"
(
  for ((i = 0; i < 500; i++)); do echo "before line $i" >&2; done
  summary=$(step | tee /dev/stderr | tail -n 1)
  echo "after" >&2
) 2>"$log"
check_log "$log" "old tee /dev/stderr" 2>/dev/null
if ((failures == before)); then
  fail "the check did not catch the old 'tee /dev/stderr' pipe"
else
  failures=$before
fi

# No script writes through the device files any more.
# (Code lines only; this test itself uses the old pipe on purpose.)
scripts=()
for f in "$root"/scripts/*.sh "$root"/scripts/lib/*.sh; do
  [[ $(basename "$f") == step_test.sh ]] || scripts+=("$f")
done
if grep -nE '^[^#]*/dev/std(err|out)' "${scripts[@]}"; then
  fail "a script writes through /dev/stderr or /dev/stdout (see above)"
fi

if ((failures)); then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "PASS"
