/*
 * test_rt_links.c — links, monitors, exit signals and trap_exit (rt.h),
 * checked against Erlang's exit-signal table, one test per row.
 *
 * The test thread acts as a process through an inbox; the processes under
 * test are "puppets" that run a function the test sends them and report
 * every other message they handle. Callbacks record failures with
 * CHECK(), never with Criterion's assertions. Waits are receives with a
 * timeout; "nothing else arrived" is shown with a sentinel timer.
 */
#include "rt_harness.h"

/* ---- Helpers ------------------------------------------------------------------------- */

enum {
    T_LINKED = 0x100, /* result: a = rt_link's return */
    T_UNLINKED,
    T_MONITORED,      /* result: a = monitor ref */
    T_DEMONITORED,    /* result: a = rt_demonitor's return */
    T_EXIT_SENT,
    T_SPUN,           /* result: a = 1 if the DOWN was queued in time */
    T_SPINNING,
    T_HELD,
};

/* Reasons by index, so they can travel in a message word. */
enum { R_NORMAL, R_KILL, R_KILLED, R_BOOM, R_SHUTDOWN, R_EXACT };
#define EXACT_TEXT "exact: reason / with spaces, 123 and \xc3\xbc"

static rt_reason_t *reason_of(uint64_t i)
{
    switch (i) {
    case R_NORMAL: return RT_NORMAL;
    case R_KILL: return RT_KILL;
    case R_KILLED: return RT_KILLED;
    case R_SHUTDOWN: return RT_SHUTDOWN;
    case R_EXACT: return rt_reason_new(EXACT_TEXT);
    default: return rt_reason_new("boom");
    }
}

static void fn_link(puppet_t *p, uint64_t pid) { result(T_LINKED, (uint64_t)(int64_t)rt_link(pid), 0); }

static void fn_unlink(puppet_t *p, uint64_t pid)
{
    result(T_UNLINKED, (uint64_t)(int64_t)rt_unlink(pid), 0);
}

static void fn_link_and_monitor(puppet_t *p, uint64_t pid)
{
    result(T_LINKED, (uint64_t)(int64_t)rt_link(pid), 0);
    result(T_MONITORED, rt_monitor(pid), 0);
}

static void fn_monitor(puppet_t *p, uint64_t pid) { result(T_MONITORED, rt_monitor(pid), 0); }

static void fn_demonitor(puppet_t *p, uint64_t ref)
{
    result(T_DEMONITORED, (uint64_t)(int64_t)rt_demonitor(ref), 0);
}

static void fn_trap(puppet_t *p, uint64_t on) { rt_trap_exit(on != 0); result(T_LINKED, 0, 0); }

static void fn_stop(puppet_t *p, uint64_t why) { rt_stop(reason_of(why)); }

static void fn_fail(puppet_t *p, uint64_t why) { rt_fail(reason_of(why)); }

/* p->v[0] = target, arg = reason index */
static void fn_exit_to(puppet_t *p, uint64_t why)
{
    rt_reason_t *r = reason_of(why);
    int rc = rt_exit((rt_pid_t)p->v[0], r);
    rt_reason_release(r);
    result(T_EXIT_SENT, (uint64_t)(int64_t)rc, 0);
}

static void fn_set_target(puppet_t *p, uint64_t pid) { p->v[0] = pid; }

static void fn_exit_self(puppet_t *p, uint64_t why)
{
    rt_reason_t *r = reason_of(why);
    rt_exit(rt_self(), r);
    rt_reason_release(r);
}

static void expect_result(rt_pid_t by, uint32_t tag, report_t *r)
{
    want_report((want_t){.kind = K_RESULT, .tag = tag, .by = by}, r);
}

static void expect_down_reason(uint64_t mref, const char *text)
{
    char why[200];
    want_down(mref, why, sizeof why);
    cr_assert_str_eq(why, text);
}

/* Links b to a (b does the linking and also monitors a, so b sees a's
 * DOWN right after any exit signal from a). a has handled the link once
 * this returns. */
