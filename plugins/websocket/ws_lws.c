/*
 * ws_lws.c -- libwebsockets on the worker's loop: the context, the one
 * callback, lws's log sink, and the teardown.
 *
 * Loop.  libwebsockets runs on the worker's libuv loop as a FOREIGN loop
 * (LWS_SERVER_OPTION_LIBUV + info.foreign_loops): there is no lws thread and
 * nobody calls lws_service().  One lws context per worker instance.
 *
 * Connections.  Our per-connection state (ws_conn_t) is malloc'ed when a
 * socket is accepted (ws_listen.c) and hangs off the wsi, once lws has
 * adopted the socket, through lws_set_opaque_user_data(), which, unlike
 * the lws per-session user space, survives the protocol rebinding lws does
 * during the upgrade.  It is freed,
 * and host->session_closed() called, in LWS_CALLBACK_WSI_DESTROY, the one
 * callback lws makes for every wsi however it dies (failed handshake, peer
 * close, timeout, context destroy).
 *
 * Shutdown.  With a foreign libuv loop, lws_context_destroy() only starts the
 * teardown: lws closes its uv handles asynchronously and, unlike with its own
 * loop, does not finish by itself (lws issues #1969, #2129, #2595): the user
 * must call lws_context_destroy() a second time once lws's handles are all
 * closed.  vcg__ws_teardown() does the first call, then a uv_timer of ours
 * polls the loop for handles still marked as belonging to the context (lws
 * marks its static handles with handle->data == context, see
 * lws_libuv_static_refcount_add(); they are closed only after every wsi
 * close completed), makes the second call, checks through info.pcontext
 * that the context is really gone, and only then calls the host's stopped
 * callback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_int.h"

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

void vcg__ws_tl_acquire(const vcg_host_api_t *host, vcg_worker_t *w) {
  ws_tl_host = host;
  ws_tl_worker = w;
  ws_tl_refs++;
}

void vcg__ws_tl_release(void) {
  if (ws_tl_refs > 0 && --ws_tl_refs == 0) {
    ws_tl_host = NULL;
    ws_tl_worker = NULL;
  }
}

void vcg__ws_log_init(const ws_conf_t *c) {
  int mask = LLL_ERR;

  /* lws's log level is process-wide; set it once, on the main thread,
   * before any context exists. */
  if (c->lws_log_level >= 1)
    mask |= LLL_WARN;
  if (c->lws_log_level >= 2)
    mask |= LLL_NOTICE | LLL_USER;
  if (c->lws_log_level >= 3)
    mask |= LLL_INFO;
  lws_set_log_level(mask, ws_lws_log);
}

