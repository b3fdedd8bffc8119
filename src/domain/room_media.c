/*
 * domain/room_media.c — a RoomServer's side of its Janus VideoRoom
 * (--media janus; docs/media.md "Janus"). Runs inside the RoomServer's
 * process and never blocks: every Janus request is a named request to
 * the media client (media/janus.h), answered to the name room:<id> with a
 * JANUS_ANSWER that room__media_info matches against `pend`. `pend`, the
 * handles and any offer still waiting are part of the backed-up runtime
 * (room__media_dump), so a RoomServer restarted after a crash gets the
 * answers to what the crashed one asked, and the media client holds
 * messages for room:<id> while nobody holds the name. After a restart,
 * and on every JANUS_UP, the room asks which Janus session is up
 * (JANUS_STATUS): handles from another session are gone.
 *
 * Per roost room: one control handle that creates the VideoRoom (numeric
 * id = a hash of the room id; "already exists" is fine). Per participant:
 *   - a publisher handle: the client's offer (signal to "media", no
 *     "feed") → joinandconfigure (configure when already joined) → Janus's
 *     answer back as signal {"from":"media","sdp":...};
 *   - a subscriber handle per other participant whose publisher is up
 *     (webrtcup): join as subscriber → Janus's offer to the client as
 *     signal {"from":"media","feed":"<publisher user>","sdp":...}; the
 *     client's answer (signal with the same "feed") → "start".
 * Candidates both ways: "feed" absent = the publisher connection.
 * Media state per participant (status.media): connecting (offer relayed),
 * connected (publisher webrtcup), failed (hangup, Janus error, timeout,
 * or Janus gone). On JANUS_DOWN every handle is forgotten; on the next
 * JANUS_UP the VideoRoom is created again and every participant that had
 * published gets signal {"from":"media","renegotiate":true} (make a fresh
 * offer).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "domain/room.h"
#include "domain/room_internal.h"
#include "media/janus.h"

#define MEDIA_TIMEOUT_MS 10000
/* Janus's own cap on publishers per VideoRoom; the room's max_participants
 * is the limit people see, this only has to be above it in practice. */
#define ROOM_MEDIA_PUBLISHERS 256

enum { P_CTL_ATTACH = 1, P_CREATE, P_PUB_ATTACH, P_PUB_JOIN, P_SUB_ATTACH, P_SUB_JOIN,
       P_SUB_START, P_OTHER, P_KIND_MAX };

typedef struct msub {
    struct msub *next;
    char *feed;          /* the publisher's user */
    uint64_t handle;
    bool attaching, joined;
} msub_t;

typedef struct muser {
    struct muser *next;
    char *user;
    uint64_t feed_id;
    uint64_t pub;        /* publisher handle, 0 = none */
    bool attaching, joined, up, published;
    bool dropped;        /* disconnected: its handles went; ask it to offer again */
    json_t *offer;       /* a client offer waiting for the handle / room */
    json_t *cands;       /* candidates waiting for the handle */
    msub_t *subs;
} muser_t;

/* A named request to the media client waiting for its JANUS_ANSWER; the
 * list rides in the backup, so a restarted RoomServer gets the answers to
 * what the crashed one asked (media/janus.h "Named requests"). */
typedef struct pend {
    struct pend *next;
    uint64_t rid;
    int kind;
    char *user, *feed;
} pend_t;

struct room_media {
    void *room;
    char *id;
    char name[ROOM_ID_MAX + 8]; /* "room:<id>": owns the Janus handles by name */
    uint64_t jroom;
    uint64_t ctl;
    int phase;           /* 0 nothing, 1 attaching/creating, 2 room ready */
    bool was_down;
    uint64_t next_feed;
    uint64_t next_rid;
    uint64_t session;    /* the Janus session our handles live in; 0 = none known */
    uint64_t status_ref; /* a JANUS_STATUS call on its way */
    muser_t *users;
    pend_t *pend;
};

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    h &= (1ULL << 52) - 1; /* exact in a JSON double too */
    return h ? h : 1;
}

static muser_t *user_get(room_media_t *m, const char *user, bool create)
{
    for (muser_t *u = m->users; u; u = u->next)
        if (strcmp(u->user, user) == 0)
            return u;
    if (!create)
        return NULL;
    muser_t *u = calloc(1, sizeof *u);
    RT_ASSERT(u != NULL);
    u->user = strdup(user);
    u->cands = json_array();
    RT_ASSERT(u->user && u->cands);
    u->feed_id = ++m->next_feed;
    u->next = m->users;
    m->users = u;
    return u;
}