static void link_pair(rt_pid_t a, rt_pid_t b)
{
    report_t r;
    run_in(b, fn_link_and_monitor, a);
    expect_result(b, T_LINKED, &r);
    cr_assert_eq((int)(int64_t)r.a, RT_OK);
    expect_result(b, T_MONITORED, &r);
    cr_assert_neq(r.a, 0);
    ping(a);
}

/* A dies with a link signal of reason `why` (caused by `how`); returns
 * b's fate in the test's terms. */
typedef enum { HOW_STOP, HOW_FAIL, HOW_EXIT_KILL } how_t;

static void kill_a(rt_pid_t a, uint64_t amref, how_t how, uint64_t why, const char *a_reason)
{
    if (how == HOW_STOP)
        run_in(a, fn_stop, why);
    else if (how == HOW_FAIL)
        run_in(a, fn_fail, why);
    else
        cr_assert_eq(rt_exit(a, RT_KILL), RT_OK);
    expect_down_reason(amref, a_reason);
}

/* A link signal with a_reason reaches a process that does not trap: it
 * dies with dies_with, or survives when dies_with is NULL. */
static void link_row_nontrap(how_t how, uint64_t why, const char *a_reason, const char *dies_with)
{
    uint64_t amref, bmref;
    rt_pid_t a = spawn_puppet(0, &amref);
    rt_pid_t b = spawn_puppet(0, &bmref);
    link_pair(a, b);
    kill_a(a, amref, how, why, a_reason);
    if (dies_with) {
        expect_down_reason(bmref, dies_with);
        cr_assert_not(rt_is_alive(b));
    } else {
        report_t r;
        want_report((want_t){.by = b}, &r); /* b's monitor of a */
        cr_assert_eq(r.kind, RT_MSG_DOWN, "b got kind %u before a's DOWN", r.kind);
        cr_assert_str_eq(r.reason, a_reason);
        ping(b);
        cr_assert(rt_is_alive(b));
    }
    ASSERT_NO_BAD_CHECKS();
}

/* The same for a trapping process: it gets RT_MSG_EXIT {from a, reason}
 * and lives. */
static void link_row_trap(how_t how, uint64_t why, const char *a_reason, int code)
{
    uint64_t amref, bmref;
    rt_pid_t a = spawn_puppet(0, &amref);
    rt_pid_t b = spawn_puppet(RT_SPAWN_TRAP_EXIT, &bmref);
    link_pair(a, b);
    kill_a(a, amref, how, why, a_reason);
    report_t r;
    want_report((want_t){.by = b}, &r);
    cr_assert_eq(r.kind, RT_MSG_EXIT, "a trapping process got kind %u, not EXIT", r.kind);
    cr_assert_eq(r.from, a);
    cr_assert_str_eq(r.reason, a_reason);
    cr_assert_eq(r.rcode, code);
    want_report((want_t){.by = b}, &r);
    cr_assert_eq(r.kind, RT_MSG_DOWN);
    ping(b);
    cr_assert(rt_is_alive(b));
    ASSERT_NO_BAD_CHECKS();
}

/* rt_exit(b, reason) sent by process a. */
static void exit_row(bool trap, uint64_t why, const char *dies_with, const char *exit_msg, int code)
{
    uint64_t bmref;
    rt_pid_t a = spawn_puppet(0, NULL);
    rt_pid_t b = spawn_puppet(0, &bmref);
    report_t r;
    if (trap) {
        run_in(b, fn_trap, 1);
        expect_result(b, T_LINKED, &r);
    }
    run_in(a, fn_set_target, b);
    run_in(a, fn_exit_to, why);
    expect_result(a, T_EXIT_SENT, &r);
    cr_assert_eq((int)(int64_t)r.a, RT_OK);
    if (dies_with) {
        expect_down_reason(bmref, dies_with);
        cr_assert_not(rt_is_alive(b));
    } else if (exit_msg) {
        want_report((want_t){.by = b}, &r);
        cr_assert_eq(r.kind, RT_MSG_EXIT, "got kind %u, not EXIT", r.kind);
        cr_assert_eq(r.from, a);
        cr_assert_str_eq(r.reason, exit_msg);
        cr_assert_eq(r.rcode, code);
        expect_sentinel_next(b, 0);
        cr_assert(rt_is_alive(b));
    } else {
        /* Ignored: the signal was queued before this ping. */
        expect_sentinel_next(b, 0);
        cr_assert(rt_is_alive(b));
    }
    ASSERT_NO_BAD_CHECKS();
}

