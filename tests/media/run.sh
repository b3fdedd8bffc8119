#!/usr/bin/env bash
# tests/media/run.sh CMD [ARGS...] — runs CMD next to a real Janus inside a
# private network namespace (`unshare -n`, needs root) that has only `lo`.
#
# Installs janus when missing (scripts/deps.sh), writes a config into a
# fresh temp dir (tests/media/janus.sh setup), brings `lo` up, starts
# Janus, runs CMD with
#   ROOST_JANUS_URL  ws://127.0.0.1:8188
#   ROOST_JANUS_WSS_URL  wss://127.0.0.1:8989 (TLS, certificate for 127.0.0.1)
#   ROOST_JANUS_CA   the CA (= the certificate) to verify it with
#   ROOST_JANUS_DIR  the temp dir (config, janus.pid, janus.log)
#   ROOST_JANUS_CTL  tests/media/janus.sh (so a test can `$CTL stop $DIR`
#                    to kill Janus mid-call and `$CTL start $DIR` again)
# and kills Janus afterwards. Exit status: CMD's. Exit 77 (skip) when the
# namespace cannot be made or Janus cannot be installed/started here.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

if [ -z "${ROOST_IN_NETNS:-}" ]; then
  command -v janus >/dev/null || bash "$ROOT/scripts/deps.sh" >&2 || true
  command -v janus >/dev/null || { echo "media: SKIP (janus not installed)" >&2; exit 77; }
  if ! unshare -n true 2>/dev/null; then
    echo "media: SKIP (unshare -n not permitted; needs root)" >&2; exit 77
  fi
  dir="$(mktemp -d /tmp/roost-janus.XXXXXX)"
  bash "$HERE/janus.sh" setup "$dir" >&2
  set +e
  ROOST_IN_NETNS=1 ROOST_JANUS_DIR="$dir" unshare -n bash "$HERE/run.sh" "$@"
  rc=$?
  set -e
  [ -n "${ROOST_KEEP_JANUS_DIR:-}" ] || rm -rf "$dir"
  exit $rc
fi

# Inside the namespace.
ip link set lo up
export ROOST_JANUS_URL="ws://127.0.0.1:${JANUS_WS_PORT:-8188}"
export ROOST_JANUS_WSS_URL="wss://127.0.0.1:${JANUS_WSS_PORT:-8989}"
export ROOST_JANUS_CA="$ROOST_JANUS_DIR/cert.pem"
export ROOST_JANUS_CTL="$HERE/janus.sh"
export ROOST_JANUS_DIR
if ! bash "$HERE/janus.sh" start "$ROOST_JANUS_DIR" >&2; then
  echo "media: SKIP (janus did not start)" >&2; exit 77
fi
trap 'bash "$HERE/janus.sh" stop "$ROOST_JANUS_DIR"' EXIT
set +e
"$@"
rc=$?
set -e
exit $rc
