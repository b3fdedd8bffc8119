/*
 * web/channel.h — Phoenix channels on roost: topic handlers, the per-topic
 * channel a socket holds, and broadcasts (design §1, §4).
 *
 * A Phoenix socket (web/socket.h) is one WebSocket connection; a channel
 * is one topic that socket has joined. In Phoenix every channel is its own
 * process; in roost a channel lives inside its connection process (no
 * process, no copy per push): the handler's callbacks run there, one at a
 * time, with the socket's state. Work that belongs to another process (a
 * RoomServer) is reached by messages: the channel sends a call and its
 * answer comes back to the connection process, which routes it to the
 * channel by ref (web_channel_watch) or by the channel's id
 * (WEB_MSG_CHANNEL, WEB_MSG_PUSH).
 *
 * Handlers
 *   A web_channel_handler_t serves every topic that starts with its
 *   prefix ("user:", "room:"). Handlers are collected in a router
 *   (web_channel_router_t) that the endpoint builds at start-up and every
 *   socket reads; the first matching prefix wins. A new topic kind is a
 *   new handler: the transport and the socket do not change.
 *
 * Life of a channel (numbered rules; socket.c relies on them)
 *   1. phx_join creates the channel in state JOINING, subscribes the
 *      connection to the topic (so nothing published after the join is
 *      decided is missed) and calls join(). Broadcasts that arrive while
 *      JOINING are dropped: the join reply carries the state they change.
 *   2. join() answers with web_channel_join_ok / web_channel_join_error,
 *      now or later (e.g. from handle_info once a RoomServer's reply
 *      arrived). join_ok sends the reply and makes the channel JOINED;
 *      join_error sends the error reply and ends the channel. A join()
 *      that returns WEB_CH_CRASH without answering ends the channel with
 *      the error reply {"reason":"join crashed"} (Phoenix's text).
 *   3. Pushes for a JOINING channel wait in its queue (bounded) and are
 *      handed to handle_in in order once JOINED; if the join fails they
 *      are answered as pushes to a topic not joined.
 *   4. handle_in answers the push now (web_channel_reply), later
 *      (web_channel_defer, then web_channel_reply_later), or not at all,
 *      in which case the socket answers {"status":"ok","response":{}}
 *      itself: every push with a ref gets exactly one reply.
 *   5. A callback's return value decides what happens next: WEB_CH_OK
 *      goes on, WEB_CH_STOP closes the channel (phx_close to the client:
 *      do not rejoin; room ended, kicked), WEB_CH_CRASH errors it
 *      (phx_error {"reason":"channel_crash"}: the client rejoins).
 *   6. terminate() runs exactly once for every channel whose join() was
 *      called, whatever ended it (leave, error, crash, duplicate join,
 *      socket closed), after every message to the client for it was
 *      sent. The channel is gone once it returns; it may not push.
 *      Pushes still deferred are answered {"status":"error","response":
 *      {"reason":"channel closed"}} before the channel's last message.
 *
 * Threads and ownership
 *   Every function taking a web_channel_t* runs in the connection
 *   process (its callbacks, or code the socket calls from them). A
 *   web_channel_t* is valid until terminate() returns; never keep it
 *   after that, and never hand it to another process (send the
 *   connection's pid and web_channel_id() instead).
 *   JSON arguments are borrowed unless a function says it takes them.
 *   Broadcasts (web_broadcast_t) are immutable, reference counted and
 *   safe to share with any thread.
 */
#ifndef ROOST_WEB_CHANNEL_H
#define ROOST_WEB_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "rt/rt.h"
#include "web/phx.h"

/* Errors of the web layer (negative; rt_err_t codes may also appear). */
typedef enum web_err {
    WEB_OK = 0,
    WEB_E_NOMEM = -200,   /* allocation failed; nothing was done */
    WEB_E_ARG = -201,     /* bad argument (NULL, not UTF-8, bad JSON) */
    WEB_E_STATE = -202,   /* wrong channel state (e.g. join_ok twice, a
                             reply outside handle_in, a push before join) */
    WEB_E_NOTFOUND = -203,/* no such deferred push / ref */
    WEB_E_LIMIT = -204,   /* a bound was reached (channels, deferred pushes) */
    WEB_E_CLOSED = -205,  /* the socket is closing: nothing is sent any more */
} web_err_t;

const char *web_strerror(int err);

