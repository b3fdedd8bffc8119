/*
 * rt_sup.h — supervisors (OTP supervisor on roost's runtime).
 *
 * A supervisor is an ordinary process with the behaviour rt_sup_behaviour.
 * It traps exits, starts its children in order (each start waits for the
 * child's init acknowledgement, as proc_lib does), restarts them by
 * strategy and restart type, counts restarts against intensity/period in
 * amortised O(1), and when that is exceeded shuts every child down and
 * exits with reason `shutdown`, so its own supervisor sees it fail
 * (escalation). Children stop in reverse start order: exit(shutdown),
 * then `kill` after the child's shutdown timeout.
 *
 * Requests are calls (tags RT_SUP_*), so a process uses rt_call with the
 * request builders below and gets an RT_MSG_REPLY; external threads use
 * the *_sync helpers. While a supervisor starts or stops a child it
 * handles nothing else: requests and exits wait in its mailbox.
 *
 * Parent. A supervisor's parent is the process that spawned it (the
 * `parent` rt_process_info shows during its init). An exit signal from the
 * parent, whatever its reason (normal included, as in gen_server), makes
 * it stop its children in reverse order and exit with that reason. Exit
 * signals from anybody else are ignored unless they come from a current
 * child (which is then handled by strategy) or are `kill`. A supervisor
 * started with rt_sup_start_sync has no living parent: stop it with
 * RT_SUP_STOP / rt_sup_stop_sync (or kill it).
 *
 * Ownership of child args. A supervisor owns the arg of each child from
 * its own init (children of the spec) or from the moment it handles a
 * start request, and calls arg_free exactly once when it forgets the
 * child: delete_child, a temporary child that exited or was terminated,
 * a dynamic child that is not restarted or was terminated, a failed
 * start_child/start_dyn, a failed supervisor init, or supervisor exit.
 * So a spec that is reused across restarts of a child supervisor (the
 * usual case: the parent's child spec points at a static rt_sup_spec_t)
 * must have arg_free = NULL for its children: each incarnation would
 * free them otherwise. Args are only guaranteed alive while a child's
 * init runs (rt.h: init borrows arg), not for the child's whole life.
 */
#ifndef ROOST_RT_SUP_H
#define ROOST_RT_SUP_H

#include "rt/rt.h"

typedef enum rt_sup_strategy {
    RT_ONE_FOR_ONE = 0,
    RT_ONE_FOR_ALL,
    RT_REST_FOR_ONE,
    RT_SIMPLE_ONE_FOR_ONE,   /* dynamic: one child spec, children added at run time */
} rt_sup_strategy_t;

typedef enum rt_restart {
    RT_PERMANENT = 0,   /* always restarted */
    RT_TRANSIENT,       /* restarted unless it exits normal or shutdown */
    RT_TEMPORARY,       /* never restarted */
} rt_restart_t;

#define RT_SHUTDOWN_BRUTAL   0    /* shutdown_ms: kill at once */
#define RT_SHUTDOWN_INFINITY (-1) /* shutdown_ms: wait as long as it takes */

typedef struct rt_child_spec {
    const char *id;                  /* copied; unique among the children */
    const rt_behaviour_t *behaviour;
    void *arg;                       /* passed to init at every (re)start; the
                                        supervisor keeps it for the child's life */
    void (*arg_free)(void *arg);     /* called when the supervisor forgets the
                                        child (deleted, or supervisor exit); may be NULL */
    rt_restart_t restart;
    int shutdown_ms;                 /* RT_SHUTDOWN_BRUTAL, ms, RT_SHUTDOWN_INFINITY;
                                        default for 0 with is_supervisor: infinity */
    bool is_supervisor;
    uint32_t spawn_flags;            /* e.g. RT_SPAWN_TRAP_EXIT */
    const char *name;                /* register the child under this name (copied), or NULL */
} rt_child_spec_t;

typedef struct rt_sup_spec {
    rt_sup_strategy_t strategy;
    uint32_t intensity;              /* max restarts within period; with period 0: OTP defaults 1 in 5000 ms */
    uint32_t period_ms;
    const rt_child_spec_t *children; /* copied during init; for SIMPLE_ONE_FOR_ONE exactly one, the template */
    size_t nchildren;
} rt_sup_spec_t;

/* The behaviour; its init arg is an rt_sup_spec_t* (borrowed, copied). A
 * child that fails in init makes the supervisor's start fail with that
 * child's reason, after stopping the children already started.
 *
 * Note: a callback cannot block, so the supervisor acknowledges its init
 * (RT_MSG_ACK) once the first child is being started, and starts the
 * others right after, before handling any other message; a failure there
 * makes it exit with the child's reason. Its own supervisor and
 * rt_sup_start_sync wait for that second phase (an internal call answered
 * once all initial children run), so for them the start fails with the
 * child's reason exactly as in OTP. A process that spawns rt_sup_behaviour
 * by hand with RT_SPAWN_ACK sees only the first phase. */
