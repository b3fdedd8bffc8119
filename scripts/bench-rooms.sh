#!/usr/bin/env bash
# Room benchmarks: build/roost against build/bench/rooms_bench, everything
# on 127.0.0.1. Each scenario gets a fresh server (a free port, its own
# temporary --data directory), stopped with SIGTERM afterwards:
#   churn    BENCH_CHURN_ROOMS (2000) rooms, BENCH_CHURN_CONC (32) at once:
#            create (REST), 2 members join, 10 status changes, end; rooms/s
#   crash    BENCH_CRASH_ROOMS (10000) live rooms, BENCH_CRASH_K (1000) of
#            them crashed at once through REST: time until all are back
#            with their state
#   durable  BENCH_DURABLE_ROOMS (1000) rooms, one member each: a closed
#            loop of status pushes for BENCH_DURABLE_S (5) s (most
#            acknowledged changes/s), then an open loop at
#            BENCH_DURABLE_RATE (20000) pushes/s (p50/p99 acknowledgement
#            latency at that load)
#   restart  BENCH_RESTART_ROOMS (10000) rooms, kill -9, restart on the
#            same --data: time until the server serves again (the bench
#            kills this server and starts and stops the new one itself)
#   viewers  BENCH_VIEWERS (10000) viewers join one room; one participant
#            publishes BENCH_VIEWERS_MSGS (1000) data messages of
#            BENCH_VIEWERS_SIZE (100) bytes at BENCH_VIEWERS_RATE (200)/s:
#            deliveries/s, latency p50/p99/max (send and receive clocks in
#            the bench), exact losses and duplicates, the server's VmRSS
#            per viewer (the bench reads /proc/<server pid>/status)
#   viewers-join  BENCH_VIEWERS_JOIN (15000) viewers join one room, no
#            messages: the server's memory per viewer
# Each prints a table and a `RESULT {json}` line. Targets (reported, never
# asserted): >= 20,000 acks/s across 1,000 rooms with p99 <= 10 ms; 1,000
# crashes restored within 100 ms; serving within 2 s of a restart with
# 10,000 rooms; viewer fan-out >= 1,000,000 deliveries/s with no loss and
# p99 <= 20 ms; <= 1.5 KB of server memory per viewer with 15,000. Exits non-zero if a scenario failed (an error reply, a
# lost state, a server that did not start or stop).
# Each process (server, bench) stays under the 20,000 open-files limit:
# a viewer is one WebSocket on each side.
# Usage: scripts/bench-rooms.sh [churn] [crash] [durable] [restart] [viewers] [viewers-join]
set -u
cd "$(dirname "$0")/.."

ROOST=${ROOST_BIN:-build/roost}
BENCH=${ROOMS_BENCH_BIN:-build/bench/rooms_bench}
SECRET=bench-secret-$$-$RANDOM
KEY=bench-key-$$-$RANDOM

for bin in "$ROOST" "$BENCH"; do
  [ -x "$bin" ] || { echo "bench-rooms: $bin is missing (make $bin)" >&2; exit 1; }
done
ROOST_ABS=$(cd "$(dirname "$ROOST")" && pwd)/$(basename "$ROOST")
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

BENCH_NAME=bench-rooms
. scripts/bench-server.sh

run_scenario() {
  local name=$1; shift
  local sc=$name
  [ "$name" = viewers-join ] && sc=viewers
  start_server || return 1
  echo "== rooms $name (roost pid $server_pid, port $server_port)"
  local rc
  if [ "$name" = restart ]; then
    # The bench kills this server: no "Killed" job notice from bash.
    disown "$server_pid" 2>/dev/null
    "$BENCH" --scenario restart --port "$server_port" --secret "$SECRET" --api-key "$KEY" \
      --roost "$ROOST_ABS" --data "$server_data" --server-pid "$server_pid" "$@"
    rc=$?
    stop_server killed || rc=1
  elif [ "$sc" = viewers ]; then
    "$BENCH" --scenario viewers --port "$server_port" --secret "$SECRET" --api-key "$KEY" \
      --server-pid "$server_pid" "$@"
    rc=$?
    stop_server || rc=1
  else
    "$BENCH" --scenario "$name" --port "$server_port" --secret "$SECRET" --api-key "$KEY" "$@"
    rc=$?
    stop_server || rc=1
  fi
  echo
  return $rc
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(churn crash durable restart viewers viewers-join)
status=0
for s in "${scenarios[@]}"; do
  case $s in
    churn)   run_scenario churn --rooms "${BENCH_CHURN_ROOMS:-2000}" \
               --concurrency "${BENCH_CHURN_CONC:-32}" --timeout-s 120 || status=1 ;;
    crash)   run_scenario crash --rooms "${BENCH_CRASH_ROOMS:-10000}" \
               --crash "${BENCH_CRASH_K:-1000}" --http-conns 64 --timeout-s 120 || status=1 ;;
    durable) run_scenario durable --rooms "${BENCH_DURABLE_ROOMS:-1000}" \
               --duration-s "${BENCH_DURABLE_S:-5}" --rate "${BENCH_DURABLE_RATE:-20000}" \
               --timeout-s 120 || status=1 ;;
    restart) run_scenario restart --rooms "${BENCH_RESTART_ROOMS:-10000}" --timeout-s 120 || status=1 ;;
    viewers) run_scenario viewers --viewers "${BENCH_VIEWERS:-10000}" \
               --messages "${BENCH_VIEWERS_MSGS:-1000}" --size "${BENCH_VIEWERS_SIZE:-100}" \
               --rate "${BENCH_VIEWERS_RATE:-200}" --timeout-s 180 || status=1 ;;
    viewers-join) run_scenario viewers-join --viewers "${BENCH_VIEWERS_JOIN:-15000}" \
               --messages 0 --window "${BENCH_VIEWERS_WINDOW:-512}" --timeout-s 400 || status=1 ;;
    *) echo "bench-rooms: unknown scenario '$s' (churn, crash, durable, restart, viewers, viewers-join)" >&2; status=2 ;;
  esac
done
exit $status
