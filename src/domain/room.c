/*
 * domain/room.c — the RoomServer (design §1, §4): one process per live
 * room, registered as "room:<id>", owning the room's state. Every change
 * goes through its mailbox, one at a time.
 *
 * Durability and acknowledgements (the pipeline)
 *   Changes (joins, leaves, disconnects, status pushes, grace expiries,
 *   the end) wait in a FIFO queue. When no write is in flight the server
 *   takes everything queued (at most GROUP_MAX) as one group, applies
 *   each change in order to the current state (validating it against the
 *   state the earlier ones left: "full", "not_a_participant" are answered
 *   at once), bumps the version once per change, hands the new state to
 *   the BackupServer (a cast), and writes it to the store with one
 *   store_call. Nothing of the group is acknowledged, announced,
 *   recorded or made visible (GET, joins) before the store's reply:
 *     - ok: the group becomes the acknowledged state; members are added,
 *       presence and history are updated, every request is answered,
 *       room_status / presence_diff are scheduled;
 *     - error: the state goes back to the acknowledged one (parsed from
 *       its stored text, so nothing is half-applied); client requests of
 *       the group are refused with "store_error"; the server's own
 *       changes (disconnects, expiries, the end, the first write) are put
 *       back at the head of the queue and retried after a back-off;
 *     - timeout or store process gone: the write may still commit, so
 *       the state is unknown: the server fails and restarts from its
 *       backup (store.h's advice).
 *   So there is one write in flight per room and the changes arriving
 *   meanwhile are committed together next: a busy room costs one commit
 *   per group, not per change, and a change waits at most for the commit
 *   in flight plus its own. The server itself never blocks: the store's
 *   answer is a message like any other.
 *
 * Members and participants
 *   A member is a connection that joined (participant or viewer); it is
 *   monitored, and known by its connection pid (one channel per topic per
 *   connection). A participant (a user) may have several members (two
 *   devices); it is "connected" while it has one. Viewers are counted,
 *   not listed. Member changes are runtime facts and are not reverted
 *   by a store failure; the state changes they imply (connected,
 *   removed) are re-derived from them when retried, so a retry can never
 *   disagree with the members the room sees.
 *
 * Announcements (coalesced per tick)
 *   room_status carries the acknowledged state; presence_diff the joins
 *   and leaves since the last one (a join and leave of the same ref in
 *   one tick cancel). The first change after a quiet tick is announced at
 *   once; later ones wait for the next tick: at most one of each per
 *   tick, each costing one encode and one shared frame per subscriber,
 *   so a burst of joins is O(members) per tick. A change of the viewer
 *   count alone waits for the viewers tick (1 s) instead: every viewer
 *   that comes or goes changes it, and in a room of 10,000 viewers a
 *   room_status per 50 ms tick to all of them was the cost of joining.
 *   Replies are never delayed by this. presence_state for a joiner
 *   travels in its join answer (the channel pushes it after the join
 *   reply).
 *
 * Restart
 *   init asks the BackupServer for the state (rt_call + rt_await): the
 *   stored state text and the runtime (members to monitor again, presence
 *   refs, grace deadlines). Participants that were connected but whose
 *   connection is unknown (a whole-server restart) are "presumed":
 *   shown as before, with a grace timer; a rejoin claims them, otherwise
 *   they leave when it expires. The first thing a (re)started server does
 *   is write its state (so the store holds what the backup held), and
 *   nothing is answered before that write is acknowledged.
 *
 * Invariants
 *   1. r->pub and r->stored are the acknowledged state; r->st equals it
 *      whenever r->inflight is NULL.
 *   2. r->nconn counts participants connected in r->st (presumed
 *      included); r->nconn_acked in the acknowledged state.
 *   3. Every participant in r->st has a urt_t; a urt_t without a
 *      participant, member, pending join, timer or presence is freed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/history.h"
#include "domain/map.h"
#include "domain/rjson.h"
#include "domain/room.h"
#include "domain/room_internal.h"
#include "domain/state.h"
#include "store/store.h"

#define GROUP_MAX 4096
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 2000

typedef struct urt urt_t;

typedef struct member {
    room_addr_t addr;
    uint64_t mref;
    room_role_t role;
    urt_t *u;               /* participants */
    struct member *unext;   /* in u->members */
} member_t;

/* A participant's runtime side. */
struct urt {
    char *user;
    member_t *members;
    unsigned nmembers;
    unsigned pending;       /* participant joins applied, not yet acknowledged */
    uint64_t grace;         /* grace timer, or 0 */
    int64_t grace_at;       /* its deadline, wall ms */
    bool present;           /* in presence under ref */
    bool presumed;          /* connected in a restored state, no connection seen */
    int64_t joined_at;      /* for presence metas (the entry may be gone) */
    char ref[24];
};

enum rq_kind {
    RQ_INIT = 1,  /* the first write of a (re)started server */
    RQ_JOIN,
    RQ_STATUS,
    RQ_GET,       /* only queued before the first acknowledgement */
    RQ_LEAVE,     /* a member left (phx_leave) */
    RQ_DISCONNECT,/* a member's connection went away */
    RQ_SYNC,      /* retry of what a LEAVE/DISCONNECT implied for user */
    RQ_EXPIRE,    /* a grace timer fired */
    RQ_END,
    RQ_MEDIA,     /* a participant's media state (room_media.c) */
};

enum { SYNC_LEAVE = 1, SYNC_DISCONNECT };

enum {
    FX_NEW = 0x1,           /* a new participant */
    FX_RECONNECT = 0x2,
    FX_LEFT = 0x4,
    FX_DISCONNECTED = 0x8,
    FX_STATUS = 0x10,
    FX_END = 0x20,
    FX_PENDING = 0x40,      /* counted in u->pending */
};

typedef struct rq {
    struct rq *next;
    int kind;
    bool has_from;          /* a call still to be answered */
    rt_from_t from;
    bool internal;          /* retried, not refused, when the store fails */
    bool write;             /* the state changed: write it */
    bool done;              /* already answered (an error at apply time) */
    unsigned fx;
    void *data;             /* join: room_join_req_t; status: room_text_req_t;
                               end: reason text (all free()) */
    char *user;             /* sync, expire (free()) */
    rt_pid_t pid;           /* leave, disconnect */
    uint64_t word;
    uint64_t timer;         /* expire */
    int mode;               /* sync */
    const char *why;        /* left: "left" / "grace_expired" (static) */
    char *note;             /* status: the new status text (free()) */
    uint64_t version;       /* the state's version after this change (0: none) */
} rq_t;

typedef struct room {
    char *id, *topic;
    rt_pid_t self, backup;
    uint64_t load_ref;
    bool loaded;
    int64_t grace_ms;

    json_t *st, *seen;      /* invariant 1 */
    size_t nconn, nconn_acked;
    rt_buf_t *pub;          /* acknowledged, public form; NULL before the first ack */
    rt_buf_t *stored;       /* acknowledged (or restored), stored form */
    bool pub_stale;         /* viewers changed since pub was made */
    room_view_t *view;      /* cached join answer */
    rt_buf_t *presence;     /* cached presence_state, NULL when stale */

    rq_t *qhead, *qtail;
    rq_t *inflight;         /* the group being written */
    uint64_t write_ref;     /* the write in flight: its call ref, or (direct
                               submission) the ref its timeout carries */
    store_req_t *write_req; /* direct submission: the request in flight, for
                               recognising its answer only (not owned) */
    uint64_t write_timer;   /* direct submission: its timeout */
    rt_buf_t *write_pub, *write_stored;
    bool paused;            /* backing off after a store failure */
    uint64_t retry_timer;
    int retry_ms;

    room_map_t members;     /* connection pid -> member_t */
    room_map_t mons;        /* monitor ref -> member_t */
    room_map_t users;       /* user -> urt_t */
    uint64_t viewers;
    bool runtime_dirty;
    bool created_recorded;
    uint64_t salt;

    bool status_dirty;
    bool version_dirty;     /* ... with a new version, not only a new count */
    json_t *pjoins, *pleaves;
    uint64_t last_flush_ms;
    uint64_t tick_timer;
    uint64_t tick_due;      /* when tick_timer fires (rt_now_ms) */

    uint64_t empty_timer;
    bool ending;            /* the end is applied (maybe not yet stored) */
    bool stopping;          /* rt_stop was called: handle nothing more */
    uint64_t cur_ref;       /* the call handle_call is looking at ... */
    bool cur_replied;       /* ... was answered during it (RT_REPLIED) */
    bool counted;           /* in ROOM__STAT_LIVE */
    room_media_t *media;    /* --media janus only */
} room_t;

