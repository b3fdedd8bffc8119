/*
 * domain/history.h — the HistoryServer (design §1 "history", §4
 * "Recorded events"): every room's changes become events in the store,
 * and every finished room one call record.
 *
 * How rooms reach it. A RoomServer calls history_record() after each
 * acknowledged change: a cast to the history process, never a call, so a
 * room never waits for history. The buffer between them is bounded:
 * past HISTORY_MAX_BACKLOG messages not yet handled, new events are
 * dropped and counted (history_stats_t.dropped) instead of growing the
 * history mailbox toward the runtime's backpressure mark (65,536), which
 * would pause the sending room. The sender builds the store request
 * itself (store_req_append_event_dumped: the data is its own
 * serialisation and is not parsed again); the HistoryServer hands it to
 * the store: straight into its queue with store_submit when the rooms
 * were configured with the store (room_config()->store, as main does),
 * else through the store process with store_cast. It is group-committed
 * with the rooms' states; the store assigns each room's gapless seq in
 * arrival order.
 * Events are therefore readable a moment after the change, and stay
 * readable after the room ends.
 *
 * Event types (design §4): room_created, participant_joined,
 * participant_left, participant_disconnected, participant_reconnected,
 * status_changed (a participant's status; data = its new status),
 * room_restarted (data {"reason"}), room_ended (data {"reason"}).
 *
 * Threads: history_record* and history_get_stats from any thread.
 */
#ifndef ROOST_DOMAIN_HISTORY_H
#define ROOST_DOMAIN_HISTORY_H

#include <stdint.h>

#include "rt/rt.h"

#define HISTORY_NAME "history"
#define HISTORY_MAX_BACKLOG 50000

/* The process (registered HISTORY_NAME by its child spec); init arg
 * ignored. It writes through room_config()->store, or, when that is
 * NULL, through the store process it finds by its name "store". */
extern const rt_behaviour_t history_server;

/* Records an event of room: at (ms since the epoch; <= 0: now), type,
 * user (may be NULL), data (JSON text the caller serialised, e.g. with
 * json_dumps, or NULL: it is stored as is, not parsed again); all
 * copied. Returns 0 if queued, -1 if dropped (no history process,
 * buffer full, an invalid id, ENOMEM). */
int history_record(const char *room, int64_t at, const char *type, const char *user,
                   const char *data_json);

/* Records the call record of a finished room (participants: a JSON
 * array of user ids). Same result as history_record. */
int history_record_call(const char *room, int64_t created_at, int64_t started_at,
                        int64_t ended_at, const char *participants_json, int64_t duration_ms);

typedef struct history_stats {
    uint64_t backlog;    /* sent to the history process, not yet handled */
    uint64_t recorded;   /* events handed to the store */
    uint64_t calls;      /* call records handed to the store */
    uint64_t dropped;    /* refused: buffer full or no history process */
    uint64_t failed;     /* the store could not take them (no store, bad data) */
} history_stats_t;
void history_get_stats(history_stats_t *out);

#endif /* ROOST_DOMAIN_HISTORY_H */
