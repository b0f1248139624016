/*
 * ws_http.c -- what an HTTP request on the WebSocket listener gets.
 *
 * Upgrades.  Every websocket upgrade request, whatever its path, is handed
 * to the host (host->session_open() with the raw request target): the core
 * owns the lobby grammar, so every transport accepts and refuses the same
 * URLs, and a path that is not a lobby gets the host's 404.  It happens in
 * LWS_CALLBACK_HTTP_CONFIRM_UPGRADE, the one place where lws 4.1 lets user
 * code answer a websocket upgrade with an ordinary HTTP response (return
 * > 0 after writing it), so a refused client sees the status of
 * vcg_close_http_status() with the host's reason as the body.
 *
 * Plain requests arrive in LWS_CALLBACK_HTTP and go through a route table
 * (ws_http_routes): the lobby without an upgrade is 426, /.well-known/vcgate
 * serves facts other plugins published, and anything else is a static file
 * of webroot (ws_files.c) or 404.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ws_int.h"

/* -------------------------------------------------------- HTTP replies */

/* Write a complete small HTTP/1.1 response (status, text body) and ask for
 * the connection to be closed after it.  Formatted here rather than with
 * lws_add_http_header_status(), which takes the version from the request
 * and, on the upgrade path (where lws never parsed it), answers
 * "HTTP/1.0", which WebSocket clients refuse to read.  Returns 0 or -1 when
 * the connection must be dropped. */
static int ws_http_reply_typed(struct lws *wsi, unsigned status, const char *ctype,
                               const char *extra, const char *body) {
  uint8_t buf[LWS_PRE + 2048];
  char *start = (char *)buf + LWS_PRE;
  long n = vcg__ws_http_format(start, sizeof(buf) - LWS_PRE, status, ctype,
                               extra, body);

  if (n < 0)
    return -1;
  return lws_write(wsi, (unsigned char *)start, (size_t)n,
                   LWS_WRITE_HTTP_HEADERS) < 0 ? -1 : 0;
}

int vcg__ws_http_reply(struct lws *wsi, unsigned status, const char *extra,
                       const char *body) {
  return ws_http_reply_typed(wsi, status, "text/plain; charset=utf-8", extra,
                             body);
}

static int ws_http_reply(struct lws *wsi, unsigned status, const char *body) {
  return vcg__ws_http_reply(wsi, status, NULL, body);
}

/* ------------------------------------------------- the request target */

/* The tokens lws files a request's URI under, one per method. */
static const enum lws_token_indexes ws_uri_tokens[] = {
  WSI_TOKEN_GET_URI, WSI_TOKEN_POST_URI, WSI_TOKEN_OPTIONS_URI,
  WSI_TOKEN_PUT_URI, WSI_TOKEN_PATCH_URI, WSI_TOKEN_DELETE_URI,
  WSI_TOKEN_CONNECT, WSI_TOKEN_HEAD_URI,
};

/* Copy the fragments lws keeps of header h into buf, each NUL-terminated,
 * one after the other, with a pointer to each in frag.  lws splits a URI
 * at an unescaped '&' or ';', in its path as in its query.  Returns the
 * number of fragments, 0 when h is absent, or -1 when they do not fit. */
static int ws_hdr_frags(struct lws *wsi, enum lws_token_indexes h, char *buf,
                        int len, char **frag, int maxfrag) {
  int total = lws_hdr_total_length(wsi, h), acc = 0, o = 0, i;

  if (total <= 0)
    return 0;
  for (i = 0; acc < total; i++) {
    int n;

    if (i == maxfrag)
      return -1;
    n = lws_hdr_copy_fragment(wsi, buf + o, len - o, h, i);
    if (n < 0)
      return -1;
    frag[i] = buf + o;
    o += n + 1;
    acc += n + 1; /* and the separator lws counts between fragments */
  }
  return i;
}

/* The decoded request path of wsi, whatever its method, its pieces joined
 * by '&' again (lws_hdr_copy() would join them with ',').  Returns the
 * method (WS_METHOD_*) or -1 (absent, too long). */
