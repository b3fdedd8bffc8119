/*
 * media/janus.c — the Janus media client (media/janus.h has the contract).
 */
#include "media/janus.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "media/janus_conn.h"

/* ---- The process ------------------------------------------------------------ */

/* For /healthz: whether the (one) media client has a session right now. */
static _Atomic bool g_up;

bool janus_connected(void)
{
    return atomic_load(&g_up);
}

typedef struct txn {
    struct txn *next;
    char id[24];
    bool has_from;               /* a caller waits (else internal) */
    rt_from_t from;
    rt_pid_t owner;              /* attach: who will own the handle */
    char owner_name[64];         /* attach: ... or its registered name */
    bool is_message;             /* "ack" is not final */
    bool is_attach, is_detach, is_create;
    uint64_t handle;             /* detach: which */
    uint64_t started_ms;
    char reply_to[64];           /* named request: whose JANUS_ANSWER, else "" */
    uint64_t rid;                /* ... and its a */
    uint64_t deadline_ms;        /* ... answered "timeout" past this */
    char *release;               /* a release's destroy: detach this name's
                                    handles once Janus has answered */
} txn_t;

/* A message for a named owner that holds no process right now (between
 * two incarnations): kept until the name is held again, for at most
 * cfg.holdover_ms, in arrival order. */
typedef struct parked {
    struct parked *next;
    char *name;
    rt_msg_t *msg;
    uint64_t deadline_ms;
} parked_t;

#define PARKED_MAX 4096  /* messages kept for absent owners, all names together */
#define TICK_MS 25       /* how often absent owners and deadlines are looked at */

typedef struct handle {
    uint64_t id;
    rt_pid_t owner;              /* RT_NOPID when owned by name */
    uint64_t mon;                /* 0 when owned by name */
    char *name;                  /* owner's registered name, or NULL */
} handle_t;

static void handle_forget(handle_t *h)
{
    if (h->mon)
        rt_demonitor(h->mon);
    free(h->name);
    h->name = NULL;
}

typedef struct janus {
    janus_config_t cfg;
    char *url;
    char host[256], port[16], path[512];
    SSL_CTX *tls;                /* wss://: verifies Janus's certificate */
    janus_conn_t *conn;          /* current attempt, or NULL */
    uint64_t gen;
    bool connected;              /* socket up */
    uint64_t session;            /* 0 until "create" succeeded */
    int backoff_ms;
    uint64_t ka_timer, rc_timer;
    uint64_t next_txn;
    txn_t *txns;
    handle_t *handles;
    size_t nhandles, caphandles;
    parked_t *parked, **parked_tail;
    size_t nparked;
    uint64_t dropped;            /* parked messages that expired */
    uint64_t tick_timer;
} janus_t;

static void free_txn(txn_t *t)
{
    free(t->release);
    free(t);
}

static void arm_tick(janus_t *j)
{
    if (j->tick_timer)
        return;
    rt_msg_t *m = rt_msg_new(JANUS_T_TICK);
    j->tick_timer = m ? rt_send_after(TICK_MS, rt_self(), m) : 0;
}

static bool parked_for(const janus_t *j, const char *name)
{
    for (const parked_t *p = j->parked; p; p = p->next)
        if (strcmp(p->name, name) == 0)
            return true;
    return false;
}

/* Sends m (taken) to whoever holds name now, or parks it until someone
 * does; after anything parked for the same name, so order is kept. */