static msub_t *sub_get(muser_t *u, const char *feed, bool create)
{
    for (msub_t *s = u->subs; s; s = s->next)
        if (strcmp(s->feed, feed) == 0)
            return s;
    if (!create)
        return NULL;
    msub_t *s = calloc(1, sizeof *s);
    RT_ASSERT(s != NULL);
    s->feed = strdup(feed);
    RT_ASSERT(s->feed != NULL);
    s->next = u->subs;
    u->subs = s;
    return s;
}

static void subs_free(msub_t *s)
{
    while (s) {
        msub_t *n = s->next;
        free(s->feed);
        free(s);
        s = n;
    }
}

static void pend_free(pend_t *p)
{
    free(p->user);
    free(p->feed);
    free(p);
}

static void pend_add(room_media_t *m, uint64_t rid, int kind, const char *user, const char *feed)
{
    pend_t *p = calloc(1, sizeof *p);
    RT_ASSERT(p != NULL);
    p->rid = rid;
    p->kind = kind;
    p->user = user ? strdup(user) : NULL;
    p->feed = feed ? strdup(feed) : NULL;
    RT_ASSERT((!user || p->user) && (!feed || p->feed));
    p->next = m->pend;
    m->pend = p;
}

/* Sends req (json, stolen) to the media client as a named request (the
 * answer comes to room:<id>, whichever incarnation holds it); it is
 * matched by kind/user/feed. False if the client is not there. */
static bool request(room_media_t *m, json_t *req, int kind, const char *user, const char *feed)
{
    if (req)
        json_object_set_new(req, "reply_to", json_string(m->name));
    char *js = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    rt_pid_t media = rt_whereis(JANUS_NAME);
    uint64_t rid = ++m->next_rid;
    rt_msg_t *msg = js && media ? janus_req_named(js, rid, MEDIA_TIMEOUT_MS) : NULL;
    free(js);
    if (!msg || rt_send_msg(media, msg) != RT_OK)
        return false;
    pend_add(m, rid, kind, user, feed);
    return true;
}

/* Asks the media client which Janus session is up (answer in
 * room__media_info): our handles live only as long as the session they
 * were made in, and a session change while this process was down (a
 * crash in the restart window of Janus or of the media client) left no
 * JANUS_DOWN/JANUS_UP for us. */
static void status_check(room_media_t *m)
{
    rt_pid_t media = rt_whereis(JANUS_NAME);
    rt_msg_t *q = media && !m->status_ref ? rt_msg_new(JANUS_STATUS) : NULL;
    if (q && rt_call(media, q, MEDIA_TIMEOUT_MS, &m->status_ref) != RT_OK)
        m->status_ref = 0;
}

/* Handles belong to the room's registered name, not to this process: they
 * survive a crash of the RoomServer (media/janus.h "Owned by name"). */
static json_t *attach_req(room_media_t *m)
{
    return json_pack("{ssssss}", "janus", "attach", "plugin", JANUS_PLUGIN_VIDEOROOM, "owner",
                     m->name);
}

static void deliver(room_media_t *m, const char *user, json_t *payload)
{
    json_object_set_new(payload, "from", json_string(ROOM_MEDIA_PEER));
    char *js = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    if (js)
        room__media_deliver(m->room, user, js);
    free(js);
}

static void set_state(room_media_t *m, muser_t *u, const char *state)
{
    room__media_dirty(m->room);
    room__media_state(m->room, u->user, state);
}

static void ensure_room(room_media_t *m)
{
    if (m->phase)
        return;
    m->phase = 1;
    if (!request(m, attach_req(m),
                 P_CTL_ATTACH, NULL, NULL))
        m->phase = 0; /* Janus not there: retried on JANUS_UP or the next offer */
}

static void send_trickles(room_media_t *m, muser_t *u)
{
    size_t i;
    json_t *c;
    json_array_foreach(u->cands, i, c)
        request(m, json_pack("{sssIsO}", "janus", "trickle", "handle_id", (json_int_t)u->pub,
                             "candidate", c),
                P_OTHER, NULL, NULL);
    json_array_clear(u->cands);
}

