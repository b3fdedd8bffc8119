/*
 * store/store.h — roost's durable store: every room's latest state, the
 * recorded room events and the call records (design §1 "Durable
 * backups", §4 "Room state" and "Recorded events").
 *
 * What it is
 *   A queue of requests, one writer thread and a back end (SQLite first,
 *   see store_sqlite_backend; PostgreSQL later, behind the same
 *   store_backend_t). The store keeps JSON text and numbers; it knows
 *   nothing of participants, statuses or rooms beyond their ids.
 *
 * Durability and group commit
 *   A write is answered only after the transaction that holds it has
 *   committed durably (SQLite: the WAL is fsynced after the commit and
 *   before any answer). The writer thread takes every request queued so
 *   far (at most config.max_batch), writes them in one transaction,
 *   commits once and hands them to the syncer thread, which fsyncs the
 *   WAL once for every batch committed meanwhile and then answers each:
 *   N rooms changing at once cost one fsync, not N, and the writer runs
 *   the next batch while the disk confirms the last one. A batch is all or nothing: if a write or
 *   the commit fails, the transaction is rolled back and every write of
 *   the batch is answered with the error (nothing of it is kept, nothing
 *   of it is acknowledged). Two put_state requests for the same room in
 *   one batch are coalesced: only the later one is written, both are
 *   answered. Reads queued with the writes are answered after the
 *   batch's commit (and its sync), so a read sees every write queued
 *   before it and reveals nothing that is not durable. fsync happens on
 *   the store's own threads, never on a scheduler. If a sync fails,
 *   everything waiting for it is answered with the error and every later
 *   write is refused (STORE_EIO) until the store is opened again: the
 *   kernel may have dropped what it failed to write, so later syncs prove
 *   nothing (store.c rule 5).
 *
 * Three ways in (all end in the same queue)
 *   1. Processes: a store process (store_server, registered as "store"
 *      by the supervision tree) takes requests as calls (store_call,
 *      answered with an RT_MSG_REPLY, tag STORE_MSG_REPLY) or casts
 *      (store_cast, never answered: history writes).
 *   2. Any thread, asynchronously: store_submit with a completion
 *      callback that runs on a store thread.
 *   3. Threads that may block (startup, tests): store_exec.
 *
 * Requests are built with the store_req_* builders, each of which
 * copies its arguments into a new request (refs = 1). A request is
 * reference counted (it travels as a runtime message's RT_OWN_RC data);
 * store_req_free releases the caller's reference. After completion the
 * results are read with the store_req_* accessors; they live as long as
 * the request.
 *
 * Thread rules: every function says which applies, with rt.h's words:
 *   "any thread", "process context", "external thread" (not a scheduler:
 *   it may block on a commit).
 */
#ifndef ROOST_STORE_STORE_H
#define ROOST_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "rt/rt.h"

/* ---- Errors ----------------------------------------------------------------
 * One list for the store, negative, 0 is success. A request's result
 * (store_req_err) is one of these. */
typedef enum store_err {
    STORE_OK = 0,
    STORE_ENOMEM = -1,     /* allocation failed; nothing was done */
    STORE_EINVAL = -2,     /* bad argument: NULL or empty id, text that is
                              not the JSON it must be, limit too large */
    STORE_ENOTFOUND = -3,  /* no such room (load_state, mark_ended) */
    STORE_EIO = -4,        /* the back end failed to read, write or commit;
                              for a write: the batch was rolled back */
    STORE_EFULL = -5,      /* the disk (or the database) is full; the batch
                              was rolled back */
    STORE_ECORRUPT = -6,   /* stored data is unreadable (invalid JSON) */
    STORE_EVERSION = -7,   /* a version newer than this binary knows: the
                              database schema, or a state's schema */
    STORE_EMIGRATE = -8,   /* a state migration failed */
    STORE_EBUSY = -9,      /* backlog over config.max_backlog: refused */
    STORE_ECLOSED = -10,   /* the store is closing */
    STORE_ETIMEOUT = -11,  /* a store_call timed out: the request may still
                              be committed later */
    STORE_EUNAVAIL = -12,  /* the store process exited before answering:
                              the request may still be committed later */
    STORE_ECONTEXT = -13,  /* called from the wrong kind of thread */
    STORE_EBACKEND = -14,  /* the back end could not open (see stderr) */
} store_err_t;

