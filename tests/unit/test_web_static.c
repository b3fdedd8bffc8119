/*
 * test_web_static.c — the static-file routes (web/static.h): the mapping
 * of URL paths, traversal and hidden files refused in every spelling,
 * content types, and files served from a scratch directory (including a
 * symbolic link that leads out of it), plus /dev/token existing only with
 * development credentials (web/api.h).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/http.h"
#include "rt/rt.h"
#include "web/api.h"
#include "web/static.h"

static int map(const char *path, char *rel)
{
    return web_static_map(path, strlen(path), rel, WEB_STATIC_MAX_PATH);
}

Test(web_static, maps_the_page_and_assets)
{
    char rel[WEB_STATIC_MAX_PATH];
    cr_assert_eq(map("/", rel), WEB_STATIC_OK);
    cr_assert_str_eq(rel, "static/index.html");
    cr_assert_eq(map("/static/app.js", rel), WEB_STATIC_OK);
    cr_assert_str_eq(rel, "static/app.js");
    cr_assert_eq(map("/static/img/a%20b.png", rel), WEB_STATIC_OK);
    cr_assert_str_eq(rel, "static/img/a b.png");
    cr_assert_eq(map("/static/vendor/phoenix.mjs", rel), WEB_STATIC_OK);
    cr_assert_str_eq(rel, "node_modules/phoenix/priv/static/phoenix.mjs");
}

Test(web_static, other_paths_are_not_static)
{
    char rel[WEB_STATIC_MAX_PATH];
    cr_assert_eq(map("/healthz", rel), WEB_STATIC_NONE);
    cr_assert_eq(map("/api/tokens", rel), WEB_STATIC_NONE);
    cr_assert_eq(map("/static", rel), WEB_STATIC_NONE);
    cr_assert_eq(map("/staticx/a.js", rel), WEB_STATIC_NONE);
    cr_assert_eq(map("/index.html", rel), WEB_STATIC_NONE);
}

Test(web_static, traversal_and_hidden_files_are_refused)
{
    static const char *bad[] = {
        "/static/../",
        "/static/..",
        "/static/../src/main.c",
        "/static/a/../../etc/passwd",
        "/static/./index.html",
        "/static/%2e%2e/src/main.c",
        "/static/%2E%2e/x",
        "/static/.%2e/x",
        "/static/%2e",
        "/static/a%2f..%2f..%2fetc%2fpasswd",
        "/static/..%5c..%5cetc",
        "/static/a\\..\\b",
        "/static/.git/config",
        "/static/.env",
        "/static/",
        "/static//etc/passwd",
        "/static/a//b",
        "/static/a/",
        "/static/%00.js",
        "/static/a%0a.js",
        "/static/%zz",
        "/static/%2",
        "/static/a%",
    };
    char rel[WEB_STATIC_MAX_PATH];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(map(bad[i], rel), WEB_STATIC_E_PATH, "%s was not refused", bad[i]);
}

Test(web_static, too_long_is_refused)
{
    char path[2 * WEB_STATIC_MAX_PATH], rel[WEB_STATIC_MAX_PATH];
    strcpy(path, "/static/");
    memset(path + 8, 'a', sizeof path - 9);
    path[sizeof path - 1] = '\0';
    cr_assert_eq(map(path, rel), WEB_STATIC_E_PATH);
    cr_assert_eq(web_static_map("/static/abc.js", 14, rel, 10), WEB_STATIC_E_PATH);
    cr_assert_eq(web_static_map("/", 1, rel, 4), WEB_STATIC_E_PATH);
}

Test(web_static, content_types)
{
    cr_assert_str_eq(web_static_content_type("static/index.html"), "text/html; charset=utf-8");
    cr_assert_str_eq(web_static_content_type("static/app.js"),
                     "text/javascript; charset=utf-8");
    cr_assert_str_eq(web_static_content_type("x/phoenix.mjs"),
                     "text/javascript; charset=utf-8");
    cr_assert_str_eq(web_static_content_type("static/style.CSS"), "text/css; charset=utf-8");
    cr_assert_str_eq(web_static_content_type("a.png"), "image/png");
    cr_assert_str_eq(web_static_content_type("a.svg"), "image/svg+xml");
    cr_assert_str_eq(web_static_content_type("a.json"), "application/json");
    cr_assert_str_eq(web_static_content_type("a.tar.gz"), "application/octet-stream");
    cr_assert_str_eq(web_static_content_type("noext"), "application/octet-stream");
    cr_assert_str_eq(web_static_content_type("dir.d/noext"), "application/octet-stream");
}

/* ---- serving from a scratch directory ------------------------------------------- */

static char root[128], outside[160];
static net_http_parser_t parser;
static web_api_response_t res;
static json_t *body;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/roost-static-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    char p[300];
    snprintf(p, sizeof p, "%s/web", root);
    cr_assert_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/web/static", root);
    cr_assert_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/web/static/index.html", root);
    write_file(p, "<!doctype html><p>hi</p>");
    snprintf(p, sizeof p, "%s/web/static/app.js", root);
    write_file(p, "console.log(1)");
    snprintf(p, sizeof p, "%s/web/static/sub", root);
    cr_assert_eq(mkdir(p, 0700), 0);
    snprintf(outside, sizeof outside, "%s/secret.txt", root);
    write_file(outside, "top secret");
    snprintf(p, sizeof p, "%s/web/static/link.txt", root);
    cr_assert_eq(symlink(outside, p), 0);
}

