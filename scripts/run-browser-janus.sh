#!/usr/bin/env bash
# The demo page in janus mode against a real Janus: tests/browser/janus.test.mjs
# run inside tests/media/run.sh (a private network namespace with only lo,
# where Janus, roost and Chromium all run). Appends
# "node browser-janus <passed> <failed>" to build/test-results.txt; exit 77
# (skipped) when the namespace or Janus is not available.
set -u
cd "$(dirname "$0")/.."
results=build/test-results.txt
mkdir -p build
[ -x "${ROOST_BIN:-build/roost}" ] || { echo "browser-janus: build/roost missing" >&2; exit 1; }
if [ ! -f web/node_modules/phoenix/priv/static/phoenix.mjs ]; then
  (cd web && npm ci --no-audit --no-fund) || exit 1
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund) || exit 1
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
bash tests/media/run.sh node --test --test-reporter=spec --test-timeout=180000 \
  tests/browser/janus.test.mjs 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 77 ] && { echo "browser-janus: skipped"; exit 77; }
pass=$(sed -n 's/^\(ℹ\|#\) pass \([0-9]*\)$/\2/p' "$out" | tail -1)
fail=$(sed -n 's/^\(ℹ\|#\) fail \([0-9]*\)$/\2/p' "$out" | tail -1)
pass=${pass:-0}; fail=${fail:-0}
if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
echo "node browser-janus ${pass} ${fail}" >> "$results"
exit $rc
