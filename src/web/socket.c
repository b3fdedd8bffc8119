/*
 * web/socket.c — one Phoenix socket and its channels (see web/socket.h
 * and the rules in web/channel.h).
 *
 * A channel is part of its socket's state, so the web_channel_* functions
 * that act on a channel live here too; web/channel.c holds what is
 * shared by every socket (broadcasts, the router, counters).
 *
 * Invariants
 *   1. A channel is in s->channels from its phx_join until finish() runs;
 *      at most one channel per topic (a duplicate join ends the old one
 *      before the new one is created).
 *   2. A channel is never freed while one of its callbacks runs
 *      (ch->depth > 0): ending it then only marks it dead, and the code
 *      that called the callback finishes it when the callback returns.
 *   3. The socket is never freed while one of its entry points runs
 *      (s->busy > 0): web_socket_free then only marks it.
 *   4. The connection is subscribed to a topic exactly while some channel
 *      in s->channels uses it (as its own topic or as an extra topic):
 *      rt_subscribe/rt_unsubscribe are called when the first user comes
 *      and when the last one goes, found by scanning the channels (no
 *      per-topic counter to keep: an idle socket holds no copy of its
 *      topic names besides its channels').
 * Costs: channels are found by a linear scan comparing topic hashes
 * first; a socket holds at most WEB_SOCKET_MAX_CHANNELS and usually one
 * to three, so a table would cost more than it saves.
 * Memory of an idle joined channel (a target: design §4, ~1.5 KB per
 * connection all included): one block for the socket with the user and
 * the token's claims as text (parsed only if a handler asks for them),
 * one block for each channel with its topic and refs inline; what only
 * some channels need (deferred pushes, watched refs, the join queue,
 * extra topics) lives in a block allocated on first use (ch_more_t).
 */
#include "web/socket.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/ws.h"

typedef enum ch_status {
    CH_JOINING = 1,
    CH_JOINED,
} ch_status_t;

/* Deferred pushes form a circular list: ch_more_t.deferred is the newest
 * and its next the oldest. Appending and answering the oldest (the usual
 * case: a room answers its calls in order) are both O(1), with no tail
 * pointer in ch_more_t (every room channel carries one, see the memory
 * note above). */
typedef struct deferred {
    struct deferred *next;
    uint64_t token;
    char ref[];
} deferred_t;

typedef struct queued {
    struct queued *next;
    phx_msg_t msg;
} queued_t;

/* An extra topic a channel subscribed to (web_channel_subscribe). */
typedef struct chsub {
    struct chsub *next;
    uint64_t hash;
    char topic[];
} chsub_t;

/* What only some channels need, allocated on first use. */
typedef struct ch_more {
    deferred_t *deferred;
    unsigned ndeferred;
    unsigned nqueued;
    uint64_t *watch;
    uint32_t nwatch, capwatch;
    queued_t *qhead, *qtail;
    chsub_t *subs;
} ch_more_t;

struct web_channel {
    web_channel_t *next;
    web_socket_t *s;
    const web_channel_handler_t *h;
    void *state;
    uint64_t id;
    uint64_t hash;            /* rt_topic_hash(topic) */
    const char *push_ref;     /* the push handle_in is looking at */
    ch_more_t *more;          /* NULL until needed */
    uint32_t jr_off;          /* join_ref at topic + jr_off; 0: null */
    uint32_t jp_off;          /* ref of the phx_join (for its reply); 0: null */
    uint16_t depth;           /* callbacks running (invariant 2) */
    uint8_t status;           /* ch_status_t */
    uint8_t why;              /* web_ch_exit_t, once dead */
    bool answered;            /* the join was answered (ok or error) */
    bool dead;                /* ending: finish() when depth drops to 0 */
    bool join_called;         /* terminate is owed (rule 6) */
    bool in_push;             /* handle_in runs for push_ref */
    bool push_answered;
    char topic[];             /* topic, then join_ref and join_push_ref */
};

/* What every socket of an endpoint shares: its output functions and
 * router, interned (ops_intern) so that a socket holds one pointer to
 * them instead of four. */
typedef struct sock_ops {
    int (*send_text)(void *ctx, const char *data, size_t len);
    int (*send_frame)(void *ctx, rt_buf_t *frame);
    void (*close)(void *ctx, int code, const char *reason);
    const web_channel_router_t *router;
} sock_ops_t;

struct web_socket {
    const sock_ops_t *ops;    /* interned, or owned if ops_owned */
    void *ctx;                /* the output's ctx */
    web_channel_t *channels;
    json_t *claims;           /* parsed from the claims text on first use */
    uint16_t nchannels;
    uint16_t busy;            /* invariant 3 */
    uint8_t vsn;              /* phx_vsn_t */
    bool closing;
    bool free_pending;
    bool has_claims;          /* the claims text follows user[] */
    bool ops_owned;           /* ops is this socket's (the table was full) */
    char user[];              /* then, if has_claims, the claims text */
};

_Static_assert(WEB_SOCKET_MAX_CHANNELS <= UINT16_MAX, "nchannels is 16 bits");

/* Interned sock_ops: an endpoint has one set, the unit tests a few. A
 * slot is written once, under ops_mu, before ops_n makes it visible
 * (release); readers scan the published slots without a lock. */
#define OPS_MAX 32
static sock_ops_t ops_table[OPS_MAX];
static _Atomic unsigned ops_n;
static pthread_mutex_t ops_mu = PTHREAD_MUTEX_INITIALIZER;

