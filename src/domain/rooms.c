/*
 * domain/rooms.c — the RoomSupervisor's spec (built per room), the
 * RoomsSupervisor's spec, and the room directory (see domain/room.h for
 * the tree and why each piece is where it is).
 *
 * The directory ("room_dir") is the only process that starts rooms, so
 * two creators of one id never race: the first one's request makes an
 * entry STARTING, later ones wait on it. A start asks the store first
 * (load_state): an ended room is never started again (ids are not
 * reused: a join gets "ended", POST /api/rooms 409), a live room that is
 * not running is started from its stored state, an unknown one is
 * created if the request allows it. Every step is an asynchronous call
 * whose answer comes back as a message: the directory never blocks, and
 * requests for other rooms are served meanwhile.
 *
 * It monitors each RoomSupervisor. A RoomSupervisor that goes down with
 * reason `shutdown` without its room having ended gave up (its restart
 * intensity was exceeded): the directory ends the room cleanly from the
 * store's last acknowledged state (stored as ended, room_ended recorded
 * with reason "crashed", a call record written) so that it is not
 * restored at the next start and joins get "ended". Any other reason is
 * a RoomSupervisor that the RoomsSupervisor restarts; the new one says
 * hello (its RoomServer casts ROOM__DIR_HELLO from init).
 *
 * At start the directory lists every live room in the store and starts
 * those that do not run (all of them after a restart of the server; the
 * ones lost with a restarted RoomsSupervisor otherwise), adopting the
 * ones that do. If the RoomsSupervisor dies the directory fails with it,
 * so its restart restores everything again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/history.h"
#include "domain/map.h"
#include "domain/room.h"
#include "domain/room_internal.h"
#include "domain/state.h"
#include "store/store.h"

/* ---- the RoomSupervisor --------------------------------------------------------- */

room_boot_t *room__boot_new(const char *id, const char *state, int64_t max_participants,
                            int64_t empty_timeout_ms)
{
    room_boot_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    size_t n = strlen(id);
    b->id = strdup(id);
    b->name = malloc(sizeof ROOM_TOPIC_PREFIX + n);
    b->state = state ? strdup(state) : NULL;
    if (!b->id || !b->name || (state && !b->state)) {
        room__boot_free(b);
        return NULL;
    }
    memcpy(b->name, ROOM_TOPIC_PREFIX, sizeof ROOM_TOPIC_PREFIX - 1);
    memcpy(b->name + sizeof ROOM_TOPIC_PREFIX - 1, id, n + 1);
    b->max_participants = max_participants;
    b->empty_timeout_ms = empty_timeout_ms;
    const room_config_t *cfg = room_config();
    /* The children's args are this block, freed with it by the
     * RoomsSupervisor: arg_free stays NULL (the spec is reused at every
     * restart, see rt_sup.h). */
    b->children[0] = (rt_child_spec_t){.id = "backup", .behaviour = &room_backup_server,
                                       .arg = b, .restart = RT_PERMANENT, .shutdown_ms = 5000};
    b->children[1] = (rt_child_spec_t){.id = "server", .behaviour = &room_server, .arg = b,
                                       .restart = RT_TRANSIENT, .shutdown_ms = 5000,
                                       .name = b->name};
    b->spec = (rt_sup_spec_t){.strategy = RT_REST_FOR_ONE, .intensity = cfg->room_intensity,
                              .period_ms = cfg->room_period_ms, .children = b->children,
                              .nchildren = 2};
    return b;
}

void room__boot_free(void *arg)
{
    room_boot_t *b = arg;
    if (!b)
        return;
    free(b->id);
    free(b->name);
    free(b->state);
    free(b);
}

/* ---- the RoomsSupervisor ----------------------------------------------------------- */

static const rt_child_spec_t room_template = {
    .id = "room", .behaviour = &rt_sup_behaviour, .arg_free = room__boot_free,
    /* Transient: a RoomSupervisor that gave up exits `shutdown` and is not
     * restarted, so one room crashing in a loop never uses up the
     * RoomsSupervisor's own intensity (no other room notices). */
    .restart = RT_TRANSIENT, .is_supervisor = true, .shutdown_ms = RT_SHUTDOWN_INFINITY,
};

