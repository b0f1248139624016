/*
 * websocket.c -- the WebSocket transport of vcgate, on libwebsockets 4.1.
 *
 * Loop.  libwebsockets runs on the worker's libuv loop as a FOREIGN loop
 * (LWS_SERVER_OPTION_LIBUV + info.foreign_loops): there is no lws thread and
 * nobody calls lws_service().  One lws context per worker instance.
 *
 * Listening.  lws 4.1 only sets SO_REUSEPORT on its own listen socket when
 * the context has several service threads, and we have one per context, so
 * we listen ourselves: a non-blocking socket with SO_REUSEPORT (every worker
 * binds the same address and the kernel spreads connections), watched by a
 * uv_poll_t, and each accepted socket is handed to lws with
 * lws_adopt_descriptor_vhost() on a vhost created with
 * CONTEXT_PORT_NO_LISTEN_SERVER.  This also makes drain trivial (close our
 * socket) and reports bind errors synchronously from start().
 *
 * Requests.  The upgrade request is judged in LWS_CALLBACK_HTTP_CONFIRM_UPGRADE,
 * the one place where lws 4.1 lets user code answer a websocket upgrade with
 * an ordinary HTTP response (return > 0 after writing it): that is where the
 * path is routed and host->session_open() runs, so a refused client sees
 * 400/403/404/429/503 with the reason as the body.  Plain HTTP requests
 * arrive in LWS_CALLBACK_HTTP and go through the same route table
 * (ws_http_routes) where further small endpoints can be added.
 *
 * Connections.  Our per-connection state (ws_conn_t) is malloc'ed when a
 * lobby upgrade is accepted and hangs off the wsi through
 * lws_set_opaque_user_data(), which, unlike the lws per-session user space,
 * survives the protocol rebinding lws does during the upgrade.  It is freed,
 * and host->session_closed() called, in LWS_CALLBACK_WSI_DESTROY, the one
 * callback lws makes for every wsi however it dies (failed handshake, peer
 * close, timeout, context destroy).
 *
 * Shutdown.  With a foreign libuv loop, lws_context_destroy() only starts the
 * teardown: lws closes its uv handles asynchronously and, unlike with its own
 * loop, does not finish by itself (lws issues #1969, #2129, #2595): the user
 * must call lws_context_destroy() a second time once lws's handles are all
 * closed.  stop() does the first call, then a uv_timer of ours polls the loop
 * for handles still marked as belonging to the context (lws marks its static
 * handles with handle->data == context, see lws_libuv_static_refcount_add();
 * they are closed only after every wsi close completed), makes the second
 * call, checks through info.pcontext that the context is really gone, and
 * only then calls the host's stopped callback.
 */
#define _GNU_SOURCE 1 /* accept4() */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>
#include <libwebsockets.h>

#include <vcgate/plugin.h>

#include "ws_util.h"

#define WS_VERSION "0.1.0"

/* Hard cap on packets queued per connection.  The host's drop policy keeps
 * queues far below this; the cap only guards against a host bug. */
#define WS_QUEUE_MAX 8192u
/* Messages written per flush of one connection before yielding to the
 * others; the rest goes out when lws reports the socket writable. */
#define WS_WRITE_BUDGET 256
/* Read before write under fan-out load: when a turn's input came from at
 * most WS_DEFER_MAX_READERS connections, WS_DEFER_MIN_DIRTY or more
 * connections wait for a write, and a reader's socket still holds unread
 * bytes, the flush waits for the next turn (at most WS_DEFER_MAX_TURNS in
 * a row; the poll returns at once, the input being readable).  lws reads
 * at most rx_buffer_size per turn, so without this a backlogged sender in
 * a large room cost one send() per receiver per few packets; with it the
 * batches grow with the backlog.  Nothing waits when the input is drained. */
#define WS_DEFER_MAX_READERS 4
#define WS_DEFER_MIN_DIRTY 32
#define WS_DEFER_MAX_TURNS 4
/* Bytes of framed messages handed to lws (one send()) per callback. */
#define WS_BATCH_BYTES (256u * 1024u)
/* Connections accepted per readiness event of the listen socket. */
#define WS_ACCEPT_BUDGET 64
/* Largest single send() lws attempts; above any message size so a message
 * is handed to the kernel in one call (lws buffers what the kernel refuses). */
#define WS_TX_PACKET (64u * 1024u * 1024u)
/* How long stop() waits for lws to close its handles before giving up
 * (leaking the context rather than freeing memory libuv still uses). */
#define WS_STOP_TIMEOUT_MS 10000
#define WS_STOP_POLL_MS 2
/* lws's opcode for a close frame written with lws_write().  lws 4.1 keeps
 * it out of its public enum (it wants lws_close_reason(), see
 * ws_on_writeable() for why we cannot) but the value is fixed by the gap the
 * public enum leaves for it between LWS_WRITE_HTTP (3) and
 * LWS_WRITE_PING (5). */
#define WS_WRITE_CLOSE ((enum lws_write_protocol)4)
/* How long a client has to echo our close frame. */
#define WS_CLOSE_ACK_SECS 3

/* ------------------------------------------------------------- config */

typedef struct ws_conf {
  char *listen;
  int64_t ping_interval;   /* ms */
  int64_t idle_timeout;    /* ms */
  char *tls_cert;
  char *tls_key;
  int64_t max_header_size; /* bytes */
  int64_t lws_log_level;   /* 0 err, 1 +warn, 2 +notice, 3 +info */
  int64_t rx_buffer_size;  /* bytes */
} ws_conf_t;

