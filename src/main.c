/*
 * main.c — the roost command: configuration and the root supervisor.
 *
 *   roost serve [options]    open the store, start the runtime, the root
 *                            supervisor and its children; print
 *                            "roost: listening on http://HOST:PORT" to
 *                            stderr once connections are accepted; on
 *                            SIGTERM or SIGINT drain (1012) and exit 0
 *   roost token --sub U [--room R] [--ttl S] [--secret S]
 *                            print a signed token
 *   roost version
 *
 * Options take their value as the next argument or after '=', and fall
 * back to the environment (design §6):
 *   --port N        ROOST_PORT        4000 (0: any free port)
 *   --host H        ROOST_HOST        127.0.0.1
 *   --data DIR      ROOST_DATA        ./data (the store: room states, history)
 *   --secret S      ROOST_SECRET      JWT signing secret
 *   --api-key K     ROOST_API_KEY     key for /api/
 *   --max-frame N   ROOST_MAX_FRAME   1048576 bytes
 *   --io-threads N  ROOST_IO_THREADS  one per core
 *   --schedulers N  ROOST_SCHEDULERS  one per core
 *   --reconnect-grace S  ROOST_RECONNECT_GRACE  30 s a dropped participant
 *                                            keeps its entry
 *   --empty-timeout S    ROOST_EMPTY_TIMEOUT    300 s before a room nobody is
 *                                            connected to ends (default per room)
 *   --auto-create on|off ROOST_AUTO_CREATE      on: joining an unknown room creates it
 *   --media none|janus   ROOST_MEDIA            none: peer to peer; janus: through a
 *                                            Janus VideoRoom (docs/media.md)
 *   --janus-url URL      ROOST_JANUS_URL        ws://127.0.0.1:8188 (janus mode);
 *                                            wss://... for TLS
 *   --janus-ca FILE      ROOST_JANUS_CA         wss://: the CA certificates (PEM) Janus's
 *                                            certificate must chain to (default: the
 *                                            system's)
 * With no secret or no API key, serve makes random development values
 * and prints them with a warning: tokens then die with the process.
 *
 * The root supervisor (design §1) is one_for_one; its children, started
 * in this order and stopped in the reverse one: store (store/store.h),
 * history (domain/history.h), rooms and room_dir (domain/room.h; the
 * directory after the RoomsSupervisor so that it is stopped first), and
 * endpoint (web/endpoint.h); with --media janus, media (media/janus.h)
 * between history and rooms. The store is
 * opened before the tree starts and closed after it stopped, so every
 * write queued by a room is committed before the process exits.
 */
#include <errno.h>
#include <unistd.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "domain/history.h"
#include "domain/room.h"
#include "domain/state.h"
#include "media/janus.h"
#include "rt/rt.h"
#include "rt/rt_sup.h"
#include "store/store.h"
#include "web/endpoint.h"
#include "web/jwt.h"
#include "web/room_web.h"

#define ROOST_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: roost serve [--port N] [--host H] [--data DIR] [--secret S]\n"
            "                   [--api-key K] [--max-frame BYTES] [--io-threads N]\n"
            "                   [--schedulers N] [--reconnect-grace SECONDS]\n"
            "                   [--empty-timeout SECONDS] [--auto-create on|off]\n"
            "                   [--media none|janus] [--janus-url ws[s]://HOST[:PORT][/PATH]]\n"
            "                   [--janus-ca PEMFILE]\n"
            "       roost token --sub USER [--room ROOM] [--ttl SECONDS] [--secret S]\n"
            "       roost version\n"
            "Environment: ROOST_PORT, ROOST_HOST, ROOST_DATA, ROOST_SECRET, ROOST_API_KEY,\n"
            "ROOST_MAX_FRAME, ROOST_IO_THREADS, ROOST_SCHEDULERS, ROOST_RECONNECT_GRACE,\n"
            "ROOST_EMPTY_TIMEOUT, ROOST_AUTO_CREATE, ROOST_MEDIA, ROOST_JANUS_URL,\n"
            "ROOST_JANUS_CA.\n");
}

