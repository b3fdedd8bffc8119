/*
 * test_domain_state.c — the room state JSON (src/domain/state.h) as pure
 * functions: the shape of a new room, joins and max_participants, status
 * merges (shallow, bounded, never half-applied), waiting/active/ended and
 * started_at, version bumps, the stored form with "seen" and its split,
 * and the migration of a version-1 state. No runtime, no store.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "domain/rjson.h"
#include "domain/room.h"
#include "domain/state.h"

static json_t *part(json_t *st, const char *u)
{
    return room_state_participant(st, u);
}

Test(domain_state, new_room_has_the_design_shape)
{
    json_t *st = room_state_new("r1", 1700000000000, 0, 300);
    cr_assert_not_null(st);
    cr_assert_eq(room_state_check(st), ROOM_OK);
    cr_assert_str_eq(room_state_id(st), "r1");
    cr_assert_str_eq(room_state_status(st), "waiting");
    cr_assert_eq(room_state_version(st), 1);
    cr_assert_eq(room_state_int(st, "created_at"), 1700000000000);
    cr_assert_eq(room_state_int(st, "max_participants"), 0);
    cr_assert_eq(room_state_int(st, "viewers"), 0);
    cr_assert(json_is_null(json_object_get(st, "started_at")));
    cr_assert(json_is_object(json_object_get(st, "participants")));
    cr_assert_eq(room_state_count(st), 0);
    json_decref(st);
}

Test(domain_state, add_respects_max_participants_and_records_seen)
{
    json_t *st = room_state_new("r", 1, 2, 300), *seen = json_object();
    cr_assert_eq(room_state_add(st, seen, "alice", 10), ROOM_OK);
    cr_assert_eq(room_state_add(st, seen, "bob", 11), ROOM_OK);
    cr_assert_eq(room_state_add(st, seen, "carol", 12), ROOM_EFULL);
    cr_assert_null(part(st, "carol"), "a refused join leaves no entry");
    cr_assert_null(json_object_get(seen, "carol"));
    json_t *a = part(st, "alice");
    cr_assert(json_is_true(json_object_get(a, "connected")));
    cr_assert_eq(json_integer_value(json_object_get(a, "joined_at")), 10);
    cr_assert_eq(json_object_size(json_object_get(a, "status")), 0);
    cr_assert_eq(json_object_size(seen), 2);
    /* Leaving frees the seat; seen remembers. */
    cr_assert_eq(room_state_remove(st, "alice"), ROOM_OK);
    cr_assert_eq(room_state_remove(st, "alice"), ROOM_ENOTFOUND);
    cr_assert_eq(room_state_add(st, seen, "carol", 13), ROOM_OK);
    cr_assert_eq(json_object_size(seen), 3);
    json_decref(st);
    json_decref(seen);
}

Test(domain_state, status_merge_is_shallow_and_bounded)
{
    json_t *st = room_state_new("r", 1, 0, 300);
    cr_assert_eq(room_state_add(st, NULL, "alice", 1), ROOM_OK);
    json_t *p1 = json_pack("{sb}", "muted", 1), *p2 = json_pack("{ss}", "camera", "off"),
           *p3 = json_pack("{sbs{si}}", "muted", 0, "video", "w", 640);
    cr_assert_eq(room_state_merge_status(st, "alice", p1), ROOM_OK);
    cr_assert_eq(room_state_merge_status(st, "alice", p2), ROOM_OK);
    cr_assert_eq(room_state_merge_status(st, "alice", p3), ROOM_OK);
    json_t *want = json_pack("{sbsss{si}}", "muted", 0, "camera", "off", "video", "w", 640);
    cr_assert(json_equal(json_object_get(part(st, "alice"), "status"), want));
    cr_assert_eq(room_state_merge_status(st, "bob", p1), ROOM_ENOTMEMBER);
    json_t *arr = json_array();
    cr_assert_eq(room_state_merge_status(st, "alice", arr), ROOM_EINVAL);

    /* Too large: refused, and the status is exactly as before. */
    char *big = malloc(ROOM_STATUS_MAX + 1);
    memset(big, 'x', ROOM_STATUS_MAX);
    big[ROOM_STATUS_MAX] = '\0';
    json_t *p4 = json_pack("{ss}", "blob", big);
    cr_assert_eq(room_state_merge_status(st, "alice", p4), ROOM_ETOOLARGE);
    cr_assert(json_equal(json_object_get(part(st, "alice"), "status"), want));
    free(big);
    json_decref(p1);
    json_decref(p2);
    json_decref(p3);
    json_decref(p4);
    json_decref(arr);
    json_decref(want);
    json_decref(st);
}