/* ---- small helpers ------------------------------------------------------------- */

static void rq_free(rq_t *q)
{
    free(q->data);
    free(q->user);
    free(q->note);
    free(q);
}

/* Every answer to a queued call goes through here: handle_call must say
 * RT_REPLIED for a call answered while it runs (else the runtime would
 * keep it pending and answer it again at exit). */
static void reply_msg(room_t *r, rq_t *q, rt_msg_t *m)
{
    if (!q->has_from) {
        rt_msg_free(m);
        return;
    }
    q->has_from = false;
    if (q->from.ref == r->cur_ref)
        r->cur_replied = true;
    if (m)
        rt_reply(q->from, m);
    else /* out of memory: the caller gets our exit reason instead */
        rt_fail(rt_reason_new("room: enomem"));
}

static void reply_val(room_t *r, rq_t *q, int err, uint64_t a)
{
    rt_msg_t *m = rt_msg_new((uint32_t)(int32_t)err);
    if (m)
        m->a = a;
    reply_msg(r, q, m);
}

static void reply_buf(room_t *r, rq_t *q, rt_buf_t *buf)
{
    rt_msg_t *m = rt_msg_new(ROOM_OK);
    if (m && buf) {
        rt_buf_retain(buf);
        rt_msg_set_data(m, &buf->rc, RT_OWN_RC);
        m->b = ROOM__BUF;
    }
    reply_msg(r, q, m);
}

static void reply_err(room_t *r, rq_t *q, int err)
{
    reply_val(r, q, err, 0);
    q->done = true;
}

static void enqueue(room_t *r, rq_t *q)
{
    q->next = NULL;
    if (r->qtail)
        r->qtail->next = q;
    else
        r->qhead = q;
    r->qtail = q;
}

/* The request or a failure: out of memory while queueing is not worth
 * surviving half-way (let it fail: the backup has the state). */
static rq_t *rq_new(int kind)
{
    rq_t *q = calloc(1, sizeof *q);
    RT_ASSERT(q != NULL);
    q->kind = kind;
    return q;
}

static void record(room_t *r, const char *type, const char *user, json_t *data)
{
    rt_buf_t *js = data ? room_json_dump(data, 64) : NULL;
    json_decref(data);
    history_record(r->id, room_wall_ms(), type, user, js ? js->data : NULL);
    if (js)
        rt_buf_release(js);
}

/* The same with data already serialised (text: JSON or NULL). */
static void record_text(room_t *r, const char *type, const char *user, const char *text)
{
    history_record(r->id, room_wall_ms(), type, user, text);
}

static void record_reason(room_t *r, const char *type, const char *user, const char *reason)
{
    record(r, type, user, json_pack("{ss}", "reason", reason ? reason : ""));
}

/* ---- participants' runtime ----------------------------------------------------------- */

static urt_t *urt_get(room_t *r, const char *user, bool create)
{
    urt_t *u = room_map_get_s(&r->users, user);
    if (u || !create)
        return u;
    u = calloc(1, sizeof *u);
    RT_ASSERT(u != NULL);
    u->user = strdup(user);
    RT_ASSERT(u->user != NULL);
    RT_ASSERT(room_map_put_s(&r->users, u->user, u) == 0);
    return u;
}

static void urt_free(urt_t *u)
{
    free(u->user);
    free(u);
}

static void cancel_grace(urt_t *u)
{
    if (u->grace)
        rt_cancel_timer(u->grace);
    u->grace = 0;
    u->grace_at = 0;
}

static void start_grace(room_t *r, urt_t *u, int64_t ms)
{
    cancel_grace(u);
    rt_msg_t *m = rt_msg_new(ROOM__GRACE);
    char *name = strdup(u->user);
    RT_ASSERT(m && name);
    rt_msg_set_data(m, name, RT_OWN_FREE);
    u->grace = rt_send_after(ms > 0 ? (int)ms : 0, r->self, m);
    u->grace_at = room_wall_ms() + ms;
}

/* Invariant 3. Only when r->st is the acknowledged state. */
static void urt_gc(room_t *r, urt_t *u)
{
    if (u->nmembers || u->pending || u->grace || u->present ||
        room_state_participant(r->st, u->user))
        return;
    room_map_del_s(&r->users, u->user);
    urt_free(u);
}

/* ---- presence --------------------------------------------------------------------- */

static json_t *meta(room_t *r, urt_t *u)
{
    return json_pack("{sssI}", "phx_ref", u->ref, "joined_at", (json_int_t)u->joined_at);
}

static void add_meta(json_t *group, const char *user, json_t *m)
{
    json_t *k = json_object_get(group, user);
    if (!k) {
        k = json_pack("{s[]}", "metas");
        RT_ASSERT(k && json_object_set_new(group, user, k) == 0);
    }
    RT_ASSERT(m && json_array_append_new(json_object_get(k, "metas"), m) == 0);
}

static void new_ref(room_t *r, urt_t *u)
{
    snprintf(u->ref, sizeof u->ref, "R%016" PRIx64, (uint64_t)(rt_make_ref() * 0x9e3779b97f4a7c15ULL) ^ r->salt);
}

static void presence_changed(room_t *r)
{
    if (r->presence)
        rt_buf_release(r->presence);
    r->presence = NULL;
    if (r->view)
        rt_rc_release(&r->view->rc);
    r->view = NULL;
}

static void presence_join(room_t *r, urt_t *u)
{
    if (u->present)
        return;
    new_ref(r, u);
    u->present = true;
    u->joined_at = room_state_int(room_state_participant(r->st, u->user), "joined_at");
    add_meta(r->pjoins, u->user, meta(r, u));
    presence_changed(r);
}

static void presence_leave(room_t *r, urt_t *u)
{
    if (!u->present)
        return;
    u->present = false;
    presence_changed(r);
    /* Joined within this tick: never announced, so nothing to take back. */
    json_t *k = json_object_get(r->pjoins, u->user);
    json_t *metas = json_object_get(k, "metas");
    size_t i;
    json_t *m;
    json_array_foreach(metas, i, m) {
        if (strcmp(json_string_value(json_object_get(m, "phx_ref")), u->ref) == 0) {
            json_array_remove(metas, i);
            if (json_array_size(metas) == 0)
                json_object_del(r->pjoins, u->user);
            return;
        }
    }
    add_meta(r->pleaves, u->user, meta(r, u));
}

/* j (taken) as text. */
static rt_buf_t *dump_to_buf(json_t *j)
{
    rt_buf_t *b = room_json_dump(j, 256);
    json_decref(j);
    RT_ASSERT(b != NULL);
    return b;
}

