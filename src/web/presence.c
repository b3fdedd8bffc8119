/*
 * web/presence.c — Phoenix Presence trackers (see web/presence.h).
 *
 * The tracker is a plain process; its state is a list of entries (one
 * per tracked channel, in tracking order, which is the order of the
 * metas phoenix.js shows) and one monitor per connection process. Lists
 * are linear: a topic tracks a user's devices or a room's participants,
 * tens of entries, where a scan costs less than a table.
 *
 * Starting on demand and ending when empty race: a connection may find
 * the tracker's name just before the tracker, now empty, unregisters and
 * stops. The track is therefore a call: a tracker that ends with the
 * call queued answers it with an error (the runtime does that for every
 * queued call), and the connection tries again (WEB_PRESENCE_ATTEMPTS),
 * finding the new tracker or starting one. Two connections that start a
 * tracker at once: the second's init fails with already_registered, its
 * queued call gets that error, and the retry finds the first.
 */
#include "web/presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "web/jwt.h"

#define NAME_PREFIX "presence:"

/* ---- the tracker process ---------------------------------------------------- */

typedef struct entry {
    struct entry *next;
    rt_pid_t pid;
    uint64_t chan;
    char *key;
    json_t *meta; /* with phx_ref */
} entry_t;

typedef struct watch {
    struct watch *next;
    rt_pid_t pid;
    uint64_t mref;
    unsigned n; /* entries of this pid */
} watch_t;

typedef struct tracker {
    char *name;        /* "presence:<topic>" */
    const char *topic; /* inside name */
    entry_t *head;
    size_t n;
    watch_t *watches;
    uint8_t salt[4];   /* makes phx_refs unique across restarts too */
} tracker_t;

static rt_reason_t *tracker_init(void *arg, void **state)
{
    char *name = arg; /* ours, whatever happens */
    tracker_t *t = calloc(1, sizeof *t);
    if (!t) {
        free(name);
        return rt_reason_new("enomem");
    }
    t->name = name;
    t->topic = name + strlen(NAME_PREFIX);
    if (rt_register(name, NULL) != RT_OK) {
        free(name);
        free(t);
        return rt_reason_new("already_registered");
    }
    if (RAND_bytes(t->salt, sizeof t->salt) != 1) {
        uint64_t r = rt_make_ref() ^ rt_now_ns();
        memcpy(t->salt, &r, sizeof t->salt);
    }
    /* A tracker nobody ever tracks on (its starter went away) ends. */
    rt_msg_t *m = rt_msg_new(WEB_PRESENCE__IDLE);
    if (m)
        rt_send_after(WEB_PRESENCE_IDLE_MS, rt_self(), m);
    *state = t;
    return NULL;
}

static void tracker_terminate(void *state, rt_reason_t *reason)
{
    tracker_t *t = state;
    while (t->head) {
        entry_t *e = t->head;
        t->head = e->next;
        free(e->key);
        json_decref(e->meta);
        free(e);
    }
    while (t->watches) {
        watch_t *w = t->watches;
        t->watches = w->next;
        free(w);
    }
    free(t->name);
    free(t);
}

/* {key: {"metas": [...]}, ...} of every entry satisfying keep (or all). */
static json_t *state_json(const tracker_t *t)
{
    json_t *o = json_object();
    for (const entry_t *e = t->head; o && e; e = e->next) {
        json_t *k = json_object_get(o, e->key);
        if (!k) {
            k = json_pack("{s[]}", "metas");
            if (!k || json_object_set_new(o, e->key, k) != 0) {
                json_decref(o);
                return NULL;
            }
        }
        json_array_append(json_object_get(k, "metas"), e->meta);
    }
    return o;
}

static void add_meta(json_t *group, const char *key, json_t *meta)
{
    json_t *k = json_object_get(group, key);
    if (!k) {
        k = json_pack("{s[]}", "metas");
        if (!k)
            return;
        json_object_set_new(group, key, k);
    }
    json_array_append(json_object_get(k, "metas"), meta);
}

