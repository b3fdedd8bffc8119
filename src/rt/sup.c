/*
 * sup.c — OTP supervisors on roost's runtime (rt_sup.h, design §1 and §3).
 *
 * A supervisor is an ordinary process running rt_sup_behaviour, written
 * only against the public API of rt.h: it knows nothing of mailboxes or
 * schedulers. It traps exits, keeps its children in start order, and turns
 * OTP's synchronous supervisor loop into a small state machine, because a
 * callback may not block:
 *
 *   - Every multi-step job (start the initial children, restart by
 *     strategy, stop one child, stop them all) is an *operation* (op_t).
 *     Each step sends something (rt_spawn with an ACK, an exit signal with
 *     a monitor, a call) and then rt_await()s the ref of its answer, so the
 *     next message the supervisor handles is that answer: nothing else
 *     (calls, other children's EXITs) is handled until the operation is
 *     over, exactly like OTP's supervisor blocking in its receive.
 *   - Between operations the supervisor handles calls (RT_SUP_*) and EXITs.
 *
 * Rules this file relies on (numbered so the code can cite them):
 *   R1. At most one operation runs at a time (s->op); while it runs, the
 *       only message handed to the supervisor is the one carrying op->ref.
 *   R1'. Except the final concurrent stop of dynamic children (PH_STOPALL):
 *       it does not rt_await, because their DOWNs come in any order, so
 *       everything is handed over; it takes the DOWNs of its monitors and
 *       its timer, answers calls with RT_ESTATE and ignores the rest (the
 *       supervisor is about to exit anyway).
 *   R2. kids[] is in start order (static supervisors). Children stop in
 *       reverse order. Only an operation's own step removes a child while
 *       the operation runs, and only at or above the cursor, so indexes
 *       below the cursor stay valid.
 *   R3. A child's pid is RT_NOPID unless it is running. For dynamic
 *       children the pid index (dyn_t) holds exactly the running ones.
 *   R4. An EXIT from a pid that is not a current child is stale (a child
 *       that failed in init, one already stopped, an old incarnation) and
 *       is ignored; an EXIT from the parent means "shut down with this
 *       reason", as in gen_server.
 *   R5. The supervisor owns every child's arg (from its init, or from the
 *       moment it handles a start request) and calls arg_free exactly once
 *       when it forgets the child: deleted, removed (temporary exit,
 *       dynamic child not restarted or terminated, failed start_child),
 *       failed init, or supervisor exit.
 *
 * Parent: the process that spawned the supervisor, as rt_process_info()
 * shows it during init (rt_spawn_opts_t.parent; by default the caller).
 * rt_sup_start_sync spawns from a private inbox that is not linked to the
 * supervisor and is closed at once, so such a supervisor has no living
 * parent and only RT_SUP_STOP (or kill) stops it.
 *
 * Memory: an idle supervisor holds sup_t, the kids[] array and one small
 * string block per static child; the restart ring (restart timestamps)
 * and the operation record are allocated only when a restart or an
 * operation happens, and freed or shrunk afterwards.
 */
#include "rt/rt_sup.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Internal message tags (never seen by other behaviours) ------------- */

#define TAG_SYNC      0x535000F1u /* call: answered once the initial children run */
#define TAG_RETRY     0x535000F2u /* info to self: retry a restart that failed */
#define TAG_STOP_TMO  0x535000F3u /* timer: a child's shutdown time is up */

/* Markers in `a` of a RT_SUP_START_CHILD request: which form `data` has. */
#define REQ_SPEC 0x53504543u /* data: spec_box_t (RT_OWN_RC) */
#define REQ_DYN  0x44594e41u /* data: the dynamic child's arg (RT_OWN_NONE) */

/* ---- Children ------------------------------------------------------------ */

enum {
    CF_SUPERVISOR = 0x01, /* is_supervisor: shutdown 0 means infinity */
    CF_NAMED      = 0x02, /* the name follows the id in `id` */
    CF_RESTARTING = 0x04, /* a restart failed; a TAG_RETRY is on its way */
};

typedef struct child {
    rt_pid_t pid;                 /* RT_NOPID unless running (R3) */
    const rt_behaviour_t *b;
    void *arg;                    /* owned (R5) */
    void (*arg_free)(void *arg);
    char *id;                     /* "id\0name\0" in one allocation; NULL for dynamic children */
    uint32_t restarts;            /* automatic restarts so far */
    int32_t shutdown_ms;
    uint8_t spawn_flags;          /* only RT_SPAWN_TRAP_EXIT is kept */
    uint8_t restart;              /* rt_restart_t */
    uint8_t flags;                /* CF_* */
} child_t;

/* simple_one_for_one: the template and an index pid -> kids[] slot, so an
 * EXIT among 100,000 rooms is found in O(1). Open addressing with linear
 * probing; a slot holds kid index + 1, 0 = empty; keys are read from
 * kids[], so there is nothing to keep in sync but the index itself. */
typedef struct dyn {
    child_t tmpl;
    uint32_t *slot;
    uint32_t mask;                /* slots - 1; 0 while there is no table */
} dyn_t;

/* Restart times (ms) within the period, oldest first: a ring whose
 * capacity is a power of two. Pushing is O(1) amortised (doubling), and
 * dropping expired entries is O(1) per entry, each entry dropped once. */
typedef struct ring {
    uint32_t head, len, cap;
    uint64_t at[];
} ring_t;

/* ---- Operations ---------------------------------------------------------- */

enum op_kind {
    OP_BOOT,          /* start the initial children; failure -> OP_SHUTDOWN */
    OP_START,         /* start_child / start_dyn call */
    OP_RESTART_CHILD, /* restart_child call */
    OP_TERMINATE,     /* terminate_child call */
    OP_RESTART,       /* automatic restart by strategy */
    OP_SHUTDOWN,      /* stop everything, then exit with op->reason */
};

enum op_phase {
    PH_STOP,          /* stop kids[lo, cur) in reverse order */
    PH_STOPALL,       /* dynamic children: all at once, DOWNs in any order (R1') */
    PH_START,         /* start kids[cur, hi) in order */
};

enum op_wait {
    W_NONE,
    W_DOWN,           /* the child being stopped: DOWN, or its shutdown timer */
    W_ACK,            /* the child being started: its init acknowledgement */
    W_SYNC,           /* a supervisor child: the answer to TAG_SYNC */
    W_SYNC_DOWN,      /* a supervisor child that died before TAG_SYNC was sent */
    W_DOWNS,          /* PH_STOPALL: any of the children's DOWNs, or the timer */
};

typedef struct op {
    uint8_t kind, phase, wait;
    bool killed;              /* `kill` already sent to the child(ren) being stopped */
    uint32_t lo, hi, cur;     /* children range and cursor, see R2 */
    uint64_t ref;             /* what rt_await waits for (R1); PH_STOPALL: its timer */
    uint64_t mref;            /* monitor of the child being stopped or started */
    uint64_t timer;           /* shutdown timer, 0 if none */
    uint64_t *mrefs;          /* PH_STOPALL: one monitor per child, 0 = done */
    uint32_t left;            /* PH_STOPALL: children not yet DOWN */
    rt_pid_t pid;             /* the child being started */
    rt_from_t from;           /* the caller to answer; all 0 if none */
    rt_reason_t *reason;      /* OP_SHUTDOWN: exit reason (owned) */
} op_t;

