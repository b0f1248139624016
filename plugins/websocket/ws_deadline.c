/*
 * ws_deadline.c -- lists of connections with a deadline, one timer each.
 *
 * Every member of a list gets the same timeout from the moment it is
 * added, so appending keeps the list in deadline order and the one timer
 * only ever waits for the head: adding, removing and expiring are O(1),
 * however many connections wait.  Used for the time to a completed upgrade
 * (ws_listen.c), the time an unfinished message may take (ws_in.c) and
 * the keepalive (ws_alive.c).  A reload that changes a timeout moves every
 * deadline by the same amount, which keeps the order.
 */
#include "ws_int.h"

static void ws_dl_cb(uv_timer_t *t);

static void ws_dl_arm(ws_dl_t *dl) {
  uint64_t now;

  if (!dl->open)
    return;
  if (dl->head == NULL) {
    uv_timer_stop(&dl->timer);
    return;
  }
  now = uv_now(dl->timer.loop);
  uv_timer_start(&dl->timer, ws_dl_cb,
                 dl->head->due > now ? dl->head->due - now : 0, 0);
}

static void ws_dl_cb(uv_timer_t *t) {
  ws_dl_t *dl = t->data;
  uint64_t now = uv_now(t->loop);

  while (dl->head != NULL && dl->head->due <= now) {
    ws_dl_node_t *n = dl->head;

    vcg__ws_dl_remove(dl, n);
    dl->expired(dl->inst, n);
  }
  ws_dl_arm(dl);
}

void vcg__ws_dl_init(vcg_instance_t *inst, ws_dl_t *dl, uint64_t timeout_ms,
                     void (*expired)(vcg_instance_t *, ws_dl_node_t *)) {
  dl->head = dl->tail = NULL;
  dl->inst = inst;
  dl->timeout = timeout_ms;
  dl->expired = expired;
  uv_timer_init(inst->loop, &dl->timer);
  dl->timer.data = dl;
  dl->open = 1;
}

void vcg__ws_dl_add(ws_dl_t *dl, ws_dl_node_t *n) {
  vcg__ws_dl_remove(dl, n);
  n->due = uv_now(dl->timer.loop) + dl->timeout;
  n->next = NULL;
  n->prev = dl->tail;
  if (dl->tail)
    dl->tail->next = n;
  else
    dl->head = n;
  dl->tail = n;
  if (dl->head == n)
    ws_dl_arm(dl);
}

void vcg__ws_dl_remove(ws_dl_t *dl, ws_dl_node_t *n) {
  if (n->due == 0)
    return; /* not in the list */
  if (n->prev)
    n->prev->next = n->next;
  else
    dl->head = n->next;
  if (n->next)
    n->next->prev = n->prev;
  else
    dl->tail = n->prev;
  n->prev = n->next = NULL;
  n->due = 0;
}

void vcg__ws_dl_set_timeout(ws_dl_t *dl, uint64_t timeout_ms) {
  uint64_t old = dl->timeout;

  if (timeout_ms == old)
    return;
  dl->timeout = timeout_ms;
  for (ws_dl_node_t *n = dl->head; n != NULL; n = n->next) {
    uint64_t d = n->due - old + timeout_ms;

    /* 0 means "not in a list"; a due in the past expires at once. */
    n->due = timeout_ms < old && n->due - 1 < old - timeout_ms ? 1 : d;
  }
  ws_dl_arm(dl);
}

void vcg__ws_dl_close(ws_dl_t *dl) {
  if (!dl->open)
    return;
  dl->open = 0;
  uv_close((uv_handle_t *)&dl->timer, NULL);
}
