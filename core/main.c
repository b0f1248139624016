/* vcgate: the daemon.  Parses the command line, loads and checks the
 * configuration (plugins included), starts the worker loops and turns
 * signals into drain and stop. */
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "conf.h"
#include "core.h"
#include "tokencmd.h"
#include "worker.h"



#ifndef VCG_VERSION
#define VCG_VERSION PACKAGE_VERSION
#endif

typedef struct vcg__main {
  uv_loop_t loop;
  uv_signal_t sigterm, sigint, sighup;
  uv_async_t done;
  uv_timer_t kill_timer;
  vcg__process_t proc;
  vcg__log_t log;
  int draining;
  int finished;
} vcg__main_t;

static void usage(FILE *f) {
  fprintf(f,
          "usage: vcgate [-c FILE] [-t] [-l LEVEL] [-p DIR] [-P NAME] [-D] [-V] [-h]\n"
          "       vcgate [-c FILE] --token sub=USER,room=ROOM[,name=NAME][,observer][,host][,ttl=SECS]\n"
          "  -c FILE   configuration file (libconfig); without it the embedded default\n"
          "            runs (WebSocket on 127.0.0.1:8080, WebTransport on 127.0.0.1:4433\n"
          "            when built, in-process bus)\n"
          "  -t        check the configuration, print file:line: option: reason for\n"
          "            each problem, and exit (0 when valid)\n"
          "  -l LEVEL  log level override: error, warn, info, debug\n"
          "  -p DIR    look for plugins in DIR first (repeatable; also the colon-\n"
          "            separated VCGATE_PLUGIN_PATH)\n"
          "  -D        print the embedded default configuration and exit\n"
          "  -P NAME   print the options of plugin NAME (or \"core\") with defaults\n"
          "  -V        print the version and exit\n"
          "  --token   print a room token signed with the configuration's first secret\n"
          "            (a client opens /lobby?token=...); ttl defaults to 3600 s\n"
          "  -h        this help\n");
}

/* Print an option table as libconfig settings with their defaults, ranges
 * and docs: the reference for `vcgate -P NAME` and the README. */
static void print_options(const char *group, const vcg_option_t *o) {
  for (; o && o->name; o++) {
    char val[256];
    switch (o->type) {
    case VCG_OPT_INT: snprintf(val, sizeof val, "%lld", (long long)o->def_int); break;
    case VCG_OPT_BOOL: snprintf(val, sizeof val, "%s", o->def_int ? "true" : "false"); break;
    case VCG_OPT_STRING: snprintf(val, sizeof val, "\"%s\"", o->def_str ? o->def_str : ""); break;
    case VCG_OPT_STRLIST: {
      size_t n = (size_t)snprintf(val, sizeof val, "[");
      const char *d = o->def_str ? o->def_str : "";
      for (const char *p = d; *p && n < sizeof val - 8; ) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        n += (size_t)snprintf(val + n, sizeof val - n, "%s\"%.*s\"", p == d ? "" : ", ", (int)l, p);
        p += l + (e ? 1 : 0);
      }
      snprintf(val + n, sizeof val - n, "]");
      break;
    }
    default: val[0] = '\0';
    }
    char range[80] = "";
    if (o->type == VCG_OPT_INT)
      snprintf(range, sizeof range, " [%lld..%lld]", (long long)o->min, (long long)o->max);
    int pad = 34 - (int)(strlen(group) + strlen(o->name) + strlen(val));
    printf("  %s%s = %s;%*s# %s%s%s\n", group, o->name, val, pad > 1 ? pad : 1, "",
           o->doc ? o->doc : "", range, o->type == VCG_OPT_STRING && !o->def_str ? " (unset)" : "");
  }
}