/* room_state_merge_status_text hands back the merged status as the
 * text it measured: exactly what json_dumps gives, nothing when refused. */
Test(domain_state, status_merge_returns_the_text_it_measured)
{
    json_t *st = room_state_new("r", 1, 0, 300);
    cr_assert_eq(room_state_add(st, NULL, "alice", 1), ROOM_OK);
    json_t *p1 = json_pack("{sbsi}", "muted", 1, "n", 7);
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(room_state_merge_status_text(st, "alice", p1, &text, &len), ROOM_OK);
    char *want = json_dumps(json_object_get(part(st, "alice"), "status"), JSON_COMPACT);
    cr_assert_str_eq(text, want);
    cr_assert_eq(len, strlen(want));
    free(text);
    free(want);

    /* Exactly ROOM_STATUS_MAX bytes is allowed, one more is not. */
    json_t *cur = json_object_get(part(st, "alice"), "status");
    size_t base = json_dumpb(cur, NULL, 0, JSON_COMPACT); /* {"muted":true,"n":7} */
    size_t fill = ROOM_STATUS_MAX - base - strlen(",\"b\":\"\"");
    char *big = malloc(fill + 2);
    memset(big, 'x', fill + 1);
    big[fill] = '\0';
    json_t *fits = json_pack("{ss}", "b", big);
    text = NULL;
    cr_assert_eq(room_state_merge_status_text(st, "alice", fits, &text, &len), ROOM_OK);
    cr_assert_eq(len, ROOM_STATUS_MAX);
    cr_assert_eq(strlen(text), ROOM_STATUS_MAX);
    free(text);
    big[fill] = 'x';
    big[fill + 1] = '\0';
    json_t *over = json_pack("{ss}", "b", big);
    text = NULL;
    cr_assert_eq(room_state_merge_status_text(st, "alice", over, &text, &len), ROOM_ETOOLARGE);
    cr_assert_null(text, "nothing is handed back for a refused merge");
    cr_assert_eq(json_string_length(json_object_get(json_object_get(part(st, "alice"), "status"),
                                                    "b")),
                 fill, "the refused merge left the status as it was");
    free(big);
    json_decref(p1);
    json_decref(fits);
    json_decref(over);
    json_decref(st);
}

/* room_json_dump (and so room_state_dump) writes the bytes jansson's
 * json_dumps(JSON_COMPACT | JSON_ENCODE_ANY) writes, for every kind of
 * value a client's status can bring: escapes, control characters, NUL
 * inside strings and keys, UTF-8, integer extremes, reals, nesting. */
static void same_as_jansson(json_t *j)
{
    char *want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    cr_assert_not_null(want);
    rt_buf_t *b = room_json_dump(j, 1); /* a tiny first guess: it must grow */
    cr_assert_not_null(b);
    cr_assert_eq(b->len, strlen(want), "length of %s", want);
    cr_assert_str_eq(b->data, want);
    rt_buf_release(b);
    free(want);
}

