/* Workers: one libuv loop per thread, its plugin instances, its rooms.
 *
 * Other threads reach a worker only through its uv_async: the inbox of bus
 * packets and the drain/stop commands (atomics) set by the main thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "inbox.h"
#include "presence.h"
#include "worker.h"

static void begin_stop(vcg__worker_t *w);
static void on_drain_timeout(uv_timer_t *t);

/* A reload: switch to the generation main has checked, hand every plugin
 * that takes reloads its new conf, and tell main (which frees the old
 * generation once every worker has switched). */
static void take_generation(vcg__worker_t *w) {
  vcg__config_t *next = (vcg__config_t *)atomic_load(&w->cfg_next);
  w->cfg = next;
  atomic_store(&w->max_msg, (size_t)next->core.max_message_size);
  for (size_t i = 0; i < w->ntransports; i++) w->transports[i].pc = &next->transports[i];
  if (w->bus.pc) w->bus.pc = &next->bus;
  vcg_worker_t *all[w->ntransports + 1];
  size_t n = 0;
  for (size_t i = 0; i < w->ntransports; i++) all[n++] = &w->transports[i];
  if (w->bus.pc) all[n++] = &w->bus;
  for (size_t i = 0; i < n; i++) {
    vcg_worker_t *b = all[i];
    if (!b->inst || !b->pc->loaded->ops.reload) continue;
    int rc = b->pc->loaded->ops.reload(b->inst, b->pc->conf);
    if (rc != 0)
      vcg__logf(w->proc->log, VCG_LOG_ERROR, b->pc->name, 0, "worker %u: reload failed: %s",
                w->index, vcg_strerror(rc));
  }
  atomic_fetch_add(&w->proc->reload_acks, 1);
  uv_async_send(w->proc->done_async);
}

static void on_async(uv_async_t *a) {
  vcg__worker_t *w = a->data;
  vcg__inbox_drain(w);
  if (atomic_exchange(&w->cmd_reload, 0)) take_generation(w);
  if (atomic_exchange(&w->cmd_stop, 0)) begin_stop(w);
  else if (atomic_exchange(&w->cmd_drain, 0) && w->state == VCG__RUNNING) {
    w->state = VCG__DRAINING;
    vcg__logf(w->proc->log, VCG_LOG_INFO, "core", 0,
              "worker %u draining: %zu sessions, up to %lld ms", w->index, w->nsessions,
              (long long)w->cfg->core.drain_timeout);
    for (size_t i = 0; i < w->ntransports; i++)
      if (w->transports[i].inst)
        w->transports[i].pc->loaded->ops.drain(w->transports[i].inst);
    if (w->nsessions == 0) begin_stop(w);
    else uv_timer_start(&w->drain_timer, on_drain_timeout,
                        (uint64_t)w->cfg->core.drain_timeout, 0);
  }
}

static void on_drain_timeout(uv_timer_t *t) {
  vcg__worker_t *w = t->data;
  if (w->state == VCG__DRAINING) {
    vcg__logf(w->proc->log, VCG_LOG_INFO, "core", 0,
              "worker %u: drain timeout with %zu sessions left", w->index, w->nsessions);
    begin_stop(w);
  }
}

/* The last session has gone while draining: stop, on the next loop turn.
 * Not at once: the transport is still inside its session_closed() call,
 * and stopping it there frees the connection it returns to (ASan caught
 * the webtransport plugin's on_after_write reading its freed session). */
static void on_drained(uv_timer_t *t) {
  vcg__worker_t *w = t->data;
  if (w->state == VCG__DRAINING) begin_stop(w);
}

void vcg__worker_session_gone(vcg__worker_t *w) {
  if (w->state == VCG__DRAINING && w->nsessions == 0)
    uv_timer_start(&w->drain_timer, on_drained, 0, 0);
}

static void on_closed_handle(uv_handle_t *h) { (void)h; }

static void finish(vcg__worker_t *w) {
  w->state = VCG__STOPPED;
  vcg__inbox_drain(w); /* release any packet still in flight */
  uv_close((uv_handle_t *)&w->async, on_closed_handle);
  uv_close((uv_handle_t *)&w->drain_timer, on_closed_handle);
  uv_close((uv_handle_t *)&w->leave_timer, on_closed_handle);
}

static void on_bus_stopped(vcg_worker_t *b) {
  b->stopped = 1;
  finish(b->core);
}

/* One transport (or begin_stop itself) is done; the last one stops the bus. */
static void transport_stop_done(vcg__worker_t *w) {
  if (--w->pending_stops > 0) return;
  if (w->nsessions)
    vcg__logf(w->proc->log, VCG_LOG_ERROR, "core", 0,
              "worker %u: %zu sessions left after transports stopped", w->index, w->nsessions);
  /* Before the bus goes: the other nodes learn who left with this node. */
  vcg__presence_stop(w);
  if (w->bus.inst) w->bus.pc->loaded->ops.stop(w->bus.inst, on_bus_stopped);
  else finish(w);
}

static void on_transport_stopped(vcg_worker_t *b) {
  b->stopped = 1;
  transport_stop_done(b->core);
}

