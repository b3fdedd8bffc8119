#!/usr/bin/env bash
# Integration tests with real clients (Node's test runner). They arrive
# with the endpoint; until then there is nothing to run.
set -u
results=build/test-results.txt
if ! ls tests/integration/*.test.mjs >/dev/null 2>&1; then
  echo "integration: no integration tests yet"
  exit 0
fi
(cd tests/integration && { [ -d node_modules ] || npm ci --no-audit --no-fund; }) || exit 1
out=$(mktemp)
node --test --test-concurrency=1 tests/integration/ 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
pass=$(sed -n 's/^# pass \([0-9]*\)/\1/p' "$out" | tail -1)
fail=$(sed -n 's/^# fail \([0-9]*\)/\1/p' "$out" | tail -1)
echo "node integration ${pass:-0} ${fail:-1}" >> "$results"
rm -f "$out"
exit $rc