static const rt_sup_spec_t rooms_spec = {
    .strategy = RT_SIMPLE_ONE_FOR_ONE, .intensity = 100, .period_ms = 5000,
    .children = &room_template, .nchildren = 1,
};

const rt_sup_spec_t *room_rooms_spec(void)
{
    return &rooms_spec;
}

/* ---- the directory --------------------------------------------------------------------- */

typedef enum { E_STARTING = 1, E_LIVE, E_ENDING } estate_t;

typedef struct waiter {
    struct waiter *next;
    rt_from_t from;
    uint32_t flags;
} waiter_t;

typedef struct entry {
    char *id;
    estate_t state;
    rt_pid_t sup;
    uint64_t mref;
    int64_t max_participants, empty_timeout_ms;
    waiter_t *waiters, **wtail;
    bool fresh;            /* created now (not found in the store) */
    bool opts_exclusive;   /* the options come from an explicit create */
    bool ended_normally;   /* its RoomServer said it ended */
} entry_t;

typedef enum {
    OP_LOAD = 1,   /* load_state before a start */
    OP_START,      /* start_dyn */
    OP_CREATED,    /* GET of a new room for its exclusive creator */
    OP_END_LOAD,   /* load_state of a room that gave up */
    OP_END_PUT,    /* its ended state */
    OP_GATHER,     /* one GET of a LIST */
    OP_IGNORE,     /* an answer nobody waits for */
} op_kind_t;

typedef struct gather {
    rt_from_t from;
    size_t pending;
    char *buf;
    size_t len, cap;
} gather_t;

typedef struct op {
    op_kind_t kind;
    char *id;          /* the entry's id (entries may go away meanwhile) */
    rt_from_t from;    /* OP_CREATED */
    gather_t *g;       /* OP_GATHER */
    json_t *state;     /* OP_END_PUT: the ended state */
} op_t;

typedef struct dir {
    room_map_t ids;     /* id -> entry_t */
    room_map_t ops;     /* call ref -> op_t */
    room_map_t mons;    /* monitor ref -> entry_t */
    rt_pid_t rooms;
    uint64_t rooms_mref;
    uint64_t list_ref;  /* list_live in init */
} dir_t;

static void entry_free(entry_t *e)
{
    while (e->waiters) {
        waiter_t *w = e->waiters;
        e->waiters = w->next;
        free(w);
    }
    free(e->id);
    free(e);
}

static void op_free(op_t *o)
{
    free(o->id);
    json_decref(o->state);
    free(o);
}

static void answer(rt_from_t from, int err)
{
    rt_reply_val(from, (uint32_t)(int32_t)err, 0, 0);
}

/* Registers a call's op; a failed call is answered by the caller. */
static int track(dir_t *d, uint64_t ref, op_kind_t kind, const char *id)
{
    op_t *o = calloc(1, sizeof *o);
    if (!o || (id && !(o->id = strdup(id))) || room_map_put_u(&d->ops, ref, o) != 0) {
        if (o)
            free(o->id);
        free(o);
        return ROOM_ENOMEM;
    }
    o->kind = kind;
    return ROOM_OK;
}

static entry_t *entry_new(dir_t *d, const char *id, estate_t state)
{
    entry_t *e = calloc(1, sizeof *e);
    if (!e || !(e->id = strdup(id)) || room_map_put_s(&d->ids, e->id, e) != 0) {
        if (e)
            free(e->id);
        free(e);
        return NULL;
    }
    e->state = state;
    e->wtail = &e->waiters;
    e->max_participants = -1;
    e->empty_timeout_ms = -1;
    return e;
}

static void entry_remove(dir_t *d, entry_t *e, int err)
{
    while (e->waiters) {
        waiter_t *w = e->waiters;
        e->waiters = w->next;
        answer(w->from, err);
        free(w);
    }
    if (e->mref) {
        rt_demonitor(e->mref);
        room_map_del_u(&d->mons, e->mref);
    }
    room_map_del_s(&d->ids, e->id);
    entry_free(e);
}