/* Moves a publisher on as far as it can go now. */
static void pub_step(room_media_t *m, muser_t *u)
{
    if (!u->offer)
        return;
    ensure_room(m);
    if (m->phase != 2)
        return;
    if (!u->pub) {
        if (!u->attaching) {
            u->attaching = request(m, attach_req(m),
                                   P_PUB_ATTACH, u->user, NULL);
            if (!u->attaching)
                set_state(m, u, "failed");
        }
        return;
    }
    json_t *body = u->joined
        ? json_pack("{sssbsb}", "request", "configure", "audio", 1, "video", 1)
        : json_pack("{sssIsssIsssbsb}", "request", "joinandconfigure", "room",
                    (json_int_t)m->jroom, "ptype", "publisher", "id", (json_int_t)u->feed_id,
                    "display", u->user, "audio", 1, "video", 1);
    json_t *req = json_pack("{sssIsoso}", "janus", "message", "handle_id", (json_int_t)u->pub,
                            "body", body, "jsep", u->offer);
    u->offer = NULL;
    if (!request(m, req, P_PUB_JOIN, u->user, NULL))
        set_state(m, u, "failed");
    send_trickles(m, u);
}

static void sub_step(room_media_t *m, muser_t *u, muser_t *p)
{
    if (m->phase != 2 || u == p || !p->up)
        return;
    msub_t *s = sub_get(u, p->user, true);
    if (s->attaching || s->joined)
        return;
    if (!s->handle) {
        s->attaching = request(m, attach_req(m),
                               P_SUB_ATTACH, u->user, p->user);
        return;
    }
    json_t *body = json_pack("{sssIsssI}", "request", "join", "room", (json_int_t)m->jroom,
                             "ptype", "subscriber", "feed", (json_int_t)p->feed_id);
    s->joined = request(m, json_pack("{sssIso}", "janus", "message", "handle_id",
                                     (json_int_t)s->handle, "body", body),
                        P_SUB_JOIN, u->user, p->user);
}

/* p's publisher is up: everyone subscribes to it, it to everyone up. */
static void wire(room_media_t *m, muser_t *p)
{
    for (muser_t *u = m->users; u; u = u->next) {
        if (u == p || !u->published)
            continue;
        sub_step(m, u, p);
        sub_step(m, p, u);
    }
}

room_media_t *room__media_new(void *room, const char *room_id)
{
    room_media_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->room = room;
    m->id = strdup(room_id);
    if (!m->id) {
        free(m);
        return NULL;
    }
    m->jroom = hash_id(room_id);
    snprintf(m->name, sizeof m->name, "%s%s", ROOM_TOPIC_PREFIX, room_id);
    rt_subscribe(JANUS_TOPIC);
    return m;
}

static void user_free(muser_t *u)
{
    json_decref(u->offer);
    json_decref(u->cands);
    subs_free(u->subs);
    free(u->user);
    free(u);
}

void room__media_free(room_media_t *m)
{
    if (!m)
        return;
    while (m->users) {
        muser_t *u = m->users;
        m->users = u->next;
        user_free(u);
    }
    while (m->pend) {
        pend_t *p = m->pend;
        m->pend = p->next;
        pend_free(p);
    }
    free(m->id);
    free(m);
}

static void detach(room_media_t *m, uint64_t h)
{
    if (h)
        request(m, json_pack("{sssI}", "janus", "detach", "handle_id", (json_int_t)h), P_OTHER,
                NULL, NULL);
}

/* Detaches u's handles and the others' subscriptions to it. */
static void drop_handles(room_media_t *m, muser_t *u)
{
    detach(m, u->pub);
    for (msub_t *s = u->subs; s; s = s->next)
        detach(m, s->handle);
    subs_free(u->subs);
    u->subs = NULL;
    u->pub = 0;
    u->attaching = u->joined = u->up = false;
    json_decref(u->offer);
    u->offer = NULL;
    json_array_clear(u->cands);
    /* Others' subscriptions to it end with its publisher (Janus hangs
     * them up); forget them so a comeback is subscribed afresh. */
    for (muser_t *o = m->users; o; o = o->next) {
        for (msub_t **sp = &o->subs; *sp; sp = &(*sp)->next)
            if (strcmp((*sp)->feed, u->user) == 0) {
                msub_t *s = *sp;
                *sp = s->next;
                detach(m, s->handle);
                s->next = NULL;
                subs_free(s);
                break;
            }
    }
}

