#include "metrics.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VCG_VERSION
#define VCG_VERSION "unknown"
#endif

void vcg__sbuf_printf(vcg__sbuf_t *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) { b->oom = 1; return; }
    if (b->s && (size_t)n < b->cap - b->len) { b->len += (size_t)n; return; }
    size_t cap = b->cap ? b->cap * 2 : 16384;
    while (cap < b->len + (size_t)n + 1) cap *= 2;
    char *ns = realloc(b->s, cap);
    if (!ns) { b->oom = 1; return; }
    b->s = ns;
    b->cap = cap;
  }
}

void vcg__sbuf_free(vcg__sbuf_t *b) {
  free(b->s);
  memset(b, 0, sizeof *b);
}

#define SUM(dst, src) atomic_store_explicit(&(dst), VCG__GET(dst) + VCG__GET(src), memory_order_relaxed)

void vcg__stats_sum(const vcg__process_t *p, vcg__stats_t *out) {
  memset(out, 0, sizeof *out);
  for (unsigned i = 0; i < p->nworkers; i++) {
    const vcg__stats_t *s = &p->workers[i].stats;
    /* Every member of vcg__stats_t is a vcg__ctr_t: sum them as an array. */
    const vcg__ctr_t *a = (const vcg__ctr_t *)s;
    vcg__ctr_t *o = (vcg__ctr_t *)out;
    for (size_t k = 0; k < sizeof *s / sizeof *a; k++) SUM(o[k], a[k]);
  }
}

static void tsum(const vcg__process_t *p, size_t ti, vcg__tstats_t *out) {
  memset(out, 0, sizeof *out);
  for (unsigned i = 0; i < p->nworkers; i++) {
    if (ti >= p->workers[i].ntransports) continue;
    const vcg__ctr_t *a = (const vcg__ctr_t *)&p->workers[i].transports[ti].ts;
    vcg__ctr_t *o = (vcg__ctr_t *)out;
    for (size_t k = 0; k < sizeof *out / sizeof *a; k++) SUM(o[k], a[k]);
  }
}

static const char *const kind_name[VCG__K_N] = { "audio", "video", "screen", "control" };
static const char *const code_name[VCG__CC_N] = { "none", "1001", "1002", "1007", "1008",
                                                  "1009", "1011", "1013" };
static const char *const reject_name[VCG__RJ_N] = { "bad_request", "unauthorized", "forbidden",
                                                    "not_found", "gone", "limit", "overload",
                                                    "shutting_down", "internal" };
static const char *const auth_name[VCG__AF_N] = { "expired", "bad_signature", "bad_issuer",
                                                  "malformed", "no_access", "bad_claims",
                                                  "no_secret" };

static void family(vcg__sbuf_t *b, const char *name, const char *type, const char *help) {
  vcg__sbuf_printf(b, "# HELP vcgate_%s %s\n# TYPE vcgate_%s %s\n", name, help, name, type);
}

static void one(vcg__sbuf_t *b, const char *name, const char *type, const char *help, uint64_t v) {
  family(b, name, type, help);
  vcg__sbuf_printf(b, "vcgate_%s %llu\n", name, (unsigned long long)v);
}

/* A label value from our own tables or a plugin instance name: escape as
 * the text format asks (\\, \", \n). */
static void label(vcg__sbuf_t *b, const char *v) {
  for (; *v; v++) {
    if (*v == '\\' || *v == '"') vcg__sbuf_printf(b, "\\%c", *v);
    else if (*v == '\n') vcg__sbuf_printf(b, "\\n");
    else vcg__sbuf_printf(b, "%c", *v);
  }
}

/* name{transport="T",lab="names[k]"} for every transport and k. */
static void per_transport(vcg__sbuf_t *b, const vcg__process_t *p, const char *name,
                          const char *lab, const char *const *names, size_t n,
                          size_t offset) {
  for (size_t ti = 0; ti < p->cfg->ntransports; ti++) {
    vcg__tstats_t t;
    tsum(p, ti, &t);
    const vcg__ctr_t *arr = (const vcg__ctr_t *)((const char *)&t + offset);
    for (size_t k = 0; k < (names ? n : 1); k++) {
      vcg__sbuf_printf(b, "vcgate_%s{transport=\"", name);
      label(b, p->cfg->transports[ti].name);
      if (names) {
        vcg__sbuf_printf(b, "\",%s=\"%s", lab, names[k]);
      }
      vcg__sbuf_printf(b, "\"} %llu\n", (unsigned long long)VCG__GET(arr[k]));
    }
  }
}

