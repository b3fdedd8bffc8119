/*
 * fault_harness.h — allocation-failure injection shared by the unit tests
 * that sweep allocation faults (test_net_http, test_net_ws, test_web_jwt,
 * test_web_phx). Included by exactly one .c file per test binary: it
 * defines static functions and data, and in the plain build it replaces
 * malloc, realloc and free for the whole binary. Helpers a test may not
 * use are marked unused.
 *
 * Provides FAULTS (1 in the plain build, 0 under ASan/TSan), and when
 * FAULTS is 1: fault_arm(n), fault_disarm(), heap_in_use(). Always
 * provides FAULT_SWEEP_MAX.
 */
#ifndef ROOST_TESTS_FAULT_HARNESS_H
#define ROOST_TESTS_FAULT_HARNESS_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- allocation-failure injection ------------------------------------ *
 * The plain build replaces malloc, realloc and free so a test can make the
 * n-th allocation from now fail, then sweeps n = 0, 1, 2, ... until an
 * operation runs without meeting the fault: every allocation site fails
 * once. The operation must report out-of-memory (or succeed with the right
 * result) and free everything it allocated. Blocks from this malloc carry
 * a 16-byte tag so free can count them (glibc's own statistics count
 * cached chunks as live); blocks from calloc and friends pass through.
 * Under ASan the sanitizer owns malloc, so these tests skip there. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FAULTS 0
#else
#define FAULTS 1
#include <stdbool.h>
#include <stdint.h>
void *__libc_malloc(size_t n);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);
#define FAULT_TAG 0x7a6f6f72466c7421ull
static long fault_at = -1; /* allocations let through before one fails; -1: off */
static bool fault_hit;
static long fault_live;    /* tagged blocks not yet freed */

static bool fault_fail_now(void)
{
    if (fault_at == 0) {
        fault_at = -1;
        fault_hit = true;
        return true;
    }
    if (fault_at > 0)
        fault_at--;
    return false;
}

static bool fault_tagged(void *p)
{
    uint64_t t;
    memcpy(&t, (char *)p - 16, 8);
    return t == FAULT_TAG;
}

void *malloc(size_t n)
{
    if (fault_fail_now() || n > SIZE_MAX - 16)
        return NULL;
    char *b = __libc_malloc(n + 16);
    if (!b)
        return NULL;
    uint64_t t = FAULT_TAG;
    memcpy(b, &t, 8);
    fault_live++;
    return b + 16;
}

void *realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    if (fault_fail_now() || n > SIZE_MAX - 16)
        return NULL;
    if (!fault_tagged(p))
        return __libc_realloc(p, n);
    char *b = __libc_realloc((char *)p - 16, n + 16);
    return b ? b + 16 : NULL;
}

void free(void *p)
{
    if (!p)
        return;
    if (fault_tagged(p)) {
        memset((char *)p - 16, 0, 8);
        fault_live--;
        __libc_free((char *)p - 16);
    } else {
        __libc_free(p);
    }
}

static __attribute__((unused)) void fault_arm(long n)
{
    fault_hit = false;
    fault_at = n;
}

/* Disarm; true if the fault was met. */
static __attribute__((unused)) bool fault_disarm(void)
{
    fault_at = -1;
    return fault_hit;
}

static __attribute__((unused)) long heap_in_use(void)
{
    return fault_live;
}
#endif

#define FAULT_SWEEP_MAX 100000

#endif
