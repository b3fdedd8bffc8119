/*
 * store/store.c — the generic part of the durable store: requests, the
 * queue, the writer thread and its group commit, coalescing, fault
 * hooks, decoding and migrating results, and the store process that
 * turns runtime messages into requests and completions into replies.
 * The database itself is behind store_backend_t (sqlite.c).
 *
 * Rules this file relies on
 *   1. Only the writer thread calls the back end (after open), so the back
 *      end needs no locking and sees one statement at a time.
 *   2. A request belongs to exactly one party at a time: its builder's
 *      caller, then the queue (st->mu), then the writer thread, then its
 *      done callback. Handing it over goes through st->mu or a runtime
 *      message, which order the memory accesses.
 *   3. Requests are completed in queue order, after their batch's commit
 *      and, with a syncer, after a sync that began after that commit; so
 *      acknowledgements of one room come in the order its writes were
 *      queued, and a write (or a read that may have seen one) is never
 *      answered before it is durable.
 *   4. A write batch is all or nothing: any failure rolls the transaction
 *      back and every write of the batch gets that error.
 *   5. A failed sync is final (fail-stop): the transactions it covered
 *      are committed in the database but maybe not on the disk, and a
 *      later sync cannot be trusted to make up for it (the kernel may
 *      have dropped the pages it failed to write). Everything waiting for
 *      it is answered with the error, and every later write is refused
 *      with STORE_EIO until the store is opened again.
 *
 * The syncer (when the back end has `sync`). Committing and making durable
 * are two steps: the back end commits without waiting for the disk, the
 * writer hands the batch to the syncer thread and goes on with the next
 * batch while the syncer waits for the disk (one sync for every batch
 * committed since the last one) and then answers. The fsync of one batch
 * overlaps the statements and WAL writes of the next instead of adding
 * to them: on the development VM an fsync took 2-8 ms, as long as
 * executing a whole batch of several hundred writes.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store/store.h"

/* Ids (room, call, user) longer than this are refused: they are keys,
 * not payloads. */
#define MAX_ID 256
/* Stored JSON texts larger than this are refused (SQLite's own limit is
 * 1 GB; a room state this big is a bug, better refused than stored). */
#define MAX_TEXT (16u << 20)
#define DEFAULT_LIMIT 100
#define MAX_LIMIT 1000

struct store {
    const store_backend_t *be_ops;  /* immutable after open */
    void *be;                       /* writer thread only (rule 1) */
    uint32_t max_batch, max_backlog;

    /* The queue: guarded by mu. */
    pthread_mutex_t mu;
    pthread_cond_t wake;            /* writer waits here for work */
    store_req_t *head, *tail;
    bool closing;
    bool writer_idle;               /* the writer is (about to be) waiting */
    pthread_t writer;

    /* Writer thread only: the batch being run and the coalescing table. */
    store_req_t **batch;
    int32_t *slots;
    size_t nslots;

    /* The syncer (rules 3, 5): requests done by the writer, waiting for a
     * sync and their answers, in queue order (linked by qnext). Guarded
     * by smu. */
    bool has_syncer;                /* immutable after open */
    pthread_t syncer;
    pthread_mutex_t smu;
    pthread_cond_t swake;
    store_req_t *shead, *stail;
    uint64_t committed;             /* commits so far (the writer counts them here) */
    bool sclosing;
    /* Syncer thread only: */
    uint64_t synced;                /* commits made durable so far */
    /* Set by the syncer when a sync fails, read by the writer (rule 5). */
    _Atomic bool sync_failed;

    _Atomic(const store_schema_t *) schema;

    pthread_mutex_t hook_mu;        /* guards hook and hook_ctx */
    store_fault_hook_fn hook;
    void *hook_ctx;
    /* store_fail_next: counts and errors, indexed by fault point. Relaxed
     * is enough: they are independent counters, ordered by nothing else. */
    _Atomic unsigned fail_n[STORE_FP_SYNC + 1];
    _Atomic int fail_err[STORE_FP_SYNC + 1];

    /* Statistics: written by the writer (and submitters, for backlog and
     * refused), read by anyone; relaxed: they are counters, not flags. */
    _Atomic uint64_t s_requests, s_writes, s_written, s_coalesced, s_commits, s_batches,
        s_failed, s_lost, s_refused, s_max_batch, s_commit_ns, s_backlog, s_backlog_hist,
        s_syncs, s_sync_ns;
};

#define RELAXED memory_order_relaxed
#define ADD(field, n) atomic_fetch_add_explicit(&(field), (n), RELAXED)

/* ---- Errors --------------------------------------------------------------- */

