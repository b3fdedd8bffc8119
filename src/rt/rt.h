/*
 * rt.h — roost's actor runtime: the C counterpart of Erlang processes and
 * gen_server (design §3). Supervisors are in rt_sup.h, registry and
 * pub/sub are here because every process may use them.
 *
 * Model
 *   A process is a behaviour (a table of callbacks) plus a state pointer.
 *   Callbacks run on a scheduler thread, one message at a time, never on
 *   two threads at once. A callback never blocks: a call to another
 *   process is a request whose answer arrives later as a message
 *   (RT_MSG_REPLY), optionally with rt_await() so nothing else is handled
 *   in between (the C form of a synchronous gen_server:call).
 *
 * Thread rules (every function says which applies)
 *   "any thread"      scheduler threads, I/O threads, the main thread.
 *   "process context" only inside a callback of the calling process.
 *   "external thread" only on a thread that is not a scheduler (it may
 *                     block: rt_call_sync, rt_inbox_recv, rt_sup_*_sync).
 *
 * Ownership
 *   Messages: the sender owns a message until rt_send, rt_cast, rt_call or
 *   rt_reply returns, whatever the result; then the runtime owns it. A
 *   callback borrows the message it is given; the runtime frees it (with
 *   its data) when the callback returns, unless the callback took the data
 *   with rt_msg_take().
 *   Reasons: functions that "take" a reason consume one reference; those
 *   that "borrow" one retain it themselves if they keep it.
 *
 * Differences from Erlang are listed in docs/runtime.md.
 */
#ifndef ROOST_RT_H
#define ROOST_RT_H

#include <pthread.h>

#include "rt/rt_types.h"

/* ---- Runtime lifecycle ------------------------------------------------- */

typedef struct rt_config {
    unsigned schedulers;     /* scheduler threads; 0 = one per online core */
    uint32_t max_procs;      /* process table ceiling; 0 = 16M. The table
                                grows in chunks of 4096 as needed. */
    unsigned batch;          /* messages a process handles per turn; 0 = 100 */
    uint32_t mailbox_high;   /* a process sending to a mailbox longer than
                                this is paused (backpressure) until it is
                                below mailbox_high/2; 0 = 65536 */
} rt_config_t;

/* Starts the runtime: schedulers and the timer thread. cfg may be NULL for
 * the defaults. External thread. Returns RT_OK, RT_ESTATE if running,
 * RT_ENOMEM. */
int rt_runtime_start(const rt_config_t *cfg);

/* Stops the runtime: every live process is killed (its terminate runs),
 * threads are joined and every runtime allocation is freed. External
 * thread; the runtime may be started again afterwards. Every other
 * thread that sends (I/O loops, a store's writer thread) must have
 * stopped using the runtime first: the process table is freed here. */
void rt_runtime_stop(void);

/* Waits until no process is alive or timeout_ms passes (-1: forever).
 * Returns RT_OK or RT_ETIMEOUT. External thread. */
int rt_wait_idle(int timeout_ms);

/* Monotonic clock in nanoseconds and milliseconds. Any thread. */
uint64_t rt_now_ns(void);
uint64_t rt_now_ms(void);

/* ---- Behaviours ---------------------------------------------------------- */

#define RT_BEHAVIOUR_ABI 1u

/* A reference to a pending call, for replying later (OTP's From). */
typedef struct rt_from {
    rt_pid_t pid;            /* the caller */
    uint64_t ref;
    rt_pid_t via;            /* the callee: told when someone else replies */
} rt_from_t;

/* handle_call results */
#define RT_REPLIED 0   /* rt_reply() was called during the callback */
#define RT_NOREPLY 1   /* the callback kept `from` and will rt_reply() later */

