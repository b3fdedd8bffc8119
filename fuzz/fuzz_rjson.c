/*
 * libFuzzer target for domain/rjson: the reader and writer the rooms use
 * in place of jansson's json_loadb / json_dumps.
 *
 * Oracle beyond "no crash, no leak, no UB": for any input and both flag
 * sets, room_json_load accepts exactly what json_loadb accepts and gives
 * an equal value; and room_json_dump of that value writes exactly what
 * json_dumps(JSON_COMPACT | JSON_ENCODE_ANY) writes. One exception
 * (rjson.h): jansson swallows a NUL byte that follows a number or
 * true/false/null ("[1\0]" is [1] to it), rjson refuses it. For an input
 * with a NUL byte only "rjson accepts => jansson accepts the same value"
 * is checked.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "domain/rjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The buffers' reference counts, without the runtime (rt/base.c needs its
 * globals): single-threaded here. */
void rt_rc_init(rt_rc_t *rc, void (*dtor)(rt_rc_t *))
{
    atomic_init(&rc->refs, 1);
    rc->dtor = dtor;
}

void rt_rc_retain(rt_rc_t *rc)
{
    atomic_fetch_add(&rc->refs, 1);
}

void rt_rc_release(rt_rc_t *rc)
{
    if (atomic_fetch_sub(&rc->refs, 1) == 1 && rc->dtor)
        rc->dtor(rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t flag_sets[2] = {0, JSON_DECODE_ANY};
    for (int i = 0; i < 2; i++) {
        json_error_t err;
        json_t *want = json_loadb((const char *)data, size, flag_sets[i], &err);
        json_t *got = room_json_load((const char *)data, size, flag_sets[i], NULL);
        bool nul = memchr(data, 0, size) != NULL;
        if (nul ? got && !want : !want != !got)
            abort();
        if (want && got && !json_equal(want, got))
            abort();
        if (got) {
            char *text = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
            rt_buf_t *mine = room_json_dump(got, size);
            if (text && mine && (mine->len != strlen(text) || memcmp(mine->data, text, mine->len)))
                abort();
            free(text);
            if (mine)
                rt_buf_release(mine);
        }
        json_decref(want);
        json_decref(got);
    }
    return 0;
}
