/*
 * web/endpoint.h — the endpoint (design §1): the child of the root
 * supervisor that owns the network listener and glues the transport
 * (net/server.h) to the web layer (Phoenix sockets, REST).
 *
 * Shape
 *   web_endpoint_t holds the configuration and the running server; main
 *   builds it, hands it to the root supervisor as the arg of the
 *   endpoint child (behaviour web_endpoint_behaviour), and waits for
 *   web_endpoint_wait_ready before it prints the listening line.
 *   The process's init starts the listener, its terminate drains and
 *   stops it; a restart of the process starts a new listener on the
 *   same port. The net_app_t it installs maps:
 *     on_ws_open     -> web_api_ws_auth, then web_socket_new
 *     on_ws_message  -> web_socket_handle_message
 *     on_ws_closed   -> web_socket_free
 *     on_request     -> web_api_handle (answer now or from on_info)
 *     on_info        -> web_socket_handle_info / web_api_handle_info
 *   and the socket's output to net_ws_send / net_ws_send_frame /
 *   net_ws_close.
 *
 * Threads
 *   net_server_start/_drain/_free may only run on threads that are not
 *   schedulers, so the process does them on a helper thread: init starts
 *   one that starts the server and returns at once (a bind failure comes
 *   back as a message and stops the process with the reason); terminate
 *   runs drain and free on a helper thread and joins it, which holds
 *   that one scheduler thread for at most the drain timeout (connection
 *   processes run on the I/O threads, so nothing waits for it).
 *
 * Ownership: web_endpoint_t is main's; it must outlive the endpoint
 * process (free it after the supervisor stopped).
 */
#ifndef ROOST_WEB_ENDPOINT_H
#define ROOST_WEB_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "net/server.h"
#include "rt/rt.h"
#include "web/api.h"
#include "web/channel.h"

typedef struct web_endpoint_config {
    net_config_t net;           /* host, port, io_threads, limits; app and
                                   app_data are set by the endpoint */
    const char *secret;         /* JWT secret (copied) */
    const char *api_key;        /* copied */
    bool dev;                   /* secret and key are development values */
    const char *version;        /* static */
    int drain_code;             /* 1012 */
    unsigned drain_batch;       /* WebSockets closed per interval: 500 */
    int drain_interval_ms;      /* 100 */
    int drain_timeout_ms;       /* 10000 */
} web_endpoint_config_t;

typedef struct web_endpoint web_endpoint_t;

void web_endpoint_config_default(web_endpoint_config_t *cfg);

/* Builds the endpoint (nothing listens yet) and its channel router with
 * the handlers roost ships (user:). NULL on ENOMEM. External thread. */
web_endpoint_t *web_endpoint_new(const web_endpoint_config_t *cfg);
/* After the endpoint process has exited. */
void web_endpoint_free(web_endpoint_t *ep);

/* Adds a topic handler (before the process starts). Returns WEB_OK,
 * WEB_E_ARG or WEB_E_LIMIT. */
int web_endpoint_add_handler(web_endpoint_t *ep, const web_channel_handler_t *h);

/* The endpoint child's behaviour; its init arg is the web_endpoint_t*. */
extern const rt_behaviour_t web_endpoint_behaviour;

/* External thread. Waits until the listener accepts connections (RT_OK,
 * *port = the port bound) or failed to start (its error, e.g.
 * NET_E_BIND), or timeout_ms passed (RT_ETIMEOUT). */
int web_endpoint_wait_ready(web_endpoint_t *ep, int timeout_ms, int *port);

/* External thread. Graceful shutdown (design §4): stop accepting, close
 * WebSockets in batches with drain_code. The endpoint process's
 * terminate then only frees what is left. */
void web_endpoint_drain(web_endpoint_t *ep);

#endif /* ROOST_WEB_ENDPOINT_H */