/* ---- options ------------------------------------------------------------------ */

typedef struct opt {
    const char *name;   /* "--port" */
    const char *env;    /* "ROOST_PORT" or NULL */
    const char *value;  /* result: flag, else environment, else default */
} opt_t;

/* Fills opts from argv (then the environment). Returns 0, or 2 after
 * printing what is wrong, or 1 after printing the usage for --help. */
static int parse_opts(const char *cmd, int argc, char **argv, opt_t *opts, size_t n)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '=');
        size_t alen = eq ? (size_t)(eq - a) : strlen(a);
        opt_t *o = NULL;
        for (size_t k = 0; k < n; k++)
            if (strlen(opts[k].name) == alen && strncmp(opts[k].name, a, alen) == 0)
                o = &opts[k];
        if (!o && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            usage(stdout);
            return 1; /* asked for help: the caller exits 0 */
        }
        if (!o) {
            fprintf(stderr, "roost %s: unknown option '%s'\n", cmd, a);
            usage(stderr);
            return 2;
        }
        if (eq) {
            o->value = eq + 1;
        } else if (i + 1 < argc) {
            o->value = argv[++i];
        } else {
            fprintf(stderr, "roost %s: %s needs a value\n", cmd, o->name);
            return 2;
        }
    }
    for (size_t k = 0; k < n; k++) {
        const char *e = opts[k].env ? getenv(opts[k].env) : NULL;
        if (!opts[k].value && e && e[0])
            opts[k].value = e;
    }
    return 0;
}

static const char *opt_get(const opt_t *opts, size_t n, const char *name)
{
    for (size_t k = 0; k < n; k++)
        if (strcmp(opts[k].name, name) == 0)
            return opts[k].value;
    return NULL;
}

/* A whole number in [lo, hi]; def when s is NULL. False if it is not. */
static bool num(const char *cmd, const char *name, const char *s, long long lo, long long hi,
                long long def, long long *out)
{
    if (!s) {
        *out = def;
        return true;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "roost %s: %s must be a whole number from %lld to %lld, not '%s'\n", cmd,
                name, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

/* on|off (true|false, yes|no, 1|0); def when s is NULL. */
static bool onoff(const char *cmd, const char *name, const char *s, bool def, bool *out)
{
    static const char *on[] = {"on", "true", "yes", "1"}, *off[] = {"off", "false", "no", "0"};
    *out = def;
    if (!s)
        return true;
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(s, on[i]) == 0)
            return *out = true, true;
        if (strcmp(s, off[i]) == 0)
            return *out = false, true;
    }
    fprintf(stderr, "roost %s: %s must be on or off, not '%s'\n", cmd, name, s);
    return false;
}

/* 32 random bytes, base64url: a development secret or key. */
static char *dev_value(void)
{
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return NULL;
    char *s = malloc(48);
    if (s)
        jwt_b64url_encode(raw, sizeof raw, s);
    return s;
}

/* ---- serve -------------------------------------------------------------------- */

