/*
 * web/presence.h — Phoenix Presence (design §4): who is on a topic, in
 * the form phoenix.js's Presence understands.
 *
 * One table for the whole server, cut into stripes by topic hash, each
 * stripe under its own mutex: topic -> key -> metas, every meta carrying
 * a unique "phx_ref". There is no process per topic: a track and an
 * untrack are done by the tracking connection process itself, under the
 * topic's stripe lock, and cost no message hop, no spawn, no registered
 * name and no monitor (an idle user:<id> connection used to carry a
 * whole tracker process, ~2 KB); a tracked meta is one ~100-byte block.
 * Every change is broadcast to the topic through the fast lane as
 *     presence_diff {"joins":{key:{"metas":[...]}},"leaves":{key:{"metas":[...]}}}
 * and the joiner gets the whole state
 *     presence_state {key:{"metas":[...]}, ...}
 * on its own channel, after its join reply and before the diff of its
 * own join, as Phoenix does. phoenix.js's Presence.list() is then right
 * through joins, leaves, crashes of connections and reconnects (a
 * reconnect is a new meta with a new phx_ref; the old one leaves when
 * its connection's channel ends).
 *
 * Why that is enough, without a tracker process in the middle:
 *   - The state a joiner gets is read under the stripe lock together
 *     with the insertion of its own meta, so it is the table at one
 *     instant. The joiner subscribed to the topic before (channel.h
 *     rule 1), so every change made after that instant reaches it as a
 *     diff. A diff of a change made before it may reach it too; that is
 *     harmless, since phoenix.js merges metas by phx_ref.
 *   - A meta's join diff and its leave diff are published by the same
 *     connection process, one after the other, so every subscriber gets
 *     them in that order (a mailbox is FIFO per sender).
 *   - A connection that dies without leaving leaves all the same: a
 *     channel's terminate runs whatever ended it (channel.h rule 6),
 *     killed connections included (the runtime runs terminate then), and
 *     terminate is where the handler untracks.
 *
 * Use from a channel handler (all in the connection process):
 *     join:        web_channel_join_ok(ch, ...);
 *                  web_presence_track(&st->presence, ch, user, meta);
 *     terminate:   web_presence_untrack(&st->presence, ch);
 * (web_presence_handle_info is kept for handlers written against the
 * earlier, asynchronous tracker: it now always returns false.)
 *
 * Ownership: web_presence_t is a handle, embedded in the handler's state
 * (zero it first) or kept anywhere: it may be copied, as long as exactly
 * one copy is untracked. track copies key and meta; untrack frees them.
 * The meta is listed under the channel's own topic string, not a copy:
 * untrack must run before the channel's terminate returns (the usage
 * above does).
 * Threads: track/untrack in the channel's connection process; list_sync
 * from any thread.
 */
#ifndef ROOST_WEB_PRESENCE_H
#define ROOST_WEB_PRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "rt/rt.h"
#include "web/channel.h"

struct web_presence_entry;

typedef struct web_presence {
    struct web_presence_entry *entry; /* our meta in the table, or NULL */
} web_presence_t;

/* Process context (the channel's connection), after join_ok. Tracks this
 * channel under key with meta (a JSON object, borrowed; "phx_ref" is
 * added here, replacing one the object may have), pushes presence_state
 * to the channel and broadcasts the join. Returns WEB_OK, WEB_E_ARG,
 * WEB_E_STATE (already tracking, or the channel is not joined) or
 * WEB_E_NOMEM; on error nothing was tracked or sent. */
int web_presence_track(web_presence_t *p, web_channel_t *ch, const char *key,
                       const json_t *meta);

/* The same with the meta as compact JSON text: meta_len bytes holding a
 * JSON object without a "phx_ref" member (the caller's promise; the
 * phx_ref is appended as text). Saves building and dumping a json_t on
 * the join path. */
int web_presence_track_text(web_presence_t *p, web_channel_t *ch, const char *key,
                            const char *meta_json, size_t meta_len);

/* Always false: tracking answers at once, nothing comes back later.
 * Kept so that handlers may still route their messages through it. */
bool web_presence_handle_info(web_presence_t *p, web_channel_t *ch, rt_msg_t *m);

/* Stops tracking (the leave is broadcast) and frees what track kept.
 * Safe on a zeroed or already untracked web_presence_t, and from a
 * terminate that runs after the process was killed. ch is unused (kept
 * for the callers written against the tracker). Process context. */
void web_presence_untrack(web_presence_t *p, web_channel_t *ch);

/* Any thread: the topic's presence state as JSON text (free() it), "{}"
 * when nobody is tracked. Returns WEB_OK or WEB_E_NOMEM. */
int web_presence_list_sync(const char *topic, char **json);

/* Any thread: the number of metas tracked now, all topics together (for
 * tests and /metrics). */
size_t web_presence_metas(void);

#endif /* ROOST_WEB_PRESENCE_H */
