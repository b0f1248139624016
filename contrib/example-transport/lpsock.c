/*
 * lpsock -- an example vcgate transport: length-prefixed PacketWrappers
 * over a Unix stream socket, for a local process (a recorder, a bot, a
 * bridge) that wants to sit in rooms without speaking WebSocket.
 *
 * Built out of tree against the installed header only:
 *   cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags vcgate) \
 *      -o lpsock.so lpsock.c
 *
 * Wire: every message, both ways, is a 4-byte big-endian length and that
 * many bytes.  The client's first message is the lobby URL it would open
 * over WebSocket ("/lobby/recorder/standup" or "/lobby?token=JWT"); the
 * host parses it, so refusals are the same as on every transport: the
 * plugin then sends one text message "<HTTP status> <reason>" and hangs
 * up.  After that, each client message is one PacketWrapper, and each
 * server message is one packet of the room (SESSION_ASSIGNED first).
 *
 * Shape of a transport, in one file: options in a table (the host parses
 * them), start() on the worker's loop, send() takes one packet reference
 * and releases it once written, close() is asynchronous and ends in
 * session_closed(), stop() closes every handle before calling back.
 * Only worker 0 listens: a Unix socket path cannot be shared the way
 * SO_REUSEPORT shares a TCP port, and rooms span workers anyway.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <vcgate/plugin.h>

typedef struct { char *socket; int64_t max_queue; } lp_conf_t;

static const vcg_option_t lp_options[] = {
  VCG_OPTION_STRING(lp_conf_t, socket, "socket", "/run/vcgate/lpsock",
                    "Unix socket path to listen on (created at start)"),
  VCG_OPTION_INT(lp_conf_t, max_queue, "max_queue", 8 << 20, 65536, 1 << 30,
                 "bytes written but not yet taken by the client before packets are refused"),
  VCG_OPTION_END
};

typedef struct lp_conn lp_conn_t;
struct vcg_instance {
  const vcg_host_api_t *host;
  vcg_worker_t *w;
  const lp_conf_t *conf;
  uv_pipe_t server;
  int listening;
  lp_conn_t *conns;          /* every open connection */
  int pending;               /* handles whose close callback is due */
  vcg_stopped_cb stop_cb;
};

struct lp_conn {
  uv_pipe_t pipe;            /* first: the handle's address is the conn's */
  lp_conn_t *next, **pprev;
  vcg_instance_t *inst;
  vcg_session_t *s;          /* NULL until the lobby message was accepted */
  uint8_t *rx;               /* the message being read: header, then body */
  size_t rxlen, rxcap;
  size_t qp, qb;             /* packets and bytes handed to uv_write */
  int closing;
};

typedef struct { uv_write_t req; vcg_packet_t *p; lp_conn_t *c; uint8_t hdr[4]; } lp_write_t;

/* One handle of inst closed; after stop() the last one calls back. */
static void lp_release(vcg_instance_t *inst) {
  if (--inst->pending > 0 || !inst->stop_cb) return;
  vcg_stopped_cb cb = inst->stop_cb;
  vcg_worker_t *w = inst->w;
  free(inst);
  cb(w);
}

static void lp_closed(uv_handle_t *h) {
  lp_conn_t *c = (lp_conn_t *)h;
  vcg_instance_t *inst = c->inst;
  /* uv_close() cancelled the queued writes (their callbacks released the
   * packets) before this callback runs: nothing is left to free. */
  if (c->s) inst->host->session_closed(c->s);
  free(c->rx);
  free(c);
  lp_release(inst);
}

static void lp_hangup(lp_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  *c->pprev = c->next;
  if (c->next) c->next->pprev = c->pprev;
  uv_close((uv_handle_t *)&c->pipe, lp_closed);
}

static void lp_write_done(uv_write_t *req, int status) {
  lp_write_t *wr = (lp_write_t *)req;
  lp_conn_t *c = wr->c;
  size_t len;
  wr->c->inst->host->packet_data(wr->p, &len);
  c->qp--;
  c->qb -= len;
  c->inst->host->packet_unref(wr->p);
  free(wr);
  if (c->s && !c->closing) c->inst->host->session_set_queued(c->s, c->qp, c->qb);
  if (status < 0) lp_hangup(c);
}