static int serve(int argc, char **argv)
{
    opt_t opts[] = {
        {"--port", "ROOST_PORT", NULL},         {"--host", "ROOST_HOST", NULL},
        {"--data", "ROOST_DATA", NULL},         {"--secret", "ROOST_SECRET", NULL},
        {"--api-key", "ROOST_API_KEY", NULL},   {"--max-frame", "ROOST_MAX_FRAME", NULL},
        {"--io-threads", "ROOST_IO_THREADS", NULL},
        {"--schedulers", "ROOST_SCHEDULERS", NULL},
        {"--reconnect-grace", "ROOST_RECONNECT_GRACE", NULL},
        {"--empty-timeout", "ROOST_EMPTY_TIMEOUT", NULL},
        {"--auto-create", "ROOST_AUTO_CREATE", NULL},
        {"--media", "ROOST_MEDIA", NULL},
        {"--janus-url", "ROOST_JANUS_URL", NULL},
        {"--janus-ca", "ROOST_JANUS_CA", NULL},
    };
    size_t nopts = sizeof opts / sizeof opts[0];
    int prc = parse_opts("serve", argc, argv, opts, nopts);
    if (prc)
        return prc == 1 ? 0 : prc;
    long long port, max_frame, io_threads, schedulers, grace, empty;
    bool auto_create;
    if (!num("serve", "--port", opt_get(opts, nopts, "--port"), 0, 65535, 4000, &port) ||
        !num("serve", "--max-frame", opt_get(opts, nopts, "--max-frame"), 1024,
             256LL * 1024 * 1024, 1024 * 1024, &max_frame) ||
        !num("serve", "--io-threads", opt_get(opts, nopts, "--io-threads"), 0, 256, 0,
             &io_threads) ||
        !num("serve", "--schedulers", opt_get(opts, nopts, "--schedulers"), 0, 1024, 0,
             &schedulers) ||
        !num("serve", "--reconnect-grace", opt_get(opts, nopts, "--reconnect-grace"), 1,
             86400, 30, &grace) ||
        /* At most about 23 days: the timer takes milliseconds in an int. */
        !num("serve", "--empty-timeout", opt_get(opts, nopts, "--empty-timeout"), 1,
             2000000, 300, &empty) ||
        !onoff("serve", "--auto-create", opt_get(opts, nopts, "--auto-create"), true,
               &auto_create))
        return 2;
    const char *media = opt_get(opts, nopts, "--media");
    int media_mode = ROOM_MEDIA_NONE;
    if (media && strcmp(media, "janus") == 0) {
        media_mode = ROOM_MEDIA_JANUS;
    } else if (media && strcmp(media, "none") != 0) {
        fprintf(stderr, "roost serve: --media must be none or janus, not '%s'\n", media);
        return 2;
    }
    const char *janus_url = opt_get(opts, nopts, "--janus-url");
    if (!janus_url)
        janus_url = "ws://127.0.0.1:8188";
    if (strncmp(janus_url, "ws://", 5) != 0 && strncmp(janus_url, "wss://", 6) != 0) {
        fprintf(stderr, "roost serve: --janus-url must be ws://host[:port][/path] or wss://...\n");
        return 2;
    }
    const char *janus_ca = opt_get(opts, nopts, "--janus-ca");
    if (janus_ca && access(janus_ca, R_OK) != 0) {
        fprintf(stderr, "roost serve: --janus-ca %s: %s\n", janus_ca, strerror(errno));
        return 2;
    }
    const char *data = opt_get(opts, nopts, "--data");
    if (!data)
        data = "./data";
    const char *host = opt_get(opts, nopts, "--host");
    if (!host)
        host = "127.0.0.1";

    char *dev_secret = NULL, *dev_key = NULL;
    const char *secret = opt_get(opts, nopts, "--secret");
    const char *api_key = opt_get(opts, nopts, "--api-key");
    if (!secret) {
        secret = dev_secret = dev_value();
        fprintf(stderr,
                "roost: warning: no --secret or ROOST_SECRET; development secret: %s "
                "(tokens stop working when this process ends)\n",
                secret ? secret : "?");
    }
    if (!api_key) {
        api_key = dev_key = dev_value();
        fprintf(stderr, "roost: warning: no --api-key or ROOST_API_KEY; development API key: %s\n",
                api_key ? api_key : "?");
    }
    if (!secret || !api_key) {
        fprintf(stderr, "roost: no randomness for development values\n");
        return 1;
    }

    /* Block the stop signals before any thread exists, so every runtime
     * thread inherits the mask and only sigtimedwait below sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    /* A client that goes away mid-write must not kill the server. */
    signal(SIGPIPE, SIG_IGN);

    /* The store first: nothing may run that cannot write its state. Its
     * writer thread inherits the blocked stop signals. */
    store_t *store = NULL;
    store_config_t scfg = {.data_dir = data, .schema = &room_state_schema};
    int rc = store_open(&scfg, &store);
    if (rc != STORE_OK) {
        fprintf(stderr, "roost: cannot open the store in %s: %s\n", data, store_strerror(rc));
        free(dev_secret);
        free(dev_key);
        return 1;
    }
    room_configure(&(room_config_t){
        .publisher = web_room_publisher,
        .reconnect_grace_ms = (int)(grace * 1000),
        .empty_timeout_ms = (int)(empty * 1000),
        .auto_create = auto_create,
        .store = store,
        .media = media_mode,
    });

    rt_config_t rcfg = {.schedulers = (unsigned)schedulers};
    rc = rt_runtime_start(&rcfg);
    if (rc != RT_OK) {
        fprintf(stderr, "roost: cannot start the runtime: %s\n", rt_strerror(rc));
        store_close(store);
        free(dev_secret);
        free(dev_key);
        return 1;
    }

    web_endpoint_config_t ecfg;
    web_endpoint_config_default(&ecfg);
    ecfg.net.host = host;
    ecfg.net.port = (int)port;
    ecfg.net.io_threads = (unsigned)io_threads;
    ecfg.net.max_frame = (size_t)max_frame;
    ecfg.secret = secret;
    ecfg.api_key = api_key;
    ecfg.dev = dev_secret && dev_key; /* POST /dev/token for the demo page */
    ecfg.version = ROOST_VERSION;
    web_endpoint_t *ep = web_endpoint_new(&ecfg);
    free(dev_secret);
    free(dev_key);
    if (!ep || web_endpoint_add_handler(ep, &web_room_channel) != WEB_OK) {
        fprintf(stderr, "roost: out of memory\n");
        store_close(store); /* answers what is queued: the runtime must be up */
        rt_runtime_stop();
        web_endpoint_free(ep);
        return 1;
    }

    janus_config_t jcfg = {.url = janus_url, .ca_file = janus_ca, .notify = RT_NOPID};
    rt_child_spec_t children[] = {
        {.id = "store", .behaviour = &store_server, .arg = store, .restart = RT_PERMANENT,
         .shutdown_ms = 5000, .name = "store"},
        {.id = "history", .behaviour = &history_server, .restart = RT_PERMANENT,
         .shutdown_ms = 5000, .name = HISTORY_NAME},
        {.id = "media", .behaviour = &janus_behaviour, .arg = &jcfg, .restart = RT_PERMANENT,
         .shutdown_ms = 5000, .name = JANUS_NAME},
        {.id = "rooms", .behaviour = &rt_sup_behaviour, .arg = (void *)room_rooms_spec(),
         .restart = RT_PERMANENT, .is_supervisor = true, .name = ROOM_ROOMS_NAME},
        /* After rooms: stopped before it, so it never takes the rooms'
         * shutdown for rooms that gave up (domain/room.h). */
        {.id = "room_dir", .behaviour = &room_directory, .restart = RT_PERMANENT,
         .shutdown_ms = 5000, .name = ROOM_DIR_NAME},
        {.id = "endpoint", .behaviour = &web_endpoint_behaviour, .arg = ep,
         .restart = RT_PERMANENT,
         /* Its terminate drains the connections: give it the time. */
         .shutdown_ms = ecfg.drain_timeout_ms + 5000},
    };
    size_t nchildren = sizeof children / sizeof children[0];
    if (media_mode != ROOM_MEDIA_JANUS) { /* no media child: close the gap */
        memmove(&children[2], &children[3], (nchildren - 3) * sizeof children[0]);
        nchildren--;
    }
    rt_sup_spec_t root = {.strategy = RT_ONE_FOR_ONE, .intensity = 3, .period_ms = 5000,
                          .children = children, .nchildren = nchildren};
    rt_pid_t sup;
    rt_reason_t *why = NULL;
    rc = rt_sup_start_sync(&root, &sup, &why);
    if (rc == RT_OK) {
        int bound = 0;
        rc = web_endpoint_wait_ready(ep, 10000, &bound);
        if (rc == RT_OK) {
            fprintf(stderr, "roost: listening on http://%s:%d\n", host, bound);
        } else {
            fprintf(stderr, "roost: cannot listen on %s:%lld: %s\n", host, port,
                    rc == NET_E_BIND ? "address in use or not available" : rt_strerror(rc));
            rt_sup_stop_sync(sup, 10000);
        }
    } else {
        fprintf(stderr, "roost: root supervisor failed to start: %s\n",
                why ? why->text : rt_strerror(rc));
        if (why)
            rt_reason_release(why);
    }
    if (rc != RT_OK) {
        store_close(store); /* answers what is queued: the runtime must be up */
        rt_runtime_stop();
        web_endpoint_free(ep);
        return 1;
    }

    /* Wait for a stop signal; also notice the root supervisor giving up
     * (restart intensity exceeded), which leaves nothing to serve. */
    int sig = 0;
    for (;;) {
        struct timespec tick = {0, 250 * 1000000L};
        sig = sigtimedwait(&stop, NULL, &tick);
        if (sig > 0)
            break;
        if (!rt_is_alive(sup)) {
            fprintf(stderr, "roost: the root supervisor stopped; exiting\n");
            store_close(store);
            rt_runtime_stop();
            web_endpoint_free(ep);
            return 1;
        }
    }
    /* Graceful shutdown (design §4): stop accepting and close the
     * WebSockets in batches with 1012 (rooms keep taking the changes
     * this causes), stop the tree (rooms, history), then close the
     * store, which commits everything still queued before it returns,
     * and last stop the runtime. */
    fprintf(stderr, "roost: %s, draining\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    web_endpoint_drain(ep);
    rt_sup_stop_sync(sup, ecfg.drain_timeout_ms + 10000);
    /* The store's writer answers what is still queued through the
     * runtime: close it while the runtime runs, then stop the runtime. */
    store_close(store);
    rt_runtime_stop();
    web_endpoint_free(ep);
    fprintf(stderr, "roost: stopped\n");
    return 0;
}

/* ---- token -------------------------------------------------------------------- */

static int token(int argc, char **argv)
{
    opt_t opts[] = {
        {"--sub", NULL, NULL},
        {"--room", NULL, NULL},
        {"--ttl", NULL, NULL},
        {"--secret", "ROOST_SECRET", NULL},
    };
    size_t nopts = sizeof opts / sizeof opts[0];
    int prc = parse_opts("token", argc, argv, opts, nopts);
    if (prc)
        return prc == 1 ? 0 : prc;
    const char *sub = opt_get(opts, nopts, "--sub"), *room = opt_get(opts, nopts, "--room"),
               *secret = opt_get(opts, nopts, "--secret");
    long long ttl;
    if (!num("token", "--ttl", opt_get(opts, nopts, "--ttl"), 1, WEB_TOKEN_TTL_MAX,
             WEB_TOKEN_TTL_DEFAULT, &ttl))
        return 2;
    if (!sub || !sub[0]) {
        fprintf(stderr, "roost token: --sub USER is required\n");
        return 2;
    }
    if (!secret || !secret[0]) {
        fprintf(stderr, "roost token: no --secret and no ROOST_SECRET\n");
        return 2;
    }
    int64_t now = (int64_t)time(NULL);
    json_t *claims = json_pack("{sssssIsI}", "sub", sub, "room", room && room[0] ? room : "*",
                               "iat", (json_int_t)now, "exp", (json_int_t)(now + ttl));
    char *t = NULL;
    int rc = claims ? jwt_sign(secret, strlen(secret), claims, &t) : JWT_E_NOMEM;
    json_decref(claims);
    if (rc != JWT_OK) {
        fprintf(stderr, "roost token: %s\n", jwt_strerror(rc));
        return 1;
    }
    printf("%s\n", t);
    free(t);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "serve") == 0)
        return serve(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "token") == 0)
        return token(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "version") == 0) {
        printf("roost %s\n", ROOST_VERSION);
        return 0;
    }
    bool help = argc >= 2 && (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0);
    usage(help ? stdout : stderr);
    return help ? 0 : 2;
}