static int print_plugin(const char *name, const char *const *dirs) {
  if (strcmp(name, "core") == 0) {
    printf("core = {\n");
    print_options("", vcg__core_options);
    printf("};\n");
    return 0;
  }
  char path[4096], err[1024];
  const char *all[40];
  size_t n = 0;
  for (; dirs[n] && n < 38; n++) all[n] = dirs[n];
  all[n++] = VCG_PLUGIN_DIR;
  all[n] = NULL;
  vcg__plugin_t *p = NULL;
  if (vcg__plugin_find(name, all, path, sizeof path) != 0) {
    fprintf(stderr, "vcgate: plugin '%s' not found\n", name);
    return 1;
  }
  if (vcg__plugin_load(path, 0, &p, err, sizeof err) != 0) {
    fprintf(stderr, "vcgate: %s\n", err);
    return 1;
  }
  printf("# %s %s (%s plugin, ABI %u.%u): %s\n# %s\n", p->desc->name,
         p->desc->version ? p->desc->version : "",
         p->desc->kind == VCG_PLUGIN_TRANSPORT ? "transport" : "bus", p->desc->abi_major,
         p->desc->abi_minor, p->desc->description ? p->desc->description : "", path);
  printf("{ plugin = \"%s\";\n", p->desc->name);
  print_options("", p->desc->options);
  printf("}\n");
  vcg__plugin_unload(p);
  return 0;
}

