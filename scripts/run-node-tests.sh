#!/usr/bin/env bash
# scripts/run-node-tests.sh LABEL FILE... — runs Node test files (node's
# own test runner, spec reporter, one file at a time) and appends
# "node LABEL <passed> <failed>" to build/test-results.txt. Exit status:
# non-zero on any failure. Used by run-integration.sh and `make check-media`.
#
# Debian 12's own Node (18) lacks the newer runner flags: each is added only
# where this node accepts it (an unknown flag is a hard error).
# --test-force-exit (Node >= 20.14) so a client timer left running by a
# failed test cannot hold the run open. ROOST_TEST_TIMEOUT_MS: per test
# (default 60000).
set -u
cd "$(dirname "$0")/.."
label=$1
shift
results=build/test-results.txt
mkdir -p build
flags=(--test --test-reporter=spec)
for f in --test-concurrency=1 "--test-timeout=${ROOST_TEST_TIMEOUT_MS:-60000}" --test-force-exit; do
  if node "$f" -e 0 >/dev/null 2>&1; then flags+=("$f"); fi
done
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s)
node "${flags[@]}" "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
# The spec reporter ends with "ℹ pass N" / "ℹ fail N" (TAP: "# pass N").
pass=$(sed -n 's/^\(ℹ\|#\) pass \([0-9]*\)$/\2/p' "$out" | tail -1)
fail=$(sed -n 's/^\(ℹ\|#\) fail \([0-9]*\)$/\2/p' "$out" | tail -1)
pass=${pass:-0}
fail=${fail:-0}
if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
echo "${label}: ${pass} passed, ${fail} failed in $(( $(date +%s) - start )) s"
echo "node ${label} ${pass} ${fail}" >> "$results"
exit $rc