/* Message tags the web layer understands (rt_msg_t.tag). */
enum {
    /* RT_MSG_PUB whose data is a web_broadcast_t: written to the client as
     * is (the fast lane) if the socket has joined its topic. */
    WEB_MSG_BROADCAST = 0x57420001u,
    /* Sent to a connection: a = channel id, data = web_broadcast_t
     * (RT_OWN_RC). The socket pushes event and payload to that channel
     * with its join_ref (Phoenix push/3 from another process). Dropped if
     * that channel is gone. */
    WEB_MSG_PUSH,
    /* Sent to a connection: a = channel id; handed to that channel's
     * handle_info as is (b and data are the sender's business). */
    WEB_MSG_CHANNEL,
};

/* ---- Broadcasts: encode once, write everywhere ---------------------------
 * A broadcast is what a publisher hands to pub/sub: topic, event and the
 * payload as JSON text, plus the complete WebSocket frame for each
 * serializer version, built by the first socket that needs it and cached
 * (an atomic compare-and-swap decides which of two racing encoders wins;
 * the loser frees its own). Every other subscriber writes the same frame:
 * no encoding, copy or allocation per subscriber. The frame is the Phoenix
 * broadcast form: V2 [null,null,topic,event,payload], V1 with "ref" and
 * "join_ref" null. */
typedef struct web_broadcast {
    rt_rc_t rc;              /* first: the pub/sub payload is &rc */
    rt_pid_t exclude;        /* sockets of this connection skip it
                                (Phoenix broadcast_from); RT_NOPID: none */
    const char *topic;       /* all three point into this allocation */
    const char *event;
    const char *payload;     /* JSON text, NUL-terminated */
    size_t payload_len;
    _Atomic(rt_buf_t *) frame[2]; /* [0] V1, [1] V2; NULL until built */
} web_broadcast_t;

/* A broadcast of payload_json (payload_len bytes of valid JSON, copied;
 * its syntax is the caller's promise, UTF-8 is checked) with refs = 1.
 * Returns NULL on ENOMEM or bad arguments. Any thread. */
web_broadcast_t *web_broadcast_new(const char *topic, const char *event,
                                   const char *payload_json, size_t payload_len);
/* The same from a json_t (dumped compactly; NULL means {}). */
web_broadcast_t *web_broadcast_new_json(const char *topic, const char *event,
                                        const json_t *payload);
static inline void web_broadcast_retain(web_broadcast_t *b) { rt_rc_retain(&b->rc); }
static inline void web_broadcast_release(web_broadcast_t *b) { rt_rc_release(&b->rc); }
/* The frame for this serializer version, built on first use (borrowed:
 * valid while the caller holds the broadcast; retain it to keep it).
 * NULL on ENOMEM. Any thread. */
rt_buf_t *web_broadcast_frame(web_broadcast_t *b, phx_vsn_t vsn);
/* rt_publish on b->topic (b borrowed: each delivery retains it). Returns
 * the number of subscribers reached or an error. Any thread. */
int web_broadcast_publish(web_broadcast_t *b);
/* new_json + publish + release, for one-off events. Returns subscribers
 * reached or an error. Any thread. */
int web_broadcast(const char *topic, const char *event, const json_t *payload);

/* ---- Handlers --------------------------------------------------------------- */

typedef struct web_channel web_channel_t;

/* Callback results (rule 5). */
typedef enum web_ch_result {
    WEB_CH_OK = 0,
    WEB_CH_STOP = 1,   /* close the channel: phx_close, no rejoin */
    WEB_CH_CRASH = 2,  /* fail the channel: phx_error, the client rejoins */
} web_ch_result_t;

/* Why a channel ended, as terminate() is told. */
typedef enum web_ch_exit {
    WEB_CH_LEFT = 1,        /* the client sent phx_leave */
    WEB_CH_JOIN_FAILED,     /* join_error, or join crashed */
    WEB_CH_CLOSED,          /* WEB_CH_STOP: the server closed it (phx_close) */
    WEB_CH_CRASHED,         /* WEB_CH_CRASH: phx_error was sent */
    WEB_CH_REPLACED,        /* a duplicate join of its topic replaced it */
    WEB_CH_SOCKET_CLOSED,   /* the WebSocket went away */
} web_ch_exit_t;

const char *web_ch_exit_name(web_ch_exit_t why);

#define WEB_CHANNEL_HANDLER_ABI 1u