/* ---- Erlang's exit-signal table: link signals ------------------------------------------- */

#define LINKS_TEST(name) Test(links, name, .init = setup, .fini = teardown, .timeout = 60)

LINKS_TEST(link_normal_to_nontrapping_is_ignored)
{
    link_row_nontrap(HOW_STOP, R_NORMAL, "normal", NULL);
}

LINKS_TEST(link_normal_to_trapping_is_an_exit_message)
{
    link_row_trap(HOW_STOP, R_NORMAL, "normal", RT_R_NORMAL);
}

LINKS_TEST(link_killed_to_nontrapping_kills_with_killed)
{
    link_row_nontrap(HOW_EXIT_KILL, 0, "killed", "killed");
}

LINKS_TEST(link_killed_to_trapping_is_an_exit_message)
{
    link_row_trap(HOW_EXIT_KILL, 0, "killed", RT_R_KILLED);
}

LINKS_TEST(link_kill_is_an_ordinary_reason_for_nontrapping)
{
    link_row_nontrap(HOW_STOP, R_KILL, "kill", "kill");
}

LINKS_TEST(link_kill_is_an_ordinary_reason_for_trapping)
{
    link_row_trap(HOW_STOP, R_KILL, "kill", RT_R_KILL);
}

LINKS_TEST(link_other_reason_kills_nontrapping_with_that_reason)
{
    link_row_nontrap(HOW_FAIL, R_BOOM, "boom", "boom");
}

LINKS_TEST(link_other_reason_to_trapping_is_an_exit_message)
{
    link_row_trap(HOW_FAIL, R_BOOM, "boom", RT_R_OTHER);
}

LINKS_TEST(link_shutdown_kills_nontrapping_with_shutdown)
{
    link_row_nontrap(HOW_STOP, R_SHUTDOWN, "shutdown", "shutdown");
}

/* ---- Erlang's exit-signal table: rt_exit ------------------------------------------------- */

LINKS_TEST(exit_normal_to_nontrapping_is_ignored) { exit_row(false, R_NORMAL, NULL, NULL, 0); }

LINKS_TEST(exit_normal_to_trapping_is_an_exit_message)
{
    exit_row(true, R_NORMAL, NULL, "normal", RT_R_NORMAL);
}

LINKS_TEST(exit_kill_to_nontrapping_kills_with_killed)
{
    exit_row(false, R_KILL, "killed", NULL, 0);
}

LINKS_TEST(exit_kill_cannot_be_trapped)
{
    exit_row(true, R_KILL, "killed", NULL, 0);
}

LINKS_TEST(exit_other_reason_kills_nontrapping_with_that_reason)
{
    exit_row(false, R_BOOM, "boom", NULL, 0);
}

LINKS_TEST(exit_other_reason_to_trapping_is_an_exit_message)
{
    exit_row(true, R_BOOM, NULL, "boom", RT_R_OTHER);
}

LINKS_TEST(exit_killed_is_an_ordinary_reason_for_nontrapping)
{
    exit_row(false, R_KILLED, "killed", NULL, 0);
}

LINKS_TEST(exit_killed_is_an_ordinary_reason_for_trapping)
{
    exit_row(true, R_KILLED, NULL, "killed", RT_R_KILLED);
}

LINKS_TEST(exit_normal_to_self_ends_a_nontrapping_process)
{
    uint64_t mref;
    rt_pid_t b = spawn_puppet(0, &mref);
    run_in(b, fn_exit_self, R_NORMAL);
    expect_down_reason(mref, "normal");
    cr_assert_not(rt_is_alive(b));
}

LINKS_TEST(exit_from_an_external_thread)
{
    uint64_t mref;
    rt_pid_t b = spawn_puppet(0, &mref);
    rt_reason_t *r = rt_reason_new("from_outside");
    cr_assert_eq(rt_exit(b, r), RT_OK);
    rt_reason_release(r);
    expect_down_reason(mref, "from_outside");
    cr_assert_eq(rt_exit(b, RT_KILL), RT_ENOPROC);
}

