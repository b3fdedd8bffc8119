/*
 * tests/tsan/criterion/criterion.h — a minimal stand-in for Criterion,
 * used only by the ThreadSanitizer build (`make check-tsan`).
 *
 * Why: Criterion 2.4 cannot start under ThreadSanitizer at all ("Could
 * not initialize inheritable arena", Snaipe/Criterion#274: its BoxFort
 * arena is mapped where TSan keeps its shadow memory). The scheduler,
 * mailbox and stress tests must run under TSan, so the TSan build puts
 * this directory first on the include path and the very same test
 * sources compile against it. It implements exactly what those tests use
 * — Test() with .init/.fini/.timeout/.disabled, the cr_assert_* family,
 * cr_log_info — runs every test in its own forked process (as Criterion
 * does) and prints Criterion's closing "Synthesis:" line so the test
 * scripts read it the same way. One translation unit per binary.
 */
#ifndef ROOST_TSAN_CRITERION_SHIM_H
#define ROOST_TSAN_CRITERION_SHIM_H

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct cr_shim_opts {
    void (*init)(void);
    void (*fini)(void);
    double timeout;
    bool disabled;
    const char *description;
};

struct cr_shim_test {
    const char *suite, *name;
    void (*fn)(void);
    struct cr_shim_opts opts;
    struct cr_shim_test *next;
};

static struct cr_shim_test *cr_shim_head;
static struct cr_shim_test **cr_shim_tail = &cr_shim_head;

#define Test(suite, name, ...)                                                        \
    static void suite##_##name##_fn(void);                                            \
    static struct cr_shim_test suite##_##name##_t = {                                 \
        #suite, #name, suite##_##name##_fn, { __VA_ARGS__ }, NULL };                  \
    __attribute__((constructor)) static void suite##_##name##_reg(void)               \
    {                                                                                 \
        *cr_shim_tail = &suite##_##name##_t;                                          \
        cr_shim_tail = &suite##_##name##_t.next;                                      \
    }                                                                                 \
    static void suite##_##name##_fn(void)

__attribute__((format(printf, 4, 5), noreturn)) static void
cr_shim_failed(const char *file, int line, const char *expr, const char *fmt, ...)
{
    fprintf(stderr, "[----] %s:%d: Assertion Failed\n[----]   %s\n", file, line, expr);
    if (fmt && fmt[0] && fmt[1]) { /* fmt is " " plus the message */
        va_list ap;
        va_start(ap, fmt);
        fputs("[----]   ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    fflush(NULL);
    _exit(1);
}

#define CR_SHIM_CHECK(cond, text, ...)                                                \
    do {                                                                              \
        if (!(cond))                                                                  \
            cr_shim_failed(__FILE__, __LINE__, text, " " __VA_ARGS__);                \
    } while (0)

#define cr_assert(c, ...) CR_SHIM_CHECK((c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...) CR_SHIM_CHECK(!(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) CR_SHIM_CHECK((a) == (b), "(" #a ") == (" #b ")", __VA_ARGS__)
#define cr_assert_neq(a, b, ...) CR_SHIM_CHECK((a) != (b), "(" #a ") != (" #b ")", __VA_ARGS__)
#define cr_assert_lt(a, b, ...) CR_SHIM_CHECK((a) < (b), "(" #a ") < (" #b ")", __VA_ARGS__)
#define cr_assert_leq(a, b, ...) CR_SHIM_CHECK((a) <= (b), "(" #a ") <= (" #b ")", __VA_ARGS__)
#define cr_assert_gt(a, b, ...) CR_SHIM_CHECK((a) > (b), "(" #a ") > (" #b ")", __VA_ARGS__)
#define cr_assert_geq(a, b, ...) CR_SHIM_CHECK((a) >= (b), "(" #a ") >= (" #b ")", __VA_ARGS__)
#define cr_assert_null(p, ...) CR_SHIM_CHECK((p) == NULL, #p " is NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) CR_SHIM_CHECK((p) != NULL, #p " is not NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)                                                   \
    CR_SHIM_CHECK(strcmp((a), (b)) == 0, "strcmp(" #a ", " #b ") == 0", __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...)                                                  \
    CR_SHIM_CHECK(strcmp((a), (b)) != 0, "strcmp(" #a ", " #b ") != 0", __VA_ARGS__)
#define cr_log_info(...)                                                              \
    do {                                                                              \
        fputs("[----] ", stderr);                                                     \
        fprintf(stderr, __VA_ARGS__);                                                 \
        fputc('\n', stderr);                                                          \
    } while (0)

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv; /* Criterion's options (-j2, --short-filename) are accepted and ignored */
    int tested = 0, passing = 0, failing = 0, crashing = 0;
    for (struct cr_shim_test *t = cr_shim_head; t; t = t->next) {
        if (t->opts.disabled) {
            printf("[SKIP] %s::%s: Test is disabled\n", t->suite, t->name);
            continue;
        }
        tested++;
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            /* A hang is a failure, as with Criterion's .timeout. */
            alarm((unsigned)(t->opts.timeout > 0 ? t->opts.timeout * 4 : 600));
            if (t->opts.init)
                t->opts.init();
            t->fn();
            if (t->opts.fini)
                t->opts.fini();
            fflush(NULL);
            exit(0); /* exit, not _exit: TSan reports at exit */
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            passing++;
            printf("[PASS] %s::%s\n", t->suite, t->name);
        } else if (WIFEXITED(st)) {
            failing++;
            printf("[FAIL] %s::%s: exit status %d\n", t->suite, t->name, WEXITSTATUS(st));
        } else {
            crashing++;
            printf("[FAIL] %s::%s: CRASH (signal %d)\n", t->suite, t->name,
                   WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        }
    }
    printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d \n", tested,
           passing, failing, crashing);
    return failing + crashing ? 1 : 0;
}

#endif
