/*
 * web/presence.c — Phoenix Presence as one striped table (see
 * web/presence.h for the design and why it keeps Phoenix's guarantees).
 *
 * Layout
 *   STRIPES stripes, chosen by the topic's hash; each has a mutex and a
 *   chained hash table of entries (one per tracked meta), bucketed by
 *   topic: the entries of a topic are the entries of its bucket's chain
 *   whose topic is that topic. There is no node per topic: an idle user:
 *   topic with one device costs its one entry (~100 bytes) and nothing
 *   else. An entry is one allocation holding the key as a JSON string
 *   (quotes included) and the meta as compact JSON text, phx_ref
 *   included: diffs and states are assembled from these texts without
 *   building a json_t (a jansson object per meta cost ~400 bytes). Its
 *   topic is not copied: it points at the tracking channel's own topic,
 *   which lives until the channel's terminate returns, and untrack runs
 *   before that (presence.h).
 *
 * Order
 *   Among the entries of one topic, chain order is what presence_state
 *   shows: a new meta goes right after the last meta of its key in the
 *   topic, or after the topic's last entry for a new key (or first in the
 *   chain for a new topic). So keys come in the order they first came,
 *   each key's metas in the order they were tracked, and the state is one
 *   pass over the chain. Growing a stripe's table keeps each chain's
 *   relative order (entries are appended to their new chains in order).
 *
 * Invariants
 *   1. An entry is in exactly one chain from track to untrack, and only
 *      its owner (the web_presence_t that tracked it) unlinks it.
 *   2. Nothing but chain surgery, text assembly and allocation happens
 *      under a stripe lock: no runtime call, no publish (so a stripe lock
 *      is never held while another lock is taken, other than malloc's).
 * Costs: a track or untrack is O(chain) under its stripe lock (a topic's
 *   entries and the few others sharing its bucket; load factor <= 1), as
 *   the tracker process's list was O(entries of the topic).
 */
#include "web/presence.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "net/ws.h"
#include "web/jwt.h"

#define STRIPES 64u              /* power of two */
#define STRIPE_INIT_CAP 16u      /* buckets of a stripe's first table */
#define REF_SALT 3               /* bytes of per-start salt in a phx_ref */
#define REF_SEQ 6                /* bytes of rt_make_ref() in a phx_ref */
#define PHX_REF_LEN 13           /* 'F' + base64url of 9 bytes */

typedef struct web_presence_entry {
    struct web_presence_entry *next; /* bucket chain */
    const char *topic;           /* the tracking channel's (see Layout) */
    uint32_t klen;               /* key as a JSON string, quotes included */
    char text[];                 /* key, then meta (with phx_ref), NUL */
} entry_t;

#define ENTRY_HDR offsetof(entry_t, text) /* no padding after klen */

typedef struct stripe {
    pthread_mutex_t mu;
    entry_t **b;                 /* cap buckets, NULL until the first entry */
    uint32_t cap, n;             /* buckets, entries */
} stripe_t;

static stripe_t stripes[STRIPES] = {
#define S PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0
#define S4 {S}, {S}, {S}, {S}
#define S16 S4, S4, S4, S4
    S16, S16, S16, S16
#undef S16
#undef S4
#undef S
};
_Static_assert(STRIPES == 64, "the initialiser above has 64 stripes");

static _Atomic size_t nmetas;

/* ---- phx_ref ------------------------------------------------------------ */

static pthread_once_t salt_once = PTHREAD_ONCE_INIT;
static uint8_t salt[REF_SALT]; /* makes phx_refs unique across restarts too */

static void salt_init(void)
{
    if (RAND_bytes(salt, sizeof salt) != 1) {
        uint64_t r = rt_make_ref() ^ rt_now_ns();
        memcpy(salt, &r, sizeof salt);
    }
}

/* out: PHX_REF_LEN characters and a NUL. Unique while rt_make_ref()'s
 * low 48 bits are (2.8e14 refs), and across restarts by the salt. */