static void watch_sup(dir_t *d, entry_t *e, rt_pid_t sup)
{
    if (e->sup == sup && e->mref)
        return;
    if (e->mref) {
        rt_demonitor(e->mref);
        room_map_del_u(&d->mons, e->mref);
    }
    e->sup = sup;
    e->mref = sup ? rt_monitor(sup) : 0;
    if (e->mref && room_map_put_u(&d->mons, e->mref, e) != 0)
        rt_fail(rt_reason_new("room_dir: enomem"));
}

/* Asks the store for id (OP_LOAD or OP_END_LOAD). */
static int load(dir_t *d, const char *id, op_kind_t kind)
{
    store_req_t *req = NULL;
    rt_pid_t store = rt_whereis("store");
    uint64_t ref = 0;
    if (!store || store_req_load_state(&req, id) != STORE_OK)
        return ROOM_EUNAVAIL;
    if (store_call(store, req, room_config()->store_timeout_ms, &ref) != RT_OK)
        return ROOM_EUNAVAIL;
    return track(d, ref, kind, id);
}

/* Starts a RoomSupervisor for e (state: stored form, or NULL for new). */
static int start(dir_t *d, entry_t *e, const char *state)
{
    int64_t empty = e->empty_timeout_ms >= 0 ? e->empty_timeout_ms
                                             : room_config()->empty_timeout_ms;
    room_boot_t *b = room__boot_new(e->id, state, e->max_participants, empty);
    rt_msg_t *m = b ? rt_sup_req_start_dyn(b) : NULL;
    uint64_t ref = 0;
    if (!m) {
        room__boot_free(b);
        return ROOM_ENOMEM;
    }
    int rc = rt_call(d->rooms, m, RT_INFINITY, &ref);
    if (rc != RT_OK) {
        room__boot_free(b); /* a start_dyn never handled does not free it */
        return ROOM_EUNAVAIL;
    }
    return track(d, ref, OP_START, e->id);
}

/* Answers from with the state of the running room e: a GET whose answer
 * is relayed (it waits behind the RoomServer's first write, so a new
 * room's creator is answered once the room is stored). */
static int answer_state(dir_t *d, entry_t *e, rt_from_t from)
{
    rt_pid_t server = room_whereis(e->id);
    rt_msg_t *get = server ? room_req_get() : NULL;
    uint64_t ref = 0;
    if (!get || rt_call(server, get, RT_DEFAULT_TIMEOUT, &ref) != RT_OK ||
        track(d, ref, OP_CREATED, e->id) != ROOM_OK) {
        answer(from, ROOM_EUNAVAIL);
        return RT_REPLIED;
    }
    ((op_t *)room_map_get_u(&d->ops, ref))->from = from;
    return RT_NOREPLY;
}

/* e runs: answer everyone waiting for it. */
static void live(dir_t *d, entry_t *e)
{
    e->state = E_LIVE;
    bool creator = e->fresh;
    while (e->waiters) {
        waiter_t *w = e->waiters;
        e->waiters = w->next;
        if (w->flags & ROOM_ENSURE_EXCLUSIVE) {
            if (creator) {
                creator = false;
                answer_state(d, e, w->from);
            } else {
                answer(w->from, ROOM_EEXIST);
            }
        } else if (w->flags & ROOM_ENSURE_STATE) {
            answer_state(d, e, w->from);
        } else {
            answer(w->from, ROOM_OK);
        }
        free(w);
    }
    e->wtail = &e->waiters;
}

