# scripts/bench-server.sh — sourced by the bench scripts: one roost server
# at a time on 127.0.0.1 (port 0, a fresh temporary data directory, the
# caller's $SECRET and $KEY), for a scenario.
#   start_server       starts "$ROOST" and waits for its "listening" line;
#                      sets server_pid, server_port, server_data, server_log
#   stop_server        SIGTERM, waits up to 30 s (then SIGKILL), reaps it,
#                      removes the data directory; non-zero if it had to be
#                      killed or exited non-zero (its log is shown)
#   stop_server killed the bench already SIGKILLed it (a restart scenario):
#                      only reap it and clean up
# Messages are prefixed with $BENCH_NAME.
server_pid=
server_data=
server_log=
server_port=

start_server() {
  server_data=$(mktemp -d "${TMPDIR:-/tmp}/roost-${BENCH_NAME}-XXXXXX")
  server_log=$server_data/server.log
  "$ROOST" serve --port 0 --data "$server_data" --secret "$SECRET" --api-key "$KEY" \
    2>"$server_log" &
  server_pid=$!
  server_port=
  for _ in $(seq 1 200); do
    server_port=$(sed -n 's|.*roost: listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$server_log" | head -1)
    [ -n "$server_port" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$server_port" ]; then
    echo "$BENCH_NAME: roost did not start:" >&2
    cat "$server_log" >&2
    stop_server
    return 1
  fi
}

stop_server() {
  [ -n "$server_pid" ] || return 0
  local rc=0 killed=${1:-}
  if [ -z "$killed" ] && kill -TERM "$server_pid" 2>/dev/null; then
    for _ in $(seq 1 300); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
      echo "$BENCH_NAME: roost did not exit 30 s after SIGTERM; killing it" >&2
      kill -KILL "$server_pid" 2>/dev/null
      rc=1
    fi
  elif [ -n "$killed" ]; then
    kill -KILL "$server_pid" 2>/dev/null
  fi
  { wait "$server_pid"; } 2>/dev/null
  local exit_code=$?
  if [ -z "$killed" ] && [ $rc -eq 0 ] && [ $exit_code -ne 0 ]; then
    echo "$BENCH_NAME: roost exited with $exit_code; its log:" >&2
    tail -20 "$server_log" >&2
    rc=1
  fi
  rm -rf "$server_data"
  server_pid=
  return $rc
}
trap 'stop_server >/dev/null 2>&1' EXIT
