/* The host API table handed to plugins: thin, checked wrappers around the
 * core's subsystems.  The vcg_worker_t a plugin holds is its binding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core.h"
#include "inbox.h"
#include "relay.h"
#include "session.h"

/* The one piece of process state host.c keeps: the logger for the calls a
 * plugin makes before it has a worker (configure, init).  Set once by main
 * before any plugin runs; read-only afterwards. */
static vcg__log_t *main_log;
void vcg__host_set_main_log(vcg__log_t *l) { main_log = l; }

static void h_log(vcg_worker_t *b, vcg_session_t *s, int level, const char *fmt, ...) {
  vcg__log_t *l = b ? b->core->proc->log : main_log;
  if (!l) return;
  if (!vcg__log_on(l, level)) return;
  va_list ap;
  va_start(ap, fmt);
  vcg__logv(l, level, b && b->pc ? b->pc->name : "plugin", s ? s->id : 0, fmt, ap);
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
  return (size_t)b->core->cfg->core.max_message_size;
}

/* Named counters: a small fixed table per binding.  Names are expected to
 * be string literals of the plugin, so the pointer is compared first and
 * the string only when a plugin passes a copy. */
static int counter_find(vcg_worker_t *b, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (b->cname[i] == name) return i;
  for (int i = 0; i < n; i++)
    if (strcmp(b->cname[i], name) == 0) return i;
  return -1;
}

void vcg__counter_add(vcg_worker_t *b, const char *name, uint64_t v) {
  int i = counter_find(b, atomic_load_explicit(&b->ncounters, memory_order_acquire), name);
  if (i < 0) {
    uv_mutex_lock(&b->clock);
    int n = atomic_load_explicit(&b->ncounters, memory_order_relaxed);
    i = counter_find(b, n, name);
    if (i < 0 && n < VCG__MAX_COUNTERS) {
      b->cname[n] = name;
      atomic_store_explicit(&b->cval[n], 0, memory_order_relaxed);
      atomic_store_explicit(&b->ncounters, n + 1, memory_order_release);
      i = n;
    }
    uv_mutex_unlock(&b->clock);
    if (i < 0) return; /* table full: the counter is not kept */
  }
  atomic_fetch_add_explicit(&b->cval[i], v, memory_order_relaxed);
}

int vcg__info_init(vcg__info_t *in) {
  memset(in, 0, sizeof *in);
  return uv_mutex_init(&in->lock);
}

void vcg__info_free(vcg__info_t *in) {
  for (size_t i = 0; i < in->n; i++) { free(in->key[i]); free(in->val[i]); }
  uv_mutex_destroy(&in->lock);
  memset(in, 0, sizeof *in);
}

static int h_info_set(vcg_worker_t *b, const char *key, const char *value) {
  vcg__info_t *in = &b->core->proc->info;
  if (!key || !value || strlen(value) > 1024) return VCG_EINVAL;
  int rc = 0;
  uv_mutex_lock(&in->lock);
  size_t i = 0;
  while (i < in->n && strcmp(in->key[i], key) != 0) i++;
  char *v = strdup(value);
  if (!v) rc = VCG_ENOMEM;
  else if (i < in->n) { free(in->val[i]); in->val[i] = v; }
  else if (in->n == VCG__MAX_INFO) { free(v); rc = VCG_ENOBUFS; }
  else if (!(in->key[i] = strdup(key))) { free(v); rc = VCG_ENOMEM; }
  else { in->val[i] = v; in->n++; }
  uv_mutex_unlock(&in->lock);
  return rc;
}

static int h_info_get(vcg_worker_t *b, const char *key, char *buf, size_t len) {
  vcg__info_t *in = &b->core->proc->info;
  int rc = VCG_ENOENT;
  uv_mutex_lock(&in->lock);
  for (size_t i = 0; i < in->n; i++) {
    if (strcmp(in->key[i], key) != 0) continue;
    size_t n = strlen(in->val[i]);
    if (n >= len) rc = VCG_ENOBUFS;
    else { memcpy(buf, in->val[i], n + 1); rc = 0; }
    break;
  }
  uv_mutex_unlock(&in->lock);
  return rc;
}

static int h_conn_admit(vcg_worker_t *b, const struct sockaddr *peer) {
  int counted = 0;
  int rc = vcg__limits_acquire(&b->core->proc->limits, peer, &counted);
  return rc ? rc : counted;
}

static void h_conn_release(vcg_worker_t *b, const struct sockaddr *peer, int admitted) {
  vcg__limits_release(&b->core->proc->limits, peer, admitted);
}

static uint64_t h_packet_deadline(const vcg_packet_t *p) {
  return p->deadline_ms ? p->deadline_ms : UINT64_MAX;
}

static void h_bus_state_ts(vcg_worker_t *b, int up) {
  int was = atomic_exchange(&b->bus_up, up ? 1 : 0);
  if (up && !was && atomic_exchange(&b->bus_was_up, 1))
    atomic_fetch_add(&b->bus_reconnects, 1); /* up again after having been up */
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
  .info_set = h_info_set,
  .info_get = h_info_get,
  .conn_admit = h_conn_admit,
  .conn_release = h_conn_release,
  .packet_deadline = h_packet_deadline,
  .packet_shed = vcg__relay_shed,
  .packet_take = vcg__relay_take,
  .bus_state_ts = h_bus_state_ts,
  .lobby_check = vcg__lobby_check,
};
