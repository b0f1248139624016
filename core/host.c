/* The host API table handed to plugins: thin, checked wrappers around the
 * core's subsystems.  The vcg_worker_t a plugin holds is its binding. */
#include <stdio.h>
#include <string.h>
#include "core.h"

static void h_log(vcg_worker_t *b, vcg_session_t *s, int level, const char *fmt, ...) {
  vcg__log_t *l = b->core->proc->log;
  if (!vcg__log_on(l, level)) return;
  va_list ap;
  va_start(ap, fmt);
  vcg__logv(l, level, b->pc ? b->pc->name : "plugin", s ? s->id : 0, fmt, ap);
  va_end(ap);
}

static int h_log_enabled(vcg_worker_t *b, int level) { return vcg__log_on(b->core->proc->log, level); }
static uv_loop_t *h_loop(vcg_worker_t *b) { return &b->core->loop; }
static unsigned h_worker_index(vcg_worker_t *b) { return b->core->index; }

static const uint8_t *h_packet_data(const vcg_packet_t *p, size_t *len) {
  *len = p->len;
  return p->data;
}
static int h_packet_type(const vcg_packet_t *p) { return p->type; }
static int h_packet_media_type(const vcg_packet_t *p) { return p->media_type; }
static uint64_t h_packet_session_id(const vcg_packet_t *p) { return p->session_id; }
static uint64_t h_session_id(const vcg_session_t *s) { return s->id; }
static size_t h_max_message_size(vcg_worker_t *b) {
  return (size_t)b->core->proc->cfg->core.max_message_size;
}

/* Named counters: a small fixed table per binding.  Names are expected to
 * be string literals of the plugin, compared by pointer first. */
static void counter_add_locked(vcg_worker_t *b, const char *name, uint64_t v) {
  for (int i = 0; i < VCG__MAX_COUNTERS; i++) {
    if (!b->cname[i]) { b->cname[i] = name; b->cval[i] = v; return; }
    if (b->cname[i] == name || strcmp(b->cname[i], name) == 0) { b->cval[i] += v; return; }
  }
}

void vcg__counter_add(vcg_worker_t *b, const char *name, uint64_t v) {
  uv_mutex_lock(&b->clock);
  counter_add_locked(b, name, v);
  uv_mutex_unlock(&b->clock);
}

const vcg_host_api_t vcg__host_api = {
  .size = sizeof(vcg_host_api_t),
  .abi_major = VCG_ABI_MAJOR,
  .abi_minor = VCG_ABI_MINOR,
  .log = h_log,
  .log_enabled = h_log_enabled,
  .loop = h_loop,
  .worker_index = h_worker_index,
  .packet_data = h_packet_data,
  .packet_type = h_packet_type,
  .packet_media_type = h_packet_media_type,
  .packet_session_id = h_packet_session_id,
  .packet_ref = vcg__packet_ref,
  .packet_unref = vcg__packet_unref,
  .session_open = vcg__session_open,
  .session_deliver = vcg__session_deliver,
  .session_closed = vcg__session_closed,
  .session_id = h_session_id,
  .session_set_queued = vcg__session_set_queued,
  .max_message_size = h_max_message_size,
  .bus_deliver = vcg__bus_deliver,
  .bus_deliver_ts = vcg__bus_deliver_ts,
  .bus_deliver_packet_ts = vcg__bus_deliver_packet_ts,
  .counter_add = vcg__counter_add,
  .counter_add_ts = vcg__counter_add,
};
