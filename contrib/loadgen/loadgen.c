/* loadgen: benchmark client for vcgate (and any relay with the same path
 * and forwarding rule).  Opens R rooms x P participants over one or more
 * URLs (round-robin, so one room spans several gateways), sends packets on
 * an open-loop schedule, checks that every packet reaches every other
 * member of its room exactly once and never its sender, and prints one
 * JSON line per result.
 *
 * Two shapes of traffic: `flat` (one packet size, one rate per sender, a
 * VIDEO or AUDIO MediaPacket) and `call` (what a videocall.rs participant
 * sends: audio, video with key frames, heartbeats, keyframe requests, key
 * exchange, RTT probes; shape.c), each counted per delivery class.  The
 * load is the per-sender rate (flat) or the number of rooms sending (call);
 * `saturate` searches it (search.c), `overload` runs fixed multiples of it
 * in phases and reports latency per window of send time.
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
#define LG_MAX_PHASES 8
#define LG_MAX_WINDOWS 2400
#define LG_SBUF (64 * 1024) /* the call shape builds each packet here */

enum { SC_MEETING, SC_FANOUT, SC_CONNECTIONS, SC_SATURATE, SC_OVERLOAD, SC_CALL, SC_N };
static const char *const sc_names[SC_N] = {"meeting", "fanout", "connections", "saturate",
                                           "overload", "call"};
enum { SH_FLAT, SH_CALL };

enum { P_CONNECT, P_SETTLE, P_RUN, P_GRACE, P_HOLD, P_STEP_RUN, P_STEP_DRAIN, P_GROW,
       P_OVERLOAD, P_DONE };

static const char *const cls_names[LG_NCLS] = {"audio", "video", "video_key", "control",
                                               "key_exchange"};

typedef struct {
  const char *urls[LG_MAX_URLS];
  int nurls;
  int scenario, shape;
  long rooms, participants, senders, connections;
  long size;
  double rate, duration, warmup, step_secs, step_factor, grace, max_seconds;
  double connect_timeout, p99_limit_ms, max_rate, min_rate, drain_max;
  long server_pid;
  long server_cpu; /* the CPU the server is pinned to, or -1 */
  int media_kind;  /* flat shape: LG_K_VIDEO or LG_K_AUDIO */
  int encrypted;   /* media sealed like E2EE ciphertext */
  long active;     /* call shape: rooms sending (saturate: the first step; overload: 1x) */
  double phase_secs[LG_MAX_PHASES], phase_mult[LG_MAX_PHASES];
  int nphases;
  double window_ms;
  long src_spread; /* connections per source address; 0: do not bind */
  long inflight;
  long max_out;
  long refine;     /* saturate: bisection steps after the first failing load */
  int quiet;
} lg_opts_t;

/* Counters of one run; steps and reports subtract snapshots.  Per class:
 * packets sent, deliveries expected (sent x other live members) and
 * unique deliveries. */
typedef struct {
  uint64_t sent, expected, delivered, dup, misrouted, foreign, congestion, control, overflow,
      skipped, rtt_echoes, rtt_forwarded;
  uint64_t c_sent[LG_NCLS], c_expected[LG_NCLS], c_delivered[LG_NCLS];
} lg_counts_t;

/* Latency of deliveries, overall and per class. */
typedef struct {
  lg_hist_t *all, *cls[LG_NCLS]; /* owned */
} lg_lat_t;

/* One overload phase: its schedule and what was sent in it (deliveries
 * are attributed by send time, so a packet sent at 2x that arrives during
 * the step-down still counts for the 2x phase). */
typedef struct {
  double secs, mult, load;
  uint64_t t0_ns, t1_ns;
  uint32_t win0, nwin;       /* its windows in lg->wins */
  lg_counts_t n;             /* sent / expected / delivered (c_* members) */
  lg_lat_t lat;
} lg_phase_t;

/* One window of --window-ms within an overload phase, by send time
 * (congestion notices: by receive time). */
typedef struct {
  uint64_t sent, expected, delivered, congestion;
  lg_hist_t *all, *audio, *video; /* owned, made at the first delivery */
} lg_win_t;

/* Machine and server CPU use over a measurement: tells whether the server,
 * the load generator or the hypervisor (steal) was the limit. */
#define LG_MAX_CPUS 16
typedef struct {
  int ncpu;
  unsigned long long busy[LG_MAX_CPUS], total[LG_MAX_CPUS], steal[LG_MAX_CPUS], irq[LG_MAX_CPUS];
  unsigned long long server_ticks;
  uint64_t t_ns;
} lg_cpu_t;

