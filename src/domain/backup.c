/*
 * domain/backup.c — the BackupServer (design §1): holds a room's last
 * state so that a RoomServer that crashed continues where it stopped.
 *
 * It is the first child of its RoomSupervisor (rest_for_one), so it
 * outlives crashes of the RoomServer. What it holds is a room_snap_t:
 * the stored form of the state and the RoomServer's runtime (members,
 * presence refs, grace deadlines), both immutable JSON buffers the
 * RoomServer hands over by reference (ROOM__BACKUP_PUT, a cast: the room
 * never waits for its backup).
 *
 * Where the first snapshot comes from:
 *   - first start of a restored room: the state the directory read from
 *     the store (list_live) and put in the boot argument;
 *   - first start of a new room: a fresh state built from the options;
 *   - any later start (this backup crashed, or its RoomSupervisor was
 *     restarted): the store's last acknowledged state (store_call +
 *     rt_await in init, so nothing is answered before it is loaded).
 *
 * The crash reason. The BackupServer monitors the RoomServer that last
 * asked it for the state. When that one dies with an abnormal reason the
 * reason is kept and handed to the next RoomServer with the state, which
 * records room_restarted with it. The supervisor learns of the death
 * through the link before the DOWN reaches us (the runtime sends link
 * signals first), so the next RoomServer's request can arrive before the
 * DOWN: it is then held (RT_NOREPLY) until the DOWN arrives.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/room.h"
#include "domain/room_internal.h"
#include "domain/state.h"
#include "store/store.h"

typedef struct backup {
    char *id;
    int64_t max_participants, empty_timeout_ms;
    room_snap_t *snap;
    room_origin_t origin;
    uint64_t snap_version;    /* the version of snap->state (0: unknown) */
    uint64_t acked_version;   /* the last version the store acknowledged */
    uint64_t load_ref;        /* the store load in init, until answered */
    rt_pid_t server;          /* the RoomServer we watch, or RT_NOPID */
    uint64_t server_mref;
    rt_reason_t *crash;       /* its abnormal exit reason, for the next one */
    bool holding;             /* a GET waits for the DOWN of `server` */
    rt_from_t held;
} backup_t;

static void snap_free(rt_rc_t *rc)
{
    room_snap_t *s = RT_CONTAINER_OF(rc, room_snap_t, rc);
    if (s->state)
        rt_buf_release(s->state);
    if (s->runtime)
        rt_buf_release(s->runtime);
    free(s);
}

room_snap_t *room__snap_new(rt_buf_t *state, rt_buf_t *runtime)
{
    room_snap_t *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    rt_rc_init(&s->rc, snap_free);
    s->state = state;
    s->runtime = runtime;
    if (state)
        rt_buf_retain(state);
    if (runtime)
        rt_buf_retain(runtime);
    return s;
}

static void restore_free(rt_rc_t *rc)
{
    room_restore_t *r = RT_CONTAINER_OF(rc, room_restore_t, rc);
    if (r->snap)
        rt_rc_release(&r->snap->rc);
    if (r->crash)
        rt_reason_release(r->crash);
    free(r);
}

/* A snapshot of a brand-new room. */
static rt_reason_t *fresh(backup_t *b)
{
    json_t *st = room_state_new(b->id, room_wall_ms(), b->max_participants,
                                b->empty_timeout_ms / 1000);
    json_t *seen = json_object();
    rt_buf_t *pub = NULL, *stored = NULL;
    int rc = st && seen ? room_state_dump(st, seen, &pub, &stored) : ROOM_ENOMEM;
    json_decref(st);
    json_decref(seen);
    if (rc != ROOM_OK)
        return rt_reason_new("enomem");
    rt_buf_release(pub);
    b->snap = room__snap_new(stored, NULL);
    rt_buf_release(stored);
    b->origin = ROOM_FROM_NEW;
    return b->snap ? NULL : rt_reason_new("enomem");
}

/* A snapshot from stored-form text. */
static rt_reason_t *from_text(backup_t *b, const char *text, size_t len)
{
    rt_buf_t *buf = rt_buf_new(text, len);
    b->snap = buf ? room__snap_new(buf, NULL) : NULL;
    if (buf)
        rt_buf_release(buf);
    b->origin = ROOM_FROM_STORE;
    return b->snap ? NULL : rt_reason_new("enomem");
}

static void backup_free(backup_t *b)
{
    if (b->snap)
        rt_rc_release(&b->snap->rc);
    if (b->crash)
        rt_reason_release(b->crash);
    free(b->id);
    free(b);
}

static rt_reason_t *backup_init(void *arg, void **state)
{
    room_boot_t *boot = arg;
    backup_t *b = calloc(1, sizeof *b);
    if (!b || !(b->id = strdup(boot->id))) {
        free(b);
        return rt_reason_new("enomem");
    }
    b->max_participants = boot->max_participants;
    b->empty_timeout_ms = boot->empty_timeout_ms;
    uint32_t starts = atomic_fetch_add_explicit(&boot->backup_starts, 1, memory_order_relaxed);
    rt_reason_t *why = NULL;
    if (starts == 0) {
        why = boot->state ? from_text(b, boot->state, strlen(boot->state)) : fresh(b);
        /* Read once: later starts load the store's newer state. */
        free(boot->state);
        boot->state = NULL;
    } else {
        store_req_t *req = NULL;
        rt_pid_t store = rt_whereis("store");
        if (!store)
            why = rt_reason_new("backup: no store process");
        else if (store_req_load_state(&req, b->id) != STORE_OK)
            why = rt_reason_new("backup: enomem");
        else if (store_call(store, req, room_config()->store_timeout_ms, &b->load_ref) != RT_OK)
            why = rt_reason_new("backup: store call failed");
        else
            rt_await(b->load_ref);
    }
    if (why) {
        backup_free(b);
        return why;
    }
    atomic_store_explicit(&boot->backup_pid, rt_self(), memory_order_release);
    *state = b;
    return NULL;
}

