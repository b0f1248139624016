/* loadgen: benchmark client for vcgate (and any relay with the same path
 * and forwarding rule).  Opens R rooms x P participants over one or more
 * URLs (round-robin, so one room spans several gateways), sends
 * PacketWrapper(MEDIA) packets on an open-loop schedule, checks that every
 * packet reaches every other member of its room exactly once and never its
 * sender, and prints one JSON line per result.
 *
 * One thread, one libuv loop; all state lives in one lg_t. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>
#include "lg.h"

#define LG_MAX_URLS 16
#define LG_MAX_BURST 10000 /* packets one sender may catch up in one tick */
#define LG_MAX_STEPS 60

enum { SC_MEETING, SC_FANOUT, SC_CONNECTIONS, SC_SATURATE };
static const char *const sc_names[] = {"meeting", "fanout", "connections", "saturate"};

enum { P_CONNECT, P_SETTLE, P_RUN, P_GRACE, P_HOLD, P_STEP_RUN, P_STEP_DRAIN, P_DONE };

typedef struct {
  const char *urls[LG_MAX_URLS];
  int nurls;
  int scenario;
  long rooms, participants, senders, connections;
  long size;
  double rate, duration, warmup, step_secs, step_factor, grace, max_seconds;
  double connect_timeout, p99_limit_ms, max_rate;
  long server_pid;
  int media_type;
  long src_spread; /* connections per source address; 0: do not bind */
  long inflight;
  long max_out;
  long refine;     /* saturate: bisection steps after the first failing rate */
  int quiet;
} lg_opts_t;

typedef struct {
  uint64_t sent, expected, delivered, dup, misrouted, foreign, congestion, control, overflow,
      skipped;
} lg_counts_t;

/* Machine and server CPU use over a measurement: tells whether the server,
 * the load generator or the hypervisor (steal) was the limit. */
#define LG_MAX_CPUS 16
typedef struct {
  int ncpu;
  unsigned long long busy[LG_MAX_CPUS], total[LG_MAX_CPUS], steal[LG_MAX_CPUS];
  unsigned long long server_ticks;
  uint64_t t_ns;
} lg_cpu_t;

typedef struct {
  int ncpu;
  double busy[LG_MAX_CPUS], steal[LG_MAX_CPUS], server; /* server < 0: unknown */
} lg_cpu_out_t;

/* Server RSS sampled once a second while measuring: a least-squares slope
 * shows growth over a soak; the second half's slope and the time of the
 * first maximum tell a plateau reached early from a steady climb. */
#define LG_RSS_MAX_SAMPLES 86400
typedef struct {
  double min;                  /* minutes since the first sample */
  long kb;
} lg_rss_sample_t;
typedef struct {
  size_t n, cap;
  lg_rss_sample_t *s;          /* every sample, owned */
  uint64_t next_ns, t0_ns;
} lg_rss_trend_t;

/* Least-squares slope in kB/min of samples [from, n). */
static double rss_slope(const lg_rss_trend_t *r, size_t from) {
  double sx = 0, sy = 0, sxy = 0, sxx = 0, k = 0;
  for (size_t i = from; i < r->n; i++) {
    double x = r->s[i].min, y = (double)r->s[i].kb;
    sx += x; sy += y; sxy += x * y; sxx += x * x; k++;
  }
  double den = k * sxx - sx * sx;
  return den != 0 ? (k * sxy - sx * sy) / den : 0.0;
}

struct lg {
  uv_loop_t loop;
  lg_opts_t o;
  lg_url_t urls[LG_MAX_URLS];
  lg_conn_t *conns;
  uint32_t nconns, nrooms, per_room, senders_per_room;
  uint32_t *room_live;
  lg_conn_t **senders;
  uint32_t nsenders;
  uint32_t run_id;
  uint8_t *rbuf;
  size_t rbuf_len;
  struct sockaddr_in bind_tmp;
  uv_timer_t tick, hard;
  int phase;
  uint64_t t_start, phase_t0, step_t0, send_end, warm_end;
  double cur_rate;
  uint32_t next_connect, inflight, opened, failed, disconnected, open_now;
  lg_conn_t *dirty;
  lg_counts_t n, step_base;
  int measuring;
  uint64_t win_delivered, win_bytes;
  lg_hist_t *hist, *lag;
  double cpu_t0, wall_t0;
  long rss_before, rss_after;
  lg_cpu_t cpu0, cpu1; /* at the start / end of the measured window */
  lg_cpu_out_t cpu_out, best_cpu;
  lg_rss_trend_t rss;
  double cpu_t1, wall_t1;
  int aborted, exit_code;
  /* saturate */
  int step;
  int retried; /* the current rate failed once already */
  double best_rate, best_msgs, best_p99;
  /* Refinement: once a rate fails, the steps bisect (geometrically)
   * between the best passing rate and the lowest failing one. */
  int refining;
  long refine_left;
  double fail_rate;
  const char *fail_reason;
  const char *stop_reason;
};

uv_loop_t *lg_loop(lg_t *lg) { return &lg->loop; }
uv_buf_t lg_readbuf(lg_t *lg) { return uv_buf_init((char *)lg->rbuf, (unsigned)lg->rbuf_len); }
size_t lg_max_out(lg_t *lg) { return (size_t)lg->o.max_out; }