typedef struct sup {
    rt_pid_t parent;
    child_t *kids;
    uint32_t n, cap;
    uint32_t intensity, period_ms;
    uint8_t strategy;
    bool in_init;             /* op_done must not rt_stop from init */
    ring_t *ring;             /* lazily, on the first restart */
    op_t *op;                 /* lazily, while an operation runs */
    dyn_t *dyn;               /* simple_one_for_one only */
    rt_reason_t *init_fail;   /* set by op_done while in_init */
} sup_t;

/* The request box of RT_SUP_START_CHILD for static supervisors: it owns a
 * copy of the spec and, until the supervisor takes it, the spec's arg, so
 * a request that is never handled (dead supervisor) still frees arg. */
typedef struct spec_box {
    rt_rc_t rc;
    rt_child_spec_t spec;
    char str[];
} spec_box_t;

static void op_run(sup_t *s);
static void shutdown_begin(sup_t *s, rt_reason_t *reason, rt_from_t from);

/* ---- Small helpers ------------------------------------------------------- */

static const char *child_id(const child_t *c) { return c->id ? c->id : ""; }

static const char *child_name(const child_t *c)
{
    return (c->flags & CF_NAMED) ? c->id + strlen(c->id) + 1 : NULL;
}

static int child_shutdown(const child_t *c)
{
    if (c->shutdown_ms == RT_SHUTDOWN_BRUTAL && (c->flags & CF_SUPERVISOR))
        return RT_SHUTDOWN_INFINITY;
    return c->shutdown_ms < 0 ? RT_SHUTDOWN_INFINITY : c->shutdown_ms;
}

static bool must_restart(uint8_t restart, const rt_reason_t *why)
{
    switch (restart) {
    case RT_PERMANENT:
        return true;
    case RT_TRANSIENT:
        return why && !rt_reason_is(why, RT_R_NORMAL) && !rt_reason_is(why, RT_R_SHUTDOWN);
    default:
        return false;
    }
}

/* Fills c from spec (strings copied). Returns RT_OK or RT_ENOMEM, in which
 * case c owns nothing. The arg is not copied: c just points at it. */
static int child_from_spec(child_t *c, const rt_child_spec_t *spec)
{
    memset(c, 0, sizeof *c);
    size_t idlen = strlen(spec->id), namelen = spec->name ? strlen(spec->name) : 0;
    c->id = malloc(idlen + 1 + (spec->name ? namelen + 1 : 0));
    if (!c->id)
        return RT_ENOMEM;
    memcpy(c->id, spec->id, idlen + 1);
    if (spec->name) {
        memcpy(c->id + idlen + 1, spec->name, namelen + 1);
        c->flags |= CF_NAMED;
    }
    c->b = spec->behaviour;
    c->arg = spec->arg;
    c->arg_free = spec->arg_free;
    c->restart = (uint8_t)spec->restart;
    c->shutdown_ms = spec->shutdown_ms;
    c->spawn_flags = (uint8_t)(spec->spawn_flags & RT_SPAWN_TRAP_EXIT);
    if (spec->is_supervisor)
        c->flags |= CF_SUPERVISOR;
    return RT_OK;
}

/* Forgets what c owns (R5). */
static void child_release(child_t *c)
{
    if (c->arg_free && c->arg)
        c->arg_free(c->arg);
    c->arg = NULL;
    free(c->id);
    c->id = NULL;
}

static bool spec_ok(const rt_child_spec_t *c)
{
    return c && c->id && c->behaviour && c->behaviour->init &&
           (unsigned)c->restart <= RT_TEMPORARY && c->shutdown_ms >= -1;
}

static void reply(rt_from_t from, int err, rt_pid_t pid, rt_reason_t *why /* taken */)
{
    if (!from.pid && !from.ref) { /* no caller to answer */
        if (why)
            rt_reason_release(why);
        return;
    }
    rt_msg_t *m = rt_msg_new((uint32_t)(int32_t)err);
    if (!m) {
        /* Cannot say why; say at least that it failed. */
        if (why)
            rt_reason_release(why);
        rt_reply_val(from, (uint32_t)(int32_t)err, pid, 0);
        return;
    }
    m->a = pid;
    if (why)
        rt_msg_set_data(m, why, RT_OWN_RC);
    rt_reply(from, m);
}

/* ---- Dynamic children's pid index ---------------------------------------- */

static uint32_t pid_hash(rt_pid_t p)
{
    p ^= p >> 33;
    p *= 0xff51afd7ed558ccdULL;
    p ^= p >> 33;
    return (uint32_t)p;
}

/* The slot holding pid, or -1. */
static long idx_slot(const sup_t *s, rt_pid_t pid)
{
    const dyn_t *d = s->dyn;
    if (!d->mask)
        return -1;
    for (uint32_t j = pid_hash(pid) & d->mask;; j = (j + 1) & d->mask) {
        uint32_t v = d->slot[j];
        if (!v)
            return -1;
        if (s->kids[v - 1].pid == pid)
            return (long)j;
    }
}

static void idx_put(sup_t *s, uint32_t i)
{
    dyn_t *d = s->dyn;
    uint32_t j = pid_hash(s->kids[i].pid) & d->mask;
    while (d->slot[j])
        j = (j + 1) & d->mask;
    d->slot[j] = i + 1;
}

/* Backward-shift deletion: keeps every probe chain unbroken. */
static void idx_del(sup_t *s, rt_pid_t pid)
{
    dyn_t *d = s->dyn;
    long at = idx_slot(s, pid);
    if (at < 0)
        return;
    uint32_t j = (uint32_t)at, k = j;
    d->slot[j] = 0;
    for (;;) {
        k = (k + 1) & d->mask;
        if (!d->slot[k])
            return;
        uint32_t home = pid_hash(s->kids[d->slot[k] - 1].pid) & d->mask;
        /* Leave the entry where it is if its home lies cyclically in (j, k]. */
        bool stays = j <= k ? (home > j && home <= k) : (home > j || home <= k);
        if (!stays) {
            d->slot[j] = d->slot[k];
            d->slot[k] = 0;
            j = k;
        }
    }
}

/* Makes room for `want` running children at load <= 1/2, so idx_put never
 * allocates (a running child must always be findable, R3). */
static int idx_reserve(sup_t *s, uint32_t want)
{
    dyn_t *d = s->dyn;
    uint32_t slots = d->mask ? d->mask + 1 : 0;
    if ((uint64_t)want * 2 <= slots)
        return RT_OK;
    uint32_t ns = slots ? slots : 8;
    while ((uint64_t)ns < (uint64_t)want * 2) {
        if (ns > (UINT32_MAX >> 2))
            return RT_ENOMEM;
        ns *= 2;
    }
    uint32_t *t = calloc(ns, sizeof *t);
    if (!t)
        return RT_ENOMEM;
    free(d->slot);
    d->slot = t;
    d->mask = ns - 1;
    for (uint32_t i = 0; i < s->n; i++)
        if (s->kids[i].pid)
            idx_put(s, i);
    return RT_OK;
}

/* ---- Children table --------------------------------------------------- */

static void set_pid(sup_t *s, uint32_t i, rt_pid_t pid)
{
    if (s->dyn && s->kids[i].pid)
        idx_del(s, s->kids[i].pid);
    s->kids[i].pid = pid;
    if (s->dyn && pid)
        idx_put(s, i);
}