void room__media_gone(room_media_t *m, const char *user, bool left)
{
    muser_t **pp = &m->users;
    for (; *pp && strcmp((*pp)->user, user) != 0; pp = &(*pp)->next)
        ;
    muser_t *u = *pp;
    if (!u)
        return;
    room__media_dirty(m->room);
    drop_handles(m, u);
    if (!left) {
        /* It may come back within the reconnect grace: its page's old
         * connections died with the handles. */
        if (u->published) {
            u->dropped = true;
            set_state(m, u, "failed");
        }
        return;
    }
    *pp = u->next;
    user_free(u);
}

void room__media_back(room_media_t *m, const char *user)
{
    muser_t *u = user_get(m, user, false);
    if (!u || !u->dropped)
        return;
    u->dropped = false;
    room__media_dirty(m->room);
    deliver(m, u->user, json_pack("{sb}", "renegotiate", 1));
}

int room__media_signal(room_media_t *m, const char *user, const char *json, size_t len)
{
    json_t *p = json_loadb(json, len, 0, NULL);
    if (!json_is_object(p)) {
        json_decref(p);
        return ROOM_EINVAL;
    }
    muser_t *u = user_get(m, user, true);
    room__media_dirty(m->room);
    const char *feed = json_string_value(json_object_get(p, "feed"));
    json_t *sdp = json_object_get(p, "sdp");
    json_t *cand = json_object_get(p, "candidate");
    int rc = ROOM_OK;
    if (!feed) {
        if (json_is_object(sdp)) {
            json_decref(u->offer);
            u->offer = json_incref(sdp);
            u->published = true;
            u->dropped = false;
            u->up = false;
            set_state(m, u, "connecting");
            pub_step(m, u);
        } else if (cand) {
            if (u->pub && m->phase == 2) {
                request(m, json_pack("{sssIsO}", "janus", "trickle", "handle_id",
                                     (json_int_t)u->pub, "candidate", cand),
                        P_OTHER, NULL, NULL);
            } else {
                json_array_append(u->cands, cand);
            }
        }
    } else {
        msub_t *s = sub_get(u, feed, false);
        if (!s || !s->handle) {
            rc = ROOM_ENOPEER;
        } else if (json_is_object(sdp)) {
            json_t *body = json_pack("{sssI}", "request", "start", "room", (json_int_t)m->jroom);
            request(m, json_pack("{sssIsoso}", "janus", "message", "handle_id",
                                 (json_int_t)s->handle, "body", body, "jsep",
                                 json_incref(sdp)),
                    P_SUB_START, user, feed);
        } else if (cand) {
            request(m, json_pack("{sssIsO}", "janus", "trickle", "handle_id",
                                 (json_int_t)s->handle, "candidate", cand),
                    P_OTHER, NULL, NULL);
        }
    }
    json_decref(p);
    return rc;
}

static uint64_t handle_of(json_t *a)
{
    return (uint64_t)json_integer_value(json_object_get(json_object_get(a, "data"), "id"));
}

static bool is_error(json_t *a)
{
    const char *j = json_string_value(json_object_get(a, "janus"));
    json_t *pd = json_object_get(json_object_get(json_object_get(a, "plugindata"), "data"),
                                 "error_code");
    return !a || !j || strcmp(j, "error") == 0 || pd != NULL;
}

