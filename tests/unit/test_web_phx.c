/*
 * Unit tests for web/phx: vsn selection, V1/V2 decoding and every decoder
 * error, V1/V2 encoding of pushes and replies (exact bytes), the frame
 * built into the same block, headroom, and encode/decode round trips.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/ws.h"
#include "web/phx.h"

#include "fault_harness.h"

static int dec(phx_vsn_t v, const char *s, phx_msg_t *m)
{
    return phx_decode(v, s, strlen(s), m);
}

Test(phx, vsn_parse)
{
    phx_vsn_t v = 0;
    cr_assert_eq(phx_vsn_parse(NULL, &v), 0);
    cr_assert_eq(v, PHX_V1);
    v = 0;
    cr_assert_eq(phx_vsn_parse("", &v), 0);
    cr_assert_eq(v, PHX_V1);
    cr_assert_eq(phx_vsn_parse("2.0.0", &v), 0);
    cr_assert_eq(v, PHX_V2);
    cr_assert_eq(phx_vsn_parse("1.0.0", &v), 0);
    cr_assert_eq(v, PHX_V1);
    cr_assert_eq(phx_vsn_parse("2.0.7", &v), 0);
    cr_assert_eq(v, PHX_V2);
    cr_assert_eq(phx_vsn_parse("1.3.0", &v), 0);
    cr_assert_eq(v, PHX_V1);
    const char *bad[] = {"2.1.0", "3.0.0", "0.9.0", "2.0", "2", "v2.0.0", "2.0.0-rc",
                         "2.0.0 ", "2..0", "-1.0.0", "2.0.x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(phx_vsn_parse(bad[i], &v), PHX_E_VSN, "%s", bad[i]);
}

Test(phx, decode_v2)
{
    phx_msg_t m;
    cr_assert_eq(dec(PHX_V2, "[\"1\",\"2\",\"room:r1\",\"phx_join\",{\"role\":\"viewer\"}]", &m), 0);
    cr_assert_str_eq(m.join_ref, "1");
    cr_assert_str_eq(m.ref, "2");
    cr_assert_str_eq(m.topic, "room:r1");
    cr_assert_str_eq(m.event, "phx_join");
    cr_assert(json_is_object(m.payload));
    cr_assert_str_eq(json_string_value(json_object_get(m.payload, "role")), "viewer");
    phx_msg_free(&m);
    cr_assert_null(m.payload);
    phx_msg_free(&m); /* twice is harmless */

    /* heartbeat: null join_ref */
    cr_assert_eq(dec(PHX_V2, "[null,\"3\",\"phoenix\",\"heartbeat\",{}]", &m), 0);
    cr_assert_null(m.join_ref);
    cr_assert_str_eq(m.ref, "3");
    cr_assert_str_eq(m.topic, "phoenix");
    phx_msg_free(&m);

    /* any JSON value is a payload, as in Phoenix */
    const char *payloads[] = {"\"text\"", "[1,2]", "42", "null", "true"};
    for (size_t i = 0; i < 5; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "[\"1\",null,\"room:r1\",\"data\",%s]", payloads[i]);
        cr_assert_eq(dec(PHX_V2, buf, &m), 0, "%s", buf);
        cr_assert_null(m.ref);
        cr_assert_not_null(m.payload);
        phx_msg_free(&m);
    }
    cr_assert_eq(dec(PHX_V2, "[null,null,\"t\",\"e\",null]", &m), 0);
    cr_assert(json_is_null(m.payload));
    phx_msg_free(&m);
}