static void make_phx_ref(char out[PHX_REF_LEN + 1])
{
    pthread_once(&salt_once, salt_init);
    uint8_t raw[REF_SALT + REF_SEQ];
    uint64_t r = rt_make_ref();
    memcpy(raw, salt, REF_SALT);
    for (int i = 0; i < REF_SEQ; i++)
        raw[REF_SALT + i] = (uint8_t)(r >> (8 * i));
    out[0] = 'F';
    size_t n = jwt_b64url_encode(raw, sizeof raw, out + 1);
    out[1 + n] = '\0';
}
_Static_assert(((REF_SALT + REF_SEQ) * 4 + 2) / 3 + 1 == PHX_REF_LEN, "phx_ref length");

/* ---- text --------------------------------------------------------------- */

/* A growable text buffer; `fail` sticks once an allocation failed. */
typedef struct buf {
    char *p;
    size_t len, cap;
    bool fail;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    if (b->fail)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->fail = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* A string literal only (sizeof of anything else is a pointer's). */
#define PUTS(b, lit) put((b), "" lit, sizeof(lit) - 1)

static const char *entry_meta(const entry_t *e)
{
    return e->text + e->klen;
}

static bool same_key(const entry_t *a, const entry_t *b)
{
    return a->klen == b->klen && memcmp(a->text, b->text, a->klen) == 0;
}

static bool of_topic(const entry_t *e, const char *topic)
{
    return e->topic == topic || strcmp(e->topic, topic) == 0;
}

/* {key:{"metas":[...]},...} of topic's entries in chain (see Order).
 * Under the stripe lock. */
static void state_text(const entry_t *chain, const char *topic, buf_t *b)
{
    PUTS(b, "{");
    const entry_t *prev = NULL;
    for (const entry_t *e = chain; e; e = e->next) {
        if (!of_topic(e, topic))
            continue;
        if (prev && same_key(prev, e)) {
            PUTS(b, ",");
        } else {
            if (prev)
                PUTS(b, "]},");
            put(b, e->text, e->klen);
            PUTS(b, ":{\"metas\":[");
        }
        put(b, entry_meta(e), strlen(entry_meta(e)));
        prev = e;
    }
    if (prev)
        PUTS(b, "]}");
    PUTS(b, "}");
}

/* The diff {"joins":{key:{"metas":[meta]}},"leaves":{}} (or the leave)
 * as a broadcast on topic, or NULL on ENOMEM. Only allocates, so it may
 * run under a stripe lock (invariant 2). */
static web_broadcast_t *diff_new(const char *topic, const entry_t *e, bool join)
{
    buf_t b = {0};
    if (join)
        PUTS(&b, "{\"joins\":{");
    else
        PUTS(&b, "{\"joins\":{},\"leaves\":{");
    put(&b, e->text, e->klen);
    PUTS(&b, ":{\"metas\":[");
    put(&b, entry_meta(e), strlen(entry_meta(e)));
    if (join)
        PUTS(&b, "]}},\"leaves\":{}}");
    else
        PUTS(&b, "]}}}");
    web_broadcast_t *bc = b.fail ? NULL : web_broadcast_new(topic, "presence_diff", b.p, b.len);
    free(b.p);
    return bc;
}

/* Publishes and releases a diff from diff_new. Outside any stripe lock.
 * A diff that could not be built is lost and said so: the clients' lists
 * are then wrong until they rejoin, as with the tracker on ENOMEM. */
static void publish_diff(web_broadcast_t *bc, const char *topic)
{
    if (!bc) {
        fprintf(stderr, "roost: presence %s: out of memory, a diff was lost\n", topic);
        return;
    }
    web_broadcast_publish(bc);
    web_broadcast_release(bc);
}

/* ---- the table ------------------------------------------------------------ */

static stripe_t *stripe_of(uint64_t h)
{
    return &stripes[h & (STRIPES - 1)];
}

static entry_t **bucket(stripe_t *s, uint64_t h)
{
    return &s->b[(h / STRIPES) & (s->cap - 1)];
}

/* Under s->mu: room for one more entry (load factor <= 1). Chains keep
 * their relative order (see Order). */
static bool reserve(stripe_t *s)
{
    if (s->n < s->cap)
        return true;
    uint32_t cap = s->cap ? s->cap * 2 : STRIPE_INIT_CAP;
    entry_t **nb = calloc(cap, sizeof *nb);
    entry_t **tails = calloc(cap, sizeof *tails);
    if (!nb || !tails) {
        free(nb);
        free(tails);
        return false;
    }
    for (uint32_t i = 0; i < s->cap; i++)
        for (entry_t *e = s->b[i], *next; e; e = next) {
            next = e->next;
            uint32_t k = (uint32_t)((rt_topic_hash(e->topic) / STRIPES) & (cap - 1));
            e->next = NULL;
            if (tails[k])
                tails[k]->next = e;
            else
                nb[k] = e;
            tails[k] = e;
        }
    free(tails);
    free(s->b);
    s->b = nb;
    s->cap = cap;
    return true;
}

/* The entry for key + meta text (meta_len bytes of a JSON object without
 * phx_ref), with a fresh phx_ref appended. NULL on ENOMEM. */
static entry_t *entry_new(const char *topic, const char *key, const char *meta,
                          size_t meta_len)
{
    char ref[PHX_REF_LEN + 1];
    make_phx_ref(ref);
    size_t klen = web__json_quote_len(key);
    /* meta minus its '}', then ["," if it had members] "phx_ref":"...", '}' */
    bool empty = meta_len == 2;
    size_t mlen = meta_len - 1 + (empty ? 0 : 1) + sizeof("\"phx_ref\":\"\"") - 1 +
                  PHX_REF_LEN + 1;
    if (klen > UINT32_MAX || mlen > SIZE_MAX - ENTRY_HDR - klen - 1)
        return NULL;
    /* Sized exactly: an idle meta is one small block. */
    entry_t *e = malloc(ENTRY_HDR + klen + mlen + 1);
    if (!e)
        return NULL;
    e->next = NULL;
    e->topic = topic;
    e->klen = (uint32_t)klen;
    web__json_quote(key, e->text);
    char *m = e->text + klen;
    size_t o = meta_len - 1;
    memcpy(m, meta, o);
    if (!empty)
        m[o++] = ',';
    static const char pre[] = "\"phx_ref\":\"";
    memcpy(m + o, pre, sizeof pre - 1);
    o += sizeof pre - 1;
    memcpy(m + o, ref, PHX_REF_LEN);
    o += PHX_REF_LEN;
    memcpy(m + o, "\"}", 3); /* with the NUL */
    return e;
}

/* Under s->mu: links e into its chain (see Order). */
static void insert(entry_t **chain, entry_t *e)
{
    entry_t **after_topic = NULL, **after_key = NULL;
    for (entry_t **at = chain; *at; at = &(*at)->next) {
        if (!of_topic(*at, e->topic))
            continue;
        after_topic = &(*at)->next;
        if (same_key(*at, e))
            after_key = &(*at)->next;
    }
    entry_t **at = after_key ? after_key : after_topic ? after_topic : chain;
    e->next = *at;
    *at = e;
}

static int track(web_presence_t *p, web_channel_t *ch, const char *key, const char *meta,
                 size_t meta_len)
{
    if (p->entry)
        return WEB_E_STATE;
    if (!web_channel_joined(ch))
        return WEB_E_STATE;
    const char *topic = web_channel_topic(ch);
    if (!ws_utf8_valid(key, strlen(key)))
        return WEB_E_ARG;
    entry_t *e = entry_new(topic, key, meta, meta_len);
    if (!e)
        return WEB_E_NOMEM;
    uint64_t h = rt_topic_hash(topic);
    stripe_t *s = stripe_of(h);
    buf_t state = {0};

    pthread_mutex_lock(&s->mu);
    bool ok = reserve(s);
    if (ok) {
        entry_t **chain = bucket(s, h);
        insert(chain, e);
        s->n++;
        /* The joiner's state is the table at this instant, its own meta
         * included (see presence.h). */
        state_text(*chain, topic, &state);
        if (state.fail) { /* undo: nothing tracked, nothing sent */
            for (entry_t **pp = chain; *pp; pp = &(*pp)->next)
                if (*pp == e) {
                    *pp = e->next;
                    break;
                }
            s->n--;
            ok = false;
        }
    }
    pthread_mutex_unlock(&s->mu);

    if (!ok) {
        free(e);
        free(state.p);
        return WEB_E_NOMEM;
    }
    atomic_fetch_add_explicit(&nmetas, 1, memory_order_relaxed);
    p->entry = e;
    /* The joiner's state first, then everyone's diff (Phoenix's order):
     * the diff reaches this connection through its mailbox, after this
     * callback. */
    web_channel_push_raw(ch, "presence_state", state.p, state.len);
    free(state.p);
    publish_diff(diff_new(topic, e, true), topic);
    return WEB_OK;
}

int web_presence_track(web_presence_t *p, web_channel_t *ch, const char *key,
                       const json_t *meta)
{
    if (!p || !ch || !key || !json_is_object(meta))
        return WEB_E_ARG;
    json_t *copy = NULL;
    if (json_object_get(meta, "phx_ref")) {
        /* Ours replaces theirs: drop it from a shallow copy. */
        copy = json_copy((json_t *)meta);
        if (!copy)
            return WEB_E_NOMEM;
        json_object_del(copy, "phx_ref");
        meta = copy;
    }
    char *js = json_dumps(meta, JSON_COMPACT);
    json_decref(copy);
    if (!js)
        return WEB_E_NOMEM;
    int rc = track(p, ch, key, js, strlen(js));
    free(js);
    return rc;
}

int web_presence_track_text(web_presence_t *p, web_channel_t *ch, const char *key,
                            const char *meta_json, size_t meta_len)
{
    if (!p || !ch || !key || !meta_json || meta_len < 2 || meta_json[0] != '{' ||
        meta_json[meta_len - 1] != '}')
        return WEB_E_ARG;
    return track(p, ch, key, meta_json, meta_len);
}

bool web_presence_handle_info(web_presence_t *p, web_channel_t *ch, rt_msg_t *m)
{
    (void)p;
    (void)ch;
    (void)m;
    return false;
}

void web_presence_untrack(web_presence_t *p, web_channel_t *ch)
{
    (void)ch; /* may run in a terminate after a kill: nothing here needs it */
    if (!p || !p->entry)
        return;
    entry_t *e = p->entry;
    p->entry = NULL;
    uint64_t h = rt_topic_hash(e->topic);
    stripe_t *s = stripe_of(h);
    pthread_mutex_lock(&s->mu);
    for (entry_t **pp = bucket(s, h); *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    s->n--;
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_sub_explicit(&nmetas, 1, memory_order_relaxed);
    /* Unlinked: e is ours again (invariant 1), and its topic is the
     * caller's channel's, alive until its terminate returns. */
    publish_diff(diff_new(e->topic, e, false), e->topic);
    free(e);
}

int web_presence_list_sync(const char *topic, char **json)
{
    uint64_t h = rt_topic_hash(topic);
    stripe_t *s = stripe_of(h);
    buf_t b = {0};
    pthread_mutex_lock(&s->mu);
    state_text(s->cap ? *bucket(s, h) : NULL, topic, &b);
    pthread_mutex_unlock(&s->mu);
    if (b.fail) {
        free(b.p);
        return WEB_E_NOMEM;
    }
    *json = b.p;
    return WEB_OK;
}

size_t web_presence_metas(void)
{
    return atomic_load_explicit(&nmetas, memory_order_relaxed);
}
