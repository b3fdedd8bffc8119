/*
 * web/socket.h — the server side of one Phoenix socket (design §4): the
 * protocol state of one WebSocket connection, its channels and their
 * routing.
 *
 * The socket lives in its connection process (the transport's
 * net_app_t callbacks run there) and talks to the connection only
 * through web_socket_out_t: send a text message, send a shared
 * pre-encoded frame, close with a code and reason. The endpoint maps
 * these to net_ws_send / net_ws_send_frame / net_ws_close; unit tests
 * capture them. Nothing here touches the network.
 *
 * What it does with each client message (Phoenix 1.7 semantics unless
 * noted; docs/protocol.md is the full list):
 *   - not JSON, or not a valid envelope -> close 1007 with the reason;
 *   - "heartbeat" on topic "phoenix" -> phx_reply ok {};
 *   - phx_join -> the router's handler for the topic's prefix, else a
 *     join error {"reason":"unmatched topic"}; a join of a topic already
 *     joined closes the old channel first (phx_close with the old
 *     join_ref); at most WEB_SOCKET_MAX_CHANNELS channels;
 *   - phx_leave -> reply ok, phx_close, the channel is gone;
 *   - any other event -> the channel's handle_in if the join_ref is the
 *     topic's current one (else ignored), or, for a topic not joined, a
 *     phx_reply error {"reason":"unmatched topic"}.
 * And with each runtime message (web_socket_handle_info): broadcasts of
 * joined topics are written as shared frames; replies, DOWNs and timers
 * go to the channel watching their ref; WEB_MSG_PUSH / WEB_MSG_CHANNEL to
 * the channel with that id.
 *
 * Threads: every function runs in the connection process (it may call
 * rt_subscribe, rt_call, ...). Ownership: see each function.
 */
#ifndef ROOST_WEB_SOCKET_H
#define ROOST_WEB_SOCKET_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "rt/rt.h"
#include "web/channel.h"
#include "web/phx.h"

#define WEB_SOCKET_MAX_CHANNELS 100
/* Pushes held for a channel that is still joining (channel.h rule 3). */
#define WEB_SOCKET_MAX_QUEUED 64

/* How the socket reaches its connection. Every function returns 0 or a
 * negative error (ignored by the socket beyond stopping its writes: the
 * transport closes a connection that cannot take more). A socket keeps
 * one pointer to the functions (and router): sockets given the same ones
 * share a table (interned), which is what an endpoint does. */
typedef struct web_socket_out {
    /* A text message (copied). */
    int (*send_text)(void *ctx, const char *data, size_t len);
    /* A complete encoded server frame (retained by the callee if kept). */
    int (*send_frame)(void *ctx, rt_buf_t *frame);
    /* Close the WebSocket (reason may be NULL). */
    void (*close)(void *ctx, int code, const char *reason);
    void *ctx;
} web_socket_out_t;

typedef struct web_socket web_socket_t;

typedef struct web_socket_config {
    phx_vsn_t vsn;                        /* from the vsn query param */
    const web_channel_router_t *router;   /* borrowed; outlives the socket */
    web_socket_out_t out;                 /* copied */
    const char *user;                     /* JWT sub (copied) */
    json_t *claims;                       /* token claims (borrowed: kept as
                                             compact text, parsed again the first
                                             time web_channel_claims asks) */
} web_socket_config_t;

/* A socket with no channels, or NULL on ENOMEM. Process context. */
web_socket_t *web_socket_new(const web_socket_config_t *cfg);

/* Ends every channel (terminate with WEB_CH_SOCKET_CLOSED; nothing more
 * is sent), drops the socket's subscriptions and frees it. Process
 * context. NULL is fine. */
void web_socket_free(web_socket_t *s);

/* One WebSocket text message from the client (borrowed). Binary messages
 * are not Phoenix messages: pass text = false and the socket closes with
 * 1003. */
void web_socket_handle_message(web_socket_t *s, bool text, const char *data, size_t len);

/* A runtime message for the connection (borrowed). Returns true if the
 * socket used it (or dropped it as stale: a reply for a channel that is
 * gone), false if it is not a socket message at all. */
bool web_socket_handle_info(web_socket_t *s, rt_msg_t *m);

/* The number of channels (joining or joined). */
size_t web_socket_channel_count(const web_socket_t *s);
/* True once the socket asked its connection to close. */
bool web_socket_closing(const web_socket_t *s);
phx_vsn_t web_socket_vsn(const web_socket_t *s);

#endif /* ROOST_WEB_SOCKET_H */