/* Returns RT_REPLIED if from was answered, RT_NOREPLY if it waits. */
static int ensure(dir_t *d, rt_msg_t *req, rt_from_t from)
{
    room_ensure_t *q = req->data;
    if (!q || !room_id_valid(q->id, strlen(q->id))) {
        answer(from, ROOM_EINVAL);
        return RT_REPLIED;
    }
    entry_t *e = room_map_get_s(&d->ids, q->id);
    if (e && e->state == E_LIVE) {
        if (q->flags & ROOM_ENSURE_EXCLUSIVE)
            answer(from, ROOM_EEXIST);
        else if (q->flags & ROOM_ENSURE_STATE)
            return answer_state(d, e, from);
        else
            answer(from, ROOM_OK);
        return RT_REPLIED;
    }
    if (e && e->state == E_ENDING) {
        answer(from, ROOM_EENDED);
        return RT_REPLIED;
    }
    bool fresh_entry = !e;
    if (!e && !(e = entry_new(d, q->id, E_STARTING))) {
        answer(from, ROOM_ENOMEM);
        return RT_REPLIED;
    }
    waiter_t *w = malloc(sizeof *w);
    if (!w) {
        answer(from, ROOM_ENOMEM);
        if (fresh_entry)
            entry_remove(d, e, ROOM_ENOMEM);
        return RT_REPLIED;
    }
    w->next = NULL;
    w->from = from;
    w->flags = q->flags;
    *e->wtail = w;
    e->wtail = &w->next;
    /* The first creator's options make the room; an explicit create
     * (POST /api/rooms, which is answered 201) wins over an auto-create. */
    if ((q->flags & ROOM_ENSURE_CREATE) &&
        ((e->max_participants < 0 && e->empty_timeout_ms < 0) ||
         ((q->flags & ROOM_ENSURE_EXCLUSIVE) && !e->opts_exclusive))) {
        e->opts_exclusive = (q->flags & ROOM_ENSURE_EXCLUSIVE) != 0;
        e->max_participants = q->max_participants;
        e->empty_timeout_ms = q->empty_timeout_ms;
        if (e->max_participants < 0)
            e->max_participants = 0;
        if (e->empty_timeout_ms < 0)
            e->empty_timeout_ms = room_config()->empty_timeout_ms;
    }
    if (fresh_entry) {
        int rc = load(d, e->id, OP_LOAD);
        if (rc != ROOM_OK) {
            entry_remove(d, e, rc); /* answers the waiter, us included */
            return RT_REPLIED;
        }
    }
    return RT_NOREPLY;
}

static void loaded_for_start(dir_t *d, entry_t *e, rt_msg_t *m)
{
    store_req_t *req = NULL;
    int rc = store_reply(m, &req);
    if (rc == STORE_ENOTFOUND) {
        bool create = false;
        for (waiter_t *w = e->waiters; w; w = w->next)
            create |= (w->flags & ROOM_ENSURE_CREATE) != 0;
        if (!create) {
            entry_remove(d, e, ROOM_ENOTFOUND);
            return;
        }
        e->fresh = true;
        rc = start(d, e, NULL);
        if (rc != ROOM_OK)
            entry_remove(d, e, rc);
        return;
    }
    size_t n = 0;
    const store_room_t *r = rc == STORE_OK ? store_req_rooms(req, &n) : NULL;
    if (!r || n != 1 || r->err != STORE_OK || !r->state) {
        fprintf(stderr, "roost: room_dir: cannot load room %s: %s\n", e->id,
                store_strerror(rc != STORE_OK ? rc : r && n == 1 ? r->err : STORE_ECORRUPT));
        entry_remove(d, e, ROOM_EUNAVAIL);
        return;
    }
    if (r->ended || room_state_ended(r->state)) {
        entry_remove(d, e, ROOM_EENDED);
        return;
    }
    char *text = json_dumps(r->state, JSON_COMPACT);
    rc = text ? start(d, e, text) : ROOM_ENOMEM;
    free(text);
    if (rc != ROOM_OK)
        entry_remove(d, e, rc);
}

static void started(dir_t *d, entry_t *e, rt_msg_t *m)
{
    if ((m->flags & RT_MF_ERROR) || m->tag != RT_OK) {
        rt_reason_t *why = rt_msg_reason(m);
        fprintf(stderr, "roost: room_dir: room %s did not start: %s\n", e->id,
                why ? why->text : rt_strerror((int)(int32_t)m->tag));
        entry_remove(d, e, ROOM_EUNAVAIL);
        return;
    }
    watch_sup(d, e, (rt_pid_t)m->a);
    live(d, e);
}

/* ---- a room that gave up ----------------------------------------------------------- */

static void give_up(dir_t *d, entry_t *e)
{
    e->state = E_ENDING;
    fprintf(stderr, "roost: room %s crashed too often; ending it\n", e->id);
    if (load(d, e->id, OP_END_LOAD) != ROOM_OK)
        entry_remove(d, e, ROOM_EENDED);
}

