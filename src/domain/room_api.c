/*
 * domain/room_api.c — what every user of rooms shares (domain/room.h):
 * the configuration, error strings, names, request builders, answer
 * readers and counters. The processes are in room.c (RoomServer),
 * backup.c (BackupServer) and rooms.c (supervisors and directory).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/room.h"
#include "domain/room_internal.h"

/* ---- configuration ------------------------------------------------------------ */

static room_config_t config = {
    .tick_ms = 50,
    .viewers_tick_ms = 1000,
    .reconnect_grace_ms = 30000,
    .empty_timeout_ms = 300000,
    .auto_create = true,
    .room_intensity = 3,
    .room_period_ms = 5000,
    .store_timeout_ms = 5000,
};

void room_configure(const room_config_t *cfg)
{
    room_config_t c = {.auto_create = true};
    if (cfg)
        c = *cfg;
    if (c.tick_ms <= 0)
        c.tick_ms = 50;
    if (c.viewers_tick_ms <= 0)
        c.viewers_tick_ms = 1000;
    if (c.reconnect_grace_ms <= 0)
        c.reconnect_grace_ms = 30000;
    if (c.empty_timeout_ms <= 0)
        c.empty_timeout_ms = 300000;
    if (c.room_intensity == 0)
        c.room_intensity = 3;
    if (c.room_period_ms == 0)
        c.room_period_ms = 5000;
    if (c.store_timeout_ms <= 0)
        c.store_timeout_ms = 5000;
    config = c;
}

const room_config_t *room_config(void)
{
    return &config;
}

int room__publish(const char *topic, const char *event, const char *json, size_t len,
                  rt_pid_t exclude)
{
    if (!config.publisher.publish)
        return 0;
    return config.publisher.publish(config.publisher.ctx, topic, event, json, len, exclude);
}

/* ---- errors and names ------------------------------------------------------------ */

const char *room_strerror(int err)
{
    switch (err) {
    case ROOM_OK: return "ok";
    case ROOM_EFULL: return "full";
    case ROOM_EENDED: return "ended";
    case ROOM_ENOTFOUND: return "not_found";
    case ROOM_EEXIST: return "exists";
    case ROOM_EINVAL: return "invalid";
    case ROOM_ENOTMEMBER: return "not_a_participant";
    case ROOM_ENOPEER: return "unknown_peer";
    case ROOM_ESTORE: return "store_error";
    case ROOM_EUNAVAIL: return "unavailable";
    case ROOM_ETOOLARGE: return "too_large";
    case ROOM_ENOMEM: return "out_of_memory";
    case ROOM_ERESERVED: return "reserved_user";
    default: return "error";
    }
}