static const vcg_option_t ws_options[] = {
  VCG_OPTION_STRING(ws_conf_t, listen, "listen", "127.0.0.1:8080",
                    "address to listen on: \"host:port\" or \"[v6addr]:port\""),
  VCG_OPTION_INT(ws_conf_t, ping_interval, "ping_interval", 5000, 1000,
                 3600000, "ms without proof of life before a PING is sent "
                 "(whole seconds, rounded up)"),
  VCG_OPTION_INT(ws_conf_t, idle_timeout, "idle_timeout", 30000, 2000,
                 3600000, "ms without proof of life before the connection "
                 "is closed (whole seconds, rounded up)"),
  VCG_OPTION_STRING(ws_conf_t, tls_cert, "tls_cert", NULL,
                    "PEM certificate chain file; with tls_key: serve wss://"),
  VCG_OPTION_STRING(ws_conf_t, tls_key, "tls_key", NULL,
                    "PEM private key file; with tls_cert: serve wss://"),
  VCG_OPTION_INT(ws_conf_t, max_header_size, "max_header_size", 8192, 1024,
                 65535, "bytes of HTTP request headers accepted"),
  /* The one allocation lws makes per websocket beyond its wsi, and the
   * most one recv() reads for a connection: memory per connection against
   * system calls per message (BENCHMARKS.md has the measured trade-off).
   * Messages larger than this reach us in pieces and are reassembled. */
  VCG_OPTION_INT(ws_conf_t, rx_buffer_size, "rx_buffer_size", 4096, 512,
                 65536, "bytes libwebsockets allocates per connection to "
                 "receive into (and reads per recv()): lower saves memory "
                 "on idle connections, higher reads more per system call"),
  VCG_OPTION_INT(ws_conf_t, lws_log_level, "lws_log_level", 1, 0, 3,
                 "libwebsockets' own logs: 0 errors, 1 +warnings, "
                 "2 +notices, 3 +info"),
  VCG_OPTION_END
};

static unsigned ws_secs(int64_t ms) {
  int64_t s = (ms + 999) / 1000;
  return s > 65535 ? 65535u : (unsigned)s;
}

static int ws_configure(const void *vconf, char *err, size_t errlen) {
  const ws_conf_t *c = vconf;
  char host[256];
  uint16_t port;

  if (vcg__ws_parse_listen(c->listen, host, sizeof(host), &port) != 0) {
    snprintf(err, errlen, "listen: expected \"host:port\" or "
             "\"[v6addr]:port\", got \"%s\"", c->listen ? c->listen : "");
    return VCG_EINVAL;
  }
  if (ws_secs(c->idle_timeout) <= ws_secs(c->ping_interval)) {
    snprintf(err, errlen, "idle_timeout: must exceed ping_interval by at "
             "least one second");
    return VCG_EINVAL;
  }
  if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
    snprintf(err, errlen, "%s: tls_cert and tls_key must be set together",
             c->tls_cert ? "tls_key" : "tls_cert");
    return VCG_EINVAL;
  }
  if (c->tls_cert && access(c->tls_cert, R_OK) != 0) {
    snprintf(err, errlen, "tls_cert: cannot read %s: %s", c->tls_cert,
             strerror(errno));
    return VCG_EINVAL;
  }
  if (c->tls_key && access(c->tls_key, R_OK) != 0) {
    snprintf(err, errlen, "tls_key: cannot read %s: %s", c->tls_key,
             strerror(errno));
    return VCG_EINVAL;
  }
  return 0;
}

/* ------------------------------------------------------------ logging */

/* lws's log sink is one process-wide function without a user pointer, but
 * each lws context only ever runs on its worker's thread, so a thread-local
 * record of that worker routes every lws line to the right host->log().
 * This is the only state outside the instance, and it is per thread. */
static __thread const vcg_host_api_t *ws_tl_host;
static __thread vcg_worker_t *ws_tl_worker;
static __thread unsigned ws_tl_refs;

static void ws_lws_log(int level, const char *line) {
  int vl;
  size_t n;

  if (level & LLL_ERR)
    vl = VCG_LOG_ERROR;
  else if (level & LLL_WARN)
    vl = VCG_LOG_WARN;
  else if (level & (LLL_NOTICE | LLL_USER))
    vl = VCG_LOG_INFO;
  else
    vl = VCG_LOG_DEBUG;
  n = strlen(line);
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
    n--;
  if (ws_tl_host != NULL)
    ws_tl_host->log(ws_tl_worker, NULL, vl, "lws: %.*s", (int)n, line);
  else
    fprintf(stderr, "websocket: lws: %.*s\n", (int)n, line);
}

static void ws_tl_acquire(const vcg_host_api_t *host, vcg_worker_t *w) {
  ws_tl_host = host;
  ws_tl_worker = w;
  ws_tl_refs++;
}

static void ws_tl_release(void) {
  if (ws_tl_refs > 0 && --ws_tl_refs == 0) {
    ws_tl_host = NULL;
    ws_tl_worker = NULL;
  }
}

static int ws_init(const vcg_host_api_t *host, const void *vconf,
                   vcg_plugin_state_t **state) {
  const ws_conf_t *c = vconf;
  int mask = LLL_ERR;

  (void)host;
  /* lws's log level is process-wide; set it once, on the main thread,
   * before any context exists. */
  if (c->lws_log_level >= 1)
    mask |= LLL_WARN;
  if (c->lws_log_level >= 2)
    mask |= LLL_NOTICE | LLL_USER;
  if (c->lws_log_level >= 3)
    mask |= LLL_INFO;
  lws_set_log_level(mask, ws_lws_log);
  *state = NULL;
  return 0;
}

/* ---------------------------------------------------------- instance */

typedef struct ws_conn ws_conn_t;

struct vcg_instance {
  const vcg_host_api_t *host;  /* borrowed, valid until stop completes */
  vcg_worker_t *w;
  const ws_conf_t *conf;       /* borrowed, idem */
  uv_loop_t *loop;