static long find_pid(const sup_t *s, rt_pid_t pid)
{
    if (!pid)
        return -1;
    if (s->dyn) {
        long j = idx_slot(s, pid);
        return j < 0 ? -1 : (long)s->dyn->slot[j] - 1;
    }
    for (uint32_t i = 0; i < s->n; i++)
        if (s->kids[i].pid == pid)
            return (long)i;
    return -1;
}

static long find_id(const sup_t *s, const char *id)
{
    if (s->dyn || !id)
        return -1;
    for (uint32_t i = 0; i < s->n; i++)
        if (strcmp(s->kids[i].id, id) == 0)
            return (long)i;
    return -1;
}

/* Appends a slot for a new child (zeroed). Returns its index or -1. */
static long kids_append(sup_t *s)
{
    if (s->n == s->cap) {
        uint32_t nc = s->cap ? s->cap * 2 : 2;
        child_t *k = realloc(s->kids, (size_t)nc * sizeof *k);
        if (!k)
            return -1;
        s->kids = k;
        s->cap = nc;
    }
    memset(&s->kids[s->n], 0, sizeof s->kids[0]);
    return (long)s->n++;
}

/* Removes child i and forgets what it owned (R5). Static children keep
 * their order; dynamic ones are swap-removed (their order means nothing). */
static void remove_child(sup_t *s, uint32_t i)
{
    child_t *c = &s->kids[i];
    if (c->pid)
        set_pid(s, i, RT_NOPID);
    child_release(c);
    uint32_t last = s->n - 1;
    if (s->dyn) {
        if (i != last) {
            if (s->kids[last].pid) {
                long j = idx_slot(s, s->kids[last].pid);
                s->dyn->slot[j] = i + 1;
            }
            s->kids[i] = s->kids[last];
        }
    } else {
        memmove(&s->kids[i], &s->kids[i + 1], (size_t)(last - i) * sizeof *c);
    }
    s->n--;
    /* Give memory back after a crowd of dynamic children left. */
    if (s->cap > 16 && s->n < s->cap / 4) {
        child_t *k = realloc(s->kids, (size_t)(s->cap / 2) * sizeof *k);
        if (k) {
            s->kids = k;
            s->cap /= 2;
        }
    }
}

static uint32_t running(const sup_t *s)
{
    uint32_t r = 0;
    for (uint32_t i = 0; i < s->n; i++)
        r += s->kids[i].pid != RT_NOPID;
    return r;
}

/* ---- Restart intensity ----------------------------------------------------
 * OTP: keep the restart times not older than period, add now, and the
 * supervisor gives up when more than `intensity` remain. */

static int ring_resize(sup_t *s, uint32_t ncap)
{
    ring_t *r = s->ring;
    ring_t *nr = malloc(sizeof *nr + (size_t)ncap * sizeof nr->at[0]);
    if (!nr)
        return RT_ENOMEM;
    nr->head = 0;
    nr->len = r ? r->len : 0;
    nr->cap = ncap;
    for (uint32_t k = 0; k < nr->len; k++)
        nr->at[k] = r->at[(r->head + k) & (r->cap - 1)];
    free(r);
    s->ring = nr;
    return RT_OK;
}

/* Records a restart now. Returns 0 if it may go ahead, 1 if the intensity
 * is exceeded, RT_ENOMEM if it could not be counted. */
static int note_restart(sup_t *s)
{
    if (s->intensity == 0)
        return 1;
    uint64_t now = rt_now_ms();
    uint64_t oldest = now >= s->period_ms ? now - s->period_ms : 0;
    ring_t *r = s->ring;
    if (r) {
        while (r->len && r->at[r->head] < oldest) {
            r->head = (r->head + 1) & (r->cap - 1);
            r->len--;
        }
        /* Shrink once a burst is over, so idle supervisors stay small. */
        if (r->cap > 4 && r->len <= r->cap / 4)
            (void)ring_resize(s, r->cap / 2);
    }
    r = s->ring;
    if (!r || r->len == r->cap) {
        if (ring_resize(s, r ? r->cap * 2 : 4) != RT_OK)
            return RT_ENOMEM;
        r = s->ring;
    }
    r->at[(r->head + r->len) & (r->cap - 1)] = now;
    r->len++;
    return r->len > s->intensity ? 1 : 0;
}

/* ---- Operations ------------------------------------------------------------ */

static op_t *op_begin(sup_t *s, uint8_t kind, uint8_t phase, uint32_t lo, uint32_t hi)
{
    op_t *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->kind = kind;
    op->phase = phase;
    op->lo = lo;
    op->hi = hi;
    op->cur = phase == PH_START ? lo : hi;
    s->op = op;
    return op;
}

static void op_end(sup_t *s)
{
    op_t *op = s->op;
    if (!op)
        return;
    if (op->timer)
        rt_cancel_timer(op->timer);
    if (op->reason)
        rt_reason_release(op->reason);
    free(op->mrefs);
    free(op);
    s->op = NULL;
}

/* Last resort when even an operation record cannot be allocated: kill the
 * children (reverse order, without waiting) and exit. */
static void emergency_exit(sup_t *s, rt_reason_t *reason /* taken */)
{
    for (uint32_t i = s->n; i-- > 0;)
        if (s->kids[i].pid) {
            rt_unlink(s->kids[i].pid);
            rt_exit(s->kids[i].pid, RT_KILL);
            set_pid(s, i, RT_NOPID);
        }
    if (s->in_init) {
        if (s->init_fail)
            rt_reason_release(s->init_fail);
        s->init_fail = reason;
    } else {
        rt_stop(reason);
    }
}

static void await_ref(op_t *op, uint8_t wait, uint64_t ref)
{
    op->wait = wait;
    op->ref = ref;
    rt_await(ref);
}

/* The operation is over and succeeded (or, for OP_SHUTDOWN, is over). */
static void op_done(sup_t *s)
{
    op_t *op = s->op;
    switch (op->kind) {
    case OP_START:
    case OP_RESTART_CHILD:
        reply(op->from, RT_OK, op->pid, NULL);
        break;
    case OP_TERMINATE:
        reply(op->from, RT_OK, RT_NOPID, NULL);
        break;
    case OP_SHUTDOWN: {
        rt_reason_t *why = op->reason;
        op->reason = NULL;
        if (s->in_init) {
            s->init_fail = why;
        } else {
            reply(op->from, RT_OK, RT_NOPID, NULL);
            rt_stop(why);
        }
        break;
    }
    default:
        break;
    }
    op_end(s);
}

