/*
 * store/sqlite.c — the SQLite back end of the durable store: one database
 * file, <data>/roost.db, in WAL mode with synchronous=FULL, one
 * connection used only by the store's writer thread (store.c rule 1),
 * every statement prepared once at open.
 *
 * Tables (database schema version 1; see `migrations` below):
 *   store_schema  the database schema version (one row)
 *   rooms         id -> latest state JSON, state_version, version,
 *                 updated_at, ended; a partial index on the live ones
 *   events        (room, seq) -> at, type, user, data; seq per room
 *   calls         id -> times, participants JSON array, duration
 *   call_users    (user, created_at, call_id): the participants index,
 *                 so "calls of a user, newest first" is one index range
 *
 * Event seqs. append_event needs the room's last seq. Asking SQLite for
 * it with every event (INSERT ... SELECT MAX(seq) + 1 ... RETURNING seq)
 * cost about three times a plain INSERT: a second index descent, and
 * RETURNING runs the insert through a temporary table. The writer
 * therefore keeps each room's last seq in memory (seq_cache below):
 * looked up in SQLite once per room, then counted up as events are
 * inserted. The cache only ever runs ahead inside the open transaction,
 * so a rollback empties it (the next event of each room asks SQLite
 * again), and it assumes what store.h already says: this connection is
 * the only writer of events.
 *
 * Checkpoints, off the writer's path. SQLite's automatic checkpoint runs
 * inside the COMMIT that takes the WAL past 1,000 frames: it reads every
 * frame back (pread), writes it into the database (pwrite), and fsyncs
 * the WAL and the database, all while the batch's requests wait for
 * their answers. Under a steady stream of room changes that was every
 * few commits, and the largest cost of a commit after its fsync. Here a
 * checkpointer thread with its own connection does it instead (PASSIVE:
 * it never blocks the writer), asked for by the writer's WAL hook every
 * cfg->checkpoint_frames frames (8,000 by default: 32 MB of WAL, in which
 * the same hot pages - every live room's row and the last page of its
 * events - come back many times, so a pass copies each once; at 1,000
 * frames the checkpointer copied nearly every frame and used ~12% of a
 * core in the durable bench, at 8,000 ~5%). One thing it cannot do alone: SQLite
 * starts writing the WAL from its beginning again only when a write
 * transaction begins while every frame has been checkpointed, which a
 * writer that commits without pause never lets happen; the WAL would
 * grow without bound. So once the WAL holds 2 x checkpoint_frames, the
 * checkpointer first catches up (more passes while the writer goes on,
 * until fewer than CATCH_UP_FRAMES frames are left), then asks the
 * writer to wait before its next BEGIN, checkpoints those last frames
 * (the pause is short: a few pages and two fsyncs of little), and lets
 * it go; that BEGIN restarts the WAL. Rules:
 *   C1. q->db is used by the writer thread only, ck.db by the
 *       checkpointer thread only (each connection by one thread).
 *   C2. ck.mu guards ck's flags; the writer never holds it across a
 *       statement, the checkpointer never across a checkpoint.
 *   C3. While ck.pause is set, no write transaction begins (sq_begin
 *       waits, at most PAUSE_MAX_MS); the checkpointer's second pass
 *       starts only once the writer is outside any transaction.
 * kill -9 at any point is SQLite's own business: a checkpoint is crash
 * safe whichever connection runs it.
 *
 * Commits and syncs (store.c "The syncer"). With synchronous=FULL SQLite
 * fsyncs the WAL inside every COMMIT, so the writer waited for the disk
 * before it could start the next batch. When the store runs a syncer,
 * the writer's connection uses synchronous=NORMAL instead, which in WAL
 * mode differs from FULL only by that one fsync at commit (SQLite still
 * syncs the WAL's header when it starts the file over, and checkpoints
 * sync both files), and sq_sync makes it up: fdatasync on a descriptor
 * of the WAL file opened here (the same inode SQLite writes; checked
 * before each sync, reopened if SQLite made a new file). A COMMIT's
 * frames are written before it returns, so a sync that starts after it
 * covers them. The store answers nothing before that sync returns.
 *
 * Why synchronous=FULL and not NORMAL in WAL mode: with NORMAL, SQLite
 * fsyncs the WAL only when it checkpoints, not at each commit. A
 * committed transaction then survives a crash of the process (kill -9:
 * its pages are in the kernel's cache) but can be lost by a power cut or
 * a kernel crash. roost answers "ok" to a client only once the change is
 * durable, so every commit must reach the disk: FULL fsyncs the WAL at
 * every commit. The cost is one fsync per commit, which group commit
 * (store.c) shares among every request of a batch.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/store.h"

/* Database schema migrations: entry i takes the schema from version i to
 * i + 1. Append, never edit: a database records how far it got. */
