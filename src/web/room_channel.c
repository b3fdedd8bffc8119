/*
 * web/room_channel.c — the topic room:<id> (design §4; see web/room_web.h
 * and web/channel.h for the rules every handler follows).
 *
 * A channel is a member of one room. It finds the RoomServer by name
 * (room:<id>), or asks the directory to start it (auto-create, or a live
 * room that is not running yet), and joins with a call; the RoomServer
 * answers once the join is stored, with the state and the participants'
 * presence, which the channel pushes as presence_state right after its
 * join reply. It monitors the RoomServer: a DOWN with reason `normal` is
 * the room's end (room_ended came first through the fast lane):
 * phx_close; any other reason is a crash: phx_error, and phoenix.js
 * rejoins by itself, finding the restarted server by name.
 *
 * What does not go through the RoomServer: `data` is published by the
 * channel itself to the topic, excluding its own connection (Phoenix
 * broadcast_from): one encode, one shared frame per member, and the room
 * is not a hop on the hottest path. room_status and presence_diff come
 * from the RoomServer through the same fast lane, so a channel never
 * re-encodes them.
 *
 * Joins retry (bounded) while the room is between two incarnations: the
 * name is briefly unregistered during a restart, and a join call can
 * meet a server that dies before answering.
 */
#include <stdlib.h>
#include <string.h>

#include "domain/rjson.h"
#include "domain/room.h"
#include "web/room_web.h"

#define PREFIX ROOM_TOPIC_PREFIX
#define JOIN_TIMEOUT_MS 10000
#define CALL_TIMEOUT_MS 10000
#define RETRY_MS 20
#define MAX_ATTEMPTS 250 /* about 5 s of a room that is not there */

enum phase { PH_ENSURE = 1, PH_JOIN, PH_JOINED };
enum { PEND_STATUS = 1, PEND_SIGNAL };

/* A status or signal push waiting for the room's answer. The answers
 * come in the order the calls went out, except that a signal is answered
 * at once while statuses wait for their commit: so the pending ones are
 * a FIFO ring, the oldest looked at first (O(1) in the usual case); one
 * answered out of order is found by a scan and left as a hole (ref 0)
 * that the ring drops when it reaches the front. */
typedef struct pend {
    uint64_t ref;   /* 0: answered out of order */
    int kind;
} pend_t;

typedef struct rch {
    char id[ROOM_ID_MAX + 1];
    room_role_t role;
    enum phase phase;
    rt_pid_t room;         /* the RoomServer joined (or being joined) */
    uint64_t call_ref;     /* ensure / join call in flight */
    uint64_t mref;         /* monitor of room, once joined */
    uint64_t retry;        /* retry timer */
    unsigned attempts;
    bool room_down;        /* its DOWN came: nothing to tell it */
    pend_t *pend;          /* status / signal calls answered later: a ring */
    uint32_t phead, npend, cappend; /* cappend: 0 or a power of two */
} rch_t;

/* ---- joining ------------------------------------------------------------------- */

static web_ch_result_t refuse(web_channel_t *ch, const char *reason)
{
    web_channel_join_refuse(ch, reason);
    return WEB_CH_OK;
}

static web_ch_result_t attempt(web_channel_t *ch, rch_t *st);

static web_ch_result_t retry_later(web_channel_t *ch, rch_t *st)
{
    if (++st->attempts > MAX_ATTEMPTS)
        return refuse(ch, room_strerror(ROOM_EUNAVAIL));
    rt_msg_t *m = rt_msg_new(ROOM__RETRY);
    st->retry = m ? rt_send_after(RETRY_MS, rt_self(), m) : 0;
    if (!st->retry || web_channel_watch(ch, st->retry) != WEB_OK)
        return refuse(ch, room_strerror(ROOM_ENOMEM));
    return WEB_CH_OK;
}

static web_ch_result_t attempt(web_channel_t *ch, rch_t *st)
{
    st->call_ref = 0;
    rt_pid_t pid = room_whereis(st->id);
    if (pid) {
        room_addr_t addr = {.pid = rt_self(), .tag = WEB_MSG_CHANNEL,
                            .word = web_channel_id(ch)};
        rt_msg_t *m = room_req_join(web_channel_user(ch), st->role, addr);
        if (!m)
            return refuse(ch, room_strerror(ROOM_ENOMEM));
        int rc = rt_call(pid, m, JOIN_TIMEOUT_MS, &st->call_ref);
        if (rc == RT_ENOPROC)
            return retry_later(ch, st); /* it just died: restarting */
        if (rc != RT_OK || web_channel_watch(ch, st->call_ref) != WEB_OK)
            return refuse(ch, room_strerror(ROOM_ENOMEM));
        st->room = pid;
        st->phase = PH_JOIN;
        return WEB_CH_OK;
    }
    rt_pid_t dir = rt_whereis(ROOM_DIR_NAME);
    if (!dir)
        return retry_later(ch, st);
    rt_msg_t *m = room_req_ensure(st->id, room_config()->auto_create ? ROOM_ENSURE_CREATE : 0,
                                  -1, -1);
    if (!m)
        return refuse(ch, room_strerror(ROOM_ENOMEM));
    if (rt_call(dir, m, CALL_TIMEOUT_MS, &st->call_ref) != RT_OK)
        return retry_later(ch, st);
    if (web_channel_watch(ch, st->call_ref) != WEB_OK)
        return refuse(ch, room_strerror(ROOM_ENOMEM));
    st->phase = PH_ENSURE;
    return WEB_CH_OK;
}

