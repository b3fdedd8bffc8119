#!/usr/bin/env bash
# Installs the Debian packages roost needs to build, test and benchmark.
# Idempotent: when everything is present it does nothing and says so.
# Called by `make run`, `make test` and `make bench`; safe to run by hand.
set -euo pipefail

# Build and unit-test dependencies (design §7), the sanitizer runtimes,
# clang for the fuzzers, Node.js for the integration tests, and chromium
# for the browser tests of the demo page (scripts/run-browser.sh drives
# it with playwright-core; no browser is ever downloaded).
PKGS=(
  build-essential pkg-config
  libuv1-dev libwslay-dev libhttp-parser-dev libjansson-dev
  libsqlite3-dev libssl-dev openssl libcriterion-dev
  clang libclang-rt-dev
  chromium
  janus
)
# Node.js may come from Debian (nodejs + npm) or from another packaging
# that bundles npm (the two conflict): ask for Debian's only when no node
# or npm command is present at all.
if ! command -v node >/dev/null 2>&1; then PKGS+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then PKGS+=(npm); fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
