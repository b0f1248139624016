/*
 * websocket.c -- the WebSocket transport of vcgate, on libwebsockets 4.1:
 * its options, configure(), reload() and the vtable.  ws_int.h lists the
 * files and what each one does.
 *
 * Reload.  reload() takes every option but those of ws_restart_options:
 * the keepalive and the timeouts (every connection's deadline moves, see
 * vcg__ws_dl_set_timeout()), notsent_lowat (set at accept: new sockets),
 * the reassembly budget, webroot, and the certificate and key of wss://,
 * re-read on every SIGHUP so that files replaced in place are picked up
 * (ws_tls.c).  What needs a restart, and why:
 *   listen           the socket is bound at start;
 *   max_header_size  lws sizes its header buffers once per context;
 *   rx_buffer_size   lws reads the size per read from the protocol it
 *                    copied at start, and a connection whose buffer was
 *                    allocated smaller would overflow it;
 *   lws_log_level    lws keeps it in one unsynchronised process-wide
 *                    variable that every worker's lws reads.
 * Turning TLS on or off changes what the listener speaks: configure()
 * refuses that by name, which needs what the running instances serve
 * (ws_running, below).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ws_int.h"

/* ------------------------------------------------------------- config */

static const vcg_option_t ws_options[] = {
  VCG_OPTION_STRING(ws_conf_t, listen, "listen", "127.0.0.1:8080",
                    "address to listen on: \"host:port\" or \"[v6addr]:port\""),
  VCG_OPTION_INT(ws_conf_t, ping_interval, "ping_interval", 5000, 1000,
                 3600000, "ms without proof of life before a PING is sent "
                 "(proof of life is noted once a second)"),
  VCG_OPTION_INT(ws_conf_t, idle_timeout, "idle_timeout", 30000, 2000,
                 3600000, "ms without proof of life before the connection "
                 "is closed; at least ping_interval + 1000"),
  VCG_OPTION_STRING(ws_conf_t, tls_cert, "tls_cert", NULL,
                    "PEM certificate chain file; with tls_key: serve wss://"),
  VCG_OPTION_STRING(ws_conf_t, tls_key, "tls_key", NULL,
                    "PEM private key file; with tls_cert: serve wss://"),
  VCG_OPTION_INT(ws_conf_t, max_header_size, "max_header_size", 8192, 1024,
                 65535, "bytes of HTTP request headers accepted"),
  /* The one allocation lws makes per websocket beyond its wsi, on wss://,
   * where lws reads: the most one recv() reads there (memory per
   * connection against system calls per message).  On ws:// ws_in.c reads
   * into one buffer per worker, and lws gets WS_LWS_RX_OWNED. */
  VCG_OPTION_INT(ws_conf_t, rx_buffer_size, "rx_buffer_size", 4096, 512,
                 65536, "wss:// only: bytes libwebsockets allocates per "
                 "connection to receive into, and reads per recv(): lower "
                 "saves memory on idle connections, higher reads more per "
                 "system call"),
  /* A socket costs a slot of core.max_connections_per_ip and
   * core.max_connections from accept on; this bounds how long one that
   * never upgrades (slowloris, a port scanner, a plain HTTP client that
   * keeps its connection) can hold it. */
  VCG_OPTION_INT(ws_conf_t, upgrade_timeout, "upgrade_timeout", 10000, 1000,
                 600000, "ms from accept until the WebSocket upgrade must be "
                 "complete (and a plain HTTP request answered); later, "
                 "the connection is closed"),
  /* Bytes the kernel may hold unsent per connection.  Queued packets past
   * their deadline are dropped when they leave our queue; bytes the kernel
   * holds cannot be.  Measured with a receiver that stops reading for 2 s
   * under 240 KB/s of video (test_ws_hardening.py): with the kernel's
   * default all 400 KB of it arrived late, with 16/32/64/128/256 KiB
   * 28/53/77/145/275 KB did and the rest was shed.  64 KiB is a quarter to
   * half a second of 1-2 Mbit/s video, and what one send() may carry. */
  VCG_OPTION_INT(ws_conf_t, notsent_lowat, "notsent_lowat", 65536, 0,
                 16777216, "bytes a connection's socket may hold unsent "
                 "(TCP_NOTSENT_LOWAT), so that old video waits in the "
                 "queue, where it is dropped past its deadline, not in the "
                 "kernel; 0 leaves the kernel's default"),
  /* A message that arrives in pieces is held until its last one; a client
   * that starts one and stalls pins what it sent.  The budget is shared by
   * every worker of the process, the timeout bounds how long one piece of
   * it is held. */
  VCG_OPTION_INT(ws_conf_t, reassembly_budget, "reassembly_budget", 67108864,
                 65536, INT64_C(17179869184), "bytes all connections of the "
                 "process may hold in unfinished messages; a connection "
                 "that needs more is closed with 1009"),
  VCG_OPTION_INT(ws_conf_t, message_timeout, "message_timeout", 10000, 100,
                 3600000, "ms a message may take from its first byte to its "
                 "last; an unfinished one is then closed with 1008"),
  VCG_OPTION_STRING(ws_conf_t, webroot, "webroot", VCG_WS_WEBROOT,
                    "folder of static files served at / to plain GET and "
                    "HEAD requests (\"\" serves none)"),
  VCG_OPTION_INT(ws_conf_t, lws_log_level, "lws_log_level", 1, 0, 3,
                 "libwebsockets' own logs: 0 errors, 1 +warnings, "
                 "2 +notices, 3 +info"),
  VCG_OPTION_END
};