  struct lws_context *ctx;     /* owned; NULL once destroyed */
  struct lws_context *ctx_alive; /* lws writes NULL here when ctx is freed */
  struct lws_vhost *vh;
  lws_retry_bo_t retry;        /* must outlive the vhost */
  struct lws_protocols protocols[2];

  int lfd;                     /* listen socket, -1 when closed */
  uv_poll_t lpoll;
  int lpoll_open;              /* lpoll initialised and not yet closed */
  int tls;
  char url[300];               /* "ws://127.0.0.1:8080", for logs */

  ws_conn_t *conns;            /* every connection with a ws_conn_t */
  size_t nconns;

  /* Connections given packets during this loop turn.  They are written
   * from the check handle, after the loop has run every ready callback, so
   * all packets of one turn leave in one send() per connection, without
   * waiting for a POLLOUT event (arming and disarming POLLOUT per batch
   * cost two epoll_ctl() calls and a loop turn of latency).  A slot is NULL
   * when its connection went away before the flush. */
  ws_conn_t **dirty;
  size_t ndirty, dirty_cap;
  uv_check_t flush;
  int flush_open, flush_active;
  /* Connections that delivered input since the last flush (up to
   * WS_DEFER_MAX_READERS; nreaders above that means "many"), and how many
   * turns in a row the flush has waited for them. */
  ws_conn_t *readers[WS_DEFER_MAX_READERS];
  unsigned nreaders;
  unsigned deferred;
  uv_idle_t nowait;            /* active while a flush waits: poll must not block */

  /* The one copy of outbound bytes: lws_write() needs LWS_PRE writable
   * bytes in front of the payload for the frame header, and packets are
   * shared and immutable (their headroom belongs to nobody), so each message
   * is copied here first.  Writes are synchronous inside the writeable
   * callback, so one buffer per instance serves every connection; it grows
   * to the largest message sent and is reused. */
  uint8_t *sendbuf;
  size_t sendbuf_cap;

  int draining;
  int stopping;
  vcg_stopped_cb stop_cb;
  uv_timer_t reaper;           /* polls for lws teardown during stop */
  int reaper_open;
  uint64_t stop_deadline;
  int destroy_calls;
};

struct ws_conn {
  ws_conn_t *prev, *next;      /* in inst->conns */
  vcg_instance_t *inst;
  struct lws *wsi;
  vcg_session_t *s;            /* host-owned; NULL until session_open */

  int32_t dirty_idx;           /* slot in inst->dirty, -1 when absent */
  uint32_t alive_sec;          /* loop second of the last validity report */

  /* FIFO of packet references (ring), owned: each holds one reference. */
  vcg_packet_t **q;
  uint32_t qhead, qlen, qcap;
  size_t qbytes;

  /* Reassembly of a fragmented message (or one larger than the lws rx
   * buffer); allocated only while such a message is in flight. */
  uint8_t *rx;
  size_t rxlen, rxcap;

  unsigned established : 1;    /* the upgrade completed */
  unsigned closing : 1;        /* close requested: no more data written */
  unsigned close_sent : 1;     /* our close frame is out, awaiting the echo */
  uint16_t close_code;
  char close_reason[124];      /* RFC 6455: reason <= 123 bytes */
};

/* ---------------------------------------------------- connection queue */

static void ws_queue_drop_all(ws_conn_t *c) {
  const vcg_host_api_t *host = c->inst->host;

  while (c->qlen > 0) {
    vcg_packet_t *p = c->q[c->qhead];
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    host->packet_unref(p);
  }
  c->qbytes = 0;
  c->qhead = 0;
}

static int ws_queue_push(ws_conn_t *c, vcg_packet_t *p) {
  if (c->qlen == c->qcap) {
    uint32_t ncap = c->qcap ? c->qcap * 2 : 8, i;
    vcg_packet_t **nq;

    if (ncap > WS_QUEUE_MAX)
      ncap = WS_QUEUE_MAX;
    if (ncap <= c->qcap)
      return VCG_ENOBUFS;
    nq = malloc(ncap * sizeof(*nq));
    if (nq == NULL)
      return VCG_ENOBUFS;
    for (i = 0; i < c->qlen; i++)
      nq[i] = c->q[(c->qhead + i) % c->qcap];
    free(c->q);
    c->q = nq;
    c->qhead = 0;
    c->qcap = ncap;
  }
  c->q[(c->qhead + c->qlen) % c->qcap] = p;
  c->qlen++;
  return 0;
}

static ws_conn_t *ws_conn_new(vcg_instance_t *inst, struct lws *wsi) {
  ws_conn_t *c = calloc(1, sizeof(*c));

  if (c == NULL)
    return NULL;
  c->inst = inst;
  c->wsi = wsi;
  c->dirty_idx = -1;
  c->next = inst->conns;
  if (inst->conns)
    inst->conns->prev = c;
  inst->conns = c;
  inst->nconns++;
  lws_set_opaque_user_data(wsi, c);
  return c;
}

/* Unlink and free c, releasing every queued reference.  Does not call
 * session_closed(); the caller decides. */
static void ws_conn_free(ws_conn_t *c) {
  vcg_instance_t *inst = c->inst;

  ws_queue_drop_all(c);
  if (c->dirty_idx >= 0)
    inst->dirty[c->dirty_idx] = NULL;
  for (unsigned i = 0; i < WS_DEFER_MAX_READERS; i++)
    if (inst->readers[i] == c)
      inst->readers[i] = NULL;
  free(c->q);
  free(c->rx);
  if (c->prev)
    c->prev->next = c->next;
  else
    inst->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  inst->nconns--;
  if (c->wsi)
    lws_set_opaque_user_data(c->wsi, NULL);
  free(c);
}

