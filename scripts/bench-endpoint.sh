#!/usr/bin/env bash
# Endpoint benchmarks: build/roost against build/bench/loadgen, everything
# on 127.0.0.1. Each scenario gets a fresh server (own port, own temporary
# data directory, --io-threads left at its default), which is stopped with
# SIGTERM afterwards:
#   idle    BENCH_IDLE_CONNS (15000) connections, each joined to its own
#           user:<id>: connect+join rate and the server's resident memory
#           per connection. A warm-up run of BENCH_IDLE_WARMUP (200)
#           connections comes first (joined, then closed), so that
#           bytes_server_rss_per_conn counts what connections cost, not
#           what the first one pages in once (library code, thread arenas,
#           pools: ~2.5 MB); bytes_server_rss_per_conn_cold counts from
#           the server's start, warm-up included.
#   fanout  BENCH_FANOUT_SUBS (1000) subscribers of one topic and a
#           publisher of BENCH_FANOUT_MSGS (2000) messages of
#           BENCH_FANOUT_SIZE (256) bytes at BENCH_FANOUT_RATE (200) per
#           second: deliveries/s, latency p50/p99/max, losses
# The load generator spreads its sockets over BENCH_SRC_IPS (16) source
# addresses (127.0.0.x): with a single one, each connect() searches the
# ephemeral port range and the generator, not the server, is what gets
# measured. Each prints a table and a `RESULT {json}` line, and the load
# average when it started. Exits non-zero if a
# scenario failed (a connection not joined, a message lost, a server that
# did not start or stop). Usage: scripts/bench-endpoint.sh [idle] [fanout]
set -u
cd "$(dirname "$0")/.."

ROOST=${ROOST_BIN:-build/roost}
LOADGEN=${LOADGEN_BIN:-build/bench/loadgen}
SECRET=bench-secret-$$-$RANDOM
KEY=bench-key-$$-$RANDOM
IDLE_CONNS=${BENCH_IDLE_CONNS:-15000}
FANOUT_SUBS=${BENCH_FANOUT_SUBS:-1000}
FANOUT_MSGS=${BENCH_FANOUT_MSGS:-2000}
FANOUT_SIZE=${BENCH_FANOUT_SIZE:-256}
FANOUT_RATE=${BENCH_FANOUT_RATE:-200}
IDLE_WARMUP=${BENCH_IDLE_WARMUP:-200}
SRC_IPS=${BENCH_SRC_IPS:-16}

for bin in "$ROOST" "$LOADGEN"; do
  [ -x "$bin" ] || { echo "bench-endpoint: $bin is missing (make $bin)" >&2; exit 1; }
done

# Both processes may hold up to the hard limit of open files (20,000 here):
# 15,000 connections stay under it on either side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

BENCH_NAME=bench-endpoint
. scripts/bench-server.sh

vmrss_kib() {
  sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$1/status" 2>/dev/null
}

run_scenario() {
  local name=$1; shift
  start_server || return 1
  echo "== endpoint $name (roost pid $server_pid, port $server_port, load average $(cut -d' ' -f1-3 /proc/loadavg))"
  local extra=()
  if [ "$name" = idle ] && [ "$IDLE_WARMUP" -gt 0 ]; then
    local cold
    cold=$(vmrss_kib "$server_pid")
    "$LOADGEN" --scenario idle --port "$server_port" --secret "$SECRET" --conns "$IDLE_WARMUP" \
      --settle-ms 200 --src-ips "$SRC_IPS" >/dev/null || {
      echo "bench-endpoint: the warm-up run failed" >&2
      stop_server
      return 1
    }
    sleep 0.5 # the server closes the warm-up connections
    [ -n "$cold" ] && extra=(--rss-cold-kib "$cold")
  fi
  "$LOADGEN" --scenario "$name" --port "$server_port" --secret "$SECRET" --api-key "$KEY" \
    --server-pid "$server_pid" --src-ips "$SRC_IPS" "${extra[@]}" "$@"
  local rc=$?
  stop_server || rc=1
  return $rc
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(idle fanout)
status=0
for s in "${scenarios[@]}"; do
  case $s in
    idle)   run_scenario idle --conns "$IDLE_CONNS" --settle-ms 2000 || status=1 ;;
    fanout) run_scenario fanout --conns "$FANOUT_SUBS" --messages "$FANOUT_MSGS" \
              --size "$FANOUT_SIZE" --rate "$FANOUT_RATE" --settle-ms 1000 || status=1 ;;
    *) echo "bench-endpoint: unknown scenario '$s' (idle, fanout)" >&2; status=2 ;;
  esac
done
exit $status