const char *store_strerror(int err)
{
    switch (err) {
    case STORE_OK: return "ok";
    case STORE_ENOMEM: return "out of memory";
    case STORE_EINVAL: return "invalid argument";
    case STORE_ENOTFOUND: return "not found";
    case STORE_EIO: return "I/O error";
    case STORE_EFULL: return "disk full";
    case STORE_ECORRUPT: return "stored data is corrupt";
    case STORE_EVERSION: return "version newer than this binary";
    case STORE_EMIGRATE: return "state migration failed";
    case STORE_EBUSY: return "store backlog full";
    case STORE_ECLOSED: return "store closed";
    case STORE_ETIMEOUT: return "store call timed out";
    case STORE_EUNAVAIL: return "store process unavailable";
    case STORE_ECONTEXT: return "wrong thread for this call";
    case STORE_EBACKEND: return "store back end failed to open";
    default: return "unknown store error";
    }
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool is_write(store_op_t op)
{
    return op >= STORE_OP_PUT_STATE && op <= STORE_OP_PUT_CALL;
}

static bool is_history(store_op_t op)
{
    return op == STORE_OP_APPEND_EVENT || op == STORE_OP_PUT_CALL;
}

/* ---- Requests -------------------------------------------------------------- */

static void free_rows(store_req_t *r)
{
    for (size_t i = 0; i < r->nrows; i++) {
        if (r->rooms) {
            free((char *)r->rooms[i].id);
            json_decref(r->rooms[i].state);
        } else if (r->events) {
            free((char *)r->events[i].type);
            free((char *)r->events[i].user);
            json_decref(r->events[i].data);
        } else if (r->calls) {
            free((char *)r->calls[i].id);
            json_decref(r->calls[i].participants);
        }
    }
    free(r->rooms);
    free(r->events);
    free(r->calls);
    r->rooms = NULL;
    r->events = NULL;
    r->calls = NULL;
    r->nrows = r->caprows = 0;
}

static void req_dtor(rt_rc_t *rc)
{
    store_req_t *r = RT_CONTAINER_OF(rc, store_req_t, rc);
    free_rows(r);
    if (r->block) {
        free(r->block);  /* room, type, user and text live in it */
    } else {
        free(r->room);
        if (r->buf)
            rt_buf_release(r->buf);  /* text points into it */
        else
            free(r->text);
        free(r->type);
        free(r->user);
    }
    for (size_t i = 0; i < r->nusers; i++)
        free(r->users[i]);
    free(r->users);
    free(r);
}

static store_req_t *req_new(store_op_t op)
{
    store_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    rt_rc_init(&r->rc, req_dtor);
    r->op = op;
    r->super = -1;
    return r;
}

void store_req_free(store_req_t *req)
{
    if (req)
        rt_rc_release(&req->rc);
}

static bool valid_id(const char *s)
{
    return s && s[0] && strnlen(s, MAX_ID + 1) <= MAX_ID;
}

/* Copies s (NULL stays NULL). Returns false on ENOMEM. */
static bool dup_opt(char **dst, const char *s)
{
    *dst = NULL;
    if (!s)
        return true;
    *dst = strdup(s);
    return *dst != NULL;
}

/* True if text[0..len) parses as JSON; with object_only, as an object. */
static bool valid_json(const char *text, size_t len, bool object_only)
{
    json_error_t jerr;
    json_t *j = json_loadb(text, len, object_only ? 0 : JSON_DECODE_ANY, &jerr);
    bool ok = j && (!object_only || json_is_object(j));
    json_decref(j);
    return ok;
}

static uint32_t clamp_limit(uint32_t limit)
{
    return limit == 0 ? DEFAULT_LIMIT : limit;
}

int store_req_put_state(store_req_t **out, const char *room, const char *state, size_t len,
                        uint32_t state_version, uint64_t version, bool ended)
{
    if (!out || !valid_id(room) || !state || len == 0 || len > MAX_TEXT || state_version == 0 ||
        version > INT64_MAX ||
        memchr(state, '\0', len) || !valid_json(state, len, true))
        return STORE_EINVAL;
    store_req_t *r = req_new(STORE_OP_PUT_STATE);
    if (!r)
        return STORE_ENOMEM;
    r->room = strdup(room);
    r->text = malloc(len + 1);
    if (!r->room || !r->text) {
        store_req_free(r);
        return STORE_ENOMEM;
    }
    memcpy(r->text, state, len);
    r->text[len] = '\0';
    r->text_len = len;
    r->state_version = state_version;
    r->version = version;
    r->ended = ended;
    *out = r;
    return STORE_OK;
}

int store_req_put_state_buf(store_req_t **out, const char *room, rt_buf_t *state,
                            uint32_t state_version, uint64_t version, bool ended)
{
    /* Not parsed (see store.h): the caller made this text from an object.
     * The checks left are the ones that cost nothing and still catch a
     * buffer that is not a serialised object at all. */
    if (!out || !valid_id(room) || !state || state->len == 0 || state->len > MAX_TEXT ||
        state_version == 0 || version > INT64_MAX || state->data[0] != '{' ||
        state->data[state->len - 1] != '}' || memchr(state->data, '\0', state->len))
        return STORE_EINVAL;
    store_req_t *r = req_new(STORE_OP_PUT_STATE);
    if (!r)
        return STORE_ENOMEM;
    if (!(r->room = strdup(room))) {
        store_req_free(r);
        return STORE_ENOMEM;
    }
    rt_buf_retain(state);
    r->buf = state;
    r->text = state->data;  /* NUL-terminated: rt_buf_t always is */
    r->text_len = state->len;
    r->state_version = state_version;
    r->version = version;
    r->ended = ended;
    *out = r;
    return STORE_OK;
}

int store_req_mark_ended(store_req_t **out, const char *room)
{
    if (!out || !valid_id(room))
        return STORE_EINVAL;
    store_req_t *r = req_new(STORE_OP_MARK_ENDED);
    if (!r)
        return STORE_ENOMEM;
    if (!(r->room = strdup(room))) {
        store_req_free(r);
        return STORE_ENOMEM;
    }
    *out = r;
    return STORE_OK;
}

int store_req_append_event(store_req_t **out, const char *room, int64_t at, const char *type,
                           const char *user, const char *data)
{
    if (!out || !valid_id(room) || !valid_id(type) || (user && !valid_id(user)))
        return STORE_EINVAL;
    size_t dlen = data ? strnlen(data, MAX_TEXT + 1) : 0;
    if (data && (dlen == 0 || dlen > MAX_TEXT || !valid_json(data, dlen, false)))
        return STORE_EINVAL;
    store_req_t *r = req_new(STORE_OP_APPEND_EVENT);
    if (!r)
        return STORE_ENOMEM;
    if (!dup_opt(&r->room, room) || !dup_opt(&r->type, type) || !dup_opt(&r->user, user) ||
        !dup_opt(&r->text, data)) {
        store_req_free(r);
        return STORE_ENOMEM;
    }
    r->text_len = dlen;
    /* The event's time is when it happened (was queued), not when the
     * writer got to it. */
    r->at = at > 0 ? at : wall_ms();
    *out = r;
    return STORE_OK;
}

int store_req_append_event_dumped(store_req_t **out, const char *room, int64_t at,
                                  const char *type, const char *user, const char *data)
{
    if (!out || !valid_id(room) || !valid_id(type) || (user && !valid_id(user)))
        return STORE_EINVAL;
    size_t rlen = strlen(room), tlen = strlen(type), ulen = user ? strlen(user) : 0;
    size_t dlen = data ? strnlen(data, MAX_TEXT + 1) : 0;
    if (data && (dlen == 0 || dlen > MAX_TEXT))
        return STORE_EINVAL;
    store_req_t *r = req_new(STORE_OP_APPEND_EVENT);
    /* One block for the four strings: an event is written once and
     * freed once, so one allocation instead of four. */
    char *b = r ? malloc(rlen + 1 + tlen + 1 + (user ? ulen + 1 : 0) + (data ? dlen + 1 : 0))
                : NULL;
    if (!b) {
        store_req_free(r);
        return STORE_ENOMEM;
    }
    r->block = b;
    r->room = b;
    memcpy(b, room, rlen + 1);
    b += rlen + 1;
    r->type = b;
    memcpy(b, type, tlen + 1);
    b += tlen + 1;
    if (user) {
        r->user = b;
        memcpy(b, user, ulen + 1);
        b += ulen + 1;
    }
    if (data) {
        r->text = b;
        memcpy(b, data, dlen + 1);
    }
    r->text_len = dlen;
    r->at = at > 0 ? at : wall_ms();
    *out = r;
    return STORE_OK;
}

int store_req_put_call(store_req_t **out, const char *id, int64_t created_at,
                       int64_t started_at, int64_t ended_at, const char *participants,
                       int64_t duration_ms)
{
    if (!out || !valid_id(id) || !participants || strnlen(participants, MAX_TEXT + 1) > MAX_TEXT ||
        created_at < 0 || started_at < 0 || ended_at < 0 || duration_ms < 0)
        return STORE_EINVAL;
    json_error_t jerr;
    json_t *arr = json_loads(participants, 0, &jerr);
    if (!json_is_array(arr)) {
        json_decref(arr);
        return STORE_EINVAL;
    }
    size_t n = json_array_size(arr);
    for (size_t i = 0; i < n; i++) {
        const char *u = json_string_value(json_array_get(arr, i));
        if (!valid_id(u)) {
            json_decref(arr);
            return STORE_EINVAL;
        }
    }
    store_req_t *r = req_new(STORE_OP_PUT_CALL);
    if (!r || !dup_opt(&r->room, id) || !dup_opt(&r->text, participants) ||
        (n && !(r->users = calloc(n, sizeof *r->users)))) {
        json_decref(arr);
        store_req_free(r);
        return STORE_ENOMEM;
    }
    for (size_t i = 0; i < n; i++, r->nusers++) {
        if (!(r->users[i] = strdup(json_string_value(json_array_get(arr, i))))) {
            json_decref(arr);
            store_req_free(r);
            return STORE_ENOMEM;
        }
    }
    json_decref(arr);
    r->text_len = strlen(r->text);
    r->at = created_at;
    r->started_at = started_at;
    r->ended_at = ended_at;
    r->duration_ms = duration_ms;
    *out = r;
    return STORE_OK;
}

int store_req_load_state(store_req_t **out, const char *room)
{
    if (!out || !valid_id(room))
        return STORE_EINVAL;
    store_req_t *r = req_new(STORE_OP_LOAD_STATE);
    if (!r)
        return STORE_ENOMEM;
    if (!(r->room = strdup(room))) {
        store_req_free(r);
        return STORE_ENOMEM;
    }
    *out = r;
    return STORE_OK;
}

int store_req_list_live(store_req_t **out)
{
    if (!out)
        return STORE_EINVAL;
    store_req_t *r = req_new(STORE_OP_LIST_LIVE);
    if (!r)
        return STORE_ENOMEM;
    *out = r;
    return STORE_OK;
}

int store_req_read_events(store_req_t **out, const char *room, uint64_t after, uint32_t limit)
{
    if (!out || !valid_id(room) || limit > MAX_LIMIT || after > INT64_MAX)
        return STORE_EINVAL;
    store_req_t *r = req_new(STORE_OP_READ_EVENTS);
    if (!r)
        return STORE_ENOMEM;
    if (!(r->room = strdup(room))) {
        store_req_free(r);
        return STORE_ENOMEM;
    }
    r->after = after;
    r->limit = clamp_limit(limit);
    *out = r;
    return STORE_OK;
}

int store_req_query_calls(store_req_t **out, const char *user, uint32_t limit)
{
    if (!out || (user && !valid_id(user)) || limit > MAX_LIMIT)
        return STORE_EINVAL;
    store_req_t *r = req_new(STORE_OP_QUERY_CALLS);
    if (!r)
        return STORE_ENOMEM;
    if (!dup_opt(&r->user, user)) {
        store_req_free(r);
        return STORE_ENOMEM;
    }
    r->limit = clamp_limit(limit);
    *out = r;
    return STORE_OK;
}

/* ---- Results ---------------------------------------------------------------- */

int store_req_err(const store_req_t *req) { return req->err; }
store_op_t store_req_op(const store_req_t *req) { return req->op; }
const char *store_req_room(const store_req_t *req) { return req->room; }
uint64_t store_req_version(const store_req_t *req) { return req->version; }
uint64_t store_req_seq(const store_req_t *req) { return req->err ? 0 : req->seq; }
bool store_req_coalesced(const store_req_t *req) { return req->coalesced; }

const store_room_t *store_req_rooms(const store_req_t *req, size_t *n)
{
    *n = req->rooms ? req->nrows : 0;
    return req->rooms;
}

const store_event_t *store_req_events(const store_req_t *req, size_t *n, uint64_t *next)
{
    *n = req->events ? req->nrows : 0;
    if (next)
        *next = req->next;
    return req->events;
}

const store_call_t *store_req_calls(const store_req_t *req, size_t *n)
{
    *n = req->calls ? req->nrows : 0;
    return req->calls;
}

/* Makes room for one more row in *arr (elements of size sz). */
static int grow(store_req_t *r, void **arr, size_t sz)
{
    if (r->nrows < r->caprows)
        return STORE_OK;
    size_t cap = r->caprows ? r->caprows * 2 : 8;
    void *n = realloc(*arr, cap * sz);
    if (!n)
        return STORE_ENOMEM;
    *arr = n;
    r->caprows = cap;
    return STORE_OK;
}

int store__add_room(store_req_t *r, const char *id, const char *state, size_t len,
                    uint32_t stored_version, uint64_t version, int64_t updated_at, bool ended)
{
    if (grow(r, (void **)&r->rooms, sizeof *r->rooms) != STORE_OK)
        return STORE_ENOMEM;
    store_room_t *row = &r->rooms[r->nrows];
    memset(row, 0, sizeof *row);
    if (!(row->id = strdup(id)))
        return STORE_ENOMEM;
    r->nrows++;
    json_error_t jerr;
    row->state = json_loadb(state, len, 0, &jerr);
    if (!json_is_object(row->state)) {
        /* A torn or hand-edited row: report it with the room, so one bad
         * room does not stop the others from being listed. */
        fprintf(stderr, "roost store: room '%s': stored state is not a JSON object: %s\n", id,
                row->state ? "not an object" : jerr.text);
        json_decref(row->state);
        row->state = NULL;
        row->err = STORE_ECORRUPT;
    }
    row->state_version = row->stored_version = stored_version;
    row->version = version;
    row->updated_at = updated_at;
    row->ended = ended;
    return STORE_OK;
}

int store__add_event(store_req_t *r, uint64_t seq, int64_t at, const char *type,
                     const char *user, const char *data)
{
    if (grow(r, (void **)&r->events, sizeof *r->events) != STORE_OK)
        return STORE_ENOMEM;
    store_event_t *row = &r->events[r->nrows];
    memset(row, 0, sizeof *row);
    row->seq = seq;
    row->at = at;
    if (!(row->type = strdup(type)) || (user && !(row->user = strdup(user)))) {
        free((char *)row->type);
        return STORE_ENOMEM;
    }
    r->nrows++;
    if (data) {
        json_error_t jerr;
        if (!(row->data = json_loads(data, JSON_DECODE_ANY, &jerr)))
            return STORE_ECORRUPT;
    }
    return STORE_OK;
}

int store__add_call(store_req_t *r, const char *id, int64_t created_at, int64_t started_at,
                    int64_t ended_at, const char *participants, int64_t duration_ms)
{
    if (grow(r, (void **)&r->calls, sizeof *r->calls) != STORE_OK)
        return STORE_ENOMEM;
    store_call_t *row = &r->calls[r->nrows];
    memset(row, 0, sizeof *row);
    if (!(row->id = strdup(id)))
        return STORE_ENOMEM;
    r->nrows++;
    row->created_at = created_at;
    row->started_at = started_at;
    row->ended_at = ended_at;
    row->duration_ms = duration_ms;
    json_error_t jerr;
    row->participants = json_loads(participants, 0, &jerr);
    return json_is_array(row->participants) ? STORE_OK : STORE_ECORRUPT;
}

/* ---- Opening and closing ---------------------------------------------------- */

static void *writer_main(void *arg);
static void *syncer_main(void *arg);

/* mkdir -p, mode 0700 for what it creates (room states are private). */
static int make_dirs(const char *path)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf)
        return STORE_EINVAL;
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            goto fail;
        *p = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        goto fail;
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        errno = ENOTDIR;
        goto fail;
    }
    return STORE_OK;