static const char *const migrations[] = {
    /* 0 -> 1: the first schema */
    "CREATE TABLE rooms ("
    "  id TEXT PRIMARY KEY,"
    "  state TEXT NOT NULL,"
    "  state_version INTEGER NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  ended INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX rooms_live ON rooms(id) WHERE ended = 0;"
    "CREATE TABLE events ("
    "  room TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  at INTEGER NOT NULL,"
    "  type TEXT NOT NULL,"
    "  user TEXT,"
    "  data TEXT,"
    "  PRIMARY KEY (room, seq)) WITHOUT ROWID;"
    "CREATE TABLE calls ("
    "  id TEXT PRIMARY KEY,"
    "  created_at INTEGER NOT NULL,"
    "  started_at INTEGER,"
    "  ended_at INTEGER,"
    "  participants TEXT NOT NULL,"
    "  duration_ms INTEGER NOT NULL);"
    "CREATE INDEX calls_newest ON calls(created_at DESC, id DESC);"
    "CREATE TABLE call_users ("
    "  user TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  call_id TEXT NOT NULL,"
    "  PRIMARY KEY (user, created_at, call_id)) WITHOUT ROWID;"
    "CREATE INDEX call_users_call ON call_users(call_id);",
};
#define SCHEMA_VERSION ((int64_t)(sizeof migrations / sizeof migrations[0]))

/* How long a writer waits for the checkpointer's restart pass before
 * it goes on without the restart (C3): a bound in case the disk stalls,
 * not a timing the design relies on. */
#define PAUSE_MAX_MS 2000
/* Before the restart pause the checkpointer runs up to this many more
 * passes while the writer goes on, until fewer than CATCH_UP_FRAMES
 * frames are left for the pass made during the pause. */
#define CATCH_UP_PASSES 4
#define CATCH_UP_FRAMES 256
/* Rooms whose last event seq the writer keeps (see "Event seqs"). Past
 * this the table is emptied and fills again from SQLite: a bound on
 * memory, not an eviction policy (rooms that ended never come back). */
#define SEQ_CACHE_MAX 65536

enum stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_UPDATE_STATE,
    S_PUT_STATE,
    S_MARK_ENDED,
    S_LAST_SEQ,
    S_APPEND_EVENT,
    S_PUT_CALL,
    S_DEL_CALL_USERS,
    S_ADD_CALL_USER,
    S_LOAD_STATE,
    S_LIST_LIVE,
    S_READ_EVENTS,
    S_CALLS_ALL,
    S_CALLS_USER,
    S__COUNT
};

static const char *const sql[S__COUNT] = {
    /* IMMEDIATE takes the write lock at once: a transaction never has to
     * upgrade a read lock, so another connection (an operator's sqlite3
     * shell) can only make it wait (busy timeout), never deadlock it. */
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    /* The common case of put_state: the room exists and its ended flag
     * stays. Not assigning `ended` keeps SQLite from rewriting the
     * room's entry in the partial index rooms_live (whose WHERE reads
     * it), about a third of the UPSERT's cost. No row changed: the room
     * is new or its flag changes, and S_PUT_STATE does the whole thing. */
    [S_UPDATE_STATE] =
        "UPDATE rooms SET state = ?2, state_version = ?3, version = ?4, updated_at = ?5"
        " WHERE id = ?1 AND ended = ?6",
    [S_PUT_STATE] =
        "INSERT INTO rooms (id, state, state_version, version, updated_at, ended)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
        " state_version = excluded.state_version, version = excluded.version,"
        " updated_at = excluded.updated_at, ended = excluded.ended",
    [S_MARK_ENDED] = "UPDATE rooms SET ended = 1, updated_at = ?2 WHERE id = ?1",
    /* seq = the room's last + 1, counted inside the transaction by the
     * only writer (seq_cache), so it is gapless and a rolled-back batch
     * consumes none. */
    [S_LAST_SEQ] = "SELECT MAX(seq) FROM events WHERE room = ?1",
    [S_APPEND_EVENT] =
        "INSERT INTO events (room, seq, at, type, user, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_PUT_CALL] =
        "INSERT INTO calls (id, created_at, started_at, ended_at, participants, duration_ms)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        " ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at,"
        " started_at = excluded.started_at, ended_at = excluded.ended_at,"
        " participants = excluded.participants, duration_ms = excluded.duration_ms",
    [S_DEL_CALL_USERS] = "DELETE FROM call_users WHERE call_id = ?1",
    [S_ADD_CALL_USER] =
        "INSERT OR IGNORE INTO call_users (user, created_at, call_id) VALUES (?1, ?2, ?3)",
    [S_LOAD_STATE] =
        "SELECT id, state, state_version, version, updated_at, ended FROM rooms WHERE id = ?1",
    [S_LIST_LIVE] =
        "SELECT id, state, state_version, version, updated_at, ended FROM rooms"
        " WHERE ended = 0 ORDER BY id",
    [S_READ_EVENTS] =
        "SELECT seq, at, type, user, data FROM events WHERE room = ?1 AND seq > ?2"
        " ORDER BY seq LIMIT ?3",
    [S_CALLS_ALL] =
        "SELECT id, created_at, started_at, ended_at, participants, duration_ms FROM calls"
        " ORDER BY created_at DESC, id DESC LIMIT ?1",
    [S_CALLS_USER] =
        "SELECT c.id, c.created_at, c.started_at, c.ended_at, c.participants, c.duration_ms"
        " FROM call_users u JOIN calls c ON c.id = u.call_id WHERE u.user = ?1"
        " ORDER BY u.created_at DESC, u.call_id DESC LIMIT ?2",
};