static void on_signal(uv_signal_t *h, int signum) {
  vcg__main_t *m = h->data;
  if (signum == SIGHUP) {
    vcg__logf(&m->log, VCG_LOG_WARN, "core", 0,
              "SIGHUP: configuration reload is not supported yet; restart to apply changes");
    return;
  }
  if (m->draining) {
    vcg__logf(&m->log, VCG_LOG_WARN, "core", 0, "second signal: stopping now");
    for (unsigned i = 0; i < m->proc.nworkers; i++) vcg__worker_request_stop(&m->proc.workers[i]);
    return;
  }
  m->draining = 1;
  vcg__logf(&m->log, VCG_LOG_INFO, "core", 0, "%s: draining", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  for (unsigned i = 0; i < m->proc.nworkers; i++) vcg__worker_request_drain(&m->proc.workers[i]);
}

static void on_worker_done(uv_async_t *a) {
  vcg__main_t *m = a->data;
  /* A worker's loop ended; when every one has, the main loop ends too. */
  unsigned done = 0;
  for (unsigned i = 0; i < m->proc.nworkers; i++) done += atomic_load(&m->proc.workers[i].finished) != 0;
  if (done < m->proc.nworkers) {
    /* One worker stopping (e.g. a failed start) stops the others. */
    if (!m->draining) {
      m->draining = 1;
      for (unsigned i = 0; i < m->proc.nworkers; i++) vcg__worker_request_stop(&m->proc.workers[i]);
    }
    return;
  }
  m->finished = 1;
  uv_close((uv_handle_t *)&m->sigterm, NULL);
  uv_close((uv_handle_t *)&m->sigint, NULL);
  uv_close((uv_handle_t *)&m->sighup, NULL);
  uv_close((uv_handle_t *)&m->done, NULL);
}

static int init_plugin(vcg__main_t *m, vcg__plugin_conf_t *pc) {
  const vcg_plugin_t *d = pc->loaded->desc;
  if (!pc->loaded->ops.init) return 0;
  int rc = pc->loaded->ops.init(&vcg__host_api, pc->conf, &pc->loaded->state);
  if (rc != 0) {
    vcg__logf(&m->log, VCG_LOG_ERROR, pc->name, 0, "init failed: %s", vcg_strerror(rc));
    return rc;
  }
  pc->loaded->inited = 1;
  vcg__logf(&m->log, VCG_LOG_DEBUG, pc->name, 0, "loaded %s %s from %s", d->name,
            d->version ? d->version : "", pc->loaded->path);
  return 0;
}

static void fini_plugin(vcg__plugin_conf_t *pc) {
  if (!pc->loaded || !pc->loaded->inited) return;
  if (pc->loaded->ops.fini) pc->loaded->ops.fini(pc->loaded->state);
  pc->loaded->inited = 0;
}

/* Plugin counters, summed over workers per instance, one line each. */
static void log_counters(vcg__main_t *m, size_t ti) {
  char line[1024];
  size_t n = 0;
  const char *name = NULL;
  const char *seen[VCG__MAX_COUNTERS] = { 0 };
  uint64_t sum[VCG__MAX_COUNTERS] = { 0 };
  size_t ns = 0;
  for (unsigned i = 0; i < m->proc.nworkers; i++) {
    vcg__worker_t *w = &m->proc.workers[i];
    vcg_worker_t *b = ti < w->ntransports ? &w->transports[ti] : &w->bus;
    if (!b->pc) return;
    name = b->pc->name;
    int nc = atomic_load(&b->ncounters);
    for (int k = 0; k < nc; k++) {
      size_t j = 0;
      while (j < ns && strcmp(seen[j], b->cname[k]) != 0) j++;
      if (j == ns) { if (ns == VCG__MAX_COUNTERS) continue; seen[ns++] = b->cname[k]; }
      sum[j] += atomic_load(&b->cval[k]);
    }
  }
  if (!ns) return;
  for (size_t j = 0; j < ns && n < sizeof line - 64; j++)
    n += (size_t)snprintf(line + n, sizeof line - n, "%s%s=%llu", j ? " " : "", seen[j],
                          (unsigned long long)sum[j]);
  vcg__logf(&m->log, VCG_LOG_INFO, name, 0, "counters: %s", line);
}

static void log_stats(vcg__main_t *m) {
  vcg__stats_t t = { 0 };
  for (unsigned i = 0; i < m->proc.nworkers; i++) {
    vcg__stats_t *s = &m->proc.workers[i].stats;
    t.sessions_opened += s->sessions_opened; t.sessions_refused += s->sessions_refused;
    t.packets_in += s->packets_in; t.packets_relayed += s->packets_relayed;
    t.packets_dropped += s->packets_dropped; t.packets_malformed += s->packets_malformed;
    t.packets_shed += s->packets_shed;
    t.slow_closed += s->slow_closed; t.bus_in += s->bus_in; t.bus_out += s->bus_out;
  }
  vcg__logf(&m->log, VCG_LOG_INFO, "core", 0,
            "totals: sessions %llu opened %llu refused; packets %llu in, %llu relayed, %llu "
            "dropped (%llu past their deadline), %llu malformed; %llu slow consumers closed; "
            "bus %llu in, %llu out",
            (unsigned long long)t.sessions_opened, (unsigned long long)t.sessions_refused,
            (unsigned long long)t.packets_in, (unsigned long long)t.packets_relayed,
            (unsigned long long)t.packets_dropped, (unsigned long long)t.packets_shed,
            (unsigned long long)t.packets_malformed,
            (unsigned long long)t.slow_closed, (unsigned long long)t.bus_in,
            (unsigned long long)t.bus_out);
  if (m->proc.nworkers == 0) return;
  for (size_t i = 0; i <= m->proc.workers[0].ntransports; i++) log_counters(m, i);
}

/* glibc returns the free top of a heap to the kernel once it exceeds the
 * trim threshold (128 KiB at first), and threads other than the first
 * (workers, nats.c's reader and delivery threads) each get their own heap.
 * A relay frees about what it allocated a moment ago, so every burst was
 * trimmed and then faulted back in: with the NATS bus that cycle
 * (sysmalloc page faults, madvise) showed in the profile, and keeping the
 * heap raised its meeting rate (measurements in the commit message).  Keep up to 32 MiB of free top per heap, and
 * keep packets up to 4 MiB in the heaps (an mmap per large packet would
 * fault its pages in every time; setting the trim threshold also freezes
 * glibc's adaptive mmap threshold at 128 KiB otherwise).  RSS after a peak
 * stays higher by at most that much per heap; it does not grow. */
static void heap_policy(void) {
#if defined(M_TRIM_THRESHOLD) && defined(M_MMAP_THRESHOLD)
  (void)mallopt(M_TRIM_THRESHOLD, 32 << 20);
  (void)mallopt(M_MMAP_THRESHOLD, 4 << 20);
#endif
}

int main(int argc, char **argv) {
  const char *file = NULL, *level = NULL, *show = NULL;
  int check = 0;
  const char *dirs[34];
  size_t nd = 0;
  int opt;
  const char *token_spec = NULL;
  static const struct option longopts[] = {
    { "token", required_argument, NULL, 'T' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  while ((opt = getopt_long(argc, argv, "c:tl:p:P:DVh", longopts, NULL)) != -1) {
    switch (opt) {
    case 'c': file = optarg; break;
    case 't': check = 1; break;
    case 'l': level = optarg; break;
    case 'p': if (nd < 16) dirs[nd++] = optarg; break;
    case 'P': show = optarg; break;
    case 'D': fputs(vcg__default_config, stdout); return 0;
    case 'V': printf("vcgate %s (plugin ABI %d.%d)\n", VCG_VERSION, VCG_ABI_MAJOR, VCG_ABI_MINOR); return 0;
    case 'T': token_spec = optarg; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) { usage(stderr); return 2; }
  heap_policy();
  if (level && vcg__log_parse_level(level) < 0) {
    fprintf(stderr, "vcgate: -l %s: not one of error, warn, info, debug\n", level);
    return 2;
  }
  char *envpath = getenv("VCGATE_PLUGIN_PATH") ? strdup(getenv("VCGATE_PLUGIN_PATH")) : NULL;
  for (char *save = NULL, *tok = envpath ? strtok_r(envpath, ":", &save) : NULL; tok && nd < 32;
       tok = strtok_r(NULL, ":", &save))
    dirs[nd++] = tok;
  dirs[nd] = NULL;
  if (show) {
    int r = print_plugin(show, dirs);
    free(envpath);
    return r;
  }

  static vcg__main_t m; /* lives for the whole process; static keeps it off the stack only */
  vcg__log_init(&m.log, 2);
  vcg__host_set_main_log(&m.log);
  vcg__info_init(&m.proc.info);
  vcg__config_t cfg;
  vcg__errs_t errs = { 0 };
  int nerr = vcg__config_load(&cfg, file, file ? NULL : vcg__default_config, dirs, &errs);
  for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "%s\n", errs.line[i]);
  vcg__errs_free(&errs);
  if (nerr) {
    fprintf(stderr, "vcgate: %s: %d error%s in configuration\n", cfg.file, nerr, nerr == 1 ? "" : "s");
    vcg__config_free(&cfg);
    free(envpath);
    return 1;
  }
  if (token_spec) {
    int r = vcg__token_command(&cfg, token_spec);
    vcg__config_free(&cfg);
    free(envpath);
    return r;
  }
  char lerr[256];
  if (vcg__limits_init(&m.proc.limits, (long)cfg.core.max_connections,
                       (long)cfg.core.max_connections_per_ip, cfg.core.trusted_addresses, lerr,
                       sizeof lerr) != 0) {
    fprintf(stderr, "%s: %s\n", cfg.file, lerr);
    vcg__config_free(&cfg);
    free(envpath);
    return 1;
  }
  if (check) {
    printf("%s: configuration is valid (%zu transport%s, bus %s)\n", cfg.file, cfg.ntransports,
           cfg.ntransports == 1 ? "" : "s", cfg.bus.loaded ? cfg.bus.name : "none");
    vcg__limits_free(&m.proc.limits);
    vcg__config_free(&cfg);
    free(envpath);
    return 0;
  }
  m.log.level = vcg__log_parse_level(level ? level : cfg.core.log_level);
  m.log.format = vcg__log_parse_format(cfg.core.log_format);
  signal(SIGPIPE, SIG_IGN);

  int rc = 0;
  uv_loop_init(&m.loop);
  m.proc.cfg = &cfg;
  m.proc.log = &m.log;
  m.proc.host = &vcg__host_api;
  m.proc.done_async = &m.done;
  uv_async_init(&m.loop, &m.done, on_worker_done);
  m.done.data = &m;
  vcg__logf(&m.log, VCG_LOG_INFO, "core", 0, "vcgate %s starting: config %s, %lld worker%s",
            VCG_VERSION, cfg.file, (long long)cfg.core.workers, cfg.core.workers == 1 ? "" : "s");
  if (cfg.jwt_keys.n)
    vcg__logf(&m.log, VCG_LOG_INFO, "core", 0, "room tokens: %zu secret%s from %s, issuer \"%s\"%s",
              cfg.jwt_keys.n, cfg.jwt_keys.n == 1 ? "" : "s", cfg.jwt_keys_from, cfg.core.jwt_issuer,
              cfg.core.require_token ? ", legacy /lobby/{user}/{room} refused (require_token)" : "");

  /* Signals are caught before any worker starts: a worker logs "listening"
   * as soon as its listener is bound, and a SIGTERM right after that must
   * drain, not kill (libuv queues it until the main loop runs). */
  uv_signal_init(&m.loop, &m.sigterm);
  uv_signal_init(&m.loop, &m.sigint);
  uv_signal_init(&m.loop, &m.sighup);
  m.sigterm.data = m.sigint.data = m.sighup.data = &m;
  uv_signal_start(&m.sigterm, on_signal, SIGTERM);
  uv_signal_start(&m.sigint, on_signal, SIGINT);
  uv_signal_start(&m.sighup, on_signal, SIGHUP);
  size_t ninit = 0;
  for (; ninit < cfg.ntransports && rc == 0; ninit++) rc = init_plugin(&m, &cfg.transports[ninit]);
  if (rc == 0 && cfg.bus.loaded) rc = init_plugin(&m, &cfg.bus);
  unsigned nw = (unsigned)cfg.core.workers, spawned = 0;
  if (rc == 0) {
    m.proc.workers = calloc(nw, sizeof *m.proc.workers);
    m.proc.nworkers = nw;
    if (!m.proc.workers) rc = VCG_ENOMEM;
  }
  for (unsigned i = 0; rc == 0 && i < nw; i++) {
    if ((rc = vcg__worker_init(&m.proc.workers[i], &m.proc, i)) != 0) break;
    if ((rc = vcg__worker_spawn(&m.proc.workers[i])) != 0) break;
    spawned++;
    uv_sem_wait(&m.proc.workers[i].started);
    rc = m.proc.workers[i].start_rc;
  }
  m.proc.nworkers = spawned;
  if (rc != 0) {
    vcg__logf(&m.log, VCG_LOG_ERROR, "core", 0, "start failed; stopping");
    m.draining = 1;
    for (unsigned i = 0; i < spawned; i++) vcg__worker_request_stop(&m.proc.workers[i]);
  } else {
    vcg__logf(&m.log, VCG_LOG_INFO, "core", 0, "ready");
  }
  if (spawned) uv_run(&m.loop, UV_RUN_DEFAULT);
  for (unsigned i = 0; i < spawned; i++) vcg__worker_join(&m.proc.workers[i]);
  if (!spawned) {
    uv_close((uv_handle_t *)&m.sigterm, NULL);
    uv_close((uv_handle_t *)&m.sigint, NULL);
    uv_close((uv_handle_t *)&m.sighup, NULL);
    uv_close((uv_handle_t *)&m.done, NULL);
    uv_run(&m.loop, UV_RUN_DEFAULT);
  }
  if (spawned) log_stats(&m);
  for (unsigned i = 0; i < spawned; i++) vcg__worker_free(&m.proc.workers[i]);
  for (size_t i = 0; i < cfg.ntransports; i++) fini_plugin(&cfg.transports[i]);
  fini_plugin(&cfg.bus);
  uv_loop_close(&m.loop);
  free(m.proc.workers);
  vcg__limits_free(&m.proc.limits);
  vcg__info_free(&m.proc.info);
  vcg__config_free(&cfg);
  free(envpath);
  vcg__logf(&m.log, VCG_LOG_INFO, "core", 0, "stopped");
  return rc == 0 ? 0 : 1;
}