/* Mark c closing with code and reason.  The close frame is written by
 * ws_on_writeable() (see there why not by lws).  Idempotent. */
static void ws_conn_begin_close(ws_conn_t *c, int code, const char *reason) {
  size_t n;

  if (c->closing)
    return;
  c->closing = 1;
  c->close_code = (uint16_t)code;
  n = reason ? strlen(reason) : 0;
  if (n > sizeof(c->close_reason) - 1)
    n = sizeof(c->close_reason) - 1;
  if (n)
    memcpy(c->close_reason, reason, n);
  c->close_reason[n] = '\0';
  /* Nothing queued will be written any more: release it now. */
  ws_queue_drop_all(c);
  if (c->s)
    c->inst->host->session_set_queued(c->s, 0, 0);
  if (c->established)
    lws_callback_on_writable(c->wsi);
  /* Before ESTABLISHED, the writable request is made there. */
}

/* Close from inside a RECEIVE callback: lws sends the close frame itself
 * when the callback returns -1, which works on that path. */
static int ws_conn_close_now(ws_conn_t *c, int code, const char *reason) {
  ws_conn_begin_close(c, code, reason);
  lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
                   (unsigned char *)c->close_reason, strlen(c->close_reason));
  return -1;
}

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

  c = ws_conn_new(inst, wsi);
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
    ws_conn_free(c);
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

/* ------------------------------------------------------- ws traffic */

/* Frame up to WS_WRITE_BUDGET queued messages (at most WS_BATCH_BYTES) of
 * c and hand them to lws as one raw write: one send() for the batch.
 * Called from the flush handle and from the writeable callback; lws takes
 * raw writes outside its callback and buffers whatever the kernel refuses
 * (and then asks for POLLOUT itself).  Returns 0, or -1 when the connection
 * must go. */
static int ws_write_queued(vcg_instance_t *inst, ws_conn_t *c) {
  const vcg_host_api_t *host = inst->host;
  int budget = WS_WRITE_BUDGET;
  size_t used = 0;

  if (lws_partial_buffered(c->wsi)) {
    /* lws still holds part of an earlier batch: the writeable callback
     * comes once the kernel has taken it. */
    lws_callback_on_writable(c->wsi);
    return 0;
  }
  /* Server frames are unmasked, so a frame is a 2-10 byte header and the
   * payload.  The copy is the one copy per recipient lws_write() needs
   * anyway (it wants LWS_PRE bytes of headroom before the payload, which
   * the shared, immutable packets do not have). */
  while (c->qlen > 0 && budget-- > 0) {
    vcg_packet_t *p = c->q[c->qhead];
    const uint8_t *data;
    size_t len, hl;
    uint8_t *f;

    data = host->packet_data(p, &len);
    hl = len < 126 ? 2 : len < 65536 ? 4 : 10;
    if (used > 0 && used + hl + len > WS_BATCH_BYTES)
      break; /* the next callback sends the rest */
    if (inst->sendbuf_cap < LWS_PRE + used + hl + len) {
      size_t ncap = inst->sendbuf_cap ? inst->sendbuf_cap : 16384;
      uint8_t *nb;

      while (ncap < LWS_PRE + used + hl + len)
        ncap *= 2;
      nb = realloc(inst->sendbuf, ncap);
      if (nb == NULL) {
        host->log(inst->w, c->s, VCG_LOG_ERROR,
                  "out of memory for a %zu-byte message", len);
        return -1;
      }
      inst->sendbuf = nb;
      inst->sendbuf_cap = ncap;
    }
    f = inst->sendbuf + LWS_PRE + used;
    f[0] = 0x82; /* FIN, binary */
    if (hl == 2) {
      f[1] = (uint8_t)len;
    } else if (hl == 4) {
      f[1] = 126;
      f[2] = (uint8_t)(len >> 8);
      f[3] = (uint8_t)len;
    } else {
      f[1] = 127;
      for (int k = 0; k < 8; k++)
        f[2 + k] = (uint8_t)((uint64_t)len >> (56 - 8 * k));
    }
    memcpy(f + hl, data, len);
    used += hl + len;
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    c->qbytes -= len;
    host->packet_unref(p);
  }
  if (used > 0 &&
      lws_write(c->wsi, inst->sendbuf + LWS_PRE, used, LWS_WRITE_RAW) < 0) {
    host->session_set_queued(c->s, c->qlen, c->qbytes);
    return -1;
  }
  if (c->qlen == 0)
    c->qhead = 0;
  host->session_set_queued(c->s, c->qlen, c->qbytes);
  if (c->qlen > 0)
    lws_callback_on_writable(c->wsi);
  return 0;
}

static int ws_on_writeable(vcg_instance_t *inst, ws_conn_t *c) {
  if (c->closing) {
    /* We write the close frame ourselves instead of lws_close_reason() +
     * return -1: on that path lws 4.1 (Debian's build has _DEBUG, which
     * closes a wsi twice "to test uv") kills the socket before the close
     * frame is sent.  We then wait for the client's echo (handled in
     * LWS_CALLBACK_WS_PEER_INITIATED_CLOSE) or the timeout. */
    uint8_t frame[LWS_PRE + 2 + sizeof(c->close_reason)];
    size_t n = strlen(c->close_reason);

    if (c->close_sent)
      return 0;
    frame[LWS_PRE] = (uint8_t)(c->close_code >> 8);
    frame[LWS_PRE + 1] = (uint8_t)(c->close_code & 0xff);
    memcpy(frame + LWS_PRE + 2, c->close_reason, n);
    if (lws_write(c->wsi, frame + LWS_PRE, n + 2, WS_WRITE_CLOSE) < 0)
      return -1;
    c->close_sent = 1;
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, WS_CLOSE_ACK_SECS);
    return 0;
  }
  return ws_write_queued(inst, c);
}