static void send_named(janus_t *j, const char *name, rt_msg_t *m)
{
    if (!m)
        return;
    if (!parked_for(j, name)) {
        rt_pid_t to = rt_whereis(name);
        /* rt_send_msg takes m whatever it returns: keep a copy in case the
         * holder died between the lookup and the send. Cheap: these are
         * control messages, a few per participant. */
        if (to) {
            rt_msg_t *copy = rt_msg_new(m->tag);
            if (copy) {
                copy->a = m->a;
                copy->b = m->b;
                copy->flags = m->flags;
            }
            if (copy && m->data) {
                if (m->own == RT_OWN_RC) {
                    rt_rc_retain(m->data);
                    rt_msg_set_data(copy, m->data, RT_OWN_RC);
                } else {
                    char *d = strdup(m->data);
                    if (d)
                        rt_msg_set_data(copy, d, RT_OWN_FREE);
                }
            }
            if (rt_send_msg(to, m) == RT_OK) {
                rt_msg_free(copy);
                return;
            }
            m = copy;
            if (!m)
                return;
        }
    }
    if (j->nparked >= PARKED_MAX) {
        j->dropped++;
        rt_msg_free(m);
        return;
    }
    parked_t *p = calloc(1, sizeof *p);
    char *n = p ? strdup(name) : NULL;
    if (!n) {
        free(p);
        rt_msg_free(m);
        return;
    }
    p->name = n;
    p->msg = m;
    p->deadline_ms = rt_now_ms() + (uint64_t)j->cfg.holdover_ms;
    *j->parked_tail = p;
    j->parked_tail = &p->next;
    j->nparked++;
    arm_tick(j);
}

/* Delivers what waited for names now held; drops what waited too long. */
static void flush_parked(janus_t *j)
{
    uint64_t now = rt_now_ms();
    parked_t *list = j->parked;
    j->parked = NULL;
    j->parked_tail = &j->parked;
    j->nparked = 0;
    while (list) {
        parked_t *p = list;
        list = p->next;
        if (!parked_for(j, p->name) && rt_whereis(p->name)) {
            send_named(j, p->name, p->msg); /* may park it again if it just died */
        } else if (now >= p->deadline_ms && !parked_for(j, p->name)) {
            j->dropped++;
            rt_msg_free(p->msg);
        } else {
            p->next = NULL;
            *j->parked_tail = p;
            j->parked_tail = &p->next;
            j->nparked++;
            continue;
        }
        free(p->name);
        free(p);
    }
}

static rt_msg_t *answer_msg(uint64_t rid, const char *text, const char *error)
{
    rt_msg_t *m = rt_msg_new(JANUS_ANSWER);
    if (!m)
        return NULL;
    m->a = rid;
    if (error) {
        m->flags |= RT_MF_ERROR;
        rt_msg_set_data(m, rt_reason_new(error), RT_OWN_RC);
        return m;
    }
    char *copy = strdup(text);
    if (!copy) {
        rt_msg_free(m);
        return NULL;
    }
    rt_msg_set_data(m, copy, RT_OWN_FREE);
    return m;
}

static bool parse_url(janus_t *j, const char *url, bool *tls)
{
    *tls = strncmp(url, "wss://", 6) == 0;
    if (!*tls && strncmp(url, "ws://", 5) != 0)
        return false;
    const char *h = url + (*tls ? 6 : 5), *slash = strchr(h, '/');
    const char *hend = slash ? slash : h + strlen(h);
    const char *hs = h, *he;
    const char *colon;
    if (*h == '[') { /* [v6 literal]:port */
        const char *rb = memchr(h, ']', (size_t)(hend - h));
        if (!rb)
            return false;
        hs = h + 1;
        he = rb;
        colon = rb + 1 < hend && rb[1] == ':' ? rb + 1 : NULL;
        if (rb + 1 < hend && !colon)
            return false;
    } else {
        colon = memchr(h, ':', (size_t)(hend - h));
        he = colon ? colon : hend;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof j->host)
        return false;
    memcpy(j->host, hs, hl);
    j->host[hl] = 0;
    if (colon) {
        size_t pl = (size_t)(hend - colon - 1);
        if (pl == 0 || pl >= sizeof j->port)
            return false;
        memcpy(j->port, colon + 1, pl);
        j->port[pl] = 0;
    } else {
        strcpy(j->port, *tls ? "443" : "80");
    }
    snprintf(j->path, sizeof j->path, "%s", slash ? slash : "/");
    return true;
}

static void conn_start(janus_t *j)
{
    j->rc_timer = 0;
    janus_conn_cfg_t cc = {.host = j->host, .port = j->port, .path = j->path, .tls = j->tls,
                           .owner = rt_self(), .gen = ++j->gen};
    j->conn = janus_conn_start(&cc);
    if (!j->conn)
        rt_fail(rt_reason_new("janus: cannot start a connection (memory, eventfd or thread)"));
}

/* Stops and frees the current connection (joins its thread). */
static void conn_end(janus_t *j)
{
    janus_conn_free(j->conn);
    j->conn = NULL;
}