#define TOFF(f) offsetof(vcg__tstats_t, f)

/* The plugins' own named counters (host->counter_add), per instance. */
static void plugin_events(vcg__sbuf_t *b, const vcg__process_t *p) {
  family(b, "plugin_events_total", "counter",
         "Events a plugin counts itself (host->counter_add), by plugin instance and event.");
  size_t nb = p->cfg->ntransports + (p->cfg->bus.loaded ? 1 : 0);
  for (size_t bi = 0; bi < nb && p->nworkers; bi++) {
    const char *seen[VCG__MAX_COUNTERS];
    uint64_t sum[VCG__MAX_COUNTERS];
    size_t ns = 0;
    const char *inst = bi < p->cfg->ntransports ? p->cfg->transports[bi].name : p->cfg->bus.name;
    for (unsigned i = 0; i < p->nworkers; i++) {
      const vcg_worker_t *w = bi < p->cfg->ntransports ? &p->workers[i].transports[bi]
                                                        : &p->workers[i].bus;
      int nc = atomic_load_explicit(&w->ncounters, memory_order_acquire);
      for (int k = 0; k < nc; k++) {
        size_t j = 0;
        while (j < ns && strcmp(seen[j], w->cname[k]) != 0) j++;
        if (j == ns) { seen[ns] = w->cname[k]; sum[ns++] = 0; }
        sum[j] += atomic_load_explicit(&w->cval[k], memory_order_relaxed);
      }
    }
    for (size_t j = 0; j < ns; j++) {
      vcg__sbuf_printf(b, "vcgate_plugin_events_total{plugin=\"");
      label(b, inst);
      vcg__sbuf_printf(b, "\",event=\"");
      label(b, seen[j]);
      vcg__sbuf_printf(b, "\"} %llu\n", (unsigned long long)sum[j]);
    }
  }
}