static void broadcast_diff(tracker_t *t, json_t *joins, json_t *leaves)
{
    json_t *d = json_pack("{sOsO}", "joins", joins, "leaves", leaves);
    if (d) {
        web_broadcast(t->topic, "presence_diff", d);
        json_decref(d);
    } else {
        fprintf(stderr, "roost: presence %s: out of memory, a diff was lost\n", t->topic);
    }
}

static void maybe_stop(tracker_t *t)
{
    if (t->n > 0)
        return;
    /* Unregister first so new tracks start a new tracker instead of
     * queueing behind our exit. */
    rt_unregister(t->name);
    rt_stop(RT_NORMAL);
}

static void unwatch(tracker_t *t, rt_pid_t pid)
{
    for (watch_t **pp = &t->watches; *pp; pp = &(*pp)->next) {
        watch_t *w = *pp;
        if (w->pid != pid)
            continue;
        if (--w->n == 0) {
            rt_demonitor(w->mref);
            *pp = w->next;
            free(w);
        }
        return;
    }
}

/* Removes the entries of pid (and of channel chan, unless any_chan),
 * broadcasts their leave and stops if nobody is left. */
static void remove_entries(tracker_t *t, rt_pid_t pid, uint64_t chan, bool any_chan)
{
    json_t *leaves = json_object();
    size_t removed = 0;
    for (entry_t **pp = &t->head; *pp;) {
        entry_t *e = *pp;
        if (e->pid != pid || (!any_chan && e->chan != chan)) {
            pp = &e->next;
            continue;
        }
        *pp = e->next;
        if (leaves)
            add_meta(leaves, e->key, e->meta);
        if (!any_chan)
            unwatch(t, pid);
        free(e->key);
        json_decref(e->meta);
        free(e);
        t->n--;
        removed++;
    }
    if (removed) {
        json_t *joins = json_object();
        if (joins && leaves)
            broadcast_diff(t, joins, leaves);
        json_decref(joins);
    }
    json_decref(leaves);
    maybe_stop(t);
}

static void make_phx_ref(tracker_t *t, char out[24])
{
    uint8_t raw[12];
    uint64_t r = rt_make_ref();
    memcpy(raw, t->salt, 4);
    memcpy(raw + 4, &r, 8);
    out[0] = 'F';
    jwt_b64url_encode(raw, sizeof raw, out + 1);
}

static int reply_error(rt_from_t from, int err)
{
    return rt_reply_val(from, (uint32_t)(int32_t)err, 0, 0);
}

static int reply_state(tracker_t *t, rt_from_t from)
{
    json_t *st = state_json(t);
    char *js = st ? json_dumps(st, JSON_COMPACT) : NULL;
    json_decref(st);
    rt_msg_t *r = js ? rt_msg_new(0) : NULL;
    if (!r) {
        free(js);
        return reply_error(from, WEB_E_NOMEM);
    }
    r->b = strlen(js);
    rt_msg_set_data(r, js, RT_OWN_FREE);
    return rt_reply(from, r);
}