static void end_loaded(dir_t *d, entry_t *e, rt_msg_t *m)
{
    store_req_t *req = NULL;
    int rc = store_reply(m, &req);
    size_t n = 0;
    const store_room_t *r = rc == STORE_OK ? store_req_rooms(req, &n) : NULL;
    if (!r || n != 1 || r->err != STORE_OK || !r->state || r->ended) {
        /* Never stored (it crashed before its first write), or already
         * ended: nothing to end. */
        entry_remove(d, e, ROOM_EENDED);
        return;
    }
    json_t *st = json_deep_copy(r->state);
    if (st) {
        room_state_end(st);
        room_state_bump(st);
    }
    char *text = st ? json_dumps(st, JSON_COMPACT) : NULL;
    store_req_t *put = NULL;
    rt_pid_t store = rt_whereis("store");
    uint64_t ref = 0;
    if (!text || !store ||
        store_req_put_state(&put, e->id, text, strlen(text), ROOM_STATE_SCHEMA,
                            room_state_version(st), true) != STORE_OK ||
        store_call(store, put, room_config()->store_timeout_ms, &ref) != RT_OK ||
        track(d, ref, OP_END_PUT, e->id) != ROOM_OK) {
        fprintf(stderr, "roost: room %s: cannot store its end\n", e->id);
        free(text);
        json_decref(st);
        entry_remove(d, e, ROOM_EENDED);
        return;
    }
    free(text);
    ((op_t *)room_map_get_u(&d->ops, ref))->state = st;
}

static void end_stored(dir_t *d, entry_t *e, op_t *o, rt_msg_t *m)
{
    int rc = store_reply(m, NULL);
    if (rc != STORE_OK)
        fprintf(stderr, "roost: room %s: cannot store its end: %s\n", e->id, store_strerror(rc));
    json_t *st = o->state;
    int64_t now = room_wall_ms(), created = room_state_int(st, "created_at"),
            started_at = room_state_int(st, "started_at");
    json_t *seen = NULL;
    room_state_split_seen(st, &seen);
    char *who = seen ? room_state_seen_array(seen) : NULL;
    json_decref(seen);
    history_record(e->id, now, "room_ended", NULL, "{\"reason\":\"crashed\"}");
    history_record_call(e->id, created, started_at, now, who ? who : "[]",
                        started_at ? now - started_at : 0);
    free(who);
    char topic[ROOM_ID_MAX + 16];
    if (room_topic(e->id, topic, sizeof topic))
        room__publish(topic, "room_ended", "{\"reason\":\"crashed\"}", 20, RT_NOPID);
    room__count(ROOM__STAT_GAVE_UP, 1);
    room__count(ROOM__STAT_ENDED, 1);
    entry_remove(d, e, ROOM_EENDED);
}

/* ---- list ---------------------------------------------------------------------------- */

static void gather_put(gather_t *g, const char *s, size_t n)
{
    if (!g->buf)
        return; /* out of memory earlier: answered with an error */
    if (g->len + n + 2 > g->cap) {
        size_t cap = (g->len + n + 2) * 2;
        char *b = realloc(g->buf, cap);
        if (!b) {
            free(g->buf);
            g->buf = NULL;
            return;
        }
        g->buf = b;
        g->cap = cap;
    }
    memcpy(g->buf + g->len, s, n);
    g->len += n;
}

static void gather_done(gather_t *g)
{
    if (--g->pending > 0)
        return;
    if (g->buf) {
        gather_put(g, "]", 1);
    }
    rt_buf_t *b = g->buf ? rt_buf_new(g->buf, g->len) : NULL;
    if (b) {
        room__reply_buf(g->from, ROOM_OK, 0, b);
        rt_buf_release(b);
    } else {
        answer(g->from, ROOM_ENOMEM);
    }
    free(g->buf);
    free(g);
}