/* A start step failed with why (taken). */
static void start_failed(sup_t *s, rt_reason_t *why)
{
    op_t *op = s->op;
    uint32_t i = op->cur;
    switch (op->kind) {
    case OP_BOOT:
        /* Stop the children already started (kids[0, i)), then exit with the
         * child's reason: the supervisor's start fails with it. */
        op->kind = OP_SHUTDOWN;
        op->reason = why;
        op->phase = PH_STOP;
        op->lo = 0;
        op->hi = op->cur = i;
        op_run(s);
        return;
    case OP_START:
        remove_child(s, i); /* a failed start_child leaves no spec behind (OTP) */
        reply(op->from, RT_EEXIT, RT_NOPID, why);
        break;
    case OP_RESTART_CHILD:
        reply(op->from, RT_EEXIT, RT_NOPID, why);
        break;
    case OP_RESTART:
        /* OTP's try_again: the later children of the range stay stopped, and
         * the restart is retried (and counted) from a fresh message, so
         * calls and exits queued meanwhile are seen first. */
        s->kids[i].flags |= CF_RESTARTING;
        rt_reason_release(why);
        if (rt_send(rt_self(), TAG_RETRY, 0, 0) != RT_OK) {
            op_end(s);
            emergency_exit(s, rt_reason_new("enomem"));
            return;
        }
        break;
    default:
        rt_reason_release(why);
        break;
    }
    op_end(s);
}

/* Child i is running as op->pid. */
static void start_ok(sup_t *s)
{
    op_t *op = s->op;
    child_t *c = &s->kids[op->cur];
    set_pid(s, op->cur, op->pid);
    c->flags &= (uint8_t)~CF_RESTARTING;
    if (op->kind == OP_RESTART) {
        c->restarts++;
        rt_note_restart();
    }
    op->mref = 0;
    op->cur++;
}

/* Spawns kids[op->cur], linked, and awaits its ACK. Returns RT_OK (awaiting)
 * or an error with *why set (nothing started). */
static int start_step(sup_t *s, rt_reason_t **why)
{
    op_t *op = s->op;
    child_t *c = &s->kids[op->cur];
    bool is_sup = c->b == &rt_sup_behaviour;
    rt_spawn_opts_t o = {0};
    /* A child supervisor is also monitored, to learn why it died if it
     * fails while starting its own children (after its init ACK). */
    o.flags = RT_SPAWN_LINK | RT_SPAWN_ACK | c->spawn_flags |
              (is_sup ? RT_SPAWN_MONITOR | RT_SPAWN_TRAP_EXIT : 0);
    o.name = child_name(c);
    o.restarts = c->restarts + (op->kind == OP_RESTART);
    if (s->dyn && idx_reserve(s, s->n) != RT_OK) {
        *why = rt_reason_new("enomem");
        return RT_ENOMEM;
    }
    rt_pid_t pid = RT_NOPID;
    int err = rt_spawn(c->b, c->arg, &o, &pid);
    if (err != RT_OK) {
        *why = rt_reason_fmt("spawn: %s", rt_strerror(err));
        return err;
    }
    op->pid = pid;
    op->mref = is_sup ? o.monitor_ref : 0;
    await_ref(op, W_ACK, o.ack_ref);
    return RT_OK;
}

/* Sends exit(shutdown) (or kill) to kids[op->cur] and awaits its DOWN. */
static void stop_step(sup_t *s)
{
    op_t *op = s->op;
    child_t *c = &s->kids[op->cur];
    int sd = child_shutdown(c);
    op->mref = rt_monitor(c->pid);
    /* Unlinked, its death sends no EXIT: the DOWN is the one answer. */
    rt_unlink(c->pid);
    op->killed = false;
    op->timer = 0;
    if (sd == RT_SHUTDOWN_BRUTAL) {
        rt_exit(c->pid, RT_KILL);
        op->killed = true;
    } else {
        rt_exit(c->pid, RT_SHUTDOWN);
        if (sd > 0) {
            rt_msg_t *t = rt_msg_new(TAG_STOP_TMO);
            op->timer = t ? rt_send_after_ref(sd, rt_self(), t, op->mref) : 0;
            if (!op->timer) { /* no timer, no bound: kill now */
                rt_exit(c->pid, RT_KILL);
                op->killed = true;
            }
        }
    }
    await_ref(op, W_DOWN, op->mref);
}

/* Kills every child PH_STOPALL is still waiting for. */
static void stopall_kill(sup_t *s)
{
    op_t *op = s->op;
    for (uint32_t j = 0; j < op->hi; j++)
        if (op->mrefs[j])
            rt_exit(s->kids[j].pid, RT_KILL);
    op->killed = true;
}

/* Dynamic children have no order: every running one gets exit(shutdown)
 * at once (as in OTP), then one timer bounds them all. Their DOWNs are
 * taken in whatever order they come (R1'): awaiting them one by one would
 * need rt_await to find a DOWN that arrived while awaiting another. Returns
 * false (nothing done) if the monitor table cannot be allocated. */
static bool stopall_begin(sup_t *s)
{
    op_t *op = s->op;
    op->mrefs = calloc(s->n ? s->n : 1, sizeof *op->mrefs);
    if (!op->mrefs)
        return false; /* the caller falls back to one at a time */
    int sd = child_shutdown(&s->dyn->tmpl);
    op->phase = PH_STOPALL;
    op->lo = op->cur = 0;
    op->hi = s->n;
    op->left = 0;
    op->killed = sd == RT_SHUTDOWN_BRUTAL;
    for (uint32_t i = 0; i < s->n; i++) {
        rt_pid_t pid = s->kids[i].pid;
        if (!pid)
            continue;
        op->mrefs[i] = rt_monitor(pid);
        rt_unlink(pid);
        rt_exit(pid, op->killed ? RT_KILL : RT_SHUTDOWN);
        op->left++;
    }
    op->wait = W_DOWNS;
    op->ref = 0;
    op->timer = 0;
    if (op->left && sd > 0) {
        rt_msg_t *t = rt_msg_new(TAG_STOP_TMO);
        op->timer = t ? rt_send_after(sd, rt_self(), t) : 0;
        op->ref = op->timer; /* rt_send_after's message carries its handle */
        if (!op->timer)
            stopall_kill(s);
    }
    return true;
}

/* PH_STOPALL: a message while collecting DOWNs (R1'). */
static void stopall_msg(sup_t *s, rt_msg_t *m)
{
    op_t *op = s->op;
    if (m->kind == RT_MSG_TIMER && m->ref && m->ref == op->ref) {
        op->timer = 0;
        stopall_kill(s);
        return;
    }
    if (m->kind != RT_MSG_DOWN)
        return;
    long i = find_pid(s, m->from);
    if (i < 0 || op->mrefs[i] != m->ref)
        return;
    op->mrefs[i] = 0;
    set_pid(s, (uint32_t)i, RT_NOPID);
    if (--op->left == 0)
        op_run(s);
}

/* Drives the current operation until it awaits something or is over. */
static void op_run(sup_t *s)
{
    op_t *op = s->op;
    rt_reason_t *why = NULL;
    for (;;) {
        switch (op->phase) {
        case PH_STOP:
            while (op->cur > op->lo) {
                op->cur--;
                if (s->kids[op->cur].pid) {
                    stop_step(s);
                    return;
                }
            }
            if (op->kind != OP_RESTART) {
                op_done(s);
                return;
            }
            op->phase = PH_START;
            op->cur = op->lo;
            break;
        case PH_STOPALL:
            if (op->left)
                return;
            op_done(s);
            return;
        case PH_START:
            while (op->cur < op->hi && s->kids[op->cur].pid)
                op->cur++;
            if (op->cur >= op->hi) {
                op_done(s);
                return;
            }
            if (start_step(s, &why) == RT_OK)
                return;
            start_failed(s, why);
            return;
        }
    }
}