LINKS_TEST(trap_exit_can_be_switched_off_again)
{
    uint64_t mref;
    rt_pid_t b = spawn_puppet(RT_SPAWN_TRAP_EXIT, &mref);
    report_t r;
    run_in(b, fn_trap, 0);
    expect_result(b, T_LINKED, &r);
    rt_proc_info_t info;
    cr_assert_eq(rt_process_info(b, &info), RT_OK);
    cr_assert_not(info.trap_exit);
    rt_reason_t *why = rt_reason_new("boom");
    cr_assert_eq(rt_exit(b, why), RT_OK);
    rt_reason_release(why);
    expect_down_reason(mref, "boom");
}

/* ---- Links -------------------------------------------------------------------------------- */

LINKS_TEST(links_are_bidirectional)
{
    /* b links to a; then b dies and takes a with it. */
    uint64_t amref, bmref;
    rt_pid_t a = spawn_puppet(0, &amref);
    rt_pid_t b = spawn_puppet(0, &bmref);
    report_t r;
    run_in(b, fn_link, a);
    expect_result(b, T_LINKED, &r);
    cr_assert_eq((int)(int64_t)r.a, RT_OK);
    ping(a);
    run_in(b, fn_fail, R_BOOM);
    expect_down_reason(bmref, "boom");
    expect_down_reason(amref, "boom");
}

LINKS_TEST(an_inbox_can_link_and_trap)
{
    rt_inbox_t *tib = rt_inbox_open(RT_INBOX_TRAP_EXIT);
    cr_assert_not_null(tib);
    uint64_t amref;
    rt_pid_t a = spawn_puppet(0, &amref);
    cr_assert_eq(rt_inbox_link(tib, a), RT_OK);
    ping(a);
    run_in(a, fn_fail, R_BOOM);
    expect_down_reason(amref, "boom");
    rt_msg_t *m = rt_inbox_recv_match(tib, RT_MSG_EXIT, 0, WAIT_MS);
    cr_assert_not_null(m);
    cr_assert_eq(m->from, a);
    cr_assert_str_eq(rt_msg_reason(m)->text, "boom");
    rt_msg_free(m);
    rt_inbox_close(tib);
}

LINKS_TEST(linking_twice_is_one_link)
{
    uint64_t amref, bmref;
    rt_pid_t a = spawn_puppet(0, &amref);
    rt_pid_t b = spawn_puppet(RT_SPAWN_TRAP_EXIT, &bmref);
    report_t r;
    link_pair(a, b);
    run_in(b, fn_link, a);
    expect_result(b, T_LINKED, &r);
    cr_assert_eq((int)(int64_t)r.a, RT_OK);
    ping(a);
    run_in(a, fn_fail, R_BOOM);
    expect_down_reason(amref, "boom");
    want_report((want_t){.by = b}, &r);
    cr_assert_eq(r.kind, RT_MSG_EXIT);
    want_report((want_t){.by = b}, &r);
    cr_assert_eq(r.kind, RT_MSG_DOWN, "a second EXIT (kind %u) for a double link", r.kind);

    /* Linked twice, unlinked once: no link is left. */
    uint64_t cmref;
    rt_pid_t c = spawn_puppet(0, &cmref);
    link_pair(c, b);
    run_in(b, fn_link, c);
    expect_result(b, T_LINKED, &r);
    run_in(b, fn_unlink, c);
    expect_result(b, T_UNLINKED, &r);
    cr_assert_eq((int)(int64_t)r.a, RT_OK);
    ping(c);
    run_in(c, fn_fail, R_BOOM);
    expect_down_reason(cmref, "boom");
    want_report((want_t){.by = b}, &r);
    cr_assert_eq(r.kind, RT_MSG_DOWN, "an EXIT came through a removed link");
    ASSERT_NO_BAD_CHECKS();
}