/* A static string naming an error. Any thread. */
const char *store_strerror(int err);

/* ---- State schema versions (the room state JSON's own version) -------------
 * Distinct from the database schema (which the back end migrates at open
 * by itself). Every state is stored with the version it was written
 * with; on load, a state older than schema->version is passed to
 * migrate, the C counterpart of OTP code_change. */
typedef struct store_schema {
    uint32_t version;      /* the state version this binary writes (>= 1) */
    /* Converts state from from_version (< version) to `version`. Takes
     * the reference to state and returns a reference to the new state
     * (it may be the same object, changed in place), or NULL on failure
     * (having released state). Runs on the store's writer thread: it
     * must not block and must not call the store. Mandatory. */
    json_t *(*migrate)(json_t *state, uint32_t from_version);
} store_schema_t;

/* ---- Opening and closing ------------------------------------------------ */

typedef struct store store_t;
typedef struct store_req store_req_t;
struct store_backend;

typedef struct store_config {
    const char *data_dir;      /* created with its parents if missing (0700);
                                  NULL = "./data" (design §6 --data) */
    const struct store_backend *backend; /* NULL = &store_sqlite_backend */
    int busy_timeout_ms;       /* how long a statement waits for a lock
                                  held by another connection; 0 = 5000 */
    uint32_t max_batch;        /* requests per transaction; 0 = 4096. Bounds
                                  one transaction's size and the wait of
                                  its first request. */
    uint32_t max_backlog;      /* queued requests beyond which new ones are
                                  refused with STORE_EBUSY; 0 = 1,000,000 */
    const store_schema_t *schema; /* borrowed; may be NULL, or set later
                                     with store_set_schema */
    uint32_t cache_kib;        /* the back end's page cache (SQLite: of the
                                  writer's connection), KiB; 0 = 65536.
                                  Memory is taken only as pages are used. */
    uint32_t checkpoint_frames; /* SQLite: a background checkpoint every
                                  this many WAL frames, a WAL restart at 2x
                                  (sqlite.c "Checkpoints"); 0 = 8000 */
} store_config_t;

/* Opens (creating if needed) the store under cfg->data_dir, runs the
 * database migrations and starts the writer thread. cfg may be NULL for
 * the defaults. Returns STORE_OK and *out, or an error (STORE_EBACKEND,
 * STORE_EIO, STORE_EVERSION: the database was written by a newer roost,
 * STORE_ENOMEM) with *out untouched. External thread. */
int store_open(const store_config_t *cfg, store_t **out);

/* Stops taking requests (store_submit and store_exec answer
 * STORE_ECLOSED), executes and answers every request already queued,
 * stops the writer thread and closes the back end. Blocks for those
 * commits. Call it once, after every store process using st has exited.
 * NULL is ignored. External thread. */
void store_close(store_t *st);

/* Registers (or replaces, or with NULL removes) the state schema used by
 * later loads. schema is borrowed and must outlive st. Any thread. */
void store_set_schema(store_t *st, const store_schema_t *schema);

/* ---- Requests ------------------------------------------------------------
 * Builders: each copies its arguments into a new request and returns
 * STORE_OK with *out (the caller owns one reference), or STORE_EINVAL /
 * STORE_ENOMEM with *out untouched. Any thread. */

typedef enum store_op {
    /* writes: group-committed */
    STORE_OP_PUT_STATE = 1, /* a room's latest state */
    STORE_OP_MARK_ENDED,    /* set a room's ended flag */
    STORE_OP_APPEND_EVENT,  /* one recorded event; the store assigns seq */
    STORE_OP_PUT_CALL,      /* a call record (replaces one with its id) */
    /* reads: answered after the commit of the batch they are in */
    STORE_OP_LOAD_STATE,
    STORE_OP_LIST_LIVE,
    STORE_OP_READ_EVENTS,
    STORE_OP_QUERY_CALLS,
} store_op_t;

/* A room's latest state. state is JSON text (len bytes, need not be
 * NUL-terminated): it must parse as a JSON object (checked here, on the
 * caller's thread, so a bad state is refused at once and never stored).
 * state_version is the state schema version it was written with (>= 1),
 * version the room's version number. ended stores the room as ended too
 * (its last state). Answered once durable; on success
 * store_req_version gives back `version`. */
