/*
 * ws_http.c -- what an HTTP request on the WebSocket listener gets.
 *
 * The upgrade request is judged in LWS_CALLBACK_HTTP_CONFIRM_UPGRADE, the
 * one place where lws 4.1 lets user code answer a websocket upgrade with an
 * ordinary HTTP response (return > 0 after writing it): that is where the
 * path is routed and host->session_open() runs, so a refused client sees
 * 400/403/404/429/503 with the reason as the body.  Plain HTTP requests
 * arrive in LWS_CALLBACK_HTTP and go through the same route table
 * (ws_http_routes) where further small endpoints can be added.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "ws_int.h"

/* -------------------------------------------------------- HTTP replies */

static const char *ws_status_text(unsigned status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 413: return "Payload Too Large";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 503: return "Service Unavailable";
  default:  return "Internal Server Error";
  }
}

/* Write a complete small HTTP/1.1 response (status, text body) and ask for
 * the connection to be closed after it.  Formatted here rather than with
 * lws_add_http_header_status(), which takes the version from the request
 * and, on the upgrade path (where lws never parsed it), answers
 * "HTTP/1.0", which WebSocket clients refuse to read.  Returns 0 or -1 when
 * the connection must be dropped. */
static int ws_http_reply_typed(struct lws *wsi, unsigned status, const char *ctype,
                               const char *body) {
  uint8_t buf[LWS_PRE + 2048];
  char *start = (char *)buf + LWS_PRE;
  size_t cap = sizeof(buf) - LWS_PRE;
  int blen = (int)strnlen(body, 1536), n;

  /* Any origin may read these small public answers (a page served from
   * elsewhere fetches the WebTransport certificate hash). */
  n = snprintf(start, cap,
               "HTTP/1.1 %u %s\r\n"
               "content-type: %s\r\n"
               "content-length: %d\r\n"
               "access-control-allow-origin: *\r\n"
               "connection: close\r\n"
               "cache-control: no-store\r\n"
               "\r\n%.*s\n",
               status, ws_status_text(status), ctype, blen + 1, blen, body);
  if (n < 0 || (size_t)n >= cap)
    return -1;
  n = lws_write(wsi, (unsigned char *)start, (size_t)n,
                LWS_WRITE_HTTP_HEADERS);
  return n < 0 ? -1 : 0;
}

static int ws_http_reply(struct lws *wsi, unsigned status, const char *body) {
  return ws_http_reply_typed(wsi, status, "text/plain; charset=utf-8", body);
}

/* ---------------------------------------------------------- routing */

/* One HTTP endpoint of the transport.  handler() answers a request for
 * path; upgrade says whether it asked for a websocket.  It returns what the
 * lws callback should return for plain HTTP (0 keep going, -1 hang up) and,
 * for an upgrade, 0 to let lws complete it or 1 when it wrote a response
 * instead.  To add an endpoint (e.g. GET /.well-known/vcgate/cert-hash for
 * the WebTransport work), add a handler and a row to ws_http_routes. */
typedef int (*ws_route_fn)(vcg_instance_t *inst, struct lws *wsi,
                           const char *path, int upgrade);

static int ws_route_lobby(vcg_instance_t *inst, struct lws *wsi,
                          const char *path, int upgrade);

static int ws_route_wellknown(vcg_instance_t *inst, struct lws *wsi,
                              const char *path, int upgrade);

static const struct ws_http_route {
  const char *prefix;   /* matches path == prefix or path starting prefix/ */
  ws_route_fn handler;
} ws_http_routes[] = {
  { "/lobby", ws_route_lobby },
  { "/.well-known/vcgate", ws_route_wellknown },
};

/* GET /.well-known/vcgate/webtransport: where the WebTransport listener of
 * this process is and the SHA-256 of its certificate, so a page on the
 * same host can connect with serverCertificateHashes to a generated
 * development certificate.  Both facts are published by the webtransport
 * plugin through host->info_set(). */
static int ws_route_wellknown(vcg_instance_t *inst, struct lws *wsi,
                              const char *path, int upgrade) {
  char url[256], hash[160], body[1024];
  if (upgrade || strcmp(path, "/.well-known/vcgate/webtransport") != 0)
    return ws_http_reply(wsi, 404, "not found") ? -1 : 1;
  if (inst->host->info_get(inst->w, "webtransport.url", url, sizeof(url)) != 0 ||
      inst->host->info_get(inst->w, "webtransport.cert_sha256", hash, sizeof(hash)) != 0)
    return ws_http_reply(wsi, 404, "webtransport is not enabled") ? -1 : 1;
  /* Values come from our own plugin (hex and an address): no escaping. */
  snprintf(body, sizeof(body),
           "{\"url\":\"%s\",\"lobby\":\"%s/lobby\","
           "\"serverCertificateHashes\":[{\"algorithm\":\"sha-256\",\"value\":\"%s\"}]}",
           url, url, hash);
  return ws_http_reply_typed(wsi, 200, "application/json", body) ? -1 : 1;
}