Test(phx, decode_v2_errors)
{
    struct {
        const char *in;
        int err;
    } cases[] = {
        {"", PHX_E_JSON},
        {"[\"1\",\"2\",\"t\",\"e\",{}", PHX_E_JSON},
        {"[\"1\",\"2\",\"t\",\"e\",{}] x", PHX_E_JSON},
        {"\xff", PHX_E_JSON},
        {"{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":\"1\"}", PHX_E_NOT_ARRAY},
        {"\"str\"", PHX_E_NOT_ARRAY},
        {"42", PHX_E_NOT_ARRAY},
        {"[]", PHX_E_ARITY},
        {"[\"1\",\"2\",\"t\",\"e\"]", PHX_E_ARITY},
        {"[\"1\",\"2\",\"t\",\"e\",{},{}]", PHX_E_ARITY},
        {"[1,\"2\",\"t\",\"e\",{}]", PHX_E_JOIN_REF},
        {"[{},\"2\",\"t\",\"e\",{}]", PHX_E_JOIN_REF},
        {"[\"1\",2,\"t\",\"e\",{}]", PHX_E_REF},
        {"[\"1\",true,\"t\",\"e\",{}]", PHX_E_REF},
        {"[\"1\",\"2\",null,\"e\",{}]", PHX_E_TOPIC},
        {"[\"1\",\"2\",7,\"e\",{}]", PHX_E_TOPIC},
        {"[\"1\",\"2\",\"t\",null,{}]", PHX_E_EVENT},
        {"[\"1\",\"2\",\"t\",[\"e\"],{}]", PHX_E_EVENT},
        {"[\"1\",\"2\",\"t\\u0000x\",\"e\",{}]", PHX_E_JSON},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        phx_msg_t m;
        memset(&m, 0xAB, sizeof m);
        int rc = dec(PHX_V2, cases[i].in, &m);
        cr_assert_eq(rc, cases[i].err, "%s: got %d (%s)", cases[i].in, rc, phx_strerror(rc));
        cr_assert_null(m.root, "zeroed on error");
        cr_assert_null(m.payload);
        phx_msg_free(&m);
    }
}

Test(phx, decode_v1)
{
    phx_msg_t m;
    cr_assert_eq(dec(PHX_V1, "{\"topic\":\"room:r1\",\"event\":\"status\",\"payload\":{\"muted\":true},"
                             "\"ref\":\"5\",\"join_ref\":\"4\"}", &m), 0);
    cr_assert_str_eq(m.topic, "room:r1");
    cr_assert_str_eq(m.event, "status");
    cr_assert_str_eq(m.ref, "5");
    cr_assert_str_eq(m.join_ref, "4");
    cr_assert(json_is_true(json_object_get(m.payload, "muted")));
    phx_msg_free(&m);

    /* V1 clients send no join_ref; ref may be null or absent */
    cr_assert_eq(dec(PHX_V1, "{\"topic\":\"phoenix\",\"event\":\"heartbeat\",\"payload\":{},\"ref\":null}", &m), 0);
    cr_assert_null(m.join_ref);
    cr_assert_null(m.ref);
    phx_msg_free(&m);
    cr_assert_eq(dec(PHX_V1, "{\"topic\":\"t\",\"event\":\"e\",\"payload\":[1]}", &m), 0);
    cr_assert_null(m.ref);
    cr_assert(json_is_array(m.payload));
    phx_msg_free(&m);
}

Test(phx, decode_v1_errors)
{
    struct {
        const char *in;
        int err;
    } cases[] = {
        {"nope", PHX_E_JSON},
        {"[\"1\",\"2\",\"t\",\"e\",{}]", PHX_E_NOT_OBJECT},
        {"\"s\"", PHX_E_NOT_OBJECT},
        {"{\"event\":\"e\",\"payload\":{},\"ref\":\"1\"}", PHX_E_TOPIC},
        {"{\"topic\":1,\"event\":\"e\",\"payload\":{},\"ref\":\"1\"}", PHX_E_TOPIC},
        {"{\"topic\":\"t\",\"payload\":{},\"ref\":\"1\"}", PHX_E_EVENT},
        {"{\"topic\":\"t\",\"event\":{},\"payload\":{},\"ref\":\"1\"}", PHX_E_EVENT},
        {"{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":1}", PHX_E_REF},
        {"{\"topic\":\"t\",\"event\":\"e\",\"payload\":{},\"ref\":\"1\",\"join_ref\":false}", PHX_E_JOIN_REF},
        {"{\"topic\":\"t\",\"event\":\"e\",\"ref\":\"1\"}", PHX_E_PAYLOAD},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        phx_msg_t m;
        int rc = dec(PHX_V1, cases[i].in, &m);
        cr_assert_eq(rc, cases[i].err, "%s: got %d (%s)", cases[i].in, rc, phx_strerror(rc));
        cr_assert_null(m.root);
    }
}