static void notify(janus_t *j, uint32_t tag)
{
    if (j->cfg.notify != RT_NOPID) {
        rt_msg_t *m = rt_msg_new(tag);
        if (m) {
            m->a = j->session;
            rt_send_msg(j->cfg.notify, m);
        }
    }
    rt_publish(JANUS_TOPIC, tag, NULL);
}

static void reply_text(rt_from_t from, const char *text)
{
    rt_msg_t *m = rt_msg_new(JANUS_REPLY);
    char *copy = m ? strdup(text) : NULL;
    if (!copy) {
        rt_msg_free(m);
        return;
    }
    rt_msg_set_data(m, copy, RT_OWN_FREE);
    rt_reply(from, m);
}

static void reply_error(rt_from_t from, const char *reason)
{
    rt_msg_t *m = rt_msg_new(JANUS_REPLY);
    if (!m)
        return;
    m->flags |= RT_MF_ERROR;
    rt_msg_set_data(m, rt_reason_new(reason), RT_OWN_RC);
    rt_reply(from, m);
}

static handle_t *handle_find(janus_t *j, uint64_t id)
{
    for (size_t i = 0; i < j->nhandles; i++)
        if (j->handles[i].id == id)
            return &j->handles[i];
    return NULL;
}

static void handle_remove(janus_t *j, uint64_t id)
{
    handle_t *h = handle_find(j, id);
    if (!h)
        return;
    handle_forget(h);
    *h = j->handles[--j->nhandles];
}

/* The final word on t to whoever waits for it: a caller (rt_reply) or a
 * named requester (JANUS_ANSWER). */
static void answer_text(janus_t *j, txn_t *t, const char *text)
{
    if (t->has_from)
        reply_text(t->from, text);
    else if (t->reply_to[0])
        send_named(j, t->reply_to, answer_msg(t->rid, text, NULL));
}

static void answer_error(janus_t *j, txn_t *t, const char *reason)
{
    if (t->has_from)
        reply_error(t->from, reason);
    else if (t->reply_to[0])
        send_named(j, t->reply_to, answer_msg(t->rid, NULL, reason));
}

/* Sends obj (borrowed; transaction and session_id added) as a new
 * transaction. Returns the txn or NULL (not connected / write failed). */
static txn_t *send_request(janus_t *j, json_t *obj)
{
    if (!j->connected || !j->conn)
        return NULL;
    txn_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    snprintf(t->id, sizeof t->id, "r%llu", (unsigned long long)++j->next_txn);
    t->started_ms = rt_now_ms();
    json_object_set_new(obj, "transaction", json_string(t->id));
    if (j->session)
        json_object_set_new(obj, "session_id", json_integer((json_int_t)j->session));
    char *text = json_dumps(obj, JSON_COMPACT);
    /* A false send has closed the connection (Janus stopped reading):
     * JANUS_IO_DOWN follows. */
    bool ok = text && janus_conn_send(j->conn, text, strlen(text));
    free(text);
    if (!ok) {
        free(t);
        return NULL;
    }
    t->next = j->txns;
    j->txns = t;
    return t;
}

static void send_internal(janus_t *j, const char *janus, uint64_t handle, bool detach)
{
    json_t *o = json_pack("{s:s}", "janus", janus);
    if (!o)
        return;
    if (handle)
        json_object_set_new(o, "handle_id", json_integer((json_int_t)handle));
    txn_t *t = send_request(j, o);
    if (t && detach) {
        t->is_detach = true;
        t->handle = handle;
    }
    json_decref(o);
}

/* Detaches every handle owned by name (they stay listed until Janus
 * confirms, so their "detached" events still reach the name's holder). */
static void detach_named(janus_t *j, const char *name)
{
    for (size_t i = 0; i < j->nhandles; i++)
        if (j->handles[i].name && strcmp(j->handles[i].name, name) == 0)
            send_internal(j, "detach", j->handles[i].id, true);
}

static void arm_keepalive(janus_t *j)
{
    rt_msg_t *m = rt_msg_new(JANUS_T_KEEPALIVE);
    j->ka_timer = m ? rt_send_after(j->cfg.keepalive_ms, rt_self(), m) : 0;
}