typedef struct web_channel_handler {
    uint32_t abi;           /* WEB_CHANNEL_HANDLER_ABI */
    const char *prefix;     /* topics it serves: "user:", "room:" (static) */
    void *data;             /* the handler's global context (static life) */

    /* Mandatory. A client asks to join `topic` with `payload` (any JSON
     * value, borrowed for the call). Set *state (NULL is fine), then
     * answer with web_channel_join_ok/_error now or later (rule 2). */
    web_ch_result_t (*join)(web_channel_t *ch, const char *topic, json_t *payload,
                            void **state);

    /* Optional. A client push on the joined topic. The push's ref is
     * known to the channel: reply with web_channel_reply, or
     * web_channel_defer to reply later. A handler without handle_in
     * answers every push {"reason":"unknown event"}. */
    web_ch_result_t (*handle_in)(web_channel_t *ch, void *state, const char *event,
                                 json_t *payload);

    /* Optional. A runtime message routed to this channel: one carrying a
     * ref the channel watches (call replies, DOWNs, timers), or a
     * WEB_MSG_CHANNEL with its id, or an RT_MSG_PUB of a topic it
     * subscribed to with web_channel_subscribe (other than its own
     * topic's broadcasts, which take the fast lane). Borrowed, as in
     * handle_info. */
    web_ch_result_t (*handle_info)(web_channel_t *ch, void *state, rt_msg_t *m);

    /* Optional. Rule 6. Frees state. Must not fail. */
    void (*terminate)(web_channel_t *ch, void *state, web_ch_exit_t why);
} web_channel_handler_t;

#define WEB_CHANNEL_HANDLER(...) { .abi = WEB_CHANNEL_HANDLER_ABI, __VA_ARGS__ }

/* At most this many handlers per router. */
#define WEB_ROUTER_MAX 16

/* Topic prefix -> handler. Filled at start-up, read-only afterwards (so
 * any thread may read it without locks). Zero-initialised is empty. */
typedef struct web_channel_router {
    const web_channel_handler_t *h[WEB_ROUTER_MAX];
    size_t n;
} web_channel_router_t;

/* Adds a handler (borrowed; must outlive the router). Returns WEB_OK,
 * WEB_E_ARG (no prefix, no join, wrong abi) or WEB_E_LIMIT. Not
 * thread-safe: call before any socket uses the router. */
int web_channel_router_add(web_channel_router_t *r, const web_channel_handler_t *h);
/* The handler for topic, or NULL. Any thread. */
const web_channel_handler_t *web_channel_route(const web_channel_router_t *r,
                                               const char *topic);

/* ---- The channel, for handlers ---------------------------------------------- */

/* Identity (valid until terminate returns). */
const char *web_channel_topic(const web_channel_t *ch);
const char *web_channel_join_ref(const web_channel_t *ch);   /* may be NULL */
/* A number unique in the runtime's life: other processes address this
 * channel with (connection pid, id) in WEB_MSG_PUSH / WEB_MSG_CHANNEL. */
uint64_t web_channel_id(const web_channel_t *ch);
rt_pid_t web_channel_pid(const web_channel_t *ch);          /* the connection */
/* The authenticated user (JWT sub) and the token's claims (borrowed;
 * parsed on first use, so NULL only when out of memory). */
const char *web_channel_user(const web_channel_t *ch);
const json_t *web_channel_claims(const web_channel_t *ch);
const web_channel_handler_t *web_channel_handler(const web_channel_t *ch);
bool web_channel_joined(const web_channel_t *ch);

/* Answers the join (rule 2); response borrowed (NULL = {}). join_ok: then
 * JOINED, queued pushes follow. join_error: the channel ends (terminate
 * follows, after the current callback if inside one). WEB_E_STATE if
 * already answered. */
int web_channel_join_ok(web_channel_t *ch, const json_t *response);
/* join_ok with the response already serialised (response_len bytes of
 * JSON, copied; valid UTF-8, else WEB_E_ARG and the join stays
 * unanswered). What a room join answers with is the room's state text:
 * this writes it as it is, with no parse and no dump. */
int web_channel_join_ok_raw(web_channel_t *ch, const char *response_json, size_t response_len);
int web_channel_join_error(web_channel_t *ch, const json_t *response);
/* join_error with {"reason": reason}. */
int web_channel_join_refuse(web_channel_t *ch, const char *reason);

/* Inside handle_in: answers the current push with status "ok" or
 * "error" (or any string) and response (NULL = {}). WEB_E_STATE outside
 * handle_in or if already answered. A push without a ref wants no
 * reply: this then sends nothing and returns WEB_OK. */
int web_channel_reply(web_channel_t *ch, const char *status, const json_t *response);
/* Inside handle_in: the current push will be answered later with
 * web_channel_reply_later(ch, token, ...). token is any unique non-zero
 * number — typically the ref of the rt_call whose answer decides the
 * reply, which is also watched (web_channel_watch), so that answer
 * reaches handle_info. At most WEB_CHANNEL_MAX_DEFERRED pending per
 * channel (WEB_E_LIMIT: reply now instead). */
