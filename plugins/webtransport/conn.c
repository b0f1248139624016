/*
 * conn.c -- one QUIC connection's life and the worker's connection set
 * (see conn.h).
 */
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "addr.h"
#include "conn.h"

static void conn_flush(wt_conn_t *c);
static void conn_free(wt_conn_t *c);
static void conn_handle_error(wt_conn_t *c, int rv);

/* -------------------------------------------------------- flush machinery */

static void on_check(uv_check_t *h) {
  wt_connset_t *cs = h->data;
  /* Detach the list first: flushing may mark other connections dirty. */
  for (int round = 0; round < 4 && cs->dirty; round++) {
    wt_conn_t *c = cs->dirty;
    cs->dirty = NULL;
    while (c) {
      wt_conn_t *nx = c->dnext;
      c->dnext = NULL;
      c->dirty = 0;
      if (c->state == WT_C_ACTIVE) conn_flush(c);
      c = nx;
    }
  }
  /* Every connection's packets of this turn in one system call. */
  vcg__wt_ep_flush(cs->ep);
  if (!cs->dirty && cs->flush_armed) {
    uv_check_stop(&cs->check);
    uv_idle_stop(&cs->idle);
    cs->flush_armed = 0;
  }
}

static void on_idle(uv_idle_t *h) { (void)h; }

void vcg__wt_conn_mark(wt_conn_t *c) {
  wt_connset_t *cs = c->set;
  if (c->dirty || c->state != WT_C_ACTIVE) return;
  c->dirty = 1;
  c->dnext = cs->dirty;
  cs->dirty = c;
  if (!cs->flush_armed && !cs->stopping) {
    uv_check_start(&cs->check, on_check);
    uv_idle_start(&cs->idle, on_idle);
    cs->flush_armed = 1;
  }
}

static void dirty_unlink(wt_conn_t *c) {
  if (!c->dirty) return;
  for (wt_conn_t **pp = &c->set->dirty; *pp; pp = &(*pp)->dnext) {
    if (*pp == c) {
      *pp = c->dnext;
      break;
    }
  }
  c->dirty = 0;
  c->dnext = NULL;
}

/* ---------------------------------------------------------------- timers */

static void on_conn_timer(uv_timer_t *t);

static void conn_arm_timer(wt_conn_t *c) {
  /* Closing and draining timers are armed once, on entry. */
  if (!c->timer_inited || c->state != WT_C_ACTIVE) return;
  uint64_t now = vcg__wt_now();
  uint64_t exp = ngtcp2_conn_get_expiry(c->qc);
  if (c->app_deadline && c->app_deadline < exp) exp = c->app_deadline;
  if (exp == UINT64_MAX) {
    uv_timer_stop(&c->timer);
    return;
  }
  uint64_t ms = exp <= now ? 0 : (exp - now + 999999) / 1000000;
  /* Most flushes leave the deadline where it was: skip re-inserting the
   * timer into libuv's heap then (uv_timer_start is a stop and a start,
   * a visible cost when every flush paid it). */
  uint64_t due = uv_now(c->set->loop) + ms;
  if (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due == due) return;
  c->timer_due = due;
  uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

void vcg__wt_conn_set_deadline(wt_conn_t *c, uint64_t ns) { c->app_deadline = ns; }

static void conn_enter_period(wt_conn_t *c, int state) {
  /* RFC 9000 section 10.2: stay three PTOs, answering (closing) or
   * silent (draining), so late packets do not trigger stateless resets. */
  uint64_t pto = ngtcp2_conn_get_pto(c->qc);
  uint64_t ms = (3 * pto) / 1000000 + 1;
  if (ms > 10000) ms = 10000;
  c->state = state;
  c->set->cb->gone(c);
  dirty_unlink(c);
  c->timer_due = uv_now(c->set->loop) + ms;
  uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

static void conn_write_close(wt_conn_t *c,
                             const ngtcp2_connection_close_error *ccerr) {
  uint8_t buf[WT_MAX_PKTLEN];
  ngtcp2_path_storage ps;
  ngtcp2_pkt_info pi;
  if (c->state != WT_C_ACTIVE) return;
  if (ngtcp2_conn_is_in_closing_period(c->qc) ||
      ngtcp2_conn_is_in_draining_period(c->qc)) {
    conn_enter_period(c, WT_C_DRAINING);
    return;
  }
  ngtcp2_path_storage_zero(&ps);
  memset(&pi, 0, sizeof(pi));
  ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->qc, &ps.path, &pi, buf,
                                                      sizeof(buf), ccerr,
                                                      vcg__wt_now());
  if (n <= 0) {
    conn_free(c);
    return;
  }
  c->close_pkt = malloc((size_t)n);
  if (c->close_pkt) {
    memcpy(c->close_pkt, buf, (size_t)n);
    c->close_pktlen = (size_t)n;
  }
  vcg__wt_ep_send(c->lis, (const struct sockaddr *)&c->remote, buf, (size_t)n);
  conn_enter_period(c, WT_C_CLOSING);
}

void vcg__wt_conn_close_app(wt_conn_t *c, uint64_t h3err) {
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);
  ngtcp2_connection_close_error_set_application_error(&ccerr, h3err, NULL, 0);
  conn_write_close(c, &ccerr);
}