static int ws_route(vcg_instance_t *inst, struct lws *wsi, const char *path,
                    int upgrade) {
  size_t i;

  for (i = 0; i < sizeof(ws_http_routes) / sizeof(ws_http_routes[0]); i++) {
    const char *pre = ws_http_routes[i].prefix;
    size_t n = strlen(pre);

    if (strncmp(path, pre, n) == 0 && (path[n] == '\0' || path[n] == '/'))
      return ws_http_routes[i].handler(inst, wsi, path, upgrade);
  }
  return ws_http_reply(wsi, 404, "not found") ? -1 : 1;
}

static int ws_route_lobby(vcg_instance_t *inst, struct lws *wsi,
                          const char *path, int upgrade) {
  const vcg_host_api_t *host = inst->host;
  char user[VCG__WS_NAME_MAX + 1], room[VCG__WS_NAME_MAX + 1], msg[256];
  struct sockaddr_storage peer;
  socklen_t plen = sizeof(peer);
  vcg_session_info_t info;
  vcg_session_t *s = NULL;
  const char *why_text;
  ws_conn_t *c;
  int why = VCG_CLOSE_INTERNAL, r;

  r = vcg__ws_route(path, user, room, &why_text);
  if (r == VCG__WS_ROUTE_NOT_FOUND)
    return ws_http_reply(wsi, 404, "not found") ? -1 : 1;
  if (r == VCG__WS_ROUTE_BAD)
    return ws_http_reply(wsi, 400, why_text) ? -1 : 1;
  if (!upgrade)
    return ws_http_reply(wsi, 426, "websocket upgrade required") ? -1 : 1;
  if (inst->draining || inst->stopping)
    return ws_http_reply(wsi, 503, "server shutting down") ? -1 : 1;

  memset(&peer, 0, sizeof(peer));
  if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&peer,
                  &plen) != 0)
    peer.ss_family = AF_UNSPEC;

  c = vcg__ws_conn_new(inst, wsi);
  if (c == NULL)
    return ws_http_reply(wsi, 503, "out of memory") ? -1 : 1;

  memset(&info, 0, sizeof(info));
  info.size = sizeof(info);
  info.user = user;
  info.room = room;
  info.peer = (const struct sockaddr *)&peer;
  info.conn = c;
  msg[0] = '\0';
  /* The host calls ws_send() for c from inside session_open(); c queues
   * and writes after ESTABLISHED. */
  r = host->session_open(inst->w, &info, &s, &why, msg, sizeof(msg));
  if (r < 0) {
    vcg__ws_conn_free(c);
    host->log(inst->w, NULL, VCG_LOG_DEBUG, "refused %s/%s: %s", user, room,
              msg[0] ? msg : "refused");
    return ws_http_reply(wsi, (unsigned)vcg__ws_http_status(why),
                         msg[0] ? msg : "refused") ? -1 : 1;
  }
  c->s = s;
  return 0;
}

/* Copy the decoded request path of wsi into buf; returns its length or -1
 * (absent, too long). */
static int ws_request_path(struct lws *wsi, char *buf, int len) {
  int n = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI);

  if (n <= 0 || n >= len)
    return -1;
  return lws_hdr_copy(wsi, buf, len, WSI_TOKEN_GET_URI);
}

int vcg__ws_http_upgrade(vcg_instance_t *inst, struct lws *wsi,
                         const char *upgrade) {
  char path[1024];

  if (upgrade == NULL || strcasecmp(upgrade, "websocket") != 0)
    return ws_http_reply(wsi, 400, "unsupported upgrade") ? -1 : 1;
  if (ws_request_path(wsi, path, sizeof(path)) < 0)
    return ws_http_reply(wsi, 400, "bad request line") ? -1 : 1;
  return ws_route(inst, wsi, path, 1);
}

int vcg__ws_http_request(vcg_instance_t *inst, struct lws *wsi) {
  char path[1024];
  int r;

  if (ws_request_path(wsi, path, sizeof(path)) < 0)
    r = ws_http_reply(wsi, 404, "not found") ? -1 : 1;
  else
    r = ws_route(inst, wsi, path, 0);
  if (r < 0)
    return -1;
  /* Our replies say "connection: close"; lws closes after flushing. */
  return lws_http_transaction_completed(wsi) ? -1 : 0;
}