/* A room's last event seq, as counted by the writer. */
typedef struct seq_ent {
    char *room;               /* NULL: empty slot */
    uint64_t hash;
    uint64_t seq;
} seq_ent_t;

/* The checkpointer (see "Checkpoints"). */
typedef struct ckpt {
    sqlite3 *db;              /* its own connection (C1) */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;       /* guards what follows (C2) */
    pthread_cond_t cv;        /* both sides wait here */
    bool want;                /* a pass is asked for */
    bool pause;               /* the writer must not begin (C3) */
    bool in_txn;              /* the writer is inside a transaction */
    bool stop;
    /* Writer thread only: */
    uint32_t every;           /* a pass every this many frames */
    uint32_t next;            /* ask again when the WAL reaches this */
    uint32_t frames;          /* the WAL's frames after the last commit */
    /* Statistics, any thread (relaxed). */
    _Atomic uint64_t passes, restarts;
} ckpt_t;

typedef struct sq {
    sqlite3 *db;
    sqlite3_stmt *st[S__COUNT];
    ckpt_t ck;
    /* sq_sync (syncer thread only, after open): the WAL file. */
    char wal_path[4100];
    int wal_fd;               /* -1: none */
    dev_t wal_dev;
    ino_t wal_ino;
    /* seq_cache: open addressing, linear probing, power-of-two size,
     * never more than half full. Writer thread only. */
    seq_ent_t *seqs;
    size_t nseqs, capseqs;
} sq_t;

/* Maps an SQLite result to a store error and says what happened. */
static int fail(sqlite3 *db, int rc, const char *what)
{
    fprintf(stderr, "roost store (sqlite): %s: %s (%d)\n", what,
            db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), rc);
    switch (rc & 0xff) {
    case SQLITE_FULL: return STORE_EFULL;
    case SQLITE_NOMEM: return STORE_ENOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return STORE_ECORRUPT;
    default: return STORE_EIO;
    }
}

/* Runs a statement that returns no rows to the end, then resets it (the
 * bound texts are the request's, borrowed only for this call). */
static int run(sq_t *q, enum stmt_id id, const char *what)
{
    sqlite3_stmt *s = q->st[id];
    int rc = sqlite3_step(s);
    int err = rc == SQLITE_DONE || rc == SQLITE_ROW ? STORE_OK : fail(q->db, rc, what);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return err;
}

/* Runs a whole SQL script (only at open). */
static int exec_sql(sqlite3 *db, const char *text, const char *what)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, text, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return STORE_OK;
    fprintf(stderr, "roost store (sqlite): %s: %s\n", what, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return (rc & 0xff) == SQLITE_FULL ? STORE_EFULL : STORE_EIO;
}

/* One text value of a single-row query, copied to buf. */
static int query_text(sqlite3 *db, const char *text, char *buf, size_t cap)
{
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(db, text, -1, &s, NULL);
    if (rc != SQLITE_OK)
        return fail(db, rc, text);
    rc = sqlite3_step(s);
    int err = STORE_OK;
    if (rc == SQLITE_ROW)
        snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(s, 0));
    else
        err = rc == SQLITE_DONE ? STORE_EIO : fail(db, rc, text);
    sqlite3_finalize(s);
    return err;
}

/* Brings the database schema to SCHEMA_VERSION, in one transaction: a
 * crash halfway leaves the old schema, never half of a new one. */