static rt_buf_t *presence_state(room_t *r)
{
    if (r->presence)
        return r->presence;
    json_t *o = json_object();
    RT_ASSERT(o != NULL);
    room_map_it_t it = {0};
    for (room_map_ent_t *e; (e = room_map_next(&r->users, &it));) {
        urt_t *u = e->val;
        if (u->present)
            add_meta(o, u->user, meta(r, u));
    }
    r->presence = dump_to_buf(o);
    return r->presence;
}

/* ---- announcements ------------------------------------------------------------------ */

static void publish(room_t *r, const char *event, const char *json, size_t len)
{
    room__publish(r->topic, event, json, len, RT_NOPID);
}

static void set_pub(room_t *r, rt_buf_t *pub, rt_buf_t *stored)
{
    if (r->pub)
        rt_buf_release(r->pub);
    if (r->stored)
        rt_buf_release(r->stored);
    r->pub = pub;
    r->stored = stored;
    if (r->view)
        rt_rc_release(&r->view->rc);
    r->view = NULL;
}

/* Remakes pub for a changed viewer count (invariant 1: only when no write
 * is in flight, r->st being the acknowledged state). */
static void refresh_pub(room_t *r)
{
    if (!r->pub_stale || r->inflight || !r->pub)
        return;
    room_state_set_viewers(r->st, r->viewers);
    rt_buf_t *pub, *stored;
    RT_ASSERT(room_state_dump(r->st, r->seen, &pub, &stored) == ROOM_OK);
    set_pub(r, pub, stored);
    r->pub_stale = false;
    r->status_dirty = true;
}

static void flush(room_t *r)
{
    r->last_flush_ms = rt_now_ms();
    refresh_pub(r);
    if (r->status_dirty && r->pub) {
        r->status_dirty = r->version_dirty = false;
        publish(r, "room_status", r->pub->data, r->pub->len);
    }
    if (json_object_size(r->pjoins) || json_object_size(r->pleaves)) {
        json_t *d = json_pack("{soso}", "joins", r->pjoins, "leaves", r->pleaves);
        r->pjoins = json_object();
        r->pleaves = json_object();
        RT_ASSERT(d && r->pjoins && r->pleaves);
        rt_buf_t *b = dump_to_buf(d);
        publish(r, "presence_diff", b->data, b->len);
        rt_buf_release(b);
    }
}

/* Something visible changed: announce now if the last announcement is a
 * tick old, else at the next tick; the viewers tick if only the viewer
 * count changed (an armed viewers tick gives way to a sooner one). */
static void announce(room_t *r)
{
    bool only_viewers = !r->version_dirty && !json_object_size(r->pjoins) &&
                        !json_object_size(r->pleaves);
    int tick = only_viewers ? room_config()->viewers_tick_ms : room_config()->tick_ms;
    uint64_t now = rt_now_ms(), due = r->last_flush_ms + (uint64_t)tick;
    if (r->tick_timer) {
        if (due >= r->tick_due)
            return;
        rt_cancel_timer(r->tick_timer);
        r->tick_timer = 0;
    }
    if (now >= due) {
        flush(r);
        return;
    }
    rt_msg_t *m = rt_msg_new(ROOM__TICK);
    RT_ASSERT(m != NULL);
    r->tick_timer = rt_send_after((int)(due - now), r->self, m);
    r->tick_due = due;
}

/* ---- members ---------------------------------------------------------------------- */

static void member_remove(room_t *r, member_t *m)
{
    rt_demonitor(m->mref);
    room_map_del_u(&r->mons, m->mref);
    room_map_del_u(&r->members, m->addr.pid);
    if (m->u) {
        for (member_t **pp = &m->u->members; *pp; pp = &(*pp)->unext)
            if (*pp == m) {
                *pp = m->unext;
                break;
            }
        m->u->nmembers--;
        r->runtime_dirty = true;
    } else {
        r->viewers--;
        r->pub_stale = true;
    }
    room__count(ROOM__STAT_MEMBERS, -1);
    free(m);
}

static void queue_sync(room_t *r, const char *user, int mode);

static member_t *member_add(room_t *r, room_addr_t addr, room_role_t role, const char *user)
{
    member_t *old = room_map_get_u(&r->members, addr.pid);
    urt_t *was = old ? old->u : NULL;
    if (old)
        member_remove(r, old); /* the same connection joined again */
    member_t *m = calloc(1, sizeof *m);
    RT_ASSERT(m != NULL);
    m->addr = addr;
    m->role = role;
    m->mref = rt_monitor(addr.pid);
    RT_ASSERT(room_map_put_u(&r->members, addr.pid, m) == 0);
    RT_ASSERT(room_map_put_u(&r->mons, m->mref, m) == 0);
    if (role == ROOM_PARTICIPANT) {
        m->u = urt_get(r, user, true);
        m->unext = m->u->members;
        m->u->members = m;
        m->u->nmembers++;
        r->runtime_dirty = true;
    } else {
        r->viewers++;
        r->pub_stale = true;
    }
    room__count(ROOM__STAT_MEMBERS, 1);
    /* A participant connection that came back as something else leaves
     * its participant without it. */
    if (was && was != m->u && was->nmembers == 0)
        queue_sync(r, was->user, SYNC_DISCONNECT);
    return m;
}

/* ---- the empty timeout ---------------------------------------------------------------- */

static void check_empty(room_t *r)
{
    bool empty = r->nconn_acked == 0 && r->viewers == 0 && !r->ending;
    if (empty && !r->empty_timer) {
        int64_t ms = room_state_int(r->st, "empty_timeout") * 1000;
        rt_msg_t *m = rt_msg_new(ROOM__EMPTY);
        RT_ASSERT(m != NULL);
        r->empty_timer = rt_send_after(ms > 0 ? (int)(ms > INT32_MAX ? INT32_MAX : ms) : 0,
                                       r->self, m);
    } else if (!empty && r->empty_timer) {
        rt_cancel_timer(r->empty_timer);
        r->empty_timer = 0;
    }
}

/* ---- applying a change to r->st -------------------------------------------------------- */

static void settle(room_t *r)
{
    room_state_settle(r->st, r->nconn, room_wall_ms());
}

static void change(room_t *r, rq_t *q, unsigned fx)
{
    room_state_bump(r->st);
    q->write = true;
    q->fx |= fx;
    q->version = room_state_version(r->st);
    settle(r);
}

/* What a member going away means for its participant (r->st only). */
static void apply_sync(room_t *r, rq_t *q, const char *user, int mode)
{
    json_t *p = room_state_participant(r->st, user);
    urt_t *u = urt_get(r, user, false);
    if (!p || (u && (u->nmembers || u->pending)))
        return;
    bool connected = json_is_true(json_object_get(p, "connected"));
    if (mode == SYNC_LEAVE) {
        room_state_remove(r->st, user);
        if (connected)
            r->nconn--;
        q->why = "left";
        change(r, q, FX_LEFT);
    } else if (connected) {
        room_state_set_connected(r->st, user, false);
        r->nconn--;
        change(r, q, FX_DISCONNECTED);
    }
}

static void apply_join(room_t *r, rq_t *q)
{
    room_join_req_t *jr = q->data;
    if (r->ending || room_state_ended(r->st)) {
        reply_err(r, q, ROOM_EENDED);
        return;
    }
    if (jr->role == ROOM_VIEWER)
        return; /* nothing durable: added when the group completes */
    json_t *p = room_state_participant(r->st, jr->user);
    if (!p) {
        int rc = room_state_add(r->st, r->seen, jr->user, room_wall_ms());
        if (rc != ROOM_OK) {
            reply_err(r, q, rc);
            return;
        }
        r->nconn++;
        change(r, q, FX_NEW);
    } else if (!json_is_true(json_object_get(p, "connected"))) {
        room_state_set_connected(r->st, jr->user, true);
        r->nconn++;
        change(r, q, FX_RECONNECT);
    }
    urt_get(r, jr->user, true)->pending++;
    q->fx |= FX_PENDING;
}