const struct sockaddr *lg_bind_addr(lg_t *lg, lg_conn_t *c) {
  if (lg->o.src_spread <= 0 || c->url->addr.ss_family != AF_INET) return NULL;
  const struct sockaddr_in *d = (const struct sockaddr_in *)&c->url->addr;
  if ((ntohl(d->sin_addr.s_addr) >> 24) != 127) return NULL;
  memset(&lg->bind_tmp, 0, sizeof lg->bind_tmp);
  lg->bind_tmp.sin_family = AF_INET;
  lg->bind_tmp.sin_addr.s_addr = htonl(0x7f000001u + c->idx / (uint32_t)lg->o.src_spread);
  return (const struct sockaddr *)&lg->bind_tmp;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static long read_rss_kb(long pid) {
  char path[64], line[256];
  long kb = -1;
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
  fclose(f);
  return kb;
}

static void cpu_sample(lg_cpu_t *c, long server_pid) {
  char line[512];
  memset(c, 0, sizeof *c);
  c->t_ns = lg_now_ns();
  FILE *f = fopen("/proc/stat", "r");
  if (f) {
    while (fgets(line, sizeof line, f) && c->ncpu < LG_MAX_CPUS) {
      unsigned long long v[8] = {0};
      int id;
      if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9') continue;
      if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &id, &v[0], &v[1], &v[2],
                 &v[3], &v[4], &v[5], &v[6], &v[7]) < 9)
        continue;
      unsigned long long tot = 0;
      for (int i = 0; i < 8; i++) tot += v[i];
      c->total[c->ncpu] = tot;
      c->busy[c->ncpu] = tot - v[3] - v[4] - v[7];
      c->steal[c->ncpu] = v[7];
      c->ncpu++;
    }
    fclose(f);
  }
  if (server_pid > 0) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", server_pid);
    f = fopen(path, "r");
    if (f) {
      if (fgets(line, sizeof line, f)) {
        /* Fields 14 and 15 (utime, stime) follow the ")" that ends comm. */
        char *p = strrchr(line, ')');
        unsigned long long ut = 0, st = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
          c->server_ticks = ut + st;
      }
      fclose(f);
    }
  }
}

static void cpu_out_print(const lg_cpu_out_t *o, FILE *f, const char *prefix) {
  fprintf(f, ",\"%scpu_busy_pct\":[", prefix);
  for (int i = 0; i < o->ncpu; i++) fprintf(f, "%s%.1f", i ? "," : "", o->busy[i]);
  fprintf(f, "],\"%scpu_steal_pct\":[", prefix);
  for (int i = 0; i < o->ncpu; i++) fprintf(f, "%s%.1f", i ? "," : "", o->steal[i]);
  fprintf(f, "]");
  if (o->server >= 0) fprintf(f, ",\"%sserver_cpu_pct\":%.1f", prefix, o->server);
}

/* The measured window ends: CPU use is reported over the window only, not
 * over the grace period that follows. */
static void measure_end(lg_t *lg) {
  cpu_sample(&lg->cpu1, lg->o.server_pid);
  lg->cpu_t1 = cpu_seconds();
  lg->wall_t1 = lg->cpu1.t_ns / 1e9;
}

/* Prints the window's CPU use as JSON members and keeps it in lg->cpu_out
 * (the saturate summary repeats the best step's values). */
static void cpu_print(lg_t *lg, FILE *f) {
  lg_cpu_t now = lg->cpu1;
  lg_cpu_out_t *o = &lg->cpu_out;
  if (!now.t_ns) cpu_sample(&now, lg->o.server_pid);
  memset(o, 0, sizeof *o);
  o->server = -1;
  for (int i = 0; i < now.ncpu && i < lg->cpu0.ncpu; i++) {
    unsigned long long dt = now.total[i] - lg->cpu0.total[i];
    o->busy[i] = dt ? 100.0 * (double)(now.busy[i] - lg->cpu0.busy[i]) / (double)dt : 0.0;
    o->steal[i] = dt ? 100.0 * (double)(now.steal[i] - lg->cpu0.steal[i]) / (double)dt : 0.0;
    o->ncpu = i + 1;
  }
  double secs = (now.t_ns - lg->cpu0.t_ns) / 1e9;
  long hz = sysconf(_SC_CLK_TCK);
  if (lg->o.server_pid > 0 && secs > 0 && hz > 0)
    o->server = 100.0 * (double)(now.server_ticks - lg->cpu0.server_ticks) / (double)hz / secs;
  cpu_out_print(o, f, "");
}

/* ------------------------------------------------------------ URLs */

static int parse_url(const char *s, lg_url_t *u, char *err, size_t errlen) {
  memset(u, 0, sizeof *u);
  const char *p = strstr(s, "://");
  if (!p || (size_t)(p - s) >= sizeof u->scheme) {
    snprintf(err, errlen, "%s: expected ws://host:port", s);
    return UV_EINVAL;
  }
  memcpy(u->scheme, s, (size_t)(p - s));
  p += 3;
  const char *hend, *rest;
  if (*p == '[') {
    hend = strchr(p, ']');
    if (!hend) { snprintf(err, errlen, "%s: unterminated [", s); return UV_EINVAL; }
    snprintf(u->host, sizeof u->host, "%.*s", (int)(hend - p - 1), p + 1);
    rest = hend + 1;
  } else {
    hend = p + strcspn(p, ":/");
    snprintf(u->host, sizeof u->host, "%.*s", (int)(hend - p), p);
    rest = hend;
  }
  if (*rest == ':') {
    size_t pl = strcspn(rest + 1, "/");
    snprintf(u->port, sizeof u->port, "%.*s", (int)pl, rest + 1);
    rest += 1 + pl;
  } else {
    snprintf(u->port, sizeof u->port, "%s", strcmp(u->scheme, "ws") == 0 ? "80" : "443");
  }
  snprintf(u->prefix, sizeof u->prefix, "%s", rest);
  size_t l = strlen(u->prefix);
  while (l > 0 && u->prefix[l - 1] == '/') u->prefix[--l] = 0;
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(u->host, u->port, &hints, &ai);
  if (rc != 0 || !ai) {
    snprintf(err, errlen, "%s: %s", s, gai_strerror(rc));
    return UV_EINVAL;
  }
  memcpy(&u->addr, ai->ai_addr, ai->ai_addrlen);
  u->addrlen = ai->ai_addrlen;
  freeaddrinfo(ai);
  return 0;
}