typedef struct rt_behaviour {
    uint32_t abi;            /* RT_BEHAVIOUR_ABI */
    const char *name;        /* static; shown by introspection */
    uint32_t version;        /* state schema version, for migrate */

    /* Builds the state from arg (borrowed). Returns NULL on success or the
     * reason the start failed (taken); on failure terminate is not called,
     * so init frees what it built. Mandatory. */
    rt_reason_t *(*init)(void *arg, void **state);

    /* Answers a call: either rt_reply(from, ...) and return RT_REPLIED, or
     * keep `from` and return RT_NOREPLY. If the process exits before
     * replying, the caller gets the exit reason. Optional (a call to a
     * behaviour without it fails the callee, as in OTP). */
    int (*handle_call)(void *state, rt_msg_t *req, rt_from_t from);
    void (*handle_cast)(void *state, rt_msg_t *msg);        /* optional */
    void (*handle_info)(void *state, rt_msg_t *msg);        /* optional */

    /* Always called when a process whose init succeeded exits, whatever
     * the reason (killed included): it is the state's destructor. Borrows
     * the reason. Must not fail. Optional if the state needs no freeing. */
    void (*terminate)(void *state, rt_reason_t *reason);

    /* Converts *state from old_version to this behaviour's version
     * (OTP code_change). Returns NULL or a failure reason (taken). */
    rt_reason_t *(*migrate)(void **state, uint32_t old_version);

    /* Bytes the state uses, for introspection. Optional. */
    size_t (*memory)(const void *state);
} rt_behaviour_t;

/* Fills every slot not named with NULL, like Janus's plugin macro. */
#define RT_BEHAVIOUR(...) { .abi = RT_BEHAVIOUR_ABI, __VA_ARGS__ }

/* ---- Spawning ------------------------------------------------------------ */

#define RT_SPAWN_LINK      0x01u  /* link the child to the caller (process context) */
#define RT_SPAWN_MONITOR   0x02u  /* the caller monitors the child: opts->monitor_ref */
#define RT_SPAWN_ACK       0x04u  /* the child sends the caller RT_MSG_ACK after init */
#define RT_SPAWN_TRAP_EXIT 0x08u  /* the child starts with trap_exit on */

struct rt_exec;

typedef struct rt_spawn_opts {
    uint32_t flags;          /* RT_SPAWN_* */
    struct rt_exec *exec;    /* run only on this executor's thread (see
                                "Executors" below); NULL = schedulers */
    rt_pid_t parent;         /* shown by introspection; RT_NOPID = caller */
    const char *name;        /* registered by the child before init (copied);
                                taken -> init fails with "already_registered",
                                the ACK's `a` holds the holder's pid */
    uint32_t restarts;       /* shown by introspection (set by supervisors) */
    uint64_t monitor_ref;    /* out, with RT_SPAWN_MONITOR */
    uint64_t ack_ref;        /* out, with RT_SPAWN_ACK */
} rt_spawn_opts_t;

/* Creates a process. Its init runs as its first message, on a scheduler,
 * with arg (borrowed until init returns; init always runs exactly once
 * when this returns RT_OK). With RT_SPAWN_ACK the caller later receives an
 * RT_MSG_ACK with ref opts->ack_ref: flags & RT_MF_ERROR and the reason in
 * data if init failed, else `from` is the child. LINK/MONITOR/ACK need a
 * process (or an inbox, see rt_inbox_spawn); other flags work from any
 * thread. opts may be NULL. Returns RT_OK and *pid, RT_ENOMEM, RT_ELIMIT,
 * RT_ECONTEXT, RT_ESTATE. */
int rt_spawn(const rt_behaviour_t *b, void *arg, rt_spawn_opts_t *opts, rt_pid_t *pid);

/* ---- Messages ------------------------------------------------------------ */

/* A fresh message of kind RT_MSG_INFO with this tag, a = b = 0, no data.
 * NULL on ENOMEM. Any thread. */
rt_msg_t *rt_msg_new(uint32_t tag);
/* Frees a message that was not sent (or a received one the caller owns,
 * from rt_inbox_recv / rt_call_sync), with its data. Any thread. NULL ok. */
void rt_msg_free(rt_msg_t *m);
/* Sets m's payload; a previous payload is freed first. */
void rt_msg_set_data(rt_msg_t *m, void *data, rt_own_t own);
/* Takes ownership of m->data away from the message and returns it; the
 * caller now frees it (free() for RT_OWN_FREE, rt_rc_release for RT_OWN_RC). */
void *rt_msg_take(rt_msg_t *m);
/* The reason carried by an EXIT/DOWN message or an error REPLY/ACK
 * (borrowed from the message), else NULL. */