int store_req_put_state(store_req_t **out, const char *room, const char *state, size_t len,
                        uint32_t state_version, uint64_t version, bool ended);

/* The same as store_req_put_state, for a state the caller serialised
 * itself from a JSON object (json_dumpb of an object, as the RoomServer
 * does for every change): the buffer is shared (retained, not copied)
 * and is not parsed again. Only cheap checks are made: state->len > 0,
 * no NUL byte, and the text starts with '{' and ends with '}'. Anything
 * that passes is stored as is, so a caller that cannot vouch for the
 * text must use store_req_put_state. state is borrowed (the request
 * takes its own reference) and must not change afterwards (rt_buf_t is
 * immutable once shared). */
int store_req_put_state_buf(store_req_t **out, const char *room, rt_buf_t *state,
                            uint32_t state_version, uint64_t version, bool ended);

/* Marks a room ended: it leaves list_live, its state stays loadable.
 * STORE_ENOTFOUND if the store has no state for it. */
int store_req_mark_ended(store_req_t **out, const char *room);

/* Appends an event {seq, at, type, user?, data?} to a room's history.
 * The store assigns seq: 1 for a room's first event, then one more than
 * the room's last, in queue order, inside the transaction (so a failed
 * batch consumes no seq and seqs have no gaps). at is milliseconds since
 * the epoch (<= 0: now). user may be NULL; data is JSON text (any JSON
 * value) or NULL. On success store_req_seq gives the seq. */
int store_req_append_event(store_req_t **out, const char *room, int64_t at, const char *type,
                           const char *user, const char *data);

/* The same as store_req_append_event, for data the caller serialised
 * itself from a JSON value (json_dumps, as the RoomServer does): data is
 * not parsed again (NULL: none). Everything is copied into one
 * allocation with the request. */
int store_req_append_event_dumped(store_req_t **out, const char *room, int64_t at,
                                  const char *type, const char *user, const char *data);

/* A call record: id, times in ms since the epoch (started_at 0: never
 * started, stored as null), participants as JSON text that must be an
 * array of user id strings (they are indexed for store_req_query_calls),
 * duration_ms. A record with an existing id replaces it. */
int store_req_put_call(store_req_t **out, const char *id, int64_t created_at,
                       int64_t started_at, int64_t ended_at, const char *participants,
                       int64_t duration_ms);

/* Loads one room's state (ended or not): one store_room_t, or
 * STORE_ENOTFOUND. A state older than the registered schema is migrated. */
int store_req_load_state(store_req_t **out, const char *room);

/* Lists every live (not ended) room with its state, by id. A room whose
 * state cannot be decoded or migrated is listed with its own err set and
 * state NULL, so one bad room does not keep the others from being
 * restored. */
int store_req_list_live(store_req_t **out);

/* A room's events with seq > after, oldest first, at most limit (0: 100;
 * at most 1000). store_req_events' *next is the seq to pass as `after`
 * for the following page, or 0 when there is none. */
int store_req_read_events(store_req_t **out, const char *room, uint64_t after, uint32_t limit);

/* Call records, newest first (by created_at, then id), at most limit (0:
 * 100; at most 1000); with user != NULL only those it took part in. */
int store_req_query_calls(store_req_t **out, const char *user, uint32_t limit);

/* Releases the caller's reference. NULL ok. Any thread. */
void store_req_free(store_req_t *req);

/* ---- Results (valid once the request is completed) ----------------------
 * Everything returned is borrowed from the request and lives as long as
 * it (json_incref a json_t to keep it longer). Any thread that owns a
 * reference to the completed request. */

typedef struct store_room {
    const char *id;
    json_t *state;             /* NULL if err != 0 */
    uint32_t state_version;    /* of `state`, after any migration */
    uint32_t stored_version;   /* the version it was written with */
    uint64_t version;          /* the room's version number */
    int64_t updated_at;        /* ms since the epoch, when it was written */
    bool ended;
    int err;                   /* STORE_OK, STORE_ECORRUPT, STORE_EVERSION
                                  (stored_version > schema version) or
                                  STORE_EMIGRATE */
} store_room_t;

typedef struct store_event {
    uint64_t seq;
    int64_t at;
    const char *type;
    const char *user;          /* NULL if none */
    json_t *data;              /* NULL if none */
} store_event_t;

