/*
 * media/janus.h — the media client: one process (design §1 `media`, under
 * the root supervisor) that owns roost's one WebSocket connection to the
 * Janus WebRTC server (API over WebSocket, subprotocol janus-protocol),
 * holds the Janus session, keeps it alive and routes what Janus says to
 * the process that owns each plugin handle. docs/media.md "Janus" has the
 * whole picture.
 *
 * Threads. The process itself runs on the schedulers like any other and
 * never blocks. Each connection attempt gets a dedicated reader thread
 * (plain blocking socket): it connects, does the WebSocket handshake,
 * then reads frames and hands every text message to the process as a
 * message (JANUS_IO_* below, internal). The process writes request frames
 * itself with non-blocking send() under the connection's mutex; a Janus
 * that stops reading for a whole socket buffer is treated as gone (the
 * connection is shut down and re-made). No libuv, no executor.
 *
 * Requests. A caller (a RoomServer) sends a Janus request as a call:
 * rt_call(media, janus_req_new(json), timeout, &ref), keeps the ref in its
 * state and carries on; the answer arrives later as an RT_MSG_REPLY with
 * that ref (tag JANUS_REPLY, data = Janus's final answer as JSON text,
 * RT_OWN_FREE), or as an error reply: the caller's timeout, or reason
 * "janus_unavailable" (not connected) / "janus_disconnected" (the
 * connection dropped while waiting). The request is a JSON object without
 * "transaction" and "session_id" (the client adds both), e.g.
 *   {"janus":"attach","plugin":"janus.plugin.videoroom"}
 *   {"janus":"message","handle_id":H,"body":{"request":"create"}}
 *   {"janus":"message","handle_id":H,"body":{...},"jsep":{...}}
 *   {"janus":"trickle","handle_id":H,"candidate":{...}}
 *   {"janus":"detach","handle_id":H}
 * Matching is by transaction. For "message" the final answer is the
 * "success"/"error" or the plugin's "event" carrying the transaction (an
 * "ack" only means "event follows"; the event may come first, the late
 * ack is then ignored); for the other requests it is the first answer.
 *
 * Handles. A successful "attach" makes the caller the handle's owner: it
 * gets every later Janus message about that handle (event, webrtcup,
 * media, slowlink, hangup, trickle, detached) as an info message
 * JANUS_EVENT {a = handle id, data = JSON text}. The client monitors
 * owners and detaches the handles of one that exits. A JANUS_REQ's `a`,
 * if not 0, names the owner instead of the caller (rt_call_sync calls
 * from a short-lived helper; an inbox names itself).
 *
 * Owned by name. An attach request may carry "owner": "<registered
 * name>" (at most 63 bytes; removed before the request goes to Janus):
 * the handle then belongs to whoever holds that name when a message about
 * it arrives (looked up with rt_whereis at each one; dropped while nobody
 * does), and it is not monitored: it survives its owner's crash and
 * restart (a RoomServer restarted by its supervisor re-registers
 * room:<id> and carries on with the same handles). Such handles are
 * detached by an explicit "detach", or all at once with JANUS_RELEASE
 * (data = the name) when the owner ends for good.
 *
 * Connection. On (re)connect the client creates the session and sends
 * JANUS_UP {a = session id} to cfg->notify (if set) and publishes it on
 * topic JANUS_TOPIC; when the connection drops or Janus says the session
 * timed out, every pending request fails, every handle is forgotten,
 * JANUS_DOWN goes the same ways, and it reconnects with exponential
 * backoff (backoff_min_ms doubling to backoff_max_ms, reset on success).
 * Keepalive: {"janus":"keepalive"} every keepalive_ms (default 25 s,
 * Janus's session timeout is 60 s).
 */
#ifndef ROOST_MEDIA_JANUS_H
#define ROOST_MEDIA_JANUS_H

#include <stdint.h>

#include "rt/rt.h"

#define JANUS_NAME "media"          /* registered name of the client */
#define JANUS_TOPIC "media:janus"   /* JANUS_UP / JANUS_DOWN are published here */
#define JANUS_PLUGIN_VIDEOROOM "janus.plugin.videoroom"

enum {
    JANUS_REQ = 0x4a000,  /* call: data = request JSON text (RT_OWN_FREE) */
    JANUS_REPLY,          /* its reply: data = answer JSON text (RT_OWN_FREE) */
    JANUS_EVENT,          /* info to a handle's owner: a = handle, data = JSON text */
    JANUS_UP,             /* info / publish: a = session id */
    JANUS_DOWN,           /* info / publish: the session and every handle are gone */
    JANUS_STATUS,         /* call: reply JANUS_STATUS a = connected (0/1), b = session id,
                             data = NULL; for tests and /metrics */
    JANUS_RELEASE,        /* info: data = an owner name (RT_OWN_FREE); detaches every
                             handle owned by that name */
    /* internal */
    JANUS_IO_UP,
    JANUS_IO_MSG,
    JANUS_IO_DOWN,
    JANUS_T_KEEPALIVE,
    JANUS_T_RECONNECT,
};

typedef struct janus_config {
    const char *url;        /* ws://host:port[/path]; copied by init */
    rt_pid_t notify;        /* also gets JANUS_UP / JANUS_DOWN; RT_NOPID = none */
    int keepalive_ms;       /* 0 = 25000 */
    int backoff_min_ms;     /* 0 = 250 */
    int backoff_max_ms;     /* 0 = 10000 */
    int txn_timeout_ms;     /* a transaction Janus never answers is dropped
                               after this; 0 = 60000 */
} janus_config_t;

/* The behaviour; spawn it with a janus_config_t * as arg (borrowed). */
extern const rt_behaviour_t janus_behaviour;

/* A JANUS_REQ call message carrying a copy of json (NULL on ENOMEM). */
rt_msg_t *janus_req_new(const char *json);
/* A JANUS_RELEASE message for owner_name (NULL on ENOMEM); send it with
 * rt_send_msg to the client. */
rt_msg_t *janus_release_new(const char *owner_name);

#endif