static void apply_status(room_t *r, rq_t *q)
{
    room_text_req_t *tr = q->data;
    member_t *m = room_map_get_u(&r->members, tr->member);
    if (r->ending) {
        reply_err(r, q, ROOM_EENDED);
        return;
    }
    if (!m || !m->u || strcmp(m->u->user, tr->user) != 0) {
        reply_err(r, q, ROOM_ENOTMEMBER);
        return;
    }
    json_t *patch = room_json_load(tr->text, tr->len, 0, NULL);
    /* q->note: the new status as text, for history (the merge measures
     * it anyway). */
    int rc = json_is_object(patch)
                 ? room_state_merge_status_text(r->st, tr->user, patch, &q->note, NULL)
                 : ROOM_EINVAL;
    json_decref(patch);
    if (rc != ROOM_OK) {
        reply_err(r, q, rc);
        return;
    }
    change(r, q, FX_STATUS);
}

static void apply_member_gone(room_t *r, rq_t *q)
{
    member_t *m = room_map_get_u(&r->members, q->pid);
    if (!m || m->addr.word != q->word)
        return; /* already gone, or the connection joined again since */
    urt_t *u = m->u;
    member_remove(r, m);
    if (u && u->nmembers == 0) {
        q->user = strdup(u->user);
        RT_ASSERT(q->user != NULL);
        q->mode = q->kind == RQ_LEAVE ? SYNC_LEAVE : SYNC_DISCONNECT;
        apply_sync(r, q, u->user, q->mode);
    }
}

static void apply_expire(room_t *r, rq_t *q)
{
    urt_t *u = urt_get(r, q->user, false);
    if (!u || u->grace != q->timer || u->nmembers || u->pending)
        return;
    json_t *p = room_state_participant(r->st, q->user);
    if (!p)
        return;
    if (json_is_true(json_object_get(p, "connected"))) {
        if (!u->presumed)
            return;
        r->nconn--;
    }
    room_state_remove(r->st, q->user);
    q->why = "grace_expired";
    change(r, q, FX_LEFT);
}

static void apply(room_t *r, rq_t *q)
{
    switch (q->kind) {
    case RQ_INIT:
        q->write = true;
        break;
    case RQ_JOIN:
        apply_join(r, q);
        break;
    case RQ_STATUS:
        apply_status(r, q);
        break;
    case RQ_GET:
        break;
    case RQ_LEAVE:
    case RQ_DISCONNECT:
        apply_member_gone(r, q);
        break;
    case RQ_SYNC:
        apply_sync(r, q, q->user, q->mode);
        break;
    case RQ_EXPIRE:
        apply_expire(r, q);
        break;
    case RQ_MEDIA: {
        json_t *patch = json_pack("{ss}", "media", q->note);
        if (!r->ending && room_state_participant(r->st, q->user) &&
            room_state_merge_status(r->st, q->user, patch) == ROOM_OK)
            change(r, q, FX_STATUS);
        json_decref(patch);
        break;
    }
    case RQ_END:
        if (r->ending || room_state_ended(r->st)) {
            reply_err(r, q, ROOM_EENDED);
            break;
        }
        r->ending = true;
        room_state_end(r->st);
        room_state_bump(r->st);
        q->write = true;
        q->fx |= FX_END;
        break;
    }
}

/* ---- the runtime, for the backup ---------------------------------------------------------- */

static rt_buf_t *runtime_dump(room_t *r)
{
    json_t *users = json_object();
    json_t *o = json_pack("{sbso}", "created", r->created_recorded, "users", users);
    RT_ASSERT(o != NULL);
    room_map_it_t it = {0};
    for (room_map_ent_t *e; (e = room_map_next(&r->users, &it));) {
        urt_t *u = e->val;
        json_t *ms = json_array();
        RT_ASSERT(ms != NULL);
        for (member_t *m = u->members; m; m = m->unext) {
            char pid[24], word[24];
            snprintf(pid, sizeof pid, "%" PRIx64, m->addr.pid);
            snprintf(word, sizeof word, "%" PRIx64, m->addr.word);
            RT_ASSERT(json_array_append_new(ms, json_pack("[sIs]", pid, (json_int_t)m->addr.tag,
                                                          word)) == 0);
        }
        json_t *x = json_pack("{ss?sIso}", "ref", u->present ? u->ref : NULL, "grace",
                              (json_int_t)u->grace_at, "members", ms);
        RT_ASSERT(x && json_object_set_new(users, u->user, x) == 0);
    }
    if (r->media)
        RT_ASSERT(json_object_set_new(o, "media", room__media_dump(r->media)) == 0);
    return dump_to_buf(o);
}

/* version: of state (when given). */
static void backup_put(room_t *r, rt_buf_t *state, uint64_t version, rt_buf_t *runtime)
{
    room_snap_t *s = room__snap_new(state, runtime);
    rt_msg_t *m = s ? rt_msg_new(ROOM__BACKUP_PUT) : NULL;
    RT_ASSERT(m != NULL);
    m->a = version;
    rt_msg_set_data(m, &s->rc, RT_OWN_RC);
    /* A dead backup means the supervisor is restarting us too. */
    rt_cast_msg(r->backup, m);
}

static void backup_runtime(room_t *r)
{
    if (!r->runtime_dirty)
        return;
    r->runtime_dirty = false;
    rt_buf_t *b = runtime_dump(r);
    backup_put(r, NULL, 0, b);
    rt_buf_release(b);
}

/* ---- completing a group -------------------------------------------------------------- */

static void finish_end(room_t *r, rq_t *g);

static void reply_view(room_t *r, rq_t *q)
{
    RT_ASSERT(r->pub != NULL); /* the first write precedes every join */
    if (!r->view) {
        r->view = room__view_new(r->pub, presence_state(r));
        RT_ASSERT(r->view != NULL);
    }
    rt_msg_t *m = rt_msg_new(ROOM_OK);
    if (m) {
        rt_rc_retain(&r->view->rc);
        rt_msg_set_data(m, &r->view->rc, RT_OWN_RC);
        m->b = ROOM__VIEW;
    }
    reply_msg(r, q, m);
}

/* The effects of one acknowledged (or write-free) change. */
static void effects(room_t *r, rq_t *q)
{
    if (q->done)
        return;
    switch (q->kind) {
    case RQ_INIT:
        if (!r->created_recorded) {
            record(r, "room_created", NULL,
                   json_pack("{sIsI}", "max_participants",
                             (json_int_t)room_state_int(r->st, "max_participants"),
                             "empty_timeout", (json_int_t)room_state_int(r->st, "empty_timeout")));
            r->created_recorded = true;
            r->runtime_dirty = true;
            room__count(ROOM__STAT_CREATED, 1);
        }
        break;
    case RQ_JOIN: {
        room_join_req_t *jr = q->data;
        member_add(r, jr->addr, jr->role, jr->user);
        if (jr->role == ROOM_VIEWER)
            break;
        urt_t *u = urt_get(r, jr->user, true);
        if (q->fx & FX_PENDING)
            u->pending--;
        if (q->fx & (FX_NEW | FX_RECONNECT)) {
            cancel_grace(u);
            u->presumed = false;
            presence_join(r, u);
            record(r, q->fx & FX_NEW ? "participant_joined" : "participant_reconnected",
                   jr->user, NULL);
        } else if (u->presumed) {
            u->presumed = false; /* its connection is back */
            cancel_grace(u);
        }
        break;
    }
    case RQ_STATUS: {
        room_text_req_t *tr = q->data;
        record_text(r, "status_changed", tr->user, q->note);
        break;
    }
    case RQ_MEDIA:
        if (q->fx & FX_STATUS)
            record(r, "media_status", q->user, json_pack("{ss}", "media", q->note));
        break;
    case RQ_LEAVE:
    case RQ_DISCONNECT:
    case RQ_SYNC:
    case RQ_EXPIRE: {
        urt_t *u = q->user ? urt_get(r, q->user, false) : NULL;
        if (!u)
            break;
        if (r->media && (q->fx & (FX_LEFT | FX_DISCONNECTED)))
            room__media_gone(r->media, u->user, q->fx & FX_LEFT);
        if (q->fx & FX_LEFT) {
            cancel_grace(u);
            u->presumed = false;
            presence_leave(r, u);
            record_reason(r, "participant_left", u->user, q->why);
            r->runtime_dirty = true;
        } else if (q->fx & FX_DISCONNECTED) {
            u->presumed = false;
            presence_leave(r, u);
            record(r, "participant_disconnected", u->user, NULL);
            start_grace(r, u, r->grace_ms);
            r->runtime_dirty = true;
        }
        urt_gc(r, u);
        break;
    }
    default:
        break;
    }
}