static const lg_transport_t *transport_for(const char *scheme) {
  if (strcmp(scheme, "ws") == 0) return &lg_ws_transport;
#ifdef LG_WITH_WT
  if (strcmp(scheme, "https") == 0) return &lg_wt_transport;
#endif
  return NULL;
}

/* ------------------------------------------------------------ connections */

static void connect_more(lg_t *lg) {
  while (lg->phase == P_CONNECT && lg->next_connect < lg->nconns &&
         lg->inflight < (uint32_t)lg->o.inflight) {
    lg_conn_t *c = &lg->conns[lg->next_connect++];
    c->state = LG_C_CONNECTING;
    c->t_connect_ns = lg_now_ns();
    lg->inflight++;
    int rc = c->tr->connect(lg, c);
    if (rc < 0) {
      lg->inflight--;
      c->state = LG_C_FAILED;
      lg->failed++;
      if (!lg->o.quiet) fprintf(stderr, "loadgen: connect %u: %s\n", c->idx, uv_strerror(rc));
    }
  }
}

void lg_conn_opened(lg_conn_t *c) {
  lg_t *lg = c->lg;
  c->state = LG_C_OPEN;
  lg->inflight--;
  lg->opened++;
  lg->open_now++;
  lg->room_live[c->room]++;
  connect_more(lg);
}

void lg_conn_closed(lg_conn_t *c, const char *why) {
  lg_t *lg = c->lg;
  if (c->state == LG_C_CONNECTING) {
    lg->inflight--;
    lg->failed++;
    c->state = LG_C_FAILED;
    if (!lg->o.quiet && lg->failed <= 5) fprintf(stderr, "loadgen: connect %u failed: %s\n", c->idx, why);
    connect_more(lg);
    return;
  }
  if (c->state == LG_C_OPEN) {
    lg->open_now--;
    lg->room_live[c->room]--;
    if (lg->phase != P_DONE) {
      lg->disconnected++;
      if (!lg->o.quiet && lg->disconnected <= 5)
        fprintf(stderr, "loadgen: participant %u disconnected: %s\n", c->idx, why);
    }
  }
  c->state = LG_C_CLOSED;
}

void lg_conn_message(lg_conn_t *c, const uint8_t *msg, size_t len) {
  lg_t *lg = c->lg;
  lg_hdr_t h;
  switch (lg_wire_classify(msg, len, lg->run_id, &h)) {
  case LG_RX_CONTROL: lg->n.control++; return;
  case LG_RX_CONGESTION: lg->n.congestion++; return;
  case LG_RX_FOREIGN: lg->n.foreign++; return;
  default: break;
  }
  if (h.sender >= lg->nconns || h.sender == c->idx || h.room != c->room ||
      lg->conns[h.sender].room != h.room || !lg->conns[h.sender].sender || !c->win) {
    lg->n.misrouted++;
    return;
  }
  int rc = lg_seqwin_add(&c->win[lg->conns[h.sender].slot], h.seq);
  if (rc != 0) {
    lg->n.dup++;
    return;
  }
  lg->n.delivered++;
  if (lg->measuring) {
    uint64_t now = lg_now_ns();
    lg_hist_add(lg->hist, now > h.send_ns ? now - h.send_ns : 0);
    lg->win_delivered++;
    lg->win_bytes += len;
  }
}

/* ------------------------------------------------------------ sending */

static void set_rate(lg_t *lg, double rate, uint64_t now) {
  lg->cur_rate = rate;
  lg->step_t0 = now;
  double gap = 1e9 / rate;
  for (uint32_t k = 0; k < lg->nsenders; k++) {
    lg->senders[k]->step_sent = 0;
    lg->senders[k]->phase_ns = (uint64_t)(gap * k / lg->nsenders);
  }
}

static void send_due(lg_t *lg) {
  double rate = lg->cur_rate, gap = 1e9 / rate;
  for (uint32_t k = 0; k < lg->nsenders; k++) {
    lg_conn_t *c = lg->senders[k];
    if (c->state != LG_C_OPEN) continue;
    uint64_t now = lg_now_ns();
    if (now < lg->step_t0 + c->phase_ns) continue;
    uint64_t due = (uint64_t)((double)(now - lg->step_t0 - c->phase_ns) * rate / 1e9) + 1;
    if (due <= c->step_sent) continue;
    uint64_t nsend = due - c->step_sent;
    if (nsend > LG_MAX_BURST) {
      lg->n.skipped += nsend - LG_MAX_BURST;
      c->step_sent += nsend - LG_MAX_BURST;
      nsend = LG_MAX_BURST;
    }
    uint32_t live = lg->room_live[c->room];
    for (uint64_t i = 0; i < nsend; i++) {
      uint64_t sched = lg->step_t0 + c->phase_ns + (uint64_t)(gap * (double)c->step_sent);
      c->step_sent++;
      if (lg->measuring) lg_hist_add(lg->lag, now > sched ? now - sched : 0);
      lg_template_stamp(&c->tpl, c->seq, now);
      if (c->tr->send(c, c->tpl.buf, c->tpl.len) != 0) {
        lg->n.overflow++;
        continue;
      }
      c->seq++;
      lg->n.sent++;
      lg->n.expected += live - 1;
    }
    if (!c->dirty) {
      c->dirty = 1;
      c->dirty_next = lg->dirty;
      lg->dirty = c;
    }
  }
  while (lg->dirty) {
    lg_conn_t *c = lg->dirty;
    lg->dirty = c->dirty_next;
    c->dirty = 0;
    c->tr->flush(c);
  }
}

/* ------------------------------------------------------------ reports */