/* Transports stop first (their sessions leave their rooms), then the bus. */
static void begin_stop(vcg__worker_t *w) {
  if (w->state >= VCG__STOPPING) return;
  w->state = VCG__STOPPING;
  uv_timer_stop(&w->drain_timer);
  w->pending_stops = 1; /* held until every stop() has been called */
  for (size_t i = 0; i < w->ntransports; i++) {
    if (!w->transports[i].inst) continue;
    w->pending_stops++;
    w->transports[i].pc->loaded->ops.stop(w->transports[i].inst, on_transport_stopped);
  }
  transport_stop_done(w);
}

int vcg__worker_init(vcg__worker_t *w, vcg__process_t *proc, unsigned index) {
  memset(w, 0, sizeof *w);
  w->proc = proc;
  w->index = index;
  if (getrandom(w->rng, sizeof w->rng, 0) != sizeof w->rng) return VCG_EINVAL;
  w->rng[0] |= 1;
  uint64_t room_seed;
  if (getrandom(&room_seed, sizeof room_seed, 0) != sizeof room_seed) return VCG_EINVAL;
  int rc = uv_loop_init(&w->loop);
  if (rc) return rc;
  if ((rc = uv_async_init(&w->loop, &w->async, on_async)) != 0) return rc;
  w->async.data = w;
  uv_timer_init(&w->loop, &w->drain_timer);
  w->drain_timer.data = w;
  if ((rc = uv_mutex_init(&w->qlock)) != 0) return rc;
  if ((rc = uv_sem_init(&w->started, 0)) != 0) return rc;
  if ((rc = vcg__rooms_init(&w->rooms, room_seed)) != 0) return rc;
  if (vcg_htab_init(&w->sessions, 64, 0) != 0) return VCG_ENOMEM;
  if ((rc = vcg__presence_init(w)) != 0) return rc;
  const vcg__config_t *c = proc->cfg;
  w->cfg = c;
  atomic_init(&w->max_msg, (size_t)c->core.max_message_size);
  w->ntransports = c->ntransports;
  w->transports = calloc(c->ntransports, sizeof *w->transports);
  if (!w->transports) return VCG_ENOMEM;
  for (size_t i = 0; i < c->ntransports; i++) {
    w->transports[i].core = w;
    w->transports[i].pc = &c->transports[i];
    w->transports[i].kind = VCG_PLUGIN_TRANSPORT;
    w->transports[i].top = c->transports[i].loaded->desc->transport;
    uv_mutex_init(&w->transports[i].clock);
  }
  w->bus.core = w;
  w->bus.kind = VCG_PLUGIN_BUS;
  atomic_init(&w->bus.bus_up, 1); /* until the bus says otherwise */
  uv_mutex_init(&w->bus.clock);
  if (c->bus.loaded) {
    w->bus.pc = (vcg__plugin_conf_t *)&c->bus;
    w->bus.bop = c->bus.loaded->desc->bus;
  }
  return 0;
}

static int start_binding(vcg__worker_t *w, vcg_worker_t *b) {
  int rc = b->pc->loaded->ops.start(w->proc->host, b->pc->loaded->state, b->pc->conf, b,
                                    &b->inst);
  if (rc != 0 || !b->inst) {
    vcg__logf(w->proc->log, VCG_LOG_ERROR, b->pc->name, 0,
              "worker %u: start failed: %s", w->index, vcg_strerror(rc ? rc : VCG_EINVAL));
    b->inst = NULL;
    return rc ? rc : VCG_EINVAL;
  }
  b->started = 1;
  return 0;
}

static void worker_main(void *arg) {
  vcg__worker_t *w = arg;
  int rc = 0;
  if (w->bus.pc) rc = start_binding(w, &w->bus);
  for (size_t i = 0; rc == 0 && i < w->ntransports; i++) rc = start_binding(w, &w->transports[i]);
  w->start_rc = rc;
  uv_sem_post(&w->started);
  if (rc != 0) begin_stop(w);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  atomic_store(&w->finished, 1);
  uv_async_send(w->proc->done_async);
}

int vcg__worker_spawn(vcg__worker_t *w) {
  return uv_thread_create(&w->thread, worker_main, w);
}

void vcg__worker_request_drain(vcg__worker_t *w) {
  atomic_store(&w->cmd_drain, 1);
  uv_async_send(&w->async);
}

void vcg__worker_request_stop(vcg__worker_t *w) {
  atomic_store(&w->cmd_stop, 1);
  uv_async_send(&w->async);
}

void vcg__worker_join(vcg__worker_t *w) {
  uv_thread_join(&w->thread);
  int rc = uv_loop_close(&w->loop);
  if (rc != 0)
    vcg__logf(w->proc->log, VCG_LOG_WARN, "core", 0, "worker %u: loop closed with handles open",
              w->index);
}

void vcg__worker_free(vcg__worker_t *w) {
  vcg__rooms_free(&w->rooms);
  vcg_htab_free(&w->sessions);
  for (size_t i = 0; i < w->ntransports; i++) uv_mutex_destroy(&w->transports[i].clock);
  uv_mutex_destroy(&w->bus.clock);
  free(w->transports);
  uv_mutex_destroy(&w->qlock);
  uv_sem_destroy(&w->started);
}