/* Returns RT_REPLIED if answered now, RT_NOREPLY if gathering. */
static int list(dir_t *d, rt_from_t from)
{
    gather_t *g = calloc(1, sizeof *g);
    if (!g || !(g->buf = malloc(64))) {
        free(g);
        answer(from, ROOM_ENOMEM);
        return RT_REPLIED;
    }
    g->cap = 64;
    g->from = from;
    g->buf[g->len++] = '[';
    g->pending = 1; /* ours, released below */
    room_map_it_t it = {0};
    for (room_map_ent_t *x; (x = room_map_next(&d->ids, &it));) {
        entry_t *e = x->val;
        rt_pid_t server = e->state == E_LIVE ? room_whereis(e->id) : RT_NOPID;
        rt_msg_t *get = server ? room_req_get() : NULL;
        uint64_t ref = 0;
        if (!get || rt_call(server, get, 2000, &ref) != RT_OK ||
            track(d, ref, OP_GATHER, NULL) != ROOM_OK)
            continue; /* restarting or gone: not listed this time */
        ((op_t *)room_map_get_u(&d->ops, ref))->g = g;
        g->pending++;
    }
    bool now = g->pending == 1;
    gather_done(g);
    return now ? RT_REPLIED : RT_NOREPLY;
}

static void gathered(op_t *o, rt_msg_t *m)
{
    gather_t *g = o->g;
    rt_buf_t *b = room_reply_buf(m);
    if (b) {
        if (g->buf && g->len > 1)
            gather_put(g, ",", 1);
        gather_put(g, b->data, b->len);
    }
    gather_done(g);
}

/* ---- the process ----------------------------------------------------------------------- */

static void restore_all(dir_t *d, rt_msg_t *m)
{
    d->list_ref = 0;
    store_req_t *req = NULL;
    int rc = store_reply(m, &req);
    if (rc != STORE_OK) {
        fprintf(stderr, "roost: room_dir: cannot list live rooms: %s\n", store_strerror(rc));
        return;
    }
    size_t n = 0, started_n = 0;
    const store_room_t *rooms = store_req_rooms(req, &n);
    for (size_t i = 0; i < n; i++) {
        const store_room_t *r = &rooms[i];
        if (r->err != STORE_OK || !r->state) {
            fprintf(stderr, "roost: room_dir: room %s cannot be restored: %s\n", r->id,
                    store_strerror(r->err));
            continue;
        }
        if (room_map_get_s(&d->ids, r->id))
            continue;
        rt_pid_t server = room_whereis(r->id);
        entry_t *e = entry_new(d, r->id, server ? E_LIVE : E_STARTING);
        if (!e)
            rt_fail(rt_reason_new("room_dir: enomem"));
        if (server) {
            rt_proc_info_t info;
            if (rt_process_info(server, &info) == RT_OK)
                watch_sup(d, e, info.parent);
            continue;
        }
        char *text = json_dumps(r->state, JSON_COMPACT);
        if (!text || start(d, e, text) != ROOM_OK) {
            fprintf(stderr, "roost: room_dir: room %s cannot be restored\n", r->id);
            entry_remove(d, e, ROOM_EUNAVAIL);
        } else {
            started_n++;
        }
        free(text);
    }
    if (n)
        fprintf(stderr, "roost: restoring %zu live room%s\n", started_n,
                started_n == 1 ? "" : "s");
}

static rt_reason_t *dir_init(void *arg, void **state)
{
    dir_t *d = calloc(1, sizeof *d);
    if (!d)
        return rt_reason_new("enomem");
    d->rooms = rt_whereis(ROOM_ROOMS_NAME);
    if (!d->rooms) {
        free(d);
        return rt_reason_new("room_dir: no rooms supervisor");
    }
    d->rooms_mref = rt_monitor(d->rooms);
    store_req_t *req = NULL;
    rt_pid_t store = rt_whereis("store");
    if (store && store_req_list_live(&req) == STORE_OK &&
        store_call(store, req, RT_INFINITY, &d->list_ref) == RT_OK)
        rt_await(d->list_ref); /* restore before answering anyone */
    else
        fprintf(stderr, "roost: room_dir: no store: live rooms are not restored\n");
    *state = d;
    return NULL;
}

