/*
 * domain/room.h — rooms (design §1, §4): the RoomServer that owns a room's
 * state, its BackupServer, the RoomSupervisor that holds the two, the
 * RoomsSupervisor with one child per live room, and the room directory
 * that creates, restores and ends rooms. The history writer is in
 * domain/history.h, the state JSON in domain/state.h.
 *
 * The tree (what main and the tests start, in this order):
 *
 *   rooms        rt_sup_behaviour, simple_one_for_one (room_rooms_spec()),
 *                registered "rooms"
 *   │ └── RoomSupervisor per room: rest_for_one, transient
 *   │       ├── backup   room_backup_server (permanent)
 *   │       └── server   room_server (transient), registered "room:<id>"
 *   room_dir     room_directory, registered "room_dir": creates rooms on
 *                demand (one at a time per id), restores every live room
 *                from the store when it starts, lists them, and ends
 *                cleanly a room whose RoomSupervisor gave up.
 *
 * rest_for_one, not one_for_all: the backup exists to outlive a crash of
 * the server. A crashed server is restarted alone and takes the backup's
 * last state; a crashed backup restarts both (the new backup loads the
 * last acknowledged state from the store). The directory must be a
 * later sibling of rooms in the root supervisor: it is then stopped
 * before rooms on shutdown, so the RoomSupervisors it sees go down are
 * always rooms that gave up, never a server being stopped.
 *
 * Dependency inversion (design §2: domain never includes web). The web
 * layer plugs in at start-up with room_configure():
 *   - a publisher: publish(topic, event, JSON text, exclude) to every
 *     subscriber of a topic, encoded once (the web side wraps
 *     web_broadcast_new + publish);
 *   - per member, at join, an address room_addr_t {pid, tag, word}: a
 *     member-directed message is rt_send'ed to pid with that tag, a =
 *     word, b = a ROOM_DELIVER_* kind and data = the payload (JSON text,
 *     RT_OWN_FREE). The web side gives (connection pid, WEB_MSG_CHANNEL,
 *     channel id), so it lands in that channel's handle_info.
 *
 * Threads: requests are runtime messages, built on any thread; the
 * behaviours run as processes. room_configure is for an external thread
 * before the tree starts (the configuration is read-only afterwards).
 * Ownership: every room_req_* builder returns a message the caller owns
 * until it is sent (rt_call / rt_call_sync take it).
 */
#ifndef ROOST_DOMAIN_ROOM_H
#define ROOST_DOMAIN_ROOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt/rt.h"
#include "rt/rt_sup.h"

/* ---- Errors --------------------------------------------------------------
 * Replies carry one of these in their tag ((uint32_t)(int32_t)err). The
 * join errors' reasons (room_strerror) are design §4's. */
typedef enum room_err {
    ROOM_OK = 0,
    ROOM_EFULL = -300,    /* "full": max_participants reached */
    ROOM_EENDED,          /* "ended": the room has ended (ids are not reused) */
    ROOM_ENOTFOUND,       /* "not_found": no such room (auto-create off) */
    ROOM_EEXIST,          /* "exists": create of a room that is live */
    ROOM_EINVAL,          /* "invalid": a malformed request */
    ROOM_ENOTMEMBER,      /* "not_a_participant": status from a viewer or a stranger */
    ROOM_ENOPEER,         /* "unknown_peer": signal to nobody connected in the room */
    ROOM_ESTORE,          /* "store_error": the store refused the change; not applied */
    ROOM_EUNAVAIL,        /* "unavailable": the room is restarting or gone; try again */
    ROOM_ETOOLARGE,       /* "too_large": a participant's status over ROOM_STATUS_MAX */
    ROOM_ENOMEM,          /* "out_of_memory" */
    ROOM_ERESERVED,       /* "reserved_user": the user id is ROOM_RESERVED_USER */
} room_err_t;

/* The user id that stands for the media server in signals ({"to":"media"},
 * {"from":"media"}); nobody may join a room under it, in either media mode,
 * so a signal to it is never ambiguous. */
#define ROOM_RESERVED_USER "media"

const char *room_strerror(int err);

/* A participant's status object, serialised, is at most this many bytes. */
#define ROOM_STATUS_MAX 8192
/* Room and user ids: 1 to ROOM_ID_MAX bytes of UTF-8 without controls. */
#define ROOM_ID_MAX 256

/* ---- Configuration ------------------------------------------------------ */

/* Publishes event with payload (payload_len bytes of JSON) on topic to
 * every subscriber, skipping the connection exclude (RT_NOPID: none).
 * Any thread; must not block. Returns the subscribers reached or a
 * negative error. */