static void answered(room_media_t *m, pend_t *p, rt_msg_t *msg)
{
    json_t *a = NULL;
    if (!(msg->flags & RT_MF_ERROR) && msg->data)
        a = json_loads(msg->data, 0, NULL);
    muser_t *u = p->user ? user_get(m, p->user, false) : NULL;
    muser_t *f = p->feed ? user_get(m, p->feed, false) : NULL;
    msub_t *s = u && p->feed ? sub_get(u, p->feed, false) : NULL;
    bool err = is_error(a);
    switch (p->kind) {
    case P_CTL_ATTACH:
        if (err) {
            m->phase = 0;
            m->was_down = true; /* try again on the next JANUS_UP */
            break;
        }
        m->ctl = handle_of(a);
        /* The description names the roost room (Janus's "list" shows it). */
        request(m, json_pack("{sssIs{sssIsIsbss}}", "janus", "message", "handle_id",
                             (json_int_t)m->ctl, "body", "request", "create", "room",
                             (json_int_t)m->jroom, "publishers", ROOM_MEDIA_PUBLISHERS, "is_private", 0,
                             "description", m->name),
                P_CREATE, NULL, NULL);
        break;
    case P_CREATE: {
        json_int_t code = json_integer_value(json_object_get(
            json_object_get(json_object_get(a, "plugindata"), "data"), "error_code"));
        if (!a || (err && code != 427)) { /* 427: the room already exists */
            m->phase = 0;
            fprintf(stderr, "roost: room %s: cannot create its Janus room\n", m->id);
            for (muser_t *x = m->users; x; x = x->next)
                if (x->offer)
                    set_state(m, x, "failed");
            break;
        }
        m->phase = 2;
        for (muser_t *x = m->users; x; x = x->next)
            pub_step(m, x);
        break;
    }
    case P_PUB_ATTACH:
        if (!u)
            break;
        u->attaching = false;
        if (err) {
            set_state(m, u, "failed");
            break;
        }
        u->pub = handle_of(a);
        pub_step(m, u);
        break;
    case P_PUB_JOIN: {
        if (!u)
            break;
        json_t *jsep = json_object_get(a, "jsep");
        if (err || !jsep) {
            set_state(m, u, "failed");
            break;
        }
        u->joined = true;
        deliver(m, u->user, json_pack("{sO}", "sdp", jsep));
        break;
    }
    case P_SUB_ATTACH:
        if (!s)
            break;
        s->attaching = false;
        if (err)
            break;
        s->handle = handle_of(a);
        if (f)
            sub_step(m, u, f);
        break;
    case P_SUB_JOIN: {
        json_t *jsep = json_object_get(a, "jsep");
        if (!s)
            break;
        if (err || !jsep) {
            s->joined = false;
            break;
        }
        deliver(m, u->user, json_pack("{sssO}", "feed", p->feed, "sdp", jsep));
        break;
    }
    default:
        break;
    }
    json_decref(a);
}

static void janus_down(room_media_t *m)
{
    /* What was asked of the old session is answered with an error or not
     * at all; nothing waits for it any more. */
    while (m->pend) {
        pend_t *p = m->pend;
        m->pend = p->next;
        pend_free(p);
    }
    if (m->was_down)
        return;
    bool any = m->phase != 0 || m->ctl;
    for (muser_t *u = m->users; u; u = u->next)
        any |= u->published;
    if (!any)
        return;
    m->was_down = true;
    m->phase = 0;
    m->ctl = 0;
    for (muser_t *u = m->users; u; u = u->next) {
        bool had = u->pub || u->published;
        u->pub = 0;
        u->attaching = u->joined = u->up = false;
        json_decref(u->offer);
        u->offer = NULL;
        json_array_clear(u->cands);
        subs_free(u->subs);
        u->subs = NULL;
        if (had)
            set_state(m, u, "failed");
    }
}

static void janus_up(room_media_t *m)
{
    if (!m->was_down)
        return;
    m->was_down = false;
    ensure_room(m);
    for (muser_t *u = m->users; u; u = u->next)
        if (u->published)
            deliver(m, u->user, json_pack("{sb}", "renegotiate", 1));
}

static void janus_event(room_media_t *m, uint64_t h, const char *js)
{
    json_t *e = js ? json_loads(js, 0, NULL) : NULL;
    const char *kind = json_string_value(json_object_get(e, "janus"));
    if (!kind)
        goto out;
    for (muser_t *u = m->users; u; u = u->next) {
        if (u->pub == h) {
            if (strcmp(kind, "webrtcup") == 0) {
                u->up = true;
                set_state(m, u, "connected");
                wire(m, u);
            } else if (strcmp(kind, "hangup") == 0) {
                u->up = false;
                set_state(m, u, "failed");
            } else if (strcmp(kind, "trickle") == 0) {
                json_t *c = json_object_get(e, "candidate");
                if (c && !json_is_true(json_object_get(c, "completed")))
                    deliver(m, u->user, json_pack("{sO}", "candidate", c));
            }
            goto out;
        }
        for (msub_t *s = u->subs; s; s = s->next) {
            if (s->handle != h)
                continue;
            if (strcmp(kind, "trickle") == 0) {
                json_t *c = json_object_get(e, "candidate");
                if (c && !json_is_true(json_object_get(c, "completed")))
                    deliver(m, u->user, json_pack("{sssO}", "feed", s->feed, "candidate", c));
            } else if (strcmp(kind, "detached") == 0) {
                s->handle = 0;
                s->joined = false;
            }
            goto out;
        }
    }
out:
    json_decref(e);
}