typedef struct store_call {
    const char *id;
    int64_t created_at;
    int64_t started_at;        /* 0: never started */
    int64_t ended_at;
    json_t *participants;      /* a JSON array */
    int64_t duration_ms;
} store_call_t;

int store_req_err(const store_req_t *req);        /* STORE_OK or the error */
store_op_t store_req_op(const store_req_t *req);
const char *store_req_room(const store_req_t *req); /* room (call) id, or NULL */
uint64_t store_req_version(const store_req_t *req); /* put_state: the room version */
uint64_t store_req_seq(const store_req_t *req);     /* append_event: seq, 0 on error */
/* put_state: true if a later put_state for the same room in the same
 * batch was written instead (the request is answered all the same). */
bool store_req_coalesced(const store_req_t *req);
const store_room_t *store_req_rooms(const store_req_t *req, size_t *n);
const store_event_t *store_req_events(const store_req_t *req, size_t *n, uint64_t *next);
const store_call_t *store_req_calls(const store_req_t *req, size_t *n);

/* ---- Asynchronous and synchronous execution ------------------------------ */

/* Called on a store thread (the writer, or the syncer that answers) when
 * req is completed (its results are set); takes the reference
 * store_submit took. Must be quick and must
 * not block (other requests wait for it): send a message, signal. */
typedef void (*store_done_fn)(store_req_t *req, void *ctx);

/* Queues req. On STORE_OK it takes the caller's reference and done (NULL:
 * nobody waits; the store releases req) is called exactly once, on a
 * store thread. On error (STORE_ECLOSED, STORE_EBUSY, STORE_EINVAL: req
 * already queued) nothing is taken, done is never called and
 * store_req_err(req) is the error too. Any thread. */
int store_submit(store_t *st, store_req_t *req, store_done_fn done, void *ctx);

/* Queues req and waits until it is completed; req stays the caller's.
 * Returns store_req_err(req). External thread (STORE_ECONTEXT inside a
 * process: a scheduler must not wait for a commit). An I/O loop thread
 * can call it too, but stalls its loop for a commit: use store_submit
 * there. */
int store_exec(store_t *st, store_req_t *req);

/* ---- The store process ----------------------------------------------------
 * The store's face in the supervision tree (design §1 "store"). Its init
 * arg is the store_t (borrowed: it must outlive the process; main opens
 * the store before the tree starts and closes it after the tree stops).
 * If the process crashes and is restarted, the store and its queue carry
 * on: requests it had accepted are still executed, but their callers
 * were answered with its exit reason (STORE_EUNAVAIL).
 *
 * Requests: messages with tag STORE_MSG_REQ and data = a store_req_t
 * (RT_OWN_RC), as a call (answered once completed) or a cast (never
 * answered: history writes the HistoryServer does not wait for).
 * Answers: RT_MSG_REPLY with tag STORE_MSG_REPLY, a = the result as
 * (uint64_t)(int64_t)err, data = the completed request (RT_OWN_RC), or
 * the runtime's error reply (timeout, exit). store_reply decodes both.
 *
 * Replies are sent by the store process itself (a store thread hands
 * it each completed request), because the runtime only clears a held
 * call when the process that held it replies. */
extern const rt_behaviour_t store_server;

enum store_msg_tag {
    STORE_MSG_REQ = 0x53540001u,  /* to the store process: data = store_req_t */
    STORE_MSG_REPLY,              /* its answer */
    STORE_MSG__DONE,              /* writer thread -> store process (internal) */
};

/* Process context. Sends req (taken, whatever the result) to the store
 * process as a call; the answer arrives as RT_MSG_REPLY with *ref (use
 * rt_await(*ref) to wait for it without handling anything else).
 * timeout_ms as rt_call (RT_DEFAULT_TIMEOUT, RT_INFINITY). Returns RT_OK
 * or rt_call's error. Note on timeouts: a write whose call timed out may
 * still commit afterwards; the caller cannot tell. */
int store_call(rt_pid_t server, store_req_t *req, int timeout_ms, uint64_t *ref);

/* Any thread. Sends req (taken) to the store process as a cast: executed
 * in order with everything else, answered to nobody. A failed write of a
 * cast is counted in store_stats_t.lost and logged. Returns RT_OK or
 * RT_ENOPROC / RT_ENOMEM (req released). */
int store_cast(rt_pid_t server, store_req_t *req);