static int ws_request_path(struct lws *wsi, char *buf, int len) {
  for (size_t i = 0; i < sizeof(ws_uri_tokens) / sizeof(ws_uri_tokens[0]); i++) {
    char *frag[32];
    int n = ws_hdr_frags(wsi, ws_uri_tokens[i], buf, len, frag, 32);

    if (n == 0)
      continue;
    if (n < 0)
      return -1;
    for (int k = 1; k < n; k++)
      frag[k][-1] = '&';
    return ws_uri_tokens[i] == WSI_TOKEN_GET_URI ? WS_METHOD_GET :
           ws_uri_tokens[i] == WSI_TOKEN_HEAD_URI ? WS_METHOD_HEAD :
           WS_METHOD_OTHER;
  }
  return -1;
}

/* The request target for the host: the raw one read off a plaintext
 * socket for its first request (c->target, handed over: the caller frees
 * *owned), else one rebuilt from lws's decoded path and arguments (wss://,
 * or a later request on a kept-alive connection).  Returns NULL when there
 * is none or it is too long. */
static const char *ws_target(ws_conn_t *c, struct lws *wsi, char **owned) {
  int hmax = (int)c->inst->hdr_max + 1, nargs;
  char *path, *args, *argv[64];
  size_t cap, used;
  long r = -1;

  *owned = NULL;
  if (c->target != NULL) {
    *owned = c->target;
    c->target = NULL;
    return *owned;
  }
  /* Neither part can be longer than the request's headers. */
  path = malloc(2 * (size_t)hmax);
  if (path == NULL)
    return NULL;
  args = path + hmax;
  nargs = ws_request_path(wsi, path, hmax) < 0 ? -1 :
          ws_hdr_frags(wsi, WSI_TOKEN_HTTP_URI_ARGS, args, hmax, argv, 64);
  if (nargs >= 0) {
    used = nargs ? (size_t)(argv[nargs - 1] - args) + strlen(argv[nargs - 1]) : 0;
    cap = 3 * (strlen(path) + used) + (size_t)nargs + 2;
    *owned = malloc(cap);
    if (*owned != NULL)
      r = vcg__ws_target_rebuild(*owned, cap, path, (const char *const *)argv,
                                 (size_t)nargs);
  }
  free(path);
  if (r < 0) {
    free(*owned);
    *owned = NULL;
    return NULL;
  }
  return *owned;
}

/* ------------------------------------------------------------ upgrades */

/* How many times header h came (lws keeps a repeated header as more
 * fragments of the same token). */
static int ws_hdr_count(struct lws *wsi, enum lws_token_indexes h) {
  int total = lws_hdr_total_length(wsi, h), acc = 0, n = 0;

  while (acc < total) {
    acc += lws_hdr_fragment_length(wsi, h, n) + 1;
    n++;
  }
  return n;
}

/* Whether a comma-separated header value lists token (case-insensitive). */
static int ws_hdr_has_token(const char *v, const char *token) {
  size_t tl = strlen(token);

  while (*v) {
    while (*v == ' ' || *v == '\t' || *v == ',')
      v++;
    const char *e = v;

    while (*e && *e != ',')
      e++;
    const char *t = e;

    while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
      t--;
    if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0)
      return 1;
    v = e;
  }
  return 0;
}

/* RFC 6455 4.1/4.2.1: the opening handshake the server must see, checked
 * before the host spends anything on it.  lws 4.1 upgrades despite a key
 * that is not the base64 of 16 bytes, any or no version, and repeated
 * headers (it reads the first).  Returns NULL or the reason to refuse with
 * *status; *extra is a header line to add. */