/* Note that c delivered input this turn (see WS_DEFER_MAX_READERS). */
static void ws_note_reader(vcg_instance_t *inst, ws_conn_t *c) {
  if (inst->nreaders > WS_DEFER_MAX_READERS)
    return;
  if (inst->nreaders > 0 && inst->readers[inst->nreaders - 1] == c)
    return;
  if (inst->nreaders < WS_DEFER_MAX_READERS)
    inst->readers[inst->nreaders] = c;
  inst->nreaders++;
}

/* Whether this turn's flush should wait for more input (see
 * WS_DEFER_MAX_READERS): one FIONREAD per reader, and only in turns that
 * fan a few readers out to many connections. */
static int ws_flush_should_wait(vcg_instance_t *inst) {
  if (inst->ndirty < WS_DEFER_MIN_DIRTY || inst->nreaders == 0 ||
      inst->nreaders > WS_DEFER_MAX_READERS ||
      inst->deferred >= WS_DEFER_MAX_TURNS || inst->draining)
    return 0;
  for (unsigned i = 0; i < inst->nreaders; i++) {
    ws_conn_t *c = inst->readers[i];
    int unread = 0;

    if (c != NULL && !c->closing &&
        ioctl(lws_get_socket_fd(c->wsi), FIONREAD, &unread) == 0 && unread > 0)
      return 1;
  }
  return 0;
}

/* An active idle handle makes the loop poll without blocking. */
static void ws_nowait_cb(uv_idle_t *h) {
  (void)h;
}

/* The check handle: write every connection given packets this turn. */
static void ws_flush_cb(uv_check_t *h) {
  vcg_instance_t *inst = h->data;
  size_t i;

  if (ws_flush_should_wait(inst)) {
    if (inst->deferred++ == 0)
      uv_idle_start(&inst->nowait, ws_nowait_cb);
    inst->nreaders = 0; /* the next turn's readers decide again */
    return;
  }
  if (inst->deferred > 0)
    uv_idle_stop(&inst->nowait);
  inst->deferred = 0;
  inst->nreaders = 0;

  /* ndirty is re-read: nothing below queues packets today, but a slot
   * added during the walk must not be lost. */
  for (i = 0; i < inst->ndirty; i++) {
    ws_conn_t *c = inst->dirty[i];

    if (c == NULL)
      continue; /* freed since it was marked */
    inst->dirty[i] = NULL;
    c->dirty_idx = -1;
    if (c->closing || !c->established)
      continue; /* the writeable callback handles those */
    if (ws_write_queued(inst, c) < 0) {
      /* A send error is final.  Outside a callback we cannot return -1:
       * lws closes the socket on its next pass, and WSI_DESTROY then
       * closes the session. */
      inst->host->log(inst->w, c->s, VCG_LOG_DEBUG, "write failed; closing");
      c->closing = 1;
      ws_queue_drop_all(c);
      inst->host->session_set_queued(c->s, 0, 0);
      lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
    }
  }
  inst->ndirty = 0;
  uv_check_stop(&inst->flush);
  inst->flush_active = 0;
}

/* Queue c for the end-of-turn flush.  Falls back to a POLLOUT request when
 * the list cannot grow. */
static void ws_mark_dirty(vcg_instance_t *inst, ws_conn_t *c) {
  if (c->dirty_idx >= 0)
    return;
  if (!inst->flush_open) {
    lws_callback_on_writable(c->wsi); /* stopping: no flush handle */
    return;
  }
  if (inst->ndirty == inst->dirty_cap) {
    size_t ncap = inst->dirty_cap ? inst->dirty_cap * 2 : 64;
    ws_conn_t **nd = ncap <= INT32_MAX ? realloc(inst->dirty, ncap * sizeof(*nd)) : NULL;

    if (nd == NULL) {
      lws_callback_on_writable(c->wsi);
      return;
    }
    inst->dirty = nd;
    inst->dirty_cap = ncap;
  }
  c->dirty_idx = (int32_t)inst->ndirty;
  inst->dirty[inst->ndirty++] = c;
  if (!inst->flush_active) {
    uv_check_start(&inst->flush, ws_flush_cb);
    inst->flush_active = 1;
  }
}

static int ws_on_receive(vcg_instance_t *inst, ws_conn_t *c, const void *in,
                         size_t len) {
  const vcg_host_api_t *host = inst->host;
  size_t max = host->max_message_size(inst->w);
  size_t remaining;
  int first = lws_is_first_fragment(c->wsi);
  int final = lws_is_final_fragment(c->wsi);

  if (c->closing)
    return 0; /* drain input until the close completes */
  ws_note_reader(inst, c);
  if (!lws_frame_is_binary(c->wsi)) {
    return ws_conn_close_now(c, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                             "binary messages only");
  }
  /* Any message is proof of life, as a PONG would be.  Reported at most
   * once a second (the ping and idle policies count in seconds): lws keeps
   * validity timers in one sorted list per thread, so each report walks
   * it, and per message that grew with the number of connections. */
  {
    uint32_t sec = (uint32_t)(uv_now(inst->loop) / 1000);

    if (sec != c->alive_sec) {
      c->alive_sec = sec;
      lws_validity_confirmed(c->wsi);
    }
  }

  if (first && final && c->rxlen == 0) {
    /* Whole message in one piece: deliver in place, no copy. */
    if (len > max)
      goto too_big;
    host->session_deliver(c->s, in, len);
    return 0; /* a close() from the host is written by the writeable cb */
  }
  if (first)
    c->rxlen = 0;
  remaining = lws_remaining_packet_payload(c->wsi);
  if (c->rxlen + len > max || c->rxlen + len + remaining > max)
    goto too_big;
  if (c->rxcap < c->rxlen + len) {
    size_t ncap = c->rxcap ? c->rxcap : 8192;
    uint8_t *nb;

    while (ncap < c->rxlen + len + remaining)
      ncap *= 2;
    if (ncap > max)
      ncap = max;
    nb = realloc(c->rx, ncap);
    if (nb == NULL) {
      return ws_conn_close_now(c, 1011, "out of memory");
    }
    c->rx = nb;
    c->rxcap = ncap;
  }
  memcpy(c->rx + c->rxlen, in, len);
  c->rxlen += len;
  if (!final)
    return 0;
  host->session_deliver(c->s, c->rx, c->rxlen);
  /* Idle connections keep no reassembly memory. */
  free(c->rx);
  c->rx = NULL;
  c->rxlen = c->rxcap = 0;
  return 0;

too_big:
  host->log(inst->w, c->s, VCG_LOG_INFO,
            "message over %zu bytes: closing with 1009", max);
  return ws_conn_close_now(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                           "message too big");
}