static void print_common(lg_t *lg, FILE *f, const lg_counts_t *n, double secs) {
  uint64_t lost = n->expected > n->delivered ? n->expected - n->delivered : 0;
  fprintf(f,
          "\"transport\":\"%s\",\"urls\":%d,\"rooms\":%u,\"participants\":%u,"
          "\"senders_per_room\":%u,\"size\":%zu,\"rate\":%.1f,"
          "\"connected\":%u,\"failed\":%u,\"disconnected\":%u,"
          "\"sent\":%" PRIu64 ",\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64
          ",\"lost\":%" PRIu64 ",\"duplicated\":%" PRIu64 ",\"misrouted\":%" PRIu64
          ",\"foreign\":%" PRIu64 ",\"congestion\":%" PRIu64 ",\"control\":%" PRIu64
          ",\"send_overflow\":%" PRIu64 ",\"send_skipped\":%" PRIu64 ",",
          lg->urls[0].scheme, lg->o.nurls, lg->nrooms, lg->per_room, lg->senders_per_room,
          lg->nsenders ? lg->senders[0]->tpl.len : (size_t)0, lg->cur_rate, lg->opened,
          lg->failed, lg->disconnected, n->sent, n->expected, n->delivered, lost, n->dup,
          n->misrouted, n->foreign, n->congestion, n->control, n->overflow, n->skipped);
  const lg_hist_t *h = lg->hist;
  fprintf(f,
          "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,"
          "\"samples\":%" PRIu64 "},\"send_lag_ms\":{\"p99\":%.3f,\"max\":%.3f},",
          lg_hist_pct(h, 50) / 1e6, lg_hist_pct(h, 90) / 1e6, lg_hist_pct(h, 99) / 1e6,
          lg_hist_pct(h, 99.9) / 1e6, h->max / 1e6, h->n, lg_hist_pct(lg->lag, 99) / 1e6,
          lg->lag->max / 1e6);
  double cpu = (lg->wall_t1 ? lg->cpu_t1 : cpu_seconds()) - lg->cpu_t0;
  double wall = (lg->wall_t1 ? lg->wall_t1 : lg_now_ns() / 1e9) - lg->wall_t0;
  fprintf(f,
          "\"delivered_msgs_per_s\":%.0f,\"delivered_MB_per_s\":%.2f,\"duration\":%.2f,"
          "\"loadgen_cpu_pct\":%.1f",
          secs > 0 ? lg->win_delivered / secs : 0.0, secs > 0 ? lg->win_bytes / secs / 1e6 : 0.0,
          secs, wall > 0 ? 100.0 * cpu / wall : 0.0);
  cpu_print(lg, f);
}

static lg_counts_t counts_sub(const lg_counts_t *a, const lg_counts_t *b) {
  lg_counts_t r;
  r.sent = a->sent - b->sent;
  r.expected = a->expected - b->expected;
  r.delivered = a->delivered - b->delivered;
  r.dup = a->dup - b->dup;
  r.misrouted = a->misrouted - b->misrouted;
  r.foreign = a->foreign - b->foreign;
  r.congestion = a->congestion - b->congestion;
  r.control = a->control - b->control;
  r.overflow = a->overflow - b->overflow;
  r.skipped = a->skipped - b->skipped;
  return r;
}

static void report_run(lg_t *lg) {
  printf("{\"scenario\":\"%s\",", sc_names[lg->o.scenario]);
  print_common(lg, stdout, &lg->n, lg->o.duration);
  if (lg->o.scenario == SC_CONNECTIONS) {
    printf(",\"held\":%u", lg->open_now);
    if (lg->o.server_pid > 0) {
      long d = lg->rss_after - lg->rss_before;
      printf(",\"server_pid\":%ld,\"rss_kb_before\":%ld,\"rss_kb\":%ld,\"rss_per_conn_bytes\":%.0f",
             lg->o.server_pid, lg->rss_before, lg->rss_after,
             lg->open_now ? d * 1024.0 / lg->open_now : 0.0);
    }
  }
  const lg_rss_trend_t *r = &lg->rss;
  if (r->n >= 2) {
    size_t imax = 0; /* the first sample at the maximum */
    for (size_t i = 1; i < r->n; i++)
      if (r->s[i].kb > r->s[imax].kb) imax = i;
    printf(",\"rss_samples\":%zu,\"rss_kb_first\":%ld,\"rss_kb_last\":%ld,"
           "\"rss_kb_max\":%ld,\"rss_kb_max_at_s\":%.0f,\"rss_slope_kb_per_min\":%.1f",
           r->n, r->s[0].kb, r->s[r->n - 1].kb, r->s[imax].kb, r->s[imax].min * 60,
           rss_slope(r, 0));
    if (r->n >= 4)
      printf(",\"rss_slope_second_half_kb_per_min\":%.1f", rss_slope(r, r->n / 2));
  }
  printf(",\"aborted\":%s}\n", lg->aborted ? "true" : "false");
  fflush(stdout);
  const lg_counts_t *n = &lg->n;
  if (lg->aborted) lg->exit_code = 1;
  else if (n->expected != n->delivered || n->dup || n->misrouted || lg->failed) lg->exit_code = 3;
}

/* ------------------------------------------------------------ phases */

static void finish(lg_t *lg) {
  lg->phase = P_DONE;
  lg->measuring = 0;
  for (uint32_t i = 0; i < lg->nconns; i++) {
    lg_conn_t *c = &lg->conns[i];
    if (c->tp && (c->state == LG_C_OPEN || c->state == LG_C_CONNECTING)) c->tr->close(c);
  }
  uv_timer_stop(&lg->tick);
  uv_timer_stop(&lg->hard);
  uv_close((uv_handle_t *)&lg->tick, NULL);
  uv_close((uv_handle_t *)&lg->hard, NULL);
}