static int track(tracker_t *t, rt_msg_t *req, rt_from_t from)
{
    const char *key = req->data;
    if (!key || req->own != RT_OWN_FREE)
        return reply_error(from, WEB_E_ARG);
    const char *meta_js = key + strlen(key) + 1;
    json_t *meta = json_loads(meta_js, 0, NULL);
    char ref[24];
    make_phx_ref(t, ref);
    entry_t *e = calloc(1, sizeof *e);
    watch_t *w = NULL;
    for (w = t->watches; w && w->pid != from.pid; w = w->next)
        ;
    bool new_watch = !w;
    if (new_watch)
        w = calloc(1, sizeof *w);
    if (!json_is_object(meta) || !e || !w || !(e->key = strdup(key)) ||
        json_object_set_new(meta, "phx_ref", json_string(ref)) != 0) {
        int err = json_is_object(meta) ? WEB_E_NOMEM : WEB_E_ARG;
        json_decref(meta);
        if (e)
            free(e->key);
        free(e);
        if (new_watch)
            free(w);
        return reply_error(from, err);
    }
    e->pid = from.pid;
    e->chan = req->a;
    e->meta = meta;
    entry_t **pp = &t->head;
    while (*pp)
        pp = &(*pp)->next;
    *pp = e;
    t->n++;
    if (new_watch) {
        w->pid = from.pid;
        /* A pid already dead gets its DOWN (noproc) at once: it leaves. */
        w->mref = rt_monitor(from.pid);
        w->next = t->watches;
        t->watches = w;
    }
    w->n++;
    /* The joiner's state first, then everyone's diff (Phoenix's order). */
    reply_state(t, from);
    json_t *joins = json_object(), *leaves = json_object();
    if (joins && leaves)
        add_meta(joins, e->key, e->meta);
    if (joins && leaves)
        broadcast_diff(t, joins, leaves);
    json_decref(joins);
    json_decref(leaves);
    return RT_REPLIED;
}

static int tracker_call(void *state, rt_msg_t *req, rt_from_t from)
{
    tracker_t *t = state;
    switch (req->tag) {
    case WEB_PRESENCE_TRACK:
        track(t, req, from);
        break;
    case WEB_PRESENCE_LIST:
        reply_state(t, from);
        break;
    default:
        reply_error(from, WEB_E_ARG);
    }
    return RT_REPLIED;
}

static void tracker_cast(void *state, rt_msg_t *m)
{
    tracker_t *t = state;
    if (m->tag == WEB_PRESENCE_UNTRACK)
        remove_entries(t, (rt_pid_t)m->b, m->a, false);
}

static void tracker_info(void *state, rt_msg_t *m)
{
    tracker_t *t = state;
    if (m->kind == RT_MSG_DOWN) {
        for (watch_t **pp = &t->watches; *pp; pp = &(*pp)->next) {
            watch_t *w = *pp;
            if (w->mref != m->ref)
                continue;
            rt_pid_t pid = w->pid;
            *pp = w->next;
            free(w);
            remove_entries(t, pid, 0, true);
            return;
        }
    } else if (m->kind == RT_MSG_TIMER && m->tag == WEB_PRESENCE__IDLE) {
        maybe_stop(t);
    }
}

static size_t tracker_memory(const void *state)
{
    const tracker_t *t = state;
    return sizeof *t + t->n * (sizeof(entry_t) + 128);
}

const rt_behaviour_t web_presence_behaviour = RT_BEHAVIOUR(
    .name = "presence", .init = tracker_init, .handle_call = tracker_call,
    .handle_cast = tracker_cast, .handle_info = tracker_info,
    .terminate = tracker_terminate, .memory = tracker_memory);

/* ---- the tracking side (connection process) --------------------------------- */

static char *tracker_name(const char *topic)
{
    size_t n = strlen(NAME_PREFIX) + strlen(topic) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s", NAME_PREFIX, topic);
    return s;
}

/* Finds or starts the tracker and sends the track call. */
static int send_track(web_presence_t *p, web_channel_t *ch)
{
    char *name = tracker_name(p->topic);
    if (!name)
        return WEB_E_NOMEM;
    int rc = RT_ENOPROC;
    for (unsigned i = 0; i < WEB_PRESENCE_ATTEMPTS && rc == RT_ENOPROC; i++) {
        rt_pid_t pid = rt_whereis(name);
        if (pid == RT_NOPID) {
            char *arg = strdup(name); /* the tracker's init takes it */
            if (!arg) {
                rc = WEB_E_NOMEM;
                break;
            }
            rc = rt_spawn(&web_presence_behaviour, arg, NULL, &pid);
            if (rc != RT_OK) {
                free(arg);
                break;
            }
        }
        rt_msg_t *m = rt_msg_new(WEB_PRESENCE_TRACK);
        char *req = m ? malloc(p->req_len) : NULL;
        if (!req) {
            rt_msg_free(m);
            rc = WEB_E_NOMEM;
            break;
        }
        memcpy(req, p->req, p->req_len);
        m->a = web_channel_id(ch);
        rt_msg_set_data(m, req, RT_OWN_FREE);
        uint64_t ref = 0;
        /* No timeout: the answer is the tracker's reply or its exit. */
        rc = rt_call(pid, m, RT_INFINITY, &ref);
        if (rc == RT_OK) {
            p->call_ref = ref;
            p->tracker = pid;
            rc = web_channel_watch(ch, ref);
        }
    }
    free(name);
    return rc;
}