static void answer(room_t *r, rq_t *q)
{
    if (!q->has_from)
        return;
    switch (q->kind) {
    case RQ_JOIN:
        reply_view(r, q);
        break;
    case RQ_STATUS:
        /* Its own version: in a group of changes each one has the
         * version it made, not the group's last. */
        reply_val(r, q, ROOM_OK, q->version ? q->version : room_state_version(r->st));
        break;
    case RQ_GET:
        reply_buf(r, q, r->pub);
        break;
    default:
        reply_val(r, q, ROOM_OK, 0);
        break;
    }
}

static void free_group(rq_t *g)
{
    while (g) {
        rq_t *next = g->next;
        rq_free(g);
        g = next;
    }
}

/* The group g is acknowledged (wrote: its state is durable). */
static void complete(room_t *r, rq_t *g, bool wrote)
{
    if (wrote) {
        set_pub(r, r->write_pub, r->write_stored);
        r->write_pub = r->write_stored = NULL;
        r->nconn_acked = r->nconn;
        r->status_dirty = r->version_dirty = true;
        r->retry_ms = 0;
        /* The backup's copy of this version is now durable. */
        rt_cast(r->backup, ROOM__BACKUP_ACKED, room_state_version(r->st), 0);
    }
    bool end = false;
    for (rq_t *q = g; q; q = q->next) {
        effects(r, q);
        end |= (q->fx & FX_END) && !q->done;
    }
    if (end) {
        finish_end(r, g);
        return;
    }
    /* Announce before answering: a joiner's channel is still joining, so
     * it drops this announcement (channel.h rule 1) and its join reply
     * carries the same state; a member never gets a room_status older
     * than, or equal to, its own join reply. */
    if (r->status_dirty || r->pub_stale || json_object_size(r->pjoins) ||
        json_object_size(r->pleaves))
        announce(r);
    for (rq_t *q = g; q; q = q->next) {
        answer(r, q);
        /* After its join reply: a channel still joining drops signals. */
        if (r->media && q->kind == RQ_JOIN && (q->fx & FX_RECONNECT))
            room__media_back(r->media, ((room_join_req_t *)q->data)->user);
    }
    free_group(g);
    check_empty(r);
    backup_runtime(r);
}

static void pump(room_t *r);
static void write_done(store_req_t *req, void *ctx);

/* The group g could not be stored (err): back to the acknowledged state. */
static void fail_group(room_t *r, rq_t *g, int err)
{
    if (r->write_pub)
        rt_buf_release(r->write_pub);
    if (r->write_stored)
        rt_buf_release(r->write_stored);
    r->write_pub = r->write_stored = NULL;
    json_decref(r->st);
    json_decref(r->seen);
    r->st = room_json_load(r->stored->data, r->stored->len, 0, NULL);
    RT_ASSERT(r->st && room_state_split_seen(r->st, &r->seen) == ROOM_OK);
    room_state_set_viewers(r->st, r->viewers);
    r->nconn = r->nconn_acked;
    r->ending = room_state_ended(r->st);
    /* The backup may hold the refused state: give it the good one. */
    backup_put(r, r->stored, room_state_version(r->st), NULL);

    rq_t *retry = NULL, *last = NULL;
    while (g) {
        rq_t *q = g;
        g = g->next;
        q->next = NULL;
        if (q->fx & FX_PENDING) {
            room_join_req_t *jr = q->data;
            urt_t *u = urt_get(r, jr->user, false);
            if (u) {
                u->pending--;
                urt_gc(r, u);
            }
        }
        if (q->done) {
            rq_free(q);
            continue;
        }
        if (q->internal) {
            /* Retried from what the members are then (apply re-derives). */
            if (q->kind == RQ_LEAVE || q->kind == RQ_DISCONNECT) {
                if (!q->user) {
                    rq_free(q);
                    continue;
                }
                q->kind = RQ_SYNC;
            }
            q->write = false;
            q->fx = 0;
            q->version = 0;
            q->why = NULL;
            if (last)
                last->next = q;
            else
                retry = q;
            last = q;
            continue;
        }
        reply_err(r, q, q->kind == RQ_GET ? ROOM_EUNAVAIL : err);
        rq_free(q);
    }
    if (retry) {
        last->next = r->qhead;
        if (!r->qhead)
            r->qtail = last;
        r->qhead = retry;
    }
    room__count(ROOM__STAT_REFUSALS, 1);
    /* Back off before the next write, so a store that is down is not
     * hammered; requests arriving meanwhile wait in the queue. */
    r->retry_ms = r->retry_ms ? r->retry_ms * 2 : RETRY_MIN_MS;
    if (r->retry_ms > RETRY_MAX_MS)
        r->retry_ms = RETRY_MAX_MS;
    rt_msg_t *m = rt_msg_new(ROOM__RETRY);
    RT_ASSERT(m != NULL);
    r->paused = true;
    r->retry_timer = rt_send_after(r->retry_ms, r->self, m);
}

/* Hands the group's state to the backup and the store. */
static void start_write(room_t *r, rq_t *g)
{
    room_state_set_viewers(r->st, r->viewers);
    rt_buf_t *pub = NULL, *stored = NULL;
    if (room_state_dump(r->st, r->seen, &pub, &stored) != ROOM_OK) {
        fail_group(r, g, ROOM_ENOMEM);
        return;
    }
    r->write_pub = pub;
    r->write_stored = stored;
    backup_put(r, stored, room_state_version(r->st), NULL);
    store_req_t *req = NULL;
    /* The store shares the buffer the backup got: no copy, and no parse
     * (room_state_dump made it from the object). */
    int rc = store_req_put_state_buf(&req, r->id, stored, ROOM_STATE_SCHEMA,
                                     room_state_version(r->st), room_state_ended(r->st));
    store_t *st = room_config()->store;
    if (rc == STORE_OK && st) {
        /* Straight into the store's queue; the writer thread's answer
         * comes back as ROOM__WRITTEN (write_done). The store process
         * would only have passed it on both ways: two messages and two
         * turns of one busy process per write. A timeout stands in for
         * the call's (store.h: an answer that never comes means the
         * state is unknown). */
        rt_msg_t *tm = rt_msg_new(ROOM__WRITE_TIMEOUT);
        RT_ASSERT(tm != NULL);
        r->write_ref = tm->a = rt_make_ref();
        r->write_req = req; /* taken by the submit: only compared from here on */
        rc = store_submit(st, req, write_done, (void *)(uintptr_t)r->self);
        if (rc == STORE_OK) {
            r->write_timer = rt_send_after(room_config()->store_timeout_ms, r->self, tm);
            r->inflight = g;
            return;
        }
        store_req_free(req); /* not taken */
        rt_msg_free(tm);
        r->write_ref = 0;
        r->write_req = NULL;
        fprintf(stderr, "roost: room %s: cannot write its state: %s\n", r->id,
                store_strerror(rc));
        fail_group(r, g, ROOM_ESTORE);
        return;
    }
    rt_pid_t store = rt_whereis("store");
    if (rc != STORE_OK || !store ||
        store_call(store, req, room_config()->store_timeout_ms, &r->write_ref) != RT_OK) {
        if (rc == STORE_OK && !store)
            store_req_free(req);
        fprintf(stderr, "roost: room %s: cannot write its state: %s\n", r->id,
                rc != STORE_OK ? store_strerror(rc) : "no store process");
        fail_group(r, g, ROOM_ESTORE);
        return;
    }
    r->inflight = g;
}