fail:
    fprintf(stderr, "roost store: cannot create data directory '%s': %s\n", buf, strerror(errno));
    return STORE_EIO;
}

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n)
        p <<= 1;
    return p;
}

int store_open(const store_config_t *cfg, store_t **out)
{
    store_config_t c = cfg ? *cfg : (store_config_t){ 0 };
    if (!c.data_dir)
        c.data_dir = "./data";
    if (!c.backend)
        c.backend = &store_sqlite_backend;
    if (c.busy_timeout_ms <= 0)
        c.busy_timeout_ms = 5000;
    if (c.max_batch == 0)
        c.max_batch = 4096;
    if (c.max_backlog == 0)
        c.max_backlog = 1000000;
    if (c.cache_kib == 0)
        c.cache_kib = 65536;
    if (c.checkpoint_frames == 0)
        c.checkpoint_frames = 8000;
    int err = make_dirs(c.data_dir);
    if (err)
        return err;

    store_t *st = calloc(1, sizeof *st);
    if (!st)
        return STORE_ENOMEM;
    st->be_ops = c.backend;
    st->max_batch = c.max_batch;
    st->max_backlog = c.max_backlog;
    st->nslots = pow2_at_least(2 * (size_t)c.max_batch);
    st->batch = calloc(c.max_batch, sizeof *st->batch);
    st->slots = calloc(st->nslots, sizeof *st->slots);
    if (!st->batch || !st->slots) {
        err = STORE_ENOMEM;
        goto fail_mem;
    }
    atomic_init(&st->schema, c.schema);
    if ((err = st->be_ops->open(&c, &st->be)) != STORE_OK)
        goto fail_mem;

    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->wake, NULL);
    pthread_mutex_init(&st->hook_mu, NULL);
    if (pthread_create(&st->writer, NULL, writer_main, st) != 0) {
        err = STORE_ENOMEM;
        pthread_mutex_destroy(&st->mu);
        pthread_cond_destroy(&st->wake);
        pthread_mutex_destroy(&st->hook_mu);
        st->be_ops->close(st->be);
        goto fail_mem;
    }
    pthread_setname_np(st->writer, "roost-store"); /* shows in top -H, gdb */
    /* A back end that can commit without waiting for the disk says so by
     * answering a first sync. */
    if (st->be_ops->sync && st->be_ops->sync(st->be) == STORE_OK) {
        pthread_mutex_init(&st->smu, NULL);
        pthread_cond_init(&st->swake, NULL);
        if (pthread_create(&st->syncer, NULL, syncer_main, st) == 0) {
            pthread_setname_np(st->syncer, "roost-sync");
            st->has_syncer = true;
        } else {
            pthread_mutex_destroy(&st->smu);
            pthread_cond_destroy(&st->swake);
        }
    }
    if (st->be_ops->durable_commits)
        st->be_ops->durable_commits(st->be, !st->has_syncer);
    *out = st;
    return STORE_OK;