/* Connection lost or session gone: fail everything, tell everyone, retry. */
static void lost(janus_t *j)
{
    conn_end(j);
    bool was_up = j->session != 0;
    j->connected = false;
    j->session = 0;
    atomic_store(&g_up, false);
    if (j->ka_timer)
        rt_cancel_timer(j->ka_timer);
    j->ka_timer = 0;
    while (j->txns) {
        txn_t *t = j->txns;
        j->txns = t->next;
        answer_error(j, t, "janus_disconnected");
        free_txn(t);
    }
    for (size_t i = 0; i < j->nhandles; i++) {
        handle_t *h = &j->handles[i];
        rt_msg_t *m = rt_msg_new(JANUS_DOWN);
        if (m)
            m->a = h->id;
        if (h->name)
            send_named(j, h->name, m);
        else if (m)
            rt_send_msg(h->owner, m);
        handle_forget(h);
    }
    j->nhandles = 0;
    if (was_up)
        notify(j, JANUS_DOWN);
    if (!j->rc_timer) {
        rt_msg_t *m = rt_msg_new(JANUS_T_RECONNECT);
        j->rc_timer = m ? rt_send_after(j->backoff_ms, rt_self(), m) : 0;
        j->backoff_ms *= 2;
        if (j->backoff_ms > j->cfg.backoff_max_ms)
            j->backoff_ms = j->cfg.backoff_max_ms;
    }
}

static txn_t *txn_take(janus_t *j, const char *id)
{
    for (txn_t **pp = &j->txns; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0) {
            txn_t *t = *pp;
            *pp = t->next;
            return t;
        }
    }
    return NULL;
}

static txn_t *txn_find(janus_t *j, const char *id)
{
    for (txn_t *t = j->txns; t; t = t->next)
        if (strcmp(t->id, id) == 0)
            return t;
    return NULL;
}

static void on_message(janus_t *j, const char *text)
{
    json_t *o = json_loads(text, 0, NULL);
    if (!o)
        return;
    const char *kind = json_string_value(json_object_get(o, "janus"));
    const char *tid = json_string_value(json_object_get(o, "transaction"));
    uint64_t sender = (uint64_t)json_integer_value(json_object_get(o, "sender"));
    if (!kind)
        kind = "";
    txn_t *t = tid ? txn_find(j, tid) : NULL;
    if (t && strcmp(kind, "ack") == 0 && t->is_message) {
        t = NULL; /* the event follows (or came first and the txn is gone) */
        goto out;
    }
    if (t && (strcmp(kind, "success") == 0 || strcmp(kind, "error") == 0 ||
              strcmp(kind, "ack") == 0 || strcmp(kind, "event") == 0)) {
        txn_take(j, tid);
        bool ok = strcmp(kind, "success") == 0;
        uint64_t id = (uint64_t)json_integer_value(json_object_get(json_object_get(o, "data"), "id"));
        if (t->is_create) {
            if (!ok || !id) {
                free_txn(t);
                lost(j);
                goto out;
            }
            j->session = id;
            atomic_store(&g_up, true);
            j->backoff_ms = j->cfg.backoff_min_ms;
            arm_keepalive(j);
            notify(j, JANUS_UP);
        } else if (t->is_attach && ok && id && (t->has_from || t->reply_to[0])) {
            handle_t *h;
            if (j->nhandles == j->caphandles) {
                size_t nc = j->caphandles ? 2 * j->caphandles : 16;
                handle_t *nh = realloc(j->handles, nc * sizeof *nh);
                if (!nh)
                    rt_fail(rt_reason_new("enomem"));
                j->handles = nh;
                j->caphandles = nc;
            }
            h = &j->handles[j->nhandles++];
            h->id = id;
            if (t->owner_name[0]) {
                h->owner = RT_NOPID;
                h->mon = 0;
                h->name = strdup(t->owner_name);
                if (!h->name)
                    rt_fail(rt_reason_new("enomem"));
            } else {
                h->owner = t->owner;
                h->mon = rt_monitor(t->owner);
                h->name = NULL;
            }
        } else if (t->is_detach && ok) {
            handle_remove(j, t->handle);
        }
        if (t->release)
            detach_named(j, t->release);
        answer_text(j, t, text);
        free_txn(t);
        goto out;
    }
    if (strcmp(kind, "timeout") == 0) { /* Janus dropped our session */
        lost(j);
        goto out;
    }
    if (sender) {
        handle_t *h = handle_find(j, sender);
        rt_msg_t *m = h ? rt_msg_new(JANUS_EVENT) : NULL;
        char *copy = m ? strdup(text) : NULL;
        if (copy) {
            m->a = sender;
            rt_msg_set_data(m, copy, RT_OWN_FREE);
            /* A named owner between two incarnations gets it when it is back. */
            if (h->name)
                send_named(j, h->name, m);
            else
                rt_send_msg(h->owner, m);
        } else {
            rt_msg_free(m);
        }
        if (h && strcmp(kind, "detached") == 0)
            handle_remove(j, sender);
    }
out:
    json_decref(o);
}

