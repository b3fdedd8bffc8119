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
ROOST_TEST_TIMEOUT_MS=180000 bash tests/media/run.sh bash scripts/run-node-tests.sh browser-janus \
  tests/browser/janus.test.mjs
rc=$?
[ "$rc" -eq 77 ] && { echo "browser-janus: skipped"; exit 77; }
exit $rc