int web_presence_track(web_presence_t *p, web_channel_t *ch, const char *key,
                       const json_t *meta)
{
    if (!p || !ch || !key || !json_is_object(meta))
        return WEB_E_ARG;
    if (p->req)
        return WEB_E_STATE;
    char *js = json_dumps(meta, JSON_COMPACT);
    size_t kl = strlen(key), ml = js ? strlen(js) : 0;
    p->topic = strdup(web_channel_topic(ch));
    p->req = js ? malloc(kl + ml + 2) : NULL;
    if (!p->topic || !p->req) {
        free(js);
        web_presence_untrack(p, ch);
        return WEB_E_NOMEM;
    }
    memcpy(p->req, key, kl + 1);
    memcpy(p->req + kl + 1, js, ml + 1);
    p->req_len = kl + ml + 2;
    free(js);
    p->attempts = 1;
    return send_track(p, ch);
}

bool web_presence_handle_info(web_presence_t *p, web_channel_t *ch, rt_msg_t *m)
{
    if (!p->call_ref || m->kind != RT_MSG_REPLY || m->ref != p->call_ref)
        return false;
    p->call_ref = 0;
    if (m->flags & RT_MF_ERROR) {
        /* The tracker ended with our call queued: find or start another. */
        p->tracker = RT_NOPID;
        if (p->attempts++ < WEB_PRESENCE_ATTEMPTS && send_track(p, ch) == RT_OK)
            return true;
        rt_reason_t *why = rt_msg_reason(m);
        fprintf(stderr, "roost: presence on %s: giving up tracking (%s)\n", p->topic,
                why ? why->text : "?");
        return true;
    }
    if (m->tag != 0) {
        fprintf(stderr, "roost: presence on %s: track refused (%s)\n", p->topic,
                web_strerror((int)(int32_t)m->tag));
        return true;
    }
    p->tracked = true;
    if (m->data)
        web_channel_push_raw(ch, "presence_state", m->data, (size_t)m->b);
    return true;
}

void web_presence_untrack(web_presence_t *p, web_channel_t *ch)
{
    if (!p)
        return;
    if (p->tracker != RT_NOPID && ch)
        rt_cast(p->tracker, WEB_PRESENCE_UNTRACK, web_channel_id(ch), rt_self());
    if (p->call_ref && ch)
        web_channel_unwatch(ch, p->call_ref);
    free(p->topic);
    free(p->req);
    memset(p, 0, sizeof *p);
}

int web_presence_list_sync(const char *topic, char **json)
{
    char *name = tracker_name(topic);
    if (!name)
        return WEB_E_NOMEM;
    rt_pid_t pid = rt_whereis(name);
    free(name);
    rt_msg_t *reply = NULL;
    rt_msg_t *req = pid ? rt_msg_new(WEB_PRESENCE_LIST) : NULL;
    int rc = req ? rt_call_sync(pid, req, RT_DEFAULT_TIMEOUT, &reply) : RT_ENOPROC;
    if (rc == RT_OK && reply->tag == 0 && reply->data) {
        *json = rt_msg_take(reply);
        rt_msg_free(reply);
        return WEB_OK;
    }
    rt_msg_free(reply);
    if (rc == RT_ENOPROC || rc == RT_EEXIT) {
        *json = strdup("{}");
        return *json ? WEB_OK : WEB_E_NOMEM;
    }
    return rc == RT_OK ? WEB_E_NOMEM : rc;
}