Test(domain_state, the_serialiser_writes_what_jansson_writes)
{
    json_t *o = json_object();
    json_object_set_new(o, "quote\"back\\slash/", json_string("a\"b\\c/d"));
    json_object_set_new(o, "ctl", json_string("\x01\x1f\b\f\n\r\t\x7f end"));
    json_object_set_new(o, "utf8", json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xa4"));
    json_object_setn_new(o, "k\0ey", 4, json_stringn("nul\0inside", 11));
    json_object_set_new(o, "", json_string(""));
    json_object_set_new(o, "max", json_integer(INT64_MAX));
    json_object_set_new(o, "min", json_integer(INT64_MIN));
    json_object_set_new(o, "zero", json_integer(0));
    json_object_set_new(o, "neg", json_integer(-42));
    json_object_set_new(o, "real", json_real(0.1));
    json_object_set_new(o, "realint", json_real(3.0));
    json_object_set_new(o, "tiny", json_real(1e-300));
    json_object_set_new(o, "big", json_real(-2.5e+300));
    json_object_set_new(o, "t", json_true());
    json_object_set_new(o, "f", json_false());
    json_object_set_new(o, "n", json_null());
    json_object_set_new(o, "empty_o", json_object());
    json_object_set_new(o, "empty_a", json_array());
    json_object_set_new(o, "nested",
                        json_pack("[i,[s,{s:[b,n,f]}],{}]", 1, "x", "deep", 1, 2.5));
    same_as_jansson(o);
    same_as_jansson(json_object_get(o, "nested"));
    same_as_jansson(json_object_get(o, "ctl"));
    same_as_jansson(json_object_get(o, "min"));
    same_as_jansson(json_object_get(o, "real"));
    json_t *n = json_null();
    same_as_jansson(n);
    /* Insertion order is kept, as json_dumps keeps it. */
    json_t *ord = json_object();
    for (int i = 20; i > 0; i--) {
        char k[8];
        snprintf(k, sizeof k, "k%d", i);
        json_object_set_new(ord, k, json_integer(i));
    }
    same_as_jansson(ord);
    /* A room state, through room_state_dump. */
    json_t *st = room_state_new("r\"1", 1700000000000, 5, 300), *seen = json_object();
    room_state_add(st, seen, "al\u00e9\\x", 1700000000001);
    room_state_merge_status(st, "al\u00e9\\x", o);
    same_as_jansson(st);
    rt_buf_t *pub = NULL;
    cr_assert_eq(room_state_dump(st, seen, &pub, NULL), ROOM_OK);
    char *want = json_dumps(st, JSON_COMPACT);
    cr_assert_str_eq(pub->data, want);
    free(want);
    rt_buf_release(pub);
    json_decref(st);
    json_decref(seen);
    json_decref(ord);
    json_decref(n);
    json_decref(o);
}

/* ---- room_json_load against json_loadb ----------------------------------------
 * The same verdict (refused or not) and, when accepted, equal values, for
 * hand-written cases, values generated and written by jansson in all its
 * output styles, and many random mutations of both (a small fuzzer with a
 * fixed seed, so a failure is reproducible). */

static void same_verdict(const char *text, size_t len, size_t flags)
{
    json_error_t err;
    json_t *want = json_loadb(text, len, flags, &err);
    json_t *got = room_json_load(text, len, flags, NULL);
    cr_assert_eq(got != NULL, want != NULL, "%s by jansson (%s), %s here: %.*s",
                 want ? "accepted" : "refused", want ? "" : err.text,
                 got ? "accepted" : "refused", (int)len, text);
    if (want)
        cr_assert(json_equal(want, got), "different values for %.*s", (int)len, text);
    json_decref(want);
    json_decref(got);
}

static const char *const load_cases[] = {
    "{}", "[]", " { } ", "\t[\n]\r\n", "{\"a\":1}", "[1,2,3]", "[-0]", "[-0.0]", "[0]", "[01]",
    "[1.]", "[.5]", "[+1]", "[-]", "[1e5]", "[1E+5]", "[1e-5]", "[1.5e300]", "[1e400]",
    "[-1e400]", "[1e-400]", "[123456789012345678]", "[9223372036854775807]",
    "[9223372036854775808]", "[-9223372036854775808]", "[-9223372036854775809]",
    "[99999999999999999999999]", "[0.1]", "[3.0]", "[1e]", "[1e+]", "[2.5E-3]",
    "[true,false,null]", "[tru]", "[truex]", "[nul]", "[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"]",
    "[\"\\u0041\\u00e9\\u20AC\"]", "[\"\\ud83c\\udfa4\"]", "[\"\\ud83c\"]", "[\"\\udfa4\"]",
    "[\"\\ud83c\\u0041\"]", "[\"\\u0000\"]", "[\"\\u12\"]", "[\"\\x41\"]", "[\"\\\"]",
    "[\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xa4\"]", "[\"\xc3\"]", "[\"\xc0\xaf\"]",
    "[\"\xed\xa0\x80\"]", "[\"\xf4\x90\x80\x80\"]", "[\"\xff\"]", "[\"\x7f\"]",
    "[\"tab\there\"]", "[\"a\nb\"]", "{\"a\":1,\"a\":2}", "{\"a\":1,}", "[1,]", "[,1]",
    "{\"a\" 1}", "{a:1}", "{\"a\":}", "{\"a\":1 \"b\":2}", "[1 2]", "[[[[]]]]",
    "{\"k\":{\"k\":{\"k\":[{}]}}}", "[\"\"]", "{\"\":\"\"}", "1", "\"s\"", "true", "null",
    "", " ", "[", "]", "{", "}", "[]]", "[][]", "{} x", "\xef\xbb\xbf{}",
    "{\"id\":\"r1\",\"status\":\"waiting\",\"version\":7,\"created_at\":1700000000000,"
    "\"participants\":{\"alice\":{\"connected\":true,\"joined_at\":1700000000123,"
    "\"status\":{\"muted\":true}}},\"seen\":{\"alice\":1700000000123}}",
};