rt_reason_t *rt_msg_reason(const rt_msg_t *m);

/* Sends m (taken) to `to` as RT_MSG_INFO (handle_info). Returns RT_OK
 * (it is in the mailbox) or RT_ENOPROC (dropped, freed and counted).
 * Any thread. From a process, sending to a mailbox over the high
 * watermark pauses the sender after its callback (backpressure); from
 * other threads it never blocks. */
int rt_send_msg(rt_pid_t to, rt_msg_t *m);
int rt_send(rt_pid_t to, uint32_t tag, uint64_t a, uint64_t b);
/* The same as RT_MSG_CAST (handle_cast). */
int rt_cast_msg(rt_pid_t to, rt_msg_t *m);
int rt_cast(rt_pid_t to, uint32_t tag, uint64_t a, uint64_t b);

/* ---- Calls --------------------------------------------------------------- */

#define RT_DEFAULT_TIMEOUT 5000
#define RT_INFINITY (-1)

/* Process context. Sends req (taken) as a call and returns its ref in
 * *ref. The answer arrives as RT_MSG_REPLY with that ref: the callee's
 * reply, or RT_MF_ERROR with reason `timeout` after timeout_ms (a reply
 * that comes later is dropped) or with the callee's exit reason if it
 * died first. Returns RT_OK, RT_ECALLSELF, RT_ENOPROC (callee not alive:
 * nothing is sent), RT_ENOMEM, RT_ECONTEXT. */
int rt_call(rt_pid_t to, rt_msg_t *req, int timeout_ms, uint64_t *ref);

/* Process context. Until a message carrying `ref` (a reply, an ack, a
 * DOWN or a timer with that ref) has been handled, the process handles
 * nothing else; other messages wait, in order, and come after. System
 * signals (exit signals, links) are still acted on. */
void rt_await(uint64_t ref);

/* Answers a call (from any process or thread); takes reply, whose kind
 * becomes RT_MSG_REPLY. Returns RT_OK or RT_ENOPROC (caller gone). */
int rt_reply(rt_from_t from, rt_msg_t *reply);
int rt_reply_val(rt_from_t from, uint32_t tag, uint64_t a, uint64_t b);

/* External thread: a blocking call. Returns RT_OK with *reply (the
 * caller frees it with rt_msg_free), RT_ENOPROC, RT_ETIMEOUT, or RT_EEXIT
 * with *reply the error message (rt_msg_reason gives the callee's exit
 * reason; free it too). *reply is NULL for the other errors. */
int rt_call_sync(rt_pid_t to, rt_msg_t *req, int timeout_ms, rt_msg_t **reply);

/* ---- Exits, links, monitors ---------------------------------------------- */

rt_pid_t rt_self(void);          /* any thread: RT_NOPID outside a process */
bool rt_is_alive(rt_pid_t pid);  /* any thread; a snapshot */

/* Sends an exit signal (Erlang exit/2) to pid; borrows reason. Any thread.
 * As in Erlang: `normal` is ignored by a process that does not trap exits
 * (unless pid is the caller itself); `kill` cannot be trapped and the
 * target exits with `killed`; any other reason kills a non-trapping
 * process and reaches a trapping one as RT_MSG_EXIT. */
int rt_exit(rt_pid_t pid, rt_reason_t *reason);

/* Process context. Exit after this callback returns (gen_server's
 * {stop, Reason}); takes reason. */
void rt_stop(rt_reason_t *reason);
/* Process context. Exit now, unwinding the callback (longjmp): takes
 * reason. Anything the callback allocated and did not attach to its state
 * is lost, so attach before doing what may fail. */
_Noreturn void rt_fail(rt_reason_t *reason);
#define RT_ASSERT(cond)                                                       \
    do {                                                                      \
        if (__builtin_expect(!(cond), 0))                                     \
            rt_fail(rt_reason_fmt("assertion failed: %s (%s:%d)", #cond,      \
                                  __FILE__, __LINE__));                       \
    } while (0)

/* Process context. Links the caller and pid. If pid is not alive the
 * caller gets an exit signal with reason noproc (it dies with it unless it
 * traps exits) and RT_ENOPROC is returned. Linking twice is one link. */