typedef struct room_publisher {
    int (*publish)(void *ctx, const char *topic, const char *event, const char *payload,
                   size_t payload_len, rt_pid_t exclude);
    void *ctx;
} room_publisher_t;

typedef struct room_config {
    room_publisher_t publisher;  /* NULL publish: announcements are dropped */
    int tick_ms;                 /* announcement coalescing; 0 = 50 */
    int viewers_tick_ms;         /* ... when only the viewer count changed; 0 = 1000 */
    int reconnect_grace_ms;      /* 0 = 30000 */
    int empty_timeout_ms;        /* default per room; 0 = 300000 */
    bool auto_create;            /* a join of an unknown room creates it */
    uint32_t room_intensity;     /* RoomSupervisor restarts ... 0 = 3 */
    uint32_t room_period_ms;     /* ... within this period; 0 = 5000 */
    int store_timeout_ms;        /* a store write or call; 0 = 5000 */
    struct store *store;         /* the store (main gives it): RoomServers and
                                    the HistoryServer submit their writes to
                                    it directly, /metrics reads its stats.
                                    NULL: writes go through the store process */
    int media;                   /* ROOM_MEDIA_NONE (p2p) or ROOM_MEDIA_JANUS */
} room_config_t;

enum { ROOM_MEDIA_NONE = 0, ROOM_MEDIA_JANUS = 1 };

/* Copies cfg (defaults filled in). External thread, before the tree
 * starts; NULL resets to the defaults with auto_create on. */
void room_configure(const room_config_t *cfg);
/* The configuration in force (read-only). Any thread. */
const room_config_t *room_config(void);

/* ---- Names ----------------------------------------------------------------- */

#define ROOM_TOPIC_PREFIX "room:"   /* pub/sub topic and registered name */
#define ROOM_ROOMS_NAME "rooms"     /* the RoomsSupervisor */
#define ROOM_DIR_NAME "room_dir"    /* the directory */

/* "room:<id>" into buf; false if it does not fit. */
bool room_topic(const char *id, char *buf, size_t cap);
/* True if id is a valid room or user id (see ROOM_ID_MAX). */
bool room_id_valid(const char *id, size_t len);
/* The live RoomServer of id, or RT_NOPID (none, or restarting). Any thread. */
rt_pid_t room_whereis(const char *id);

/* ---- Behaviours --------------------------------------------------------------- */

extern const rt_behaviour_t room_server;         /* init arg: room_boot_t* */
extern const rt_behaviour_t room_backup_server;  /* init arg: room_boot_t* */
extern const rt_behaviour_t room_directory;      /* init arg: ignored */
/* The RoomsSupervisor's spec (static): start it with rt_sup_behaviour. */
const rt_sup_spec_t *room_rooms_spec(void);

/* ---- Requests -----------------------------------------------------------------
 * Calls to a RoomServer (room_whereis) or to the directory. Answers are
 * RT_MSG_REPLY with tag = ROOM_OK or a room_err_t; a runtime error reply
 * (RT_MF_ERROR: the room exited, or a timeout) is read by room_reply_err
 * as ROOM_EUNAVAIL, or ROOM_EENDED when the room exited normally (it
 * ended). */
enum room_tag {
    ROOM_REQ_JOIN = 0x524f0001u, /* server call: join; ok data = room_view_t (RC) */
    ROOM_REQ_STATUS,             /* server call: merge a status; ok a = version */
    ROOM_REQ_SIGNAL,             /* server call: relay a signal; ok a = members reached */
    ROOM_REQ_GET,                /* server call: ok data = rt_buf_t state JSON (RC) */
    ROOM_REQ_END,                /* server call: end the room; ok data = final state (RC),
                                    answered once the end is stored */
    ROOM_MSG_LEAVE,              /* server cast: a = member pid, b = word (phx_leave) */
    ROOM_MSG_DISCONNECT,         /* server cast: a = member pid, b = word (connection gone) */
    ROOM_DIR_ENSURE,             /* directory call: data room_ensure_t; ok data =
                                    rt_buf_t state (RC) with ROOM_ENSURE_EXCLUSIVE
                                    (for the creator) or ROOM_ENSURE_STATE */
    ROOM_DIR_LIST,               /* directory call: ok data = rt_buf_t JSON array of states */
    /* internal */
    ROOM__BACKUP_PUT = 0x524f0100u,
    ROOM__BACKUP_GET,
    ROOM__BACKUP_ACKED,
    ROOM__DIR_HELLO,
    ROOM__DIR_ENDED,
    ROOM__TICK,
    ROOM__GRACE,
    ROOM__EMPTY,
    ROOM__RETRY,
    ROOM__WRITTEN,               /* store writer -> RoomServer: data = the write */
    ROOM__WRITE_TIMEOUT,         /* timer: a = the write's ref */
};

