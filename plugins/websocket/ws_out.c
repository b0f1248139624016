/*
 * ws_out.c -- one connection's state and everything that goes out on it:
 * the output queue of packet references, framing, the end-of-turn flush,
 * and the close handshake.
 *
 * Packets the host hands to send() are queued per connection and written
 * from a uv_check handle after the loop has run every ready callback, so
 * all packets of one turn leave a connection in one send() (see the dirty
 * list in ws_int.h).  lws takes raw writes outside its callbacks and
 * buffers whatever the kernel refuses, then asks for POLLOUT itself; the
 * writeable callback continues from there.
 *
 * Deadlines.  Queued video that waited past its deadline is worth less than
 * nothing to a call, so the packets are checked as they are taken from the
 * queue to be framed: host->packet_take() sheds one past its deadline
 * (counted, CONGESTION to its sender) instead of it reaching the socket,
 * and records the relay latency of the others.  For that to mean anything the bytes past this point must stay
 * few: notsent_lowat (TCP_NOTSENT_LOWAT, set at accept) keeps the kernel's
 * unsent queue near that many bytes, the kernel then takes no more in one
 * send(), and what it refuses lws keeps (lws_partial_buffered()) while we
 * write nothing more to the connection; so a batch is at most notsent_lowat
 * bytes (or one larger message), and lws never holds more than one.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "ws_int.h"

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

ws_conn_t *vcg__ws_conn_new(vcg_instance_t *inst) {
  ws_conn_t *c = calloc(1, sizeof(*c));

  if (c == NULL)
    return NULL;
  c->inst = inst;
  c->fd = -1;
  c->dirty_idx = -1;
  c->next = inst->conns;
  if (inst->conns)
    inst->conns->prev = c;
  inst->conns = c;
  inst->nconns++;
  return c;
}

void vcg__ws_conn_bind(ws_conn_t *c, struct lws *wsi) {
  c->wsi = wsi;
  lws_set_opaque_user_data(wsi, c);
}

void vcg__ws_conn_free(ws_conn_t *c) {
  vcg_instance_t *inst = c->inst;

  vcg__ws_upgrade_done(c);
  vcg__ws_slot_release(c);
  vcg__ws_rd_stop(c);
  vcg__ws_msg_reset(c);
  ws_queue_drop_all(c);
  if (c->dirty_idx >= 0)
    inst->dirty[c->dirty_idx] = NULL;
  for (unsigned i = 0; i < WS_DEFER_MAX_READERS; i++)
    if (inst->readers[i] == c)
      inst->readers[i] = NULL;
  free(c->q);
  free(c->target);
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

void vcg__ws_conn_begin_close(ws_conn_t *c, int code, const char *reason) {
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
  /* Nothing queued will be written any more, nothing half-read will be
   * delivered: release both now. */
  ws_queue_drop_all(c);
  vcg__ws_msg_reset(c);
  if (c->s)
    c->inst->host->session_set_queued(c->s, 0, 0);
  if (c->established)
    lws_callback_on_writable(c->wsi);
  /* Before ESTABLISHED, the writable request is made there. */
}

void vcg__ws_conn_kill(ws_conn_t *c) {
  /* An lws timeout of "now", set outside lws's own callbacks, waits for
   * lws's timer to come round again (lws re-arms its libuv timer only from
   * its own idle handle and timer callback; on an idle connection that is
   * the next validity timer, seconds away).  Waking lws's service through
   * its event pipe runs that idle handle at once. */
  lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
  lws_cancel_service(lws_get_context(c->wsi));
}

/* lws sends the close frame itself when a RECEIVE callback returns -1,
 * which works on that path (unlike from the writeable callback). */
int vcg__ws_conn_close_now(ws_conn_t *c, int code, const char *reason) {
  vcg__ws_conn_begin_close(c, code, reason);
  lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
                   (unsigned char *)c->close_reason, strlen(c->close_reason));
  return -1;
}

/* ------------------------------------------------------- writing */

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
  while (c->qlen > 0 && budget > 0) {
    vcg_packet_t *p = c->q[c->qhead];
    const uint8_t *data;
    size_t len, hl;
    uint8_t *f;

    data = host->packet_data(p, &len);
    hl = len < 126 ? 2 : len < 65536 ? 4 : 10;
    if (used > 0 && used + hl + len > inst->batch_max)
      break; /* the next callback sends the rest */
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
    c->qbytes -= len;
    /* The host sheds a packet past its deadline (too old to be worth
     * sending) and records the relay latency of the others.  It may queue
     * CONGESTION on this very connection (to its own sender): the loop
     * re-reads the queue every time. */
    if (host->packet_take(c->s, p)) continue;
    budget--;
    if (inst->sendbuf_cap < LWS_PRE + used + hl + len) {
      size_t ncap = inst->sendbuf_cap ? inst->sendbuf_cap : 16384;
      uint8_t *nb;

      while (ncap < LWS_PRE + used + hl + len)
        ncap *= 2;
      nb = realloc(inst->sendbuf, ncap);
      if (nb == NULL) {
        host->log(inst->w, c->s, VCG_LOG_ERROR,
                  "out of memory for a %zu-byte message", len);
        host->packet_unref(p);
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

int vcg__ws_on_writeable(vcg_instance_t *inst, ws_conn_t *c) {
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
    if (c->peer_closed)
      return -1; /* theirs came first: the handshake is complete */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, WS_CLOSE_ACK_SECS);
    return 0;
  }
  vcg__ws_rd_writeable(c);
  return ws_write_queued(inst, c);
}

/* ------------------------------------------------------- the flush */

void vcg__ws_note_reader(vcg_instance_t *inst, ws_conn_t *c) {
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
    inst->deferred++; /* nowait stays active: the next poll does not block */
    inst->nreaders = 0; /* the next turn's readers decide again */
    return;
  }
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
      vcg__ws_conn_kill(c);
    }
  }
  inst->ndirty = 0;
  uv_check_stop(&inst->flush);
  uv_idle_stop(&inst->nowait);
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
    /* The check handle runs after the poll, which would block when the
     * packets were queued outside of it (a timer: presence's LEFT, say):
     * an active idle handle makes that poll return at once. */
    uv_check_start(&inst->flush, ws_flush_cb);
    uv_idle_start(&inst->nowait, ws_nowait_cb);
    inst->flush_active = 1;
  }
}

int vcg__ws_conn_send(vcg_instance_t *inst, ws_conn_t *c, vcg_packet_t *p) {
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

void vcg__ws_flush_init(vcg_instance_t *inst) {
  uv_check_init(inst->loop, &inst->flush);
  inst->flush.data = inst;
  uv_idle_init(inst->loop, &inst->nowait);
  inst->nowait.data = inst;
  inst->flush_open = 1;
}

void vcg__ws_flush_close(vcg_instance_t *inst) {
  if (!inst->flush_open)
    return;
  inst->flush_open = 0;
  inst->flush_active = 0;
  uv_close((uv_handle_t *)&inst->flush, NULL);
  uv_close((uv_handle_t *)&inst->nowait, NULL);
}