Test(phx, strerror_fits_close_reason_and_differs)
{
    for (int e = PHX_E_VSN; e <= PHX_OK; e++) {
        cr_assert_leq(strlen(phx_strerror(e)), WS_CLOSE_REASON_MAX);
        for (int f = e + 1; f <= PHX_OK; f++)
            cr_assert_str_neq(phx_strerror(e), phx_strerror(f));
    }
}

/* The frame in out must be a FIN text frame carrying exactly out->json. */
static void check_frame(const phx_out_t *o)
{
    cr_assert_eq(o->frame[0], 0x81);
    size_t hl = ws_frame_header_len(o->json_len);
    cr_assert_eq(o->frame_len, hl + o->json_len);
    cr_assert_eq((const uint8_t *)o->json, o->frame + hl);
    if (o->json_len < 126)
        cr_assert_eq(o->frame[1], o->json_len);
    else if (o->json_len <= 0xFFFF)
        cr_assert_eq(((size_t)o->frame[2] << 8 | o->frame[3]), o->json_len);
    else
        cr_assert_eq(o->frame[1], 127);
    cr_assert_eq(o->json[o->json_len], '\0');
    cr_assert_geq(o->frame, o->base + o->headroom);
}

Test(phx, encode_v2_push)
{
    json_t *pl = json_pack("{s:s,s:i}", "id", "r1", "version", 7);
    phx_out_t o = {0};
    cr_assert_eq(phx_encode(PHX_V2, NULL, NULL, "room:r1", "room_status", pl, &o), 0);
    cr_assert_str_eq(o.json, "[null,null,\"room:r1\",\"room_status\",{\"id\":\"r1\",\"version\":7}]");
    cr_assert_eq(o.json_len, strlen(o.json));
    check_frame(&o);
    phx_out_free(&o);
    cr_assert_null(o.base);

    cr_assert_eq(phx_encode(PHX_V2, "4", "9", "room:r1", "phx_error", NULL, &o), 0);
    cr_assert_str_eq(o.json, "[\"4\",\"9\",\"room:r1\",\"phx_error\",{}]");
    phx_out_free(&o);
    json_decref(pl);

    /* non-object payloads */
    json_t *s = json_string("hi");
    cr_assert_eq(phx_encode(PHX_V2, NULL, NULL, "t", "e", s, &o), 0);
    cr_assert_str_eq(o.json, "[null,null,\"t\",\"e\",\"hi\"]");
    phx_out_free(&o);
    json_decref(s);
}

Test(phx, encode_v1_push)
{
    json_t *pl = json_pack("{s:b}", "muted", 1);
    phx_out_t o = {0};
    cr_assert_eq(phx_encode(PHX_V1, "1", NULL, "room:r1", "presence_diff", pl, &o), 0);
    cr_assert_str_eq(o.json, "{\"topic\":\"room:r1\",\"event\":\"presence_diff\",\"payload\":"
                             "{\"muted\":true},\"ref\":null,\"join_ref\":\"1\"}");
    check_frame(&o);
    phx_out_free(&o);
    json_decref(pl);
}

