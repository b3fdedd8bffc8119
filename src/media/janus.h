/*
 * media/janus.h — the media client: one process (design §1 `media`, under
 * the root supervisor) that owns roost's one WebSocket connection to the
 * Janus WebRTC server (API over WebSocket, subprotocol janus-protocol),
 * holds the Janus session, keeps it alive and routes what Janus says to
 * the process that owns each plugin handle. docs/media.md "Janus" has the
 * whole picture.
 *
 * Threads. The process itself runs on the schedulers like any other and
 * never blocks. Each connection attempt (media/janus_conn.h) has a thread
 * that does all of its socket's I/O: connect, TLS for wss:// (the
 * certificate is verified against cfg->ca_file or the system's CAs, and
 * against the host name or IP in the URL), the WebSocket handshake, then
 * reading frames — every text message goes to the process as a message
 * (JANUS_IO_* below, internal) — and writing the request frames the
 * process queues. A Janus that leaves 8 MiB of requests unread is treated
 * as gone (the connection is closed and re-made). No libuv, no executor.
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
 * it arrives (looked up with rt_whereis at each one), and it is not
 * monitored: it survives its owner's crash and restart (a RoomServer
 * restarted by its supervisor re-registers room:<id> and carries on with
 * the same handles). Such handles are detached by an explicit "detach",
 * or all at once with JANUS_RELEASE (data = the name; a = a VideoRoom id
 * to destroy first, through one of those handles, or 0) when the owner
 * ends for good.
 *
 * Named requests. A process that must get its answers even across its
 * own crash (a RoomServer) sends the request as an info message instead
 * of a call: janus_req_named(json, rid, timeout_ms), with "reply_to":
 * "<its registered name>" in the JSON. The answer is an info message
 * JANUS_ANSWER {a = rid; data = Janus's final answer as JSON text
 * (RT_OWN_FREE), or flags & RT_MF_ERROR and an rt_reason_t (RT_OWN_RC):
 * "timeout" after timeout_ms (0 = 10 s), "janus_unavailable",
 * "janus_disconnected", "janus_bad_request"} sent to whoever holds the
 * name when it comes. An attach without "owner" is owned by that name.
 * The caller picks rids (unique among its pending ones) and keeps them
 * in its backed-up state: a restarted incarnation receives the answers
 * to what the crashed one asked.
 *
 * Absent owners. A message for a name that nobody holds at that moment
 * (a named owner between two incarnations: events, JANUS_DOWN, named
 * answers) is parked, in order, and delivered as soon as the name is
 * held again; after holdover_ms (default 5 s) it is dropped and counted
 * ("dropped" in JANUS_STATUS). At most 4096 messages are parked.
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

#include <stdbool.h>
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
                             data = JSON text {connected, session, handles, pending,
                             parked, dropped} (RT_OWN_FREE; NULL on ENOMEM) */
    JANUS_RELEASE,        /* info: data = an owner name (RT_OWN_FREE), a = VideoRoom to
                             destroy or 0; detaches every handle owned by that name */
    JANUS_ANSWER,         /* info to a named requester: a = rid, data = answer (see above) */
    /* internal */
    JANUS_IO_UP,
    JANUS_IO_MSG,
    JANUS_IO_DOWN,
    JANUS_T_KEEPALIVE,
    JANUS_T_RECONNECT,
    JANUS_T_TICK,
};

typedef struct janus_config {
    const char *url;        /* ws://host[:port][/path] or wss://...; copied by init */
    const char *ca_file;    /* wss://: PEM CA certificates that Janus's
                               certificate must chain to (NULL = the system's);
                               read by init */
    rt_pid_t notify;        /* also gets JANUS_UP / JANUS_DOWN; RT_NOPID = none */
    int keepalive_ms;       /* 0 = 25000 */
    int backoff_min_ms;     /* 0 = 250 */
    int backoff_max_ms;     /* 0 = 10000 */
    int txn_timeout_ms;     /* a transaction Janus never answers is dropped
                               after this; 0 = 60000 */
    int holdover_ms;        /* how long a message waits for an absent named
                               owner; 0 = 5000 */
} janus_config_t;

/* The behaviour; spawn it with a janus_config_t * as arg (borrowed). */
extern const rt_behaviour_t janus_behaviour;

/* Whether the media client has a Janus session now (any thread; for
 * /healthz). */
bool janus_connected(void);

/* A JANUS_REQ call message carrying a copy of json (NULL on ENOMEM). */
rt_msg_t *janus_req_new(const char *json);
/* A JANUS_REQ info message (named request: json has "reply_to") carrying
 * a copy of json, answered with JANUS_ANSWER a = rid; NULL on ENOMEM.
 * Send it with rt_send_msg to the client. */
rt_msg_t *janus_req_named(const char *json, uint64_t rid, int timeout_ms);
/* A JANUS_RELEASE message for owner_name that destroys VideoRoom videoroom
 * (0 = none) first (NULL on ENOMEM); send it with rt_send_msg to the client. */
rt_msg_t *janus_release_new(const char *owner_name, uint64_t videoroom);

#endif
