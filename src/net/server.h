/*
 * net/server.h — the network endpoint's transport: libuv I/O threads,
 * listeners, and one connection process per TCP connection (design §1,
 * "endpoint"; §4 limits).
 *
 * Shape
 *   net_server_start() starts `io_threads` threads, each with its own
 *   libuv loop, its own listening socket on the same port (SO_REUSEPORT,
 *   so the kernel spreads connections) and its own runtime executor
 *   (rt_exec_t). Every accepted connection is a runtime process pinned to
 *   its loop's thread: it can link, monitor, subscribe, call and be sent
 *   to like any process, and only its own thread ever touches its socket.
 *   Bytes read are parsed in the read callback as the connection process
 *   (rt_exec_call), from one read buffer per loop: an idle connection
 *   holds no read buffer. Sends are queued, and everything a connection
 *   sent during one loop iteration is written at its end with one
 *   writev (in order; a backlog of 64 KiB or more is written at once).
 *
 *   The transport speaks HTTP/1.1 (net/http.h) and RFC 6455 WebSocket
 *   (net/ws.h) and hands requests, WebSocket messages and runtime
 *   messages to the application through net_app_t. It answers protocol
 *   errors itself: 400/413/431 with the JSON error shape, close 1002/1007/
 *   1009 on bad frames, a ping with a pong, a close with a close.
 *
 * Limits (net_config_t, defaults in brackets)
 *   header block [16 KiB] -> 431; body [1 MiB] -> 413; malformed -> 400;
 *   a request whose header block is not complete within header_timeout
 *   [10 s] of its first byte, or a keep-alive connection idle for
 *   keepalive_timeout [15 s], is closed (no slowloris); a WebSocket message
 *   over max_frame [1 MiB] -> close 1009; a WebSocket with no frame for
 *   ws_idle_timeout [60 s] -> close 1001 (Phoenix clients send a heartbeat
 *   every 30 s); outbound bytes queued past max_outbound [1 MiB] -> the
 *   client is not reading: close 3008 at once, nobody else waits. After
 *   its last bytes (a response with Connection: close, a close frame)
 *   the server shuts its side down and waits up to linger [2 s] for the
 *   client's EOF before closing.
 *
 * Threads and ownership
 *   Every net_app_t callback runs on the connection's I/O thread, in the
 *   connection process's context (rt_self() is the connection's pid).
 *   The net_* functions below that take a net_conn_t* may be called only
 *   there too: from those callbacks, or from the connection process's own
 *   runtime messages (on_info). Other processes reach a connection by
 *   sending its pid a message (which arrives in on_info) — never by
 *   touching net_conn_t.
 */
#ifndef ROOST_NET_SERVER_H
#define ROOST_NET_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/http.h"
#include "rt/rt.h"

typedef struct net_conn net_conn_t;
typedef struct net_server net_server_t;

/* Errors of this module (negative; rt_err_t codes may also appear). */
enum {
    NET_E_BIND = -100,     /* cannot listen on host:port */
    NET_E_CLOSED = -101,   /* the connection is closing or closed */
    NET_E_STATE = -102,    /* wrong state (e.g. a second response, or a
                              WebSocket call on an HTTP connection) */
    NET_E_OVERFLOW = -103, /* outbound queue over max_outbound: the
                              connection is being closed with 3008 */
};

typedef struct net_app {
    /* An HTTP request (not a WebSocket upgrade). The application answers
     * exactly once with net_respond*(), now or later from this connection
     * process's callbacks (e.g. after an rt_call's reply arrives in
     * on_info). Requests pipelined behind it wait until it is answered.
     * req is borrowed for the duration of the call. */
    void (*on_request)(net_conn_t *c, const net_http_request_t *req);

    /* A valid WebSocket handshake. Return 0 to accept, or an HTTP status
     * (e.g. 403, 404) to refuse it (the transport answers with the JSON
     * error shape, `message` as the text). On accept the application may
     * set *state (its per-socket state, passed to every later WebSocket
     * callback) and *subprotocol (a static or long-lived string echoed in
     * Sec-WebSocket-Protocol, e.g. "phoenix"). */
    int (*on_ws_open)(net_conn_t *c, const net_http_request_t *req, void **state,
                      const char **subprotocol, const char **message);

    /* A complete WebSocket data message (reassembled; text is valid
     * UTF-8). data is borrowed for the duration of the call. */
    void (*on_ws_message)(net_conn_t *c, void *state, bool text, const char *data, size_t len);

    /* The WebSocket is gone (close handshake, error, timeout, or the
     * connection process exiting). `code` is the close code sent or
     * received (1006 if the TCP connection just dropped; 1000, 1001 or
     * 1011 if the process stopped normally, with shutdown, or with any
     * other reason). The application frees `state` here; no callback
     * follows. Normally this runs as a callback of the process, which
     * then exits; if the process was killed or failed, it runs in the
     * process's terminate, where rt_self() is already RT_NOPID. */
    void (*on_ws_closed)(net_conn_t *c, void *state, int code);

    /* Any runtime message sent to the connection process (its pid):
     * pub/sub deliveries, replies to its calls, DOWNs of its monitors,
     * trapped exits, timers, and casts (except the transport's own, tags
     * 0x6e6574xx with a marker in `b`). state is NULL before the upgrade.
     * m is borrowed, as in a handle_info callback. A connection process
     * has no handle_call: an rt_call to it fails it, as in OTP. */
    void (*on_info)(net_conn_t *c, void *state, rt_msg_t *m);
} net_app_t;