fail_mem:
    free(st->batch);
    free(st->slots);
    free(st);
    return err;
}

void store_close(store_t *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->mu);
    st->closing = true;
    pthread_cond_signal(&st->wake);
    pthread_mutex_unlock(&st->mu);
    /* The writer drains the queue before it exits (writer_main), then the
     * syncer answers what the writer handed it. */
    pthread_join(st->writer, NULL);
    if (st->has_syncer) {
        pthread_mutex_lock(&st->smu);
        st->sclosing = true;
        pthread_cond_signal(&st->swake);
        pthread_mutex_unlock(&st->smu);
        pthread_join(st->syncer, NULL);
        pthread_mutex_destroy(&st->smu);
        pthread_cond_destroy(&st->swake);
    }
    st->be_ops->close(st->be);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->wake);
    pthread_mutex_destroy(&st->hook_mu);
    free(st->batch);
    free(st->slots);
    free(st);
}

void store_set_schema(store_t *st, const store_schema_t *schema)
{
    /* release: a writer that sees the pointer sees the table it points to */
    atomic_store_explicit(&st->schema, schema, memory_order_release);
}

/* ---- Submitting --------------------------------------------------------------- */

int store_submit(store_t *st, store_req_t *req, store_done_fn done, void *ctx)
{
    if (!st || !req || req->queued) {
        if (req)
            req->err = STORE_EINVAL;
        return STORE_EINVAL;
    }
    pthread_mutex_lock(&st->mu);
    int err = STORE_OK;
    if (st->closing)
        err = STORE_ECLOSED;
    else if (atomic_load_explicit(&st->s_backlog, RELAXED) >= st->max_backlog)
        err = STORE_EBUSY;
    if (err) {
        pthread_mutex_unlock(&st->mu);
        if (err == STORE_EBUSY)
            ADD(st->s_refused, 1);
        req->err = err;
        return err;
    }
    req->queued = true;
    req->err = STORE_OK;
    req->done = done;
    req->done_ctx = ctx;
    req->qnext = NULL;
    if (st->tail)
        st->tail->qnext = req;
    else
        st->head = req;
    st->tail = req;
    ADD(st->s_backlog, 1);
    if (is_history(req->op))
        ADD(st->s_backlog_hist, 1);
    /* Only an idle writer needs waking; a busy one takes this request with
     * its next batch. */
    if (st->writer_idle) {
        st->writer_idle = false;
        pthread_cond_signal(&st->wake);
    }
    pthread_mutex_unlock(&st->mu);
    return STORE_OK;
}