extern const rt_behaviour_t rt_sup_behaviour;

/* Request tags (rt_call to a supervisor). Replies: tag = RT_OK or an rt_err_t
 * (as (uint32_t)(int32_t)err); `a` = the child's pid where there is one;
 * error reasons in data (RT_OWN_RC, an rt_reason_t). Errors:
 *   RT_EEXIT     the child failed in init; data = its reason
 *   RT_ETAKEN    start_child: the id exists (a = its pid if it runs)
 *   RT_ENOTFOUND no child with that id / pid
 *   RT_ESTATE    delete/restart of a running (or restarting) child; any
 *                request while a dynamic supervisor stops all its
 *                children before exiting (a start_dyn arg is not taken)
 *   RT_EINVAL    a request that does not fit the supervisor's strategy
 *                (start_dyn to a static supervisor: its arg is not taken;
 *                a spec to a dynamic one, delete/restart on a dynamic one)
 *   RT_ENOMEM    nothing was done (the arg is still freed, see above) */
enum rt_sup_tag {
    RT_SUP_START_CHILD = 0x53500001u, /* data: rt_child_spec_t copy (static) or arg (simple) */
    RT_SUP_TERMINATE_CHILD,           /* data: id (static) / a: pid (simple) */
    RT_SUP_DELETE_CHILD,              /* data: id; the child must be stopped */
    RT_SUP_RESTART_CHILD,             /* data: id; the child must be stopped */
    RT_SUP_WHICH_CHILDREN,            /* reply data: rt_sup_children_t (RT_OWN_FREE) */
    RT_SUP_COUNT_CHILDREN,            /* reply a: children, b: running */
    RT_SUP_STOP,                      /* stop children in reverse order, exit shutdown, then reply */
};

typedef struct rt_sup_child_info {
    char id[64];
    rt_pid_t pid;                    /* RT_NOPID when not running */
    uint32_t restarts;
    bool is_supervisor;
} rt_sup_child_info_t;

typedef struct rt_sup_children {
    size_t n;
    rt_sup_child_info_t child[];
} rt_sup_children_t;

/* Request builders (any thread); NULL on ENOMEM (or a bad spec), and then
 * nothing is taken. The spec is copied, and the request owns spec->arg:
 * if it is never handled (dead supervisor) freeing the message calls
 * arg_free. For a SIMPLE_ONE_FOR_ONE supervisor use rt_sup_req_start_dyn:
 * arg is handed to the template's init and freed with the template's
 * arg_free when the child is forgotten; the template's own arg is not
 * used. A start_dyn request that is never handled (RT_ENOPROC, or the
 * supervisor died with it queued) does not free arg: the request cannot
 * know the template. rt_sup_req_terminate takes an id (static) or, with
 * id NULL, a pid (either kind of supervisor). */
rt_msg_t *rt_sup_req_start_child(const rt_child_spec_t *spec);
rt_msg_t *rt_sup_req_start_dyn(void *arg);
rt_msg_t *rt_sup_req_terminate(const char *id, rt_pid_t pid);
rt_msg_t *rt_sup_req_delete(const char *id);
rt_msg_t *rt_sup_req_restart(const char *id);

/* External thread helpers; they wait without a time limit (OTP's
 * infinity). rt_sup_start_sync starts a supervisor that is linked to
 * nobody and returns once its initial children run; on RT_EEXIT *why (may
 * be NULL) gets the failure reason (caller releases it). The start
 * helpers return RT_EEXIT with the child's reason when its init failed
 * (or with the supervisor's when the supervisor died first).
 * rt_sup_start_child_sync takes spec->arg whatever it returns.
 * rt_sup_stop_sync returns once the supervisor has exited (RT_OK),
 * RT_ENOPROC, or RT_ETIMEOUT. */
int rt_sup_start_sync(const rt_sup_spec_t *spec, rt_pid_t *sup, rt_reason_t **why);
int rt_sup_start_child_sync(rt_pid_t sup, const rt_child_spec_t *spec,
                            rt_pid_t *child, rt_reason_t **why);
int rt_sup_start_dyn_sync(rt_pid_t sup, void *arg, rt_pid_t *child, rt_reason_t **why);
int rt_sup_terminate_child_sync(rt_pid_t sup, const char *id, rt_pid_t pid);
int rt_sup_delete_child_sync(rt_pid_t sup, const char *id);
int rt_sup_restart_child_sync(rt_pid_t sup, const char *id, rt_pid_t *child);
/* Returns the children (caller frees with free()), or NULL. */
rt_sup_children_t *rt_sup_which_children_sync(rt_pid_t sup);
int rt_sup_stop_sync(rt_pid_t sup, int timeout_ms);

#endif
