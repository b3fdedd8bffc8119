/*
 * test_domain_history.c — the HistoryServer (src/domain/history.h):
 * events recorded through it land in the store in order with their
 * seqs, user and data; call records are written and found by user; with
 * no history process an event is dropped and counted, never queued
 * forever; and the counters that /metrics shows move.
 */
#include "domain_harness.h"

TestSuite(domain_history, .init = setup_default, .fini = teardown_all, .timeout = 60);

Test(domain_history, events_are_written_in_order_with_user_and_data)
{
    history_stats_t s0;
    history_get_stats(&s0);
    cr_assert_eq(history_record("h1", 1000, "room_created", NULL, "{\"max_participants\":0}"), 0);
    cr_assert_eq(history_record("h1", 1001, "participant_joined", "alice", NULL), 0);
    cr_assert_eq(history_record("h1", 1002, "status_changed", "alice", "{\"muted\":true}"), 0);
    cr_assert_eq(history_record("h2", 0, "room_created", NULL, NULL), 0, "another room");
    for (int i = 0; i < 100; i++)
        cr_assert_eq(history_record("h1", 2000 + i, "status_changed", "alice", "{\"n\":1}"), 0);

    json_t *ev = NULL;
    for (int i = 0; i < 500; i++) {
        ev = events_of("h1");
        if (json_array_size(ev) == 103)
            break;
        json_decref(ev);
        ev = NULL;
        sleep_ms(10);
    }
    cr_assert_not_null(ev, "103 events of h1 recorded");
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) cr_assert_eq(jint(e, "seq"), (json_int_t)i + 1, "gapless seqs");
    json_t *e2 = json_array_get(ev, 2);
    cr_assert_str_eq(json_string_value(json_object_get(e2, "type")), "status_changed");
    cr_assert_str_eq(json_string_value(json_object_get(e2, "user")), "alice");
    cr_assert(json_is_true(json_object_get(json_object_get(e2, "data"), "muted")));
    cr_assert_null(json_object_get(json_array_get(ev, 0), "user"));
    json_decref(ev);
    json_t *ev2 = events_of("h2");
    cr_assert_eq(json_array_size(ev2), 1, "rooms have their own seqs");
    cr_assert_eq(jint(json_array_get(ev2, 0), "seq"), 1);
    json_decref(ev2);

    history_stats_t s1;
    history_get_stats(&s1);
    cr_assert_eq(s1.recorded - s0.recorded, 104);
    cr_assert_eq(s1.dropped, s0.dropped);
    cr_assert_eq(s1.backlog, 0);
}

/* Without the store in the rooms' configuration the HistoryServer goes
 * through the store process: the same events, the same seqs. */
static void setup_via_store_process(void)
{
    setup_with_store((room_config_t){.auto_create = true, .tick_ms = 20}, true);
}

Test(domain_history_via_process, events_reach_the_store_through_its_process_too,
     .init = setup_via_store_process, .fini = teardown_all, .timeout = 60)
{
    cr_assert_null(room_config()->store);
    history_stats_t s0;
    history_get_stats(&s0);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(history_record("p1", 1000 + i, "status_changed", "bob", "{\"n\":2}"), 0);
    cr_assert_eq(history_record_call("p1", 100, 0, 200, "[\"bob\"]", 0), 0);
    json_t *ev = NULL;
    for (int i = 0; i < 500; i++) {
        ev = events_of("p1");
        if (json_array_size(ev) == 20)
            break;
        json_decref(ev);
        ev = NULL;
        sleep_ms(10);
    }
    cr_assert_not_null(ev, "20 events of p1 recorded");
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) {
        cr_assert_eq(jint(e, "seq"), (json_int_t)i + 1);
        cr_assert_eq(jint(json_object_get(e, "data"), "n"), 2);
    }
    json_decref(ev);
    history_stats_t s1;
    history_get_stats(&s1);
    cr_assert_eq(s1.failed, s0.failed);
}

Test(domain_history, call_records_are_found_by_user)
{
    cr_assert_eq(history_record_call("c1", 100, 150, 400, "[\"alice\",\"bob\"]", 250), 0);
    cr_assert_eq(history_record_call("c2", 200, 0, 300, "[\"alice\"]", 0), 0);
    store_req_t *q = NULL;
    size_t n = 0;
    for (int i = 0; i < 500; i++) {
        cr_assert_eq(store_req_query_calls(&q, "alice", 10), STORE_OK);
        cr_assert_eq(store_exec(st, q), STORE_OK);
        store_req_calls(q, &n);
        if (n == 2)
            break;
        store_req_free(q);
        q = NULL;
        sleep_ms(10);
    }
    cr_assert_not_null(q);
    const store_call_t *c = store_req_calls(q, &n);
    cr_assert_str_eq(c[0].id, "c2", "newest first");
    cr_assert_eq(c[0].started_at, 0, "never started");
    cr_assert_str_eq(c[1].id, "c1");
    cr_assert_eq(c[1].started_at, 150);
    cr_assert_eq(c[1].duration_ms, 250);
    cr_assert_eq(json_array_size(c[1].participants), 2);
    store_req_free(q);
    cr_assert_eq(store_req_query_calls(&q, "bob", 10), STORE_OK);
    cr_assert_eq(store_exec(st, q), STORE_OK);
    store_req_calls(q, &n);
    cr_assert_eq(n, 1);
    store_req_free(q);
}

Test(domain_history, without_a_history_process_events_are_dropped_and_counted)
{
    rt_pid_t h = rt_whereis(HISTORY_NAME);
    cr_assert(h);
    /* Take the history child away for good (the supervisor would restart it). */
    cr_assert_eq(rt_sup_terminate_child_sync(root, "history", RT_NOPID), RT_OK);
    for (int i = 0; i < 500 && rt_is_alive(h); i++)
        sleep_ms(2);
    history_stats_t s0, s1;
    history_get_stats(&s0);
    cr_assert_eq(history_record("x", 0, "room_created", NULL, NULL), -1);
    cr_assert_eq(history_record_call("x", 1, 0, 2, "[]", 0), -1);
    history_get_stats(&s1);
    cr_assert_eq(s1.dropped - s0.dropped, 2);
    cr_assert_eq(s1.backlog, s0.backlog, "nothing is left queued");

    /* Back again: recording works. */
    cr_assert_eq(rt_sup_restart_child_sync(root, "history", NULL), RT_OK);
    cr_assert_eq(history_record("x", 0, "room_created", NULL, NULL), 0);
    json_t *ev = NULL;
    for (int i = 0; i < 500; i++) {
        ev = events_of("x");
        if (json_array_size(ev) == 1)
            break;
        json_decref(ev);
        ev = NULL;
        sleep_ms(10);
    }
    cr_assert_not_null(ev);
    json_decref(ev);
}