LINKS_TEST(unlink_stops_propagation)
{
    uint64_t amref, bmref;
    rt_pid_t a = spawn_puppet(0, &amref);
    rt_pid_t b = spawn_puppet(0, &bmref);
    report_t r;
    link_pair(a, b);
    run_in(b, fn_unlink, a);
    expect_result(b, T_UNLINKED, &r);
    ping(a);
    run_in(a, fn_fail, R_BOOM);
    expect_down_reason(amref, "boom");
    want_report((want_t){.by = b}, &r);
    cr_assert_eq(r.kind, RT_MSG_DOWN);
    ping(b);
    cr_assert(rt_is_alive(b));
    ASSERT_NO_BAD_CHECKS();
}

LINKS_TEST(unlink_from_the_other_side_stops_propagation)
{
    uint64_t amref, bmref;
    rt_pid_t a = spawn_puppet(0, &amref);
    rt_pid_t b = spawn_puppet(0, &bmref);
    report_t r;
    link_pair(a, b);
    run_in(a, fn_unlink, b);
    expect_result(a, T_UNLINKED, &r);
    ping(b);
    run_in(a, fn_fail, R_BOOM);
    expect_down_reason(amref, "boom");
    want_report((want_t){.by = b}, &r);
    cr_assert_eq(r.kind, RT_MSG_DOWN);
    ping(b);
    cr_assert(rt_is_alive(b));
    ASSERT_NO_BAD_CHECKS();
}

LINKS_TEST(link_to_a_dead_pid_gives_a_trapping_process_exit_noproc)
{
    uint64_t dmref;
    rt_pid_t dead = spawn_puppet(0, &dmref);
    cr_assert_eq(rt_exit(dead, RT_KILL), RT_OK);
    expect_down_reason(dmref, "killed");
    rt_pid_t b = spawn_puppet(RT_SPAWN_TRAP_EXIT, NULL);
    report_t r;
    run_in(b, fn_link, dead);
    expect_result(b, T_LINKED, &r);
    cr_assert_eq((int)(int64_t)r.a, RT_ENOPROC);
    want_report((want_t){.by = b}, &r);
    cr_assert_eq(r.kind, RT_MSG_EXIT);
    cr_assert_eq(r.from, dead);
    cr_assert_eq(r.rcode, RT_R_NOPROC);
    cr_assert_str_eq(r.reason, "noproc");
    ping(b);
    ASSERT_NO_BAD_CHECKS();
}

LINKS_TEST(link_to_a_dead_pid_kills_a_nontrapping_process_with_noproc)
{
    uint64_t dmref, bmref;
    rt_pid_t dead = spawn_puppet(0, &dmref);
    cr_assert_eq(rt_exit(dead, RT_KILL), RT_OK);
    expect_down_reason(dmref, "killed");
    rt_pid_t b = spawn_puppet(0, &bmref);
    run_in(b, fn_link, dead);
    expect_down_reason(bmref, "noproc");
}

/* ---- Monitors ------------------------------------------------------------------------------ */

LINKS_TEST(a_monitor_of_a_dead_pid_fires_noproc_at_once)
{
    uint64_t dmref;
    rt_pid_t dead = spawn_puppet(0, &dmref);
    cr_assert_eq(rt_exit(dead, RT_KILL), RT_OK);
    expect_down_reason(dmref, "killed");

    uint64_t ref = rt_inbox_monitor(ib, dead);
    cr_assert_neq(ref, 0);
    rt_msg_t *m = take((want_t){.kind = RT_MSG_DOWN, .ref = ref}, WAIT_MS);
    cr_assert_not_null(m);
    cr_assert_eq(m->from, dead);
    cr_assert_eq(rt_msg_reason(m)->code, RT_R_NOPROC);
    rt_msg_free(m);

    rt_pid_t b = spawn_puppet(0, NULL);
    report_t r;
    run_in(b, fn_monitor, dead);
    expect_result(b, T_MONITORED, &r);
    cr_assert_neq(r.a, 0);
    uint64_t bref = r.a;
    want_report((want_t){.by = b}, &r);
    cr_assert_eq(r.kind, RT_MSG_DOWN);
    cr_assert_eq(r.ref, bref);
    cr_assert_eq(r.from, dead);
    cr_assert_str_eq(r.reason, "noproc");
    ASSERT_NO_BAD_CHECKS();
}