static rt_reason_t *janus_init(void *arg, void **state)
{
    const janus_config_t *cfg = arg;
    janus_t *j = calloc(1, sizeof *j);
    if (!j)
        return rt_reason_new("enomem");
    j->cfg = *cfg;
    if (!j->cfg.keepalive_ms)
        j->cfg.keepalive_ms = 25000;
    if (!j->cfg.backoff_min_ms)
        j->cfg.backoff_min_ms = 250;
    if (!j->cfg.backoff_max_ms)
        j->cfg.backoff_max_ms = 10000;
    if (!j->cfg.txn_timeout_ms)
        j->cfg.txn_timeout_ms = 60000;
    if (!j->cfg.holdover_ms)
        j->cfg.holdover_ms = 5000;
    j->parked_tail = &j->parked;
    j->backoff_ms = j->cfg.backoff_min_ms;
    j->url = strdup(cfg->url ? cfg->url : "");
    bool tls = false;
    if (!j->url || !parse_url(j, j->url, &tls)) {
        free(j->url);
        free(j);
        return rt_reason_fmt("janus: bad url %s (want ws[s]://host[:port][/path])",
                             cfg->url ? cfg->url : "(null)");
    }
    j->cfg.url = j->url;
    j->cfg.ca_file = NULL; /* only needed here */
    if (tls) {
        char err[512];
        j->tls = janus_conn_tls_new(cfg->ca_file, err, sizeof err);
        if (!j->tls) {
            free(j->url);
            free(j);
            return rt_reason_fmt("janus: %s", err);
        }
    }
    *state = j;
    conn_start(j);
    return NULL;
}

/* Where the answer to a request goes. */
typedef struct asker {
    bool has_from;
    rt_from_t from;              /* a call */
    rt_pid_t owner;              /* attach by a caller: the handle's owner */
    uint64_t rid;                /* a named request: JANUS_ANSWER's a */
    int timeout_ms;
} asker_t;

static void refuse(janus_t *j, const asker_t *k, const char *reply_to, const char *reason)
{
    if (k->has_from)
        reply_error(k->from, reason);
    else if (reply_to && reply_to[0])
        send_named(j, reply_to, answer_msg(k->rid, NULL, reason));
}

/* Sends a JANUS_REQ's request to Janus: from a call or from a named
 * request (JANUS_REQ info). Answers at once when it cannot be sent. */