/* store_exec's waiter: lives on the waiting thread's stack. */
typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool done;
} waiter_t;

static void exec_done(store_req_t *req, void *ctx)
{
    waiter_t *w = ctx;
    store_req_free(req);            /* the reference store_exec added */
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);   /* w may be gone after this: not touched again */
}

int store_exec(store_t *st, store_req_t *req)
{
    if (rt_self() != RT_NOPID) {
        if (req)
            req->err = STORE_ECONTEXT;
        return STORE_ECONTEXT;
    }
    if (!req)
        return STORE_EINVAL;
    waiter_t w = { .done = false };
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cond, NULL);
    rt_rc_retain(&req->rc);         /* one for the queue, one kept */
    int err = store_submit(st, req, exec_done, &w);
    if (err != STORE_OK) {
        store_req_free(req);
    } else {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cond, &w.mu);
        pthread_mutex_unlock(&w.mu);
        err = req->err;
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cond);
    return err;
}

/* ---- Introspection and fault hooks --------------------------------------------- */

void store_get_stats(store_t *st, store_stats_t *out)
{
    out->requests = atomic_load_explicit(&st->s_requests, RELAXED);
    out->writes = atomic_load_explicit(&st->s_writes, RELAXED);
    out->written = atomic_load_explicit(&st->s_written, RELAXED);
    out->coalesced = atomic_load_explicit(&st->s_coalesced, RELAXED);
    out->commits = atomic_load_explicit(&st->s_commits, RELAXED);
    out->batches = atomic_load_explicit(&st->s_batches, RELAXED);
    out->failed = atomic_load_explicit(&st->s_failed, RELAXED);
    out->lost = atomic_load_explicit(&st->s_lost, RELAXED);
    out->refused = atomic_load_explicit(&st->s_refused, RELAXED);
    out->max_batch = atomic_load_explicit(&st->s_max_batch, RELAXED);
    out->commit_ns = atomic_load_explicit(&st->s_commit_ns, RELAXED);
    out->backlog = atomic_load_explicit(&st->s_backlog, RELAXED);
    out->backlog_history = atomic_load_explicit(&st->s_backlog_hist, RELAXED);
    out->syncs = atomic_load_explicit(&st->s_syncs, RELAXED);
    out->sync_ns = atomic_load_explicit(&st->s_sync_ns, RELAXED);
    out->failed_stop = atomic_load_explicit(&st->sync_failed, RELAXED);
}

uint64_t store_backlog(store_t *st)
{
    return atomic_load_explicit(&st->s_backlog, RELAXED);
}

void store_set_fault_hook(store_t *st, store_fault_hook_fn hook, void *ctx)
{
    pthread_mutex_lock(&st->hook_mu);
    st->hook = hook;
    st->hook_ctx = ctx;
    pthread_mutex_unlock(&st->hook_mu);
}