/* The message carrying op->ref arrived (R1). */
static void op_msg(sup_t *s, rt_msg_t *m)
{
    op_t *op = s->op;
    switch (op->wait) {
    case W_DOWN:
        if (m->kind == RT_MSG_TIMER) {
            /* Shutdown time is up: kill it. */
            op->timer = 0;
            rt_exit(s->kids[op->cur].pid, RT_KILL);
            op->killed = true;
            await_ref(op, W_DOWN, op->ref);
            return;
        }
        if (m->kind != RT_MSG_DOWN)
            break;
        if (op->timer) {
            rt_cancel_timer(op->timer); /* a timer that already fired is stale: ignored later */
            op->timer = 0;
        }
        set_pid(s, op->cur, RT_NOPID);
        /* A stopped temporary child is forgotten (OTP); so is a dynamic
         * child stopped on request. Both sit at the cursor (R2). */
        if ((op->kind == OP_RESTART || op->kind == OP_TERMINATE) &&
            (s->kids[op->cur].restart == RT_TEMPORARY || s->dyn)) {
            remove_child(s, op->cur);
            op->hi--;
        }
        op->wait = W_NONE;
        op_run(s);
        return;
    case W_ACK:
        if (m->kind != RT_MSG_ACK)
            break;
        if (m->flags & RT_MF_ERROR) {
            rt_reason_t *why = rt_msg_reason(m);
            why = why ? rt_reason_retain(why) : rt_reason_new("init_failed");
            if (op->mref)
                rt_demonitor(op->mref);
            op->wait = W_NONE;
            start_failed(s, why);
            return;
        }
        if (op->mref) {
            /* A supervisor acknowledges its init before it has started its
             * own children; TAG_SYNC is answered once it has. */
            uint64_t cref = 0;
            rt_msg_t *q = rt_msg_new(TAG_SYNC);
            int err = q ? rt_call(op->pid, q, RT_INFINITY, &cref) : RT_ENOMEM;
            if (err == RT_OK) {
                await_ref(op, W_SYNC, cref);
                return;
            }
            if (err == RT_ENOPROC) {
                await_ref(op, W_SYNC_DOWN, op->mref);
                return;
            }
            /* Cannot ask: take it as started; if it fails it will be
             * restarted like any child. */
            rt_demonitor(op->mref);
        }
        start_ok(s);
        op->wait = W_NONE;
        op_run(s);
        return;
    case W_SYNC:
        if (m->kind != RT_MSG_REPLY)
            break;
        if (m->flags & RT_MF_ERROR) {
            rt_reason_t *why = rt_msg_reason(m);
            why = why ? rt_reason_retain(why) : rt_reason_new("init_failed");
            rt_demonitor(op->mref);
            op->wait = W_NONE;
            start_failed(s, why);
            return;
        }
        rt_demonitor(op->mref);
        start_ok(s);
        op->wait = W_NONE;
        op_run(s);
        return;
    case W_SYNC_DOWN: {
        if (m->kind != RT_MSG_DOWN)
            break;
        rt_reason_t *why = rt_msg_reason(m);
        op->wait = W_NONE;
        start_failed(s, why ? rt_reason_retain(why) : rt_reason_new("init_failed"));
        return;
    }
    default:
        break;
    }
    /* A message with our ref but of an unexpected kind: keep waiting. */
    rt_await(op->ref);
}

/* ---- Starting operations ------------------------------------------------- */

/* Stops every child (reverse order) and exits with reason (taken); answers
 * from (if any) just before exiting. */
static void shutdown_begin(sup_t *s, rt_reason_t *reason, rt_from_t from)
{
    op_t *op = op_begin(s, OP_SHUTDOWN, PH_STOP, 0, s->n);
    if (!op) {
        emergency_exit(s, reason);
        return;
    }
    op->reason = reason;
    op->from = from;
    /* Dynamic children have no order: stop them concurrently, as OTP does. */
    if (s->dyn && running(s) > 1)
        (void)stopall_begin(s);
    op_run(s);
}

/* Restarts child i by strategy after an exit (or a failed restart). */
static void restart_auto(sup_t *s, uint32_t i)
{
    int r = note_restart(s);
    if (r != 0) {
        rt_from_t none = {0};
        /* Escalate: our own supervisor sees us exit with `shutdown`. */
        shutdown_begin(s, r == 1 ? RT_SHUTDOWN : rt_reason_new("enomem"), none);
        return;
    }
    uint32_t lo = i, hi = i + 1;
    if (s->strategy == RT_ONE_FOR_ALL) {
        lo = 0;
        hi = s->n;
    } else if (s->strategy == RT_REST_FOR_ONE) {
        hi = s->n;
    }
    if (!op_begin(s, OP_RESTART, PH_STOP, lo, hi)) {
        emergency_exit(s, rt_reason_new("enomem"));
        return;
    }
    op_run(s);
}

static void on_exit_msg(sup_t *s, rt_pid_t from, rt_reason_t *why)
{
    if (s->parent && from == s->parent) {
        rt_from_t none = {0};
        shutdown_begin(s, why ? rt_reason_retain(why) : RT_NORMAL, none);
        return;
    }
    long i = find_pid(s, from);
    if (i < 0)
        return; /* R4 */
    child_t *c = &s->kids[i];
    set_pid(s, (uint32_t)i, RT_NOPID);
    if (!must_restart(c->restart, why)) {
        if (c->restart == RT_TEMPORARY || s->dyn)
            remove_child(s, (uint32_t)i);
        return;
    }
    restart_auto(s, (uint32_t)i);
}

static void on_retry(sup_t *s)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (s->kids[i].flags & CF_RESTARTING) {
            s->kids[i].flags &= (uint8_t)~CF_RESTARTING;
            restart_auto(s, i);
            return;
        }
}

/* ---- Calls ------------------------------------------------------------- */

static int call_start(sup_t *s, rt_msg_t *req, rt_from_t from)
{
    long i;
    if (s->dyn) {
        if (req->a != REQ_DYN) {
            reply(from, RT_EINVAL, RT_NOPID, NULL);
            return RT_REPLIED;
        }
        /* From here on arg is ours (R5). */
        void *arg = req->data;
        i = kids_append(s);
        if (i < 0) {
            if (s->dyn->tmpl.arg_free && arg)
                s->dyn->tmpl.arg_free(arg);
            reply(from, RT_ENOMEM, RT_NOPID, NULL);
            return RT_REPLIED;
        }
        child_t *c = &s->kids[i];
        *c = s->dyn->tmpl;
        c->id = NULL;
        c->flags &= (uint8_t)~CF_NAMED; /* one name cannot serve many children */
        c->arg = arg;
        c->pid = RT_NOPID;
        c->restarts = 0;
    } else {
        spec_box_t *box = req->a == REQ_SPEC && req->own == RT_OWN_RC ? req->data : NULL;
        if (!box) {
            reply(from, RT_EINVAL, RT_NOPID, NULL);
            return RT_REPLIED;
        }
        /* Take arg now: whatever happens below, it is freed exactly once. */
        rt_child_spec_t spec = box->spec;
        box->spec.arg = NULL;
        long dup = find_id(s, spec.id);
        if (dup >= 0) {
            if (spec.arg_free && spec.arg)
                spec.arg_free(spec.arg);
            reply(from, RT_ETAKEN, s->kids[dup].pid, NULL);
            return RT_REPLIED;
        }
        i = kids_append(s);
        if (i < 0 || child_from_spec(&s->kids[i], &spec) != RT_OK) {
            if (i >= 0)
                s->n--;
            if (spec.arg_free && spec.arg)
                spec.arg_free(spec.arg);
            reply(from, RT_ENOMEM, RT_NOPID, NULL);
            return RT_REPLIED;
        }
    }
    op_t *op = op_begin(s, OP_START, PH_START, (uint32_t)i, (uint32_t)i + 1);
    if (!op) {
        remove_child(s, (uint32_t)i);
        reply(from, RT_ENOMEM, RT_NOPID, NULL);
        return RT_REPLIED;
    }
    op->from = from;
    op_run(s);
    return s->op ? RT_NOREPLY : RT_REPLIED;
}