/* Decodes an answer to store_call (reply borrowed). Returns the result:
 * STORE_OK, the request's error, STORE_ETIMEOUT or STORE_EUNAVAIL (the
 * runtime answered: *req is then NULL). *req (may be NULL) is the
 * completed request, borrowed from reply; take it with rt_msg_take(reply)
 * to keep it past the callback, then store_req_free it. */
int store_reply(const rt_msg_t *reply, store_req_t **req);

/* ---- Introspection and test hooks ---------------------------------------- */

typedef struct store_stats {
    uint64_t requests;        /* completed, all kinds */
    uint64_t writes;          /* write requests acknowledged as durable */
    uint64_t written;         /* rows written (writes after coalescing) */
    uint64_t coalesced;       /* put_states answered by a later one's write */
    uint64_t commits;         /* successful commits */
    uint64_t syncs;           /* syncs of the syncer (each covers every commit
                                 since the previous one); 0 without one, the
                                 commits then being synced themselves */
    uint64_t batches;         /* write transactions begun */
    uint64_t failed;          /* requests answered with an error */
    uint64_t lost;            /* writes nobody waited for (casts) that failed */
    uint64_t refused;         /* refused with STORE_EBUSY */
    uint64_t max_batch;       /* largest batch so far (requests) */
    uint64_t commit_ns;       /* total time spent in commit */
    uint64_t sync_ns;         /* total time spent in sync */
    bool failed_stop;         /* a sync failed: writes are refused (rule 5) */
    uint64_t backlog;         /* queued or executing now */
    uint64_t backlog_history; /* of which events and call records */
} store_stats_t;

/* A snapshot (counters are read without stopping the writer). Any thread. */
void store_get_stats(store_t *st, store_stats_t *out);
/* Queued or executing requests now (for /metrics). Any thread. */
uint64_t store_backlog(store_t *st);

/* Where the writer asks the fault hook. */
typedef enum store_fault_point {
    STORE_FP_BATCH = 1,   /* a batch was taken, before its transaction */
    STORE_FP_WRITE,       /* after a write of the batch was executed */
    STORE_FP_COMMIT,      /* before the commit */
    STORE_FP_SYNC,        /* before a sync (back ends with `sync` only): a
                             failure there is final (store.c rule 5) */
} store_fault_point_t;

/* Test hook. The writer thread calls hook(ctx, point, req) (req: the
 * write at STORE_FP_WRITE, else NULL; the syncer thread at STORE_FP_SYNC);
 * a negative store error makes that step fail as if the back end had (the
 * batch is rolled back and its writes answered with the error; at
 * STORE_FP_BATCH too; at STORE_FP_SYNC see rule 5). The hook may
 * block, e.g. to hold a batch open or to be killed at that point. NULL
 * removes it. Any thread; takes effect at the writer's next step. */
typedef int (*store_fault_hook_fn)(void *ctx, store_fault_point_t point, const store_req_t *req);
void store_set_fault_hook(store_t *st, store_fault_hook_fn hook, void *ctx);

/* Test hook: the next n steps at point (STORE_FP_WRITE, STORE_FP_COMMIT
 * or STORE_FP_SYNC) fail with err (STORE_EIO, STORE_EFULL, ...), as the
 * back end would on a full disk. Any thread. */
void store_fail_next(store_t *st, store_fault_point_t point, unsigned n, int err);

/* ---- Back ends ----------------------------------------------------------
 * What a database must provide. store.c owns the queue, the batching, the
 * coalescing, the fault hooks, JSON decoding of results and state
 * migration; a back end only runs statements. Every function except open,
 * sync and durable_commits runs on the writer thread only, never two at
 * once, so a back end needs one connection and no locking. Functions return STORE_OK or a store
 * error (mapping their own: disk full -> STORE_EFULL, other failures ->
 * STORE_EIO) and write the database's own message to stderr.
 *
 * Writes run between begin and commit (or rollback) and read the
 * request's inputs (the fields marked "in" in struct store_req). Reads run
 * outside a transaction and add their rows with store__add_room /
 * store__add_event / store__add_call, which copy what they are given. */
