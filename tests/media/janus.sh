#!/usr/bin/env bash
# tests/media/janus.sh — a throw-away Janus for roost's media tests.
#
#   janus.sh setup DIR   write a minimal config into DIR and build the
#                        LD_PRELOAD shim (noloopback.c) there
#   janus.sh start DIR   start Janus with that config in the background
#                        (DIR/janus.pid, log in DIR/janus.log) and wait
#                        until ws://127.0.0.1:8188 accepts connections
#   janus.sh stop DIR    kill -9 that Janus (a crash, as the tests want)
#   janus.sh pause DIR   SIGSTOP it: requests stay unanswered (in flight)
#   janus.sh resume DIR  SIGCONT it: it answers what it was sent meanwhile
#
# Run `start` inside the private network namespace set up by
# tests/media/run.sh: Janus 1.1.2 ignores loopback interfaces when it
# gathers ICE candidates, so it is given a shim that clears IFF_LOOPBACK
# in getifaddrs() and `ice_enforce_list = "lo"`; in a namespace that has
# only `lo` this makes 127.0.0.1 its one host candidate and nothing ever
# leaves the machine. Config: only the VideoRoom plugin and the WebSockets
# transport (ws://127.0.0.1:${JANUS_WS_PORT:-8188} and, with a throw-away
# certificate for 127.0.0.1 in DIR/cert.pem, wss://127.0.0.1:${JANUS_WSS_PORT:-8989};
# subprotocol janus-protocol).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIBDIR="${JANUS_LIBDIR:-/usr/lib/x86_64-linux-gnu/janus}"
PORT="${JANUS_WS_PORT:-8188}"
WSS_PORT="${JANUS_WSS_PORT:-8989}"

cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 setup|start|stop|pause|resume DIR" >&2; exit 2; }

case "$cmd" in
setup)
  command -v janus >/dev/null || { echo "janus.sh: janus not installed (scripts/deps.sh)" >&2; exit 1; }
  mkdir -p "$dir/conf" "$dir/plugins" "$dir/transports" "$dir/empty"
  ln -sf "$LIBDIR/plugins/libjanus_videoroom.so" "$dir/plugins/"
  ln -sf "$LIBDIR/transports/libjanus_websockets.so" "$dir/transports/"
  cc -shared -fPIC -O2 -o "$dir/noloopback.so" "$HERE/noloopback.c" -ldl
  # A throw-away certificate for 127.0.0.1 (its own CA): Janus serves wss://
  # with it (and uses it for DTLS); the media client verifies against it.
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
  cat > "$dir/conf/janus.jcfg" <<CFG
general: {
	configs_folder = "$dir/conf"
	plugins_folder = "$dir/plugins"
	transports_folder = "$dir/transports"
	events_folder = "$dir/empty"
	loggers_folder = "$dir/empty"
	debug_level = 4
	session_timeout = 60
	server_name = "roost-test"
}
certificates: {
	cert_pem = "$dir/cert.pem"
	cert_key = "$dir/key.pem"
}
media: {
	rtp_port_range = "20000-40000"
}
nat: {
	ice_enforce_list = "lo"
	nice_debug = false
}
plugins: {
}
transports: {
}
events: {
	broadcast = false
}
CFG
  cat > "$dir/conf/janus.transport.websockets.jcfg" <<CFG
general: {
	json = "plain"
	ws = true
	ws_port = $PORT
	ws_ip = "127.0.0.1"
	wss = true
	wss_port = $WSS_PORT
	wss_ip = "127.0.0.1"
}
certificates: {
	cert_pem = "$dir/cert.pem"
	cert_key = "$dir/key.pem"
}
admin: {
	admin_ws = false
	admin_wss = false
}
CFG
  cat > "$dir/conf/janus.plugin.videoroom.jcfg" <<CFG
general: {
}
CFG
  echo "janus.sh: config in $dir"
  ;;
start)
  [ -f "$dir/conf/janus.jcfg" ] || "$0" setup "$dir"
  LD_PRELOAD="$dir/noloopback.so" setsid janus -C "$dir/conf/janus.jcfg" -F "$dir/conf" \
      -o -N -L "$dir/janus.log" </dev/null >/dev/null 2>&1 &
  echo $! > "$dir/janus.pid"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      echo "janus.sh: janus $(cat "$dir/janus.pid") listening on 127.0.0.1:$PORT"; exit 0
    fi
    kill -0 "$(cat "$dir/janus.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "janus.sh: janus did not start; log:" >&2; tail -20 "$dir/janus.log" >&2 || true
  exit 1
  ;;
stop)
  if [ -f "$dir/janus.pid" ]; then
    pid="$(cat "$dir/janus.pid")"
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$dir/janus.pid"
  fi
  ;;
pause|resume)
  [ -f "$dir/janus.pid" ] || { echo "janus.sh: no janus running in $dir" >&2; exit 1; }
  kill "-$([ "$cmd" = pause ] && echo STOP || echo CONT)" "$(cat "$dir/janus.pid")"
  ;;
*) echo "usage: $0 setup|start|stop|pause|resume DIR" >&2; exit 2 ;;
esac