static int call_terminate(sup_t *s, rt_msg_t *req, rt_from_t from)
{
    long i = req->data ? find_id(s, req->data) : find_pid(s, req->a);
    if (i < 0) {
        reply(from, RT_ENOTFOUND, RT_NOPID, NULL);
        return RT_REPLIED;
    }
    if (!s->kids[i].pid) {
        /* Not running: nothing to stop (a pending restart is cancelled). */
        s->kids[i].flags &= (uint8_t)~CF_RESTARTING;
        reply(from, RT_OK, RT_NOPID, NULL);
        return RT_REPLIED;
    }
    op_t *op = op_begin(s, OP_TERMINATE, PH_STOP, (uint32_t)i, (uint32_t)i + 1);
    if (!op) {
        reply(from, RT_ENOMEM, RT_NOPID, NULL);
        return RT_REPLIED;
    }
    op->from = from;
    op_run(s);
    return s->op ? RT_NOREPLY : RT_REPLIED;
}

static int call_restart(sup_t *s, rt_msg_t *req, rt_from_t from)
{
    long i = find_id(s, req->data);
    int err = s->dyn ? RT_EINVAL : i < 0 ? RT_ENOTFOUND : s->kids[i].pid ? RT_ESTATE : RT_OK;
    if (err != RT_OK) {
        reply(from, err, i >= 0 && !s->dyn ? s->kids[i].pid : RT_NOPID, NULL);
        return RT_REPLIED;
    }
    s->kids[i].flags &= (uint8_t)~CF_RESTARTING;
    op_t *op = op_begin(s, OP_RESTART_CHILD, PH_START, (uint32_t)i, (uint32_t)i + 1);
    if (!op) {
        reply(from, RT_ENOMEM, RT_NOPID, NULL);
        return RT_REPLIED;
    }
    op->from = from;
    op_run(s);
    return s->op ? RT_NOREPLY : RT_REPLIED;
}

static void call_delete(sup_t *s, rt_msg_t *req, rt_from_t from)
{
    long i = find_id(s, req->data);
    int err = s->dyn ? RT_EINVAL : i < 0 ? RT_ENOTFOUND
              : (s->kids[i].pid || (s->kids[i].flags & CF_RESTARTING)) ? RT_ESTATE : RT_OK;
    if (err == RT_OK)
        remove_child(s, (uint32_t)i);
    reply(from, err, RT_NOPID, NULL);
}

static void call_which(sup_t *s, rt_from_t from)
{
    rt_sup_children_t *out = malloc(sizeof *out + (size_t)s->n * sizeof out->child[0]);
    rt_msg_t *m = out ? rt_msg_new(RT_OK) : NULL;
    if (!m) {
        free(out);
        reply(from, RT_ENOMEM, RT_NOPID, NULL);
        return;
    }
    out->n = s->n;
    for (uint32_t i = 0; i < s->n; i++) {
        const child_t *c = &s->kids[i];
        rt_sup_child_info_t *ci = &out->child[i];
        memset(ci, 0, sizeof *ci);
        snprintf(ci->id, sizeof ci->id, "%s", child_id(c));
        ci->pid = c->pid;
        ci->restarts = c->restarts;
        ci->is_supervisor = (c->flags & CF_SUPERVISOR) || c->b == &rt_sup_behaviour;
    }
    rt_msg_set_data(m, out, RT_OWN_FREE);
    rt_reply(from, m);
}

/* ---- The behaviour --------------------------------------------------------- */

static void sup_free(sup_t *s)
{
    op_end(s);
    for (uint32_t i = 0; i < s->n; i++)
        child_release(&s->kids[i]);
    free(s->kids);
    if (s->dyn) {
        free(s->dyn->tmpl.id);
        free(s->dyn->slot);
        free(s->dyn);
    }
    free(s->ring);
    if (s->init_fail)
        rt_reason_release(s->init_fail);
    free(s);
}

/* R5 for a spec the supervisor could not even copy. */
static void spec_args_free(const rt_sup_spec_t *spec)
{
    if (!spec || !spec->children || spec->strategy == RT_SIMPLE_ONE_FOR_ONE)
        return;
    for (size_t i = 0; i < spec->nchildren; i++)
        if (spec->children[i].arg_free && spec->children[i].arg)
            spec->children[i].arg_free(spec->children[i].arg);
}

static rt_reason_t *spec_check(const rt_sup_spec_t *spec)
{
    if (!spec || (unsigned)spec->strategy > RT_SIMPLE_ONE_FOR_ONE ||
        (spec->nchildren && !spec->children) || spec->nchildren > UINT32_MAX / 4)
        return rt_reason_new("bad_supervisor_spec");
    if (spec->strategy == RT_SIMPLE_ONE_FOR_ONE && spec->nchildren != 1)
        return rt_reason_new("bad_supervisor_spec: simple_one_for_one needs one template");
    for (size_t i = 0; i < spec->nchildren; i++) {
        if (!spec_ok(&spec->children[i]))
            return rt_reason_fmt("bad_child_spec: %zu", i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(spec->children[i].id, spec->children[j].id) == 0)
                return rt_reason_fmt("duplicate_child_id: %s", spec->children[i].id);
    }
    return NULL;
}

static rt_reason_t *sup_init(void *arg, void **state)
{
    const rt_sup_spec_t *spec = arg;
    rt_reason_t *bad = spec_check(spec);
    if (bad) {
        spec_args_free(spec);
        return bad;
    }
    sup_t *s = calloc(1, sizeof *s);
    if (!s) {
        spec_args_free(spec);
        return rt_reason_new("enomem");
    }
    s->strategy = (uint8_t)spec->strategy;
    s->intensity = spec->period_ms ? spec->intensity : 1;
    s->period_ms = spec->period_ms ? spec->period_ms : 5000;
    if (spec->strategy == RT_SIMPLE_ONE_FOR_ONE) {
        s->dyn = calloc(1, sizeof *s->dyn);
        if (!s->dyn || child_from_spec(&s->dyn->tmpl, &spec->children[0]) != RT_OK) {
            free(s->dyn);
            s->dyn = NULL;
            sup_free(s);
            return rt_reason_new("enomem");
        }
        s->dyn->tmpl.arg = NULL; /* dynamic children bring their own */
    } else if (spec->nchildren) {
        s->kids = calloc(spec->nchildren, sizeof *s->kids);
        if (!s->kids) {
            sup_free(s);
            spec_args_free(spec);
            return rt_reason_new("enomem");
        }
        s->cap = (uint32_t)spec->nchildren;
        for (size_t i = 0; i < spec->nchildren; i++) {
            if (child_from_spec(&s->kids[i], &spec->children[i]) != RT_OK) {
                /* The copied ones are freed by sup_free, the rest here. */
                for (size_t j = i; j < spec->nchildren; j++)
                    if (spec->children[j].arg_free && spec->children[j].arg)
                        spec->children[j].arg_free(spec->children[j].arg);
                sup_free(s);
                return rt_reason_new("enomem");
            }
            s->n++;
        }
    }
    rt_trap_exit(true);
    rt_proc_info_t pi;
    if (rt_process_info(rt_self(), &pi) == RT_OK)
        s->parent = pi.parent;
    if (s->n) {
        /* Start the first child here and await its ACK: init returns (and
         * our own ACK goes out) while the others are still to be started;
         * TAG_SYNC waits for the rest (see rt_sup_start_sync). */
        s->in_init = true;
        if (!op_begin(s, OP_BOOT, PH_START, 0, s->n)) {
            sup_free(s);
            return rt_reason_new("enomem");
        }
        op_run(s);
        s->in_init = false;
        if (s->init_fail) {
            rt_reason_t *why = s->init_fail;
            s->init_fail = NULL;
            sup_free(s);
            return why;
        }
    }
    *state = s;
    return NULL;
}