/* Write one message: the length, then the packet's own bytes (no copy). */
static int lp_write(lp_conn_t *c, vcg_packet_t *p) {
  size_t len;
  const uint8_t *data = c->inst->host->packet_data(p, &len);
  lp_write_t *wr = malloc(sizeof *wr);
  if (!wr) return VCG_ENOMEM;
  wr->p = p;
  wr->c = c;
  for (int i = 0; i < 4; i++) wr->hdr[i] = (uint8_t)(len >> (24 - 8 * i));
  uv_buf_t b[2] = { uv_buf_init((char *)wr->hdr, 4), uv_buf_init((char *)data, (unsigned)len) };
  int rc = uv_write(&wr->req, (uv_stream_t *)&c->pipe, b, 2, lp_write_done);
  if (rc) { free(wr); return rc; }
  c->qp++;
  c->qb += len;
  return 0;
}

/* A refusal: "<status> <reason>" as the only message, then hang up. */
static void lp_refuse(lp_conn_t *c, int why, const char *msg) {
  char text[300];
  int n = snprintf(text, sizeof text, "%d %s", vcg_close_http_status(why), msg);
  uint8_t *buf = malloc(4 + (size_t)n);
  if (buf) {
    for (int i = 0; i < 4; i++) buf[i] = (uint8_t)((unsigned)n >> (24 - 8 * i));
    memcpy(buf + 4, text, (size_t)n);
    uv_buf_t b = uv_buf_init((char *)buf, 4 + (unsigned)n);
    (void)uv_try_write((uv_stream_t *)&c->pipe, &b, 1); /* best effort */
    free(buf);
  }
  lp_hangup(c);
}

/* One complete message from the client. */
static int lp_message(lp_conn_t *c, const uint8_t *m, size_t len) {
  const vcg_host_api_t *host = c->inst->host;
  if (c->s) return host->session_deliver(c->s, m, len);
  char target[4096], msg[256] = "";
  vcg_session_info_t info = { .size = sizeof info, .conn = c, .target = target };
  int why = VCG_CLOSE_INTERNAL;
  if (len >= sizeof target) { lp_refuse(c, VCG_CLOSE_BAD_REQUEST, "lobby URL too long"); return -1; }
  memcpy(target, m, len);
  target[len] = '\0';
  if (host->session_open(c->inst->w, &info, &c->s, &why, msg, sizeof msg) != 0) {
    c->s = NULL;
    lp_refuse(c, why, msg[0] ? msg : "refused");
    return -1;
  }
  return 0;
}

static void lp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  lp_conn_t *c = (lp_conn_t *)h;
  size_t want = c->rxlen < 4 ? 4 : 4 + ((size_t)c->rx[0] << 24 | (size_t)c->rx[1] << 16 |
                                        (size_t)c->rx[2] << 8 | c->rx[3]);
  if (want > c->rxcap) {
    uint8_t *n = realloc(c->rx, want);
    if (!n) { buf->base = NULL; buf->len = 0; return; }
    c->rx = n;
    c->rxcap = want;
  }
  (void)hint;
  /* Read no further than the current message, so a message is whole in rx. */
  buf->base = (char *)c->rx + c->rxlen;
  buf->len = want - c->rxlen;
}

static void lp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  lp_conn_t *c = (lp_conn_t *)st;
  size_t max = c->inst->host->max_message_size(c->inst->w);
  (void)buf;
  if (n < 0) { lp_hangup(c); return; }
  c->rxlen += (size_t)n;
  if (c->rxlen < 4) return;
  size_t len = (size_t)c->rx[0] << 24 | (size_t)c->rx[1] << 16 | (size_t)c->rx[2] << 8 | c->rx[3];
  if (len > max) { lp_refuse(c, VCG_CLOSE_TOO_BIG, "message too big"); return; }
  if (c->rxlen < 4 + len) return;
  c->rxlen = 0;
  (void)lp_message(c, c->rx + 4, len);
}