static const char *ws_handshake_check(struct lws *wsi, unsigned *status,
                                      const char **extra) {
  char v[256];

  *status = 400;
  *extra = NULL;
  if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
    return "a websocket upgrade must be a GET";
  if (lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_HTTP) <= 0 ||
      strcmp(v, "HTTP/1.1") != 0)
    return "a websocket upgrade must be HTTP/1.1";
  if (ws_hdr_count(wsi, WSI_TOKEN_HOST) != 1)
    return "exactly one Host header is required";
  if (ws_hdr_count(wsi, WSI_TOKEN_UPGRADE) != 1)
    return "exactly one Upgrade header is required";
  if (lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_CONNECTION) <= 0 ||
      !ws_hdr_has_token(v, "upgrade"))
    return "Connection must include Upgrade";
  if (ws_hdr_count(wsi, WSI_TOKEN_KEY) != 1 ||
      lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_KEY) <= 0 || !vcg__ws_key_ok(v))
    return "Sec-WebSocket-Key must be one base64-encoded 16-byte value";
  *extra = "sec-websocket-version: 13\r\n";
  if (ws_hdr_count(wsi, WSI_TOKEN_VERSION) != 1 ||
      lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_VERSION) <= 0)
    return "exactly one Sec-WebSocket-Version header is required";
  if (strcmp(v, "13") != 0) {
    /* RFC 6455 4.4: the versions we speak, with 426. */
    *status = 426;
    return "unsupported Sec-WebSocket-Version";
  }
  *extra = NULL;
  return NULL;
}

int vcg__ws_http_upgrade(vcg_instance_t *inst, struct lws *wsi,
                         const char *upgrade) {
  const vcg_host_api_t *host = inst->host;
  ws_conn_t *c = lws_get_opaque_user_data(wsi);
  vcg_session_info_t info;
  vcg_session_t *s = NULL;
  const char *target, *bad, *extra;
  char *owned, msg[256];
  unsigned status;
  int why = VCG_CLOSE_INTERNAL, r;

  if (c == NULL || c->s != NULL)
    return -1; /* not a socket we adopted, or upgraded already */
  if (upgrade == NULL || strcasecmp(upgrade, "websocket") != 0)
    return ws_http_reply(wsi, 400, "unsupported upgrade") ? -1 : 1;
  bad = ws_handshake_check(wsi, &status, &extra);
  if (bad != NULL)
    return vcg__ws_http_reply(wsi, status, extra, bad) ? -1 : 1;
  if (inst->draining || inst->stopping)
    return ws_http_reply(wsi, 503, "server shutting down") ? -1 : 1;
  target = ws_target(c, wsi, &owned);
  if (target == NULL)
    return ws_http_reply(wsi, 414, "request target too long") ? -1 : 1;

  memset(&info, 0, sizeof(info));
  info.size = sizeof(info);
  info.target = target;
  info.peer = &c->peer.sa;
  info.conn = c;
  info.flags = c->has_slot ? VCG_SESSION_ADMITTED : 0;
  msg[0] = '\0';
  /* The host calls vcg__ws_conn_send() for c from inside session_open();
   * c queues and writes after ESTABLISHED. */
  r = host->session_open(inst->w, &info, &s, &why, msg, sizeof(msg));
  if (r < 0) {
    host->log(inst->w, NULL, VCG_LOG_DEBUG, "refused %s: %s", target,
              msg[0] ? msg : "refused");
    free(owned);
    return ws_http_reply(wsi, (unsigned)vcg_close_http_status(why),
                         msg[0] ? msg : "refused") ? -1 : 1;
  }
  free(owned);
  c->s = s;
  return 0;
}

/* ------------------------------------------------------ plain requests */

/* One HTTP endpoint of the transport for plain (not upgrading) requests.
 * handler() answers a request for the decoded path and returns 0 when it
 * wrote a complete response, 1 when lws sends it and ends the transaction
 * itself, or -1 when the connection must be dropped.  To add an endpoint,
 * add a handler and a row to ws_http_routes; what no row takes goes to
 * the static files. */
typedef int (*ws_route_fn)(vcg_instance_t *inst, struct lws *wsi,
                           const char *path);

/* The lobby is for websockets: a plain GET gets 426 when the URL would be
 * accepted, else the status and reason an upgrade would get (a browser
 * hides why its upgrade failed; a page can fetch the URL to learn it). */
