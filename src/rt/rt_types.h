/*
 * rt_types.h — the vocabulary of the runtime: pids, errors, exit reasons,
 * reference-counted payloads and messages.
 *
 * Everything here is plain data. The rules that use it (who may send,
 * who frees) are in rt.h; this header only fixes the shapes so every
 * module agrees on them.
 */
#ifndef ROOST_RT_TYPES_H
#define ROOST_RT_TYPES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A pid is 64 bits: the low 32 are the slot in the process table, the high
 * 32 the slot's generation. A slot is reused with a new generation, so a
 * message to a dead process can never reach the next one in its slot.
 * 0 is never a valid pid. */
typedef uint64_t rt_pid_t;
#define RT_NOPID ((rt_pid_t)0)

/* Errors: one list for the whole runtime, negative, 0 is success. */
typedef enum rt_err {
    RT_OK        = 0,
    RT_ENOMEM    = -1,  /* allocation failed; nothing was done */
    RT_ENOPROC   = -2,  /* no live process with that pid */
    RT_ECALLSELF = -3,  /* a process called itself */
    RT_ETAKEN    = -4,  /* registry name already held */
    RT_ENOTFOUND = -5,  /* no such name / ref / child */
    RT_ETIMEOUT  = -6,  /* a call or a wait ran out of time */
    RT_ECONTEXT  = -7,  /* called from the wrong kind of thread */
    RT_EINVAL    = -8,  /* bad argument */
    RT_ELIMIT    = -9,  /* a table is full (process table, etc.) */
    RT_EEXIT     = -10, /* a call's callee exited; the reason says why */
    RT_ESTATE    = -11, /* runtime not started, or shutting down */
} rt_err_t;

/* Returns a static string naming an error code. */
const char *rt_strerror(int err);

/* ---- Reference-counted objects --------------------------------------
 * Embed an rt_rc_t in any object that is shared between processes (a
 * broadcast frame, a room snapshot). The last release calls dtor, which
 * frees the enclosing object (use container_of / RT_CONTAINER_OF).
 * retain/release are safe from any thread. */
typedef struct rt_rc {
    _Atomic uint32_t refs;
    void (*dtor)(struct rt_rc *self);
} rt_rc_t;

#define RT_CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

void rt_rc_init(rt_rc_t *rc, void (*dtor)(rt_rc_t *)); /* refs = 1 */
void rt_rc_retain(rt_rc_t *rc);
void rt_rc_release(rt_rc_t *rc);

/* A refcounted immutable byte buffer (one allocation). */
typedef struct rt_buf {
    rt_rc_t rc;
    size_t len;
    char data[];
} rt_buf_t;

/* Returns a buffer holding a copy of data (len bytes, plus a NUL after
 * them for convenience), refs = 1, or NULL on ENOMEM. data may be NULL
 * to get an uninitialised buffer to fill before sharing it. */
rt_buf_t *rt_buf_new(const void *data, size_t len);
static inline void rt_buf_retain(rt_buf_t *b) { rt_rc_retain(&b->rc); }
static inline void rt_buf_release(rt_buf_t *b) { rt_rc_release(&b->rc); }

/* ---- Exit reasons -----------------------------------------------------
 * Erlang reasons are terms; ours are an immutable refcounted object with
 * a code and a text. The well-known ones are static (never freed; retain
 * and release on them do nothing), so the common paths allocate nothing. */
typedef enum rt_reason_code {
    RT_R_NORMAL = 0,
    RT_R_SHUTDOWN,  /* orderly stop asked by a supervisor or the runtime */
    RT_R_KILL,      /* untrappable when sent with rt_exit(); see rt.h */
    RT_R_KILLED,    /* what a process killed by `kill` exits with */
    RT_R_NOPROC,    /* the other process did not exist */
    RT_R_TIMEOUT,   /* a call timed out */
    RT_R_CALLSELF,
    RT_R_OTHER,     /* anything else: see text */
} rt_reason_code_t;

typedef struct rt_reason {
    rt_rc_t rc;           /* refs == UINT32_MAX: static, never freed */
    rt_reason_code_t code;
    char text[];          /* "normal", "shutdown", ..., or the custom text */
} rt_reason_t;