typedef struct {
  int ncpu;
  double busy[LG_MAX_CPUS], steal[LG_MAX_CPUS], irq[LG_MAX_CPUS];
  double server; /* < 0: unknown */
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
  uint32_t want_conns;   /* connections to open (the call search grows it) */
  uint32_t active_rooms; /* rooms whose senders send (flat: all) */
  uint32_t *room_live;
  lg_conn_t **senders;   /* in room order */
  uint32_t nsenders;
  uint32_t run_id;
  uint8_t *rbuf;
  size_t rbuf_len;
  uint8_t *pad;          /* LG_PAD_LEN random bytes of filler, owned */
  uint8_t *sbuf;         /* LG_SBUF bytes, owned: the call shape's packet */
  struct sockaddr_in bind_tmp;
  uv_timer_t tick, hard;
  int phase;
  uint64_t t_start, phase_t0, step_t0, send_end, warm_end;
  double cur_load;       /* flat: packets/s per sender; call: rooms sending */
  uint32_t next_connect, inflight, opened, failed, disconnected, open_now;
  lg_conn_t *dirty;
  lg_counts_t n, step_base;
  int measuring;
  uint64_t win_delivered, win_bytes;
  lg_lat_t lat;          /* over the measured window (or step) */
  lg_hist_t *lag, *rtt;
  double cpu_t0, wall_t0;
  long rss_before, rss_after;
  lg_cpu_t cpu0, cpu1; /* at the start / end of the measured window */
  lg_cpu_out_t cpu_out, best_cpu;
  lg_rss_trend_t rss;
  double cpu_t1, wall_t1;
  int aborted, exit_code;
  /* saturate */
  int step;
  lg_search_t search;
  double best_msgs, best_p99, best_cls_p99[LG_NCLS], best_lg_cpu;
  const char *fail_reason;
  const char *stop_reason;
  /* overload */
  lg_phase_t phases[LG_MAX_PHASES];
  int nphases, ophase;
  lg_win_t *wins;        /* owned, nwins: the phases' windows, then the grace's */
  uint32_t nwins;
  uint64_t win_ns, run_t0, last_rx_ns;
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
      c->irq[c->ncpu] = v[5] + v[6]; /* irq + softirq: not charged to any process */
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
  fprintf(f, "],\"%scpu_irq_pct\":[", prefix);
  for (int i = 0; i < o->ncpu; i++) fprintf(f, "%s%.1f", i ? "," : "", o->irq[i]);
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
    o->irq[i] = dt ? 100.0 * (double)(now.irq[i] - lg->cpu0.irq[i]) / (double)dt : 0.0;
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
  while ((lg->phase == P_CONNECT || lg->phase == P_GROW) && lg->next_connect < lg->want_conns &&
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

/* ------------------------------------------------------------ accounting */

/* The classes a kind counts in (a key frame: video and video_key). */
static int kind_classes(int kind, int out[2]) {
  int k = lg_kind_class(kind), n = 0;
  if (k < 0) return 0;
  if (k == LG_CLS_VIDEO_KEY) out[n++] = LG_CLS_VIDEO;
  out[n++] = k;
  return n;
}

static lg_hist_t *hist_new(void) { return calloc(1, sizeof(lg_hist_t)); }

static int lat_init(lg_lat_t *l) {
  l->all = hist_new();
  for (int k = 0; k < LG_NCLS; k++) l->cls[k] = hist_new();
  if (!l->all) return UV_ENOMEM;
  for (int k = 0; k < LG_NCLS; k++)
    if (!l->cls[k]) return UV_ENOMEM;
  return 0;
}

static void lat_reset(lg_lat_t *l) {
  memset(l->all, 0, sizeof *l->all);
  for (int k = 0; k < LG_NCLS; k++) memset(l->cls[k], 0, sizeof *l->cls[k]);
}

static void lat_free(lg_lat_t *l) {
  free(l->all);
  for (int k = 0; k < LG_NCLS; k++) free(l->cls[k]);
  memset(l, 0, sizeof *l);
}

static void lat_add(lg_lat_t *l, const int *cls, int ncls, uint64_t ns) {
  lg_hist_add(l->all, ns);
  for (int i = 0; i < ncls; i++) lg_hist_add(l->cls[cls[i]], ns);
}

/* The overload phase a send time belongs to, and its window (by send time). */
static int phase_of(const lg_t *lg, uint64_t t) {
  int p = 0;
  while (p + 1 < lg->nphases && t >= lg->phases[p + 1].t0_ns) p++;
  return p;
}

static uint32_t win_of(const lg_t *lg, int p, uint64_t t) {
  const lg_phase_t *ph = &lg->phases[p];
  uint64_t i = t > ph->t0_ns ? (t - ph->t0_ns) / lg->win_ns : 0;
  return ph->win0 + (uint32_t)(i < ph->nwin ? i : ph->nwin - 1);
}

/* A window by receive time, the grace period's windows included. */
static lg_win_t *win_at(lg_t *lg, uint64_t t) {
  if (!lg->wins || t < lg->run_t0) return NULL;
  uint64_t i = (t - lg->run_t0) / lg->win_ns;
  return &lg->wins[i < lg->nwins ? i : lg->nwins - 1];
}

static void win_delivery(lg_t *lg, const lg_hdr_t *h, const int *cls, int ncls, uint64_t ns) {
  int p = phase_of(lg, h->send_ns);
  lg_phase_t *ph = &lg->phases[p];
  for (int i = 0; i < ncls; i++) ph->n.c_delivered[cls[i]]++;
  ph->n.delivered++;
  lat_add(&ph->lat, cls, ncls, ns);
  lg_win_t *w = &lg->wins[win_of(lg, p, h->send_ns)];
  w->delivered++;
  if (!w->all) {
    w->all = hist_new();
    w->audio = hist_new();
    w->video = hist_new();
    if (!w->all || !w->audio || !w->video) {
      free(w->all); free(w->audio); free(w->video);
      w->all = w->audio = w->video = NULL;
      return; /* counted, not timed: out of memory */
    }
  }
  lg_hist_add(w->all, ns);
  if (cls[0] == LG_CLS_AUDIO) lg_hist_add(w->audio, ns);
  if (cls[0] == LG_CLS_VIDEO) lg_hist_add(w->video, ns);
}

/* ------------------------------------------------------------ receiving */

void lg_conn_message(lg_conn_t *c, const uint8_t *msg, size_t len) {
  lg_t *lg = c->lg;
  lg_hdr_t h;
  switch (lg_wire_classify(msg, len, lg->run_id, &h)) {
  case LG_RX_CONTROL: lg->n.control++; return;
  case LG_RX_CONGESTION: {
    lg->n.congestion++;
    lg_win_t *w = lg->phase == P_OVERLOAD || lg->phase == P_GRACE ? win_at(lg, lg_now_ns()) : NULL;
    if (w) w->congestion++;
    return;
  }
  case LG_RX_FOREIGN: lg->n.foreign++; return;
  default: break;
  }
  if (h.sender >= lg->nconns || h.room != c->room || lg->conns[h.sender].room != h.room ||
      !lg->conns[h.sender].sender || !c->win) {
    lg->n.misrouted++;
    return;
  }
  uint64_t now = lg_now_ns();
  if (h.kind == LG_K_RTT) {
    /* vcgate echoes RTT probes to their sender; a relay that does not
     * forwards them like any packet.  Neither is a delivery. */
    if (h.sender == c->idx) {
      lg->n.rtt_echoes++;
      if (lg->measuring) lg_hist_add(lg->rtt, now > h.send_ns ? now - h.send_ns : 0);
    } else {
      lg->n.rtt_forwarded++;
    }
    return;
  }
  if (h.sender == c->idx) {
    lg->n.misrouted++;
    return;
  }
  int rc = lg_seqwin_add(&c->win[lg->conns[h.sender].slot], h.seq);
  if (rc != 0) {
    lg->n.dup++;
    return;
  }
  int cls[2], ncls = kind_classes((int)h.kind, cls);
  lg->n.delivered++;
  for (int i = 0; i < ncls; i++) lg->n.c_delivered[cls[i]]++;
  lg->last_rx_ns = now;
  uint64_t ns = now > h.send_ns ? now - h.send_ns : 0;
  if (lg->wins && h.send_ns >= lg->run_t0) win_delivery(lg, &h, cls, ncls, ns);
  if (lg->measuring) {
    lat_add(&lg->lat, cls, ncls, ns);
    lg->win_delivered++;
    lg->win_bytes += len;
  }
}

/* ------------------------------------------------------------ sending */

/* Start a step (or overload phase) at load (flat: packets/s per sender;
 * call: rooms sending) from t0: every stream's schedule restarts, phase-
 * shifted between senders so that they do not send in lockstep. */
static void set_load(lg_t *lg, double load, uint64_t t0) {
  lg->cur_load = load;
  lg->step_t0 = t0;
  if (lg->o.shape == SH_CALL) {
    lg->active_rooms = (uint32_t)load < lg->nrooms ? (uint32_t)load : lg->nrooms;
  } else {
    lg->active_rooms = lg->nrooms;
  }
  for (uint32_t k = 0; k < lg->nsenders; k++) {
    lg_conn_t *c = lg->senders[k];
    for (int i = 0; i < c->nst; i++) {
      lg_stream_t *s = &c->st[i];
      if (s->def < 0) s->rate = load;
      double gap = 1e9 / s->rate;
      /* Flat: evenly spread; call: a per-stream golden-ratio spread. */
      double frac = s->def < 0 ? (double)k / lg->nsenders
                               : fmod((k + 1) * 0.6180339887 + i * 0.377, 1.0);
      s->phase_ns = (uint64_t)(gap * frac);
      s->step_sent = 0;
      s->next_ns = t0 + s->phase_ns;
    }
  }
}

/* Account one sent packet of kind to sender c's room. */
static void count_sent(lg_t *lg, lg_conn_t *c, int kind, uint64_t now) {
  uint32_t others = lg->room_live[c->room] - 1;
  int cls[2], ncls = kind_classes(kind, cls);
  lg->n.sent++;
  lg->n.expected += others;
  for (int i = 0; i < ncls; i++) {
    lg->n.c_sent[cls[i]]++;
    lg->n.c_expected[cls[i]] += others;
  }
  if (lg->phase == P_OVERLOAD) {
    /* By send time, as deliveries are (the clock may cross into the next
     * phase during one tick's sending). */
    int p = phase_of(lg, now);
    lg_phase_t *ph = &lg->phases[p];
    lg_win_t *w = &lg->wins[win_of(lg, p, now)];
    ph->n.sent++;
    ph->n.expected += others;
    for (int i = 0; i < ncls; i++) {
      ph->n.c_sent[cls[i]]++;
      ph->n.c_expected[cls[i]] += others;
    }
    w->sent++;
    w->expected += others;
  }
}

/* Send packet number s->step_sent of stream s of c, stamped now. */
static void send_one(lg_t *lg, lg_conn_t *c, lg_stream_t *s, uint64_t now) {
  const uint8_t *buf;
  size_t len;
  int kind;
  if (s->def < 0) {
    kind = c->tpl.h.kind;
    lg_template_stamp(&c->tpl, c->seq, now);
    buf = c->tpl.buf;
    len = c->tpl.len;
  } else {
    size_t size, off;
    lg_call_packet(s->def, c->idx, s->total, &kind, &size);
    lg_hdr_t h = {lg->run_id, c->idx, c->room, (uint32_t)kind,
                  kind == LG_K_RTT ? c->rtt_seq : c->seq, now};
    lg_pkt_t p = {size, c->user, lg->o.encrypted, now / 1e6, lg->pad,
                  (uint64_t)c->idx * 7919u + s->total * 104729u};
    len = lg_packet_build(lg->sbuf, LG_SBUF, &p, &h, &off);
    buf = lg->sbuf;
  }
  if (len == 0 || c->tr->send(c, buf, len) != 0) {
    lg->n.overflow++;
    return;
  }
  s->total++;
  if (kind == LG_K_RTT) {
    c->rtt_seq++;
    return; /* a probe, not a delivery to count */
  }
  c->seq++;
  count_sent(lg, c, kind, now);
}

static void send_due(lg_t *lg) {
  uint32_t nactive = lg->active_rooms * lg->senders_per_room;
  if (nactive > lg->nsenders) nactive = lg->nsenders;
  for (uint32_t k = 0; k < nactive; k++) {
    lg_conn_t *c = lg->senders[k];
    if (c->state != LG_C_OPEN) continue;
    uint64_t now = lg_now_ns();
    int sent = 0;
    for (int i = 0; i < c->nst; i++) {
      lg_stream_t *s = &c->st[i];
      if (now < s->next_ns) continue;
      double gap = 1e9 / s->rate;
      uint64_t due = (uint64_t)((double)(now - lg->step_t0 - s->phase_ns) * s->rate / 1e9) + 1;
      if (due <= s->step_sent) continue;
      uint64_t nsend = due - s->step_sent;
      if (nsend > LG_MAX_BURST) {
        lg->n.skipped += nsend - LG_MAX_BURST;
        s->step_sent += nsend - LG_MAX_BURST;
        nsend = LG_MAX_BURST;
      }
      for (uint64_t j = 0; j < nsend; j++) {
        uint64_t sched = lg->step_t0 + s->phase_ns + (uint64_t)(gap * (double)s->step_sent);
        s->step_sent++;
        if (lg->measuring) lg_hist_add(lg->lag, now > sched ? now - sched : 0);
        send_one(lg, c, s, now);
      }
      s->next_ns = lg->step_t0 + s->phase_ns + (uint64_t)(gap * (double)s->step_sent);
      sent = 1;
    }
    if (sent && !c->dirty) {
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

static uint64_t sub0(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

static void print_classes(FILE *f, const lg_counts_t *n, const lg_lat_t *l) {
  fprintf(f, ",\"classes\":{");
  int first = 1;
  for (int k = 0; k < LG_NCLS; k++) {
    if (!n->c_sent[k] && !n->c_delivered[k]) continue;
    const lg_hist_t *h = l->cls[k];
    fprintf(f,
            "%s\"%s\":{\"sent\":%" PRIu64 ",\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64
            ",\"lost\":%" PRIu64 ",\"delivered_fraction\":%.6f,\"p50\":%.3f,\"p99\":%.3f,"
            "\"max\":%.3f,\"samples\":%" PRIu64 "}",
            first ? "" : ",", cls_names[k], n->c_sent[k], n->c_expected[k], n->c_delivered[k],
            sub0(n->c_expected[k], n->c_delivered[k]),
            n->c_expected[k] ? (double)n->c_delivered[k] / (double)n->c_expected[k] : 1.0,
            lg_hist_pct(h, 50) / 1e6, lg_hist_pct(h, 99) / 1e6, h->max / 1e6, h->n);
    first = 0;
  }
  fprintf(f, "}");
}

/* loadgen's own CPU use over the measured window: near 100%, a figure is
 * loadgen's limit rather than the server's. */
static double loadgen_cpu_pct(const lg_t *lg) {
  double cpu = (lg->wall_t1 ? lg->cpu_t1 : cpu_seconds()) - lg->cpu_t0;
  double wall = (lg->wall_t1 ? lg->wall_t1 : lg_now_ns() / 1e9) - lg->wall_t0;
  return wall > 0 ? 100.0 * cpu / wall : 0.0;
}

static void print_common(lg_t *lg, FILE *f, const lg_counts_t *n, double secs) {
  uint64_t lost = sub0(n->expected, n->delivered);
  fprintf(f,
          "\"transport\":\"%s\",\"shape\":\"%s\",\"encrypted\":%s,\"urls\":%d,\"rooms\":%u,"
          "\"participants\":%u,\"senders_per_room\":%u,",
          lg->urls[0].scheme, lg->o.shape == SH_CALL ? "call" : "flat",
          lg->o.encrypted ? "true" : "false", lg->o.nurls, lg->nrooms, lg->per_room,
          lg->senders_per_room);
  if (lg->o.shape == SH_CALL)
    fprintf(f, "\"rooms_active\":%u,", lg->active_rooms);
  else
    fprintf(f, "\"size\":%zu,\"rate\":%.1f,", lg->nsenders ? lg->senders[0]->tpl.len : (size_t)0,
            lg->cur_load);
  fprintf(f,
          "\"connected\":%u,\"failed\":%u,\"disconnected\":%u,"
          "\"sent\":%" PRIu64 ",\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64
          ",\"lost\":%" PRIu64 ",\"duplicated\":%" PRIu64 ",\"misrouted\":%" PRIu64
          ",\"foreign\":%" PRIu64 ",\"congestion\":%" PRIu64 ",\"control\":%" PRIu64
          ",\"send_overflow\":%" PRIu64 ",\"send_skipped\":%" PRIu64 ",",
          lg->opened, lg->failed, lg->disconnected, n->sent, n->expected, n->delivered, lost,
          n->dup, n->misrouted, n->foreign, n->congestion, n->control, n->overflow, n->skipped);
  const lg_hist_t *h = lg->lat.all;
  fprintf(f,
          "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f,"
          "\"samples\":%" PRIu64 "},\"send_lag_ms\":{\"p99\":%.3f,\"max\":%.3f},",
          lg_hist_pct(h, 50) / 1e6, lg_hist_pct(h, 90) / 1e6, lg_hist_pct(h, 99) / 1e6,
          lg_hist_pct(h, 99.9) / 1e6, h->max / 1e6, h->n, lg_hist_pct(lg->lag, 99) / 1e6,
          lg->lag->max / 1e6);
  fprintf(f,
          "\"delivered_msgs_per_s\":%.0f,\"delivered_MB_per_s\":%.2f,\"duration\":%.2f,"
          "\"loadgen_cpu_pct\":%.1f",
          secs > 0 ? lg->win_delivered / secs : 0.0, secs > 0 ? lg->win_bytes / secs / 1e6 : 0.0,
          secs, loadgen_cpu_pct(lg));
  cpu_print(lg, f);
  if (lg->o.shape == SH_CALL || lg->o.media_kind != LG_K_VIDEO) print_classes(f, n, &lg->lat);
  if (n->rtt_echoes || n->rtt_forwarded)
    fprintf(f, ",\"rtt_echoes\":%" PRIu64 ",\"rtt_forwarded\":%" PRIu64 ",\"rtt_ms\":{\"p50\":%.3f,"
            "\"p99\":%.3f,\"samples\":%" PRIu64 "}", n->rtt_echoes, n->rtt_forwarded,
            lg_hist_pct(lg->rtt, 50) / 1e6, lg_hist_pct(lg->rtt, 99) / 1e6, lg->rtt->n);
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
  r.rtt_echoes = a->rtt_echoes - b->rtt_echoes;
  r.rtt_forwarded = a->rtt_forwarded - b->rtt_forwarded;
  for (int k = 0; k < LG_NCLS; k++) {
    r.c_sent[k] = a->c_sent[k] - b->c_sent[k];
    r.c_expected[k] = a->c_expected[k] - b->c_expected[k];
    r.c_delivered[k] = a->c_delivered[k] - b->c_delivered[k];
  }
  return r;
}

static void print_rss(lg_t *lg) {
  const lg_rss_trend_t *r = &lg->rss;
  if (r->n < 2) return;
  size_t imax = 0; /* the first sample at the maximum */
  for (size_t i = 1; i < r->n; i++)
    if (r->s[i].kb > r->s[imax].kb) imax = i;
  printf(",\"rss_samples\":%zu,\"rss_kb_first\":%ld,\"rss_kb_last\":%ld,"
         "\"rss_kb_max\":%ld,\"rss_kb_max_at_s\":%.0f,\"rss_slope_kb_per_min\":%.1f",
         r->n, r->s[0].kb, r->s[r->n - 1].kb, r->s[imax].kb, r->s[imax].min * 60,
         rss_slope(r, 0));
  if (r->n >= 4) printf(",\"rss_slope_second_half_kb_per_min\":%.1f", rss_slope(r, r->n / 2));
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
  print_rss(lg);
  printf(",\"aborted\":%s}\n", lg->aborted ? "true" : "false");
  fflush(stdout);
  const lg_counts_t *n = &lg->n;
  if (lg->aborted) lg->exit_code = 1;
  else if (n->expected != n->delivered || n->dup || n->misrouted || lg->failed) lg->exit_code = 3;
}

/* p99 (ms) of a window histogram, -1 when it has no sample. */
static double win_p(const lg_hist_t *h, double pct) {
  return h && h->n ? lg_hist_pct(h, pct) / 1e6 : -1.0;
}

/* The recovery time (ms) in phase p for one histogram of its windows
 * (0: all, 1: audio, 2: video), or -1. */
static double phase_recovery(const lg_t *lg, int p, int which) {
  const lg_phase_t *ph = &lg->phases[p];
  double p99[LG_MAX_WINDOWS];
  uint64_t n[LG_MAX_WINDOWS];
  for (uint32_t i = 0; i < ph->nwin; i++) {
    const lg_win_t *w = &lg->wins[ph->win0 + i];
    const lg_hist_t *h = which == 0 ? w->all : which == 1 ? w->audio : w->video;
    n[i] = h ? h->n : 0;
    p99[i] = h && h->n ? lg_hist_pct(h, 99) / 1e6 : 0;
  }
  return lg_recovery_ms(p99, n, (int)ph->nwin, lg->o.window_ms, lg->o.p99_limit_ms);
}

static void report_overload(lg_t *lg) {
  printf("{\"scenario\":\"overload\",");
  double secs = 0;
  for (int p = 0; p < lg->nphases; p++) secs += lg->phases[p].secs;
  print_common(lg, stdout, &lg->n, secs);
  printf(",\"window_ms\":%.0f,\"phases\":[", lg->o.window_ms);
  for (int p = 0; p < lg->nphases; p++) {
    const lg_phase_t *ph = &lg->phases[p];
    const lg_hist_t *h = ph->lat.all;
    printf("%s{\"secs\":%.2f,\"mult\":%.3f,\"%s\":%.1f,\"sent\":%" PRIu64 ",\"expected\":%" PRIu64
           ",\"delivered\":%" PRIu64 ",\"offered_msgs_per_s\":%.0f,\"latency_ms\":{\"p50\":%.3f,"
           "\"p99\":%.3f,\"max\":%.3f}",
           p ? "," : "", ph->secs, ph->mult, lg->o.shape == SH_CALL ? "rooms_active" : "rate",
           ph->load, ph->n.sent, ph->n.expected, ph->n.delivered,
           ph->secs > 0 ? ph->n.expected / ph->secs : 0.0, lg_hist_pct(h, 50) / 1e6,
           lg_hist_pct(h, 99) / 1e6, h->max / 1e6);
    print_classes(stdout, &ph->n, &ph->lat);
    printf(",\"recovery_ms\":%.0f,\"recovery_ms_audio\":%.0f,\"recovery_ms_video\":%.0f}",
           phase_recovery(lg, p, 0), phase_recovery(lg, p, 1), phase_recovery(lg, p, 2));
  }
  printf("],\"windows\":[");
  const lg_phase_t *last = &lg->phases[lg->nphases - 1];
  uint32_t gwin0 = last->win0 + last->nwin; /* the grace period's windows follow */
  uint32_t nshow = gwin0; /* and are shown while congestion notices came */
  for (uint32_t i = gwin0; i < lg->nwins; i++)
    if (lg->wins[i].congestion) nshow = i + 1;
  for (uint32_t i = 0; i < nshow; i++) {
    const lg_win_t *w = &lg->wins[i];
    int p = 0;
    while (p + 1 < lg->nphases && i >= lg->phases[p + 1].win0) p++;
    int grace = i >= gwin0;
    /* Start of the window, seconds from the first phase's start. */
    double t = grace ? (last->t1_ns - lg->run_t0) / 1e9 + (i - gwin0) * lg->o.window_ms / 1e3
                     : (lg->phases[p].t0_ns - lg->run_t0) / 1e9 +
                           (i - lg->phases[p].win0) * lg->o.window_ms / 1e3;
    printf("%s{\"t\":%.3f,\"phase\":%d,\"sent\":%" PRIu64 ",\"expected\":%" PRIu64
           ",\"delivered\":%" PRIu64 ",\"p50\":%.3f,\"p99\":%.3f,\"audio_p99\":%.3f,"
           "\"video_p99\":%.3f,\"congestion\":%" PRIu64 "}",
           i ? "," : "", t, grace ? -1 : p, w->sent, w->expected,
           w->delivered, win_p(w->all, 50), win_p(w->all, 99), win_p(w->audio, 99),
           win_p(w->video, 99), w->congestion);
  }
  printf("],\"recovery_ms\":%.0f,\"drain_ms\":%.1f", phase_recovery(lg, lg->nphases - 1, 0),
         lg->last_rx_ns > last->t1_ns ? (lg->last_rx_ns - last->t1_ns) / 1e6 : 0.0);
  print_rss(lg);
  printf(",\"aborted\":%s}\n", lg->aborted ? "true" : "false");
  fflush(stdout);
  /* Loss is what this scenario measures, not an error. */
  if (lg->aborted) lg->exit_code = 1;
  else if (lg->n.dup || lg->n.misrouted || lg->failed || lg->disconnected) lg->exit_code = 3;
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

static void window_start(lg_t *lg, uint64_t now) {
  lg->step_base = lg->n;
  lat_reset(&lg->lat);
  memset(lg->lag, 0, sizeof *lg->lag);
  memset(lg->rtt, 0, sizeof *lg->rtt);
  lg->win_delivered = lg->win_bytes = 0;
  lg->cpu_t0 = cpu_seconds();
  lg->wall_t0 = now / 1e9;
  cpu_sample(&lg->cpu0, lg->o.server_pid);
  lg->measuring = 1;
}

/* One saturate step at load, from now. */
static void start_step(lg_t *lg, double load, uint64_t now) {
  window_start(lg, now);
  lg->phase = P_STEP_RUN;
  set_load(lg, load, now);
  lg->send_end = now + (uint64_t)(lg->o.step_secs * 1e9);
}

/* The overload phases back to back from now; windows of send time. */
static void start_overload(lg_t *lg, uint64_t now) {
  window_start(lg, now);
  lg->run_t0 = now;
  uint64_t t = now;
  for (int p = 0; p < lg->nphases; p++) {
    lg_phase_t *ph = &lg->phases[p];
    ph->t0_ns = t;
    t += (uint64_t)(ph->secs * 1e9);
    ph->t1_ns = t;
  }
  lg->ophase = 0;
  lg->phase = P_OVERLOAD;
  set_load(lg, lg->phases[0].load, now);
  lg->send_end = t;
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
    lg->step = 0;
    start_step(lg, lg->search.cur, now);
    return;
  case SC_OVERLOAD:
    start_overload(lg, now);
    return;
  default:
    lg->phase = P_RUN;
    set_load(lg, lg->cur_load, now);
    lg->warm_end = now + (uint64_t)(lg->o.warmup * 1e9);
    lg->send_end = lg->warm_end + (uint64_t)(lg->o.duration * 1e9);
    lg->measuring = lg->o.warmup <= 0;
    return;
  }
}

static void print_final(lg_t *lg, const char *stop, int steps) {
  int call = lg->o.shape == SH_CALL;
  printf("{\"scenario\":\"saturate\",\"final\":true,\"transport\":\"%s\",\"shape\":\"%s\","
         "\"encrypted\":%s,\"rooms\":%u,\"participants\":%u,\"senders_per_room\":%u,",
         lg->urls[0].scheme, call ? "call" : "flat", lg->o.encrypted ? "true" : "false",
         lg->nrooms, lg->per_room, lg->senders_per_room);
  if (call)
    printf("\"best_rooms\":%.0f,\"best_participants\":%.0f,", lg->search.best,
           lg->search.best * lg->per_room);
  else
    printf("\"size\":%zu,\"best_rate\":%.1f,", lg->nsenders ? lg->senders[0]->tpl.len : (size_t)0,
           lg->search.best);
  printf("\"steps\":%d,\"stop_reason\":\"%s\",\"best_delivered_msgs_per_s\":%.0f,"
         "\"best_p99_ms\":%.3f", steps, stop, lg->best_msgs, lg->best_p99);
  if (call && lg->search.best > 0) {
    printf(",\"best_p99_ms_by_class\":{");
    for (int k = 0; k < LG_NCLS; k++)
      printf("%s\"%s\":%.3f", k ? "," : "", cls_names[k], lg->best_cls_p99[k]);
    printf("}");
  }
  if (lg->search.best > 0) {
    printf(",\"best_loadgen_cpu_pct\":%.1f", lg->best_lg_cpu);
    cpu_out_print(&lg->best_cpu, stdout, "best_");
  }
  if (lg->aborted) printf(",\"aborted\":true");
  printf("}\n");
  fflush(stdout);
}

static void saturate_step_done(lg_t *lg, uint64_t now) {
  lg_counts_t d = counts_sub(&lg->n, &lg->step_base);
  uint64_t lost = sub0(d.expected, d.delivered);
  double p99 = lg_hist_pct(lg->lat.all, 99) / 1e6;
  double msgs = lg->win_delivered / lg->o.step_secs;
  /* The call shape passes only when audio and video each meet the limit
   * (the overall p99 is mostly audio, the most numerous packets). */
  int cls_ok = 1;
  const int judged[] = {LG_CLS_AUDIO, LG_CLS_VIDEO};
  for (int i = 0; i < 2; i++)
    if (lg->lat.cls[judged[i]]->n && lg_hist_pct(lg->lat.cls[judged[i]], 99) / 1e6 > lg->o.p99_limit_ms)
      cls_ok = 0;
  int errors = lg->disconnected || d.dup || d.misrouted || lg->failed;
  int ok = lost == 0 && !errors && d.overflow == 0 && d.skipped == 0 &&
           p99 <= lg->o.p99_limit_ms && cls_ok && lg->win_delivered > 0;
  /* A failing step during which loadgen was late by half the limit or more
   * (its CPU taken by another process, or loadgen at its own limit) says
   * little about the relay: it is run again (LG_STEP_INVALID). */
  int late = !ok && lg_hist_pct(lg->lag, 99) / 1e6 >= lg->o.p99_limit_ms / 2;
  printf("{\"scenario\":\"saturate\",\"step\":%d,", lg->step);
  print_common(lg, stdout, &d, lg->o.step_secs);
  /* Likewise when other processes took a quarter of the server's CPU
   * (--server-cpu: busy minus interrupts minus the server). */
  const lg_cpu_out_t *co = &lg->cpu_out;
  long sc = lg->o.server_cpu;
  int shared = !ok && sc >= 0 && sc < co->ncpu && co->server >= 0 &&
               co->busy[sc] - co->irq[sc] - co->server >= 25;
  printf(",\"ok\":%s,\"loadgen_late\":%s,\"server_cpu_shared\":%s}\n", ok ? "true" : "false",
         late ? "true" : "false", shared ? "true" : "false");
  fflush(stdout);
  if (ok && lg->search.cur >= lg->search.best) {
    lg->best_cpu = lg->cpu_out;
    lg->best_msgs = msgs;
    lg->best_p99 = p99;
    lg->best_lg_cpu = loadgen_cpu_pct(lg);
    for (int k = 0; k < LG_NCLS; k++) lg->best_cls_p99[k] = lg_hist_pct(lg->lat.cls[k], 99) / 1e6;
  }
  if (!ok && !errors)
    lg->fail_reason = lost || d.overflow || d.skipped ? "loss"
                      : lg->win_delivered == 0      ? "nothing delivered"
                                                    : "p99 above limit";
  const char *why = NULL, *stop = NULL;
  /* Far over the limit, or more than 1% lost: an overload, not a stall;
   * no retry (it would only feed the relay's backlog). */
  int hard = p99 > 10 * lg->o.p99_limit_ms || lost * 100 > d.expected;
  int verdict = ok ? LG_STEP_PASS : errors ? LG_STEP_FATAL : late || shared ? LG_STEP_INVALID
                : hard ? LG_STEP_FAIL_HARD : LG_STEP_FAIL;
  double next = lg_search_next(&lg->search, verdict, &why);
  if (next <= 0) {
    stop = errors ? (lg->disconnected ? "disconnected" : lg->failed ? "connect failed" : "errors")
           : strcmp(why, "bracketed") == 0 && lg->fail_reason ? lg->fail_reason
                                                               : why;
  } else if (lg->step + 1 >= LG_MAX_STEPS) {
    stop = "max steps";
  } else if ((now - lg->t_start) / 1e9 + lg->o.step_secs + lg->o.grace + 1 > lg->o.max_seconds) {
    stop = "max-seconds";
  }
  if (stop) {
    lg->stop_reason = stop;
    print_final(lg, stop, lg->step + 1);
    lg->exit_code = lg->search.best > 0 ? 0 : 3;
    finish(lg);
    return;
  }
  lg->step++;
  uint32_t want = lg->o.shape == SH_CALL ? (uint32_t)next * lg->per_room : lg->nconns;
  if (want > lg->want_conns) {
    /* More rooms than are connected: open them, then run the step. */
    lg->want_conns = want < lg->nconns ? want : lg->nconns;
    lg->measuring = 0;
    lg->phase = P_GROW;
    lg->phase_t0 = now;
    connect_more(lg);
    return;
  }
  start_step(lg, next, now);
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

/* Connecting (or growing): done when every wanted connection opened or
 * failed, or at the timeout, which counts stragglers as failed. */
static int connect_done(lg_t *lg, uint64_t now) {
  if (lg->next_connect >= lg->want_conns && lg->inflight == 0) return 1;
  if (now - lg->phase_t0 <= (uint64_t)(lg->o.connect_timeout * 1e9)) return 0;
  for (uint32_t i = 0; i < lg->next_connect; i++)
    if (lg->conns[i].state == LG_C_CONNECTING) lg->conns[i].tr->close(&lg->conns[i]);
  lg->next_connect = lg->want_conns;
  return 1;
}

/* Bytes loadgen's own senders still hold. */
static size_t unsent(lg_t *lg) {
  size_t n = 0;
  for (uint32_t k = 0; k < lg->nsenders; k++) {
    lg_conn_t *c = lg->senders[k];
    if (c->state == LG_C_OPEN && c->tr->pending) n += c->tr->pending(c);
  }
  return n;
}

/* Send what is due until send_end; then the measured window ends and
 * phase `next` (a drain) begins. */
static void send_until_end(lg_t *lg, uint64_t now, int next) {
  if (now < lg->send_end) {
    send_due(lg);
    return;
  }
  measure_end(lg);
  lg->phase = next;
  lg->phase_t0 = now;
}

static void on_tick(uv_timer_t *t) {
  lg_t *lg = t->data;
  uint64_t now = lg_now_ns();
  if (lg->measuring) rss_sample(lg, now);
  switch (lg->phase) {
  case P_CONNECT:
  case P_GROW:
    if (connect_done(lg, now)) {
      if (!lg->o.quiet)
        fprintf(stderr, "loadgen: %u connected, %u failed in %.2f s\n", lg->opened, lg->failed,
                (now - lg->t_start) / 1e9);
      lg->phase = P_SETTLE;
      lg->phase_t0 = now;
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
      if (lg->o.scenario == SC_SATURATE && lg->step > 0) { /* after growing */
        start_step(lg, lg->search.cur, now);
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
    if (now >= lg->send_end) lg->measuring = 0;
    send_until_end(lg, now, P_GRACE);
    return;
  case P_OVERLOAD:
    while (now >= lg->phases[lg->ophase].t1_ns && lg->ophase + 1 < lg->nphases) {
      lg->ophase++;
      set_load(lg, lg->phases[lg->ophase].load, lg->phases[lg->ophase].t0_ns);
    }
    /* Late deliveries still count (measuring stays on); the CPU window
     * ends with the sending. */
    send_until_end(lg, now, P_GRACE);
    return;
  case P_GRACE:
  case P_STEP_DRAIN:
    /* Wait for stragglers: until loadgen's own queue is empty and either
     * everything expected arrived or nothing arrived for --grace; at most
     * --drain-max after the sending ended.  A relay (or loadgen) that
     * queued seconds of backlog delivers it before the next step starts,
     * so that step measures its own load. */
    if (((lg->n.delivered + lg->n.dup >= lg->n.expected ||
          now - (lg->last_rx_ns > lg->phase_t0 ? lg->last_rx_ns : lg->phase_t0) >=
              (uint64_t)(lg->o.grace * 1e9)) &&
         !unsent(lg)) ||
        now - lg->phase_t0 >= (uint64_t)(lg->o.drain_max * 1e9)) {
      if (lg->phase == P_GRACE) {
        if (lg->o.scenario == SC_OVERLOAD) report_overload(lg);
        else report_run(lg);
        finish(lg);
      } else {
        lg->measuring = 0;
        saturate_step_done(lg, now);
      }
    }
    return;
  case P_STEP_RUN:
    send_until_end(lg, now, P_STEP_DRAIN);
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
  if (lg->o.scenario == SC_SATURATE && lg->search.best > 0) {
    print_final(lg, "max-seconds", lg->step + 1);
    lg->exit_code = 1;
  } else if (lg->o.scenario == SC_OVERLOAD && lg->phase == P_GRACE) {
    report_overload(lg);
  } else {
    report_run(lg);
  }
  finish(lg);
}

/* ------------------------------------------------------------ setup */

static void usage(FILE *f) {
  fprintf(f,
    "usage: loadgen --url ws://HOST:PORT [--url ...] [options]\n"
    "  --scenario S        meeting (default) | fanout | connections | saturate | overload\n"
    "                      | call (= meeting with --shape call)\n"
    "  --shape flat|call   flat: one --size and --rate per sender (default); call: what a\n"
    "                      videocall.rs participant sends (audio 50/s 160 B, video 30/s\n"
    "                      1-3 KB with a 15 KB key frame every 2 s, heartbeat 1/s,\n"
    "                      keyframe request every 4 s, key exchange every 2 s, RTT probe 1/s)\n"
    "  --rooms R           rooms (meeting 20, fanout 1; saturate --shape call: the most\n"
    "                      rooms tried, 1000; overload --shape call: active x largest mult)\n"
    "  --participants P    participants per room (meeting 5, fanout 200, connections 10)\n"
    "  --senders S         senders per room (meeting: all, fanout: 1; call: all)\n"
    "  --active N          call shape: rooms that send (default all; saturate: the first\n"
    "                      step, default 4; overload: the 1x load, required)\n"
    "  --connections N     connections scenario: idle connections (default 10000)\n"
    "  --size BYTES        flat: PacketWrapper size (default 1000)\n"
    "  --rate N            flat: packets/s per sender (meeting 30, fanout 1000, saturate\n"
    "                      start 100, overload: the 1x load, default 100)\n"
    "  --media video|audio flat: MediaPacket media_type (default video)\n"
    "  --encrypted         media as opaque ciphertext (E2EE): the relay cannot see media_type\n"
    "  --duration SECS     measured time (default 10; connections: hold time)\n"
    "  --warmup SECS       unmeasured sending before (default 2)\n"
    "  --grace SECS        after sending, wait until nothing arrived for SECS (default 2)\n"
    "  --drain-max SECS    ... but at most SECS after sending (default 30)\n"
    "  --step-secs SECS    saturate: seconds per step (default 5)\n"
    "  --step-factor F     saturate: load multiplier per step (default 1.25)\n"
    "  --refine N          saturate: after the first failing load, N steps bisecting\n"
    "                      between the best passing and the lowest failing load (default 0)\n"
    "  --p99-limit MS      saturate: a step passes with p99 at most this (default 50);\n"
    "                      overload: the recovery threshold\n"
    "  --max-rate N        saturate, flat: highest per-sender rate tried (default 1000000)\n"
    "  --min-rate N        saturate, flat: lowest rate tried when stepping down (default 1)\n"
    "  --phases S:M,...    overload: seconds at a multiple of the 1x load, in order\n"
    "                      (default 10:2,5:0.5)\n"
    "  --window-ms MS      overload: latency window (default 250)\n"
    "  --server-pid PID    report the server's VmRSS (connections: per connection)\n"
    "  --server-cpu N      saturate: the server is pinned to CPU N; a failing step during\n"
    "                      which other processes took >= 25%% of it is run again once\n"
    "  --src-spread N      bind connection i to 127.0.0.(1+i/N) (default 20000; 0 = off)\n"
    "  --inflight N        concurrent handshakes (default 256)\n"
    "  --max-out BYTES     per-connection unsent buffer bound (default 8388608)\n"
    "  --connect-timeout S (default 30)\n"
    "  --max-seconds SECS  hard bound on the whole run (default 300)\n"
    "  --quiet             no progress on stderr\n"
    "Exit status: 0 done and correct; 3 lost/duplicated/misrouted packets or failed\n"
    "connections (overload: loss is measured, not an error); 1 usage error or\n"
    "--max-seconds reached.\n"
    "URL schemes built in: ws://%s\n",
#ifdef LG_WITH_WT
    ", https:// (WebTransport)"
#else
    ""
#endif
    );
}

/* "10:2,5:0.5" into o->phase_secs / o->phase_mult. */
static int parse_phases(lg_opts_t *o, const char *s) {
  o->nphases = 0;
  while (*s) {
    char *e;
    if (o->nphases == LG_MAX_PHASES) return -1;
    double secs = strtod(s, &e);
    if (e == s || *e != ':') return -1;
    s = e + 1;
    double mult = strtod(s, &e);
    if (e == s || (*e && *e != ',') || !(secs > 0) || !(mult > 0) || secs > 3600 || mult > 1000)
      return -1;
    o->phase_secs[o->nphases] = secs;
    o->phase_mult[o->nphases++] = mult;
    s = *e ? e + 1 : e;
  }
  return o->nphases > 0 ? 0 : -1;
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
    {"refine", 1, 0, 12}, {"shape", 1, 0, 13}, {"active", 1, 0, 14}, {"encrypted", 0, 0, 15},
    {"phases", 1, 0, 16}, {"window-ms", 1, 0, 17}, {"min-rate", 1, 0, 18},
    {"drain-max", 1, 0, 19}, {"server-cpu", 1, 0, 20},
    {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
  memset(o, 0, sizeof *o);
  o->rooms = o->participants = o->senders = o->connections = o->size = o->active = -1;
  o->rate = o->duration = o->warmup = o->grace = -1;
  o->step_secs = 5; o->step_factor = 1.25; o->max_seconds = 300;
  o->connect_timeout = 30; o->p99_limit_ms = 50; o->max_rate = 1e6; o->min_rate = 1;
  o->media_kind = LG_K_VIDEO; o->src_spread = 20000; o->inflight = 256; o->max_out = 8 << 20;
  o->window_ms = 250; o->drain_max = 30; o->server_cpu = -1;
  parse_phases(o, "10:2,5:0.5");
  int ch, shape = -1;
  while ((ch = getopt_long(argc, argv, "u:s:R:P:S:N:b:r:d:w:g:qh", lo, NULL)) != -1) {
    switch (ch) {
    case 'u':
      if (o->nurls == LG_MAX_URLS) { fprintf(stderr, "loadgen: at most %d --url\n", LG_MAX_URLS); return -1; }
      o->urls[o->nurls++] = optarg;
      break;
    case 's': {
      int k = -1;
      for (int i = 0; i < SC_N; i++) if (strcmp(optarg, sc_names[i]) == 0) k = i;
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
      if (strcmp(optarg, "video") == 0) o->media_kind = LG_K_VIDEO;
      else if (strcmp(optarg, "audio") == 0) o->media_kind = LG_K_AUDIO;
      else { fprintf(stderr, "loadgen: --media video|audio\n"); return -1; }
      break;
    case 6: o->server_pid = atol(optarg); break;
    case 7: o->src_spread = atol(optarg); break;
    case 8: o->inflight = atol(optarg); break;
    case 9: o->max_out = atol(optarg); break;
    case 10: o->connect_timeout = atof(optarg); break;
    case 11: o->max_seconds = atof(optarg); break;
    case 12: o->refine = atol(optarg); break;
    case 13:
      if (strcmp(optarg, "flat") == 0) shape = SH_FLAT;
      else if (strcmp(optarg, "call") == 0) shape = SH_CALL;
      else { fprintf(stderr, "loadgen: --shape flat|call\n"); return -1; }
      break;
    case 14: o->active = atol(optarg); break;
    case 15: o->encrypted = 1; break;
    case 16:
      if (parse_phases(o, optarg) != 0) {
        fprintf(stderr, "loadgen: --phases SECS:MULT[,SECS:MULT...] (at most %d, both > 0)\n",
                LG_MAX_PHASES);
        return -1;
      }
      break;
    case 17: o->window_ms = atof(optarg); break;
    case 18: o->min_rate = atof(optarg); break;
    case 19: o->drain_max = atof(optarg); break;
    case 20: o->server_cpu = atol(optarg); break;
    case 'q': o->quiet = 1; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return -1;
    }
  }
  if (optind < argc || o->nurls == 0) { usage(stderr); return -1; }
  /* Scenario defaults for what was not given. */
  int sc = o->scenario;
  if (sc == SC_CALL) {
    if (shape == SH_FLAT) { fprintf(stderr, "loadgen: --scenario call is --shape call\n"); return -1; }
    shape = SH_CALL;
  }
  o->shape = shape < 0 ? SH_FLAT : shape;
  int call = o->shape == SH_CALL;
  if (call && (sc == SC_FANOUT || sc == SC_CONNECTIONS)) {
    fprintf(stderr, "loadgen: --shape call goes with meeting, call, saturate or overload\n");
    return -1;
  }
  double maxmult = 0;
  for (int i = 0; i < o->nphases; i++) maxmult = fmax(maxmult, o->phase_mult[i]);
  if (call && sc == SC_OVERLOAD && o->active < 1) {
    fprintf(stderr, "loadgen: overload --shape call needs --active N (the 1x number of rooms)\n");
    return -1;
  }
  if (o->rooms < 0) {
    if (call && sc == SC_SATURATE) o->rooms = 1000;
    else if (call && sc == SC_OVERLOAD) o->rooms = (long)ceil(o->active * maxmult);
    else o->rooms = sc == SC_FANOUT ? 1 : 20;
  }
  if (o->participants < 0) o->participants = sc == SC_FANOUT ? 200 : sc == SC_CONNECTIONS ? 10 : 5;
  if (o->senders < 0 || call) o->senders = sc == SC_FANOUT ? 1 : o->participants;
  if (o->connections < 0) o->connections = 10000;
  if (o->size < 0) o->size = 1000;
  if (o->rate < 0) o->rate = sc == SC_FANOUT ? 1000 : sc == SC_SATURATE || sc == SC_OVERLOAD ? 100 : 30;
  if (o->active < 0) o->active = call && sc == SC_SATURATE ? 4 : o->rooms;
  if (o->duration < 0) o->duration = 10;
  if (o->warmup < 0) o->warmup = 2;
  if (o->grace < 0) o->grace = 2;
  if (o->drain_max < o->grace) o->drain_max = o->grace;
  if (sc == SC_CONNECTIONS) {
    o->rooms = (o->connections + o->participants - 1) / o->participants;
    o->senders = 0;
  }
  double wins = ceil(o->drain_max * 1000 / o->window_ms) + 1;
  for (int i = 0; i < o->nphases; i++) wins += ceil(o->phase_secs[i] * 1000 / o->window_ms);
  if (o->rooms < 1 || o->participants < 1 || o->rooms * o->participants > 1000000 ||
      o->senders < 0 || o->senders > o->participants || o->size < 64 || o->size > (16 << 20) ||
      !(o->rate > 0) || o->rate > 1e7 || !(o->duration > 0) || o->warmup < 0 ||
      !(o->step_secs > 0) || !(o->step_factor > 1) || o->grace < 0 || !(o->max_seconds > 0) ||
      o->inflight < 1 || o->max_out < 65536 || o->src_spread < 0 ||
      o->refine < 0 || o->refine > 10 || !(o->min_rate > 0) || o->active < 1 ||
      (call && o->active > o->rooms) || !(o->window_ms >= 10) ||
      (sc == SC_OVERLOAD && wins > LG_MAX_WINDOWS)) {
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
  int call = o->shape == SH_CALL;
  lg->nrooms = (uint32_t)o->rooms;
  lg->per_room = (uint32_t)o->participants;
  lg->senders_per_room = (uint32_t)o->senders;
  lg->nconns = o->scenario == SC_CONNECTIONS ? (uint32_t)o->connections : lg->nrooms * lg->per_room;
  /* The call search opens rooms as it needs them. */
  lg->want_conns = call && o->scenario == SC_SATURATE ? (uint32_t)o->active * lg->per_room : lg->nconns;
  lg->cur_load = call ? (double)o->active : o->rate;
  lg->active_rooms = call ? (uint32_t)o->active : lg->nrooms;
  if (o->scenario == SC_SATURATE)
    lg_search_init(&lg->search, call ? (double)o->active : o->rate, o->step_factor,
                   call ? 1 : o->min_rate, call ? (double)o->rooms : o->max_rate, o->refine, call);
  uint64_t seed = lg_now_ns() ^ ((uint64_t)getpid() << 20);
  lg->run_id = (uint32_t)(seed * 0x9e3779b97f4a7c15ull >> 32);
  /* WebTransport reads with recvmmsg, which gives each datagram a 64 KiB
   * slot of this buffer: 16 slots, 16 datagrams per system call. */
  lg->rbuf_len = 16 * 64 * 1024;
  lg->rbuf = malloc(lg->rbuf_len);
  lg->pad = malloc(LG_PAD_LEN);
  lg->sbuf = malloc(LG_SBUF);
  lg->conns = calloc(lg->nconns, sizeof *lg->conns);
  lg->room_live = calloc(lg->nrooms, sizeof *lg->room_live);
  lg->senders = calloc((size_t)lg->nrooms * lg->senders_per_room + 1, sizeof *lg->senders);
  lg->lag = hist_new();
  lg->rtt = hist_new();
  if (!lg->rbuf || !lg->pad || !lg->sbuf || !lg->conns || !lg->room_live || !lg->senders ||
      !lg->lag || !lg->rtt || lat_init(&lg->lat) != 0) {
    fprintf(stderr, "loadgen: out of memory\n");
    return -1;
  }
  lg_pad_init(lg->pad, LG_PAD_LEN, seed);
  if (o->scenario == SC_OVERLOAD) {
    lg->nphases = o->nphases;
    lg->win_ns = (uint64_t)(o->window_ms * 1e6);
    for (int p = 0; p < lg->nphases; p++) {
      lg_phase_t *ph = &lg->phases[p];
      ph->secs = o->phase_secs[p];
      ph->mult = o->phase_mult[p];
      ph->load = call ? fmax(1, floor(o->active * ph->mult + 0.5)) : o->rate * ph->mult;
      if (call && ph->load > lg->nrooms) ph->load = lg->nrooms;
      ph->win0 = lg->nwins;
      ph->nwin = (uint32_t)ceil(ph->secs * 1000 / o->window_ms);
      lg->nwins += ph->nwin;
      if (lat_init(&ph->lat) != 0) { fprintf(stderr, "loadgen: out of memory\n"); return -1; }
    }
    lg->nwins += (uint32_t)ceil(o->drain_max * 1000 / o->window_ms) + 1;
    lg->wins = calloc(lg->nwins, sizeof *lg->wins);
    if (!lg->wins) { fprintf(stderr, "loadgen: out of memory\n"); return -1; }
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
    snprintf(c->user, sizeof c->user, "lg%08x-%u", lg->run_id, i);
    snprintf(c->path, sizeof c->path, "/lobby/%s/lg%08x-r%u", c->user, lg->run_id, c->room);
    if (lg->senders_per_room > 0) {
      c->win = calloc(lg->senders_per_room, sizeof *c->win);
      if (!c->win) { fprintf(stderr, "loadgen: out of memory\n"); return -1; }
    }
    if (!c->sender) continue;
    if (call) {
      c->nst = LG_CALL_STREAMS;
      for (int k = 0; k < LG_CALL_STREAMS; k++) {
        c->st[k].def = k;
        c->st[k].rate = lg_call_streams[k].rate;
      }
    } else {
      c->nst = 1;
      c->st[0].def = -1;
      lg_hdr_t h = {lg->run_id, i, c->room, (uint32_t)o->media_kind, 0, 0};
      lg_pkt_t p = {(size_t)o->size, c->user, o->encrypted, 0, lg->pad, i * 7919u};
      if (lg_template_build(&c->tpl, &p, &h) != 0) {
        fprintf(stderr, "loadgen: out of memory\n");
        return -1;
      }
    }
    lg->senders[lg->nsenders++] = c;
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
  for (uint32_t i = 0; lg->wins && i < lg->nwins; i++) {
    free(lg->wins[i].all);
    free(lg->wins[i].audio);
    free(lg->wins[i].video);
  }
  for (int p = 0; p < lg->nphases; p++) lat_free(&lg->phases[p].lat);
  lat_free(&lg->lat);
  free(lg->wins);
  free(lg->conns);
  free(lg->room_live);
  free(lg->senders);
  free(lg->lag);
  free(lg->rtt);
  free(lg->rbuf);
  free(lg->pad);
  free(lg->sbuf);
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