static int sup_call(void *state, rt_msg_t *req, rt_from_t from)
{
    sup_t *s = state;
    if (s->op) {
        /* Only during the final stop of dynamic children (R1'); refuse
         * rather than disturb the running operation. */
        reply(from, RT_ESTATE, RT_NOPID, NULL);
        return RT_REPLIED;
    }
    switch (req->tag) {
    case RT_SUP_START_CHILD:
        return call_start(s, req, from);
    case RT_SUP_TERMINATE_CHILD:
        return call_terminate(s, req, from);
    case RT_SUP_RESTART_CHILD:
        return call_restart(s, req, from);
    case RT_SUP_DELETE_CHILD:
        call_delete(s, req, from);
        return RT_REPLIED;
    case RT_SUP_WHICH_CHILDREN:
        call_which(s, from);
        return RT_REPLIED;
    case RT_SUP_COUNT_CHILDREN:
        rt_reply_val(from, RT_OK, s->n, running(s));
        return RT_REPLIED;
    case RT_SUP_STOP:
        shutdown_begin(s, RT_SHUTDOWN, from);
        return s->op ? RT_NOREPLY : RT_REPLIED;
    case TAG_SYNC:
        rt_reply_val(from, RT_OK, 0, 0);
        return RT_REPLIED;
    default:
        reply(from, RT_EINVAL, RT_NOPID, NULL);
        return RT_REPLIED;
    }
}

static void sup_info(void *state, rt_msg_t *m)
{
    sup_t *s = state;
    if (s->op) {
        if (s->op->wait == W_DOWNS)
            stopall_msg(s, m);
        else if (m->ref && m->ref == s->op->ref)
            op_msg(s, m);
        return; /* else stale: R1 makes anything else impossible */
    }
    if (m->kind == RT_MSG_EXIT)
        on_exit_msg(s, m->from, rt_msg_reason(m));
    else if (m->kind == RT_MSG_INFO && m->tag == TAG_RETRY)
        on_retry(s);
    /* Anything else is stale: a late shutdown timer, a DOWN or a reply
     * for a step that is over. */
}

/* Exits whatever the reason: children still alive get our exit signal
 * through their links; everything we own is freed (R5). */
static void sup_terminate(void *state, rt_reason_t *why)
{
    (void)why;
    if (state)
        sup_free(state);
}

/* Heap bytes a block really takes: usable size plus the chunk header. */
static size_t heap(const void *p)
{
    return p ? malloc_usable_size((void *)p) + sizeof(size_t) : 0;
}

static size_t sup_memory(const void *state)
{
    const sup_t *s = state;
    size_t m = heap(s) + heap(s->kids) + heap(s->ring);
    /* The runtime asks after every turn, so this must stay O(1): exact
     * for up to 64 children, the first 64 scaled up beyond (a dynamic
     * supervisor with 100,000 children would otherwise pay O(children)
     * per start_child). */
    uint32_t k = s->n < 64 ? s->n : 64;
    size_t ids = 0;
    for (uint32_t i = 0; i < k; i++)
        ids += heap(s->kids[i].id);
    m += k ? ids * s->n / k : 0;
    if (s->op)
        m += heap(s->op) + heap(s->op->mrefs);
    if (s->dyn)
        m += heap(s->dyn) + heap(s->dyn->tmpl.id) + heap(s->dyn->slot);
    return m;
}

const rt_behaviour_t rt_sup_behaviour = RT_BEHAVIOUR(
    .name = "supervisor",
    .version = 1,
    .init = sup_init,
    .handle_call = sup_call,
    .handle_info = sup_info,
    .terminate = sup_terminate,
    .memory = sup_memory,
);

/* ---- Request builders (any thread) ------------------------------------------ */

static void spec_box_dtor(rt_rc_t *rc)
{
    spec_box_t *box = RT_CONTAINER_OF(rc, spec_box_t, rc);
    if (box->spec.arg && box->spec.arg_free)
        box->spec.arg_free(box->spec.arg);
    free(box);
}

rt_msg_t *rt_sup_req_start_child(const rt_child_spec_t *spec)
{
    if (!spec_ok(spec))
        return NULL;
    size_t idlen = strlen(spec->id) + 1, namelen = spec->name ? strlen(spec->name) + 1 : 0;
    spec_box_t *box = malloc(sizeof *box + idlen + namelen);
    rt_msg_t *m = box ? rt_msg_new(RT_SUP_START_CHILD) : NULL;
    if (!m) {
        free(box);
        return NULL;
    }
    rt_rc_init(&box->rc, spec_box_dtor);
    box->spec = *spec;
    memcpy(box->str, spec->id, idlen);
    box->spec.id = box->str;
    if (spec->name) {
        memcpy(box->str + idlen, spec->name, namelen);
        box->spec.name = box->str + idlen;
    }
    m->a = REQ_SPEC;
    rt_msg_set_data(m, &box->rc, RT_OWN_RC);
    return m;
}

rt_msg_t *rt_sup_req_start_dyn(void *arg)
{
    rt_msg_t *m = rt_msg_new(RT_SUP_START_CHILD);
    if (!m)
        return NULL;
    m->a = REQ_DYN;
    rt_msg_set_data(m, arg, RT_OWN_NONE);
    return m;
}

static rt_msg_t *req_with_id(uint32_t tag, const char *id, rt_pid_t pid)
{
    rt_msg_t *m = rt_msg_new(tag);
    if (!m)
        return NULL;
    m->a = pid;
    if (id) {
        char *copy = strdup(id);
        if (!copy) {
            rt_msg_free(m);
            return NULL;
        }
        rt_msg_set_data(m, copy, RT_OWN_FREE);
    }
    return m;
}

rt_msg_t *rt_sup_req_terminate(const char *id, rt_pid_t pid)
{
    return req_with_id(RT_SUP_TERMINATE_CHILD, id, pid);
}

rt_msg_t *rt_sup_req_delete(const char *id)
{
    return id ? req_with_id(RT_SUP_DELETE_CHILD, id, RT_NOPID) : NULL;
}