static void start_measure(lg_t *lg, uint64_t now) {
  cpu_sample(&lg->cpu0, lg->o.server_pid);
  lg->cpu_t0 = cpu_seconds();
  lg->wall_t0 = now / 1e9;
  switch (lg->o.scenario) {
  case SC_CONNECTIONS:
    lg->phase = P_HOLD;
    lg->phase_t0 = now;
    return;
  case SC_SATURATE:
    lg->phase = P_STEP_RUN;
    lg->step = 0;
    lg->step_base = lg->n;
    memset(lg->hist, 0, sizeof *lg->hist);
    memset(lg->lag, 0, sizeof *lg->lag);
    lg->win_delivered = lg->win_bytes = 0;
    lg->measuring = 1;
    set_rate(lg, lg->o.rate, now);
    lg->send_end = now + (uint64_t)(lg->o.step_secs * 1e9);
    return;
  default:
    lg->phase = P_RUN;
    set_rate(lg, lg->o.rate, now);
    lg->warm_end = now + (uint64_t)(lg->o.warmup * 1e9);
    lg->send_end = lg->warm_end + (uint64_t)(lg->o.duration * 1e9);
    lg->measuring = lg->o.warmup <= 0;
    return;
  }
}

static void saturate_step_done(lg_t *lg, uint64_t now) {
  lg_counts_t d = counts_sub(&lg->n, &lg->step_base);
  uint64_t lost = d.expected > d.delivered ? d.expected - d.delivered : 0;
  double p99 = lg_hist_pct(lg->hist, 99) / 1e6;
  double msgs = lg->win_delivered / lg->o.step_secs;
  int ok = lost == 0 && d.dup == 0 && d.misrouted == 0 && d.overflow == 0 && d.skipped == 0 &&
           p99 <= lg->o.p99_limit_ms && lg->disconnected == 0 && lg->win_delivered > 0;
  printf("{\"scenario\":\"saturate\",\"step\":%d,", lg->step);
  print_common(lg, stdout, &d, lg->o.step_secs);
  printf(",\"ok\":%s}\n", ok ? "true" : "false");
  fflush(stdout);
  if (ok) {
    lg->retried = 0;
    lg->best_cpu = lg->cpu_out;
    lg->best_rate = lg->cur_rate;
    lg->best_msgs = msgs;
    lg->best_p99 = p99;
  }
  double next = lg->cur_rate * lg->o.step_factor;
  const char *stop = NULL;
  /* A failed step is run once more at the same rate before it counts: on a
   * shared or virtual machine one stall of either process is enough to
   * push a step's p99 over the limit. */
  if (!ok && !lg->retried && !lg->disconnected && d.dup == 0 && d.misrouted == 0) {
    lg->retried = 1;
    next = lg->cur_rate;
  } else {
    if (!ok) {
      lg->fail_reason = lost || d.overflow || d.skipped || lg->disconnected ? "loss"
                        : p99 > lg->o.p99_limit_ms                         ? "p99 above limit"
                                                                            : "errors";
      /* Lost clients or wrong deliveries end the run; an overload is
       * bracketed instead, when asked to. */
      if (lg->disconnected || d.dup || d.misrouted || lg->best_rate <= 0 ||
          (!lg->refining && lg->o.refine <= 0))
        stop = lg->fail_reason;
      else {
        if (!lg->refining) lg->refine_left = lg->o.refine;
        lg->refining = 1;
        lg->fail_rate = lg->cur_rate;
      }
    }
    if (!stop && lg->refining) {
      if (lg->refine_left <= 0) stop = lg->fail_reason;
      else {
        lg->refine_left--;
        lg->retried = 0;
        next = sqrt(lg->best_rate * lg->fail_rate);
      }
    }
  }
  if (stop == NULL) {
    if (lg->step + 1 >= LG_MAX_STEPS) stop = "max steps";
    else if (next > lg->o.max_rate) stop = "max rate";
    else if ((now - lg->t_start) / 1e9 + lg->o.step_secs + lg->o.grace + 1 > lg->o.max_seconds)
      stop = "max-seconds";
  }
  if (stop) {
    lg->stop_reason = stop;
    printf("{\"scenario\":\"saturate\",\"final\":true,\"transport\":\"%s\",\"rooms\":%u,"
           "\"participants\":%u,\"senders_per_room\":%u,\"size\":%zu,\"steps\":%d,"
           "\"stop_reason\":\"%s\",\"best_rate\":%.1f,\"best_delivered_msgs_per_s\":%.0f,"
           "\"best_p99_ms\":%.3f",
           lg->urls[0].scheme, lg->nrooms, lg->per_room, lg->senders_per_room,
           lg->nsenders ? lg->senders[0]->tpl.len : (size_t)0, lg->step + 1, stop,
           lg->best_rate, lg->best_msgs, lg->best_p99);
    if (lg->best_rate > 0) cpu_out_print(&lg->best_cpu, stdout, "best_");
    printf("}\n");
    fflush(stdout);
    lg->exit_code = lg->best_rate > 0 ? 0 : 3;
    finish(lg);
    return;
  }
  lg->step++;
  lg->step_base = lg->n;
  memset(lg->hist, 0, sizeof *lg->hist);
  memset(lg->lag, 0, sizeof *lg->lag);
  lg->win_delivered = lg->win_bytes = 0;
  lg->cpu_t0 = cpu_seconds();
  lg->wall_t0 = now / 1e9;
  cpu_sample(&lg->cpu0, lg->o.server_pid);
  lg->phase = P_STEP_RUN;
  lg->measuring = 1;
  set_rate(lg, next, now);
  lg->send_end = now + (uint64_t)(lg->o.step_secs * 1e9);
}