static int ws_route_lobby(vcg_instance_t *inst, struct lws *wsi,
                          const char *path) {
  ws_conn_t *c = lws_get_opaque_user_data(wsi);
  char *owned = NULL, msg[256] = "";
  int why = VCG_CLOSE_INTERNAL, r;
  const char *target = c != NULL ? ws_target(c, wsi, &owned) : NULL;

  (void)path;
  if (target != NULL && inst->host->lobby_check != NULL &&
      inst->host->lobby_check(inst->w, target, &why, msg, sizeof(msg)) != 0) {
    free(owned);
    return ws_http_reply(wsi, (unsigned)vcg_close_http_status(why), msg[0] ? msg : "refused");
  }
  free(owned);
  r = ws_http_reply(wsi, 426, "websocket upgrade required");
  return r;
}

/* GET /.well-known/vcgate/webtransport: where the WebTransport listener of
 * this process is and the SHA-256 of its certificate, so a page on the
 * same host can connect with serverCertificateHashes to a generated
 * development certificate.  Both facts are published by the webtransport
 * plugin through host->info_set(). */
static int ws_route_wellknown(vcg_instance_t *inst, struct lws *wsi,
                              const char *path) {
  char url[256], hash[160], body[1024];

  if (strcmp(path, "/.well-known/vcgate/webtransport") != 0)
    return ws_http_reply(wsi, 404, "not found");
  if (inst->host->info_get(inst->w, "webtransport.url", url, sizeof(url)) != 0 ||
      inst->host->info_get(inst->w, "webtransport.cert_sha256", hash, sizeof(hash)) != 0)
    return ws_http_reply(wsi, 404, "webtransport is not enabled");
  /* Values come from our own plugin (hex and an address): no escaping. */
  snprintf(body, sizeof(body),
           "{\"url\":\"%s\",\"lobby\":\"%s/lobby\","
           "\"serverCertificateHashes\":[{\"algorithm\":\"sha-256\",\"value\":\"%s\"}]}",
           url, url, hash);
  return ws_http_reply_typed(wsi, 200, "application/json", NULL, body);
}

static const struct ws_http_route {
  const char *prefix;   /* matches path == prefix or path starting prefix/ */
  ws_route_fn handler;
} ws_http_routes[] = {
  { "/lobby", ws_route_lobby },
  { "/.well-known/vcgate", ws_route_wellknown },
};

int vcg__ws_http_done(vcg_instance_t *inst, struct lws *wsi) {
  ws_conn_t *c = lws_get_opaque_user_data(wsi);

  (void)inst;
  if (lws_http_transaction_completed(wsi))
    return -1;
  /* Kept alive for another request: it gets its own upgrade_timeout. */
  if (c != NULL)
    vcg__ws_upgrade_restart(c);
  return 0;
}

int vcg__ws_http_request(vcg_instance_t *inst, struct lws *wsi) {
  ws_conn_t *c = lws_get_opaque_user_data(wsi);
  char path[4096];
  int method, r = -2;

  method = ws_request_path(wsi, path, sizeof(path));
  if (method < 0) {
    r = ws_http_reply(wsi, 404, "not found");
  } else {
    for (size_t i = 0; i < sizeof(ws_http_routes) / sizeof(ws_http_routes[0]); i++) {
      const char *pre = ws_http_routes[i].prefix;
      size_t n = strlen(pre);

      if (strncmp(path, pre, n) == 0 && (path[n] == '\0' || path[n] == '/')) {
        r = ws_http_routes[i].handler(inst, wsi, path);
        break;
      }
    }
    if (r == -2)
      r = vcg__ws_files_serve(inst, wsi, path, method);
  }
  if (c != NULL) {
    /* The raw target was this request's (the lobby route may have taken
     * it); a later request on this connection is another request. */
    free(c->target);
    c->target = NULL;
  }
  if (r < 0)
    return -1;
  if (r > 0)
    return 0; /* lws is sending a file; FILE_COMPLETION ends it */
  return vcg__ws_http_done(inst, wsi);
}
