/*
 * test_rt_vec.c — the runtime's (ref, pid) vectors (links, monitors,
 * calls): linear while small, hash-indexed past RT_VEC_INDEX_MIN. Random
 * operations are checked against a plain array model, for both keys.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "rt/rt_internal.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void run_model(bool by_pid, unsigned ops, unsigned keyspace)
{
    rt_vec_t v = { 0 };
    uint64_t *model = calloc(keyspace, sizeof *model); /* key -> value + 1 */
    cr_assert_not_null(model);
    size_t live = 0;
    for (unsigned op = 0; op < ops; op++) {
        uint64_t key = 1 + next_rand() % keyspace;
        int i = by_pid ? rt__vec_find_pid(&v, key) : rt__vec_find_ref(&v, key);
        bool present = model[key - 1] != 0;
        cr_assert_eq(i >= 0, present, "op %u key %llu: found %d, model %d", op,
                     (unsigned long long)key, i, present);
        if (present) {
            uint64_t other = by_pid ? v.v[i].ref : v.v[i].pid;
            cr_assert_eq(other, model[key - 1] - 1, "op %u: wrong entry for key", op);
            if (next_rand() % 3 == 0) {
                rt__vec_del(&v, i);
                model[key - 1] = 0;
                live--;
            }
        } else if (next_rand() % 2 == 0) {
            uint64_t val = next_rand() & 0xffffffffu;
            cr_assert_eq(by_pid ? rt__vec_add(&v, val, key) : rt__vec_add(&v, key, val), RT_OK);
            model[key - 1] = val + 1;
            live++;
        }
        cr_assert_eq(v.n, live);
    }
    /* Everything the model holds is found, and nothing else. */
    for (uint64_t key = 1; key <= keyspace; key++) {
        int i = by_pid ? rt__vec_find_pid(&v, key) : rt__vec_find_ref(&v, key);
        cr_assert_eq(i >= 0, model[key - 1] != 0);
    }
    cr_assert_not_null(v.ix, "a vector of %u entries is indexed", v.n);
    rt__vec_free(&v);
    free(model);
}

Test(vec, indexed_by_ref_matches_a_plain_array)
{
    run_model(false, 200000, 3000);
}

Test(vec, indexed_by_pid_matches_a_plain_array)
{
    run_model(true, 200000, 3000);
}

Test(vec, small_vectors_stay_linear)
{
    rt_vec_t v = { 0 };
    for (uint64_t k = 1; k < RT_VEC_INDEX_MIN; k++)
        cr_assert_eq(rt__vec_add(&v, k, k * 10), RT_OK);
    cr_assert_eq(rt__vec_find_ref(&v, 5), 4);
    cr_assert_null(v.ix);
    rt__vec_free(&v);
}