static web_ch_result_t room_join(web_channel_t *ch, const char *topic, json_t *payload,
                                 void **state)
{
    const char *id = topic + strlen(PREFIX);
    size_t n = strlen(id);
    if (!room_id_valid(id, n))
        return refuse(ch, room_strerror(ROOM_ENOTFOUND));
    /* The token's room claim: this room or every room. */
    const char *claim = json_string_value(json_object_get(web_channel_claims(ch), "room"));
    if (!claim || (strcmp(claim, "*") != 0 && strcmp(claim, id) != 0))
        return refuse(ch, "unauthorized");
    const char *user = web_channel_user(ch);
    if (!user || !room_id_valid(user, strlen(user)))
        return refuse(ch, "unauthorized");
    room_role_t role = ROOM_PARTICIPANT;
    json_t *r = json_is_object(payload) ? json_object_get(payload, "role") : NULL;
    if (r && !json_is_null(r)) {
        const char *s = json_string_value(r);
        if (s && strcmp(s, "viewer") == 0)
            role = ROOM_VIEWER;
        else if (!s || strcmp(s, "participant") != 0)
            return refuse(ch, "invalid_role");
    }
    rch_t *st = calloc(1, sizeof *st);
    if (!st)
        return WEB_CH_CRASH;
    memcpy(st->id, id, n + 1);
    st->role = role;
    *state = st;
    return attempt(ch, st);
}

static web_ch_result_t ensured(web_channel_t *ch, rch_t *st, rt_msg_t *m)
{
    int err = room_reply_err(m);
    switch (err) {
    case ROOM_OK:
    case ROOM_EEXIST:
        /* It runs: join it (a restarting one is found on a retry). */
        return room_whereis(st->id) ? attempt(ch, st) : retry_later(ch, st);
    case ROOM_ENOTFOUND:
    case ROOM_EENDED:
    case ROOM_EINVAL:
        return refuse(ch, room_strerror(err));
    default:
        return retry_later(ch, st);
    }
}

static web_ch_result_t joined(web_channel_t *ch, rch_t *st, rt_msg_t *m)
{
    int err = room_reply_err(m);
    const room_view_t *v = room_reply_view(m);
    if (err == ROOM_EUNAVAIL) /* the server died before answering */
        return retry_later(ch, st);
    if (err != ROOM_OK)
        return refuse(ch, room_strerror(err));
    if (!v)
        return refuse(ch, room_strerror(ROOM_ENOMEM));
    /* A room that dies from here on is a crash of this channel; one that
     * is already dead gets its DOWN (noproc) at once. */
    st->mref = rt_monitor(st->room);
    if (web_channel_watch(ch, st->mref) != WEB_OK)
        return WEB_CH_CRASH;
    st->phase = PH_JOINED;
    /* The state is the room's own JSON text: written into the reply as
     * it is, neither parsed nor dumped again here. */
    if (web_channel_join_ok_raw(ch, v->state->data, v->state->len) == WEB_E_ARG)
        return WEB_CH_CRASH;
    /* After the join reply, as Phoenix's after_join does. */
    if (v->presence)
        web_channel_push_raw(ch, "presence_state", v->presence->data, v->presence->len);
    return WEB_CH_OK;
}

/* ---- pushes ------------------------------------------------------------------------ */

static web_ch_result_t reply_reason(web_channel_t *ch, const char *reason)
{
    json_t *r = json_pack("{ss}", "reason", reason);
    web_channel_reply(ch, "error", r);
    json_decref(r);
    return WEB_CH_OK;
}