void vcg__metrics_render(const vcg__process_t *p, vcg__sbuf_t *b) {
  vcg__stats_t s;
  vcg__stats_sum(p, &s);
  family(b, "build_info", "gauge", "The version and plugin ABI of this vcgate, as labels.");
  vcg__sbuf_printf(b, "vcgate_build_info{version=\"%s\",abi=\"%d.%d\"} 1\n", VCG_VERSION,
                   VCG_ABI_MAJOR, VCG_ABI_MINOR);
  family(b, "sessions", "gauge", "Sessions open now, by transport.");
  per_transport(b, p, "sessions", NULL, NULL, 0, TOFF(sessions));
  one(b, "rooms", "gauge", "Rooms with local members (a room on two worker loops counts twice).",
      VCG__GET(s.rooms));
  family(b, "sessions_opened_total", "counter", "Sessions opened, by transport.");
  per_transport(b, p, "sessions_opened_total", NULL, NULL, 0, TOFF(opened));
  family(b, "sessions_closed_total", "counter",
         "Sessions closed, by transport and the close code the server chose (none: the client "
         "left or the connection dropped).");
  per_transport(b, p, "sessions_closed_total", "code", code_name, VCG__CC_N, TOFF(closed));
  family(b, "connections_rejected_total", "counter",
         "Session requests refused, by transport and reason.");
  per_transport(b, p, "connections_rejected_total", "reason", reject_name, VCG__RJ_N,
                TOFF(rejected));
  family(b, "packets_received_total", "counter", "Packets received from clients, by transport and kind.");
  per_transport(b, p, "packets_received_total", "kind", kind_name, VCG__K_N, TOFF(rx_packets));
  family(b, "packets_sent_total", "counter",
         "Packets handed to a transport for a client, by transport and kind.");
  per_transport(b, p, "packets_sent_total", "kind", kind_name, VCG__K_N, TOFF(tx_packets));
  uint64_t rx = 0, tx = 0;
  for (size_t ti = 0; ti < p->cfg->ntransports; ti++) {
    vcg__tstats_t t;
    tsum(p, ti, &t);
    rx += VCG__GET(t.rx_bytes);
    tx += VCG__GET(t.tx_bytes);
  }
  one(b, "receive_bytes_total", "counter", "Bytes of packets received from clients.", rx);
  one(b, "transmit_bytes_total", "counter", "Bytes of packets handed to transports for clients.", tx);
  family(b, "packets_dropped_total", "counter",
         "Packets dropped for a receiver (queue budget or deadline), by kind.");
  for (int k = 0; k < VCG__K_N; k++)
    vcg__sbuf_printf(b, "vcgate_packets_dropped_total{kind=\"%s\"} %llu\n", kind_name[k],
                     (unsigned long long)VCG__GET(s.dropped[k]));
  one(b, "packets_malformed_total", "counter", "Client messages that are not a PacketWrapper.",
      VCG__GET(s.packets_malformed));
  one(b, "packets_refused_total", "counter",
      "Client packets the relay does not vouch for (another identity, the server's identity or "
      "types, an observer sending).", VCG__GET(s.packets_refused));
  one(b, "congestion_notices_total", "counter", "CONGESTION packets sent to senders.",
      VCG__GET(s.congestion));
  one(b, "slow_consumers_total", "counter", "Sessions closed as slow consumers.",
      VCG__GET(s.slow_closed));
  one(b, "observers_opened_total", "counter", "Observer sessions opened.",
      VCG__GET(s.observers_opened));
  one(b, "output_queue_bytes", "gauge", "Bytes queued in the transports for clients.",
      VCG__GET(s.queued_bytes));
  family(b, "relay_latency_seconds", "histogram",
         "From a packet's arrival to its transport taking it to write.");
  uint64_t cum = 0;
  for (int i = 0; i <= VCG__LAT_N; i++) {
    cum += VCG__GET(s.latency[i]);
    if (i < VCG__LAT_N)
      vcg__sbuf_printf(b, "vcgate_relay_latency_seconds_bucket{le=\"%g\"} %llu\n",
                       vcg__lat_bounds[i], (unsigned long long)cum);
    else
      vcg__sbuf_printf(b, "vcgate_relay_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
                       (unsigned long long)cum);
  }
  vcg__sbuf_printf(b, "vcgate_relay_latency_seconds_sum %.3f\n",
                   (double)VCG__GET(s.latency_sum_ms) / 1000.0);
  vcg__sbuf_printf(b, "vcgate_relay_latency_seconds_count %llu\n",
                   (unsigned long long)VCG__GET(s.latency_count));
  int up = 1;
  uint64_t reconnects = 0;
  for (unsigned i = 0; i < p->nworkers; i++) {
    if (!p->workers[i].bus.pc) continue;
    up &= atomic_load(&p->workers[i].bus.bus_up) != 0;
    reconnects += VCG__GET(p->workers[i].bus.bus_reconnects);
  }
  one(b, "bus_up", "gauge", "1 when every bus connection is up (or there is no bus).", (uint64_t)up);
  family(b, "bus_messages_total", "counter", "Packets exchanged with the bus, by direction.");
  vcg__sbuf_printf(b, "vcgate_bus_messages_total{direction=\"in\"} %llu\n",
                   (unsigned long long)VCG__GET(s.bus_in));
  vcg__sbuf_printf(b, "vcgate_bus_messages_total{direction=\"out\"} %llu\n",
                   (unsigned long long)VCG__GET(s.bus_out));
  one(b, "bus_reconnects_total", "counter", "Bus connections restored after they were lost.",
      reconnects);
  family(b, "auth_failures_total", "counter", "Room tokens refused, by reason.");
  for (int k = 0; k < VCG__AF_N; k++)
    vcg__sbuf_printf(b, "vcgate_auth_failures_total{reason=\"%s\"} %llu\n", auth_name[k],
                     (unsigned long long)VCG__GET(s.auth_failures[k]));
  family(b, "config_reloads_total", "counter", "Configuration reloads (SIGHUP), by result.");
  vcg__sbuf_printf(b, "vcgate_config_reloads_total{result=\"success\"} %llu\n",
                   (unsigned long long)VCG__GET(p->reloads_ok));
  vcg__sbuf_printf(b, "vcgate_config_reloads_total{result=\"failure\"} %llu\n",
                   (unsigned long long)VCG__GET(p->reloads_failed));
  one(b, "config_last_reload_success_timestamp_seconds", "gauge",
      "When the configuration in use was loaded (start or the last good reload), Unix time.",
      VCG__GET(p->last_reload_ok_s));
  plugin_events(b, p);
}