/* Options a reload cannot change (see the top of this file). */
static const char *const ws_restart_options[] = {
  "listen", "max_header_size", "rx_buffer_size", "lws_log_level", NULL
};

/* The running instances' states (init() to fini()), so that configure()
 * can tell a reload that turns TLS on or off from a first start: the
 * descriptor's restart_options cannot say "changed from unset to set", and
 * configure() sees only the new configuration.  Main thread only. */
static vcg_plugin_state_t *ws_running;

static int ws_configure(const void *vconf, char *err, size_t errlen) {
  const ws_conf_t *c = vconf;
  char host[256];
  uint16_t port;

  if (vcg__ws_parse_listen(c->listen, host, sizeof(host), &port) != 0) {
    snprintf(err, errlen, "listen: expected \"host:port\" or "
             "\"[v6addr]:port\", got \"%s\"", c->listen ? c->listen : "");
    return VCG_EINVAL;
  }
  if (c->idle_timeout < c->ping_interval + 1000) {
    snprintf(err, errlen, "idle_timeout: must exceed ping_interval by at "
             "least one second");
    return VCG_EINVAL;
  }
  if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
    snprintf(err, errlen, "%s: tls_cert and tls_key must be set together",
             c->tls_cert ? "tls_key" : "tls_cert");
    return VCG_EINVAL;
  }
  /* The whole pair, as a handshake would use it: a reload with a broken
   * one is refused here, and the running certificate keeps serving. */
  if (c->tls_cert && vcg__ws_tls_check(c->tls_cert, c->tls_key, err, errlen) != 0)
    return VCG_EINVAL;
  for (const vcg_plugin_state_t *st = ws_running; st != NULL; st = st->next) {
    if (st->listen != NULL && c->listen != NULL &&
        strcmp(st->listen, c->listen) == 0 && st->tls != (c->tls_cert != NULL)) {
      snprintf(err, errlen, "tls_cert: %s serves %s now; turning TLS %s "
               "needs a restart", c->listen, st->tls ? "wss://" : "ws://",
               st->tls ? "off" : "on");
      return VCG_EINVAL;
    }
  }
  if (c->notsent_lowat > 0 && c->notsent_lowat < 4096) {
    snprintf(err, errlen, "notsent_lowat: 0 (the kernel's default) or at "
             "least 4096 bytes, got %lld", (long long)c->notsent_lowat);
    return VCG_EINVAL;
  }
  /* A webroot that is something else than a folder is a mistake; one that
   * does not exist (yet) is a warning at start (ws_init()): the page may be
   * installed later, and until then / is a 404. */
  if (c->webroot && c->webroot[0]) {
    struct stat st;

    if (stat(c->webroot, &st) == 0 && !S_ISDIR(st.st_mode)) {
      snprintf(err, errlen, "webroot: %s is not a directory", c->webroot);
      return VCG_EINVAL;
    }
  }
  return 0;
}

static int ws_init(const vcg_host_api_t *host, const void *vconf,
                   vcg_plugin_state_t **state) {
  const ws_conf_t *c = vconf;
  struct stat st;

  *state = calloc(1, sizeof(**state));
  if (*state == NULL)
    return VCG_ENOMEM;
  atomic_init(&(*state)->rx_used, 0);
  (*state)->listen = strdup(c->listen);
  if ((*state)->listen == NULL) {
    free(*state);
    *state = NULL;
    return VCG_ENOMEM;
  }
  (*state)->tls = c->tls_cert != NULL;
  (*state)->next = ws_running;
  ws_running = *state;
  vcg__ws_log_init(c);
  if (c->webroot && c->webroot[0] && stat(c->webroot, &st) != 0)
    host->log(NULL, NULL, VCG_LOG_WARN, "webroot %s: %s; / serves nothing "
              "until it exists", c->webroot, strerror(errno));
  return 0;
}

static void ws_fini(vcg_plugin_state_t *state) {
  for (vcg_plugin_state_t **pp = &ws_running; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == state) {
      *pp = state->next;
      break;
    }
  }
  free(state->listen);
  free(state);
}

/* ----------------------------------------------------------- vtable */

