#!/usr/bin/env bash
# Integration tests with real clients: Node's test runner over
# tests/integration/*.test.mjs, against build/roost (ROOST_BIN overrides).
# Installs the npm packages from the lock file when they are missing,
# appends `node integration <passed> <failed>` to build/test-results.txt
# and exits non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
results=build/test-results.txt
mkdir -p build
shopt -s nullglob
files=(tests/integration/*.test.mjs)
if [ ${#files[@]} -eq 0 ]; then
  echo "integration: no integration tests yet"
  exit 0
fi
if ! command -v node >/dev/null 2>&1; then
  echo "integration: node is not installed" >&2
  echo "node integration 0 1" >> "$results"
  exit 1
fi
if [ ! -x "${ROOST_BIN:-build/roost}" ]; then
  echo "integration: ${ROOST_BIN:-build/roost} is missing (make build/roost)" >&2
  echo "node integration 0 1" >> "$results"
  exit 1
fi
if [ ! -d tests/integration/node_modules/phoenix ] || [ ! -d tests/integration/node_modules/ws ]; then
  (cd tests/integration && npm ci --no-audit --no-fund) || {
    echo "integration: npm ci failed" >&2
    echo "node integration 0 1" >> "$results"
    exit 1
  }
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# One file at a time (each starts its own servers); --test-force-exit
# (Node >= 20.14) so a client timer left running by a failed test cannot
# hold the run open; a 60 s limit per test.
# Debian 12's own Node (18) lacks the newer runner flags: add each only
# where this node accepts it (an unknown flag is a hard error).
flags=(--test --test-reporter=spec)
for f in --test-concurrency=1 --test-timeout=60000 --test-force-exit; do
  if node "$f" -e 0 >/dev/null 2>&1; then flags+=("$f"); fi
done
start=$(date +%s)
node "${flags[@]}" "${files[@]}" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
# The spec reporter ends with "ℹ pass N" / "ℹ fail N" (TAP: "# pass N").
pass=$(sed -n 's/^\(ℹ\|#\) pass \([0-9]*\)$/\2/p' "$out" | tail -1)
fail=$(sed -n 's/^\(ℹ\|#\) fail \([0-9]*\)$/\2/p' "$out" | tail -1)
pass=${pass:-0}
fail=${fail:-0}
if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
echo "integration: ${pass} passed, ${fail} failed in $(( $(date +%s) - start )) s"
echo "node integration ${pass} ${fail}" >> "$results"
exit $rc
