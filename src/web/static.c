/*
 * web/static.c — the demo page and its assets from disk (see web/static.h).
 */
#include "web/static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/http.h"

#define STATIC_PREFIX "/static/"
#define PHOENIX_URL "/static/vendor/phoenix.mjs"
#define PHOENIX_FILE "node_modules/phoenix/priv/static/phoenix.mjs"
#define HEADERS "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"

/* ---- paths ---------------------------------------------------------------------- */

/* Appends the %-decoded segment s[0..n) to rel at *o. False when the
 * segment is refused (see web/static.h) or does not fit. */
static bool put_segment(const char *s, size_t n, char *rel, size_t cap, size_t *o)
{
    if (n == 0)
        return false; /* "//" or a trailing '/' */
    size_t start = *o, len = 0;
    if (!net_http_pct_decode(s, n, rel + start, cap - start, &len))
        return false;
    for (size_t i = start; i < start + len; i++) {
        unsigned char c = (unsigned char)rel[i];
        if (c < 0x20 || c == 0x7f || c == '/' || c == '\\')
            return false;
    }
    if (rel[start] == '.')
        return false; /* ".", "..", ".hidden" */
    *o = start + len;
    return true;
}

int web_static_map(const char *path, size_t len, char *rel, size_t cap)
{
    static const char index_rel[] = "static/index.html";
    const size_t pl = sizeof STATIC_PREFIX - 1;
    if (cap == 0)
        return WEB_STATIC_E_PATH;
    if (len == 1 && path[0] == '/') {
        if (cap < sizeof index_rel)
            return WEB_STATIC_E_PATH;
        memcpy(rel, index_rel, sizeof index_rel);
        return WEB_STATIC_OK;
    }
    if (len < pl || memcmp(path, STATIC_PREFIX, pl) != 0)
        return WEB_STATIC_NONE;
    if (len == sizeof PHOENIX_URL - 1 && memcmp(path, PHOENIX_URL, len) == 0) {
        if (cap < sizeof PHOENIX_FILE)
            return WEB_STATIC_E_PATH;
        memcpy(rel, PHOENIX_FILE, sizeof PHOENIX_FILE);
        return WEB_STATIC_OK;
    }
    size_t o = 0;
    static const char dir[] = "static/";
    if (cap < sizeof dir)
        return WEB_STATIC_E_PATH;
    memcpy(rel, dir, sizeof dir - 1);
    o = sizeof dir - 1;
    /* The segments after "/static/"; an empty rest is a directory: refused. */
    const char *s = path + pl, *end = path + len;
    for (;;) {
        const char *slash = memchr(s, '/', (size_t)(end - s));
        const char *seg_end = slash ? slash : end;
        if (!put_segment(s, (size_t)(seg_end - s), rel, cap, &o))
            return WEB_STATIC_E_PATH;
        if (!slash)
            break;
        if (o + 1 >= cap)
            return WEB_STATIC_E_PATH;
        rel[o++] = '/';
        s = slash + 1;
    }
    rel[o] = '\0';
    return o < WEB_STATIC_MAX_PATH ? WEB_STATIC_OK : WEB_STATIC_E_PATH;
}

const char *web_static_content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".txt", "text/plain; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".ico", "image/x-icon"},
        {".webp", "image/webp"},
        {".woff2", "font/woff2"},
    };
    const char *base = strrchr(name, '/');
    const char *dot = strrchr(base ? base : name, '.');
    if (dot)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

/* ---- files ---------------------------------------------------------------------- */

/* Reads web_dir/rel into res. Returns 0, or an HTTP status (404, 500). */
static int read_file(const char *web_dir, const char *rel, web_api_response_t *res)
{
    char full[PATH_MAX], real_dir[PATH_MAX], real_file[PATH_MAX];
    int n = snprintf(full, sizeof full, "%s/%s", web_dir, rel);
    if (n < 0 || (size_t)n >= sizeof full)
        return 404;
    if (!realpath(web_dir, real_dir) || !realpath(full, real_file))
        return 404;
    size_t dl = strlen(real_dir);
    if (strncmp(real_file, real_dir, dl) != 0 || real_file[dl] != '/')
        return 404; /* a link that leads out of <web> */
    int fd = open(real_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 404;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > WEB_STATIC_MAX_FILE) {
        close(fd);
        return 404;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *buf = malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return 500;
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* shrank under us: serve what is there */
        got += (size_t)r;
    }
    close(fd);
    res->status = 200;
    res->content_type = web_static_content_type(rel);
    snprintf(res->headers, sizeof res->headers, "%s", HEADERS);
    res->body = buf;
    res->len = got;
    return 0;
}

bool web_static_serve(const char *web_dir, const net_http_request_t *req,
                      web_api_response_t *res)
{
    char rel[WEB_STATIC_MAX_PATH];
    int rc = web_static_map(req->path, req->path_len, rel, sizeof rel);
    if (rc == WEB_STATIC_NONE)
        return false;
    memset(res, 0, sizeof *res);
    if (req->method != NET_HTTP_GET && req->method != NET_HTTP_HEAD) {
        web_api_error(res, 405, "method_not_allowed", "use GET", "Allow: GET, HEAD\r\n");
        return true;
    }
    if (rc != WEB_STATIC_OK) {
        web_api_error(res, 400, "invalid_path",
                      "static paths may not hold empty, dot or escaped-slash segments", NULL);
        return true;
    }
    if (!web_dir) {
        web_api_error(res, 404, "not_found",
                      "the demo page is not installed (set ROOST_WEB_DIR to roost's web/)",
                      NULL);
        return true;
    }
    int status = read_file(web_dir, rel, res);
    if (status == 404)
        web_api_error(res, 404, "not_found",
                      strcmp(rel, PHOENIX_FILE) == 0
                          ? "the phoenix client is missing: run npm ci in web/"
                          : "no such file",
                      NULL);
    else if (status)
        web_api_error(res, 500, "internal_error", "out of memory", NULL);
    return true;
}

/* ---- <web> ------------------------------------------------------------------------ */

static pthread_once_t dir_once = PTHREAD_ONCE_INIT;
static char *dir_found;

static bool has_index(const char *dir)
{
    char p[PATH_MAX];
    int n = snprintf(p, sizeof p, "%s/static/index.html", dir);
    return n > 0 && (size_t)n < sizeof p && access(p, R_OK) == 0;
}

static void find_dir(void)
{
    const char *env = getenv("ROOST_WEB_DIR");
    if (env && env[0]) {
        dir_found = strdup(env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            char cand[PATH_MAX];
            *slash = '\0';
            int m = snprintf(cand, sizeof cand, "%s/../web", exe);
            if (m > 0 && (size_t)m < sizeof cand && has_index(cand)) {
                dir_found = realpath(cand, NULL);
                if (dir_found)
                    return;
            }
        }
    }
    if (has_index("web"))
        dir_found = realpath("web", NULL);
}

const char *web_static_dir(void)
{
    pthread_once(&dir_once, find_dir);
    return dir_found;
}

bool web_static_route(const net_http_request_t *req, web_api_response_t *res)
{
    return web_static_serve(web_static_dir(), req, res);
}