LINKS_TEST(two_monitors_fire_independently)
{
    uint64_t amref;
    rt_pid_t a = spawn_puppet(0, &amref);
    rt_pid_t b = spawn_puppet(0, NULL);
    report_t r;
    run_in(b, fn_monitor, a);
    expect_result(b, T_MONITORED, &r);
    uint64_t r1 = r.a;
    run_in(b, fn_monitor, a);
    expect_result(b, T_MONITORED, &r);
    uint64_t r2 = r.a;
    cr_assert_neq(r1, r2);
    uint64_t i1 = rt_inbox_monitor(ib, a);
    uint64_t i2 = rt_inbox_monitor(ib, a);
    cr_assert_neq(i1, i2);
    ping(a);

    run_in(a, fn_fail, R_BOOM);
    expect_down_reason(amref, "boom");
    expect_down_reason(i1, "boom");
    expect_down_reason(i2, "boom");
    want_report((want_t){.kind = RT_MSG_DOWN, .ref = r1, .by = b}, &r);
    cr_assert_str_eq(r.reason, "boom");
    cr_assert_eq(r.from, a);
    want_report((want_t){.kind = RT_MSG_DOWN, .ref = r2, .by = b}, &r);
    cr_assert_str_eq(r.reason, "boom");
    expect_sentinel_next(b, 0); /* and no third DOWN */
    ASSERT_NO_BAD_CHECKS();
}

LINKS_TEST(demonitor_removes_one_monitor_and_not_the_other)
{
    uint64_t amref;
    rt_pid_t a = spawn_puppet(0, &amref);
    rt_pid_t b = spawn_puppet(0, NULL);
    report_t r;
    run_in(b, fn_monitor, a);
    expect_result(b, T_MONITORED, &r);
    uint64_t r1 = r.a;
    run_in(b, fn_monitor, a);
    expect_result(b, T_MONITORED, &r);
    uint64_t r2 = r.a;
    run_in(b, fn_demonitor, r1);
    expect_result(b, T_DEMONITORED, &r);
    cr_assert_eq((int)(int64_t)r.a, RT_OK);
    run_in(b, fn_demonitor, r1);
    expect_result(b, T_DEMONITORED, &r);
    cr_assert_eq((int)(int64_t)r.a, RT_ENOTFOUND);
    ping(a);

    run_in(a, fn_fail, R_BOOM);
    expect_down_reason(amref, "boom");
    want_report((want_t){.by = b}, &r);
    cr_assert_eq(r.kind, RT_MSG_DOWN);
    cr_assert_eq(r.ref, r2, "the removed monitor fired");
    expect_sentinel_next(b, 0);
    ASSERT_NO_BAD_CHECKS();
}

static void fn_monitor_then_demonitor(puppet_t *p, uint64_t pid)
{
    uint64_t ref = rt_monitor(pid); /* dead: DOWN noproc is queued at once */
    CHECK(ref != 0);
    rt_demonitor(ref);
    result(T_DEMONITORED, ref, 0);
}

LINKS_TEST(demonitor_drops_a_noproc_down_already_queued)
{
    uint64_t dmref;
    rt_pid_t dead = spawn_puppet(0, &dmref);
    cr_assert_eq(rt_exit(dead, RT_KILL), RT_OK);
    expect_down_reason(dmref, "killed");
    rt_pid_t b = spawn_puppet(0, NULL);
    report_t r;
    run_in(b, fn_monitor_then_demonitor, dead);
    expect_result(b, T_DEMONITORED, &r);
    expect_sentinel_next(b, 50);
    ASSERT_NO_BAD_CHECKS();
}

/* A server that holds one call until told to answer it. */
static rt_reason_t *holder_init(void *arg, void **state)
{
    *state = calloc(1, sizeof(rt_from_t));
    return *state ? NULL : rt_reason_new("enomem");
}

static int holder_call(void *state, rt_msg_t *req, rt_from_t from)
{
    *(rt_from_t *)state = from;
    result(T_HELD, 0, 0);
    return RT_NOREPLY;
}

static void holder_info(void *state, rt_msg_t *m)
{
    CHECK(rt_reply_val(*(rt_from_t *)state, 1, 0, 0) == RT_OK);
}

static void holder_terminate(void *state, rt_reason_t *reason) { free(state); }