static bool ops_eq(const sock_ops_t *a, const sock_ops_t *b)
{
    return a->send_text == b->send_text && a->send_frame == b->send_frame &&
           a->close == b->close && a->router == b->router;
}

/* The interned copy of o, or NULL if the table is full. */
static const sock_ops_t *ops_intern(const sock_ops_t *o)
{
    unsigned n = atomic_load_explicit(&ops_n, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (ops_eq(&ops_table[i], o))
            return &ops_table[i];
    const sock_ops_t *r = NULL;
    pthread_mutex_lock(&ops_mu);
    n = atomic_load_explicit(&ops_n, memory_order_relaxed);
    for (unsigned i = 0; i < n && !r; i++)
        if (ops_eq(&ops_table[i], o))
            r = &ops_table[i];
    if (!r && n < OPS_MAX) {
        ops_table[n] = *o;
        r = &ops_table[n];
        atomic_store_explicit(&ops_n, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&ops_mu);
    return r;
}

static const char *claims_text(const web_socket_t *s)
{
    return s->has_claims ? s->user + strlen(s->user) + 1 : NULL;
}

/* The refs kept in the channel's block (offsets: 8 bytes less than two
 * pointers, per idle channel). */
static inline const char *jref(const web_channel_t *ch)
{
    return ch->jr_off ? ch->topic + ch->jr_off : NULL;
}

static inline const char *jpref(const web_channel_t *ch)
{
    return ch->jp_off ? ch->topic + ch->jp_off : NULL;
}

/* The channel's rarely used part, allocated now if needed. NULL on ENOMEM. */
static ch_more_t *more_of(web_channel_t *ch)
{
    if (!ch->more)
        ch->more = calloc(1, sizeof *ch->more);
    return ch->more;
}

static void deferred_append(ch_more_t *mo, deferred_t *d)
{
    if (mo->deferred) {
        d->next = mo->deferred->next;
        mo->deferred->next = d;
    } else {
        d->next = d;
    }
    mo->deferred = d;
    mo->ndeferred++;
}

/* The oldest deferred push, unlinked; NULL if none. */
static deferred_t *deferred_pop(ch_more_t *mo)
{
    deferred_t *last = mo ? mo->deferred : NULL;
    if (!last)
        return NULL;
    deferred_t *d = last->next;
    if (d == last)
        mo->deferred = NULL;
    else
        last->next = d->next;
    mo->ndeferred--;
    return d;
}

/* The deferred push with token, unlinked; NULL if none. Looks at the
 * oldest first. */
static deferred_t *deferred_take(ch_more_t *mo, uint64_t token)
{
    deferred_t *last = mo ? mo->deferred : NULL;
    if (!last)
        return NULL;
    deferred_t *prev = last;
    do {
        deferred_t *d = prev->next;
        if (d->token == token) {
            if (d == prev) {
                mo->deferred = NULL;
            } else {
                prev->next = d->next;
                if (d == last)
                    mo->deferred = prev;
            }
            mo->ndeferred--;
            return d;
        }
        prev = d;
    } while (prev != last);
    return NULL;
}

static void count(int which, uint64_t n)
{
    atomic_fetch_add_explicit(&web__stat[which], n, memory_order_relaxed);
}

static void uncount(int which)
{
    atomic_fetch_sub_explicit(&web__stat[which], 1, memory_order_relaxed);
}

/* ---- output ------------------------------------------------------------- */

static int send_out(web_socket_t *s, int rc, phx_out_t *o)
{
    if (rc != 0) {
        phx_out_free(o);
        return rc == PHX_E_NOMEM ? WEB_E_NOMEM : WEB_E_ARG;
    }
    int r = WEB_E_CLOSED;
    if (!s->closing)
        r = s->ops->send_text(s->ctx, o->json, o->json_len) == 0 ? WEB_OK : WEB_E_CLOSED;
    phx_out_free(o);
    return r;
}

static int send_reply(web_socket_t *s, const char *join_ref, const char *ref, const char *topic,
                      const char *status, const json_t *response)
{
    phx_out_t o = {0};
    int rc = phx_reply(s->vsn, join_ref, ref, topic, status, response, &o);
    return send_out(s, rc, &o);
}

static int send_reason(web_socket_t *s, const char *join_ref, const char *ref, const char *topic,
                       const char *status, const char *reason)
{
    json_t *r = json_pack("{ss}", "reason", reason);
    if (!r)
        return WEB_E_NOMEM;
    int rc = send_reply(s, join_ref, ref, topic, status, r);
    json_decref(r);
    return rc;
}

static int send_event(web_socket_t *s, const char *join_ref, const char *ref, const char *topic,
                      const char *event, const json_t *payload)
{
    phx_out_t o = {0};
    int rc = phx_encode(s->vsn, join_ref, ref, topic, event, payload, &o);
    return send_out(s, rc, &o);
}

static void close_socket(web_socket_t *s, int code, const char *reason)
{
    if (s->closing)
        return;
    s->closing = true;
    s->ops->close(s->ctx, code, reason);
}

/* ---- subscriptions (invariant 4) ------------------------------------------ */

/* Does a channel of s use topic (its own, or an extra one)? */
static bool topic_used(const web_socket_t *s, const char *topic, uint64_t h)
{
    for (const web_channel_t *ch = s->channels; ch; ch = ch->next) {
        if (ch->hash == h && strcmp(ch->topic, topic) == 0)
            return true;
        for (const chsub_t *x = ch->more ? ch->more->subs : NULL; x; x = x->next)
            if (x->hash == h && strcmp(x->topic, topic) == 0)
                return true;
    }
    return false;
}

/* Before a new user of topic is added to s->channels. */
static int sub_add(web_socket_t *s, const char *topic, uint64_t h)
{
    if (topic_used(s, topic, h))
        return WEB_OK;
    int rc = rt_subscribe(topic);
    return rc == RT_OK ? WEB_OK : rc == RT_ENOMEM ? WEB_E_NOMEM : rc;
}

/* After a user of topic was removed from s->channels. */
static void sub_del(web_socket_t *s, const char *topic, uint64_t h)
{
    if (!topic_used(s, topic, h))
        rt_unsubscribe(topic);
}

/* ---- channels ------------------------------------------------------------ */

static web_channel_t *find_topic(web_socket_t *s, const char *topic, uint64_t h)
{
    for (web_channel_t *ch = s->channels; ch; ch = ch->next)
        if (ch->hash == h && strcmp(ch->topic, topic) == 0)
            return ch;
    return NULL;
}

static web_channel_t *find_id(web_socket_t *s, uint64_t id)
{
    for (web_channel_t *ch = s->channels; ch; ch = ch->next)
        if (ch->id == id)
            return ch;
    return NULL;
}

static web_channel_t *find_watch(web_socket_t *s, uint64_t ref, size_t *idx)
{
    for (web_channel_t *ch = s->channels; ch; ch = ch->next)
        for (size_t i = 0; ch->more && i < ch->more->nwatch; i++)
            if (ch->more->watch[i] == ref) {
                *idx = i;
                return ch;
            }
    return NULL;
}

/* The client's join_ref matches the channel's (V1 clients that send no
 * join_ref join with null, and then every join_ref is current). */
static bool current(const web_channel_t *ch, const char *join_ref)
{
    if (!jref(ch))
        return true;
    return join_ref && strcmp(join_ref, jref(ch)) == 0;
}

static void free_queued(queued_t *q)
{
    phx_msg_free(&q->msg);
    free(q);
}

/* Sends what ending a channel owes the client (rule 6), then terminate,
 * then frees it. leave_ref: the phx_leave's ref for WEB_CH_LEFT. */
static void finish(web_channel_t *ch, const char *leave_ref)
{
    web_socket_t *s = ch->s;
    web_ch_exit_t why = ch->why;

    ch_more_t *mo = ch->more;
    /* Deferred pushes first, oldest first: they were sent before
     * whatever ends it. */
    for (deferred_t *d; (d = deferred_pop(mo));) {
        if (why != WEB_CH_SOCKET_CLOSED)
            send_reason(s, jref(ch), d->ref, ch->topic, "error", "channel closed");
        free(d);
    }
    /* Pushes queued behind a join that never completed: as Phoenix
     * answers a push to a topic that is not joined. */
    while (mo && mo->qhead) {
        queued_t *q = mo->qhead;
        mo->qhead = q->next;
        if (why != WEB_CH_SOCKET_CLOSED)
            send_reason(s, NULL, q->msg.ref, ch->topic, "error", "unmatched topic");
        free_queued(q);
    }
    if (mo)
        mo->qtail = NULL;

    switch (why) {
    case WEB_CH_LEFT:
        send_reply(s, jref(ch), leave_ref, ch->topic, "ok", NULL);
        send_event(s, jref(ch), jref(ch), ch->topic, "phx_close", NULL);
        break;
    case WEB_CH_JOIN_FAILED:
        break; /* the error reply went out with join_error */
    case WEB_CH_CLOSED:
        if (ch->status == CH_JOINED)
            send_event(s, jref(ch), jref(ch), ch->topic, "phx_close", NULL);
        else if (!ch->answered)
            send_reason(s, jref(ch), jpref(ch), ch->topic, "error", "join crashed");
        break;
    case WEB_CH_CRASHED:
        if (ch->status == CH_JOINED) {
            /* A fixed payload: written as text, not built and dumped
             * (a thousand rooms crashing at once send a thousand). */
            static const char p[] = "{\"reason\":\"channel_crash\"}";
            phx_out_t o = {0};
            send_out(s,
                     phx_encode_raw(s->vsn, jref(ch), jref(ch), ch->topic, "phx_error", p,
                                    sizeof p - 1, &o),
                     &o);
            count(WEB__STAT_CRASHES, 1);
        } else if (!ch->answered) {
            send_reason(s, jref(ch), jpref(ch), ch->topic, "error", "join crashed");
            count(WEB__STAT_JOIN_ERRORS, 1);
        }
        break;
    case WEB_CH_REPLACED:
        if (ch->status == CH_JOINED)
            send_event(s, jref(ch), jref(ch), ch->topic, "phx_close", NULL);
        else if (!ch->answered)
            send_reason(s, jref(ch), jpref(ch), ch->topic, "error", "duplicate join");
        break;
    case WEB_CH_SOCKET_CLOSED:
        break;
    }

    /* Unlink before terminate, so nothing can route to it any more. */
    for (web_channel_t **pp = &s->channels; *pp; pp = &(*pp)->next)
        if (*pp == ch) {
            *pp = ch->next;
            break;
        }
    s->nchannels--;
    uncount(WEB__STAT_CHANNELS);
    sub_del(s, ch->topic, ch->hash);
    while (mo && mo->subs) {
        chsub_t *x = mo->subs;
        mo->subs = x->next;
        sub_del(s, x->topic, x->hash);
        free(x);
    }
    if (ch->join_called && ch->h->terminate) {
        ch->depth++; /* nothing may end it again from inside terminate */
        ch->h->terminate(ch, ch->state, why);
    }
    /* terminate may have used the watch list or deferred: ch->more again */
    if (ch->more) {
        for (deferred_t *d; (d = deferred_pop(ch->more));) /* deferred from inside terminate */
            free(d);
        while (ch->more->subs) { /* subscribed from inside terminate */
            chsub_t *x = ch->more->subs;
            ch->more->subs = x->next;
            sub_del(s, x->topic, x->hash);
            free(x);
        }
        free(ch->more->watch);
        free(ch->more);
    }
    free(ch);
}

/* Ends ch now, or when its running callback returns (invariant 2). */
static void end_channel(web_channel_t *ch, web_ch_exit_t why)
{
    if (ch->dead)
        return;
    ch->dead = true;
    ch->why = why;
    if (ch->depth == 0)
        finish(ch, NULL);
}

static bool dispatch_push(web_channel_t *ch, phx_msg_t *m);

/* After a callback returned r: finish a dead channel, apply r, and hand a
 * newly joined channel its queued pushes. Returns false if ch is gone. */
static bool after_callback(web_channel_t *ch, web_ch_result_t r)
{
    if (!ch->dead && r != WEB_CH_OK) {
        ch->dead = true; /* finished just below, not inside end_channel */
        ch->why = r == WEB_CH_STOP ? WEB_CH_CLOSED : WEB_CH_CRASHED;
    }
    if (ch->dead) {
        if (ch->depth == 0)
            finish(ch, NULL);
        return false;
    }
    while (ch->status == CH_JOINED && ch->more && ch->more->qhead && ch->depth == 0) {
        ch_more_t *mo = ch->more;
        queued_t *q = mo->qhead;
        mo->qhead = q->next;
        if (!mo->qhead)
            mo->qtail = NULL;
        mo->nqueued--;
        phx_msg_t m = q->msg;
        free(q);
        if (!dispatch_push(ch, &m)) /* takes m */
            return false;                /* finished inside */
    }
    return true;
}

static void call_info(web_channel_t *ch, rt_msg_t *m)
{
    web_ch_result_t r = WEB_CH_OK;
    if (ch->h->handle_info) {
        ch->depth++;
        r = ch->h->handle_info(ch, ch->state, m);
        ch->depth--;
    }
    if (ch->depth == 0)
        after_callback(ch, r);
}

/* A push for a joined channel: handle_in, then the reply it owes (rule 4).
 * Takes m. Returns false if the channel is gone afterwards. */
static bool dispatch_push(web_channel_t *ch, phx_msg_t *m)
{
    web_socket_t *s = ch->s;
    count(WEB__STAT_PUSHES_IN, 1);
    if (!ch->h->handle_in) {
        if (m->ref)
            send_reason(s, jref(ch), m->ref, ch->topic, "error", "unknown event");
        phx_msg_free(m);
        return true;
    }
    ch->in_push = true;
    ch->push_answered = false;
    ch->push_ref = m->ref;
    ch->depth++;
    web_ch_result_t r = ch->h->handle_in(ch, ch->state, m->event, m->payload);
    ch->depth--;
    ch->in_push = false;
    if (!ch->push_answered && m->ref && !s->closing) {
        if (r == WEB_CH_CRASH)
            send_reason(s, jref(ch), m->ref, ch->topic, "error", "channel_crash");
        else
            send_reply(s, jref(ch), m->ref, ch->topic, "ok", NULL);
    }
    ch->push_ref = NULL;
    phx_msg_free(m);
    return ch->depth == 0 ? after_callback(ch, r) : true;
}

/* phx_join of a topic with no channel. Takes m. */
static void join(web_socket_t *s, phx_msg_t *m)
{
    const web_channel_handler_t *h = web_channel_route(s->ops->router, m->topic);
    if (!h) {
        /* Phoenix's encode_ignore: no join_ref in this reply. */
        send_reason(s, NULL, m->ref, m->topic, "error", "unmatched topic");
        count(WEB__STAT_JOIN_ERRORS, 1);
        phx_msg_free(m);
        return;
    }
    if (s->nchannels >= WEB_SOCKET_MAX_CHANNELS) {
        json_t *r = json_pack("{sssi}", "reason", "too many channels", "limit",
                              WEB_SOCKET_MAX_CHANNELS);
        send_reply(s, m->join_ref, m->ref, m->topic, "error", r);
        json_decref(r);
        count(WEB__STAT_JOIN_ERRORS, 1);
        phx_msg_free(m);
        return;
    }
    /* One block: the channel, its topic and both refs (an idle channel
     * is one allocation); the refs are found by 32-bit offsets. */
    size_t tl = strlen(m->topic) + 1;
    size_t jl = m->join_ref ? strlen(m->join_ref) + 1 : 0;
    size_t rl = m->ref ? strlen(m->ref) + 1 : 0;
    uint64_t hash = rt_topic_hash(m->topic);
    web_channel_t *ch = tl + jl + rl <= UINT32_MAX ? calloc(1, offsetof(web_channel_t, topic) + tl + jl + rl) : NULL;
    if (!ch || sub_add(s, m->topic, hash) != WEB_OK) {
        free(ch);
        send_reason(s, m->join_ref, m->ref, m->topic, "error", "out of memory");
        count(WEB__STAT_JOIN_ERRORS, 1);
        phx_msg_free(m);
        return;
    }
    memcpy(ch->topic, m->topic, tl);
    if (m->join_ref) {
        memcpy(ch->topic + tl, m->join_ref, jl);
        ch->jr_off = (uint32_t)tl;
    }
    if (m->ref) {
        memcpy(ch->topic + tl + jl, m->ref, rl);
        ch->jp_off = (uint32_t)(tl + jl);
    }
    ch->s = s;
    ch->h = h;
    ch->id = rt_make_ref();
    ch->hash = hash;
    ch->status = CH_JOINING;
    ch->next = s->channels;
    s->channels = ch;
    s->nchannels++;
    count(WEB__STAT_CHANNELS, 1);
    count(WEB__STAT_JOINS, 1);

    ch->join_called = true;
    ch->depth++;
    web_ch_result_t r = h->join(ch, ch->topic, m->payload, &ch->state);
    ch->depth--;
    phx_msg_free(m);
    if (!ch->answered && !ch->dead && r != WEB_CH_OK)
        r = WEB_CH_CRASH; /* ends it with "join crashed" (rule 2) */
    after_callback(ch, r);
}

/* One decoded client message. Takes m. */
static void dispatch(web_socket_t *s, phx_msg_t *m)
{
    if (strcmp(m->topic, "phoenix") == 0 && strcmp(m->event, "heartbeat") == 0) {
        send_reply(s, NULL, m->ref, "phoenix", "ok", NULL);
        phx_msg_free(m);
        return;
    }
    web_channel_t *ch = find_topic(s, m->topic, rt_topic_hash(m->topic));
    if (strcmp(m->event, "phx_join") == 0) {
        if (ch)
            end_channel(ch, WEB_CH_REPLACED); /* depth is 0 here: done now */
        join(s, m);
        return;
    }
    if (strcmp(m->event, "phx_leave") == 0) {
        if (!ch) {
            /* Phoenix answers a leave of a topic not joined with ok. */
            send_reply(s, m->join_ref, m->ref, m->topic, "ok", NULL);
        } else if (current(ch, m->join_ref)) {
            ch->dead = true;
            ch->why = WEB_CH_LEFT;
            finish(ch, m->ref);
        }
        /* else a leave with an old join_ref: the client raced a close
         * the server already sent; Phoenix ignores it too. */
        phx_msg_free(m);
        return;
    }
    if (!ch) {
        send_reason(s, NULL, m->ref, m->topic, "error", "unmatched topic");
        phx_msg_free(m);
        return;
    }
    if (!current(ch, m->join_ref)) {
        phx_msg_free(m); /* stale join_ref: ignored (design §4) */
        return;
    }
    if (ch->status == CH_JOINING) {
        ch_more_t *mo = more_of(ch);
        queued_t *q = mo && mo->nqueued < WEB_SOCKET_MAX_QUEUED ? malloc(sizeof *q) : NULL;
        if (!q) {
            send_reason(s, jref(ch), m->ref, m->topic, "error", "join pending");
            phx_msg_free(m);
            return;
        }
        q->msg = *m;
        q->next = NULL;
        if (mo->qtail)
            mo->qtail->next = q;
        else
            mo->qhead = q;
        mo->qtail = q;
        mo->nqueued++;
        return;
    }
    dispatch_push(ch, m);
}

/* ---- socket entry points ----------------------------------------------------- */

/* The claims as compact JSON text (malloc'd), as json_dumps(JSON_COMPACT)
 * writes them. A token's claims are a flat object of strings and
 * integers: those are written here directly (json_dumps costs ~6,600
 * instructions for three claims, this ~1,000, on every upgrade); anything
 * else goes through json_dumps. NULL on ENOMEM. */
static char *claims_dump(const json_t *claims)
{
    if (!json_is_object(claims))
        return json_dumps(claims, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t n = 2; /* {} */
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)claims, k, v) {
        if (!json_is_string(v) && !json_is_integer(v) && !json_is_boolean(v) && !json_is_null(v))
            return json_dumps(claims, JSON_COMPACT);
        if (json_is_string(v) && strlen(json_string_value(v)) != json_string_length(v))
            return json_dumps(claims, JSON_COMPACT); /* a \u0000 inside */
        n += web__json_quote_len(k) + 2 + (json_is_string(v) ? web__json_quote_len(json_string_value(v)) : 24);
    }
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    *o++ = '{';
    json_object_foreach((json_t *)claims, k, v) {
        if (o != out + 1)
            *o++ = ',';
        web__json_quote(k, o);
        o += web__json_quote_len(k);
        *o++ = ':';
        if (json_is_string(v)) {
            web__json_quote(json_string_value(v), o);
            o += web__json_quote_len(json_string_value(v));
        } else if (json_is_integer(v)) {
            o += sprintf(o, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        } else {
            const char *w = json_is_true(v) ? "true" : json_is_false(v) ? "false" : "null";
            memcpy(o, w, strlen(w));
            o += strlen(w);
        }
    }
    *o++ = '}';
    *o = '\0';
    return out;
}

web_socket_t *web_socket_new(const web_socket_config_t *cfg)
{
    if (!cfg || !cfg->router || !cfg->out.send_text || !cfg->out.send_frame || !cfg->out.close)
        return NULL;
    /* The claims are kept as compact text and parsed only if a handler
     * asks (web_channel_claims): a jansson object of three claims costs
     * ~500 bytes, its text ~60, and the user: topic never looks. */
    char *claims = cfg->claims ? claims_dump(cfg->claims) : NULL;
    if (cfg->claims && !claims)
        return NULL;
    const char *user = cfg->user ? cfg->user : "";
    size_t ul = strlen(user) + 1, cl = claims ? strlen(claims) + 1 : 0;
    sock_ops_t o = {.send_text = cfg->out.send_text, .send_frame = cfg->out.send_frame,
                    .close = cfg->out.close, .router = cfg->router};
    const sock_ops_t *ops = ops_intern(&o);
    sock_ops_t *own = ops ? NULL : malloc(sizeof *own);
    web_socket_t *s = ops || own ? calloc(1, offsetof(web_socket_t, user) + ul + cl) : NULL;
    if (!s) {
        free(own);
        free(claims);
        return NULL;
    }
    if (own) {
        *own = o;
        s->ops = own;
        s->ops_owned = true;
    } else {
        s->ops = ops;
    }
    s->ctx = cfg->out.ctx;
    s->vsn = cfg->vsn == PHX_V2 ? PHX_V2 : PHX_V1;
    memcpy(s->user, user, ul);
    if (claims) {
        memcpy(s->user + ul, claims, cl);
        s->has_claims = true;
        free(claims);
    }
    count(WEB__STAT_SOCKETS, 1);
    return s;
}

static void really_free(web_socket_t *s)
{
    s->closing = true; /* nothing more goes to the client */
    while (s->channels)
        end_channel(s->channels, WEB_CH_SOCKET_CLOSED);
    /* Subscriptions went with the channels (invariant 4). */
    json_decref(s->claims);
    if (s->ops_owned)
        free((void *)s->ops);
    free(s);
    uncount(WEB__STAT_SOCKETS);
}

void web_socket_free(web_socket_t *s)
{
    if (!s)
        return;
    if (s->busy > 0) {
        s->free_pending = true;
        s->closing = true;
        return;
    }
    really_free(s);
}

static void leave_entry(web_socket_t *s)
{
    if (--s->busy == 0 && s->free_pending)
        really_free(s);
}

void web_socket_handle_message(web_socket_t *s, bool text, const char *data, size_t len)
{
    if (s->closing)
        return;
    s->busy++;
    if (!text) {
        count(WEB__STAT_BAD_MESSAGES, 1);
        close_socket(s, WS_CLOSE_UNSUPPORTED, "binary messages are not Phoenix messages");
    } else {
        phx_msg_t m;
        int rc = phx_decode(s->vsn, data, len, &m);
        if (rc == PHX_E_NOMEM) {
            close_socket(s, WS_CLOSE_INTERNAL, "out of memory");
        } else if (rc != 0) {
            count(WEB__STAT_BAD_MESSAGES, 1);
            close_socket(s, WS_CLOSE_INVALID_DATA, phx_strerror(rc));
        } else {
            dispatch(s, &m);
        }
    }
    leave_entry(s);
}

static bool handle_pub(web_socket_t *s, rt_msg_t *m)
{
    if (m->tag == WEB_MSG_BROADCAST && m->data && m->own == RT_OWN_RC) {
        web_broadcast_t *b = (web_broadcast_t *)m->data;
        web_channel_t *ch = find_topic(s, b->topic, m->a);
        if (ch) {
            if (ch->status == CH_JOINED && !ch->dead && b->exclude != rt_self() && !s->closing) {
                rt_buf_t *f = web_broadcast_frame(b, s->vsn);
                if (f) {
                    s->ops->send_frame(s->ctx, f);
                    count(WEB__STAT_BROADCASTS_OUT, 1);
                }
            }
            return true; /* joining: dropped (channel.h rule 1) */
        }
    }
    /* Extra topics: to every channel that subscribed to this hash. */
    bool used = false;
    web_channel_t *next;
    for (web_channel_t *ch = s->channels; ch; ch = next) {
        next = ch->next;
        for (chsub_t *x = ch->more ? ch->more->subs : NULL; x; x = x->next)
            if (x->hash == m->a) {
                used = true;
                call_info(ch, m); /* may end ch only: next stays valid */
                break;
            }
    }
    return used;
}

bool web_socket_handle_info(web_socket_t *s, rt_msg_t *m)
{
    bool used = false;
    s->busy++;
    switch (m->kind) {
    case RT_MSG_PUB:
        used = handle_pub(s, m);
        break;
    case RT_MSG_INFO:
    case RT_MSG_CAST:
        if (m->tag == WEB_MSG_PUSH) {
            used = true;
            web_channel_t *ch = find_id(s, m->a);
            if (ch && m->data && m->own == RT_OWN_RC) {
                /* Encoded for this channel: it carries its join_ref. */
                web_broadcast_t *b = (web_broadcast_t *)m->data;
                web_channel_push_raw(ch, b->event, b->payload, b->payload_len);
            }
            break;
        }
        if (m->tag == WEB_MSG_CHANNEL) {
            used = true;
            web_channel_t *ch = find_id(s, m->a);
            if (ch)
                call_info(ch, m);
            break;
        }
        break;
    default:
        if (m->ref) {
            size_t i;
            web_channel_t *ch = find_watch(s, m->ref, &i);
            if (ch) {
                used = true;
                /* A reply or a DOWN is the last message with its ref. */
                if (m->kind == RT_MSG_REPLY || m->kind == RT_MSG_DOWN ||
                    m->kind == RT_MSG_ACK)
                    ch->more->watch[i] = ch->more->watch[--ch->more->nwatch];
                call_info(ch, m);
            }
        }
        break;
    }
    leave_entry(s);
    return used;
}

size_t web_socket_channel_count(const web_socket_t *s)
{
    return s->nchannels;
}

bool web_socket_closing(const web_socket_t *s)
{
    return s->closing;
}

phx_vsn_t web_socket_vsn(const web_socket_t *s)
{
    return s->vsn;
}

/* ---- web_channel_* (channel.h) ------------------------------------------------ */

const char *web_channel_topic(const web_channel_t *ch) { return ch->topic; }
const char *web_channel_join_ref(const web_channel_t *ch) { return jref(ch); }
uint64_t web_channel_id(const web_channel_t *ch) { return ch->id; }
rt_pid_t web_channel_pid(const web_channel_t *ch) { (void)ch; return rt_self(); }
const char *web_channel_user(const web_channel_t *ch) { return ch->s->user; }

const json_t *web_channel_claims(const web_channel_t *ch)
{
    web_socket_t *s = ch->s;
    if (!s->claims) {
        /* First use: parse the text kept by web_socket_new (it was dumped
         * from a valid value, so only ENOMEM can fail here: then NULL,
         * which jansson's getters take, and the next call tries again). */
        s->claims = s->has_claims ? json_loads(claims_text(s), JSON_DECODE_ANY, NULL)
                                  : json_object();
    }
    return s->claims;
}
const web_channel_handler_t *web_channel_handler(const web_channel_t *ch) { return ch->h; }
bool web_channel_joined(const web_channel_t *ch) { return ch->status == CH_JOINED && !ch->dead; }

int web_channel_join_ok(web_channel_t *ch, const json_t *response)
{
    if (ch->answered || ch->dead)
        return WEB_E_STATE;
    ch->answered = true;
    ch->status = CH_JOINED;
    int rc = send_reply(ch->s, jref(ch), jpref(ch), ch->topic, "ok", response);
    /* Queued pushes follow once the running callback returns; outside
     * any callback (a caller that is not a handler) drain them now. */
    if (ch->depth == 0)
        after_callback(ch, WEB_CH_OK);
    return rc == WEB_E_CLOSED ? WEB_OK : rc;
}

int web_channel_join_ok_raw(web_channel_t *ch, const char *response_json, size_t response_len)
{
    if (ch->answered || ch->dead)
        return WEB_E_STATE;
    if (!response_json)
        return WEB_E_ARG;
    phx_out_t o = {0};
    int prc = phx_reply_raw(ch->s->vsn, jref(ch), jpref(ch), ch->topic, "ok", response_json,
                            response_len, &o);
    if (prc == PHX_E_ARG) {
        phx_out_free(&o);
        return WEB_E_ARG; /* not UTF-8: nothing was answered */
    }
    ch->answered = true;
    ch->status = CH_JOINED;
    int rc = send_out(ch->s, prc, &o);
    if (ch->depth == 0)
        after_callback(ch, WEB_CH_OK);
    return rc == WEB_E_CLOSED ? WEB_OK : rc;
}

int web_channel_join_error(web_channel_t *ch, const json_t *response)
{
    if (ch->answered || ch->dead)
        return WEB_E_STATE;
    ch->answered = true;
    count(WEB__STAT_JOIN_ERRORS, 1);
    int rc = send_reply(ch->s, jref(ch), jpref(ch), ch->topic, "error", response);
    end_channel(ch, WEB_CH_JOIN_FAILED);
    return rc == WEB_E_CLOSED ? WEB_OK : rc;
}

int web_channel_join_refuse(web_channel_t *ch, const char *reason)
{
    json_t *r = json_pack("{ss}", "reason", reason ? reason : "refused");
    if (!r)
        return WEB_E_NOMEM;
    int rc = web_channel_join_error(ch, r);
    json_decref(r);
    return rc;
}

int web_channel_reply(web_channel_t *ch, const char *status, const json_t *response)
{
    if (!ch->in_push || ch->push_answered || !status)
        return WEB_E_STATE;
    ch->push_answered = true;
    if (!ch->push_ref)
        return WEB_OK; /* the client asked for no reply */
    int rc = send_reply(ch->s, jref(ch), ch->push_ref, ch->topic, status, response);
    return rc == WEB_E_CLOSED ? WEB_OK : rc;
}

int web_channel_defer(web_channel_t *ch, uint64_t token)
{
    if (!ch->in_push || ch->push_answered || token == 0)
        return WEB_E_STATE;
    if (!ch->push_ref) {
        ch->push_answered = true; /* nothing to answer later */
        return WEB_OK;
    }
    ch_more_t *mo = more_of(ch);
    if (!mo)
        return WEB_E_NOMEM;
    if (mo->ndeferred >= WEB_CHANNEL_MAX_DEFERRED)
        return WEB_E_LIMIT;
    size_t n = strlen(ch->push_ref);
    deferred_t *d = malloc(sizeof *d + n + 1);
    if (!d)
        return WEB_E_NOMEM;
    memcpy(d->ref, ch->push_ref, n + 1);
    d->token = token;
    /* Appended (O(1)), so closing answers them in the order they came. */
    deferred_append(mo, d);
    ch->push_answered = true;
    return WEB_OK;
}

/* reply_later and reply_later_raw: response_json, when not NULL, is
 * the response as text (response is then unused). */
static int reply_later(web_channel_t *ch, uint64_t token, const char *status,
                       const json_t *response, const char *response_json, size_t response_len)
{
    if (!status)
        return WEB_E_ARG;
    deferred_t *d = deferred_take(ch->more, token);
    if (!d)
        return WEB_E_NOTFOUND;
    web_channel_unwatch(ch, token);
    int rc;
    if (response_json) {
        phx_out_t o = {0};
        rc = send_out(ch->s,
                      phx_reply_raw(ch->s->vsn, jref(ch), d->ref, ch->topic, status,
                                    response_json, response_len, &o),
                      &o);
    } else {
        rc = send_reply(ch->s, jref(ch), d->ref, ch->topic, status, response);
    }
    free(d);
    return rc == WEB_E_CLOSED ? WEB_OK : rc;
}

int web_channel_reply_later(web_channel_t *ch, uint64_t token, const char *status,
                            const json_t *response)
{
    return reply_later(ch, token, status, response, NULL, 0);
}

int web_channel_reply_later_raw(web_channel_t *ch, uint64_t token, const char *status,
                                const char *response_json, size_t response_len)
{
    if (!response_json)
        return WEB_E_ARG;
    return reply_later(ch, token, status, NULL, response_json, response_len);
}

int web_channel_push(web_channel_t *ch, const char *event, const json_t *payload)
{
    if (!web_channel_joined(ch))
        return WEB_E_STATE;
    if (!event)
        return WEB_E_ARG;
    return send_event(ch->s, jref(ch), NULL, ch->topic, event, payload);
}

int web_channel_push_raw(web_channel_t *ch, const char *event, const char *payload_json,
                         size_t payload_len)
{
    if (!web_channel_joined(ch))
        return WEB_E_STATE;
    if (!event || !payload_json)
        return WEB_E_ARG;
    phx_out_t o = {0};
    int rc = phx_encode_raw(ch->s->vsn, jref(ch), NULL, ch->topic, event, payload_json,
                            payload_len, &o);
    return send_out(ch->s, rc, &o);
}

int web_channel_push_broadcast(web_channel_t *ch, web_broadcast_t *b)
{
    if (!web_channel_joined(ch))
        return WEB_E_STATE;
    if (ch->s->closing)
        return WEB_E_CLOSED;
    rt_buf_t *f = web_broadcast_frame(b, ch->s->vsn);
    if (!f)
        return WEB_E_NOMEM;
    count(WEB__STAT_BROADCASTS_OUT, 1);
    return ch->s->ops->send_frame(ch->s->ctx, f) == 0 ? WEB_OK : WEB_E_CLOSED;
}

int web_channel_watch(web_channel_t *ch, uint64_t ref)
{
    if (ref == 0)
        return WEB_E_ARG;
    ch_more_t *mo = more_of(ch);
    if (!mo)
        return WEB_E_NOMEM;
    for (size_t i = 0; i < mo->nwatch; i++)
        if (mo->watch[i] == ref)
            return WEB_OK;
    if (mo->nwatch == mo->capwatch) {
        uint32_t cap = mo->capwatch ? mo->capwatch * 2 : 4;
        uint64_t *w = realloc(mo->watch, cap * sizeof *w);
        if (!w)
            return WEB_E_NOMEM;
        mo->watch = w;
        mo->capwatch = cap;
    }
    mo->watch[mo->nwatch++] = ref;
    return WEB_OK;
}

void web_channel_unwatch(web_channel_t *ch, uint64_t ref)
{
    ch_more_t *mo = ch->more;
    for (size_t i = 0; mo && i < mo->nwatch; i++)
        if (mo->watch[i] == ref) {
            mo->watch[i] = mo->watch[--mo->nwatch];
            return;
        }
}

int web_channel_subscribe(web_channel_t *ch, const char *topic)
{
    if (!topic)
        return WEB_E_ARG;
    uint64_t h = rt_topic_hash(topic);
    ch_more_t *mo = more_of(ch);
    if (!mo)
        return WEB_E_NOMEM;
    for (chsub_t *x = mo->subs; x; x = x->next)
        if (x->hash == h && strcmp(x->topic, topic) == 0)
            return WEB_OK;
    size_t n = strlen(topic);
    chsub_t *x = malloc(sizeof *x + n + 1);
    if (!x)
        return WEB_E_NOMEM;
    memcpy(x->topic, topic, n + 1);
    x->hash = h;
    /* From inside terminate the channel has left s->channels already:
     * finish() undoes what terminate subscribed (invariant 4). */
    int rc = sub_add(ch->s, topic, h);
    if (rc != WEB_OK) {
        free(x);
        return rc;
    }
    x->next = mo->subs;
    mo->subs = x;
    return WEB_OK;
}

int web_channel_unsubscribe(web_channel_t *ch, const char *topic)
{
    if (!topic)
        return WEB_E_ARG;
    uint64_t h = rt_topic_hash(topic);
    for (chsub_t **pp = ch->more ? &ch->more->subs : NULL; pp && *pp; pp = &(*pp)->next) {
        chsub_t *x = *pp;
        if (x->hash == h && strcmp(x->topic, topic) == 0) {
            *pp = x->next;
            sub_del(ch->s, x->topic, h);
            free(x);
            return WEB_OK;
        }
    }
    return WEB_E_NOTFOUND;
}
