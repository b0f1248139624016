/*
 * ws_alive.c -- proof of life: a connection the client has sent nothing on
 * for ping_interval gets a PING, and one still silent idle_timeout after
 * its last frame is hung up, without a close frame (a peer that does not
 * answer a PING would not answer a close either).
 *
 * Why not lws's own timers (lws_retry_bo_t, lws_validity_confirmed()):
 * lws writes its PING itself from its POLLOUT handler, and on the ws://
 * sockets we own (ws_own.c) only we may write, or its PING could land in
 * the middle of one of our frames.  So lws's are disabled (a retry policy
 * with no hangup time) and the same policy runs here for every connection:
 * two lists of ws_deadline.c, one per phase, the connection's up_node in
 * one of them (it was in the upgrade list before).  Any frame is proof of
 * life, as a PONG is; it moves the connection to the end of the first list
 * at most once every WS_ALIVE_GRAIN_MS, so a busy connection costs one
 * comparison per read, and a PING comes between ping_interval and
 * ping_interval plus that grain after the client fell silent.
 *
 * Reload: a new ping_interval or idle_timeout applies to every connection,
 * counted from its last proof of life (vcg__ws_dl_set_timeout()).
 */
#include "ws_int.h"

static ws_dl_t *ws_node_list(ws_conn_t *c) {
  switch (c->up_list) {
  case WS_LIST_UPGRADES:
    return &c->inst->upgrades;
  case WS_LIST_ALIVE:
    return &c->inst->alive;
  case WS_LIST_PINGED:
    return &c->inst->pinged;
  case WS_LIST_CLOSING:
    return &c->inst->closings;
  default:
    return NULL;
  }
}

void vcg__ws_node_release(ws_conn_t *c) {
  ws_dl_t *dl = ws_node_list(c);

  if (dl != NULL)
    vcg__ws_dl_remove(dl, &c->up_node);
  c->up_list = WS_LIST_NONE;
}

void vcg__ws_alive_stop(ws_conn_t *c) {
  if (c->up_list == WS_LIST_ALIVE || c->up_list == WS_LIST_PINGED)
    vcg__ws_node_release(c);
}

static void ws_alive_enter(ws_conn_t *c, ws_dl_t *dl, int which) {
  vcg__ws_alive_stop(c);
  vcg__ws_dl_add(dl, &c->up_node);
  c->up_list = (unsigned)which & 3u;
}

void vcg__ws_alive_start(ws_conn_t *c) {
  c->alive_ms = (uint32_t)uv_now(c->inst->loop);
  ws_alive_enter(c, &c->inst->alive, WS_LIST_ALIVE);
}

void vcg__ws_alive(ws_conn_t *c) {
  uint32_t now = (uint32_t)uv_now(c->inst->loop);

  if (c->up_list == WS_LIST_ALIVE && now - c->alive_ms < WS_ALIVE_GRAIN_MS)
    return;
  if (c->up_list != WS_LIST_ALIVE && c->up_list != WS_LIST_PINGED)
    return; /* not established yet, or closing */
  c->alive_ms = now;
  ws_alive_enter(c, &c->inst->alive, WS_LIST_ALIVE);
}

/* Silent for ping_interval: PING, and wait for the rest of idle_timeout. */
static void ws_alive_expired(vcg_instance_t *inst, ws_dl_node_t *n) {
  ws_conn_t *c = WS_CONN_OF(n, up_node);

  c->up_list = WS_LIST_NONE;
  if (c->closing || c->killed)
    return;
  if (c->own != NULL) {
    vcg__ws_own_ping(c);
  } else {
    c->ping_due = 1;
    lws_callback_on_writable(c->wsi);
  }
  ws_alive_enter(c, &inst->pinged, WS_LIST_PINGED);
}

/* Silent for idle_timeout, PING unanswered: hang up. */
static void ws_pinged_expired(vcg_instance_t *inst, ws_dl_node_t *n) {
  ws_conn_t *c = WS_CONN_OF(n, up_node);

  c->up_list = WS_LIST_NONE;
  inst->host->log(inst->w, c->s, VCG_LOG_DEBUG, "no proof of life for %lld "
                  "ms: closing", (long long)inst->conf->idle_timeout);
  inst->host->counter_add(inst->w, "idle_timeouts", 1);
  vcg__ws_conn_kill(c);
}

void vcg__ws_alive_init(vcg_instance_t *inst) {
  const ws_conf_t *conf = inst->conf;

  vcg__ws_dl_init(inst, &inst->alive, (uint64_t)conf->ping_interval,
                  ws_alive_expired);
  vcg__ws_dl_init(inst, &inst->pinged,
                  (uint64_t)(conf->idle_timeout - conf->ping_interval),
                  ws_pinged_expired);
}

void vcg__ws_alive_reload(vcg_instance_t *inst) {
  const ws_conf_t *conf = inst->conf;

  vcg__ws_dl_set_timeout(&inst->alive, (uint64_t)conf->ping_interval);
  vcg__ws_dl_set_timeout(&inst->pinged,
                         (uint64_t)(conf->idle_timeout - conf->ping_interval));
}

void vcg__ws_alive_close(vcg_instance_t *inst) {
  vcg__ws_dl_close(&inst->alive);
  vcg__ws_dl_close(&inst->pinged);
}
