/*
 * web/static.h — the demo page and its assets, served from disk
 * (design §1: "static pages"; docs/media.md tells what the page does).
 *
 * Routes (web_static_route, called by web_api_handle before its 404)
 *   GET|HEAD /                           <web>/static/index.html
 *   GET|HEAD /static/<path>              <web>/static/<path>
 *   GET|HEAD /static/vendor/phoenix.mjs  <web>/node_modules/phoenix/priv/static/phoenix.mjs
 *                                        (the npm package `phoenix`, put there by
 *                                        `npm ci` in web/; nothing third-party is
 *                                        kept in the tree)
 *   other methods                        405 with Allow: GET, HEAD
 *   a file that is not there             404 {"error":{"code":"not_found",...}}
 *   a path that is not allowed           400 {"error":{"code":"invalid_path",...}}
 * <web> is $ROOST_WEB_DIR if set, else ../web beside the executable
 * (build/roost in a checkout), else ./web; it is looked up once.
 *
 * Paths. The URL path after /static/ is split on '/', each segment is
 * %-decoded and must be non-empty, must not start with '.' (so no "." or
 * "..", no hidden files), and must hold no '/', '\\', NUL or control
 * character once decoded. The file opened must also resolve (realpath)
 * inside <web>, so a symbolic link cannot lead out either.
 *
 * Cost: the file is read whole on the calling I/O thread, at most
 * WEB_STATIC_MAX_FILE bytes. That is fine for a demo page of a few small
 * files on a local disk; a page with large assets would want a cache or
 * sendfile.
 *
 * Threads: every function is reentrant (the directory lookup runs once,
 * under pthread_once).
 */
#ifndef ROOST_WEB_STATIC_H
#define ROOST_WEB_STATIC_H

#include <stdbool.h>
#include <stddef.h>

#include "net/http.h"
#include "web/api.h"

#define WEB_STATIC_MAX_FILE (4u * 1024 * 1024) /* bytes */
#define WEB_STATIC_MAX_PATH 512                /* bytes of the mapped relative path */

enum {
    WEB_STATIC_OK = 0,       /* a static path: *rel is filled */
    WEB_STATIC_NONE = 1,     /* not a static route: route it elsewhere */
    WEB_STATIC_E_PATH = -1,  /* a static route with a path that is refused */
};

/* Maps a URL path (not %-decoded, as the parser gives it) to a path
 * relative to <web>: "/" -> "static/index.html", "/static/a/b.css" ->
 * "static/a/b.css", the phoenix client to its place in node_modules.
 * Returns WEB_STATIC_OK with rel (cap bytes) filled, WEB_STATIC_NONE
 * when the path is not one of these routes, WEB_STATIC_E_PATH when it is
 * but is refused (traversal, hidden file, bad escape, too long); rel is
 * then left unspecified. */
int web_static_map(const char *path, size_t len, char *rel, size_t cap);

/* The Content-Type for a file name, by its extension (a static string;
 * "application/octet-stream" when unknown). Text types carry
 * charset=utf-8. */
const char *web_static_content_type(const char *name);

/* Answers req from the files under web_dir. Returns false (res untouched)
 * when req's path is not a static route; true with res filled otherwise. */
bool web_static_serve(const char *web_dir, const net_http_request_t *req,
                      web_api_response_t *res);

/* web_static_serve from <web> (see above). A missing <web> makes every
 * static route a 404 that says so. */
bool web_static_route(const net_http_request_t *req, web_api_response_t *res);

/* <web> as found (NULL if none); for the log and tests. */
const char *web_static_dir(void);

#endif /* ROOST_WEB_STATIC_H */