int rt_link(rt_pid_t pid);
int rt_unlink(rt_pid_t pid);     /* process context */
/* Process context. Starts an independent monitor of pid and returns its
 * ref (never 0). When pid exits the caller gets RT_MSG_DOWN {ref, from =
 * pid, reason}; if it is not alive, a DOWN with reason noproc at once. */
uint64_t rt_monitor(rt_pid_t pid);
/* Process context. Removes the monitor; a DOWN already queued for it is
 * not delivered. Returns RT_OK or RT_ENOTFOUND. */
int rt_demonitor(uint64_t ref);
void rt_trap_exit(bool on);      /* process context */

/* Sends pid a request to switch to behaviour b, calling b->migrate on its
 * state with the old version (OTP code_change). Any thread. */
int rt_migrate(rt_pid_t pid, const rt_behaviour_t *b);

/* ---- Timers -------------------------------------------------------------- */

/* Delivers m (taken) to `to` after ms milliseconds as RT_MSG_TIMER with
 * m->ref set to the returned timer ref (never 0; 0 means ENOMEM or a dead
 * target, and m was freed). The timer is cancelled when `to` exits. Any
 * thread. */
uint64_t rt_send_after(int ms, rt_pid_t to, rt_msg_t *m);
/* Same, but the message carries `ref` (a call or monitor ref the target
 * awaits) instead of a fresh one; returns the timer's own handle. */
uint64_t rt_send_after_ref(int ms, rt_pid_t to, rt_msg_t *m, uint64_t ref);
/* Cancels a timer. RT_OK if it had not fired, RT_ENOTFOUND otherwise. Any
 * thread. */
int rt_cancel_timer(uint64_t timer);

/* A fresh unique reference (never 0). Any thread. */
uint64_t rt_make_ref(void);

/* ---- Registry -------------------------------------------------------------
 * Unique names -> pids. A name is removed when its process exits. */

/* Process context: registers the caller under name (copied). RT_ETAKEN
 * with *holder set when another live process holds it (holder may be
 * NULL). */
int rt_register(const char *name, rt_pid_t *holder);
int rt_unregister(const char *name);          /* process context, own names */
rt_pid_t rt_whereis(const char *name);        /* any thread; RT_NOPID if none */

/* ---- Pub/sub --------------------------------------------------------------
 * A process subscribes to topics; rt_publish delivers one RT_MSG_PUB to
 * every live subscriber, carrying the same payload (retained once per
 * subscriber, never copied). Subscriptions vanish with the process. */

int rt_subscribe(const char *topic);          /* process context; twice = once */
int rt_unsubscribe(const char *topic);        /* process context */
/* Any thread. payload is borrowed (each delivery retains it); it may be
 * NULL. The message has tag = tag, a = rt_topic_hash(topic), data =
 * payload (RT_OWN_RC). Returns the number of subscribers reached (>= 0)
 * or an error. */
int rt_publish(const char *topic, uint32_t tag, rt_rc_t *payload);
size_t rt_subscriber_count(const char *topic); /* any thread */
uint64_t rt_topic_hash(const char *topic);

/* ---- Inboxes: a non-scheduler thread acting as a process ------------------
 * Tests, main() and I/O threads receive messages through an inbox: a real
 * process (with a pid, links and monitors) whose messages are handed to
 * the thread that owns the inbox. */
typedef struct rt_inbox rt_inbox_t;

#define RT_INBOX_TRAP_EXIT 0x1u
/* External thread. Returns NULL on ENOMEM or if the runtime is stopped. */
rt_inbox_t *rt_inbox_open(uint32_t flags);
rt_pid_t rt_inbox_pid(const rt_inbox_t *ib);
/* The next message (caller owns it: rt_msg_free), or NULL after
 * timeout_ms (-1: wait forever). */
rt_msg_t *rt_inbox_recv(rt_inbox_t *ib, int timeout_ms);
/* The first queued message with this kind (0 = any) and ref (0 = any);
 * others stay queued, in order. */