/* ------------------------------------------------------ lws callback */

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                       void *user, void *in, size_t len) {
  struct lws_context *ctx = lws_get_context(wsi);
  vcg_instance_t *inst = ctx ? lws_context_user(ctx) : NULL;
  ws_conn_t *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;

  switch (reason) {
  case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
    if (inst == NULL)
      return -1;
    return vcg__ws_http_upgrade(inst, wsi, in);

  case LWS_CALLBACK_HTTP:
    if (inst == NULL)
      return -1;
    return vcg__ws_http_request(inst, wsi);

  case LWS_CALLBACK_HTTP_FILE_COMPLETION:
    if (inst == NULL)
      return -1;
    return vcg__ws_http_done(inst, wsi);

  case LWS_CALLBACK_ESTABLISHED:
    if (c == NULL || c->s == NULL)
      return -1; /* an upgrade we did not accept: cannot happen */
    vcg__ws_conn_established(c);
    return 0;

  case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    return vcg__ws_peer_close(inst, c, in, len);

  case LWS_CALLBACK_SERVER_WRITEABLE:
    if (c == NULL || inst == NULL)
      return -1;
    return vcg__ws_on_writeable(inst, c);

  case LWS_CALLBACK_RECEIVE:
    if (c == NULL || inst == NULL)
      return -1;
    return vcg__ws_on_receive(inst, c, in, len);

  case LWS_CALLBACK_RECEIVE_PONG:
    if (c != NULL)
      vcg__ws_alive(c);
    return 0;

  case LWS_CALLBACK_CLOSED:
    if (c != NULL)
      vcg__ws_conn_closed(c);
    return 0;

  case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
    /* The vhost's SSL_CTX, for reload() to swap certificates in. */
    if (inst != NULL)
      inst->ssl_ctx = user;
    return 0;

  case LWS_CALLBACK_WSI_DESTROY:
    /* Every wsi ends here exactly once, whatever killed it. */
    if (c != NULL) {
      vcg_session_t *s = c->s;

      vcg__ws_conn_free(c);
      if (s != NULL)
        inst->host->session_closed(s);
    }
    return 0;

  default:
    break;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ------------------------------------------------------ the context */

int vcg__ws_lws_start(vcg_instance_t *inst) {
  const ws_conf_t *conf = inst->conf;
  const vcg_host_api_t *host = inst->host;
  struct lws_context_creation_info ci;
  void *loops[1];

  inst->protocols[0].name = "vcgate";
  inst->protocols[0].callback = ws_callback;
  inst->protocols[0].per_session_data_size = 0;
  /* lws allocates this much per connection at the upgrade.  On ws:// it
   * only reads connections we could not take over (ws_own.c). */
  inst->protocols[0].rx_buffer_size = inst->tls ? (size_t)conf->rx_buffer_size
                                                : WS_LWS_RX_OWNED;
  inst->protocols[0].tx_packet_size = WS_TX_PACKET;

  /* No hangup time: lws's own PING and idle timers stay off (ws_alive.c
   * runs them, and only we may write on the sockets we own). */
  memset(&inst->retry, 0, sizeof(inst->retry));

  memset(&ci, 0, sizeof(ci));
  loops[0] = inst->loop;
  ci.foreign_loops = loops;
  ci.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
  if (inst->tls)
    ci.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  ci.port = CONTEXT_PORT_NO_LISTEN_SERVER;
  ci.user = inst;
  ci.pcontext = &inst->ctx_alive;
  ci.max_http_header_data = (unsigned short)inst->hdr_max;
  inst->ctx = lws_create_context(&ci);
  inst->ctx_alive = inst->ctx;
  if (inst->ctx == NULL) {
    host->log(inst->w, NULL, VCG_LOG_ERROR, "cannot create the lws context");
    vcg__ws_teardown(inst, NULL);
    return VCG_ENOMEM;
  }

  memset(&ci, 0, sizeof(ci));
  ci.options = inst->tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
  ci.port = CONTEXT_PORT_NO_LISTEN_SERVER;
  ci.vhost_name = "vcgate";
  ci.protocols = inst->protocols;
  ci.retry_and_idle_policy = &inst->retry;
  ci.max_http_header_data = (unsigned short)inst->hdr_max;
  /* HTTP/1.1 only: websockets over h2 would need RFC 8441 on both ends. */
  ci.alpn = "http/1.1";
  if (inst->tls) {
    ci.ssl_cert_filepath = conf->tls_cert;
    ci.ssl_private_key_filepath = conf->tls_key;
    inst->client_ctx = vcg__ws_tls_client_ctx_new();
    if (inst->client_ctx == NULL) {
      host->log(inst->w, NULL, VCG_LOG_ERROR, "cannot create a TLS context");
      vcg__ws_teardown(inst, NULL);
      return VCG_ENOMEM;
    }
    ci.provided_client_ssl_ctx = inst->client_ctx;
  }
  inst->vh = lws_create_vhost(inst->ctx, &ci);
  if (inst->vh == NULL) {
    host->log(inst->w, NULL, VCG_LOG_ERROR, "cannot create the lws vhost%s",
              inst->tls ? " (check tls_cert / tls_key)" : "");
    /* The context lives on the loop now: tear it down asynchronously,
     * freeing inst when done (start() fails, so stop() never comes). */
    vcg__ws_teardown(inst, NULL);
    return VCG_EINVAL;
  }
  return 0;
}

/* ------------------------------------------------------ teardown */

static void ws_inst_free(vcg_instance_t *inst) {
  vcg_stopped_cb cb = inst->stop_cb;
  vcg_worker_t *w = inst->w;

  /* lws may still point at it when it had to leak its context. */
  if (inst->ctx_alive == NULL)
    vcg__ws_tls_ctx_free(inst->client_ctx);
  free(inst->sendbuf);
  free(inst->rdbuf);
  free(inst->dirty);
  free(inst->ready);
  free(inst->peekbuf);
  free(inst);
  vcg__ws_tl_release();
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

void vcg__ws_teardown(vcg_instance_t *inst, vcg_stopped_cb cb) {
  inst->stopping = 1;
  inst->stop_cb = cb;
  vcg__ws_listen_stop(inst);
  /* Closed before the reaper: their closes run first, so inst outlives
   * them. */
  vcg__ws_flush_close(inst);
  vcg__ws_closings_close(inst);
  vcg__ws_in_close(inst);
  vcg__ws_alive_close(inst);
  vcg__ws_own_close(inst);
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