void store_fail_next(store_t *st, store_fault_point_t point, unsigned n, int err)
{
    if (point != STORE_FP_WRITE && point != STORE_FP_COMMIT && point != STORE_FP_SYNC)
        return;
    atomic_store_explicit(&st->fail_err[point], err < 0 ? err : STORE_EIO, RELAXED);
    atomic_store_explicit(&st->fail_n[point], n, RELAXED);
}

/* 0, or the error a fault hook or store_fail_next injects at this step. */
static int fault(store_t *st, store_fault_point_t p, const store_req_t *r)
{
    if (p == STORE_FP_WRITE || p == STORE_FP_COMMIT || p == STORE_FP_SYNC) {
        unsigned n = atomic_load_explicit(&st->fail_n[p], RELAXED);
        while (n > 0) {
            if (atomic_compare_exchange_weak_explicit(&st->fail_n[p], &n, n - 1, RELAXED,
                                                      RELAXED))
                return atomic_load_explicit(&st->fail_err[p], RELAXED);
        }
    }
    pthread_mutex_lock(&st->hook_mu);
    store_fault_hook_fn hook = st->hook;
    void *ctx = st->hook_ctx;
    pthread_mutex_unlock(&st->hook_mu);
    /* Called unlocked: the hook may block for as long as the test wants. */
    int e = hook ? hook(ctx, p, r) : 0;
    return e < 0 ? e : 0;
}

/* ---- The writer thread ----------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Marks every put_state that a later put_state of the same room in this
 * batch makes pointless: the later one writes the whole row anyway. A
 * mark_ended in between is a barrier, so the writes around it keep their
 * order (put, mark_ended, put must leave the second put's ended flag).
 * Walks the batch backwards with an open-addressing table of room ->
 * index of the latest put_state/mark_ended seen so far. O(n). */
static void coalesce(store_t *st, size_t n)
{
    size_t nslots = pow2_at_least(2 * n);
    size_t mask = nslots - 1;
    memset(st->slots, 0xff, nslots * sizeof *st->slots); /* -1: empty */
    for (size_t k = n; k-- > 0;) {
        store_req_t *r = st->batch[k];
        if (r->op != STORE_OP_PUT_STATE && r->op != STORE_OP_MARK_ENDED)
            continue;
        size_t i = hash_str(r->room) & mask;
        while (st->slots[i] >= 0 && strcmp(st->batch[st->slots[i]]->room, r->room) != 0)
            i = (i + 1) & mask;
        int32_t later = st->slots[i];
        if (r->op == STORE_OP_PUT_STATE && later >= 0 &&
            st->batch[later]->op == STORE_OP_PUT_STATE) {
            r->super = later;
            continue;  /* keep the slot on the write that will happen */
        }
        st->slots[i] = (int32_t)k;
    }
}

static int exec_write(store_t *st, store_req_t *r, int64_t now)
{
    const store_backend_t *b = st->be_ops;
    switch (r->op) {
    case STORE_OP_PUT_STATE: return b->put_state(st->be, r, now);
    case STORE_OP_MARK_ENDED: return b->mark_ended(st->be, r, now);
    case STORE_OP_APPEND_EVENT: return b->append_event(st->be, r);
    case STORE_OP_PUT_CALL: return b->put_call(st->be, r);
    default: return STORE_EINVAL;
    }
}

/* Applies the registered state schema to every room row of r. */
static void migrate_rows(store_t *st, store_req_t *r)
{
    const store_schema_t *sc = atomic_load_explicit(&st->schema, memory_order_acquire);
    if (!sc || !r->rooms)
        return;
    for (size_t i = 0; i < r->nrows; i++) {
        store_room_t *row = &r->rooms[i];
        if (row->err)
            continue;
        if (row->stored_version > sc->version) {
            /* Written by a newer roost: reading it as ours would lose
             * what we do not know about. */
            row->err = STORE_EVERSION;
        } else if (row->stored_version < sc->version) {
            json_t *s = sc->migrate(row->state, row->stored_version);
            row->state = s;
            if (!json_is_object(s)) {
                fprintf(stderr, "roost store: room '%s': migrating state from version %u to %u failed\n",
                        row->id, row->stored_version, sc->version);
                json_decref(s);
                row->state = NULL;
                row->err = STORE_EMIGRATE;
            } else {
                row->state_version = sc->version;
            }
        }
        if (row->err) {
            json_decref(row->state);
            row->state = NULL;
        }
    }
}

static int exec_read(store_t *st, store_req_t *r)
{
    const store_backend_t *b = st->be_ops;
    int err;
    switch (r->op) {
    case STORE_OP_LOAD_STATE: err = b->load_state(st->be, r); break;
    case STORE_OP_LIST_LIVE: err = b->list_live(st->be, r); break;
    case STORE_OP_READ_EVENTS: err = b->read_events(st->be, r); break;
    case STORE_OP_QUERY_CALLS: err = b->query_calls(st->be, r); break;
    default: err = STORE_EINVAL;
    }
    if (err) {
        free_rows(r);  /* no half results */
        return err;
    }
    switch (r->op) {
    case STORE_OP_LOAD_STATE:
        migrate_rows(st, r);
        return r->nrows == 0 ? STORE_ENOTFOUND : r->rooms[0].err;
    case STORE_OP_LIST_LIVE:
        migrate_rows(st, r);
        return STORE_OK;
    case STORE_OP_READ_EVENTS:
        /* The back end reads one row more than asked: if it is there, the
         * page has a successor, and `next` is the last seq returned. */
        r->next = 0;
        if (r->events && r->nrows > r->limit) {
            store_event_t *extra = &r->events[--r->nrows];
            free((char *)extra->type);
            free((char *)extra->user);
            json_decref(extra->data);
            r->next = r->events[r->nrows - 1].seq;
        }
        return STORE_OK;
    default:
        return STORE_OK;
    }
}