int vcg__wt_conn_fail(wt_conn_t *c, uint64_t h3err) {
  c->app_error = h3err;
  return -1;
}

static void conn_handle_error(wt_conn_t *c, int rv) {
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);
  switch (rv) {
  case NGTCP2_ERR_DRAINING:
    conn_enter_period(c, WT_C_DRAINING);
    return;
  case NGTCP2_ERR_DROP_CONN:
  case NGTCP2_ERR_IDLE_CLOSE:
  case NGTCP2_ERR_RETRY:
  case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
    conn_free(c);
    return;
  case NGTCP2_ERR_CRYPTO:
    ngtcp2_connection_close_error_set_transport_error_tls_alert(
        &ccerr, ngtcp2_conn_get_tls_alert(c->qc), NULL, 0);
    break;
  case NGTCP2_ERR_CALLBACK_FAILURE:
    if (c->app_error) {
      ngtcp2_connection_close_error_set_application_error(&ccerr, c->app_error, NULL, 0);
      break;
    }
    /* fall through */
  default:
    ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, rv, NULL, 0);
    break;
  }
  conn_write_close(c, &ccerr);
}

static void on_conn_timer(uv_timer_t *t) {
  wt_conn_t *c = t->data;
  if (c->state == WT_C_CLOSING || c->state == WT_C_DRAINING) {
    conn_free(c);
    return;
  }
  if (c->state != WT_C_ACTIVE) return;
  uint64_t now = vcg__wt_now();
  if (c->app_deadline && now >= c->app_deadline) {
    c->app_deadline = 0;
    c->set->cb->deadline(c); /* may close the connection */
    if (c->state != WT_C_ACTIVE) return;
  }
  int rv = ngtcp2_conn_handle_expiry(c->qc, now);
  if (rv != 0) {
    conn_handle_error(c, rv);
    return;
  }
  /* Written in this turn's check pass with every other connection whose
   * timer (pacing, retransmission, ACK delay) fired: one batch, not one
   * system call per timer. */
  vcg__wt_conn_mark(c);
}

static void conn_flush(wt_conn_t *c) {
  if (c->state != WT_C_ACTIVE) return;
  c->set->cb->before_write(c);
  if (c->state != WT_C_ACTIVE) return;
  int rv = vcg__wt_conn_write(c);
  if (rv < 0) {
    conn_handle_error(c, rv);
    return;
  }
  c->set->cb->after_write(c);
  if (c->state == WT_C_ACTIVE) conn_arm_timer(c);
}

/* ------------------------------------------------- calls from the session */