#define WEB_CHANNEL_MAX_DEFERRED 256
int web_channel_defer(web_channel_t *ch, uint64_t token);
/* Answers a deferred push and stops watching token. WEB_E_NOTFOUND if no
 * deferred push has that token (already answered, or the channel was
 * replaced). */
int web_channel_reply_later(web_channel_t *ch, uint64_t token, const char *status,
                            const json_t *response);
/* The same with the response already serialised (response_len bytes of
 * JSON, copied). */
int web_channel_reply_later_raw(web_channel_t *ch, uint64_t token, const char *status,
                                const char *response_json, size_t response_len);

/* Sends the client event with payload (NULL = {}) on this channel, with
 * its join_ref (Phoenix push/3). WEB_E_STATE before join_ok. */
int web_channel_push(web_channel_t *ch, const char *event, const json_t *payload);
/* The same with payload already serialised (payload_len bytes of JSON). */
int web_channel_push_raw(web_channel_t *ch, const char *event, const char *payload_json,
                         size_t payload_len);
/* Writes a broadcast's shared frame to this client (no copy), e.g. one
 * received on a web_channel_subscribe'd topic. */
int web_channel_push_broadcast(web_channel_t *ch, web_broadcast_t *b);

/* Runtime messages carrying ref (replies to rt_call, DOWNs of
 * rt_monitor, timers of rt_send_after) go to this channel's handle_info.
 * The watch ends with web_channel_unwatch, with the channel, or — for a
 * call reply — once that reply was delivered (a reply is the last
 * message with its ref; DOWNs and timers likewise). */
int web_channel_watch(web_channel_t *ch, uint64_t ref);
void web_channel_unwatch(web_channel_t *ch, uint64_t ref);

/* Subscribes the connection to another topic for this channel: its
 * RT_MSG_PUBs go to handle_info. Counted per socket, so two channels may
 * share a topic. Undone with the channel. */
int web_channel_subscribe(web_channel_t *ch, const char *topic);
int web_channel_unsubscribe(web_channel_t *ch, const char *topic);

/* ---- Topic handlers shipped with the web layer ---------------------------------
 * user:<id> (user_channel.c): only the token's `sub` may join its own
 * topic (else join error "unauthorized"); each connection is tracked in
 * presence under key = id with metas {"online_at": ms, "phx_ref": ...};
 * web_user_notify publishes an event to every connection of that user
 * through the fast lane (how a callee's phone rings). */
extern const web_channel_handler_t web_user_channel;
/* Any thread. payload_json: payload_len bytes of JSON (copied). Returns
 * the number of connections reached (>= 0) or an error. */
int web_user_notify(const char *user, const char *event, const char *payload_json,
                    size_t payload_len);

/* ---- Counters (for /metrics), any thread ------------------------------------ */
typedef struct web_channel_stats {
    uint64_t sockets;        /* open now */
    uint64_t channels;       /* open now (joining or joined) */
    uint64_t joins;          /* join requests routed to a handler */
    uint64_t join_errors;    /* refused, crashed, unmatched, over the limit */
    uint64_t crashes;        /* phx_error sent */
    uint64_t pushes_in;      /* client pushes handed to handlers */
    uint64_t broadcasts_out; /* shared frames written to clients */
    uint64_t frames_encoded; /* broadcast frames built (one per version) */
    uint64_t bad_messages;   /* closes with 1007 */
} web_channel_stats_t;
void web_channel_get_stats(web_channel_stats_t *out);

/* Internal to src/web (socket.c and channel.c bump them; relaxed atomic
 * adds: they are statistics, ordered with nothing). */
enum {
    WEB__STAT_SOCKETS,
    WEB__STAT_CHANNELS,
    WEB__STAT_JOINS,
    WEB__STAT_JOIN_ERRORS,
    WEB__STAT_CRASHES,
    WEB__STAT_PUSHES_IN,
    WEB__STAT_BROADCASTS_OUT,
    WEB__STAT_FRAMES_ENCODED,
    WEB__STAT_BAD_MESSAGES,
    WEB__STAT_N
};
extern _Atomic uint64_t web__stat[WEB__STAT_N];

/* Internal to src/web: s (valid UTF-8, NUL-terminated) as a JSON string
 * literal, quotes included, escaped as jansson does by default ('"',
 * '\\' and control characters only). _len counts it; web__json_quote
 * writes exactly that many bytes, no NUL. */
size_t web__json_quote_len(const char *s);
void web__json_quote(const char *s, char *out);

#endif /* ROOST_WEB_CHANNEL_H */