Test(phx, encode_reply)
{
    json_t *resp = json_pack("{s:s}", "reason", "full");
    phx_out_t o = {0};
    cr_assert_eq(phx_reply(PHX_V2, "1", "1", "room:r1", "error", resp, &o), 0);
    cr_assert_str_eq(o.json, "[\"1\",\"1\",\"room:r1\",\"phx_reply\","
                             "{\"status\":\"error\",\"response\":{\"reason\":\"full\"}}]");
    check_frame(&o);
    phx_out_free(&o);

    cr_assert_eq(phx_reply(PHX_V2, NULL, "7", "phoenix", "ok", NULL, &o), 0);
    cr_assert_str_eq(o.json, "[null,\"7\",\"phoenix\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
    phx_out_free(&o);

    cr_assert_eq(phx_reply(PHX_V1, NULL, "7", "phoenix", "ok", NULL, &o), 0);
    cr_assert_str_eq(o.json, "{\"topic\":\"phoenix\",\"event\":\"phx_reply\",\"payload\":"
                             "{\"status\":\"ok\",\"response\":{}},\"ref\":\"7\",\"join_ref\":null}");
    phx_out_free(&o);

    cr_assert_eq(phx_reply(PHX_V1, "1", "2", "room:r1", "error", resp, &o), 0);
    cr_assert_str_eq(o.json, "{\"topic\":\"room:r1\",\"event\":\"phx_reply\",\"payload\":"
                             "{\"status\":\"error\",\"response\":{\"reason\":\"full\"}},"
                             "\"ref\":\"2\",\"join_ref\":\"1\"}");
    phx_out_free(&o);
    json_decref(resp);
}

Test(phx, encode_escapes_strings)
{
    phx_out_t o = {0};
    cr_assert_eq(phx_encode(PHX_V2, "a\"b", "c\\d", "t\n\x01", "\xc3\xa9", NULL, &o), 0);
    cr_assert_str_eq(o.json, "[\"a\\\"b\",\"c\\\\d\",\"t\\n\\u0001\",\"\xc3\xa9\",{}]");
    /* and it is valid JSON that decodes back to the same strings */
    phx_msg_t m;
    cr_assert_eq(phx_decode(PHX_V2, o.json, o.json_len, &m), 0);
    cr_assert_str_eq(m.join_ref, "a\"b");
    cr_assert_str_eq(m.ref, "c\\d");
    cr_assert_str_eq(m.topic, "t\n\x01");
    cr_assert_str_eq(m.event, "\xc3\xa9");
    phx_msg_free(&m);
    phx_out_free(&o);
}

Test(phx, encode_refuses_bad_arguments)
{
    phx_out_t o = {.headroom = 8};
    cr_assert_eq(phx_encode(PHX_V2, NULL, NULL, NULL, "e", NULL, &o), PHX_E_ARG);
    cr_assert_eq(phx_encode(PHX_V2, NULL, NULL, "t", NULL, NULL, &o), PHX_E_ARG);
    cr_assert_eq(phx_encode(PHX_V2, NULL, NULL, "t\xff", "e", NULL, &o), PHX_E_ARG);
    cr_assert_eq(phx_encode(PHX_V2, "\xc3", NULL, "t", "e", NULL, &o), PHX_E_ARG);
    cr_assert_eq(phx_encode((phx_vsn_t)3, NULL, NULL, "t", "e", NULL, &o), PHX_E_ARG);
    cr_assert_eq(phx_encode_raw(PHX_V2, NULL, NULL, "t", "e", "\"\xff\"", 3, &o), PHX_E_ARG);
    cr_assert_eq(phx_encode_raw(PHX_V2, NULL, NULL, "t", "e", NULL, 0, &o), PHX_E_ARG);
    cr_assert_eq(phx_reply(PHX_V2, NULL, NULL, "t", NULL, NULL, &o), PHX_E_ARG);
    cr_assert_null(o.base);
    cr_assert_eq(o.headroom, 8);
}

Test(phx, encode_raw_and_headroom)
{
    const char *state = "{\"id\":\"r1\",\"status\":\"waiting\",\"version\":7}";
    phx_out_t o = {.headroom = 24};
    cr_assert_eq(phx_encode_raw(PHX_V2, "1", "1", "room:r1", "phx_reply", state,
                                strlen(state), &o), 0);
    cr_assert_str_eq(o.json, "[\"1\",\"1\",\"room:r1\",\"phx_reply\","
                             "{\"id\":\"r1\",\"status\":\"waiting\",\"version\":7}]");
    check_frame(&o);
    cr_assert_geq(o.frame - o.base, 24);
    /* the headroom is the caller's: write into it */
    memset(o.base, 0x5A, 24);
    cr_assert_eq(o.frame[0], 0x81);
    phx_out_free(&o);
    cr_assert_eq(o.headroom, 24);
}

Test(phx, large_payload_frame_headers)
{
    size_t sizes[] = {100, 200, 70000};
    for (size_t i = 0; i < 3; i++) {
        char *s = malloc(sizes[i] + 1);
        memset(s, 'x', sizes[i]);
        s[sizes[i]] = '\0';
        json_t *pl = json_pack("{s:s}", "data", s);
        phx_out_t o = {0};
        cr_assert_eq(phx_encode(PHX_V2, NULL, NULL, "room:r1", "data", pl, &o), 0);
        check_frame(&o);
        cr_assert_eq(o.json_len, strlen("[null,null,\"room:r1\",\"data\",{\"data\":\"\"}]") + sizes[i]);
        phx_msg_t m;
        cr_assert_eq(phx_decode(PHX_V2, o.json, o.json_len, &m), 0);
        cr_assert(json_equal(m.payload, pl));
        phx_msg_free(&m);
        phx_out_free(&o);
        json_decref(pl);
        free(s);
    }
}

Test(phx, round_trip_both_versions)
{
    json_t *pl = json_pack("{s:{s:s,s:[i,i]},s:n}", "sdp", "type", "offer", "x", 1, 2, "z");
    phx_vsn_t vs[] = {PHX_V1, PHX_V2};
    for (int i = 0; i < 2; i++) {
        phx_out_t o = {0};
        cr_assert_eq(phx_encode(vs[i], "3", "8", "room:abc", "signal", pl, &o), 0);
        phx_msg_t m;
        cr_assert_eq(phx_decode(vs[i], o.json, o.json_len, &m), 0);
        cr_assert_str_eq(m.join_ref, "3");
        cr_assert_str_eq(m.ref, "8");
        cr_assert_str_eq(m.topic, "room:abc");
        cr_assert_str_eq(m.event, "signal");
        cr_assert(json_equal(m.payload, pl));
        /* the other version refuses it with a shape error */
        phx_msg_t w;
        cr_assert_eq(phx_decode(vs[1 - i], o.json, o.json_len, &w),
                     vs[i] == PHX_V1 ? PHX_E_NOT_ARRAY : PHX_E_NOT_OBJECT);
        phx_msg_free(&m);
        phx_out_free(&o);
    }
    json_decref(pl);
}

Test(phx, payload_outlives_message_with_incref)
{
    phx_msg_t m;
    cr_assert_eq(dec(PHX_V2, "[null,\"1\",\"t\",\"e\",{\"k\":\"v\"}]", &m), 0);
    json_t *keep = json_incref(m.payload);
    phx_msg_free(&m);
    cr_assert_str_eq(json_string_value(json_object_get(keep, "k")), "v");
    json_decref(keep);
}

/* ---- allocation failures -------------------------------------------- */

/* jansson 2.14 reports an allocation failure inside its parser as a
 * syntax error, so under memory pressure decode may say PHX_E_JSON. */
Test(phx_fault, decode_and_encode_under_allocation_failure)
{
#if !FAULTS
    cr_skip_test("allocation faults are injected in the plain build only");
#else
    const char *in = "[\"1\",\"2\",\"room:r1\",\"signal\",{\"to\":\"bob\",\"c\":[1,2,{\"x\":null}]}]";
    char big[600];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    /* larger than the first guess, so the encoder has to grow */
    json_t *pl = json_pack("{s:s,s:i}", "data", big, "n", 1);
    long i;
    for (i = 0; i < FAULT_SWEEP_MAX; i++) {
        long before = heap_in_use();
        phx_msg_t m;
        phx_out_t o = {.headroom = 8}, r = {0};
        fault_arm(i);
        int dr = phx_decode(PHX_V2, in, strlen(in), &m);
        int er = phx_encode(PHX_V1, "1", NULL, "room:r1", "data", pl, &o);
        int rr = phx_reply(PHX_V2, "1", "2", "room:r1", "ok", pl, &r);
        bool hit = fault_disarm();
        if (dr == 0) {
            cr_assert_str_eq(m.topic, "room:r1");
            cr_assert_eq(json_integer_value(json_array_get(json_object_get(m.payload, "c"), 1)), 2);
        } else {
            cr_assert(dr == PHX_E_NOMEM || dr == PHX_E_JSON, "n=%ld decode %d", i, dr);
        }
        if (er == 0) {
            cr_assert_eq(o.json_len, strlen(o.json));
            cr_assert_eq(o.json_len, 88 + strlen(big));
        } else {
            cr_assert_eq(er, PHX_E_NOMEM);
            cr_assert_null(o.base);
            cr_assert_eq(o.headroom, 8);
        }
        cr_assert(rr == 0 || rr == PHX_E_NOMEM);
        phx_msg_free(&m);
        phx_out_free(&o);
        phx_out_free(&r);
        cr_assert_eq(heap_in_use(), before, "leak with allocation %ld failing", i);
        if (!hit) {
            cr_assert_eq(dr, 0);
            cr_assert_eq(er, 0);
            cr_assert_eq(rr, 0);
            break;
        }
    }
    cr_assert_gt(i, 5);
    json_decref(pl);
#endif
}
