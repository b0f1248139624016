/*
 * ws_conn.c -- one connection's record from accept to WSI_DESTROY: its
 * creation and binding to lws, the upgrade completing, the close handshake
 * (begin, kill, the closing deadline on sockets we own) and its release.
 * What goes out on it is ws_out.c.
 */
#include <stdlib.h>
#include <string.h>

#include "ws_int.h"

ws_conn_t *vcg__ws_conn_new(vcg_instance_t *inst) {
  ws_conn_t *c = calloc(1, sizeof(*c));

  if (c == NULL)
    return NULL;
  c->inst = inst;
  c->fd = -1;
  c->dirty_idx = -1;
  c->ready_idx = -1;
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

  vcg__ws_node_release(c);
  vcg__ws_slot_release(c);
  vcg__ws_msg_reset(c);
  vcg__ws_queue_drop(c, 0);
  vcg__ws_own_stop(c, 0); /* lws closed the socket before WSI_DESTROY */
  if (c->dirty_idx >= 0)
    inst->dirty[c->dirty_idx] = NULL;
  for (unsigned i = 0; i < WS_DEFER_MAX_READERS; i++)
    if (inst->readers[i] == c)
      inst->readers[i] = NULL;
  free(c->q);
  free(c->target);
  free(c->close_reason);
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

/* The closing deadline of a socket we own: WS_CLOSE_ACK_SECS to get our
 * close frame out (a client that reads nothing never takes it), then as
 * long again for the echo.  lws's own timeouts are for lws's writes. */
static void ws_closing_expired(vcg_instance_t *inst, ws_dl_node_t *n) {
  ws_conn_t *c = WS_CONN_OF(n, up_node);

  c->up_list = WS_LIST_NONE;
  inst->host->log(inst->w, c->s, VCG_LOG_DEBUG, "close handshake not done in "
                  "%d s: hanging up", WS_CLOSE_ACK_SECS);
  vcg__ws_conn_kill(c);
}

void vcg__ws_closing_start(ws_conn_t *c) {
  vcg__ws_node_release(c);
  vcg__ws_dl_add(&c->inst->closings, &c->up_node);
  c->up_list = WS_LIST_CLOSING;
}

void vcg__ws_conn_begin_close(ws_conn_t *c, int code, const char *reason) {
  size_t n;

  if (c->closing)
    return;
  c->closing = 1;
  c->close_code = (uint16_t)code;
  n = reason ? strlen(reason) : 0;
  if (n > WS_CLOSE_REASON_MAX)
    n = WS_CLOSE_REASON_MAX;
  if (n > 0 && (c->close_reason = malloc(n + 1)) != NULL) {
    memcpy(c->close_reason, reason, n);
    c->close_reason[n] = '\0';
  } /* (out of memory: a close frame with the code only) */
  /* Nothing queued will be written any more, nothing half-read will be
   * delivered: release both now.  A frame already partly out is finished
   * first, or the close frame would land inside it. */
  vcg__ws_queue_drop(c, 1);
  vcg__ws_msg_reset(c);
  vcg__ws_alive_stop(c);
  if (c->own != NULL && c->own->cout != NULL) {
    c->own->cout->pong = 0;
    c->own->cout->ping = 0;
  }
  vcg__ws_queue_report(c);
  if (c->established) {
    if (c->own != NULL)
      vcg__ws_closing_start(c);
    vcg__ws_conn_wake(c);
  }
  /* Before ESTABLISHED, the wake-up comes from there. */
}

void vcg__ws_conn_kill(ws_conn_t *c) {
  if (c->killed)
    return;
  c->killed = 1;
  vcg__ws_node_release(c);
  /* An lws timeout of "now", set outside lws's own callbacks, waits for
   * lws's timer to come round again (lws re-arms its libuv timer only from
   * its own idle handle and timer callback, which may be seconds away).
   * Waking lws's service through its event pipe runs that idle handle at
   * once. */
  lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
  lws_cancel_service(lws_get_context(c->wsi));
}

void vcg__ws_conn_established(ws_conn_t *c) {
  c->established = 1;
  vcg__ws_upgrade_done(c);
  vcg__ws_own_start(c);
  if (c->closing) {
    /* A close() that came before the 101. */
    if (c->own != NULL)
      vcg__ws_closing_start(c);
    vcg__ws_conn_wake(c);
    return;
  }
  vcg__ws_alive_start(c);
  /* Packets queued from inside session_open() are written now. */
  if (c->qlen > 0)
    vcg__ws_conn_wake(c);
}

void vcg__ws_conn_closed(ws_conn_t *c) {
  c->established = 0; /* nothing is written on this wsi any more */
  c->closing = 1;
  vcg__ws_queue_drop(c, 0);
  vcg__ws_queue_report(c);
  vcg__ws_node_release(c);
  vcg__ws_own_stop(c, 1); /* lws reads what is left while it shuts down */
}

/* lws sends the close frame itself when a RECEIVE callback returns -1,
 * which works on that path (unlike from the writeable callback). */
int vcg__ws_conn_close_now(ws_conn_t *c, int code, const char *reason) {
  vcg__ws_conn_begin_close(c, code, reason);
  lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
                   (unsigned char *)(c->close_reason ? c->close_reason : ""),
                   c->close_reason ? strlen(c->close_reason) : 0);
  return -1;
}

void vcg__ws_closings_init(vcg_instance_t *inst) {
  vcg__ws_dl_init(inst, &inst->closings, WS_CLOSE_ACK_SECS * 1000u,
                  ws_closing_expired);
}

void vcg__ws_closings_close(vcg_instance_t *inst) {
  vcg__ws_dl_close(&inst->closings);
}