static void submit(janus_t *j, const char *json, const asker_t *k)
{
    json_t *o = json ? json_loads(json, 0, NULL) : NULL;
    const char *kind = o ? json_string_value(json_object_get(o, "janus")) : NULL;
    char owner_name[64] = "", reply_to[64] = "";
    const char *on = o ? json_string_value(json_object_get(o, "owner")) : NULL;
    const char *rt = o ? json_string_value(json_object_get(o, "reply_to")) : NULL;
    if (rt && strlen(rt) < sizeof reply_to)
        snprintf(reply_to, sizeof reply_to, "%s", rt);
    if (!kind || (on && strlen(on) >= sizeof owner_name) ||
        (rt && strlen(rt) >= sizeof reply_to)) {
        json_decref(o);
        refuse(j, k, reply_to, "janus_bad_request");
        return;
    }
    if (!j->session) {
        json_decref(o);
        refuse(j, k, reply_to, "janus_unavailable");
        return;
    }
    if (on)
        snprintf(owner_name, sizeof owner_name, "%s", on);
    else if (!k->has_from)
        memcpy(owner_name, reply_to, sizeof owner_name); /* named: the asker's name */
    bool is_message = strcmp(kind, "message") == 0, is_attach = strcmp(kind, "attach") == 0,
         is_detach = strcmp(kind, "detach") == 0;
    uint64_t handle = (uint64_t)json_integer_value(json_object_get(o, "handle_id"));
    /* ours, not Janus's */
    json_object_del(o, "owner");
    json_object_del(o, "reply_to");
    txn_t *t = send_request(j, o);
    json_decref(o);
    if (!t) {
        refuse(j, k, reply_to, "janus_unavailable");
        return;
    }
    t->has_from = k->has_from;
    t->from = k->from;
    t->is_message = is_message;
    t->is_attach = is_attach;
    t->owner = k->owner;
    memcpy(t->owner_name, owner_name, sizeof owner_name);
    memcpy(t->reply_to, reply_to, sizeof reply_to);
    t->rid = k->rid;
    if (reply_to[0]) {
        t->deadline_ms = t->started_ms + (uint64_t)(k->timeout_ms > 0 ? k->timeout_ms : 10000);
        arm_tick(j);
    }
    t->is_detach = is_detach;
    t->handle = handle;
}

static int janus_call(void *state, rt_msg_t *req, rt_from_t from)
{
    janus_t *j = state;
    if (req->tag == JANUS_STATUS) {
        rt_msg_t *m = rt_msg_new(JANUS_STATUS);
        size_t ntx = 0;
        for (txn_t *t = j->txns; t; t = t->next)
            ntx++;
        char *text = NULL;
        if (m && asprintf(&text,
                          "{\"connected\":%s,\"session\":%llu,\"handles\":%zu,\"pending\":%zu,"
                          "\"parked\":%zu,\"dropped\":%llu}",
                          j->session ? "true" : "false", (unsigned long long)j->session,
                          j->nhandles, ntx, j->nparked, (unsigned long long)j->dropped) < 0)
            text = NULL;
        if (m) {
            m->a = j->session != 0;
            m->b = j->session;
            if (text)
                rt_msg_set_data(m, text, RT_OWN_FREE);
            rt_reply(from, m);
        }
        return RT_REPLIED;
    }
    if (req->tag != JANUS_REQ || !req->data) {
        reply_error(from, "janus_bad_request");
        return RT_REPLIED;
    }
    asker_t k = {.has_from = true, .from = from,
                 .owner = req->a ? (rt_pid_t)req->a : from.pid};
    submit(j, req->data, &k);
    return RT_NOREPLY;
}

/* JANUS_RELEASE: the owner ended for good. With a VideoRoom to destroy,
 * that goes first, through one of the owner's handles; the handles are
 * detached when Janus has answered it (or at once when there is none). */
static void release(janus_t *j, const char *name, uint64_t room)
{
    handle_t *h = NULL;
    for (size_t i = 0; room && i < j->nhandles && !h; i++)
        if (j->handles[i].name && strcmp(j->handles[i].name, name) == 0)
            h = &j->handles[i];
    if (h) {
        json_t *o = json_pack("{sssIs{sssI}}", "janus", "message", "handle_id", (json_int_t)h->id,
                              "body", "request", "destroy", "room", (json_int_t)room);
        txn_t *t = o ? send_request(j, o) : NULL;
        json_decref(o);
        if (t) {
            t->is_message = true;
            t->release = strdup(name);
            if (t->release)
                return;
        }
    }
    detach_named(j, name);
}

static void tick(janus_t *j)
{
    j->tick_timer = 0;
    flush_parked(j);
    uint64_t now = rt_now_ms();
    bool named = false;
    for (txn_t **pp = &j->txns; *pp;) {
        txn_t *t = *pp;
        if (t->reply_to[0] && now >= t->deadline_ms) {
            *pp = t->next;
            answer_error(j, t, "timeout");
            free_txn(t);
        } else {
            named |= t->reply_to[0] != 0;
            pp = &t->next;
        }
    }
    if (named || j->parked)
        arm_tick(j);
}

