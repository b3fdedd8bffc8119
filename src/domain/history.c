/*
 * domain/history.c — the HistoryServer (see domain/history.h).
 *
 * One process. Its pid is published in a global when it starts so that
 * history_record, called by every RoomServer, costs one atomic load and
 * one cast (no registry lookup); a restarted history process publishes
 * its new pid. The backlog counter is raised by the sender before the
 * cast and lowered by the history process as it handles each message,
 * so it bounds what is queued between them whatever the number of rooms.
 */
#include "domain/history.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

enum {
    HISTORY_MSG_EVENT = 0x48490001u,
    HISTORY_MSG_CALL,
};

typedef struct hist_msg {
    int64_t at, started_at, ended_at, duration_ms;
    char *room, *type, *user, *data;  /* into buf; user/data may be NULL */
    char buf[];
} hist_msg_t;

/* Relaxed everywhere: the pid is a hint (a stale one makes the cast fail
 * with ENOPROC, which is counted); the counters are statistics, except
 * backlog, whose bound is approximate by design. */
static _Atomic rt_pid_t history_pid;
static _Atomic uint64_t st_backlog, st_recorded, st_calls, st_dropped, st_failed;

static void add(_Atomic uint64_t *c, int64_t d)
{
    atomic_fetch_add_explicit(c, (uint64_t)d, memory_order_relaxed);
}

static char *put_str(char **w, const char *s)
{
    if (!s)
        return NULL;
    char *at = *w;
    size_t n = strlen(s) + 1;
    memcpy(at, s, n);
    *w += n;
    return at;
}

static int send(uint32_t tag, hist_msg_t *h)
{
    rt_pid_t pid = atomic_load_explicit(&history_pid, memory_order_relaxed);
    if (!pid ||
        atomic_load_explicit(&st_backlog, memory_order_relaxed) >= HISTORY_MAX_BACKLOG) {
        free(h);
        add(&st_dropped, 1);
        return -1;
    }
    rt_msg_t *m = rt_msg_new(tag);
    if (!m) {
        free(h);
        add(&st_dropped, 1);
        return -1;
    }
    rt_msg_set_data(m, h, RT_OWN_FREE);
    add(&st_backlog, 1);
    if (rt_cast_msg(pid, m) != RT_OK) {
        add(&st_backlog, -1);
        add(&st_dropped, 1);
        return -1;
    }
    return 0;
}

static hist_msg_t *msg_new(const char *room, const char *type, const char *user,
                           const char *data)
{
    if (!room || !type)
        return NULL;
    size_t n = strlen(room) + strlen(type) + (user ? strlen(user) : 0) +
               (data ? strlen(data) : 0) + 4;
    hist_msg_t *h = calloc(1, sizeof *h + n);
    if (!h)
        return NULL;
    char *w = h->buf;
    h->room = put_str(&w, room);
    h->type = put_str(&w, type);
    h->user = put_str(&w, user);
    h->data = put_str(&w, data);
    return h;
}

int history_record(const char *room, int64_t at, const char *type, const char *user,
                   const char *data_json)
{
    hist_msg_t *h = msg_new(room, type, user, data_json);
    if (!h) {
        add(&st_dropped, 1);
        return -1;
    }
    h->at = at;
    return send(HISTORY_MSG_EVENT, h);
}

int history_record_call(const char *room, int64_t created_at, int64_t started_at,
                        int64_t ended_at, const char *participants_json, int64_t duration_ms)
{
    hist_msg_t *h = msg_new(room, "call", NULL, participants_json ? participants_json : "[]");
    if (!h) {
        add(&st_dropped, 1);
        return -1;
    }
    h->at = created_at;
    h->started_at = started_at;
    h->ended_at = ended_at;
    h->duration_ms = duration_ms;
    return send(HISTORY_MSG_CALL, h);
}

void history_get_stats(history_stats_t *out)
{
    out->backlog = atomic_load_explicit(&st_backlog, memory_order_relaxed);
    out->recorded = atomic_load_explicit(&st_recorded, memory_order_relaxed);
    out->calls = atomic_load_explicit(&st_calls, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&st_dropped, memory_order_relaxed);
    out->failed = atomic_load_explicit(&st_failed, memory_order_relaxed);
}

/* ---- the process -------------------------------------------------------------- */

static rt_reason_t *hist_init(void *arg, void **state)
{
    /* Whatever a previous incarnation left queued died with it. */
    atomic_store_explicit(&st_backlog, 0, memory_order_relaxed);
    atomic_store_explicit(&history_pid, rt_self(), memory_order_relaxed);
    *state = NULL;
    return NULL;
}

static void hist_terminate(void *state, rt_reason_t *reason)
{
    rt_pid_t me = rt_self();
    /* Only our own pid: a successor may already have published its own. */
    atomic_compare_exchange_strong_explicit(&history_pid, &me, RT_NOPID, memory_order_relaxed,
                                            memory_order_relaxed);
}

static void hist_cast(void *state, rt_msg_t *m)
{
    if (m->tag != HISTORY_MSG_EVENT && m->tag != HISTORY_MSG_CALL)
        return;
    add(&st_backlog, -1);
    hist_msg_t *h = m->data;
    if (!h)
        return;
    store_req_t *req = NULL;
    int rc = m->tag == HISTORY_MSG_EVENT
                 ? store_req_append_event(&req, h->room, h->at, h->type, h->user, h->data)
                 : store_req_put_call(&req, h->room, h->at, h->started_at, h->ended_at,
                                      h->data, h->duration_ms);
    rt_pid_t store = rc == STORE_OK ? rt_whereis("store") : RT_NOPID;
    if (rc != STORE_OK || !store || store_cast(store, req) != RT_OK) {
        /* store_cast releases req on failure; the builders leave nothing. */
        if (rc == STORE_OK && !store)
            store_req_free(req);
        add(&st_failed, 1);
        fprintf(stderr, "roost: history: lost %s of room %s (%s)\n", h->type, h->room,
                rc != STORE_OK ? store_strerror(rc) : "no store process");
        return;
    }
    add(m->tag == HISTORY_MSG_EVENT ? &st_recorded : &st_calls, 1);
}

const rt_behaviour_t history_server = RT_BEHAVIOUR(
    .name = "history", .init = hist_init, .handle_cast = hist_cast,
    .terminate = hist_terminate);