static int migrate(sqlite3 *db)
{
    int err = exec_sql(db,
                       "BEGIN IMMEDIATE;"
                       "CREATE TABLE IF NOT EXISTS store_schema ("
                       "  id INTEGER PRIMARY KEY CHECK (id = 1),"
                       "  version INTEGER NOT NULL);"
                       "INSERT OR IGNORE INTO store_schema (id, version) VALUES (1, 0);",
                       "creating the schema table");
    if (err)
        goto out;
    char buf[32];
    if ((err = query_text(db, "SELECT version FROM store_schema WHERE id = 1", buf, sizeof buf)))
        goto out;
    int64_t have = strtoll(buf, NULL, 10);
    if (have > SCHEMA_VERSION || have < 0) {
        fprintf(stderr,
                "roost store (sqlite): database schema version %lld is newer than this "
                "binary's %lld: refusing to open it\n",
                (long long)have, (long long)SCHEMA_VERSION);
        err = STORE_EVERSION;
        goto out;
    }
    for (int64_t v = have; v < SCHEMA_VERSION; v++)
        if ((err = exec_sql(db, migrations[v], "migrating the database schema")))
            goto out;
    if (have < SCHEMA_VERSION) {
        char up[96];
        snprintf(up, sizeof up, "UPDATE store_schema SET version = %lld WHERE id = 1",
                 (long long)SCHEMA_VERSION);
        if ((err = exec_sql(db, up, "recording the schema version")))
            goto out;
    }
    err = exec_sql(db, "COMMIT", "committing the schema");
out:
    if (err && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return err;
}

/* ---- The event seq cache (see "Event seqs" at the top) --------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Forgets every room: after a rollback, or when the table is full. */
static void seq_cache_clear(sq_t *q)
{
    for (size_t i = 0; i < q->capseqs; i++) {
        free(q->seqs[i].room);
        q->seqs[i].room = NULL;
    }
    q->nseqs = 0;
}

/* The slot of room: its entry, or the empty slot where it would go. */
static seq_ent_t *seq_slot(sq_t *q, const char *room, uint64_t h)
{
    size_t mask = q->capseqs - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        seq_ent_t *e = &q->seqs[i];
        if (!e->room || (e->hash == h && strcmp(e->room, room) == 0))
            return e;
    }
}

/* Makes room for one more entry; false on ENOMEM (the caller then
 * simply does not cache). */
static bool seq_cache_reserve(sq_t *q)
{
    if (q->nseqs >= SEQ_CACHE_MAX)
        seq_cache_clear(q);
    if (q->capseqs && (q->nseqs + 1) * 2 <= q->capseqs)
        return true;
    size_t cap = q->capseqs ? q->capseqs * 2 : 256;
    seq_ent_t *n = calloc(cap, sizeof *n);
    if (!n)
        return false;
    seq_ent_t *old = q->seqs;
    size_t oldcap = q->capseqs;
    q->seqs = n;
    q->capseqs = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].room)
            *seq_slot(q, old[i].room, old[i].hash) = old[i];
    free(old);
    return true;
}

/* ---- The checkpointer (see "Checkpoints" at the top) ------------------------- */

/* One PASSIVE checkpoint on the checkpointer's connection; the WAL's
 * frames and how many of them are now in the database. */
static int ck_pass(ckpt_t *ck, int *log, int *done)
{
    int rc = sqlite3_wal_checkpoint_v2(ck->db, "main", SQLITE_CHECKPOINT_PASSIVE, log, done);
    atomic_fetch_add_explicit(&ck->passes, 1, memory_order_relaxed);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        fprintf(stderr, "roost store (sqlite): checkpoint: %s (%d)\n", sqlite3_errmsg(ck->db),
                rc);
    return rc;
}

static void *ck_main(void *arg)
{
    ckpt_t *ck = arg;
    pthread_mutex_lock(&ck->mu);
    for (;;) {
        while (!ck->want && !ck->stop)
            pthread_cond_wait(&ck->cv, &ck->mu);
        if (ck->stop)
            break;
        ck->want = false;
        uint32_t restart_at = 2 * ck->every;
        pthread_mutex_unlock(&ck->mu);
        /* While the writer goes on (PASSIVE never blocks it). */
        int log = 0, done = 0;
        int rc = ck_pass(ck, &log, &done);
        /* Before holding the writer, catch up with what it committed
         * during the pass (a few more passes while it goes on): the
         * pause is then only the last few frames and two short fsyncs. */
        for (int i = 0; i < CATCH_UP_PASSES && rc == SQLITE_OK &&
                        (uint32_t)log >= restart_at && log - done > CATCH_UP_FRAMES;
             i++)
            rc = ck_pass(ck, &log, &done);
        pthread_mutex_lock(&ck->mu);
        if (rc != SQLITE_OK || (uint32_t)log < restart_at || ck->stop)
            continue;
        /* The WAL is long: hold the writer between two transactions
         * (C3), checkpoint the rest, so its next BEGIN restarts it. */
        ck->pause = true;
        while (ck->in_txn && !ck->stop)
            pthread_cond_wait(&ck->cv, &ck->mu);
        pthread_mutex_unlock(&ck->mu);
        rc = ck_pass(ck, &log, &done);
        if (rc == SQLITE_OK && log == done)
            atomic_fetch_add_explicit(&ck->restarts, 1, memory_order_relaxed);
        pthread_mutex_lock(&ck->mu);
        ck->pause = false;
        pthread_cond_broadcast(&ck->cv);
    }
    pthread_mutex_unlock(&ck->mu);
    return NULL;
}