static void complete(store_t *st, store_req_t *r)
{
    bool hist = is_history(r->op);
    ADD(st->s_requests, 1);
    if (r->err && r->err != STORE_ENOTFOUND)
        ADD(st->s_failed, 1);
    if (is_write(r->op) && !r->err)
        ADD(st->s_writes, 1);
    if (!r->done && is_write(r->op) && r->err && r->err != STORE_ENOTFOUND)
        ADD(st->s_lost, 1);
    r->queued = false;
    store_done_fn done = r->done;
    void *ctx = r->done_ctx;
    /* Counted out before done runs: a waiter woken by done may read the
     * backlog and must not see its own request in it. */
    atomic_fetch_sub_explicit(&st->s_backlog, 1, RELAXED);
    if (hist)
        atomic_fetch_sub_explicit(&st->s_backlog_hist, 1, RELAXED);
    if (done)
        done(r, ctx);
    else
        store_req_free(r);
}

static void complete_all(store_t *st, store_req_t **reqs, size_t n, int err);

static void run_batch(store_t *st, size_t n)
{
    int64_t now = wall_ms();
    size_t nwrites = 0, ncoalesced = 0;
    for (size_t i = 0; i < n; i++) {
        st->batch[i]->super = -1;
        st->batch[i]->coalesced = false;
        st->batch[i]->seq = 0;
        nwrites += is_write(st->batch[i]->op);
    }
    uint64_t max = atomic_load_explicit(&st->s_max_batch, RELAXED);
    if (n > max)
        atomic_store_explicit(&st->s_max_batch, n, RELAXED);

    int err = fault(st, STORE_FP_BATCH, NULL);
    if (nwrites && !err && atomic_load_explicit(&st->sync_failed, memory_order_acquire))
        err = STORE_EIO; /* rule 5: nothing more is written */
    bool committed = false;
    if (nwrites && !err) {
        coalesce(st, n);
        ADD(st->s_batches, 1);
        err = st->be_ops->begin(st->be);
        size_t written = 0;
        for (size_t i = 0; i < n && !err; i++) {
            store_req_t *r = st->batch[i];
            if (!is_write(r->op))
                continue;
            if (r->super >= 0) {
                r->coalesced = true;
                ncoalesced++;
                continue;
            }
            int e = exec_write(st, r, now);
            if (e == STORE_ENOTFOUND && r->op == STORE_OP_MARK_ENDED) {
                r->err = e;  /* this request's answer, not the batch's failure */
                e = STORE_OK;
            }
            if (!e)
                e = fault(st, STORE_FP_WRITE, r);
            err = e;
            written++;
        }
        if (!err)
            err = fault(st, STORE_FP_COMMIT, NULL);
        if (!err) {
            uint64_t t0 = rt_now_ns();
            err = st->be_ops->commit(st->be);
            ADD(st->s_commit_ns, rt_now_ns() - t0);
        }
        if (err) {
            st->be_ops->rollback(st->be);
            fprintf(stderr, "roost store: batch of %zu writes rolled back: %s\n", nwrites,
                    store_strerror(err));
        } else {
            committed = true;
            ADD(st->s_commits, 1);
            ADD(st->s_written, written);
            ADD(st->s_coalesced, ncoalesced);
        }
    }
    /* Answers: writes get the batch's result (rule 4); reads run now,
     * after the commit, so they see every write queued before them. */
    for (size_t i = 0; i < n; i++) {
        store_req_t *r = st->batch[i];
        if (is_write(r->op)) {
            if (err) {
                r->err = err;
                r->seq = 0;
            } else if (r->super >= 0) {
                r->err = st->batch[r->super]->err;
            }
        } else {
            r->err = exec_read(st, r);
        }
    }
    if (st->has_syncer) {
        /* Answered by the syncer, after everything before them and after
         * a sync that covers this commit (rule 3). */
        store_req_t *first = st->batch[0], *last = st->batch[n - 1];
        for (size_t i = 0; i < n; i++) {
            st->batch[i]->qnext = i + 1 < n ? st->batch[i + 1] : NULL;
            st->batch[i] = NULL;
        }
        pthread_mutex_lock(&st->smu);
        if (committed)
            st->committed++;
        if (st->stail)
            st->stail->qnext = first;
        else
            st->shead = first;
        st->stail = last;
        pthread_cond_signal(&st->swake);
        pthread_mutex_unlock(&st->smu);
        return;
    }
    complete_all(st, st->batch, n, err);
}

/* Completes n requests in order; err: the batch's error, for the log. */
static void complete_all(store_t *st, store_req_t **reqs, size_t n, int err)
{
    size_t lost = 0;
    for (size_t i = 0; i < n; i++) {
        store_req_t *r = reqs[i];
        lost += !r->done && is_write(r->op) && r->err && r->err != STORE_ENOTFOUND;
        complete(st, r);
        reqs[i] = NULL;
    }
    if (lost)
        fprintf(stderr, "roost store: %zu unacknowledged writes (history) lost: %s\n", lost,
                store_strerror(err));
}

/* The syncer thread (rules 3, 5). */
static void *syncer_main(void *arg)
{
    store_t *st = arg;
    pthread_mutex_lock(&st->smu);
    for (;;) {
        while (!st->shead && !st->sclosing)
            pthread_cond_wait(&st->swake, &st->smu);
        if (!st->shead)
            break; /* closing, and everything handed over was answered */
        store_req_t *list = st->shead;
        st->shead = st->stail = NULL;
        /* Every commit counted here happened before this sync starts. */
        uint64_t upto = st->committed;
        pthread_mutex_unlock(&st->smu);

        int err = STORE_OK;
        if (upto > st->synced) {
            err = fault(st, STORE_FP_SYNC, NULL);
            if (!err) {
                uint64_t t0 = rt_now_ns();
                err = st->be_ops->sync(st->be);
                ADD(st->s_sync_ns, rt_now_ns() - t0);
            }
            if (err) {
                if (!atomic_exchange_explicit(&st->sync_failed, true, memory_order_release))
                    fprintf(stderr,
                            "roost store: the disk did not confirm a commit (%s): refusing "
                            "every write from now on; restart to go on\n",
                            store_strerror(err));
            } else {
                st->synced = upto;
                ADD(st->s_syncs, 1);
            }
        }
        size_t lost = 0;
        for (store_req_t *r = list, *next; r; r = next) {
            next = r->qnext;
            r->qnext = NULL;
            if (err && !r->err) {
                r->err = err; /* it may have seen or made what is not durable */
                r->seq = 0;
            }
            lost += !r->done && is_write(r->op) && r->err && r->err != STORE_ENOTFOUND;
            complete(st, r);
        }
        if (lost)
            fprintf(stderr, "roost store: %zu unacknowledged writes (history) lost\n", lost);
        pthread_mutex_lock(&st->smu);
    }
    pthread_mutex_unlock(&st->smu);
    return NULL;
}

