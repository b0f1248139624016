/*
 * ws_files.c -- static files under `webroot`, served by the WebSocket
 * listener to plain GET and HEAD requests that no other route took (the
 * call page of contrib/web, installed to $(datadir)/vcgate/www).
 *
 * Safety.  The request path lws hands us is already decoded and cleaned of
 * "//", "/./" and "/../" (encoded or not); we still refuse any segment
 * starting with '.' (no "..", no hidden files), resolve the result with
 * realpath() and serve it only when it is a regular file under the real
 * webroot, so a symlink that leads out of the root is a 404 like a missing
 * file.  No directory listings: a path ending in '/' means its index.html,
 * any other directory is a 404.
 *
 * Sending.  lws_serve_http_file() writes the head and then the file in
 * pieces of its service buffer as the socket takes them (never the whole
 * file in memory), and leaves the body out for HEAD.
 *
 * Caching.  Every file is sent with `cache-control: no-cache`, an ETag
 * (size and modification time) and Last-Modified, and a conditional
 * request that matches gets 304 without a body.  Not a max-age: the page is
 * ES modules that import each other under fixed names (no build step, no
 * hashed file names), so a browser that kept some of them for a while
 * after an upgrade would run old and new modules together; revalidating
 * costs one small round trip per file on a page that is loaded once per
 * call.
 */
#define _GNU_SOURCE 1 /* strptime(), timegm() */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ws_int.h"

/* A 304 for a file the client has: no body, the validators again. */
static int ws_not_modified(struct lws *wsi, const char *hdrs) {
  uint8_t buf[LWS_PRE + 1024];
  unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf);
  size_t n = strlen(hdrs);

  if (lws_add_http_header_status(wsi, 304, &p, end) ||
      (size_t)(end - p) < n)
    return -1;
  memcpy(p, hdrs, n);
  p += n;
  if (lws_finalize_http_header(wsi, &p, end))
    return -1;
  return lws_write(wsi, start, (size_t)(p - start), LWS_WRITE_HTTP_HEADERS) < 0
           ? -1 : 0;
}

/* Whether the request's validators say the client has this version. */
static int ws_fresh(struct lws *wsi, const char *etag, time_t mtime) {
  char v[256];
  struct tm tm;

  if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_IF_NONE_MATCH) > 0) {
    /* If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2). */
    if (lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_HTTP_IF_NONE_MATCH) < 0)
      return 0;
    return vcg__ws_etag_match(v, etag);
  }
  if (lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_HTTP_IF_MODIFIED_SINCE) <= 0)
    return 0;
  memset(&tm, 0, sizeof(tm));
  if (strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm) == NULL)
    return 0;
  return mtime <= timegm(&tm);
}

int vcg__ws_files_serve(vcg_instance_t *inst, struct lws *wsi,
                        const char *path, int method) {
  const char *root = inst->conf->webroot;
  char rroot[PATH_MAX], full[PATH_MAX], real[PATH_MAX], etag[64], lm[64];
  char hdrs[384];
  struct stat st;
  struct tm tm;
  size_t rl;
  int n;

  if (root == NULL || root[0] == '\0')
    return vcg__ws_http_reply(wsi, 404, NULL, "not found");
  if (method != WS_METHOD_GET && method != WS_METHOD_HEAD)
    return vcg__ws_http_reply(wsi, 405, "allow: GET, HEAD\r\n",
                              "method not allowed");
  if (!vcg__ws_file_path_ok(path) || realpath(root, rroot) == NULL)
    return vcg__ws_http_reply(wsi, 404, NULL, "not found");
  n = snprintf(full, sizeof(full), "%s%s%s", rroot, path,
               path[strlen(path) - 1] == '/' ? "index.html" : "");
  if (n < 0 || (size_t)n >= sizeof(full) || realpath(full, real) == NULL)
    return vcg__ws_http_reply(wsi, 404, NULL, "not found");
  /* Under the root, symlinks resolved: "<root>/..." (or anything when the
   * root is "/"). */
  rl = strlen(rroot);
  if (!(rl == 1 || (strncmp(real, rroot, rl) == 0 && real[rl] == '/')) ||
      stat(real, &st) != 0 || !S_ISREG(st.st_mode))
    return vcg__ws_http_reply(wsi, 404, NULL, "not found");

  snprintf(etag, sizeof(etag), "\"%llx-%llx\"", (unsigned long long)st.st_size,
           (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
             (unsigned long long)st.st_mtim.tv_nsec);
  gmtime_r(&st.st_mtime, &tm);
  strftime(lm, sizeof(lm), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  n = snprintf(hdrs, sizeof(hdrs),
               "etag: %s\r\nlast-modified: %s\r\ncache-control: no-cache\r\n"
               "x-content-type-options: nosniff\r\n", etag, lm);
  if (ws_fresh(wsi, etag, st.st_mtime))
    return ws_not_modified(wsi, hdrs);
  /* lws opens the resolved name again itself: a swap of a file inside the
   * root between the two needs write access to the root, which is the
   * operator's. */
  n = lws_serve_http_file(wsi, real, vcg__ws_mime_type(real), hdrs, n);
  if (n < 0)
    return -1;
  return n > 0 ? 0 : 1; /* > 0: lws answered 404 itself; 0: sending */
}
