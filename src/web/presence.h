/*
 * web/presence.h — Phoenix Presence (design §4): who is on a topic, in
 * the form phoenix.js's Presence understands.
 *
 * One tracker process per topic, registered as "presence:<topic>",
 * started on demand by the first track and ending once nobody is
 * tracked. It keeps key -> metas; every meta carries a unique "phx_ref".
 * It monitors each tracking connection process, so a dropped connection
 * leaves without saying so. Every change is broadcast to the topic
 * through the fast lane as
 *     presence_diff {"joins":{key:{"metas":[...]}},"leaves":{key:{"metas":[...]}}}
 * and the joiner gets the whole state
 *     presence_state {key:{"metas":[...]}, ...}
 * on its own channel, after its join reply and before the diff of its
 * own join (the tracker answers the track call, then publishes), as
 * Phoenix does. phoenix.js's Presence.list() is then right through
 * joins, leaves, crashes of connections and reconnects (a reconnect is a
 * new meta with a new phx_ref; the old one leaves when its connection's
 * DOWN arrives).
 *
 * Use from a channel handler (all in the connection process):
 *     join:        web_channel_join_ok(ch, ...);
 *                  web_presence_track(&st->presence, ch, user, meta);
 *     handle_info: if (web_presence_handle_info(&st->presence, ch, m))
 *                      return WEB_CH_OK;
 *     terminate:   web_presence_untrack(&st->presence, ch);
 *
 * Ownership: web_presence_t is embedded in the handler's state (zero it
 * first); track copies key and meta; untrack frees what track kept.
 */
#ifndef ROOST_WEB_PRESENCE_H
#define ROOST_WEB_PRESENCE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "rt/rt.h"
#include "web/channel.h"

/* The tracker's behaviour. Its init arg is a malloc'd "presence:<topic>"
 * string that init takes (frees), whatever happens. */
extern const rt_behaviour_t web_presence_behaviour;

/* Requests to a tracker. */
enum {
    WEB_PRESENCE_TRACK = 0x57500001u, /* call; a = channel id, data = key\0meta-json\0 */
    WEB_PRESENCE_UNTRACK,             /* cast; a = channel id, b = connection pid */
    WEB_PRESENCE_LIST,                /* call; reply data = state JSON (RT_OWN_FREE) */
    WEB_PRESENCE__IDLE,               /* internal timer */
};

/* A tracker stops this long after its start if nobody was tracked. */
#define WEB_PRESENCE_IDLE_MS 5000
/* Track attempts (a tracker may be ending while we call it). */
#define WEB_PRESENCE_ATTEMPTS 5

typedef struct web_presence {
    char *topic;          /* the channel's topic */
    char *req;            /* key \0 meta-json \0, resent on a retry */
    size_t req_len;
    uint64_t call_ref;    /* the track call in flight, or 0 */
    rt_pid_t tracker;     /* who holds our meta */
    unsigned attempts;
    bool tracked;         /* the tracker answered */
} web_presence_t;

/* Process context (the channel's connection), after join_ok. Tracks this
 * channel under key with meta (a JSON object, borrowed; "phx_ref" is
 * added by the tracker), starting the topic's tracker if there is none.
 * The answer comes to the channel's handle_info: pass messages to
 * web_presence_handle_info. Returns WEB_OK, WEB_E_ARG, WEB_E_STATE
 * (already tracking), WEB_E_NOMEM or an rt error. */
int web_presence_track(web_presence_t *p, web_channel_t *ch, const char *key,
                       const json_t *meta);

/* True if m was the tracker's answer (then presence_state has been
 * pushed, or the track retried); false if m is someone else's. */
bool web_presence_handle_info(web_presence_t *p, web_channel_t *ch, rt_msg_t *m);

/* Stops tracking (the tracker broadcasts the leave) and frees what
 * track kept. Safe on a zeroed or already untracked web_presence_t.
 * Process context. */
void web_presence_untrack(web_presence_t *p, web_channel_t *ch);

/* External thread: the topic's presence state as JSON text (free() it),
 * "{}" when nobody is tracked. Returns WEB_OK or an error. */
int web_presence_list_sync(const char *topic, char **json);

#endif /* ROOST_WEB_PRESENCE_H */