static void pump(room_t *r)
{
    while (r->loaded && !r->stopping && !r->inflight && !r->paused && r->qhead) {
        rq_t *g = r->qhead, *tail = g;
        for (size_t n = 1; tail->next && n < GROUP_MAX; n++)
            tail = tail->next;
        r->qhead = tail->next;
        if (!r->qhead)
            r->qtail = NULL;
        tail->next = NULL;
        bool write = false;
        for (rq_t *q = g; q; q = q->next) {
            apply(r, q);
            write |= q->write;
        }
        if (write) {
            start_write(r, g);
        } else {
            complete(r, g, false);
        }
    }
}

/* Writer thread (store_done_fn): hands a completed direct write back to
 * the RoomServer whose pid is ctx. If it is gone, the runtime drops the
 * message and releases req. */
static void write_done(store_req_t *req, void *ctx)
{
    rt_msg_t *m = rt_msg_new(ROOM__WRITTEN);
    if (!m) {
        /* The room's timeout fires and it restarts from its backup. */
        fprintf(stderr, "roost: out of memory answering a room write\n");
        store_req_free(req);
        return;
    }
    rt_msg_set_data(m, &req->rc, RT_OWN_RC);
    rt_send_msg((rt_pid_t)(uintptr_t)ctx, m);
}

/* The answer to the write in flight: a call's reply, or a ROOM__WRITTEN. */
static void written(room_t *r, rt_msg_t *m)
{
    int rc;
    if (m->kind == RT_MSG_REPLY) {
        rc = store_reply(m, NULL);
    } else {
        rc = store_req_err((store_req_t *)m->data);
        rt_cancel_timer(r->write_timer);
        r->write_timer = 0;
        r->write_req = NULL;
    }
    if (rc == STORE_ETIMEOUT || rc == STORE_EUNAVAIL)
        /* It may still commit: what the store holds is unknown, so start
         * again from the backup (store.h). The group stays attached to
         * the state, so terminate frees it. */
        rt_fail(rt_reason_fmt("room %s: store write %s", r->id, store_strerror(rc)));
    rq_t *g = r->inflight;
    r->inflight = NULL;
    r->write_ref = 0;
    if (rc != STORE_OK) {
        fprintf(stderr, "roost: room %s: store refused a change: %s\n", r->id,
                store_strerror(rc));
        fail_group(r, g, ROOM_ESTORE);
        return;
    }
    complete(r, g, true);
}

/* ---- the end ---------------------------------------------------------------------------- */

static void finish_end(room_t *r, rq_t *g)
{
    const char *reason = "deleted";
    for (rq_t *q = g; q; q = q->next)
        if ((q->fx & FX_END) && q->data)
            reason = q->data;
    /* Members see the final state, then room_ended; their channels then
     * get our DOWN with reason normal and close (phx_close). */
    r->status_dirty = true;
    flush(r);
    json_t *ev = json_pack("{ss}", "reason", reason);
    rt_buf_t *b = dump_to_buf(json_incref(ev));
    publish(r, "room_ended", b->data, b->len);
    rt_buf_release(b);
    record(r, "room_ended", NULL, ev);
    int64_t now = room_wall_ms(), created = room_state_int(r->st, "created_at"),
            started = room_state_int(r->st, "started_at");
    char *who = room_state_seen_array(r->seen);
    history_record_call(r->id, created, started, now, who ? who : "[]",
                        started ? now - started : 0);
    free(who);
    room__count(ROOM__STAT_ENDED, 1);
    for (rq_t *q = g; q; q = q->next) {
        if (q->fx & FX_END)
            reply_buf(r, q, r->pub);
        else
            answer(r, q);
    }
    free_group(g);
    while (r->qhead) {
        rq_t *q = r->qhead;
        r->qhead = q->next;
        reply_err(r, q, ROOM_EENDED);
        rq_free(q);
    }
    r->qtail = NULL;
    rt_pid_t dir = rt_whereis(ROOM_DIR_NAME);
    rt_msg_t *m = dir ? rt_msg_new(ROOM__DIR_ENDED) : NULL;
    char *id = m ? strdup(r->id) : NULL;
    if (id) {
        rt_msg_set_data(m, id, RT_OWN_FREE);
        rt_cast_msg(dir, m);
    } else {
        rt_msg_free(m);
    }
    r->stopping = true;
    rt_stop(RT_NORMAL);
}

/* ---- restoring ------------------------------------------------------------------------ */

static uint64_t hex(const char *s)
{
    return s ? strtoull(s, NULL, 16) : 0;
}

static void restore(room_t *r, room_restore_t *rs)
{
    room_snap_t *snap = rs->snap;
    /* Our own texts (the state as the last RoomServer or the store gave
     * it, the runtime as the last one dumped it): rjson's reader, ~5x
     * cheaper than json_loadb, and 1,000 rooms restarting at once each
     * read both. */
    r->st = room_json_load(snap->state->data, snap->state->len, 0, NULL);
    if (!r->st || room_state_check(r->st) != ROOM_OK)
        rt_fail(rt_reason_fmt("room %s: unreadable state", r->id));
    RT_ASSERT(room_state_split_seen(r->st, &r->seen) == ROOM_OK);
    room_state_set_viewers(r->st, 0);
    rt_buf_retain(snap->state);
    r->stored = snap->state;
    r->nconn = r->nconn_acked = room_state_count_connected(r->st);
    r->ending = room_state_ended(r->st);

    json_t *rtj = snap->runtime ? room_json_load(snap->runtime->data, snap->runtime->len, 0, NULL)
                                : NULL;
    r->created_recorded = rs->origin == ROOM_FROM_STORE ||
                          json_is_true(json_object_get(rtj, "created"));
    json_t *users = json_object_get(rtj, "users");
    int64_t now = room_wall_ms();
    /* Whether the runtime the backup holds must be replaced. Handed over
     * by the previous RoomServer and taken as it is, it need not: the
     * backup has exactly what a dump would give (members, refs, grace
     * deadlines), and a thousand rooms restarting at once were each
     * dumping and handing it back for nothing. */
    bool changed = !rtj || rs->origin != ROOM_FROM_BACKUP;
    const char *user;
    json_t *p;
    json_object_foreach(json_object_get(r->st, "participants"), user, p) {
        urt_t *u = urt_get(r, user, true);
        json_t *x = json_object_get(users, user);
        size_t i;
        json_t *mm;
        json_array_foreach(json_object_get(x, "members"), i, mm) {
            room_addr_t a = {.pid = hex(json_string_value(json_array_get(mm, 0))),
                             .tag = (uint32_t)json_integer_value(json_array_get(mm, 1)),
                             .word = hex(json_string_value(json_array_get(mm, 2)))};
            /* A connection that died meanwhile gets its DOWN (noproc) at
             * once: a disconnect like any other. */
            if (a.pid)
                member_add(r, a, ROOM_PARTICIPANT, user);
        }
        int64_t grace_at = json_integer_value(json_object_get(x, "grace"));
        if (json_is_true(json_object_get(p, "connected"))) {
            const char *ref = json_string_value(json_object_get(x, "ref"));
            u->present = true;
            u->joined_at = room_state_int(p, "joined_at");
            if (ref) {
                snprintf(u->ref, sizeof u->ref, "%s", ref);
            } else {
                new_ref(r, u);
                changed = true;
            }
            if (!u->nmembers) {
                u->presumed = true;
                start_grace(r, u, r->grace_ms);
                changed = true;
            }
        } else {
            start_grace(r, u, grace_at > 0 ? grace_at - now : r->grace_ms);
            changed |= grace_at <= 0;
        }
    }
    if (r->media)
        room__media_restore(r->media, json_object_get(rtj, "media"));
    json_decref(rtj);
    /* member_add marked it dirty; only a real difference counts. */
    r->runtime_dirty = changed;
    if (rs->crash) {
        record_reason(r, "room_restarted", NULL, rs->crash->text);
        room__count(ROOM__STAT_RESTARTS, 1);
    }
}