extern rt_reason_t *const RT_NORMAL;
extern rt_reason_t *const RT_SHUTDOWN;
extern rt_reason_t *const RT_KILL;
extern rt_reason_t *const RT_KILLED;
extern rt_reason_t *const RT_NOPROC_REASON;
extern rt_reason_t *const RT_TIMEOUT_REASON;
extern rt_reason_t *const RT_CALLSELF_REASON;

/* A custom reason (code RT_R_OTHER) with a copy of text, refs = 1.
 * Texts equal to a well-known name ("normal", "shutdown", "kill",
 * "killed", ...) return the static one instead, so comparisons by code
 * work whatever way a reason was made. Never returns NULL: on ENOMEM it
 * returns a static "enomem" reason. */
rt_reason_t *rt_reason_new(const char *text);
rt_reason_t *rt_reason_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline rt_reason_t *rt_reason_retain(rt_reason_t *r) { rt_rc_retain(&r->rc); return r; }
static inline void rt_reason_release(rt_reason_t *r) { rt_rc_release(&r->rc); }
static inline bool rt_reason_is(const rt_reason_t *r, rt_reason_code_t c) { return r->code == c; }

/* ---- Messages -----------------------------------------------------------
 * A message is one 64-byte block from a pool. The sender owns it until
 * rt_send*() returns (whatever the result: a message to a dead pid is
 * freed by the runtime), the receiver borrows it during the callback and
 * the runtime frees it afterwards, with whatever `data` it owns. */
typedef enum rt_msg_kind {
    RT_MSG_INFO = 1,   /* plain send (Erlang `Pid ! Msg`) -> handle_info */
    RT_MSG_CAST,       /* rt_cast -> handle_cast */
    RT_MSG_CALL,       /* rt_call -> handle_call */
    RT_MSG_REPLY,      /* answer to one of our calls -> handle_info; see rt_msg_reply_* */
    RT_MSG_EXIT,       /* a trapped exit signal -> handle_info: from, reason */
    RT_MSG_DOWN,       /* a monitor fired -> handle_info: ref, from, reason */
    RT_MSG_TIMER,      /* an rt_send_after message -> handle_info (ref = timer ref) */
    RT_MSG_PUB,        /* a pub/sub delivery -> handle_info (data = shared payload) */
    RT_MSG_ACK,        /* an init acknowledgement (rt_start) -> handle_info */
    /* Kinds below are system signals: the runtime handles them itself and
     * never shows them to a behaviour. */
    RT_MSG__SYS = 32,
    RT_MSG__INIT,
    RT_MSG__LINK,
    RT_MSG__UNLINK,
    RT_MSG__MONITOR,
    RT_MSG__DEMONITOR,
    RT_MSG__EXITSIG,   /* exit signal from a link (flags: RT_MF_LINK) or rt_exit() */
    RT_MSG__MIGRATE,
    RT_MSG__STOP,
    RT_MSG__REPLIED,   /* a call this process kept (NOREPLY) was answered by another */
} rt_msg_kind_t;

/* What `data` is, and so what freeing the message does with it. */
typedef enum rt_own {
    RT_OWN_NONE = 0,   /* borrowed or static: not touched */
    RT_OWN_FREE,       /* malloc'd: free(data) */
    RT_OWN_RC,         /* points at an rt_rc_t: rt_rc_release(data) */
} rt_own_t;

/* flags */
#define RT_MF_ERROR   0x01u  /* RT_MSG_REPLY / RT_MSG_ACK: failed; data is an rt_reason_t */
#define RT_MF_LINK    0x02u  /* RT_MSG__EXITSIG came from a link, not rt_exit() */

typedef struct rt_mnode {
    _Atomic(struct rt_mnode *) next;
} rt_mnode_t;

typedef struct rt_msg {
    rt_mnode_t node;    /* mailbox link: runtime only */
    rt_pid_t to;        /* the incarnation it is for */
    rt_pid_t from;      /* sender (RT_NOPID from a non-process thread) */
    uint64_t ref;       /* call / monitor / timer reference, or 0 */
    uint16_t kind;      /* rt_msg_kind_t */
    uint8_t own;        /* rt_own_t for data */
    uint8_t flags;      /* RT_MF_* */
    uint32_t tag;       /* the application's message type */
    uint64_t a, b;      /* two inline words of payload */
    void *data;         /* optional payload, freed according to `own` */
} rt_msg_t;

_Static_assert(sizeof(rt_msg_t) == 64, "a message is one cache line");

#endif