typedef struct net_config {
    const char *host;            /* "127.0.0.1" */
    int port;                    /* 4000; 0 = any free port (see net_server_port) */
    unsigned io_threads;         /* 0 = one per online core */
    size_t max_header;           /* 16 KiB */
    size_t max_body;             /* 1 MiB */
    size_t max_frame;            /* 1 MiB: largest WebSocket message */
    size_t max_outbound;         /* 1 MiB: queued bytes per connection */
    int header_timeout_ms;       /* 10000 */
    int keepalive_timeout_ms;    /* 15000 */
    int ws_idle_timeout_ms;      /* 60000 */
    int linger_ms;               /* 2000 */
    const net_app_t *app;        /* borrowed; must outlive the server */
    void *app_data;              /* net_server_app_data() */
} net_config_t;
/* In net_server_start, a NULL host, and 0 in any limit or timeout, mean
 * the default. */

void net_config_default(net_config_t *cfg);

/* Starts the I/O threads and listens. External thread; the runtime must
 * be running. cfg is copied. Returns RT_OK and *out, NET_E_BIND,
 * RT_ENOMEM. */
int net_server_start(const net_config_t *cfg, net_server_t **out);
/* The port actually bound (useful with port 0). */
int net_server_port(const net_server_t *s);
void *net_server_app_data(const net_server_t *s);
/* Stops accepting (listeners closed); existing connections go on. */
void net_server_stop_accepting(net_server_t *s);
/* Asks every WebSocket to close with `code` (1012 for a restart, 1001 for
 * going away), at most `batch` connections every `interval_ms` so that
 * clients come back spread out, and closes HTTP connections once their
 * current response is written. Returns when every connection is gone or
 * timeout_ms passed. External thread. */
void net_server_drain(net_server_t *s, int code, unsigned batch, int interval_ms, int timeout_ms);
/* Closes everything that is left (WebSockets get a best-effort close
 * 1001), stops the threads, frees the server. External thread; before
 * rt_runtime_stop (the connection processes run on the I/O threads). */
void net_server_free(net_server_t *s);

/* Counters for /metrics: sums over all I/O threads, read without locks. */
typedef struct net_stats {
    uint64_t connections;        /* open now (TCP) */
    uint64_t websockets;         /* open now */
    uint64_t accepted;           /* total */
    uint64_t http_requests;      /* WebSocket handshakes included */
    uint64_t frames_in, frames_out;
    uint64_t bytes_in, bytes_out;
    uint64_t closes[16];         /* WebSockets closed, by the code given to
                                    on_ws_closed: see net_close_code_index() */
} net_stats_t;
void net_server_stats(const net_server_t *s, net_stats_t *out);
/* The close codes counted, in closes[] order, ending with 0: the 0 entry
 * (index 15) counts every code not listed. */
extern const int net_close_codes[];
/* closes[] index of a code: its place in net_close_codes, else 15. */
int net_close_code_index(int code);

/* ---- per connection (the connection's thread, see above) ---- */

rt_pid_t net_conn_pid(const net_conn_t *c);
net_server_t *net_conn_server(const net_conn_t *c);
/* The peer as "ip:port" (borrowed, valid for the connection's life). */
const char *net_conn_peer(const net_conn_t *c);

/* Answers the current HTTP request. extra_headers is NULL or CRLF-ended
 * header lines ("Cache-Control: no-store\r\n"). body is copied; a HEAD
 * gets the headers only (Content-Length of body), 204 and 304 no
 * Content-Length. Returns RT_OK, NET_E_STATE (no request pending),
 * NET_E_CLOSED, NET_E_OVERFLOW (the response does not fit max_outbound
 * and the connection is being closed), RT_EINVAL (status not 200..599,
 * bad content type) or RT_ENOMEM; after RT_EINVAL and RT_ENOMEM nothing
 * was sent and the request is still pending. */
int net_respond(net_conn_t *c, int status, const char *content_type, const char *extra_headers,
                const void *body, size_t len);
/* `{"error":{"code":code,"message":message}}` with that status. */
int net_respond_error(net_conn_t *c, int status, const char *code, const char *message);

/* Sends a WebSocket text (or binary) message; data is copied into one
 * encoded frame. Returns RT_OK, NET_E_CLOSED, NET_E_STATE, NET_E_OVERFLOW. */
int net_ws_send(net_conn_t *c, bool text, const void *data, size_t len);
/* The broadcast fast lane: `frame` is a complete, already encoded server
 * frame (ws_frame_encode into an rt_buf_t). It is retained and written as
 * is — no copy, no re-encoding — and released once written. The same
 * frame may be queued on any number of connections. */
int net_ws_send_frame(net_conn_t *c, rt_buf_t *frame);
/* Starts the close handshake with code and reason (reason may be NULL);
 * on_ws_closed follows. Idempotent. */
void net_ws_close(net_conn_t *c, int code, const char *reason);
/* Bytes queued for writing now: sent but not yet taken by the socket,
 * including what waits for the end of this loop iteration. */
size_t net_conn_outbound(const net_conn_t *c);

#endif