static void loaded(room_t *r, rt_msg_t *m)
{
    r->load_ref = 0;
    if (m->flags & RT_MF_ERROR) {
        rt_reason_t *why = rt_msg_reason(m);
        rt_fail(rt_reason_fmt("room %s: no state from the backup: %s", r->id,
                              why ? why->text : "?"));
    }
    if (m->tag != ROOM_OK || !m->data || m->own != RT_OWN_RC)
        rt_fail(rt_reason_fmt("room %s: backup answered %s", r->id,
                              room_strerror((int)(int32_t)m->tag)));
    room_restore_t *rs = (room_restore_t *)m->data;
    restore(r, rs);
    r->loaded = true;
    room__count(ROOM__STAT_LIVE, 1);
    r->counted = true;

    /* Tell the directory which RoomSupervisor holds us (it may be new). */
    rt_proc_info_t info;
    rt_pid_t dir = rt_whereis(ROOM_DIR_NAME);
    if (dir && rt_process_info(r->self, &info) == RT_OK) {
        rt_msg_t *h = rt_msg_new(ROOM__DIR_HELLO);
        char *id = h ? strdup(r->id) : NULL;
        if (id) {
            h->a = info.parent;
            rt_msg_set_data(h, id, RT_OWN_FREE);
            rt_cast_msg(dir, h);
        } else {
            rt_msg_free(h);
        }
    }
    if (r->ending) {
        /* It ended and was stored so; only the exit was missed. */
        rt_msg_t *e = dir ? rt_msg_new(ROOM__DIR_ENDED) : NULL;
        char *id = e ? strdup(r->id) : NULL;
        if (id) {
            rt_msg_set_data(e, id, RT_OWN_FREE);
            rt_cast_msg(dir, e);
        } else {
            rt_msg_free(e);
        }
        r->stopping = true;
        rt_stop(RT_NORMAL);
        return;
    }
    rt_buf_t *pub = NULL;
    if (rs->acked && r->created_recorded) {
        /* The store holds exactly this state: serve it at once. The
         * stored form is the backup's; only the public one is made. */
        RT_ASSERT(room_state_dump(r->st, NULL, &pub, NULL) == ROOM_OK);
        rt_buf_retain(r->stored);
        set_pub(r, pub, r->stored);
        r->status_dirty = false;
        check_empty(r);
        backup_runtime(r);
        pump(r);
        return;
    }
    /* First of all, the store must hold what we start from (a new room,
     * or a backup whose last state was not acknowledged yet). */
    rq_t *q = rq_new(RQ_INIT);
    q->internal = true;
    q->next = r->qhead;
    r->qhead = q;
    if (!r->qtail)
        r->qtail = q;
    pump(r);
}

/* ---- the process ------------------------------------------------------------------------- */

static void room_free(room_t *r)
{
    free_group(r->qhead);
    free_group(r->inflight);
    room_map_it_t it = {0};
    for (room_map_ent_t *e; (e = room_map_next(&r->members, &it));) {
        room__count(ROOM__STAT_MEMBERS, -1);
        free(e->val);
    }
    it = (room_map_it_t){0};
    for (room_map_ent_t *e; (e = room_map_next(&r->users, &it));)
        urt_free(e->val);
    room_map_clear(&r->members);
    room_map_clear(&r->mons);
    room_map_clear(&r->users);
    json_decref(r->st);
    json_decref(r->seen);
    json_decref(r->pjoins);
    json_decref(r->pleaves);
    if (r->pub)
        rt_buf_release(r->pub);
    if (r->stored)
        rt_buf_release(r->stored);
    if (r->write_pub)
        rt_buf_release(r->write_pub);
    if (r->write_stored)
        rt_buf_release(r->write_stored);
    if (r->presence)
        rt_buf_release(r->presence);
    if (r->view)
        rt_rc_release(&r->view->rc);
    if (r->counted)
        room__count(ROOM__STAT_LIVE, -1);
    room__media_free(r->media);
    free(r->id);
    free(r->topic);
    free(r);
}

static rt_reason_t *room_init(void *arg, void **state)
{
    room_boot_t *boot = arg;
    room_t *r = calloc(1, sizeof *r);
    if (!r)
        return rt_reason_new("enomem");
    r->id = strdup(boot->id);
    r->topic = strdup(boot->name);
    r->pjoins = json_object();
    r->pleaves = json_object();
    r->self = rt_self();
    r->grace_ms = room_config()->reconnect_grace_ms;
    r->salt = rt_make_ref() ^ rt_now_ns();
    r->backup = atomic_load_explicit(&boot->backup_pid, memory_order_acquire);
    if (room_config()->media == ROOM_MEDIA_JANUS)
        r->media = room__media_new(r, boot->id);
    if (!r->id || !r->topic || !r->pjoins || !r->pleaves ||
        (room_config()->media == ROOM_MEDIA_JANUS && !r->media)) {
        room_free(r);
        return rt_reason_new("enomem");
    }
    rt_msg_t *get = rt_msg_new(ROOM__BACKUP_GET);
    /* rt_call takes get whatever it returns. */
    if (!get || rt_call(r->backup, get, RT_INFINITY, &r->load_ref) != RT_OK) {
        room_free(r);
        return rt_reason_new("room: cannot ask the backup for the state");
    }
    /* Nothing else is handled until the state is here. No timeout: the
     * backup answers, or dies and we get its reason. */
    rt_await(r->load_ref);
    *state = r;
    return NULL;
}

/* Sends a signal payload to every connection of user; how many got it. */
static uint64_t deliver_signal(room_t *r, const char *user, const char *text, size_t len)
{
    urt_t *u = urt_get(r, user, false);
    uint64_t n = 0;
    for (member_t *x = u ? u->members : NULL; x; x = x->unext) {
        rt_msg_t *out = rt_msg_new(x->addr.tag);
        char *copy = out ? malloc(len + 1) : NULL;
        if (!copy) {
            rt_msg_free(out);
            continue;
        }
        memcpy(copy, text, len);
        copy[len] = 0;
        out->a = x->addr.word;
        out->b = ROOM_DELIVER_SIGNAL;
        rt_msg_set_data(out, copy, RT_OWN_FREE);
        n += rt_send_msg(x->addr.pid, out) == RT_OK;
    }
    return n;
}

void room__media_deliver(void *room, const char *user, const char *json)
{
    deliver_signal(room, user, json, strlen(json));
}

