/*
 * main.c — the roost command: configuration and the root supervisor.
 *
 *   roost serve [--schedulers N]   start the runtime and the root
 *                                  supervisor; stop cleanly on SIGINT or
 *                                  SIGTERM
 *   roost version
 *
 * The root supervisor (design §1) is one_for_one; its children (store,
 * history, media, rooms, endpoint) are added as those modules land.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt/rt.h"
#include "rt/rt_sup.h"

#define ROOST_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: roost serve [--schedulers N]\n"
            "       roost version\n");
}

static int serve(int argc, char **argv)
{
    rt_config_t cfg = { 0 };
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--schedulers") == 0 && i + 1 < argc) {
            cfg.schedulers = (unsigned)strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "roost serve: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    /* Block the stop signals before any thread exists, so every runtime
     * thread inherits the mask and only sigwait below sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    int rc = rt_runtime_start(&cfg);
    if (rc != RT_OK) {
        fprintf(stderr, "roost: cannot start the runtime: %s\n", rt_strerror(rc));
        return 1;
    }
    rt_sup_spec_t root = { .strategy = RT_ONE_FOR_ONE, .intensity = 3, .period_ms = 5000 };
    rt_pid_t sup;
    rt_reason_t *why = NULL;
    rc = rt_sup_start_sync(&root, &sup, &why);
    if (rc != RT_OK) {
        fprintf(stderr, "roost: root supervisor failed to start: %s\n",
                why ? why->text : rt_strerror(rc));
        if (why)
            rt_reason_release(why);
        rt_runtime_stop();
        return 1;
    }
    fprintf(stderr, "roost %s: runtime up, root supervisor %#llx; Ctrl-C stops\n",
            ROOST_VERSION, (unsigned long long)sup);

    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "roost: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    rt_sup_stop_sync(sup, 10000);
    rt_runtime_stop();
    fprintf(stderr, "roost: stopped\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "serve") == 0)
        return serve(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "version") == 0) {
        printf("roost %s\n", ROOST_VERSION);
        return 0;
    }
    usage(argc >= 2 && strcmp(argv[1], "help") != 0 && strcmp(argv[1], "--help") != 0 ? stderr
                                                                                       : stdout);
    return argc >= 2 && (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) ? 0 : 2;
}