rt_msg_t *rt_sup_req_restart(const char *id)
{
    return id ? req_with_id(RT_SUP_RESTART_CHILD, id, RT_NOPID) : NULL;
}

/* ---- External-thread helpers ----------------------------------------------- */

/* Turns rt_call_sync's result and reply into the helper's result. */
static int sync_result(int err, rt_msg_t *rep, rt_pid_t *pid, rt_reason_t **why)
{
    if (pid)
        *pid = RT_NOPID;
    if (why)
        *why = NULL;
    if (err == RT_EEXIT) {
        /* The supervisor itself died before answering. */
        rt_reason_t *r = rep ? rt_msg_reason(rep) : NULL;
        if (why && r)
            *why = rt_reason_retain(r);
        rt_msg_free(rep);
        return RT_EEXIT;
    }
    if (err != RT_OK) {
        rt_msg_free(rep);
        return err;
    }
    int res = (int)(int32_t)rep->tag;
    if (pid)
        *pid = rep->a;
    if (why && res == RT_EEXIT && rep->data && rep->own == RT_OWN_RC)
        *why = rt_msg_take(rep);
    rt_msg_free(rep);
    return res;
}

static int call_sync(rt_pid_t sup, rt_msg_t *req, rt_pid_t *pid, rt_reason_t **why)
{
    if (!req) {
        if (pid)
            *pid = RT_NOPID;
        if (why)
            *why = NULL;
        return RT_ENOMEM;
    }
    rt_msg_t *rep = NULL;
    int err = rt_call_sync(sup, req, RT_INFINITY, &rep);
    return sync_result(err, rep, pid, why);
}

int rt_sup_start_sync(const rt_sup_spec_t *spec, rt_pid_t *sup, rt_reason_t **why)
{
    if (sup)
        *sup = RT_NOPID;
    if (why)
        *why = NULL;
    rt_inbox_t *ib = rt_inbox_open(0);
    if (!ib)
        return RT_ENOMEM;
    /* Not linked: the inbox closes below and must not take the supervisor
     * with it. The monitor only tells why a supervisor that acknowledged
     * its init then failed to start its children. */
    rt_spawn_opts_t o = {.flags = RT_SPAWN_ACK | RT_SPAWN_MONITOR | RT_SPAWN_TRAP_EXIT};
    rt_pid_t pid = RT_NOPID;
    int err = rt_inbox_spawn(ib, &rt_sup_behaviour, (void *)spec, &o, &pid);
    if (err != RT_OK) {
        rt_inbox_close(ib);
        return err;
    }
    rt_msg_t *ack = rt_inbox_recv_match(ib, RT_MSG_ACK, o.ack_ref, -1);
    if (!ack || (ack->flags & RT_MF_ERROR)) {
        rt_reason_t *r = ack ? rt_msg_reason(ack) : NULL;
        if (why)
            *why = r ? rt_reason_retain(r) : rt_reason_new("init_failed");
        rt_msg_free(ack);
        rt_inbox_close(ib);
        return RT_EEXIT;
    }
    rt_msg_free(ack);
    rt_msg_t *q = rt_msg_new(TAG_SYNC), *rep = NULL;
    err = q ? rt_call_sync(pid, q, RT_INFINITY, &rep) : RT_ENOMEM;
    rt_msg_free(rep);
    if (err == RT_ENOMEM) {
        rt_inbox_close(ib);
        rt_exit(pid, RT_KILL);
        return RT_ENOMEM;
    }
    if (err != RT_OK) {
        /* It died while starting its children: the DOWN says why. */
        rt_msg_t *down = rt_inbox_recv_match(ib, RT_MSG_DOWN, o.monitor_ref, -1);
        rt_reason_t *r = down ? rt_msg_reason(down) : NULL;
        if (why)
            *why = r ? rt_reason_retain(r) : rt_reason_new("init_failed");
        rt_msg_free(down);
        rt_inbox_close(ib);
        return RT_EEXIT;
    }
    rt_inbox_close(ib);
    if (sup)
        *sup = pid;
    return RT_OK;
}

int rt_sup_start_child_sync(rt_pid_t sup, const rt_child_spec_t *spec, rt_pid_t *child,
                            rt_reason_t **why)
{
    rt_msg_t *req = rt_sup_req_start_child(spec);
    if (!req) {
        /* This helper always takes arg, even when it cannot send. */
        if (spec && spec->arg && spec->arg_free)
            spec->arg_free(spec->arg);
        if (child)
            *child = RT_NOPID;
        if (why)
            *why = NULL;
        return spec_ok(spec) ? RT_ENOMEM : RT_EINVAL;
    }
    return call_sync(sup, req, child, why);
}

int rt_sup_start_dyn_sync(rt_pid_t sup, void *arg, rt_pid_t *child, rt_reason_t **why)
{
    return call_sync(sup, rt_sup_req_start_dyn(arg), child, why);
}

int rt_sup_terminate_child_sync(rt_pid_t sup, const char *id, rt_pid_t pid)
{
    return call_sync(sup, rt_sup_req_terminate(id, pid), NULL, NULL);
}

int rt_sup_delete_child_sync(rt_pid_t sup, const char *id)
{
    if (!id)
        return RT_EINVAL;
    return call_sync(sup, rt_sup_req_delete(id), NULL, NULL);
}

int rt_sup_restart_child_sync(rt_pid_t sup, const char *id, rt_pid_t *child)
{
    if (!id)
        return RT_EINVAL;
    return call_sync(sup, rt_sup_req_restart(id), child, NULL);
}

rt_sup_children_t *rt_sup_which_children_sync(rt_pid_t sup)
{
    rt_msg_t *req = rt_msg_new(RT_SUP_WHICH_CHILDREN), *rep = NULL;
    if (!req)
        return NULL;
    if (rt_call_sync(sup, req, RT_INFINITY, &rep) != RT_OK) {
        rt_msg_free(rep);
        return NULL;
    }
    rt_sup_children_t *out = NULL;
    if ((int32_t)rep->tag == RT_OK && rep->own == RT_OWN_FREE)
        out = rt_msg_take(rep);
    rt_msg_free(rep);
    return out;
}

int rt_sup_stop_sync(rt_pid_t sup, int timeout_ms)
{
    /* Waits for the DOWN, not just the reply, so the supervisor is gone
     * (its terminate has run) when this returns RT_OK. */
    rt_inbox_t *ib = rt_inbox_open(0);
    if (!ib)
        return RT_ENOMEM;
    uint64_t start = rt_now_ms();
    uint64_t mref = rt_inbox_monitor(ib, sup);
    rt_msg_t *req = rt_msg_new(RT_SUP_STOP), *rep = NULL;
    int err = req ? rt_call_sync(sup, req, timeout_ms, &rep) : RT_ENOMEM;
    rt_msg_free(rep);
    if (err == RT_OK || err == RT_EEXIT) {
        int left = -1;
        if (timeout_ms >= 0) {
            uint64_t spent = rt_now_ms() - start;
            left = spent >= (uint64_t)timeout_ms ? 0 : timeout_ms - (int)spent;
        }
        rt_msg_t *down = rt_inbox_recv_match(ib, RT_MSG_DOWN, mref, left);
        err = down ? RT_OK : RT_ETIMEOUT;
        rt_msg_free(down);
    }
    rt_inbox_close(ib);
    return err;
}