static int ws_start(const vcg_host_api_t *host, vcg_plugin_state_t *state,
                    const void *vconf, vcg_worker_t *w,
                    vcg_instance_t **out) {
  const ws_conf_t *conf = vconf;
  vcg_instance_t *inst;
  int r;

  inst = calloc(1, sizeof(*inst));
  if (inst == NULL)
    return VCG_ENOMEM;
  inst->host = host;
  inst->state = state;
  inst->w = w;
  inst->conf = conf;
  inst->loop = host->loop(w);
  inst->lfd = -1;
  inst->reserve_fd = -1;
  inst->tls = conf->tls_cert != NULL && conf->tls_key != NULL;
  vcg__ws_tl_acquire(host, w);

  r = vcg__ws_listen_open(inst);
  if (r != 0) {
    if (inst->lpoll_open) {
      /* The poll handle must close through the loop before inst is freed. */
      vcg__ws_teardown(inst, NULL);
      return r;
    }
    if (inst->lfd >= 0)
      close(inst->lfd);
    vcg__ws_tl_release();
    free(inst->peekbuf);
    free(inst);
    return r;
  }
  /* From here on every failure goes through vcg__ws_teardown(), which
   * closes these handles before inst is freed. */
  vcg__ws_flush_init(inst);
  vcg__ws_closings_init(inst);
  vcg__ws_in_init(inst);
  vcg__ws_alive_init(inst);
  r = vcg__ws_own_init(inst);
  inst->rdbuf = malloc(WS_RD_BUF);
  if (r != 0 || inst->rdbuf == NULL) {
    host->log(w, NULL, VCG_LOG_ERROR, "cannot set up the socket reader: %s",
              r != 0 ? vcg_strerror(r) : "out of memory");
    vcg__ws_teardown(inst, NULL);
    return r != 0 ? r : VCG_ENOMEM;
  }
  r = vcg__ws_lws_start(inst);
  if (r != 0)
    return r; /* inst is being torn down */

  host->log(w, NULL, host->worker_index(w) == 0 ? VCG_LOG_INFO : VCG_LOG_DEBUG,
            "listening on %s", inst->url);
  *out = inst;
  return 0;
}

/* A new generation's conf (the same layout), on inst's loop.  Options in
 * ws_restart_options are unchanged (the core checked), and so is whether
 * TLS is on (configure() checked). */
static int ws_reload(vcg_instance_t *inst, const void *vconf) {
  const ws_conf_t *conf = vconf;
  struct stat st;
  int r = 0;

  inst->conf = conf;
  vcg__ws_batch_limit(inst);
  vcg__ws_dl_set_timeout(&inst->upgrades, (uint64_t)conf->upgrade_timeout);
  vcg__ws_dl_set_timeout(&inst->messages, (uint64_t)conf->message_timeout);
  vcg__ws_alive_reload(inst);
  if (inst->tls)
    r = vcg__ws_tls_reload(inst, conf->tls_cert, conf->tls_key);
  if (r == 0 && inst->tls)
    inst->host->log(inst->w, NULL, inst->host->worker_index(inst->w) == 0 ?
                    VCG_LOG_INFO : VCG_LOG_DEBUG, "reload: certificate %s "
                    "loaded for new connections", conf->tls_cert);
  if (inst->host->worker_index(inst->w) == 0 && conf->webroot &&
      conf->webroot[0] && stat(conf->webroot, &st) != 0)
    inst->host->log(inst->w, NULL, VCG_LOG_WARN, "webroot %s: %s; / serves "
                    "nothing until it exists", conf->webroot, strerror(errno));
  return r;
}

static void ws_drain(vcg_instance_t *inst) {
  ws_conn_t *c, *next;

  if (inst->draining)
    return;
  inst->draining = 1;
  vcg__ws_listen_close(inst);
  for (c = inst->conns; c != NULL; c = next) {
    next = c->next;
    vcg__ws_conn_begin_close(c, LWS_CLOSE_STATUS_GOINGAWAY,
                             "server shutting down");
  }
}

static void ws_stop(vcg_instance_t *inst, vcg_stopped_cb cb) {
  vcg__ws_teardown(inst, cb);
}

static int ws_send(vcg_instance_t *inst, void *conn, vcg_packet_t *p) {
  return vcg__ws_conn_send(inst, conn, p);
}

static void ws_close(vcg_instance_t *inst, void *conn, int why,
                     const char *reason) {
  (void)inst;
  vcg__ws_conn_begin_close(conn, vcg_close_ws_code(why), reason);
}

static const vcg_transport_ops_t ws_ops = {
  .configure = ws_configure,
  .init = ws_init,
  .fini = ws_fini,
  .start = ws_start,
  .reload = ws_reload,
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
  .transport = &ws_ops,
  .restart_options = ws_restart_options);

VCG_PLUGIN_DEFINE(ws_plugin)