static void janus_info(void *state, rt_msg_t *m)
{
    janus_t *j = state;
    switch (m->tag) {
    case JANUS_REQ: {
        asker_t k = {.rid = m->a, .timeout_ms = (int)m->b};
        submit(j, m->data, &k);
        return;
    }
    case JANUS_IO_UP:
        if (j->conn && m->a == janus_conn_gen(j->conn)) {
            j->connected = true;
            json_t *o = json_pack("{s:s}", "janus", "create");
            txn_t *t = o ? send_request(j, o) : NULL;
            json_decref(o);
            if (t)
                t->is_create = true;
        }
        return;
    case JANUS_IO_MSG:
        if (j->conn && m->a == janus_conn_gen(j->conn) && m->data)
            on_message(j, m->data);
        return;
    case JANUS_IO_DOWN:
        if (j->conn && m->a == janus_conn_gen(j->conn))
            lost(j);
        return;
    case JANUS_RELEASE:
        if (m->data)
            release(j, m->data, m->a);
        return;
    case JANUS_T_RECONNECT:
        if (m->ref == j->rc_timer && !j->conn)
            conn_start(j);
        return;
    case JANUS_T_TICK:
        if (m->ref == j->tick_timer)
            tick(j);
        return;
    case JANUS_T_KEEPALIVE:
        if (m->ref != j->ka_timer || !j->session)
            return;
        send_internal(j, "keepalive", 0, false);
        /* Transactions Janus never answered (the caller timed out long ago). */
        uint64_t now = rt_now_ms();
        for (txn_t **pp = &j->txns; *pp;) {
            txn_t *t = *pp;
            if (now - t->started_ms > (uint64_t)j->cfg.txn_timeout_ms) {
                *pp = t->next;
                answer_error(j, t, "timeout");
                free_txn(t);
            } else {
                pp = &t->next;
            }
        }
        arm_keepalive(j);
        return;
    default:
        break;
    }
    if (m->kind == RT_MSG_DOWN) {
        /* A handle owner exited: detach what it held. */
        for (size_t i = 0; i < j->nhandles;) {
            if (j->handles[i].mon && j->handles[i].mon == m->ref) {
                uint64_t id = j->handles[i].id;
                j->handles[i] = j->handles[--j->nhandles];
                send_internal(j, "detach", id, false);
            } else {
                i++;
            }
        }
    }
}

static void janus_terminate(void *state, rt_reason_t *reason)
{
    janus_t *j = state;
    atomic_store(&g_up, false);
    if (j->session && j->conn)
        send_internal(j, "destroy", 0, false);
    conn_end(j);
    while (j->txns) {
        txn_t *t = j->txns;
        j->txns = t->next;
        free_txn(t);
    }
    while (j->parked) {
        parked_t *p = j->parked;
        j->parked = p->next;
        rt_msg_free(p->msg);
        free(p->name);
        free(p);
    }
    for (size_t i = 0; i < j->nhandles; i++)
        free(j->handles[i].name);
    free(j->handles);
    SSL_CTX_free(j->tls);
    free(j->url);
    free(j);
}

const rt_behaviour_t janus_behaviour = RT_BEHAVIOUR(.name = "janus", .init = janus_init,
                                                    .handle_call = janus_call,
                                                    .handle_info = janus_info,
                                                    .terminate = janus_terminate);

rt_msg_t *janus_req_new(const char *json)
{
    rt_msg_t *m = rt_msg_new(JANUS_REQ);
    char *copy = m ? strdup(json) : NULL;
    if (!copy) {
        rt_msg_free(m);
        return NULL;
    }
    rt_msg_set_data(m, copy, RT_OWN_FREE);
    return m;
}

rt_msg_t *janus_req_named(const char *json, uint64_t rid, int timeout_ms)
{
    rt_msg_t *m = janus_req_new(json);
    if (m) {
        m->a = rid;
        m->b = timeout_ms > 0 ? (uint64_t)timeout_ms : 0;
    }
    return m;
}

rt_msg_t *janus_release_new(const char *owner_name, uint64_t videoroom)
{
    rt_msg_t *m = rt_msg_new(JANUS_RELEASE);
    char *copy = m ? strdup(owner_name) : NULL;
    if (!copy) {
        rt_msg_free(m);
        return NULL;
    }
    rt_msg_set_data(m, copy, RT_OWN_FREE);
    m->a = videoroom;
    return m;
}