rt_msg_t *rt_inbox_recv_match(rt_inbox_t *ib, uint16_t kind, uint64_t ref, int timeout_ms);
size_t rt_inbox_pending(rt_inbox_t *ib);
/* Link/monitor on the inbox's behalf (done by its process, in order). */
int rt_inbox_link(rt_inbox_t *ib, rt_pid_t pid);
uint64_t rt_inbox_monitor(rt_inbox_t *ib, rt_pid_t pid);
/* rt_spawn with the inbox as the caller: LINK, MONITOR and ACK refer to
 * the inbox's process. */
int rt_inbox_spawn(rt_inbox_t *ib, const rt_behaviour_t *b, void *arg,
                   rt_spawn_opts_t *opts, rt_pid_t *pid);
/* Ends the inbox's process (reason normal) and frees what is queued. */
void rt_inbox_close(rt_inbox_t *ib);

/* ---- Executors: processes pinned to a thread that is not a scheduler -------
 * An I/O thread (a libuv loop) owns sockets that only it may touch. A
 * process spawned with opts->exec runs only on that thread: when it
 * becomes runnable the runtime queues it on the executor and calls
 * wake(), and the thread calls rt_exec_run() to give the queued processes
 * their turns. Everything else about such a process is ordinary (links,
 * monitors, calls, timers, pub/sub). The executor is caller-allocated and
 * must outlive every process pinned to it. */
typedef struct rt_exec {
    /* Called from any thread when the queue goes from empty to non-empty;
     * must be thread-safe and cheap (uv_async_send is). */
    void (*wake)(struct rt_exec *e);
    void *data;                      /* the owner's */
    /* runtime-private */
    pthread_mutex_t mu;
    void *head, *tail;
    _Atomic uint32_t len;
} rt_exec_t;

/* Any thread. Returns RT_OK. */
int rt_exec_init(rt_exec_t *e, void (*wake)(rt_exec_t *e), void *data);
/* The executor's thread only. Gives up to max queued processes one turn
 * each and returns how many are still queued (call again, or wait for
 * the next wake). */
size_t rt_exec_run(rt_exec_t *e, size_t max);
/* After every process pinned to it has exited. */
void rt_exec_destroy(rt_exec_t *e);
/* The executor's thread only, outside any process turn (e.g. in a libuv
 * read callback): runs fn(state, arg) as process pid, which must be
 * pinned to e. Inside fn everything a callback may do works (rt_self,
 * rt_call, rt_subscribe, rt_stop, rt_fail); a failure or rt_stop ends the
 * process as it would in a callback. Returns RT_OK, RT_ENOPROC (not
 * alive) or RT_EINVAL (not pinned to e). */
int rt_exec_call(rt_exec_t *e, rt_pid_t pid, void (*fn)(void *state, void *arg), void *arg);

/* ---- Introspection ------------------------------------------------------- */

typedef struct rt_proc_info {
    rt_pid_t pid;
    rt_pid_t parent;
    const char *behaviour;   /* static name */
    char name[64];           /* first registered name, or "" */
    uint32_t mailbox_len;
    uint32_t restarts;
    uint64_t handled;        /* messages handled */
    size_t memory;           /* bytes: process, extension, queued messages, state */
    bool trap_exit;
} rt_proc_info_t;

typedef struct rt_stats {
    uint64_t processes;      /* alive now */
    uint64_t spawned;
    uint64_t exited;
    uint64_t messages;       /* sent, all kinds */
    uint64_t dropped;        /* to dead pids */
    uint64_t restarts;       /* by supervisors */
    int64_t msgs_live;       /* allocated and not yet freed; includes the
                                last message each live process handled
                                (it stays the mailbox's tail until the
                                next one arrives) */
} rt_stats_t;

/* Any thread. A snapshot (fields are read without stopping anyone). */
int rt_process_info(rt_pid_t pid, rt_proc_info_t *out);
/* Fills up to cap entries, sets *n to the number of live processes (which
 * may exceed cap). Any thread. */
int rt_processes(rt_proc_info_t *out, size_t cap, size_t *n);
void rt_get_stats(rt_stats_t *out);
/* Counts one supervisor restart in rt_stats_t.restarts. Any thread. */
void rt_note_restart(void);

#endif