/* ------------------------------------------------------ lws callback */

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                       void *user, void *in, size_t len) {
  struct lws_context *ctx = lws_get_context(wsi);
  vcg_instance_t *inst = ctx ? lws_context_user(ctx) : NULL;
  ws_conn_t *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;
  char path[1024];
  int r;

  switch (reason) {
  case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
    if (inst == NULL)
      return -1;
    if (in == NULL || strcasecmp((const char *)in, "websocket") != 0)
      return ws_http_reply(wsi, 400, "unsupported upgrade") ? -1 : 1;
    if (ws_request_path(wsi, path, sizeof(path)) < 0)
      return ws_http_reply(wsi, 400, "bad request line") ? -1 : 1;
    return ws_route(inst, wsi, path, 1);

  case LWS_CALLBACK_HTTP:
    if (inst == NULL)
      return -1;
    if (ws_request_path(wsi, path, sizeof(path)) < 0)
      r = ws_http_reply(wsi, 404, "not found") ? -1 : 1;
    else
      r = ws_route(inst, wsi, path, 0);
    if (r < 0)
      return -1;
    /* Our replies say "connection: close"; lws closes after flushing. */
    return lws_http_transaction_completed(wsi) ? -1 : 0;

  case LWS_CALLBACK_ESTABLISHED:
    if (c == NULL || c->s == NULL)
      return -1; /* an upgrade we did not accept: cannot happen */
    c->established = 1;
    /* Packets queued from inside session_open(), or a close() that came
     * before the 101, are written now. */
    if (c->closing || c->qlen > 0)
      lws_callback_on_writable(wsi);
    return 0;

  case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    /* After our close frame this is the client's echo: the handshake is
     * complete, hang up (lws would otherwise echo it back). */
    return c != NULL && c->close_sent ? -1 : 0;

  case LWS_CALLBACK_SERVER_WRITEABLE:
    if (c == NULL || inst == NULL)
      return -1;
    return ws_on_writeable(inst, c);

  case LWS_CALLBACK_RECEIVE:
    if (c == NULL || inst == NULL)
      return -1;
    return ws_on_receive(inst, c, in, len);

  case LWS_CALLBACK_CLOSED:
    if (c != NULL)
      c->established = 0; /* no more writable requests on this wsi */
    return 0;

  case LWS_CALLBACK_WSI_DESTROY:
    /* Every wsi ends here exactly once, whatever killed it. */
    if (c != NULL) {
      vcg_session_t *s = c->s;

      ws_conn_free(c);
      if (s != NULL)
        inst->host->session_closed(s);
    }
    return 0;

  default:
    break;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---------------------------------------------------------- listening */

static void ws_listen_closed(uv_handle_t *h) {
  vcg_instance_t *inst = h->data;

  if (inst->lfd >= 0) {
    close(inst->lfd);
    inst->lfd = -1;
  }
}

/* Stop accepting: close our listen socket (asynchronously for the poll
 * handle).  Idempotent. */
static void ws_listen_close(vcg_instance_t *inst) {
  if (inst->lpoll_open) {
    inst->lpoll_open = 0;
    uv_poll_stop(&inst->lpoll);
    uv_close((uv_handle_t *)&inst->lpoll, ws_listen_closed);
  } else if (inst->lfd >= 0) {
    close(inst->lfd);
    inst->lfd = -1;
  }
}

static void ws_on_accept(uv_poll_t *h, int status, int events) {
  vcg_instance_t *inst = h->data;
  int i;

  (void)events;
  if (status < 0) {
    inst->host->log(inst->w, NULL, VCG_LOG_WARN, "listen socket: %s",
                    uv_strerror(status));
    return;
  }
  for (i = 0; i < WS_ACCEPT_BUDGET; i++) {
    lws_sock_file_fd_type fd;
    int one = 1;
    int s = accept4(inst->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (s < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        inst->host->log(inst->w, NULL, VCG_LOG_WARN, "accept: %s",
                        strerror(errno));
      return;
    }
    (void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fd.sockfd = s;
    /* On failure lws closes the socket itself. */
    if (lws_adopt_descriptor_vhost(inst->vh, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP |
                                   (inst->tls ? LWS_ADOPT_ALLOW_SSL : 0),
                                   fd, NULL, NULL) == NULL)
      inst->host->log(inst->w, NULL, VCG_LOG_WARN,
                      "could not adopt an accepted connection");
  }
}

static int ws_listen_open(vcg_instance_t *inst) {
  const vcg_host_api_t *host = inst->host;
  struct addrinfo hints, *res = NULL;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  char hoststr[256], portstr[8], addr[INET6_ADDRSTRLEN];
  uint16_t port;
  int one = 1, r, fd;

  if (vcg__ws_parse_listen(inst->conf->listen, hoststr, sizeof(hoststr),
                           &port) != 0)
    return VCG_EINVAL;
  snprintf(portstr, sizeof(portstr), "%u", port);
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  r = getaddrinfo(hoststr[0] ? hoststr : NULL, portstr, &hints, &res);
  if (r != 0 || res == NULL) {
    host->log(inst->w, NULL, VCG_LOG_ERROR, "listen %s: %s",
              inst->conf->listen, gai_strerror(r));
    return VCG_EINVAL;
  }
  fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r = -errno;
    freeaddrinfo(res);
    return r;
  }
  /* SO_REUSEPORT lets every worker bind the same address; the kernel then
   * spreads incoming connections over the workers' sockets. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
      bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
      listen(fd, 511) != 0) {
    r = -errno;
    host->log(inst->w, NULL, VCG_LOG_ERROR, "listen %s: %s",
              inst->conf->listen, strerror(errno));
    freeaddrinfo(res);
    close(fd);
    return r;
  }
  freeaddrinfo(res);
  inst->lfd = fd;

  /* Report the bound address (the port is real even when 0 was asked). */
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
    const char *scheme = inst->tls ? "wss" : "ws";

    if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
      inet_ntop(AF_INET6, &a6->sin6_addr, addr, sizeof(addr));
      snprintf(inst->url, sizeof(inst->url), "%s://[%s]:%u", scheme, addr,
               ntohs(a6->sin6_port));
    } else {
      struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
      inet_ntop(AF_INET, &a4->sin_addr, addr, sizeof(addr));
      snprintf(inst->url, sizeof(inst->url), "%s://%s:%u", scheme, addr,
               ntohs(a4->sin_port));
    }
  }

  r = uv_poll_init_socket(inst->loop, &inst->lpoll, fd);
  if (r != 0)
    return r; /* lfd closed by the caller's cleanup */
  inst->lpoll.data = inst;
  inst->lpoll_open = 1;
  r = uv_poll_start(&inst->lpoll, UV_READABLE, ws_on_accept);
  return r;
}

/* ------------------------------------------------------ teardown */

static void ws_inst_free(vcg_instance_t *inst) {
  vcg_stopped_cb cb = inst->stop_cb;
  vcg_worker_t *w = inst->w;

  free(inst->sendbuf);
  free(inst->dirty);
  free(inst);
  ws_tl_release();
  if (cb)
    cb(w);
}

static void ws_reaper_closed(uv_handle_t *h) {
  vcg_instance_t *inst = h->data;

  /* The listen poll was closed before the reaper started, so its close
   * callback has run by now (close callbacks run in order). */
  ws_inst_free(inst);
}

struct ws_walk {
  struct lws_context *ctx;
  int found;
};

static void ws_walk_cb(uv_handle_t *h, void *arg) {
  struct ws_walk *wk = arg;

  if (h->data == (void *)wk->ctx)
    wk->found++;
}

static void ws_reaper_tick(uv_timer_t *t) {
  vcg_instance_t *inst = t->data;
  struct ws_walk wk;

  if (inst->ctx != NULL) {
    wk.ctx = inst->ctx;
    wk.found = 0;
    uv_walk(inst->loop, ws_walk_cb, &wk);
    if (wk.found > 0) {
      if (uv_now(inst->loop) < inst->stop_deadline)
        return; /* lws still closing its handles */
      inst->host->log(inst->w, NULL, VCG_LOG_ERROR,
                      "libwebsockets did not close its handles in time; "
                      "leaking its context");
      inst->ctx = NULL;
    } else {
      /* Every lws handle is closed: the second call completes the destroy
       * (lws_context_destroy2/3) and clears ctx_alive. */
      lws_context_destroy(inst->ctx);
      inst->destroy_calls++;
      if (inst->ctx_alive != NULL && inst->destroy_calls < 8)
        return; /* deferred by lws; try again on the next tick */
      if (inst->ctx_alive != NULL)
        inst->host->log(inst->w, NULL, VCG_LOG_ERROR,
                        "libwebsockets context not freed");
      inst->ctx = NULL;
    }
  }
  uv_timer_stop(t);
  inst->reaper_open = 0;
  uv_close((uv_handle_t *)t, ws_reaper_closed);
}

/* Close everything and free inst; cb (may be NULL) runs when done. */
static void ws_teardown(vcg_instance_t *inst, vcg_stopped_cb cb) {
  inst->stopping = 1;
  inst->stop_cb = cb;
  ws_listen_close(inst);
  if (inst->flush_open) {
    /* Closed before the reaper: its close runs first, so inst outlives it. */
    inst->flush_open = 0;
    inst->flush_active = 0;
    uv_close((uv_handle_t *)&inst->flush, NULL);
    uv_close((uv_handle_t *)&inst->nowait, NULL);
  }
  if (inst->ctx != NULL) {
    /* First call: lws starts closing every wsi (each ends in WSI_DESTROY,
     * hence session_closed) and then its own handles. */
    lws_context_destroy(inst->ctx);
    inst->destroy_calls = 1;
  }
  uv_timer_init(inst->loop, &inst->reaper);
  inst->reaper.data = inst;
  inst->reaper_open = 1;
  inst->stop_deadline = uv_now(inst->loop) + WS_STOP_TIMEOUT_MS;
  uv_timer_start(&inst->reaper, ws_reaper_tick, WS_STOP_POLL_MS,
                 WS_STOP_POLL_MS);
}

/* ----------------------------------------------------------- vtable */

static int ws_start(const vcg_host_api_t *host, vcg_plugin_state_t *state,
                    const void *vconf, vcg_worker_t *w,
                    vcg_instance_t **out) {
  const ws_conf_t *conf = vconf;
  struct lws_context_creation_info ci;
  void *loops[1];
  vcg_instance_t *inst;
  int r;

  (void)state;
  inst = calloc(1, sizeof(*inst));
  if (inst == NULL)
    return VCG_ENOMEM;
  inst->host = host;
  inst->w = w;
  inst->conf = conf;
  inst->loop = host->loop(w);
  inst->lfd = -1;
  inst->tls = conf->tls_cert != NULL && conf->tls_key != NULL;
  ws_tl_acquire(host, w);

  r = ws_listen_open(inst);
  if (r != 0)
    goto fail_sync;
  /* From here on every failure goes through ws_teardown(), which closes
   * this handle before inst is freed. */
  uv_check_init(inst->loop, &inst->flush);
  inst->flush.data = inst;
  uv_idle_init(inst->loop, &inst->nowait);
  inst->nowait.data = inst;
  inst->flush_open = 1;

  inst->protocols[0].name = "vcgate";
  inst->protocols[0].callback = ws_callback;
  inst->protocols[0].per_session_data_size = 0;
  inst->protocols[0].rx_buffer_size = (size_t)conf->rx_buffer_size;
  inst->protocols[0].tx_packet_size = WS_TX_PACKET;

  inst->retry.secs_since_valid_ping = (uint16_t)ws_secs(conf->ping_interval);
  inst->retry.secs_since_valid_hangup = (uint16_t)ws_secs(conf->idle_timeout);

  memset(&ci, 0, sizeof(ci));
  loops[0] = inst->loop;
  ci.foreign_loops = loops;
  ci.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
  if (inst->tls)
    ci.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  ci.port = CONTEXT_PORT_NO_LISTEN_SERVER;
  ci.user = inst;
  ci.pcontext = &inst->ctx_alive;
  ci.max_http_header_data = (unsigned short)conf->max_header_size;
  inst->ctx = lws_create_context(&ci);
  inst->ctx_alive = inst->ctx;
  if (inst->ctx == NULL) {
    host->log(w, NULL, VCG_LOG_ERROR, "cannot create the lws context");
    r = VCG_ENOMEM;
    goto fail_sync;
  }

  memset(&ci, 0, sizeof(ci));
  ci.options = inst->tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
  ci.port = CONTEXT_PORT_NO_LISTEN_SERVER;
  ci.vhost_name = "vcgate";
  ci.protocols = inst->protocols;
  ci.retry_and_idle_policy = &inst->retry;
  ci.max_http_header_data = (unsigned short)conf->max_header_size;
  /* HTTP/1.1 only: websockets over h2 would need RFC 8441 on both ends. */
  ci.alpn = "http/1.1";
  if (inst->tls) {
    ci.ssl_cert_filepath = conf->tls_cert;
    ci.ssl_private_key_filepath = conf->tls_key;
  }
  inst->vh = lws_create_vhost(inst->ctx, &ci);
  if (inst->vh == NULL) {
    host->log(w, NULL, VCG_LOG_ERROR, "cannot create the lws vhost%s",
              inst->tls ? " (check tls_cert / tls_key)" : "");
    r = VCG_EINVAL;
    /* The context lives on the loop now: tear it down asynchronously,
     * freeing inst when done (start() fails, so stop() never comes). */
    ws_teardown(inst, NULL);
    return r;
  }

  host->log(w, NULL, host->worker_index(w) == 0 ? VCG_LOG_INFO : VCG_LOG_DEBUG,
            "listening on %s", inst->url);
  *out = inst;
  return 0;

fail_sync:
  if (inst->lpoll_open) {
    /* The poll handle must close through the loop before inst is freed. */
    ws_teardown(inst, NULL);
    return r;
  }
  if (inst->lfd >= 0)
    close(inst->lfd);
  ws_tl_release();
  free(inst);
  return r;
}

static void ws_drain(vcg_instance_t *inst) {
  ws_conn_t *c, *next;

  if (inst->draining)
    return;
  inst->draining = 1;
  ws_listen_close(inst);
  for (c = inst->conns; c != NULL; c = next) {
    next = c->next;
    ws_conn_begin_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
  }
}

static void ws_stop(vcg_instance_t *inst, vcg_stopped_cb cb) {
  ws_teardown(inst, cb);
}

static int ws_send(vcg_instance_t *inst, void *conn, vcg_packet_t *p) {
  ws_conn_t *c = conn;
  size_t len;

  if (c->closing) {
    inst->host->packet_unref(p);
    return 0;
  }
  if (ws_queue_push(c, p) != 0) {
    inst->host->packet_unref(p);
    return VCG_ENOBUFS;
  }
  (void)inst->host->packet_data(p, &len);
  c->qbytes += len;
  if (c->established && c->qlen == 1)
    ws_mark_dirty(inst, c);
  return 0;
}

static void ws_close(vcg_instance_t *inst, void *conn, int why,
                     const char *reason) {
  (void)inst;
  ws_conn_begin_close(conn, vcg__ws_close_code(why), reason);
}

static const vcg_transport_ops_t ws_ops = {
  .configure = ws_configure,
  .init = ws_init,
  .start = ws_start,
  .drain = ws_drain,
  .stop = ws_stop,
  .send = ws_send,
  .close = ws_close,
};

static const vcg_plugin_t ws_plugin = VCG_PLUGIN_DESCRIPTOR(
  .name = "websocket",
  .version = WS_VERSION,
  .description = "WebSocket transport (libwebsockets on the worker loop)",
  .kind = VCG_PLUGIN_TRANSPORT,
  .options = ws_options,
  .conf_size = sizeof(ws_conf_t),
  .transport = &ws_ops);

VCG_PLUGIN_DEFINE(ws_plugin)