/* What the media client says of the session: see status_check. */
static void session_seen(room_media_t *m, bool connected, uint64_t session)
{
    if (!connected) {
        janus_down(m);
        m->session = 0;
        return;
    }
    if (m->session && session != m->session) {
        janus_down(m); /* our handles died with the old session */
        m->session = session;
        janus_up(m);
        return;
    }
    m->session = session;
    janus_up(m);
}

static pend_t *pend_take(room_media_t *m, uint64_t rid)
{
    for (pend_t **pp = &m->pend; *pp; pp = &(*pp)->next) {
        pend_t *p = *pp;
        if (p->rid == rid) {
            *pp = p->next;
            return p;
        }
    }
    return NULL;
}

bool room__media_info(room_media_t *m, rt_msg_t *msg)
{
    if (!m)
        return false;
    if (msg->kind == RT_MSG_REPLY) {
        if (!m->status_ref || msg->ref != m->status_ref)
            return false;
        m->status_ref = 0;
        if (!(msg->flags & RT_MF_ERROR) && msg->tag == JANUS_STATUS) {
            room__media_dirty(m->room);
            session_seen(m, msg->a != 0, msg->b);
        }
        return true;
    }
    switch (msg->tag) {
    case JANUS_ANSWER: {
        pend_t *p = pend_take(m, msg->a);
        if (!p)
            return true; /* asked by an incarnation whose backup missed it */
        answered(m, p, msg);
        room__media_dirty(m->room);
        pend_free(p);
        return true;
    }
    case JANUS_EVENT:
        room__media_dirty(m->room);
        janus_event(m, msg->a, msg->data);
        return true;
    case JANUS_DOWN:
        room__media_dirty(m->room);
        janus_down(m);
        m->session = 0;
        return true;
    case JANUS_UP:
        /* Which session it is comes with the status answer. */
        status_check(m);
        return true;
    default:
        return false;
    }
}

/* ---- the backup: what a restarted RoomServer continues with ------------------------ */

json_t *room__media_dump(const room_media_t *m)
{
    json_t *users = json_object();
    RT_ASSERT(users != NULL);
    for (const muser_t *u = m->users; u; u = u->next) {
        json_t *subs = json_object();
        RT_ASSERT(subs != NULL);
        for (const msub_t *s = u->subs; s; s = s->next)
            if (s->handle || s->attaching)
                RT_ASSERT(json_object_set_new(subs, s->feed,
                                              json_pack("{sIsbsb}", "handle", (json_int_t)s->handle,
                                                        "joined", s->joined, "attaching",
                                                        s->attaching)) == 0);
        json_t *x = json_pack("{sIsIsbsbsbsbsbsOsOso}", "feed_id", (json_int_t)u->feed_id, "pub",
                              (json_int_t)u->pub, "attaching", u->attaching, "joined", u->joined,
                              "up", u->up, "published", u->published, "dropped", u->dropped,
                              "offer",
                              u->offer ? u->offer : json_null(), "cands", u->cands, "subs", subs);
        RT_ASSERT(x && json_object_set_new(users, u->user, x) == 0);
    }
    json_t *pend = json_array();
    RT_ASSERT(pend != NULL);
    for (const pend_t *p = m->pend; p; p = p->next)
        RT_ASSERT(json_array_append_new(pend, json_pack("[Iiss]", (json_int_t)p->rid, p->kind,
                                                        p->user ? p->user : "",
                                                        p->feed ? p->feed : "")) == 0);
    json_t *o = json_pack("{sIsIsisbsIsIsIsoso}", "jroom", (json_int_t)m->jroom, "ctl",
                          (json_int_t)m->ctl, "phase", m->phase, "was_down", m->was_down,
                          "next_feed", (json_int_t)m->next_feed, "next_rid",
                          (json_int_t)m->next_rid, "session", (json_int_t)m->session, "pend",
                          pend, "users", users);
    RT_ASSERT(o != NULL);
    return o;
}