uint64_t vcg__wt_conn_window(const wt_conn_conf_t *conf) {
  /* A WebTransport stream's bytes are credited to the connection only
   * once its message is complete, so the window must hold one message of
   * the largest size (core.max_message_size) or such a message would
   * stall; beyond that, connection_window.  It bounds what unfinished
   * messages can pin per connection. */
  uint64_t one = conf->max_msg + WT_STREAM_PREFIX_MAX;
  return conf->connection_window > one ? conf->connection_window : one;
}

int vcg__wt_conn_active(const wt_conn_t *c) { return c->state == WT_C_ACTIVE; }

void vcg__wt_conn_credit(wt_conn_t *c, int64_t id, size_t n) {
  if (!n) return;
  ngtcp2_conn_extend_max_stream_offset(c->qc, id, n);
  ngtcp2_conn_extend_max_offset(c->qc, n);
}

void vcg__wt_conn_credit_conn(wt_conn_t *c, uint64_t n) {
  if (n) ngtcp2_conn_extend_max_offset(c->qc, n);
}

void vcg__wt_conn_stream_done(wt_conn_t *c, int64_t id, int more) {
  if (more && (id & 0x2)) ngtcp2_conn_extend_max_streams_uni(c->qc, 1);
  else if (more) ngtcp2_conn_extend_max_streams_bidi(c->qc, 1);
  ngtcp2_conn_set_stream_user_data(c->qc, id, NULL);
}

void vcg__wt_conn_set_stream_ud(wt_conn_t *c, int64_t id, void *sud) {
  ngtcp2_conn_set_stream_user_data(c->qc, id, sud);
}

void vcg__wt_conn_reset_stream(wt_conn_t *c, int64_t id, uint64_t code) {
  ngtcp2_conn_shutdown_stream(c->qc, id, code);
}

void vcg__wt_conn_stop_reading(wt_conn_t *c, int64_t id, uint64_t code) {
  ngtcp2_conn_shutdown_stream_read(c->qc, id, code);
}

int vcg__wt_conn_open_uni(wt_conn_t *c, wt_ostream_t *os) {
  int64_t id;
  int rv = ngtcp2_conn_open_uni_stream(c->qc, &id, os);
  if (rv == 0) os->id = id;
  return rv;
}

int vcg__wt_conn_dgram_fits(wt_conn_t *c, size_t len) {
  const ngtcp2_transport_params *rp = ngtcp2_conn_get_remote_transport_params(c->qc);
  size_t need = len + 8; /* quarter stream id */
  if (!rp || rp->max_datagram_frame_size < need + 9) return 0;
  /* Short header (1 + CID 20 + PN 4), AEAD tag 16, frame type and length. */
  size_t room = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->qc);
  return room > 50 && need + 50 <= room;
}

/* ------------------------------------------------------ ngtcp2 callbacks */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) {
  wt_conn_t *c = ref->user_data;
  return c->qc;
}

static void cb_rand(uint8_t *dest, size_t destlen, const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  gnutls_rnd(GNUTLS_RND_RANDOM, dest, destlen);
}

