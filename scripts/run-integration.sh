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
exec bash scripts/run-node-tests.sh integration "${files[@]}"