static const rt_behaviour_t holder_beh =
    RT_BEHAVIOUR(.name = "holder", .init = holder_init, .handle_call = holder_call,
                 .handle_info = holder_info, .terminate = holder_terminate);

/* A puppet that demonitors v[0] when the reply to call v[1] comes. */
static void demon_info(void *state, rt_msg_t *m)
{
    puppet_t *p = state;
    if (m->kind == RT_MSG_REPLY && p->v[1] && m->ref == p->v[1]) {
        result(T_DEMONITORED, (uint64_t)(int64_t)rt_demonitor(p->v[0]), 0);
        return;
    }
    puppet_info(state, m);
}

static const rt_behaviour_t demon_beh = RT_BEHAVIOUR(
    .name = "demon", .init = puppet_init, .handle_info = demon_info, .terminate = puppet_terminate);

/* Monitors `pid`, then calls the holder (p->v[2]) and awaits the reply:
 * what comes meanwhile (the DOWN) waits in the queue. */
static void fn_monitor_and_await(puppet_t *p, uint64_t pid)
{
    p->v[0] = rt_monitor(pid);
    CHECK(p->v[0] != 0);
    uint64_t ref = 0;
    CHECK(rt_call((rt_pid_t)p->v[2], rt_msg_new(1), RT_INFINITY, &ref) == RT_OK);
    p->v[1] = ref;
    rt_await(ref);
    result(T_SPINNING, 0, 0);
}

static void fn_set_v2(puppet_t *p, uint64_t v) { p->v[2] = v; }

LINKS_TEST(demonitor_drops_a_down_already_queued)
{
    uint64_t amref;
    rt_pid_t a = spawn_puppet(0, &amref);
    rt_pid_t h = RT_NOPID, b = RT_NOPID;
    cr_assert_eq(rt_spawn(&holder_beh, NULL, NULL, &h), RT_OK);
    cr_assert_eq(rt_spawn(&demon_beh, NULL, NULL, &b), RT_OK);
    report_t r;
    run_in(b, fn_set_v2, h);
    run_in(b, fn_monitor_and_await, a);
    expect_result(b, T_SPINNING, &r);
    expect_result(h, T_HELD, &r);
    ping(a); /* a has the monitor */

    /* a dies while b awaits: b's DOWN is queued behind the awaited reply. */
    cr_assert_eq(rt_exit(a, RT_KILL), RT_OK);
    expect_down_reason(amref, "killed");
    cr_assert_eq(rt_send(h, 1, 0, 0), RT_OK); /* the reply: b demonitors */
    want_report((want_t){.by = b}, &r);
    cr_assert(r.kind == K_RESULT && r.tag == T_DEMONITORED,
              "b handled kind %u before the awaited reply", r.kind);
    expect_sentinel_next(b, 50);
    ASSERT_NO_BAD_CHECKS();
}

LINKS_TEST(monitors_see_the_exact_reason)
{
    struct {
        how_t how;
        uint64_t why;
        const char *text;
        int code;
    } rows[] = {
        {HOW_FAIL, R_EXACT, EXACT_TEXT, RT_R_OTHER},
        {HOW_STOP, R_NORMAL, "normal", RT_R_NORMAL},
        {HOW_STOP, R_SHUTDOWN, "shutdown", RT_R_SHUTDOWN},
        {HOW_EXIT_KILL, 0, "killed", RT_R_KILLED},
        {HOW_STOP, R_KILL, "kill", RT_R_KILL},
    };
    rt_pid_t w = spawn_puppet(0, NULL);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint64_t amref;
        rt_pid_t a = spawn_puppet(0, &amref);
        report_t r;
        run_in(w, fn_monitor, a);
        expect_result(w, T_MONITORED, &r);
        uint64_t wref = r.a;
        ping(a);
        kill_a(a, amref, rows[i].how, rows[i].why, rows[i].text);
        want_report((want_t){.kind = RT_MSG_DOWN, .ref = wref, .by = w}, &r);
        cr_assert_str_eq(r.reason, rows[i].text);
        cr_assert_eq(r.rcode, rows[i].code, "row %zu: code %d", i, r.rcode);
        cr_assert_eq(r.from, a);
    }
    ASSERT_NO_BAD_CHECKS();
}