static void *writer_main(void *arg)
{
    store_t *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->head && !st->closing) {
            st->writer_idle = true;
            pthread_cond_wait(&st->wake, &st->mu);
        }
        st->writer_idle = false;
        if (!st->head)
            break; /* closing, and everything queued has been answered */
        size_t n = 0;
        while (st->head && n < st->max_batch) {
            store_req_t *r = st->head;
            st->head = r->qnext;
            r->qnext = NULL;
            st->batch[n++] = r;
        }
        if (!st->head)
            st->tail = NULL;
        pthread_mutex_unlock(&st->mu);
        run_batch(st, n);
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

/* ---- The store process ----------------------------------------------------------- */

/* Writer thread: hands a completed request back to the store process that
 * accepted it, which replies (see store.h: only the holder of a call may
 * clear it). If that process is gone the message is dropped and the
 * runtime releases req; its caller already had the exit reason. */
static void server_done(store_req_t *req, void *ctx)
{
    rt_msg_t *m = rt_msg_new(STORE_MSG__DONE);
    if (!m) {
        fprintf(stderr, "roost store: out of memory answering a request; its caller will time out\n");
        store_req_free(req);
        return;
    }
    rt_msg_set_data(m, &req->rc, RT_OWN_RC);
    rt_send_msg(req->server, m);
}

static void reply_req(store_req_t *req)
{
    rt_msg_t *m = rt_msg_new(STORE_MSG_REPLY);
    if (!m) {
        store_req_free(req);
        rt_fail(rt_reason_new("enomem"));
    }
    m->a = (uint64_t)(int64_t)req->err;
    rt_from_t from = req->from;
    rt_msg_set_data(m, &req->rc, RT_OWN_RC);
    rt_reply(from, m);
}

static rt_reason_t *server_init(void *arg, void **state)
{
    if (!arg)
        return rt_reason_new("store_server: no store");
    *state = arg;
    return NULL;
}

/* The request carried by m, taken from it, or NULL if m is not one. */
static store_req_t *take_req(rt_msg_t *m)
{
    if (m->tag != STORE_MSG_REQ || !m->data || m->own != RT_OWN_RC)
        return NULL;
    return RT_CONTAINER_OF((rt_rc_t *)rt_msg_take(m), store_req_t, rc);
}

static int server_call(void *state, rt_msg_t *m, rt_from_t from)
{
    store_req_t *req = take_req(m);
    if (!req) {
        rt_reply_val(from, STORE_MSG_REPLY, (uint64_t)(int64_t)STORE_EINVAL, 0);
        return RT_REPLIED;
    }
    req->from = from;
    req->server = rt_self();
    if (store_submit(state, req, server_done, NULL) == STORE_OK)
        return RT_NOREPLY;  /* answered by server_info once completed */
    reply_req(req);         /* refused at once: req->err says why */
    return RT_REPLIED;
}

static void server_cast(void *state, rt_msg_t *m)
{
    store_req_t *req = take_req(m);
    if (!req)
        return;
    int err = store_submit(state, req, NULL, NULL);
    if (err != STORE_OK) {
        store_t *st = state;
        ADD(st->s_lost, 1);
        fprintf(stderr, "roost store: cast request refused and lost: %s\n", store_strerror(err));
        store_req_free(req);
    }
}

static void server_info(void *state, rt_msg_t *m)
{
    if (m->kind == RT_MSG_INFO && m->tag == STORE_MSG__DONE && m->from == RT_NOPID && m->data &&
        m->own == RT_OWN_RC)
        reply_req(RT_CONTAINER_OF((rt_rc_t *)rt_msg_take(m), store_req_t, rc));
}

const rt_behaviour_t store_server = RT_BEHAVIOUR(
    .name = "store",
    .init = server_init,
    .handle_call = server_call,
    .handle_cast = server_cast,
    .handle_info = server_info);

static rt_msg_t *req_msg(store_req_t *req)
{
    rt_msg_t *m = rt_msg_new(STORE_MSG_REQ);
    if (!m) {
        store_req_free(req);
        return NULL;
    }
    rt_msg_set_data(m, &req->rc, RT_OWN_RC);
    return m;
}

int store_call(rt_pid_t server, store_req_t *req, int timeout_ms, uint64_t *ref)
{
    if (!req)
        return RT_EINVAL;
    rt_msg_t *m = req_msg(req);
    return m ? rt_call(server, m, timeout_ms, ref) : RT_ENOMEM;
}

int store_cast(rt_pid_t server, store_req_t *req)
{
    if (!req)
        return RT_EINVAL;
    rt_msg_t *m = req_msg(req);
    return m ? rt_cast_msg(server, m) : RT_ENOMEM;
}

int store_reply(const rt_msg_t *reply, store_req_t **req)
{
    if (req)
        *req = NULL;
    if (reply->flags & RT_MF_ERROR) {
        rt_reason_t *why = rt_msg_reason(reply);
        return why && why->code == RT_R_TIMEOUT ? STORE_ETIMEOUT : STORE_EUNAVAIL;
    }
    if (reply->tag != STORE_MSG_REPLY)
        return STORE_EINVAL;
    if (req && reply->data && reply->own == RT_OWN_RC)
        *req = RT_CONTAINER_OF((rt_rc_t *)reply->data, store_req_t, rc);
    return (int)(int64_t)reply->a;
}