/* Deterministic pseudo-random numbers (xorshift). */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static json_t *gen(int depth)
{
    static const char *const strs[] = {"", "a", "caf\xc3\xa9", "\"q\"", "back\\slash", "\n\t\x01",
                                       "\xf0\x9f\x8e\xa4", "/", "long string with spaces"};
    switch (rnd() % (depth > 3 ? 6 : 8)) {
    case 0: return json_integer((json_int_t)(rnd() % 2000001) - 1000000);
    case 1: return json_integer((json_int_t)rnd());
    case 2: return json_real((double)(int64_t)(rnd() % 100000) / 64.0 - 700.5);
    case 3: return json_string(strs[rnd() % (sizeof strs / sizeof strs[0])]);
    case 4: return rnd() % 2 ? json_true() : json_false();
    case 5: return json_null();
    case 6: {
        json_t *a = json_array();
        for (int i = (int)(rnd() % 5); i > 0; i--)
            json_array_append_new(a, gen(depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (int i = (int)(rnd() % 5); i > 0; i--) {
            char k[16];
            snprintf(k, sizeof k, "k%u", (unsigned)(rnd() % 7));
            json_object_set_new(o, k, gen(depth + 1));
        }
        return o;
    }
    }
}

Test(domain_state, the_reader_agrees_with_jansson)
{
    for (size_t i = 0; i < sizeof load_cases / sizeof load_cases[0]; i++) {
        same_verdict(load_cases[i], strlen(load_cases[i]), 0);
        same_verdict(load_cases[i], strlen(load_cases[i]), JSON_DECODE_ANY);
    }
    /* A NUL byte inside a string and outside. */
    same_verdict("[\"a\0b\"]", 7, 0);
    same_verdict("[1]\0", 4, 0);
    /* Nesting: 2048 levels are read, 2049 are not. */
    char *deep = malloc(2 * 2049 + 1);
    for (int n = 2048; n <= 2049; n++) {
        memset(deep, '[', (size_t)n);
        memset(deep + n, ']', (size_t)n);
        same_verdict(deep, 2 * (size_t)n, 0);
    }
    free(deep);

    /* Generated values in every output style jansson has, then mutated. */
    static const size_t styles[] = {JSON_COMPACT, JSON_INDENT(2), JSON_ENSURE_ASCII,
                                    JSON_ESCAPE_SLASH | JSON_COMPACT, 0};
    size_t mutated = 0;
    for (int round = 0; round < 400; round++) {
        json_t *v = gen(0);
        for (size_t k = 0; k < sizeof styles / sizeof styles[0]; k++) {
            char *text = json_dumps(v, styles[k] | JSON_ENCODE_ANY);
            cr_assert_not_null(text);
            size_t len = strlen(text);
            json_t *back = room_json_load(text, len, JSON_DECODE_ANY, NULL);
            cr_assert(json_equal(v, back), "read back: %s", text);
            json_decref(back);
            same_verdict(text, len, 0);
            /* Mutations: replace, delete or insert a byte. */
            for (int m = 0; m < 6 && len; m++) {
                static const char bytes[] = "{}[],:\"\\/0-.eEu \x01\xc3\xa9\xff\x7f" "tfn";
                char *t = malloc(len + 2);
                memcpy(t, text, len + 1);
                size_t at = rnd() % len, tl = len;
                char c = bytes[rnd() % (sizeof bytes - 1)];
                switch (rnd() % 3) {
                case 0: t[at] = c; break;
                case 1: memmove(t + at, t + at + 1, len - at); tl--; break;
                default: memmove(t + at + 1, t + at, len - at + 1); t[at] = c; tl++; break;
                }
                same_verdict(t, tl, JSON_DECODE_ANY);
                mutated++;
                free(t);
            }
            free(text);
        }
        json_decref(v);
    }
    cr_assert_gt(mutated, 5000);
}

Test(domain_state, settle_waiting_active_ended_and_started_at)
{
    json_t *st = room_state_new("r", 1, 0, 300);
    cr_assert_not(room_state_settle(st, 1, 100));
    cr_assert_str_eq(room_state_status(st), "waiting");
    cr_assert(json_is_null(json_object_get(st, "started_at")));
    cr_assert(room_state_settle(st, 2, 200));
    cr_assert_str_eq(room_state_status(st), "active");
    cr_assert_eq(room_state_int(st, "started_at"), 200);
    cr_assert(room_state_settle(st, 1, 300));
    cr_assert_str_eq(room_state_status(st), "waiting");
    cr_assert(room_state_settle(st, 3, 400));
    cr_assert_eq(room_state_int(st, "started_at"), 200, "started_at is the first time only");
    room_state_end(st);
    cr_assert(room_state_ended(st));
    cr_assert_not(room_state_settle(st, 0, 500), "ended stays ended");
    cr_assert_str_eq(room_state_status(st), "ended");
    json_decref(st);
}

Test(domain_state, version_grows_by_one_per_bump)
{
    json_t *st = room_state_new("r", 1, 0, 300);
    for (int i = 0; i < 10; i++)
        room_state_bump(st);
    cr_assert_eq(room_state_version(st), 11);
    json_decref(st);
}

Test(domain_state, stored_form_carries_seen_and_splits_back)
{
    json_t *st = room_state_new("r", 1, 0, 300), *seen = json_object();
    room_state_add(st, seen, "alice", 5);
    room_state_add(st, seen, "bob", 6);
    room_state_remove(st, "bob");
    rt_buf_t *pub = NULL, *stored = NULL;
    cr_assert_eq(room_state_dump(st, seen, &pub, &stored), ROOM_OK);
    json_t *p = json_loadb(pub->data, pub->len, 0, NULL);
    json_t *s = json_loadb(stored->data, stored->len, 0, NULL);
    cr_assert_not_null(p);
    cr_assert_not_null(s, "the stored form is valid JSON: %s", stored->data);
    cr_assert_null(json_object_get(p, "seen"), "the public form has no seen");
    cr_assert(json_equal(json_object_get(s, "seen"), seen));
    json_t *seen2 = NULL;
    cr_assert_eq(room_state_split_seen(s, &seen2), ROOM_OK);
    cr_assert(json_equal(s, p), "stored minus seen is the public form");
    cr_assert(json_equal(seen2, seen));
    char *arr = room_state_seen_array(seen2);
    cr_assert_str_eq(arr, "[\"alice\",\"bob\"]");
    free(arr);
    rt_buf_release(pub);
    rt_buf_release(stored);
    json_decref(p);
    json_decref(s);
    json_decref(seen);
    json_decref(seen2);
    json_decref(st);
}

/* Either form alone, from the same single serialisation, byte for byte
 * what both together give; a state larger than the first guess at the
 * buffer (512 bytes) grows it. */
Test(domain_state, dump_either_form_alone_and_large_states)
{
    json_t *st = room_state_new("r", 1, 0, 300), *seen = json_object();
    for (int i = 0; i < 200; i++) {
        char user[32];
        snprintf(user, sizeof user, "participant-%03d", i);
        cr_assert_eq(room_state_add(st, seen, user, 1000 + i), ROOM_OK);
    }
    rt_buf_t *pub = NULL, *stored = NULL, *pub_only = NULL, *stored_only = NULL;
    cr_assert_eq(room_state_dump(st, seen, &pub, &stored), ROOM_OK);
    cr_assert_eq(room_state_dump(st, NULL, &pub_only, NULL), ROOM_OK);
    cr_assert_eq(room_state_dump(st, seen, NULL, &stored_only), ROOM_OK);
    cr_assert_gt(pub->len, 8192);
    cr_assert_eq(pub_only->len, pub->len);
    cr_assert_eq(memcmp(pub_only->data, pub->data, pub->len), 0);
    cr_assert_eq(stored_only->len, stored->len);
    cr_assert_str_eq(stored_only->data, stored->data);
    cr_assert_eq(pub->data[pub->len], '\0');
    cr_assert_eq(stored->data[stored->len], '\0');
    char *want = json_dumps(st, JSON_COMPACT);
    cr_assert_str_eq(pub->data, want);
    free(want);
    json_t *s = json_loadb(stored->data, stored->len, 0, NULL);
    cr_assert_not_null(s);
    cr_assert(json_equal(json_object_get(s, "seen"), seen));
    json_decref(s);
    rt_buf_release(pub);
    rt_buf_release(stored);
    rt_buf_release(pub_only);
    rt_buf_release(stored_only);
    json_decref(seen);
    json_decref(st);
}

Test(domain_state, version_1_state_migrates_to_the_current_schema)
{
    json_t *v1 = json_loads(
        "{\"id\":\"old\",\"status\":\"active\",\"version\":41,\"created_at\":1000,"
        "\"participants\":[{\"user\":\"alice\",\"connected\":true,\"joined_at\":1001,"
        "\"status\":{\"muted\":true}},{\"user\":\"bob\",\"connected\":false,"
        "\"joined_at\":1002,\"status\":{}}]}",
        0, NULL);
    cr_assert_not_null(v1);
    json_t *v2 = room_state_migrate(v1, 1);
    cr_assert_not_null(v2);
    cr_assert_eq(room_state_check(v2), ROOM_OK);
    cr_assert_eq(room_state_version(v2), 41, "the room's version is kept");
    cr_assert_str_eq(room_state_status(v2), "active");
    cr_assert_eq(room_state_count(v2), 2);
    cr_assert(json_is_true(json_object_get(part(v2, "alice"), "connected")));
    cr_assert(json_is_true(json_object_get(json_object_get(part(v2, "alice"), "status"), "muted")));
    cr_assert(json_is_false(json_object_get(part(v2, "bob"), "connected")));
    cr_assert_eq(room_state_int(v2, "max_participants"), 0);
    cr_assert_eq(room_state_int(v2, "started_at"), 1000, "an active v1 room started at creation");
    json_t *seen = NULL;
    cr_assert_eq(room_state_split_seen(v2, &seen), ROOM_OK);
    cr_assert_eq(json_object_size(seen), 2);
    json_decref(seen);
    json_decref(v2);

    /* Unreadable states fail instead of being misread. */
    cr_assert_null(room_state_migrate(json_loads("{\"participants\":5}", 0, NULL), 1));
    cr_assert_null(room_state_migrate(json_loads("[]", 0, NULL), 1));
    cr_assert_null(room_state_migrate(json_loads("{\"id\":\"x\"}", 0, NULL), 0));
}

Test(domain_state, check_refuses_malformed_states)
{
    const char *bad[] = {
        "{}",
        "{\"id\":\"r\",\"status\":\"gone\",\"version\":1,\"created_at\":1,\"max_participants\":0,"
        "\"empty_timeout\":1,\"participants\":{}}",
        "{\"id\":\"r\",\"status\":\"waiting\",\"version\":1,\"created_at\":1,"
        "\"max_participants\":0,\"empty_timeout\":1,\"participants\":{\"a\":{\"connected\":1}}}",
        "{\"id\":\"\",\"status\":\"waiting\",\"version\":1,\"created_at\":1,"
        "\"max_participants\":0,\"empty_timeout\":1,\"participants\":{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = json_loads(bad[i], 0, NULL);
        cr_assert_not_null(j);
        cr_assert_eq(room_state_check(j), ROOM_EINVAL, "accepted: %s", bad[i]);
        json_decref(j);
    }
}

Test(domain_state, ids)
{
    cr_assert(room_id_valid("r1", 2));
    cr_assert(room_id_valid("caf\xc3\xa9", 5));
    cr_assert_not(room_id_valid("", 0));
    cr_assert_not(room_id_valid("a\nb", 3));
    cr_assert_not(room_id_valid("\xc3", 1));
    cr_assert_not(room_id_valid("\xed\xa0\x80", 3), "surrogates are not UTF-8");
    char big[ROOM_ID_MAX + 2];
    memset(big, 'a', sizeof big);
    cr_assert(room_id_valid(big, ROOM_ID_MAX));
    cr_assert_not(room_id_valid(big, ROOM_ID_MAX + 1));
    char topic[16];
    cr_assert(room_topic("abc", topic, sizeof topic));
    cr_assert_str_eq(topic, "room:abc");
    cr_assert_not(room_topic("a-very-long-id", topic, sizeof topic));
}