/* Sends req to the room as a call whose answer replies to the push. */
static web_ch_result_t call_later(web_channel_t *ch, rch_t *st, rt_msg_t *req, int kind)
{
    uint64_t ref = 0;
    if (!req)
        return reply_reason(ch, room_strerror(ROOM_ENOMEM));
    if (st->npend == st->cappend) {
        /* Grow the ring, unrolling it to start at 0. */
        uint32_t cap = st->cappend ? st->cappend * 2 : 4;
        pend_t *p = malloc(cap * sizeof *p);
        if (!p) {
            rt_msg_free(req);
            return reply_reason(ch, room_strerror(ROOM_ENOMEM));
        }
        for (uint32_t i = 0; i < st->npend; i++)
            p[i] = st->pend[(st->phead + i) & (st->cappend - 1)];
        free(st->pend);
        st->pend = p;
        st->cappend = cap;
        st->phead = 0;
    }
    if (rt_call(st->room, req, CALL_TIMEOUT_MS, &ref) != RT_OK)
        return reply_reason(ch, room_strerror(ROOM_EUNAVAIL));
    int rc = web_channel_defer(ch, ref);
    if (rc == WEB_E_LIMIT)
        return reply_reason(ch, "too_many_pending"); /* its answer is dropped */
    if (rc != WEB_OK || web_channel_watch(ch, ref) != WEB_OK)
        return reply_reason(ch, room_strerror(ROOM_ENOMEM));
    st->pend[(st->phead + st->npend++) & (st->cappend - 1)] = (pend_t){.ref = ref, .kind = kind};
    return WEB_CH_OK;
}

static web_ch_result_t push_status(web_channel_t *ch, rch_t *st, json_t *payload)
{
    if (st->role == ROOM_VIEWER)
        return reply_reason(ch, room_strerror(ROOM_ENOTMEMBER));
    if (!json_is_object(payload))
        return reply_reason(ch, room_strerror(ROOM_EINVAL));
    rt_buf_t *js = room_json_dump(payload, 64);
    if (!js)
        return reply_reason(ch, room_strerror(ROOM_ENOMEM));
    rt_msg_t *req = room_req_status(web_channel_user(ch), rt_self(), js->data, js->len);
    rt_buf_release(js);
    return call_later(ch, st, req, PEND_STATUS);
}

static web_ch_result_t push_data(web_channel_t *ch, rch_t *st, json_t *payload)
{
    /* {"from": user, "data": payload}, written straight into one buffer. */
    const char *user = web_channel_user(ch);
    json_t *from = json_string(user);
    room_json_out_t o;
    if (!from || !room_json_out_init(&o, 64)) {
        json_decref(from);
        return reply_reason(ch, room_strerror(ROOM_ENOMEM));
    }
    room_json_out_raw(&o, "{\"from\":", 8);
    room_json_out_value(&o, from);
    room_json_out_raw(&o, ",\"data\":", 8);
    room_json_out_value(&o, payload ? payload : json_null());
    room_json_out_raw(&o, "}", 1);
    json_decref(from);
    rt_buf_t *js = room_json_out_done(&o);
    if (!js)
        return reply_reason(ch, room_strerror(ROOM_ENOMEM));
    /* To the others: this connection is excluded (broadcast_from). */
    int n = web_room_publisher.publish(NULL, web_channel_topic(ch), "data", js->data, js->len,
                                       rt_self());
    rt_buf_release(js);
    if (n < 0)
        return reply_reason(ch, web_strerror(n));
    web_channel_reply(ch, "ok", NULL);
    return WEB_CH_OK;
}

static web_ch_result_t push_signal(web_channel_t *ch, rch_t *st, json_t *payload)
{
    if (st->role == ROOM_VIEWER)
        return reply_reason(ch, room_strerror(ROOM_ENOTMEMBER));
    const char *to = json_string_value(json_object_get(payload, "to"));
    if (!json_is_object(payload) || !to || !room_id_valid(to, strlen(to)) ||
        (!json_object_get(payload, "sdp") && !json_object_get(payload, "candidate")))
        return reply_reason(ch, room_strerror(ROOM_EINVAL));
    /* What the peer gets: the payload with "from" in place of "to". */
    json_t *out = json_copy(payload);
    char *peer = strdup(to);
    if (!out || !peer || json_object_del(out, "to") != 0 ||
        json_object_set_new(out, "from", json_string(web_channel_user(ch))) != 0) {
        json_decref(out);
        free(peer);
        return reply_reason(ch, room_strerror(ROOM_ENOMEM));
    }
    rt_buf_t *js = room_json_dump(out, 128);
    json_decref(out);
    rt_msg_t *req = js ? room_req_signal(web_channel_user(ch), rt_self(), peer, js->data, js->len)
                       : NULL;
    if (js)
        rt_buf_release(js);
    free(peer);
    return call_later(ch, st, req, PEND_SIGNAL);
}

static web_ch_result_t room_in(web_channel_t *ch, void *state, const char *event,
                               json_t *payload)
{
    rch_t *st = state;
    if (strcmp(event, "data") == 0)
        return push_data(ch, st, payload);
    if (strcmp(event, "status") == 0)
        return push_status(ch, st, payload);
    if (strcmp(event, "signal") == 0)
        return push_signal(ch, st, payload);
    return reply_reason(ch, "unknown event");
}