static bool pending(const room_media_t *m, int kind, const char *user, const char *feed)
{
    for (const pend_t *p = m->pend; p; p = p->next)
        if (p->kind == kind && (!user || (p->user && strcmp(p->user, user) == 0)) &&
            (!feed || (p->feed && strcmp(p->feed, feed) == 0)))
            return true;
    return false;
}

static const char *nonempty(json_t *s)
{
    const char *v = json_string_value(s);
    return v && v[0] ? v : NULL;
}

void room__media_restore(room_media_t *m, json_t *o)
{
    if (json_is_object(o)) {
        m->jroom = (uint64_t)json_integer_value(json_object_get(o, "jroom"));
        if (!m->jroom)
            m->jroom = hash_id(m->id);
        m->ctl = (uint64_t)json_integer_value(json_object_get(o, "ctl"));
        m->phase = (int)json_integer_value(json_object_get(o, "phase"));
        if (m->phase < 0 || m->phase > 2)
            m->phase = 0;
        m->was_down = json_is_true(json_object_get(o, "was_down"));
        m->next_feed = (uint64_t)json_integer_value(json_object_get(o, "next_feed"));
        m->next_rid = (uint64_t)json_integer_value(json_object_get(o, "next_rid"));
        m->session = (uint64_t)json_integer_value(json_object_get(o, "session"));
        size_t i;
        json_t *pj;
        json_array_foreach(json_object_get(o, "pend"), i, pj) {
            int kind = (int)json_integer_value(json_array_get(pj, 1));
            if (kind > 0 && kind < P_KIND_MAX)
                pend_add(m, (uint64_t)json_integer_value(json_array_get(pj, 0)), kind,
                         nonempty(json_array_get(pj, 2)), nonempty(json_array_get(pj, 3)));
        }
        const char *user;
        json_t *x;
        json_object_foreach(json_object_get(o, "users"), user, x) {
            muser_t *u = user_get(m, user, true);
            u->feed_id = (uint64_t)json_integer_value(json_object_get(x, "feed_id"));
            u->pub = (uint64_t)json_integer_value(json_object_get(x, "pub"));
            u->attaching = json_is_true(json_object_get(x, "attaching"));
            u->joined = json_is_true(json_object_get(x, "joined")) && u->pub;
            u->up = json_is_true(json_object_get(x, "up"));
            u->published = json_is_true(json_object_get(x, "published"));
            u->dropped = json_is_true(json_object_get(x, "dropped"));
            json_t *offer = json_object_get(x, "offer");
            if (json_is_object(offer))
                u->offer = json_incref(offer);
            json_t *cands = json_object_get(x, "cands");
            if (json_is_array(cands))
                json_array_extend(u->cands, cands);
            const char *feed;
            json_t *sx;
            json_object_foreach(json_object_get(x, "subs"), feed, sx) {
                msub_t *s = sub_get(u, feed, true);
                s->handle = (uint64_t)json_integer_value(json_object_get(sx, "handle"));
                s->joined = json_is_true(json_object_get(sx, "joined"));
                s->attaching = json_is_true(json_object_get(sx, "attaching"));
            }
            if (u->feed_id > m->next_feed)
                m->next_feed = u->feed_id;
        }
        /* A request whose sending was in the very message that crashed is
         * not in the backup: what waited for it starts over. */
        if (m->phase == 1 && !pending(m, P_CTL_ATTACH, NULL, NULL) &&
            !pending(m, P_CREATE, NULL, NULL))
            m->phase = 0;
        for (muser_t *u = m->users; u; u = u->next) {
            if (u->attaching && !pending(m, P_PUB_ATTACH, u->user, NULL))
                u->attaching = false;
            for (msub_t *s = u->subs; s; s = s->next)
                if (s->attaching && !pending(m, P_SUB_ATTACH, u->user, s->feed))
                    s->attaching = false;
        }
        for (muser_t *u = m->users; u; u = u->next)
            pub_step(m, u);
    }
    status_check(m);
}

void room__media_release(room_media_t *m)
{
    rt_pid_t media = m ? rt_whereis(JANUS_NAME) : RT_NOPID;
    /* The VideoRoom goes with the room (it was made when ctl was). */
    rt_msg_t *msg = media ? janus_release_new(m->name, m->ctl ? m->jroom : 0) : NULL;
    if (msg)
        rt_send_msg(media, msg);
}