static void rss_sample(lg_t *lg, uint64_t now) {
  lg_rss_trend_t *r = &lg->rss;
  if (lg->o.server_pid <= 0 || now < r->next_ns) return;
  if (!r->t0_ns) r->t0_ns = now;
  r->next_ns = now + 1000000000u;
  long kb = read_rss_kb(lg->o.server_pid);
  if (kb < 0) return;
  if (r->n == r->cap) {
    size_t ncap = r->cap ? r->cap * 2 : 1024;
    lg_rss_sample_t *ns = ncap <= LG_RSS_MAX_SAMPLES ? realloc(r->s, ncap * sizeof(*ns)) : NULL;
    if (ns == NULL) return; /* a day of samples, or no memory: enough */
    r->s = ns;
    r->cap = ncap;
  }
  r->s[r->n].min = (now - r->t0_ns) / 60e9;
  r->s[r->n].kb = kb;
  r->n++;
}

static void on_tick(uv_timer_t *t) {
  lg_t *lg = t->data;
  uint64_t now = lg_now_ns();
  if (lg->measuring) rss_sample(lg, now);
  switch (lg->phase) {
  case P_CONNECT:
    if (lg->opened + lg->failed == lg->nconns ||
        now - lg->phase_t0 > (uint64_t)(lg->o.connect_timeout * 1e9)) {
      /* Give up on stragglers: they count as failed. */
      for (uint32_t i = 0; i < lg->nconns; i++)
        if (lg->conns[i].state == LG_C_CONNECTING) lg->conns[i].tr->close(&lg->conns[i]);
      lg->next_connect = lg->nconns;
      lg->phase = P_SETTLE;
      lg->phase_t0 = now;
      if (!lg->o.quiet)
        fprintf(stderr, "loadgen: %u connected, %u failed in %.2f s\n", lg->opened, lg->failed,
                (now - lg->t_start) / 1e9);
    }
    return;
  case P_SETTLE:
    if (lg->inflight == 0 && now - lg->phase_t0 >= (lg->o.nurls > 1 ? 1000000000u : 300000000u)) {
      if (lg->opened == 0) {
        fprintf(stderr, "loadgen: no connection could be opened\n");
        lg->aborted = 1;
        report_run(lg);
        finish(lg);
        return;
      }
      if (lg->o.server_pid > 0 && lg->o.scenario != SC_CONNECTIONS)
        lg->rss_before = read_rss_kb(lg->o.server_pid);
      start_measure(lg, now);
    }
    return;
  case P_RUN:
    if (!lg->measuring && now >= lg->warm_end) {
      lg->measuring = 1;
      cpu_sample(&lg->cpu0, lg->o.server_pid);
      lg->cpu_t0 = cpu_seconds();
      lg->wall_t0 = now / 1e9;
    }
    if (now >= lg->send_end) {
      lg->measuring = 0;
      measure_end(lg);
      lg->phase = P_GRACE;
      lg->phase_t0 = now;
      return;
    }
    send_due(lg);
    return;
  case P_GRACE:
  case P_STEP_DRAIN:
    /* Wait for stragglers: everything expected, or the grace period. */
    if (lg->n.delivered + lg->n.dup >= lg->n.expected ||
        now - lg->phase_t0 >= (uint64_t)(lg->o.grace * 1e9)) {
      if (lg->phase == P_GRACE) {
        report_run(lg);
        finish(lg);
      } else {
        lg->measuring = 0;
        saturate_step_done(lg, now);
      }
    }
    return;
  case P_STEP_RUN:
    if (now >= lg->send_end) {
      measure_end(lg);
      lg->phase = P_STEP_DRAIN;
      lg->phase_t0 = now;
      return;
    }
    send_due(lg);
    return;
  case P_HOLD:
    if (now - lg->phase_t0 >= (uint64_t)(lg->o.duration * 1e9)) {
      if (lg->o.server_pid > 0) lg->rss_after = read_rss_kb(lg->o.server_pid);
      measure_end(lg);
      report_run(lg);
      finish(lg);
    }
    return;
  default:
    return;
  }
}

static void on_hard(uv_timer_t *t) {
  lg_t *lg = t->data;
  fprintf(stderr, "loadgen: --max-seconds %.0f reached; stopping\n", lg->o.max_seconds);
  lg->aborted = 1;
  if (lg->o.scenario == SC_SATURATE && lg->best_rate > 0) {
    printf("{\"scenario\":\"saturate\",\"final\":true,\"stop_reason\":\"max-seconds\","
           "\"best_rate\":%.1f,\"best_delivered_msgs_per_s\":%.0f,\"best_p99_ms\":%.3f,"
           "\"aborted\":true}\n", lg->best_rate, lg->best_msgs, lg->best_p99);
    lg->exit_code = 1;
  } else {
    report_run(lg);
  }
  finish(lg);
}

/* ------------------------------------------------------------ setup */

static void usage(FILE *f) {
  fprintf(f,
    "usage: loadgen --url ws://HOST:PORT [--url ...] [options]\n"
    "  --scenario S        meeting (default) | fanout | connections | saturate\n"
    "  --rooms R           rooms (meeting 20, fanout 1)\n"
    "  --participants P    participants per room (meeting 5, fanout 200, connections 10)\n"
    "  --senders S         senders per room (meeting: all, fanout: 1)\n"
    "  --connections N     connections scenario: idle connections (default 10000)\n"
    "  --size BYTES        PacketWrapper size (default 1000)\n"
    "  --rate N            packets/s per sender (meeting 30, fanout 1000, saturate start 100)\n"
    "  --duration SECS     measured time (default 10; connections: hold time)\n"
    "  --warmup SECS       unmeasured sending before (default 2)\n"
    "  --grace SECS        wait for late packets after sending (default 2)\n"
    "  --step-secs SECS    saturate: seconds per step (default 5)\n"
    "  --step-factor F     saturate: rate multiplier per step (default 1.25)\n"
    "  --p99-limit MS      saturate: stop when p99 exceeds this (default 50)\n"
    "  --max-rate N        saturate: highest per-sender rate tried (default 1000000)\n"
    "  --refine N          saturate: after the first failing rate, N steps bisecting\n"
    "                      between the best passing and the lowest failing rate (default 0)\n"
    "  --media video|audio MediaPacket media_type (default video)\n"
    "  --server-pid PID    report the server's VmRSS (connections: per connection)\n"
    "  --src-spread N      bind connection i to 127.0.0.(1+i/N) (default 20000; 0 = off)\n"
    "  --inflight N        concurrent handshakes (default 256)\n"
    "  --max-out BYTES     per-connection unsent buffer bound (default 8388608)\n"
    "  --connect-timeout S (default 30)\n"
    "  --max-seconds SECS  hard bound on the whole run (default 300)\n"
    "  --quiet             no progress on stderr\n"
    "Exit status: 0 done and correct; 3 lost/duplicated/misrouted packets or failed\n"
    "connections; 1 usage error or --max-seconds reached.\n"
    "URL schemes built in: ws://%s\n",
#ifdef LG_WITH_WT
    ", https:// (WebTransport)"
#else
    ""
#endif
    );
}