bool room_id_valid(const char *id, size_t len)
{
    if (!id || len == 0 || len > ROOM_ID_MAX)
        return false;
    /* UTF-8 well-formedness (no overlongs, no surrogates), no controls. */
    const unsigned char *s = (const unsigned char *)id;
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned min;
        if ((c & 0xe0) == 0xc0) {
            n = 2, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if (i + n > len)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (s[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        i += n;
    }
    return true;
}

bool room_topic(const char *id, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, ROOM_TOPIC_PREFIX "%s", id);
    return n > 0 && (size_t)n < cap;
}

rt_pid_t room_whereis(const char *id)
{
    char name[ROOM_ID_MAX + 16];
    if (!room_topic(id, name, sizeof name))
        return RT_NOPID;
    return rt_whereis(name);
}

/* ---- requests ----------------------------------------------------------------------- */

static rt_msg_t *with_data(uint32_t tag, void *data)
{
    rt_msg_t *m = data ? rt_msg_new(tag) : NULL;
    if (!m) {
        free(data);
        return NULL;
    }
    rt_msg_set_data(m, data, RT_OWN_FREE);
    return m;
}

rt_msg_t *room_req_join(const char *user, room_role_t role, room_addr_t addr)
{
    if (!user)
        return NULL;
    size_t n = strlen(user);
    room_join_req_t *r = malloc(sizeof *r + n + 1);
    if (r) {
        r->addr = addr;
        r->role = role;
        memcpy(r->user, user, n + 1);
    }
    return with_data(ROOM_REQ_JOIN, r);
}

/* user \0 text \0 (and to \0 for signals) in one block. */
static rt_msg_t *user_text(uint32_t tag, const char *user, rt_pid_t member, const char *to,
                           const char *text, size_t len)
{
    if (!user || !text)
        return NULL;
    size_t ul = strlen(user), tl = to ? strlen(to) : 0;
    room_text_req_t *r = malloc(sizeof *r + ul + 1 + tl + 1 + len + 1);
    if (!r)
        return NULL;
    r->member = member;
    r->user = r->buf;
    memcpy(r->buf, user, ul + 1);
    r->to = r->buf + ul + 1;
    memcpy(r->buf + ul + 1, to ? to : "", tl + 1);
    r->text = r->to + tl + 1;
    memcpy(r->text, text, len);
    r->text[len] = '\0';
    r->len = len;
    return with_data(tag, r);
}

rt_msg_t *room_req_status(const char *user, rt_pid_t member, const char *patch,
                          size_t patch_len)
{
    return user_text(ROOM_REQ_STATUS, user, member, NULL, patch, patch_len);
}

rt_msg_t *room_req_signal(const char *from, rt_pid_t member, const char *to,
                          const char *payload, size_t payload_len)
{
    if (!to)
        return NULL;
    return user_text(ROOM_REQ_SIGNAL, from, member, to, payload, payload_len);
}

rt_msg_t *room_req_get(void)
{
    return rt_msg_new(ROOM_REQ_GET);
}

rt_msg_t *room_req_end(const char *reason)
{
    return with_data(ROOM_REQ_END, strdup(reason ? reason : "deleted"));
}

rt_msg_t *room_req_ensure(const char *id, uint32_t flags, int64_t max_participants,
                          int64_t empty_timeout_ms)
{
    if (!id)
        return NULL;
    size_t n = strlen(id);
    room_ensure_t *e = malloc(sizeof *e + n + 1);
    if (e) {
        e->flags = flags;
        e->max_participants = max_participants;
        e->empty_timeout_ms = empty_timeout_ms;
        memcpy(e->id, id, n + 1);
    }
    return with_data(ROOM_DIR_ENSURE, e);
}

rt_msg_t *room_req_list(void)
{
    return rt_msg_new(ROOM_DIR_LIST);
}

/* ---- answers -------------------------------------------------------------------------- */

int room_reply_err(const rt_msg_t *reply)
{
    if (!reply)
        return ROOM_EUNAVAIL;
    if (reply->flags & RT_MF_ERROR) {
        rt_reason_t *why = rt_msg_reason(reply);
        /* A room that exited normally has ended; anything else (a crash,
         * shutdown, a timeout) is a room that is not there right now. */
        return why && rt_reason_is(why, RT_R_NORMAL) ? ROOM_EENDED : ROOM_EUNAVAIL;
    }
    return (int)(int32_t)reply->tag;
}

const room_view_t *room_reply_view(const rt_msg_t *reply)
{
    if (room_reply_err(reply) != ROOM_OK || reply->tag != ROOM_OK || !reply->data ||
        reply->own != RT_OWN_RC || reply->b != ROOM__VIEW)
        return NULL;
    return (const room_view_t *)reply->data;
}

rt_buf_t *room_reply_buf(const rt_msg_t *reply)
{
    if (room_reply_err(reply) != ROOM_OK || !reply->data || reply->own != RT_OWN_RC ||
        reply->b != ROOM__BUF)
        return NULL;
    return (rt_buf_t *)reply->data;
}

static void view_free(rt_rc_t *rc)
{
    room_view_t *v = RT_CONTAINER_OF(rc, room_view_t, rc);
    if (v->state)
        rt_buf_release(v->state);
    if (v->presence)
        rt_buf_release(v->presence);
    free(v);
}

room_view_t *room__view_new(rt_buf_t *state, rt_buf_t *presence)
{
    room_view_t *v = malloc(sizeof *v);
    if (!v)
        return NULL;
    rt_rc_init(&v->rc, view_free);
    v->state = state;
    v->presence = presence;
    rt_buf_retain(state);
    rt_buf_retain(presence);
    return v;
}

int room__reply_buf(rt_from_t from, int err, uint64_t a, rt_buf_t *buf)
{
    rt_msg_t *m = rt_msg_new((uint32_t)(int32_t)err);
    if (!m)
        return RT_ENOMEM;
    m->a = a;
    if (buf) {
        rt_buf_retain(buf);
        rt_msg_set_data(m, &buf->rc, RT_OWN_RC);
        m->b = ROOM__BUF;
    }
    return rt_reply(from, m);
}

/* ---- statistics ------------------------------------------------------------------------- */

_Atomic uint64_t room__stat[ROOM__STAT_N];

void room_get_stats(room_stats_t *out)
{
#define LOAD(i) atomic_load_explicit(&room__stat[i], memory_order_relaxed)
    out->live = LOAD(ROOM__STAT_LIVE);
    out->created = LOAD(ROOM__STAT_CREATED);
    out->ended = LOAD(ROOM__STAT_ENDED);
    out->gave_up = LOAD(ROOM__STAT_GAVE_UP);
    out->restarts = LOAD(ROOM__STAT_RESTARTS);
    out->store_refusals = LOAD(ROOM__STAT_REFUSALS);
    out->members = LOAD(ROOM__STAT_MEMBERS);
#undef LOAD
}
