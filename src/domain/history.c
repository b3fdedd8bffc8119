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

#include "domain/room.h"
#include "store/store.h"

enum {
    HISTORY_MSG_EVENT = 0x48490001u,
    HISTORY_MSG_CALL,
};

/* Relaxed everywhere: the pid is a hint (a stale one makes the cast fail
 * with ENOPROC, which is counted); the counters are statistics, except
 * backlog, whose bound is approximate by design. */
static _Atomic rt_pid_t history_pid;
static _Atomic uint64_t st_backlog, st_recorded, st_calls, st_dropped, st_failed;

static void add(_Atomic uint64_t *c, int64_t d)
{
    atomic_fetch_add_explicit(c, (uint64_t)d, memory_order_relaxed);
}

/* Casts req (taken) to the history process. The request is built by the
 * sender, so the history process only hands it on: no copy, no parse. */
static int send(uint32_t tag, store_req_t *req)
{
    rt_pid_t pid = atomic_load_explicit(&history_pid, memory_order_relaxed);
    if (!pid ||
        atomic_load_explicit(&st_backlog, memory_order_relaxed) >= HISTORY_MAX_BACKLOG) {
        store_req_free(req);
        add(&st_dropped, 1);
        return -1;
    }
    rt_msg_t *m = rt_msg_new(tag);
    if (!m) {
        store_req_free(req);
        add(&st_dropped, 1);
        return -1;
    }
    rt_msg_set_data(m, &req->rc, RT_OWN_RC);
    add(&st_backlog, 1);
    if (rt_cast_msg(pid, m) != RT_OK) {
        add(&st_backlog, -1);
        add(&st_dropped, 1);
        return -1;
    }
    return 0;
}

int history_record(const char *room, int64_t at, const char *type, const char *user,
                   const char *data_json)
{
    /* Checked here rather than in the store: data_json is the caller's
     * own serialisation (history.h). The backlog is checked first so a
     * full buffer costs no allocation. */
    if (atomic_load_explicit(&st_backlog, memory_order_relaxed) >= HISTORY_MAX_BACKLOG) {
        add(&st_dropped, 1);
        return -1;
    }
    store_req_t *req = NULL;
    if (store_req_append_event_dumped(&req, room, at, type, user, data_json) != STORE_OK) {
        add(&st_dropped, 1);
        return -1;
    }
    return send(HISTORY_MSG_EVENT, req);
}

int history_record_call(const char *room, int64_t created_at, int64_t started_at,
                        int64_t ended_at, const char *participants_json, int64_t duration_ms)
{
    store_req_t *req = NULL;
    if (store_req_put_call(&req, room, created_at, started_at, ended_at,
                           participants_json ? participants_json : "[]",
                           duration_ms) != STORE_OK) {
        add(&st_dropped, 1);
        return -1;
    }
    return send(HISTORY_MSG_CALL, req);
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
    if (!m->data || m->own != RT_OWN_RC)
        return;
    store_req_t *req = RT_CONTAINER_OF((rt_rc_t *)rt_msg_take(m), store_req_t, rc);
    /* Straight into the store's queue when main gave the rooms the store
     * (room_config()->store); through the store process otherwise. The
     * store process would only call store_submit itself: this saves a
     * message and a turn of that one busy process per event. */
    store_t *st = room_config()->store;
    int rc;
    if (st) {
        rc = store_submit(st, req, NULL, NULL);
        if (rc != STORE_OK)
            store_req_free(req);  /* not taken on error */
    } else {
        rt_pid_t store = rt_whereis("store");
        rc = store ? store_cast(store, req) : RT_ENOPROC; /* store_cast takes req */
        if (!store)
            store_req_free(req);
    }
    if (rc != 0) {
        add(&st_failed, 1);
        fprintf(stderr, "roost: history: lost an event (%s)\n",
                st ? store_strerror(rc) : rt_strerror(rc));
        return;
    }
    add(m->tag == HISTORY_MSG_EVENT ? &st_recorded : &st_calls, 1);
}

const rt_behaviour_t history_server = RT_BEHAVIOUR(
    .name = "history", .init = hist_init, .handle_cast = hist_cast,
    .terminate = hist_terminate);