static void backup_terminate(void *state, rt_reason_t *reason)
{
    backup_free(state);
}

/* Answers a GET with the snapshot and the crash reason, and watches the
 * asker. */
static void answer(backup_t *b, rt_from_t from)
{
    room_restore_t *r = malloc(sizeof *r);
    rt_msg_t *m = r ? rt_msg_new(ROOM_OK) : NULL;
    if (!m) {
        free(r);
        rt_reply_val(from, (uint32_t)(int32_t)ROOM_ENOMEM, 0, 0);
        return;
    }
    rt_rc_init(&r->rc, restore_free);
    rt_rc_retain(&b->snap->rc);
    r->snap = b->snap;
    r->origin = b->origin;
    /* Known durable: loaded from the store, or the version the RoomServer
     * saw acknowledged. The next RoomServer need not write it again. */
    r->acked = b->origin == ROOM_FROM_STORE ||
               (b->origin == ROOM_FROM_BACKUP && b->snap_version &&
                b->snap_version == b->acked_version);
    r->crash = b->crash; /* moved */
    b->crash = NULL;
    rt_msg_set_data(m, &r->rc, RT_OWN_RC);
    rt_reply(from, m);
    b->server = from.pid;
    b->server_mref = rt_monitor(from.pid);
}

static int backup_call(void *state, rt_msg_t *req, rt_from_t from)
{
    backup_t *b = state;
    if (req->tag != ROOM__BACKUP_GET) {
        rt_reply_val(from, (uint32_t)(int32_t)ROOM_EINVAL, 0, 0);
        return RT_REPLIED;
    }
    if (b->holding) /* two RoomServers at once cannot happen: let it fail */
        rt_fail(rt_reason_new("backup: a second RoomServer asked for the state"));
    if (b->server != RT_NOPID && b->server != from.pid) {
        /* The previous one's DOWN is on its way (see the top comment). */
        b->holding = true;
        b->held = from;
        return RT_NOREPLY;
    }
    answer(b, from);
    return RT_REPLIED;
}

static void backup_cast(void *state, rt_msg_t *m)
{
    backup_t *b = state;
    if (m->tag == ROOM__BACKUP_ACKED) {
        b->acked_version = m->a;
        return;
    }
    if (m->tag != ROOM__BACKUP_PUT || !m->data || m->own != RT_OWN_RC)
        return;
    room_snap_t *in = (room_snap_t *)m->data;
    if (in->state) /* a put of the runtime only keeps the state's version */
        b->snap_version = m->a;
    /* A put may carry only one of the two parts: keep the other. */
    room_snap_t *s = room__snap_new(in->state ? in->state : b->snap->state,
                                    in->runtime ? in->runtime : b->snap->runtime);
    RT_ASSERT(s != NULL); /* out of memory: restart from the store */
    rt_rc_release(&b->snap->rc);
    b->snap = s;
    b->origin = ROOM_FROM_BACKUP;
}

static void loaded(backup_t *b, rt_msg_t *m)
{
    b->load_ref = 0;
    store_req_t *req = NULL;
    int rc = store_reply(m, &req);
    if (rc == STORE_ENOTFOUND) {
        rt_reason_t *why = fresh(b);
        if (why)
            rt_fail(why);
        return;
    }
    size_t n = 0;
    const store_room_t *r = rc == STORE_OK ? store_req_rooms(req, &n) : NULL;
    if (!r || n != 1 || r->err != STORE_OK || !r->state)
        rt_fail(rt_reason_fmt("backup: cannot load room %s: %s", b->id,
                              store_strerror(rc != STORE_OK ? rc : r && n == 1 ? r->err
                                                                              : STORE_ECORRUPT)));
    json_t *st = json_incref(r->state);
    if (r->ended)
        room_state_end(st);
    char *text = json_dumps(st, JSON_COMPACT);
    json_decref(st);
    if (!text)
        rt_fail(rt_reason_new("backup: enomem"));
    rt_reason_t *why = from_text(b, text, strlen(text));
    free(text);
    if (why)
        rt_fail(why);
}

static void backup_info(void *state, rt_msg_t *m)
{
    backup_t *b = state;
    if (m->kind == RT_MSG_REPLY && m->ref == b->load_ref && b->load_ref) {
        loaded(b, m);
        return;
    }
    if (m->kind == RT_MSG_DOWN && m->ref == b->server_mref && b->server_mref) {
        rt_reason_t *why = rt_msg_reason(m);
        if (why && !rt_reason_is(why, RT_R_NORMAL) && !rt_reason_is(why, RT_R_SHUTDOWN)) {
            if (b->crash)
                rt_reason_release(b->crash);
            b->crash = rt_reason_retain(why);
        }
        b->server = RT_NOPID;
        b->server_mref = 0;
        if (b->holding) {
            b->holding = false;
            answer(b, b->held);
        }
    }
}

static size_t backup_memory(const void *state)
{
    const backup_t *b = state;
    size_t n = sizeof *b;
    if (b->snap)
        n += sizeof *b->snap + (b->snap->state ? b->snap->state->len : 0) +
             (b->snap->runtime ? b->snap->runtime->len : 0);
    return n;
}

const rt_behaviour_t room_backup_server = RT_BEHAVIOUR(
    .name = "room_backup", .init = backup_init, .handle_call = backup_call,
    .handle_cast = backup_cast, .handle_info = backup_info, .terminate = backup_terminate,
    .memory = backup_memory);