typedef struct store_backend {
    const char *name;
    /* Connects (creating the database under cfg->data_dir, which exists),
     * sets durability, runs schema migrations in one transaction. On
     * error nothing is left open. Called on the thread of store_open. */
    int (*open)(const store_config_t *cfg, void **be);
    void (*close)(void *be);

    int (*begin)(void *be);
    int (*commit)(void *be);     /* durable when it returns STORE_OK, unless
                                    durable_commits(be, false) was called */
    void (*rollback)(void *be);  /* of the open transaction; no-op if none */

    /* Optional, both or neither: commits that do not wait for the disk.
     * sync makes every transaction committed before it was called durable;
     * it runs on the store's syncer thread, possibly while the writer
     * thread runs the next transaction, so it may only flush (e.g.
     * fdatasync on a file descriptor of its own) and must not touch what
     * the other functions use. store_open calls sync once after open; if
     * that succeeds it starts the syncer and calls durable_commits(be,
     * false), else durable_commits(be, true) (before any request, on the
     * thread of store_open). */
    int (*sync)(void *be);
    void (*durable_commits)(void *be, bool on);

    int (*put_state)(void *be, const store_req_t *r, int64_t now_ms);
    int (*mark_ended)(void *be, const store_req_t *r, int64_t now_ms); /* ENOTFOUND */
    int (*append_event)(void *be, store_req_t *r);  /* sets r->seq */
    int (*put_call)(void *be, const store_req_t *r);

    int (*load_state)(void *be, store_req_t *r);    /* 0 or 1 row */
    int (*list_live)(void *be, store_req_t *r);
    int (*read_events)(void *be, store_req_t *r);   /* up to r->limit + 1 rows */
    int (*query_calls)(void *be, store_req_t *r);   /* up to r->limit rows */
} store_backend_t;

extern const store_backend_t store_sqlite_backend;

/* For back ends: add one result row to r (strings copied, JSON text
 * decoded; state migration happens after the back end returns). Return
 * STORE_OK, STORE_ENOMEM or STORE_ECORRUPT (event data / participants that
 * do not parse; a state that does not parse is kept as the room's err). */
int store__add_room(store_req_t *r, const char *id, const char *state, size_t len,
                    uint32_t stored_version, uint64_t version, int64_t updated_at, bool ended);
int store__add_event(store_req_t *r, uint64_t seq, int64_t at, const char *type,
                     const char *user, const char *data);
int store__add_call(store_req_t *r, const char *id, int64_t created_at, int64_t started_at,
                    int64_t ended_at, const char *participants, int64_t duration_ms);

/* The request. Users treat it as opaque (builders and accessors above);
 * back ends read the "in" fields and set `seq`. */
struct store_req {
    rt_rc_t rc;               /* one reference per owner; travels as RT_OWN_RC */
    store_op_t op;

    /* in (set by the builder, read-only afterwards) */
    char *room;               /* room id; call id for put_call */
    char *text;               /* put_state: state; append_event: data or NULL;
                                 put_call: participants (NUL-terminated) */
    size_t text_len;
    rt_buf_t *buf;            /* put_state_buf: the shared state (text points
                                 into it), else NULL */
    char *block;              /* append_event_dumped: room, type, user and text
                                 point into this one allocation, else NULL */
    char *type;               /* append_event */
    char *user;               /* append_event: NULL if none; query_calls:
                                 the filter, NULL for all */
    char **users;             /* put_call: the participants' ids */
    size_t nusers;
    uint64_t version;         /* put_state */
    uint32_t state_version;   /* put_state */
    bool ended;               /* put_state */
    int64_t at;               /* append_event: at; put_call: created_at */
    int64_t started_at, ended_at, duration_ms; /* put_call */
    uint64_t after;           /* read_events */
    uint32_t limit;           /* read_events, query_calls */

    /* out (set by the writer thread before completion) */
    int err;
    uint64_t seq;             /* append_event */
    uint64_t next;            /* read_events */
    bool coalesced;
    store_room_t *rooms;
    store_event_t *events;
    store_call_t *calls;
    size_t nrows, caprows;    /* of whichever of the three arrays is used */

    /* store-private */
    struct store_req *qnext;  /* queue link */
    store_done_fn done;
    void *done_ctx;
    rt_from_t from;           /* store_server: the caller to answer */
    rt_pid_t server;          /* store_server: the process that answers */
    int64_t super;            /* writer: index of the put that supersedes this one, or -1 */
    bool queued;
};

#endif /* ROOST_STORE_STORE_H */
