/*
 * domain/room_internal.h — what the room processes share between their
 * files (room_api.c, room.c, backup.c, rooms.c) and nobody else: request
 * layouts, the boot argument, the backup snapshot, counters. Names carry
 * the double prefix room__.
 */
#ifndef ROOST_DOMAIN_ROOM_INTERNAL_H
#define ROOST_DOMAIN_ROOM_INTERNAL_H

#include <stdatomic.h>

#include <jansson.h>

#include "domain/room.h"

/* `b` of an ok answer says what its data is. */
enum { ROOM__BUF = 1, ROOM__VIEW = 2 };

typedef struct room_join_req {
    room_addr_t addr;
    room_role_t role;
    char user[];
} room_join_req_t;

/* status and signal requests: strings in buf. */
typedef struct room_text_req {
    rt_pid_t member;
    char *user;   /* the sender */
    char *to;     /* signal: the peer; "" otherwise */
    char *text;   /* JSON text, NUL-terminated */
    size_t len;
    char buf[];
} room_text_req_t;

/* The RoomSupervisor's own spec, its two children and what they start
 * from, in one block owned by the RoomsSupervisor (room_boot_free). */
struct room_boot {
    rt_sup_spec_t spec;          /* first: the RoomSupervisor's init arg */
    rt_child_spec_t children[2];
    char *id;
    char *name;                  /* "room:<id>" */
    char *state;                 /* restored state (stored form) for the
                                    backup's first start, or NULL: a new room */
    int64_t max_participants;
    int64_t empty_timeout_ms;
    /* Starts of the backup so far. Only the RoomSupervisor's children
     * touch it, one init at a time, each start ordered after the previous
     * by the supervisor's messages: relaxed is enough. */
    _Atomic uint32_t backup_starts;
    /* The running backup, set by its init (release) before the
     * RoomServer's init reads it (acquire): the supervisor starts the
     * server only after the backup's init returned. */
    _Atomic rt_pid_t backup_pid;
};

room_boot_t *room__boot_new(const char *id, const char *state, int64_t max_participants,
                            int64_t empty_timeout_ms);
void room__boot_free(void *boot);

/* What the BackupServer holds: the stored form of the state and the
 * RoomServer's runtime (members, presence refs, grace deadlines), both
 * JSON text. Immutable and refcounted, so handing it over copies nothing. */
/* Messages to the BackupServer (casts):
 *   ROOM__BACKUP_PUT    data = room_snap_t (either part may be NULL: keep
 *                       the one held); a = the state's version when it
 *                       carries one
 *   ROOM__BACKUP_ACKED  a = a version the store acknowledged
 * and the call ROOM__BACKUP_GET, answered with a room_restore_t. */
typedef struct room_snap {
    rt_rc_t rc;
    rt_buf_t *state;    /* stored form (state.h) */
    rt_buf_t *runtime;  /* may be NULL */
} room_snap_t;

room_snap_t *room__snap_new(rt_buf_t *state, rt_buf_t *runtime); /* retains both */

/* The BackupServer's answer to ROOM__BACKUP_GET. */
typedef enum room_origin {
    ROOM_FROM_NEW = 1,   /* a brand-new room: nothing was stored yet */
    ROOM_FROM_STORE,     /* loaded from the store (restored, or a new backup) */
    ROOM_FROM_BACKUP,    /* handed over by the previous RoomServer */
} room_origin_t;

typedef struct room_restore {
    rt_rc_t rc;
    room_snap_t *snap;
    room_origin_t origin;
    bool acked;          /* the state is known to be in the store */
    rt_reason_t *crash;  /* the previous RoomServer's exit reason, or NULL */
} room_restore_t;

/* Publishes through the configured publisher (0 reached if none). */
int room__publish(const char *topic, const char *event, const char *json, size_t len,
                  rt_pid_t exclude);
room_view_t *room__view_new(rt_buf_t *state, rt_buf_t *presence);
/* Answers with tag err, a, and buf (retained) as data. */
int room__reply_buf(rt_from_t from, int err, uint64_t a, rt_buf_t *buf);

enum {
    ROOM__STAT_LIVE,
    ROOM__STAT_CREATED,
    ROOM__STAT_ENDED,
    ROOM__STAT_GAVE_UP,
    ROOM__STAT_RESTARTS,
    ROOM__STAT_REFUSALS,
    ROOM__STAT_MEMBERS,
    ROOM__STAT_N
};
extern _Atomic uint64_t room__stat[ROOM__STAT_N];
static inline void room__count(int i, int64_t d)
{
    /* Statistics only: relaxed, ordered with nothing. */
    atomic_fetch_add_explicit(&room__stat[i], (uint64_t)d, memory_order_relaxed);
}

/* ---- Media (room_media.c): the room's side of a Janus VideoRoom -------------
 * Only when room_config()->media == ROOM_MEDIA_JANUS. The RoomServer owns
 * one room_media_t; everything runs in the RoomServer's process and never
 * blocks: Janus requests are named requests to the media client whose
 * answers come back through room__media_info. The media side calls the room back
 * through the two functions below (room.c). */
#define ROOM_MEDIA_PEER ROOM_RESERVED_USER   /* the `to` / `from` of signals with Janus */
typedef struct room_media room_media_t;
room_media_t *room__media_new(void *room, const char *room_id);
void room__media_free(room_media_t *m);
/* A client's signal to "media" (payload JSON with "from" = user). */
int room__media_signal(room_media_t *m, const char *user, const char *json, size_t len);
/* A message the RoomServer did not recognise: true if it was media's. */
bool room__media_info(room_media_t *m, rt_msg_t *msg);
/* user has no connection left: drop its handles. left: for good (its
 * entry goes); else disconnected: its media state turns "failed" and,
 * if it comes back (room__media_back), it is asked for a fresh offer. */
void room__media_gone(room_media_t *m, const char *user, bool left);
/* user reconnected (after its join reply went out). */
void room__media_back(room_media_t *m, const char *user);
/* The room ended for good: destroy its Janus room, detach every handle. */
/* The media bookkeeping (Janus room, handle ids per participant) for the
 * runtime the BackupServer holds, and back: a restarted RoomServer goes on
 * with the same Janus handles (they are owned by the name room:<id>). */
json_t *room__media_dump(const room_media_t *m);
void room__media_restore(room_media_t *m, json_t *o);
void room__media_release(room_media_t *m);
/* Callbacks into room.c: deliver a "signal" payload to every connection
 * of user; record user's media state (merged into status.media, durable,
 * announced, in history as media_status). */
void room__media_deliver(void *room, const char *user, const char *json);
void room__media_state(void *room, const char *user, const char *state);
/* the media bookkeeping changed: the runtime goes to the backup again. */
void room__media_dirty(void *room);

#endif /* ROOST_DOMAIN_ROOM_INTERNAL_H */