static int cb_get_new_cid(ngtcp2_conn *qc, ngtcp2_cid *cid, uint8_t *token,
                          size_t cidlen, void *ud) {
  wt_conn_t *c = ud;
  wt_endpoint_t *ep = c->set->ep;
  (void)qc;
  if (vcg__wt_ep_new_cid(ep, cid, cidlen) != 0 || vcg__wt_ep_reset_token(ep, token, cid) != 0 ||
      vcg__wt_ep_cid_add(ep, &c->cids, cid, c) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}

static int cb_remove_cid(ngtcp2_conn *qc, const ngtcp2_cid *cid, void *ud) {
  wt_conn_t *c = ud;
  (void)qc;
  vcg__wt_ep_cid_del(c->set->ep, &c->cids, cid);
  return 0;
}

static int cb_handshake_completed(ngtcp2_conn *qc, void *ud) {
  wt_conn_t *c = ud;
  (void)qc;
  /* The client now uses our CIDs: the original DCID may be reused by
   * anyone else from here on. */
  if (c->odcid_registered) {
    vcg__wt_ep_cid_del(c->set->ep, &c->cids, &c->odcid);
    c->odcid_registered = 0;
  }
  if (c->half_open) {
    c->half_open = 0;
    vcg__wt_ep_half_open_end(c->set->ep, (const struct sockaddr *)&c->remote);
  }
  return 0;
}

static int up(int rc) { return rc == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE; }

static int cb_stream_open(ngtcp2_conn *qc, int64_t id, void *ud) {
  wt_conn_t *c = ud;
  if (ngtcp2_conn_is_local_stream(qc, id)) return 0;
  return up(c->set->cb->stream_open(c, id));
}

static int cb_recv_stream_data(ngtcp2_conn *qc, uint32_t flags, int64_t id,
                               uint64_t offset, const uint8_t *data,
                               size_t len, void *ud, void *sud) {
  wt_conn_t *c = ud;
  (void)qc;
  (void)offset;
  return up(c->set->cb->stream_data(c, id, data, len,
                                    (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0, sud));
}

/* Our record of stream id: the stream user data of our uni streams, or a
 * prioritised record for a bidirectional one (the CONNECT stream). */
static wt_ostream_t *os_of(wt_conn_t *c, int64_t id, void *sud) {
  if ((id & 0x3) == 0x3) return sud;
  for (int i = 0; i < WT_PRIO_N; i++)
    if (c->out.prio[i] && c->out.prio[i]->id == id) return c->out.prio[i];
  return NULL;
}

static int cb_acked(ngtcp2_conn *qc, int64_t id, uint64_t offset,
                    uint64_t datalen, void *ud, void *sud) {
  wt_conn_t *c = ud;
  (void)qc;
  wt_ostream_t *os = os_of(c, id, sud);
  if (!os) return 0;
  vcg__wt_os_acked(os, offset + datalen);
  for (int i = 0; i < WT_PRIO_N; i++)
    if (c->out.prio[i] == os) c->set->cb->acked(c, os);
  return 0;
}

static int cb_stream_close(ngtcp2_conn *qc, uint32_t flags, int64_t id,
                           uint64_t code, void *ud, void *sud) {
  wt_conn_t *c = ud;
  (void)qc;
  (void)flags;
  (void)code;
  if ((id & 0x3) == 0x3) {
    /* Our uni stream is fully acknowledged (or reset): the packet it
     * carried is released here. */
    wt_ostream_t *os = sud;
    if (os) vcg__wt_os_free(&c->out, os);
    return 0;
  }
  return up(c->set->cb->stream_close(c, id, sud));
}

static int cb_stream_reset(ngtcp2_conn *qc, int64_t id, uint64_t final_size,
                           uint64_t code, void *ud, void *sud) {
  wt_conn_t *c = ud;
  (void)qc;
  (void)final_size;
  (void)code;
  return up(c->set->cb->stream_reset(c, id, sud));
}

static int cb_extend_max_stream_data(ngtcp2_conn *qc, int64_t id,
                                     uint64_t max_data, void *ud, void *sud) {
  wt_conn_t *c = ud;
  (void)qc;
  (void)max_data;
  wt_ostream_t *os = os_of(c, id, sud);
  if (os) os->blocked_gen = 0;
  vcg__wt_conn_mark(c);
  return 0;
}

static int cb_extend_max_local_streams_uni(ngtcp2_conn *qc, uint64_t max,
                                           void *ud) {
  (void)qc;
  (void)max;
  vcg__wt_conn_mark(ud); /* queued packets may get streams now */
  return 0;
}

static int cb_recv_datagram(ngtcp2_conn *qc, uint32_t flags,
                            const uint8_t *data, size_t len, void *ud) {
  wt_conn_t *c = ud;
  (void)qc;
  (void)flags;
  return up(c->set->cb->datagram(c, data, len));
}

static int cb_recv_tx_key(ngtcp2_conn *qc, ngtcp2_crypto_level level,
                          void *ud) {
  wt_conn_t *c = ud;
  (void)qc;
  if (level != NGTCP2_CRYPTO_LEVEL_APPLICATION) return 0;
  /* Remote transport parameters are known: the application may open its
   * streams (the HTTP/3 control stream). */
  return up(c->set->cb->ready(c));
}

static const ngtcp2_callbacks server_callbacks = {
  .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
  .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
  .encrypt = ngtcp2_crypto_encrypt_cb,
  .decrypt = ngtcp2_crypto_decrypt_cb,
  .hp_mask = ngtcp2_crypto_hp_mask_cb,
  .update_key = ngtcp2_crypto_update_key_cb,
  .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
  .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
  .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
  .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
  .rand = cb_rand,
  .get_new_connection_id = cb_get_new_cid,
  .remove_connection_id = cb_remove_cid,
  .handshake_completed = cb_handshake_completed,
  .stream_open = cb_stream_open,
  .recv_stream_data = cb_recv_stream_data,
  .acked_stream_data_offset = cb_acked,
  .stream_close = cb_stream_close,
  .stream_reset = cb_stream_reset,
  .extend_max_stream_data = cb_extend_max_stream_data,
  .extend_max_local_streams_uni = cb_extend_max_local_streams_uni,
  .recv_datagram = cb_recv_datagram,
  .recv_tx_key = cb_recv_tx_key,
};

/* ------------------------------------------------------- connection life */

/* The connection's memory goes last, with the session layer's state: a
 * host call from inside a callback of that layer (session_closed, which
 * may stop the worker and so free every connection) must not pull either
 * from under the caller. */
static void conn_release(wt_conn_t *c) {
  c->set->cb->release(c);
  free(c);
}

static void on_timer_closed(uv_handle_t *h) {
  wt_conn_t *c = h->data;
  wt_endpoint_t *ep = c->set->ep;
  conn_release(c);
  vcg__wt_ep_handle_closed(ep);
}

static void conn_free(wt_conn_t *c) {
  wt_connset_t *cs = c->set;
  if (c->state == WT_C_DEAD) return;
  cs->cb->gone(c); /* session_closed, queued packets released */
  c->state = WT_C_DEAD;
  dirty_unlink(c);
  vcg__wt_ep_cid_del_all(cs->ep, &c->cids);
  if (c->half_open) vcg__wt_ep_half_open_end(cs->ep, (const struct sockaddr *)&c->remote);
  c->half_open = 0;
  /* Exactly once: the slot conn_admit() gave this connection. */
  if (c->holds_admission)
    cs->host->conn_release(cs->w, (const struct sockaddr *)&c->remote, c->admitted);
  c->holds_admission = 0;
  vcg__wt_outq_free(&c->out);
  if (c->qc) ngtcp2_conn_del(c->qc);
  c->qc = NULL;
  if (c->tls) gnutls_deinit(c->tls);
  c->tls = NULL;
  vcg__wt_cred_unref(c->cred);
  c->cred = NULL;
  free(c->close_pkt);
  c->close_pkt = NULL;
  if (c->prev) c->prev->next = c->next;
  else cs->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  cs->nconns--;
  if (c->timer_inited) {
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  } else {
    conn_release(c);
  }
}

static wt_conn_t *conn_new(wt_connset_t *cs, wt_listener_t *l, const wt_accept_t *a) {
  const ngtcp2_pkt_hd *hd = a->hd;
  const struct sockaddr *from = a->from;
  wt_conn_t *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  socklen_t fromlen = vcg__wt_sa_len(from);
  c->set = cs;
  c->lis = l;
  vcg__wt_outq_init(&c->out, cs->host);
  memcpy(&c->local, &l->addr, l->addrlen);
  c->locallen = l->addrlen;
  memcpy(&c->remote, from, fromlen);
  c->remotelen = fromlen;
  c->odcid = hd->dcid;
  c->max_msg = cs->conf.max_msg;
  c->max_client_streams = cs->conf.max_client_streams;

  ngtcp2_cid scid;
  if (vcg__wt_ep_new_cid(cs->ep, &scid, WT_SCID_LEN) != 0) goto fail;

  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = vcg__wt_now();
  settings.max_tx_udp_payload_size = WT_MAX_PKTLEN;
  /* A half-open connection costs memory: it gets a few seconds, not the
   * idle timeout, to complete its handshake. */
  settings.handshake_timeout = cs->conf.handshake_timeout_ms * NGTCP2_MILLISECONDS;
  /* We credit flow control ourselves (session.c): no auto-tuned windows.
   * The windows are what a client can make us buffer, sized to a call:
   * see wt_conn_window(). */
  uint64_t stream_uni = cs->conf.max_msg + WT_STREAM_PREFIX_MAX;
  settings.max_window = 0;
  settings.max_stream_window = 0;

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  /* The CONNECT stream carries one HEADERS frame (at most 16 KiB) and
   * capsules, read as they come; we open no bidirectional stream. */
  params.initial_max_stream_data_bidi_local = WT_BIDI_WINDOW;
  params.initial_max_stream_data_bidi_remote = WT_BIDI_WINDOW;
  /* One PacketWrapper per uni stream: the stream window holds exactly one
   * message of the largest allowed size plus its prefix, so a bigger one
   * is seen (and refused) rather than stalled. */
  params.initial_max_stream_data_uni = stream_uni;
  params.initial_max_data = vcg__wt_conn_window(&cs->conf);
  params.initial_max_streams_bidi = 4;
  params.initial_max_streams_uni = cs->conf.max_concurrent_streams;
  params.max_idle_timeout = cs->conf.idle_timeout_ms * NGTCP2_MILLISECONDS;
  params.active_connection_id_limit = 4;
  params.max_datagram_frame_size = 65535;
  if (a->odcid) {
    /* After a Retry: the address is validated (the token came back), so
     * ngtcp2 lifts the amplification limit; the transport parameters
     * prove to the client which Retry we sent. */
    params.original_dcid = *a->odcid;
    params.retry_scid = hd->dcid;
    params.retry_scid_present = 1;
    settings.token = hd->token;
  } else {
    params.original_dcid = hd->dcid;
  }
  params.stateless_reset_token_present = 1;
  if (vcg__wt_ep_reset_token(cs->ep, params.stateless_reset_token, &scid) != 0) goto fail;

  ngtcp2_path path = {
    { (ngtcp2_sockaddr *)&c->local, c->locallen },
    { (ngtcp2_sockaddr *)&c->remote, c->remotelen },
    NULL,
  };
  if (ngtcp2_conn_server_new(&c->qc, &hd->scid, &scid, &path, hd->version,
                             &server_callbacks, &settings, &params, NULL, c) != 0)
    goto fail;
  c->cred = vcg__wt_cred_ref(cs->cred);
  if (vcg__wt_tls_session_new(cs->prio, c->cred, &c->tls) != 0) goto fail;
  if (ngtcp2_crypto_gnutls_configure_server_session(c->tls) != 0) goto fail;
  c->cref.get_conn = get_conn;
  c->cref.user_data = c;
  gnutls_session_set_ptr(c->tls, &c->cref);
  ngtcp2_conn_set_tls_native_handle(c->qc, c->tls);

  if (uv_timer_init(cs->loop, &c->timer) != 0) goto fail;
  c->timer.data = c;
  c->timer_inited = 1;
  vcg__wt_ep_handle_ref(cs->ep);

  c->next = cs->conns;
  if (cs->conns) cs->conns->prev = c;
  cs->conns = c;
  cs->nconns++;

  if (vcg__wt_ep_cid_add(cs->ep, &c->cids, &scid, c) != 0 ||
      vcg__wt_ep_cid_add(cs->ep, &c->cids, &hd->dcid, c) != 0) {
    /* Not ours yet: the endpoint undoes the admission and the half-open
     * count. */
    conn_free(c);
    return NULL;
  }
  c->admitted = a->admitted;
  c->holds_admission = 1;
  c->half_open = 1;
  c->odcid_registered = 1;
  return c;
fail:
  if (c->qc) ngtcp2_conn_del(c->qc);
  if (c->tls) gnutls_deinit(c->tls);
  vcg__wt_cred_unref(c->cred);
  free(c);
  return NULL;
}

void *vcg__wt_conn_accept(void *set, wt_listener_t *l, const wt_accept_t *a) {
  wt_connset_t *cs = set;
  if (cs->stopping) return NULL;
  if (cs->nconns >= cs->conf.max_sessions) {
    cs->host->counter_add(cs->w, "wt_connections_refused", 1);
    return NULL;
  }
  wt_conn_t *c = conn_new(cs, l, a);
  if (c) cs->host->counter_add(cs->w, "wt_connections", 1);
  return c;
}

void vcg__wt_conn_packet(void *conn, wt_listener_t *l, const struct sockaddr *from,
                         const uint8_t *data, size_t len) {
  wt_conn_t *c = conn;
  if (c->state == WT_C_CLOSING) {
    if (c->close_pkt) vcg__wt_ep_send(c->lis, from, c->close_pkt, c->close_pktlen);
    return;
  }
  if (c->state != WT_C_ACTIVE) return;

  ngtcp2_path path = {
    { (ngtcp2_sockaddr *)&l->addr, l->addrlen },
    { (ngtcp2_sockaddr *)(uintptr_t)from, vcg__wt_sa_len(from) },
    NULL,
  };
  ngtcp2_pkt_info pi;
  memset(&pi, 0, sizeof(pi));
  int rv = ngtcp2_conn_read_pkt(c->qc, &path, &pi, data, len, vcg__wt_now());
  if (rv != 0) {
    if (!ngtcp2_conn_get_handshake_completed(c->qc) && rv != NGTCP2_ERR_CRYPTO &&
        rv != NGTCP2_ERR_DRAINING && rv != NGTCP2_ERR_CALLBACK_FAILURE) {
      conn_free(c); /* a bad first flight: nothing worth a close frame */
      return;
    }
    conn_handle_error(c, rv);
    return;
  }
  vcg__wt_conn_mark(c);
}

/* ------------------------------------------------------------- the set */

static void on_set_handle_closed(uv_handle_t *h) {
  wt_connset_t *cs = h->data;
  vcg__wt_ep_handle_closed(cs->ep);
}

int vcg__wt_connset_init(wt_connset_t *cs, const vcg_host_api_t *host, vcg_worker_t *w,
                         wt_endpoint_t *ep, gnutls_priority_t prio, vcg__wt_cred_t *cred,
                         const wt_conn_cb_t *cb, const wt_conn_conf_t *conf) {
  cs->host = host;
  cs->w = w;
  cs->loop = host->loop(w);
  cs->ep = ep;
  cs->prio = prio;
  cs->cred = cred;
  cs->cb = cb;
  cs->conf = *conf;
  uv_check_init(cs->loop, &cs->check);
  uv_idle_init(cs->loop, &cs->idle);
  cs->check.data = cs;
  cs->idle.data = cs;
  vcg__wt_ep_handle_ref(ep);
  vcg__wt_ep_handle_ref(ep);
  return 0;
}

void vcg__wt_connset_reconf(wt_connset_t *cs, const wt_conn_conf_t *conf,
                            vcg__wt_cred_t *cred) {
  cs->conf = *conf;
  if (!cred) return;
  vcg__wt_cred_unref(cs->cred);
  cs->cred = cred;
}

void vcg__wt_connset_stop(wt_connset_t *cs, uint64_t app_error) {
  cs->stopping = 1;
  while (cs->conns) {
    wt_conn_t *c = cs->conns;
    if (c->state == WT_C_ACTIVE) vcg__wt_conn_close_app(c, app_error);
    /* Best effort: the close frame went out; do not wait three PTOs. */
    conn_free(c);
  }
  vcg__wt_cred_unref(cs->cred);
  cs->cred = NULL;
  if (!uv_is_closing((uv_handle_t *)&cs->check)) {
    uv_check_stop(&cs->check);
    uv_idle_stop(&cs->idle);
    uv_close((uv_handle_t *)&cs->check, on_set_handle_closed);
    uv_close((uv_handle_t *)&cs->idle, on_set_handle_closed);
  }
}