static void teardown(void)
{
    web_api_response_free(&res);
    json_decref(body);
    body = NULL;
    net_http_parser_free(&parser);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(web_static_serve, .init = setup, .fini = teardown, .timeout = 20);

static const net_http_request_t *parse(const char *method, const char *path)
{
    char raw[1024];
    snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", method,
             path);
    net_http_parser_free(&parser);
    net_http_parser_init(&parser, NULL);
    size_t used;
    cr_assert_eq(net_http_parser_feed(&parser, raw, strlen(raw), &used), NET_HTTP_REQUEST,
                 "%s did not parse", path);
    return net_http_parser_request(&parser);
}

/* Serves method path from root/web; returns the status (0: not static). */
static int serve(const char *method, const char *path)
{
    char dir[200];
    snprintf(dir, sizeof dir, "%s/web", root);
    web_api_response_free(&res);
    json_decref(body);
    body = NULL;
    if (!web_static_serve(dir, parse(method, path), &res))
        return 0;
    if (strcmp(res.content_type, "application/json") == 0) {
        body = json_loadb(res.body, res.len, 0, NULL);
        cr_assert_not_null(body);
    }
    return res.status;
}

static const char *error_code(void)
{
    return json_string_value(json_object_get(json_object_get(body, "error"), "code"));
}

Test(web_static_serve, serves_the_page_and_assets)
{
    cr_assert_eq(serve("GET", "/"), 200);
    cr_assert_str_eq(res.content_type, "text/html; charset=utf-8");
    cr_assert_eq(res.len, strlen("<!doctype html><p>hi</p>"));
    cr_assert(memcmp(res.body, "<!doctype html>", 15) == 0);
    cr_assert_not_null(strstr(res.headers, "X-Content-Type-Options: nosniff\r\n"));
    cr_assert_eq(serve("GET", "/static/app.js"), 200);
    cr_assert_str_eq(res.content_type, "text/javascript; charset=utf-8");
    cr_assert_eq(serve("HEAD", "/static/index.html"), 200);
    cr_assert_eq(serve("GET", "/healthz"), 0);
}

Test(web_static_serve, unknown_files_directories_and_methods)
{
    cr_assert_eq(serve("GET", "/static/nope.js"), 404);
    cr_assert_str_eq(error_code(), "not_found");
    cr_assert_eq(serve("GET", "/static/sub"), 404); /* a directory: no listing */
    cr_assert_eq(serve("GET", "/static/vendor/phoenix.mjs"), 404);
    cr_assert_not_null(strstr(res.body, "npm ci"));
    cr_assert_eq(serve("POST", "/static/app.js"), 405);
    cr_assert_not_null(strstr(res.headers, "Allow: GET, HEAD"));
}

Test(web_static_serve, traversal_is_refused)
{
    cr_assert_eq(serve("GET", "/static/../secret.txt"), 400);
    cr_assert_str_eq(error_code(), "invalid_path");
    cr_assert_eq(serve("GET", "/static/../"), 400);
    cr_assert_eq(serve("GET", "/static/%2e%2e/secret.txt"), 400);
    cr_assert_eq(serve("GET", "/static/%2e%2e%2fsecret.txt"), 400);
    /* A link inside static/ that leads out of web/ is not followed. */
    cr_assert_eq(serve("GET", "/static/link.txt"), 404);
    cr_assert_null(strstr(res.body, "top secret"));
}

Test(web_static_serve, missing_web_dir)
{
    web_api_response_free(&res);
    cr_assert(web_static_serve(NULL, parse("GET", "/"), &res));
    cr_assert_eq(res.status, 404);
}

/* ---- /dev/token ------------------------------------------------------------------ */

#define SECRET "test-secret"

static int dev_token(bool dev)
{
    const web_api_t api = {.secret = SECRET, .secret_len = sizeof SECRET - 1,
                           .api_key = "k", .version = "t", .dev = dev};
    static const char raw[] = "POST /dev/token HTTP/1.1\r\nHost: x\r\n"
                              "Content-Length: 27\r\n\r\n{\"sub\":\"ann\",\"room\":\"r1\"}  ";
    net_http_parser_free(&parser);
    net_http_parser_init(&parser, NULL);
    size_t used;
    cr_assert_eq(net_http_parser_feed(&parser, raw, sizeof raw - 1, &used), NET_HTTP_REQUEST);
    web_api_response_free(&res);
    json_decref(body);
    cr_assert_eq(web_api_handle(&api, NULL, net_http_parser_request(&parser), &res),
                 WEB_API_DONE);
    body = json_loadb(res.body, res.len, 0, NULL);
    cr_assert_not_null(body);
    return res.status;
}

Test(web_static_serve, dev_token_only_with_development_credentials)
{
    cr_assert_eq(rt_runtime_start(NULL), RT_OK);
    cr_assert_eq(dev_token(true), 200);
    cr_assert(json_is_string(json_object_get(body, "token")));
    cr_assert_eq(dev_token(false), 404);
    cr_assert_str_eq(error_code(), "not_found");
    rt_runtime_stop();
}