void room__media_state(void *room, const char *user, const char *state)
{
    room_t *r = room;
    rq_t *q = rq_new(RQ_MEDIA);
    q->internal = true;
    q->user = strdup(user);
    q->note = strdup(state);
    RT_ASSERT(q->user && q->note);
    enqueue(r, q);
    /* pumped by the handler that called into room_media */
}

void room__media_dirty(void *room)
{
    ((room_t *)room)->runtime_dirty = true;
}

static void room_terminate(void *state, rt_reason_t *reason)
{
    room_t *r = state;
    /* Ended for good (not a crash, which the supervisor restarts from the
     * backup with the same Janus handles): let Janus drop them. */
    if (r->media && reason && rt_reason_is(reason, RT_R_NORMAL))
        room__media_release(r->media);
    room_free(state);
}

static int room_call(void *state, rt_msg_t *req, rt_from_t from)
{
    room_t *r = state;
    int kind = 0;
    switch (req->tag) {
    case ROOM_REQ_JOIN: {
        room_join_req_t *jr = req->data;
        if (!jr || !room_id_valid(jr->user, strlen(jr->user)) || !jr->addr.pid) {
            rt_reply_val(from, (uint32_t)(int32_t)ROOM_EINVAL, 0, 0);
            return RT_REPLIED;
        }
        if (strcmp(jr->user, ROOM_RESERVED_USER) == 0) {
            rt_reply_val(from, (uint32_t)(int32_t)ROOM_ERESERVED, 0, 0);
            return RT_REPLIED;
        }
        kind = RQ_JOIN;
        break;
    }
    case ROOM_REQ_STATUS:
        if (!req->data) {
            rt_reply_val(from, (uint32_t)(int32_t)ROOM_EINVAL, 0, 0);
            return RT_REPLIED;
        }
        kind = RQ_STATUS;
        break;
    case ROOM_REQ_SIGNAL: {
        room_text_req_t *tr = req->data;
        member_t *m = tr ? room_map_get_u(&r->members, tr->member) : NULL;
        if (!m || !m->u || strcmp(m->u->user, tr->user) != 0) {
            rt_reply_val(from, (uint32_t)(int32_t)ROOM_ENOTMEMBER, 0, 0);
            return RT_REPLIED;
        }
        if (r->media && strcmp(tr->to, ROOM_MEDIA_PEER) == 0) {
            int rc = room__media_signal(r->media, tr->user, tr->text, tr->len);
            rt_reply_val(from, (uint32_t)(int32_t)rc, 1, 0);
            backup_runtime(r);
            pump(r); /* media state changes it queued */
            return RT_REPLIED;
        }
        uint64_t n = deliver_signal(r, tr->to, tr->text, tr->len);
        rt_reply_val(from, n ? ROOM_OK : (uint32_t)(int32_t)ROOM_ENOPEER, n, 0);
        return RT_REPLIED;
    }
    case ROOM_REQ_GET:
        if (r->pub) {
            refresh_pub(r);
            room__reply_buf(from, ROOM_OK, 0, r->pub);
            return RT_REPLIED;
        }
        kind = RQ_GET; /* the first write is still on its way */
        break;
    case ROOM_REQ_END:
        kind = RQ_END;
        break;
    default:
        rt_reply_val(from, (uint32_t)(int32_t)ROOM_EINVAL, 0, 0);
        return RT_REPLIED;
    }
    rq_t *q = rq_new(kind);
    q->has_from = true;
    q->from = from;
    q->data = rt_msg_take(req);
    enqueue(r, q);
    r->cur_ref = from.ref;
    r->cur_replied = false;
    pump(r);
    r->cur_ref = 0;
    return r->cur_replied ? RT_REPLIED : RT_NOREPLY;
}

static void room_cast(void *state, rt_msg_t *m)
{
    room_t *r = state;
    if (m->tag != ROOM_MSG_LEAVE && m->tag != ROOM_MSG_DISCONNECT)
        return;
    rq_t *q = rq_new(m->tag == ROOM_MSG_LEAVE ? RQ_LEAVE : RQ_DISCONNECT);
    q->internal = true;
    q->pid = m->a;
    q->word = m->b;
    enqueue(r, q);
    pump(r);
}

static void room_info(void *state, rt_msg_t *m)
{
    room_t *r = state;
    switch (m->kind) {
    case RT_MSG_REPLY:
        if (m->ref == r->load_ref && r->load_ref)
            loaded(r, m);
        else if (m->ref == r->write_ref && r->write_ref && !r->write_req)
            written(r, m);
        else if (!room__media_info(r->media, m))
            return;
        else
            backup_runtime(r);
        break;
    case RT_MSG_DOWN: {
        member_t *x = room_map_get_u(&r->mons, m->ref);
        if (!x)
            return;
        rq_t *q = rq_new(RQ_DISCONNECT);
        q->internal = true;
        q->pid = x->addr.pid;
        q->word = x->addr.word;
        enqueue(r, q);
        break;
    }
    case RT_MSG_TIMER:
        switch (m->tag) {
        case ROOM__TICK:
            if (m->ref != r->tick_timer)
                return;
            r->tick_timer = 0;
            flush(r);
            return;
        case ROOM__GRACE: {
            const char *user = m->data;
            urt_t *u = user ? urt_get(r, user, false) : NULL;
            if (!u || u->grace != m->ref)
                return;
            rq_t *q = rq_new(RQ_EXPIRE);
            q->internal = true;
            q->timer = m->ref;
            q->user = strdup(user);
            RT_ASSERT(q->user != NULL);
            enqueue(r, q);
            break;
        }
        case ROOM__EMPTY: {
            if (m->ref != r->empty_timer)
                return;
            r->empty_timer = 0;
            if (r->nconn_acked || r->viewers || r->ending)
                return;
            rq_t *q = rq_new(RQ_END);
            q->internal = true;
            q->data = strdup("empty_timeout");
            RT_ASSERT(q->data != NULL);
            enqueue(r, q);
            break;
        }
        case ROOM__RETRY:
            if (m->ref != r->retry_timer)
                return;
            r->retry_timer = 0;
            r->paused = false;
            break;
        case ROOM__WRITE_TIMEOUT:
            if (!r->write_req || m->a != r->write_ref)
                return;
            /* As a timed-out call: the write may still commit, so the
             * state is unknown; start again from the backup. */
            rt_fail(rt_reason_fmt("room %s: store write %s", r->id,
                                  store_strerror(STORE_ETIMEOUT)));
        default:
            return;
        }
        break;
    default:
        if (m->tag == ROOM__WRITTEN && m->data && m->own == RT_OWN_RC) {
            if (!r->write_req || m->data != (void *)&r->write_req->rc)
                return; /* not the write in flight: cannot happen, ignored */
            written(r, m);
            break;
        }
        if (!room__media_info(r->media, m))
            return;
        backup_runtime(r);
        break;
    }
    pump(r);
}

static void queue_sync(room_t *r, const char *user, int mode)
{
    rq_t *q = rq_new(RQ_SYNC);
    q->internal = true;
    q->mode = mode;
    q->user = strdup(user);
    RT_ASSERT(q->user != NULL);
    enqueue(r, q);
}

static size_t room_memory(const void *state)
{
    const room_t *r = state;
    size_t n = sizeof *r + (r->stored ? 2 * r->stored->len : 0);
    n += r->members.n * (sizeof(member_t) + 2 * sizeof(room_map_ent_t));
    n += r->users.n * (sizeof(urt_t) + sizeof(room_map_ent_t) + 32);
    return n;
}

const rt_behaviour_t room_server = RT_BEHAVIOUR(
    .name = "room", .version = ROOM_STATE_SCHEMA, .init = room_init,
    .handle_call = room_call, .handle_cast = room_cast, .handle_info = room_info,
    .terminate = room_terminate, .memory = room_memory);