/* SQLite calls this on the writer's connection after every commit with
 * the number of frames in the WAL. Writer thread. */
static int ck_wal_hook(void *ctx, sqlite3 *db, const char *name, int frames)
{
    ckpt_t *ck = ctx;
    uint32_t n = frames > 0 ? (uint32_t)frames : 0;
    if (n < ck->frames)
        ck->next = ck->every; /* the WAL was restarted */
    ck->frames = n;
    if (n >= ck->next) {
        ck->next = n + ck->every;
        pthread_mutex_lock(&ck->mu);
        ck->want = true;
        pthread_cond_broadcast(&ck->cv);
        pthread_mutex_unlock(&ck->mu);
    }
    return SQLITE_OK;
}

/* Opens the checkpointer's connection and starts its thread. On failure
 * the writer's connection keeps SQLite's automatic checkpoints. */
static void ck_start(sq_t *q, const char *path, const store_config_t *cfg)
{
    ckpt_t *ck = &q->ck;
    ck->every = cfg->checkpoint_frames;
    ck->next = ck->every;
    if (sqlite3_open_v2(path, &ck->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        exec_sql(ck->db, "PRAGMA synchronous=FULL", "checkpointer: synchronous=FULL") ||
        exec_sql(ck->db, "PRAGMA cache_size=16", "checkpointer: cache_size") ||
        /* the writer's connection, not this one, decides when */
        sqlite3_wal_autocheckpoint(ck->db, 0) != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(ck->db, cfg->busy_timeout_ms);
    pthread_mutex_init(&ck->mu, NULL);
    pthread_cond_init(&ck->cv, NULL);
    if (pthread_create(&ck->thread, NULL, ck_main, ck) != 0) {
        pthread_mutex_destroy(&ck->mu);
        pthread_cond_destroy(&ck->cv);
        goto fail;
    }
    pthread_setname_np(ck->thread, "roost-ckpt");
    ck->started = true;
    /* Replaces SQLite's automatic checkpoint on the writer's connection. */
    sqlite3_wal_hook(q->db, ck_wal_hook, ck);
    return;
fail:
    fprintf(stderr, "roost store (sqlite): no checkpointer thread; the writer checkpoints itself\n");
    sqlite3_close(ck->db);
    ck->db = NULL;
}

static void ck_stop(ckpt_t *ck)
{
    if (ck->started) {
        pthread_mutex_lock(&ck->mu);
        ck->stop = true;
        pthread_cond_broadcast(&ck->cv);
        pthread_mutex_unlock(&ck->mu);
        pthread_join(ck->thread, NULL);
        pthread_mutex_destroy(&ck->mu);
        pthread_cond_destroy(&ck->cv);
        ck->started = false;
    }
    /* Closed before the writer's connection, so that one is the last and
     * checkpoints and removes the WAL as it closes. */
    sqlite3_close(ck->db);
    ck->db = NULL;
}

/* The writer enters or leaves a transaction (C3). */
static void ck_enter(ckpt_t *ck)
{
    if (!ck->started)
        return;
    pthread_mutex_lock(&ck->mu);
    if (ck->pause) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += PAUSE_MAX_MS / 1000;
        until.tv_nsec += (long)(PAUSE_MAX_MS % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (ck->pause && !ck->stop)
            if (pthread_cond_timedwait(&ck->cv, &ck->mu, &until) == ETIMEDOUT)
                break;
    }
    ck->in_txn = true;
    pthread_mutex_unlock(&ck->mu);
}

static void ck_leave(ckpt_t *ck)
{
    if (!ck->started)
        return;
    pthread_mutex_lock(&ck->mu);
    ck->in_txn = false;
    if (ck->pause)
        pthread_cond_broadcast(&ck->cv);
    pthread_mutex_unlock(&ck->mu);
}

/* ---- Syncs (see "Commits and syncs" at the top) --------------------------------- */

/* (Re)opens the WAL file for sq_sync. */
static int wal_open(sq_t *q)
{
    if (q->wal_fd >= 0)
        close(q->wal_fd);
    q->wal_fd = open(q->wal_path, O_RDWR | O_CLOEXEC);
    struct stat sb;
    if (q->wal_fd < 0 || fstat(q->wal_fd, &sb) != 0) {
        fprintf(stderr, "roost store (sqlite): %s: %s\n", q->wal_path, strerror(errno));
        if (q->wal_fd >= 0)
            close(q->wal_fd);
        q->wal_fd = -1;
        return STORE_EIO;
    }
    q->wal_dev = sb.st_dev;
    q->wal_ino = sb.st_ino;
    return STORE_OK;
}

static int sq_sync(void *be)
{
    sq_t *q = be;
    struct stat sb;
    /* SQLite keeps its WAL file while a connection is open (it removes it
     * only when the last one closes): a different file here would be a
     * bug, but syncing the wrong file would lose acknowledged commits
     * without a sound, so look before every sync. */
    if (q->wal_fd < 0 || stat(q->wal_path, &sb) != 0 || sb.st_ino != q->wal_ino ||
        sb.st_dev != q->wal_dev) {
        int err = wal_open(q);
        if (err)
            return err;
    }
    if (fdatasync(q->wal_fd) != 0) {
        int e = errno;
        fprintf(stderr, "roost store (sqlite): fdatasync %s: %s\n", q->wal_path, strerror(e));
        return e == ENOSPC || e == EDQUOT ? STORE_EFULL : STORE_EIO;
    }
    return STORE_OK;
}

static void sq_durable_commits(void *be, bool on)
{
    sq_t *q = be;
    if (exec_sql(q->db, on ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                 "setting synchronous") != STORE_OK && !on)
        fprintf(stderr, "roost store (sqlite): commits stay synchronous=FULL\n");
}

static void sq_close(void *be)
{
    sq_t *q = be;
    if (!q)
        return;
    if (q->wal_fd >= 0)
        close(q->wal_fd);
    ck_stop(&q->ck);
    seq_cache_clear(q);
    free(q->seqs);
    for (int i = 0; i < S__COUNT; i++)
        sqlite3_finalize(q->st[i]);
    /* Every statement is finalized, so close cannot be refused as busy;
     * the last connection checkpoints the WAL into the database here. */
    int rc = sqlite3_close(q->db);
    if (rc != SQLITE_OK)
        fprintf(stderr, "roost store (sqlite): close: %s\n", sqlite3_errstr(rc));
    free(q);
}

static int sq_open(const store_config_t *cfg, void **out)
{
    if (!sqlite3_threadsafe()) {
        fprintf(stderr, "roost store (sqlite): the SQLite library is built single-threaded\n");
        return STORE_EBACKEND;
    }
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/roost.db", cfg->data_dir) >= sizeof path)
        return STORE_EINVAL;
    sq_t *q = calloc(1, sizeof *q);
    if (!q)
        return STORE_ENOMEM;
    q->wal_fd = -1;
    /* NOMUTEX: the connection is used by one thread at a time (opened
     * here, then only by the writer thread), so SQLite's own locking is
     * not needed. */
    int rc = sqlite3_open_v2(path, &q->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    int err = STORE_OK;
    if (rc != SQLITE_OK) {
        err = fail(q->db, rc, path);
        err = err == STORE_EIO ? STORE_EBACKEND : err;
        goto fail;
    }
    sqlite3_extended_result_codes(q->db, 1);
    sqlite3_busy_timeout(q->db, cfg->busy_timeout_ms);
    char mode[16];
    if ((err = query_text(q->db, "PRAGMA journal_mode=WAL", mode, sizeof mode)))
        goto fail;
    if (strcmp(mode, "wal") != 0) {
        fprintf(stderr, "roost store (sqlite): %s: WAL mode refused (journal_mode=%s)\n", path,
                mode);
        err = STORE_EBACKEND;
        goto fail;
    }
    /* See the top of this file: FULL, because an acknowledged change must
     * survive a power cut, not only a crash of the process. */
    if ((err = exec_sql(q->db, "PRAGMA synchronous=FULL", "setting synchronous=FULL")))
        goto fail;
    /* The page cache (cfg->cache_kib; the PRAGMA takes KiB as a negative
     * number). SQLite's default, 2 MiB, is smaller than what a busy batch
     * dirties with 1,000 live rooms (each room's row and the last page of
     * its events): SQLite then spills dirty pages into the WAL in the
     * middle of the transaction and reads pages back with pread. */
    char cache[64];
    snprintf(cache, sizeof cache, "PRAGMA cache_size=-%u", (unsigned)cfg->cache_kib);
    if ((err = exec_sql(q->db, cache, "setting the page cache size")))
        goto fail;
    if ((err = migrate(q->db)))
        goto fail;
    for (int i = 0; i < S__COUNT; i++) {
        rc = sqlite3_prepare_v3(q->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i], NULL);
        if (rc != SQLITE_OK) {
            err = fail(q->db, rc, sql[i]);
            goto fail;
        }
    }
    ck_start(q, path, cfg);
    /* The WAL file exists: migrate() wrote through it. */
    snprintf(q->wal_path, sizeof q->wal_path, "%s-wal", path);
    wal_open(q); /* on failure sq_sync fails too, and commits stay FULL */
    *out = q;
    return STORE_OK;
fail:
    if (q->db) {
        for (int i = 0; i < S__COUNT; i++)
            sqlite3_finalize(q->st[i]);
        sqlite3_close(q->db);
    }
    free(q);
    return err;
}

/* ---- Transactions ---------------------------------------------------------- */

static int sq_begin(void *be)
{
    sq_t *q = be;
    ck_enter(&q->ck);
    int err = run(q, S_BEGIN, "begin");
    if (err)
        ck_leave(&q->ck);
    return err;
}

static int sq_commit(void *be)
{
    sq_t *q = be;
    int err = run(q, S_COMMIT, "commit");
    /* A failed COMMIT (SQLITE_FULL, SQLITE_IOERR) may leave the
     * transaction open; store.c rolls it back (and that ends it). */
    if (!err)
        ck_leave(&q->ck);
    return err;
}

static void sq_rollback(void *be)
{
    sq_t *q = be;
    /* Seqs counted in the transaction are undone with it, whether we or
     * SQLite roll it back. */
    seq_cache_clear(q);
    if (!sqlite3_get_autocommit(q->db)) /* else SQLite rolled it back itself */
        run(q, S_ROLLBACK, "rollback");
    ck_leave(&q->ck);
}

/* ---- Writes ----------------------------------------------------------------- */

static int sq_put_state(void *be, const store_req_t *r, int64_t now_ms)
{
    sq_t *q = be;
    sqlite3_stmt *s = q->st[S_UPDATE_STATE];
    sqlite3_bind_text(s, 1, r->room, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, r->text, (int)r->text_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, r->state_version);
    sqlite3_bind_int64(s, 4, (int64_t)r->version);
    sqlite3_bind_int64(s, 5, now_ms);
    sqlite3_bind_int(s, 6, r->ended);
    int err = run(q, S_UPDATE_STATE, "writing a room state");
    if (err || sqlite3_changes(q->db) == 1)
        return err;
    s = q->st[S_PUT_STATE];
    sqlite3_bind_text(s, 1, r->room, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, r->text, (int)r->text_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, r->state_version);
    sqlite3_bind_int64(s, 4, (int64_t)r->version);
    sqlite3_bind_int64(s, 5, now_ms);
    sqlite3_bind_int(s, 6, r->ended);
    return run(q, S_PUT_STATE, "writing a room state");
}

static int sq_mark_ended(void *be, const store_req_t *r, int64_t now_ms)
{
    sq_t *q = be;
    sqlite3_stmt *s = q->st[S_MARK_ENDED];
    sqlite3_bind_text(s, 1, r->room, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now_ms);
    int err = run(q, S_MARK_ENDED, "marking a room ended");
    if (!err && sqlite3_changes(q->db) == 0)
        err = STORE_ENOTFOUND;
    return err;
}

/* The room's last seq in SQLite (0: no events). */
static int last_seq(sq_t *q, const char *room, uint64_t *seq)
{
    sqlite3_stmt *s = q->st[S_LAST_SEQ];
    sqlite3_bind_text(s, 1, room, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int err = STORE_OK;
    if (rc == SQLITE_ROW)
        *seq = (uint64_t)sqlite3_column_int64(s, 0);  /* NULL (no events) reads as 0 */
    else
        err = fail(q->db, rc, "reading a room's last event");
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return err;
}

static int sq_append_event(void *be, store_req_t *r)
{
    sq_t *q = be;
    uint64_t h = hash_str(r->room);
    seq_ent_t *e = q->capseqs ? seq_slot(q, r->room, h) : NULL;
    uint64_t last = 0;
    if (e && e->room) {
        last = e->seq;
    } else {
        int err = last_seq(q, r->room, &last);
        if (err)
            return err;
        e = NULL;
    }
    sqlite3_stmt *s = q->st[S_APPEND_EVENT];
    sqlite3_bind_text(s, 1, r->room, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (int64_t)(last + 1));
    sqlite3_bind_int64(s, 3, r->at);
    sqlite3_bind_text(s, 4, r->type, -1, SQLITE_STATIC);
    if (r->user)
        sqlite3_bind_text(s, 5, r->user, -1, SQLITE_STATIC);
    if (r->text)
        sqlite3_bind_text(s, 6, r->text, (int)r->text_len, SQLITE_STATIC);
    int err = run(q, S_APPEND_EVENT, "appending an event");
    if (err)
        return err;  /* the batch is rolled back, which empties the cache */
    r->seq = last + 1;
    if (e) {
        e->seq = r->seq;
    } else if (seq_cache_reserve(q)) {
        char *room = strdup(r->room);
        if (room) { /* else: not cached; SQLite is asked again next time */
            e = seq_slot(q, room, h);
            *e = (seq_ent_t){.room = room, .hash = h, .seq = r->seq};
            q->nseqs++;
        }
    }
    return STORE_OK;
}

static int sq_put_call(void *be, const store_req_t *r)
{
    sq_t *q = be;
    sqlite3_stmt *s = q->st[S_PUT_CALL];
    sqlite3_bind_text(s, 1, r->room, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, r->at);
    if (r->started_at > 0)
        sqlite3_bind_int64(s, 3, r->started_at);
    if (r->ended_at > 0)
        sqlite3_bind_int64(s, 4, r->ended_at);
    sqlite3_bind_text(s, 5, r->text, (int)r->text_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, r->duration_ms);
    int err = run(q, S_PUT_CALL, "writing a call record");
    if (err)
        return err;
    /* A rewritten record may have other participants or another
     * created_at: rebuild its index rows. */
    sqlite3_bind_text(q->st[S_DEL_CALL_USERS], 1, r->room, -1, SQLITE_STATIC);
    if ((err = run(q, S_DEL_CALL_USERS, "indexing a call record")))
        return err;
    s = q->st[S_ADD_CALL_USER];
    for (size_t i = 0; i < r->nusers && !err; i++) {
        sqlite3_bind_text(s, 1, r->users[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, r->at);
        sqlite3_bind_text(s, 3, r->room, -1, SQLITE_STATIC);
        err = run(q, S_ADD_CALL_USER, "indexing a call record");
    }
    return err;
}

/* ---- Reads ------------------------------------------------------------------- */

/* Steps a bound query to its end, handing each row to add; resets it. */
static int rows(sq_t *q, enum stmt_id id, int (*add)(store_req_t *r, sqlite3_stmt *s),
                store_req_t *r, const char *what)
{
    sqlite3_stmt *s = q->st[id];
    int rc = SQLITE_DONE, err = STORE_OK;
    while (!err && (rc = sqlite3_step(s)) == SQLITE_ROW)
        err = add(r, s);
    if (!err && rc != SQLITE_DONE)
        err = fail(q->db, rc, what);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return err;
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(s, i);
}

static int add_room(store_req_t *r, sqlite3_stmt *s)
{
    const char *state = col_text(s, 1);
    int len = sqlite3_column_bytes(s, 1);
    if (!col_text(s, 0) || !state)
        return STORE_ENOMEM;  /* NOT NULL columns: NULL here means SQLite's malloc failed */
    int64_t sv = sqlite3_column_int64(s, 2);
    if (sv < 0 || sv > UINT32_MAX)
        return STORE_ECORRUPT;
    return store__add_room(r, col_text(s, 0), state, (size_t)len, (uint32_t)sv,
                           (uint64_t)sqlite3_column_int64(s, 3), sqlite3_column_int64(s, 4),
                           sqlite3_column_int(s, 5) != 0);
}

static int add_event(store_req_t *r, sqlite3_stmt *s)
{
    if (!col_text(s, 2))
        return STORE_ENOMEM;
    return store__add_event(r, (uint64_t)sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
                            col_text(s, 2), col_text(s, 3), col_text(s, 4));
}

static int add_call(store_req_t *r, sqlite3_stmt *s)
{
    if (!col_text(s, 0) || !col_text(s, 4))
        return STORE_ENOMEM;
    return store__add_call(r, col_text(s, 0), sqlite3_column_int64(s, 1),
                           sqlite3_column_int64(s, 2), sqlite3_column_int64(s, 3),
                           col_text(s, 4), sqlite3_column_int64(s, 5));
}

static int sq_load_state(void *be, store_req_t *r)
{
    sq_t *q = be;
    sqlite3_bind_text(q->st[S_LOAD_STATE], 1, r->room, -1, SQLITE_STATIC);
    return rows(q, S_LOAD_STATE, add_room, r, "loading a room state");
}

static int sq_list_live(void *be, store_req_t *r)
{
    return rows(be, S_LIST_LIVE, add_room, r, "listing live rooms");
}

static int sq_read_events(void *be, store_req_t *r)
{
    sq_t *q = be;
    sqlite3_stmt *s = q->st[S_READ_EVENTS];
    sqlite3_bind_text(s, 1, r->room, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (int64_t)r->after);
    sqlite3_bind_int64(s, 3, (int64_t)r->limit + 1);
    return rows(q, S_READ_EVENTS, add_event, r, "reading events");
}

static int sq_query_calls(void *be, store_req_t *r)
{
    sq_t *q = be;
    if (r->user) {
        sqlite3_stmt *s = q->st[S_CALLS_USER];
        sqlite3_bind_text(s, 1, r->user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, r->limit);
        return rows(q, S_CALLS_USER, add_call, r, "querying calls");
    }
    sqlite3_bind_int64(q->st[S_CALLS_ALL], 1, r->limit);
    return rows(q, S_CALLS_ALL, add_call, r, "querying calls");
}

const store_backend_t store_sqlite_backend = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .sync = sq_sync,
    .durable_commits = sq_durable_commits,
    .put_state = sq_put_state,
    .mark_ended = sq_mark_ended,
    .append_event = sq_append_event,
    .put_call = sq_put_call,
    .load_state = sq_load_state,
    .list_live = sq_list_live,
    .read_events = sq_read_events,
    .query_calls = sq_query_calls,
};