/* The answer to a status or signal push. */
static bool answered(web_channel_t *ch, rch_t *st, rt_msg_t *m)
{
    uint32_t mask = st->cappend - 1, i = 0;
    while (i < st->npend && st->pend[(st->phead + i) & mask].ref != m->ref)
        i++;
    if (i == st->npend || !m->ref)
        return false;
    pend_t *p = &st->pend[(st->phead + i) & mask];
    int kind = p->kind;
    p->ref = 0;
    /* Drop answered entries from the front (this one, if it was the
     * oldest, and holes left behind it). */
    while (st->npend && st->pend[st->phead].ref == 0) {
        st->phead = (st->phead + 1) & mask;
        st->npend--;
    }
    int err = room_reply_err(m);
    /* Small fixed shapes: written directly, not built and dumped. */
    char r[96];
    int n;
    if (err != ROOM_OK)
        n = snprintf(r, sizeof r, "{\"reason\":\"%s\"}", room_strerror(err));
    else if (kind == PEND_STATUS)
        n = snprintf(r, sizeof r, "{\"version\":%llu}", (unsigned long long)m->a);
    else
        n = snprintf(r, sizeof r, "{}");
    web_channel_reply_later_raw(ch, m->ref, err == ROOM_OK ? "ok" : "error", r, (size_t)n);
    return true;
}

/* ---- messages ------------------------------------------------------------------- */

static web_ch_result_t room_info(web_channel_t *ch, void *state, rt_msg_t *m)
{
    rch_t *st = state;
    if (!st)
        return WEB_CH_OK;
    switch (m->kind) {
    case RT_MSG_REPLY:
        if (m->ref == st->call_ref && st->call_ref) {
            st->call_ref = 0;
            if (st->phase == PH_ENSURE)
                return ensured(ch, st, m);
            if (st->phase == PH_JOIN)
                return joined(ch, st, m);
            return WEB_CH_OK;
        }
        answered(ch, st, m);
        return WEB_CH_OK;
    case RT_MSG_DOWN:
        if (m->ref != st->mref || !st->mref)
            return WEB_CH_OK;
        st->mref = 0;
        st->room_down = true;
        {
            rt_reason_t *why = rt_msg_reason(m);
            /* normal: the room ended (room_ended was pushed before). */
            return why && rt_reason_is(why, RT_R_NORMAL) ? WEB_CH_STOP : WEB_CH_CRASH;
        }
    case RT_MSG_TIMER:
        if (m->ref == st->retry && st->retry) {
            st->retry = 0;
            return attempt(ch, st);
        }
        return WEB_CH_OK;
    default:
        break;
    }
    if (m->tag == WEB_MSG_CHANNEL && m->b == ROOM_DELIVER_SIGNAL && m->data &&
        st->phase == PH_JOINED)
        web_channel_push_raw(ch, "signal", m->data, strlen(m->data));
    return WEB_CH_OK;
}

static void room_terminate(web_channel_t *ch, void *state, web_ch_exit_t why)
{
    rch_t *st = state;
    if (!st)
        return;
    if (st->mref)
        rt_demonitor(st->mref);
    if (st->retry)
        rt_cancel_timer(st->retry);
    /* Tell the room this member is gone, if it may hold it: a join was
     * sent (even if not answered yet: our cast comes after it) and the
     * room has not died under us. A replaced channel says nothing: the
     * new join from this connection takes its place. */
    if (st->room && !st->room_down) {
        uint32_t tag = 0;
        if (why == WEB_CH_LEFT)
            tag = ROOM_MSG_LEAVE;
        else if (why == WEB_CH_SOCKET_CLOSED || why == WEB_CH_CRASHED)
            tag = ROOM_MSG_DISCONNECT;
        if (tag)
            rt_cast(st->room, tag, rt_self(), web_channel_id(ch));
    }
    free(st->pend);
    free(st);
}

const web_channel_handler_t web_room_channel = WEB_CHANNEL_HANDLER(
    .prefix = PREFIX, .join = room_join, .handle_in = room_in, .handle_info = room_info,
    .terminate = room_terminate);

/* ---- the publisher -------------------------------------------------------------- */

static int publish(void *ctx, const char *topic, const char *event, const char *payload,
                   size_t payload_len, rt_pid_t exclude)
{
    web_broadcast_t *b = web_broadcast_new(topic, event, payload, payload_len);
    if (!b)
        return WEB_E_NOMEM;
    b->exclude = exclude; /* not shared yet: a plain write */
    int n = web_broadcast_publish(b);
    web_broadcast_release(b);
    return n;
}

const room_publisher_t web_room_publisher = {.publish = publish};