static void lp_accept(uv_stream_t *server, int status) {
  vcg_instance_t *inst = server->data;
  if (status < 0) return;
  lp_conn_t *c = calloc(1, sizeof *c);
  if (!c) return;
  c->inst = inst;
  uv_pipe_init(inst->host->loop(inst->w), &c->pipe, 0);
  inst->pending++;
  c->next = inst->conns;
  if (c->next) c->next->pprev = &c->next;
  c->pprev = &inst->conns;
  inst->conns = c;
  if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0 ||
      uv_read_start((uv_stream_t *)&c->pipe, lp_alloc, lp_read) != 0)
    lp_hangup(c);
}

static void lp_start_failed(uv_handle_t *h) { free(h->data); }

static int lp_start(const vcg_host_api_t *host, vcg_plugin_state_t *state, const void *conf,
                    vcg_worker_t *w, vcg_instance_t **out) {
  vcg_instance_t *inst = calloc(1, sizeof *inst);
  int rc;
  (void)state;
  if (!inst) return VCG_ENOMEM;
  inst->host = host;
  inst->w = w;
  inst->conf = conf;
  *out = inst;
  if (host->worker_index(w) != 0) return 0;
  uv_pipe_init(host->loop(w), &inst->server, 0);
  inst->server.data = inst;
  inst->listening = 1;
  inst->pending++;
  unlink(inst->conf->socket); /* a socket left by a previous run */
  if ((rc = uv_pipe_bind(&inst->server, inst->conf->socket)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&inst->server, 64, lp_accept)) != 0) {
    host->log(w, NULL, VCG_LOG_ERROR, "listen %s: %s", inst->conf->socket, uv_strerror(rc));
    /* A failed start gets no stop(): close the handle and free inst here. */
    *out = NULL;
    uv_close((uv_handle_t *)&inst->server, lp_start_failed);
    return rc;
  }
  host->log(w, NULL, VCG_LOG_INFO, "listening on unix:%s", inst->conf->socket);
  return 0;
}

static void lp_server_closed(uv_handle_t *h) {
  vcg_instance_t *inst = h->data;
  unlink(inst->conf->socket);
  lp_release(inst);
}

/* Stop accepting and hang up: a bot or recorder reconnects elsewhere. */
static void lp_drain(vcg_instance_t *inst) {
  if (inst->listening) {
    inst->listening = 0;
    uv_close((uv_handle_t *)&inst->server, lp_server_closed);
  }
  while (inst->conns) lp_hangup(inst->conns);
}

static void lp_stop(vcg_instance_t *inst, vcg_stopped_cb cb) {
  inst->stop_cb = cb;
  inst->pending++; /* held while stop() runs, so the callback comes once */
  lp_drain(inst);
  lp_release(inst);
}

static int lp_send(vcg_instance_t *inst, void *conn, vcg_packet_t *p) {
  lp_conn_t *c = conn;
  if (c->closing || c->qb > (size_t)inst->conf->max_queue || lp_write(c, p) != 0) {
    inst->host->packet_unref(p);
    return VCG_ENOBUFS;
  }
  return 0;
}

static void lp_close(vcg_instance_t *inst, void *conn, int why, const char *reason) {
  (void)inst; (void)why; (void)reason;
  lp_hangup(conn);
}

static const vcg_transport_ops_t lp_ops = {
  .start = lp_start, .drain = lp_drain, .stop = lp_stop, .send = lp_send, .close = lp_close,
};

static const vcg_plugin_t lp_plugin = VCG_PLUGIN_DESCRIPTOR(
  .name = "lpsock", .version = "1.0.0",
  .description = "example: length-prefixed PacketWrappers over a Unix socket",
  .kind = VCG_PLUGIN_TRANSPORT, .options = lp_options, .conf_size = sizeof(lp_conf_t),
  .transport = &lp_ops);

VCG_PLUGIN_DEFINE(lp_plugin)
