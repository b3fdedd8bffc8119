#!/usr/bin/env bash
# Browser end-to-end tests of the demo page: Node's test runner over
# tests/browser/*.test.mjs, against build/roost (ROOST_BIN overrides), in
# Debian's chromium (/usr/bin/chromium, ROOST_CHROMIUM overrides; installed
# by scripts/deps.sh) driven by playwright-core — never a downloaded
# browser. Installs the npm packages from the lock files when they are
# missing (web/: the phoenix client the page is served; tests/browser/:
# playwright-core), appends `node browser <passed> <failed>` to
# build/test-results.txt and exits non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
results=build/test-results.txt
mkdir -p build
shopt -s nullglob
files=(tests/browser/*.test.mjs)
if [ ${#files[@]} -eq 0 ]; then
  echo "browser: no browser tests"
  exit 0
fi
fail_setup() {
  echo "browser: $1" >&2
  echo "node browser 0 1" >> "$results"
  exit 1
}
command -v node >/dev/null 2>&1 || fail_setup "node is not installed"
# playwright-core 1.65 needs Node >= 20 (Debian 12's own node is 18).
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  fail_setup "playwright-core needs node >= 20 (found $(node --version))"
[ -x "${ROOST_BIN:-build/roost}" ] || fail_setup "${ROOST_BIN:-build/roost} is missing (make build/roost)"
[ -x "${ROOST_CHROMIUM:-/usr/bin/chromium}" ] ||
  fail_setup "${ROOST_CHROMIUM:-/usr/bin/chromium} is missing (scripts/deps.sh installs chromium)"
if [ ! -f web/node_modules/phoenix/priv/static/phoenix.mjs ]; then
  (cd web && npm ci --no-audit --no-fund) || fail_setup "npm ci in web/ failed"
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund) || fail_setup "npm ci in tests/browser/ failed"
fi
ROOST_TEST_TIMEOUT_MS=120000 exec bash scripts/run-node-tests.sh browser "${files[@]}"