/* Member-directed messages: sent to addr.pid with tag addr.tag, a =
 * addr.word, b = one of these, data = JSON text (NUL-terminated,
 * RT_OWN_FREE). */
enum room_deliver {
    ROOM_DELIVER_SIGNAL = 1, /* push "signal" with data as the payload */
};

typedef struct room_addr {
    rt_pid_t pid;      /* the member's connection (monitored by the room) */
    uint32_t tag;      /* e.g. WEB_MSG_CHANNEL */
    uint64_t word;     /* e.g. the channel id */
} room_addr_t;

typedef enum room_role {
    ROOM_PARTICIPANT = 0,
    ROOM_VIEWER = 1,   /* no entry, no presence, not counted in max_participants */
} room_role_t;

/* What a join is answered with: the state and the participants'
 * presence (Phoenix presence_state form), both JSON text. Shared by every
 * joiner answered at once (refcounted, immutable). */
typedef struct room_view {
    rt_rc_t rc;
    rt_buf_t *state;
    rt_buf_t *presence;
} room_view_t;

/* Joins user (copied) with role; addr is where member-directed messages
 * go, and addr.pid is monitored (its exit is a disconnect). */
rt_msg_t *room_req_join(const char *user, room_role_t role, room_addr_t addr);
/* Merges the JSON object patch (patch_len bytes, copied) into user's
 * status; member is the pushing connection (it must be one of user's). */
rt_msg_t *room_req_status(const char *user, rt_pid_t member, const char *patch,
                          size_t patch_len);
/* Relays payload (a JSON object, copied, already carrying "from") to
 * every connection of participant `to`. from must be a participant
 * connected through `member`. */
rt_msg_t *room_req_signal(const char *from, rt_pid_t member, const char *to,
                          const char *payload, size_t payload_len);
rt_msg_t *room_req_get(void);
/* reason: recorded with room_ended (copied; NULL = "deleted"). */
rt_msg_t *room_req_end(const char *reason);

/* Directory: make sure room id runs. */
#define ROOM_ENSURE_CREATE    0x1u  /* create it if it never existed */
#define ROOM_ENSURE_EXCLUSIVE 0x2u  /* ROOM_EEXIST if it exists (POST /api/rooms);
                                       the answer waits until the new room is stored
                                       and carries its state */
#define ROOM_ENSURE_STATE     0x4u  /* answer with the room's state (GET) once it runs */
typedef struct room_ensure {
    uint32_t flags;
    int64_t max_participants;   /* < 0: default (0 = unlimited) */
    int64_t empty_timeout_ms;   /* < 0: room_config()->empty_timeout_ms */
    char id[];                  /* NUL-terminated */
} room_ensure_t;
rt_msg_t *room_req_ensure(const char *id, uint32_t flags, int64_t max_participants,
                          int64_t empty_timeout_ms);
rt_msg_t *room_req_list(void);

/* Reading an answer (borrowed). */
int room_reply_err(const rt_msg_t *reply);
/* The view of an ok join answer, or NULL (borrowed from the message). */
const room_view_t *room_reply_view(const rt_msg_t *reply);
/* The JSON buffer of an ok GET / END / ENSURE(exclusive) / LIST answer,
 * or NULL (borrowed). */
rt_buf_t *room_reply_buf(const rt_msg_t *reply);

/* ---- The boot argument of a RoomSupervisor and its children ------------------
 * Built by the directory, owned by the RoomsSupervisor (freed with
 * room_boot_free when it forgets the child). Holds the RoomSupervisor's
 * own spec, so the RoomSupervisor's init arg is &boot->spec. */
typedef struct room_boot room_boot_t;

/* ---- Statistics (for /metrics), any thread ---------------------------------- */
typedef struct room_stats {
    uint64_t live;           /* RoomServers running now */
    uint64_t created;        /* rooms created */
    uint64_t ended;          /* rooms ended (any way) */
    uint64_t gave_up;        /* rooms ended because they crashed too often */
    uint64_t restarts;       /* RoomServer restarts (room_restarted) */
    uint64_t store_refusals; /* changes refused because the store failed */
    uint64_t members;        /* connections joined now (participants + viewers) */
} room_stats_t;
void room_get_stats(room_stats_t *out);

#endif /* ROOST_DOMAIN_ROOM_H */