static int parse_opts(lg_opts_t *o, int argc, char **argv) {
  static const struct option lo[] = {
    {"url", 1, 0, 'u'}, {"scenario", 1, 0, 's'}, {"rooms", 1, 0, 'R'},
    {"participants", 1, 0, 'P'}, {"senders", 1, 0, 'S'}, {"connections", 1, 0, 'N'},
    {"size", 1, 0, 'b'}, {"rate", 1, 0, 'r'}, {"duration", 1, 0, 'd'}, {"warmup", 1, 0, 'w'},
    {"grace", 1, 0, 'g'}, {"step-secs", 1, 0, 1}, {"step-factor", 1, 0, 2},
    {"p99-limit", 1, 0, 3}, {"max-rate", 1, 0, 4}, {"media", 1, 0, 5},
    {"server-pid", 1, 0, 6}, {"src-spread", 1, 0, 7}, {"inflight", 1, 0, 8},
    {"max-out", 1, 0, 9}, {"connect-timeout", 1, 0, 10}, {"max-seconds", 1, 0, 11},
    {"refine", 1, 0, 12},
    {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
  memset(o, 0, sizeof *o);
  o->rooms = o->participants = o->senders = o->connections = o->size = -1;
  o->rate = o->duration = o->warmup = -1;
  o->step_secs = 5; o->step_factor = 1.25; o->grace = 2; o->max_seconds = 300;
  o->connect_timeout = 30; o->p99_limit_ms = 50; o->max_rate = 1e6;
  o->media_type = 1; o->src_spread = 20000; o->inflight = 256; o->max_out = 8 << 20;
  int ch;
  while ((ch = getopt_long(argc, argv, "u:s:R:P:S:N:b:r:d:w:g:qh", lo, NULL)) != -1) {
    switch (ch) {
    case 'u':
      if (o->nurls == LG_MAX_URLS) { fprintf(stderr, "loadgen: at most %d --url\n", LG_MAX_URLS); return -1; }
      o->urls[o->nurls++] = optarg;
      break;
    case 's': {
      int k = -1;
      for (int i = 0; i < 4; i++) if (strcmp(optarg, sc_names[i]) == 0) k = i;
      if (k < 0) { fprintf(stderr, "loadgen: unknown scenario %s\n", optarg); return -1; }
      o->scenario = k;
      break;
    }
    case 'R': o->rooms = atol(optarg); break;
    case 'P': o->participants = atol(optarg); break;
    case 'S': o->senders = atol(optarg); break;
    case 'N': o->connections = atol(optarg); break;
    case 'b': o->size = atol(optarg); break;
    case 'r': o->rate = atof(optarg); break;
    case 'd': o->duration = atof(optarg); break;
    case 'w': o->warmup = atof(optarg); break;
    case 'g': o->grace = atof(optarg); break;
    case 1: o->step_secs = atof(optarg); break;
    case 2: o->step_factor = atof(optarg); break;
    case 3: o->p99_limit_ms = atof(optarg); break;
    case 4: o->max_rate = atof(optarg); break;
    case 5:
      if (strcmp(optarg, "video") == 0) o->media_type = 1;
      else if (strcmp(optarg, "audio") == 0) o->media_type = 2;
      else { fprintf(stderr, "loadgen: --media video|audio\n"); return -1; }
      break;
    case 6: o->server_pid = atol(optarg); break;
    case 7: o->src_spread = atol(optarg); break;
    case 8: o->inflight = atol(optarg); break;
    case 9: o->max_out = atol(optarg); break;
    case 10: o->connect_timeout = atof(optarg); break;
    case 11: o->max_seconds = atof(optarg); break;
    case 12: o->refine = atol(optarg); break;
    case 'q': o->quiet = 1; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return -1;
    }
  }
  if (optind < argc || o->nurls == 0) { usage(stderr); return -1; }
  /* Scenario defaults for what was not given. */
  int sc = o->scenario;
  if (o->rooms < 0) o->rooms = sc == SC_FANOUT ? 1 : 20;
  if (o->participants < 0) o->participants = sc == SC_FANOUT ? 200 : sc == SC_CONNECTIONS ? 10 : 5;
  if (o->senders < 0) o->senders = sc == SC_FANOUT ? 1 : o->participants;
  if (o->connections < 0) o->connections = 10000;
  if (o->size < 0) o->size = 1000;
  if (o->rate < 0) o->rate = sc == SC_FANOUT ? 1000 : sc == SC_SATURATE ? 100 : 30;
  if (o->duration < 0) o->duration = 10;
  if (o->warmup < 0) o->warmup = 2;
  if (sc == SC_CONNECTIONS) {
    o->rooms = (o->connections + o->participants - 1) / o->participants;
    o->senders = 0;
  }
  if (o->rooms < 1 || o->participants < 1 || o->rooms * o->participants > 1000000 ||
      o->senders < 0 || o->senders > o->participants || o->size < 64 || o->size > (16 << 20) ||
      !(o->rate > 0) || o->rate > 1e7 || !(o->duration > 0) || o->warmup < 0 ||
      !(o->step_secs > 0) || !(o->step_factor > 1) || o->grace < 0 || !(o->max_seconds > 0) ||
      o->inflight < 1 || o->max_out < 65536 || o->src_spread < 0 ||
      o->refine < 0 || o->refine > 10) {
    fprintf(stderr, "loadgen: option out of range\n");
    return -1;
  }
  return 0;
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static int setup(lg_t *lg) {
  lg_opts_t *o = &lg->o;
  char err[300];
  for (int i = 0; i < o->nurls; i++) {
    if (parse_url(o->urls[i], &lg->urls[i], err, sizeof err) != 0) {
      fprintf(stderr, "loadgen: %s\n", err);
      return -1;
    }
    if (!transport_for(lg->urls[i].scheme)) {
      fprintf(stderr, "loadgen: %s: scheme %s:// is not supported by this build "
                      "(ws://, and https:// when built with ngtcp2)\n",
              o->urls[i], lg->urls[i].scheme);
      return -1;
    }
  }
  lg->nrooms = (uint32_t)o->rooms;
  lg->per_room = (uint32_t)o->participants;
  lg->senders_per_room = (uint32_t)o->senders;
  lg->nconns = o->scenario == SC_CONNECTIONS ? (uint32_t)o->connections : lg->nrooms * lg->per_room;
  uint64_t seed = lg_now_ns() ^ ((uint64_t)getpid() << 20);
  lg->run_id = (uint32_t)(seed * 0x9e3779b97f4a7c15ull >> 32);
  /* WebTransport reads with recvmmsg, which gives each datagram a 64 KiB
   * slot of this buffer: 16 slots, 16 datagrams per system call. */
  lg->rbuf_len = 16 * 64 * 1024;
  lg->rbuf = malloc(lg->rbuf_len);
  lg->conns = calloc(lg->nconns, sizeof *lg->conns);
  lg->room_live = calloc(lg->nrooms, sizeof *lg->room_live);
  lg->senders = calloc((size_t)lg->nrooms * lg->senders_per_room + 1, sizeof *lg->senders);
  lg->hist = calloc(1, sizeof *lg->hist);
  lg->lag = calloc(1, sizeof *lg->lag);
  if (!lg->rbuf || !lg->conns || !lg->room_live || !lg->senders || !lg->hist || !lg->lag) {
    fprintf(stderr, "loadgen: out of memory\n");
    return -1;
  }
  for (uint32_t i = 0; i < lg->nconns; i++) {
    lg_conn_t *c = &lg->conns[i];
    c->lg = lg;
    c->idx = i;
    c->room = i / lg->per_room;
    c->slot = i % lg->per_room;
    c->url = &lg->urls[i % (uint32_t)o->nurls];
    c->tr = transport_for(c->url->scheme);
    c->sender = c->slot < lg->senders_per_room;
    char user[48];
    snprintf(user, sizeof user, "lg%08x-%u", lg->run_id, i);
    snprintf(c->path, sizeof c->path, "/lobby/%s/lg%08x-r%u", user, lg->run_id, c->room);
    if (lg->senders_per_room > 0) {
      c->win = calloc(lg->senders_per_room, sizeof *c->win);
      if (!c->win) { fprintf(stderr, "loadgen: out of memory\n"); return -1; }
    }
    if (c->sender) {
      lg_hdr_t h = {lg->run_id, i, c->room, 0, 0};
      if (lg_template_build(&c->tpl, (size_t)o->size, user, o->media_type, &h) != 0) {
        fprintf(stderr, "loadgen: out of memory\n");
        return -1;
      }
      lg->senders[lg->nsenders++] = c;
    }
  }
  return 0;
}

static void teardown(lg_t *lg) {
  for (uint32_t i = 0; lg->conns && i < lg->nconns; i++) {
    lg_conn_t *c = &lg->conns[i];
    if (c->win)
      for (uint32_t k = 0; k < lg->senders_per_room; k++) lg_seqwin_free(&c->win[k]);
    free(c->win);
    lg_template_free(&c->tpl);
  }
  free(lg->conns);
  free(lg->room_live);
  free(lg->senders);
  free(lg->hist);
  free(lg->lag);
  free(lg->rbuf);
  free(lg->rss.s);
}

int main(int argc, char **argv) {
  lg_t *lg = calloc(1, sizeof *lg);
  if (!lg) return 1;
  if (parse_opts(&lg->o, argc, argv) != 0) { free(lg); return 1; }
  raise_nofile();
  signal(SIGPIPE, SIG_IGN);
  if (uv_loop_init(&lg->loop) != 0 || setup(lg) != 0) {
    teardown(lg);
    free(lg);
    return 1;
  }
  if (lg->o.server_pid > 0) lg->rss_before = read_rss_kb(lg->o.server_pid);
  lg->t_start = lg->phase_t0 = lg_now_ns();
  lg->cur_rate = lg->o.rate;
  lg->exit_code = 0;
  uv_timer_init(&lg->loop, &lg->tick);
  uv_timer_init(&lg->loop, &lg->hard);
  lg->tick.data = lg->hard.data = lg;
  uv_timer_start(&lg->tick, on_tick, 1, 1);
  uv_timer_start(&lg->hard, on_hard, (uint64_t)(lg->o.max_seconds * 1000), 0);
  lg->phase = P_CONNECT;
  connect_more(lg);
  /* Runs until every connection and timer is closed after the report. */
  uv_run(&lg->loop, UV_RUN_DEFAULT);
  int rc = lg->exit_code;
  if (uv_loop_close(&lg->loop) != 0) fprintf(stderr, "loadgen: handles left open at exit\n");
  teardown(lg);
  free(lg);
  return rc;
}