static void dir_terminate(void *state, rt_reason_t *reason)
{
    dir_t *d = state;
    room_map_it_t it = {0};
    for (room_map_ent_t *e; (e = room_map_next(&d->ids, &it));)
        entry_free(e->val);
    it = (room_map_it_t){0};
    /* Gathers are shared by several ops: free each once, at its last. */
    for (room_map_ent_t *e; (e = room_map_next(&d->ops, &it));) {
        op_t *o = e->val;
        if (o->g && --o->g->pending == 0) {
            free(o->g->buf);
            free(o->g);
        }
        op_free(o);
    }
    room_map_clear(&d->ids);
    room_map_clear(&d->ops);
    room_map_clear(&d->mons);
    free(d);
}

static int dir_call(void *state, rt_msg_t *req, rt_from_t from)
{
    dir_t *d = state;
    switch (req->tag) {
    case ROOM_DIR_ENSURE:
        return ensure(d, req, from);
    case ROOM_DIR_LIST:
        return list(d, from);
    default:
        answer(from, ROOM_EINVAL);
        return RT_REPLIED;
    }
}

static void dir_cast(void *state, rt_msg_t *m)
{
    dir_t *d = state;
    const char *id = m->data;
    if (!id)
        return;
    entry_t *e = room_map_get_s(&d->ids, id);
    if (m->tag == ROOM__DIR_HELLO) {
        if (!e && !(e = entry_new(d, id, E_LIVE)))
            rt_fail(rt_reason_new("room_dir: enomem"));
        /* A STARTING entry becomes live with the start's answer. */
        watch_sup(d, e, (rt_pid_t)m->a);
    } else if (m->tag == ROOM__DIR_ENDED && e) {
        e->state = E_ENDING;
        e->ended_normally = true;
        rt_msg_t *t = e->sup ? rt_sup_req_terminate(NULL, e->sup) : NULL;
        uint64_t ref = 0;
        if (t && rt_call(d->rooms, t, RT_INFINITY, &ref) == RT_OK)
            track(d, ref, OP_IGNORE, NULL);
        else if (!e->sup)
            entry_remove(d, e, ROOM_EENDED);
    }
}

static void dir_info(void *state, rt_msg_t *m)
{
    dir_t *d = state;
    if (m->kind == RT_MSG_REPLY && m->ref == d->list_ref && d->list_ref) {
        restore_all(d, m);
        return;
    }
    if (m->kind == RT_MSG_REPLY) {
        op_t *o = room_map_del_u(&d->ops, m->ref);
        if (!o)
            return;
        entry_t *e = o->id ? room_map_get_s(&d->ids, o->id) : NULL;
        switch (o->kind) {
        case OP_LOAD:
            if (e)
                loaded_for_start(d, e, m);
            break;
        case OP_START:
            if (e)
                started(d, e, m);
            break;
        case OP_CREATED: {
            rt_buf_t *b = room_reply_buf(m);
            if (b)
                room__reply_buf(o->from, ROOM_OK, 0, b);
            else
                answer(o->from, room_reply_err(m) == ROOM_OK ? ROOM_EUNAVAIL
                                                             : room_reply_err(m));
            break;
        }
        case OP_END_LOAD:
            if (e)
                end_loaded(d, e, m);
            break;
        case OP_END_PUT:
            if (e)
                end_stored(d, e, o, m);
            break;
        case OP_GATHER:
            gathered(o, m);
            break;
        case OP_IGNORE:
            break;
        }
        op_free(o);
        return;
    }
    if (m->kind == RT_MSG_DOWN) {
        if (m->ref == d->rooms_mref)
            rt_fail(rt_reason_new("room_dir: the rooms supervisor exited"));
        entry_t *e = room_map_del_u(&d->mons, m->ref);
        if (!e)
            return;
        e->mref = 0;
        e->sup = RT_NOPID;
        rt_reason_t *why = rt_msg_reason(m);
        if (e->ended_normally) {
            entry_remove(d, e, ROOM_EENDED);
        } else if (why && (rt_reason_is(why, RT_R_SHUTDOWN) || rt_reason_is(why, RT_R_NORMAL))) {
            give_up(d, e);
        }
        /* Anything else: the RoomsSupervisor restarts it; its RoomServer
         * says hello. */
    }
}

const rt_behaviour_t room_directory = RT_BEHAVIOUR(
    .name = "room_dir", .init = dir_init, .handle_call = dir_call, .handle_cast = dir_cast,
    .handle_info = dir_info, .terminate = dir_terminate);
