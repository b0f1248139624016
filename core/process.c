/* The process on the main thread: it starts the plugins and the workers,
 * serves the admin listener, turns SIGTERM/SIGINT into a drain and SIGHUP
 * into a reload, and logs the totals when everything has stopped. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "process.h"
#include "admin.h"
#include "core.h"
#include "metrics.h"
#include "notify.h"
#include "reload.h"
#include "worker.h"

#ifndef VCG_VERSION
#define VCG_VERSION PACKAGE_VERSION
#endif

typedef struct vcg__main {
  uv_loop_t loop;
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t drain_delay;    /* SIGTERM: /readyz 503 until it fires */
  uv_async_t done;           /* a worker finished, or took a reload */
  vcg__process_t proc;
  vcg__log_t log;
  vcg__admin_t *admin;
  const char *const *dirs;   /* plugin search path, for reloads */
  const char *file;          /* what a reload reads (NULL: the default) */
  const char *level;         /* -l, which a reload does not override */
  int draining;
  int finished;
  vcg__config_t *retiring;   /* the generation a reload replaced */
  int reload_again;          /* SIGHUP during a reload */
} vcg__main_t;

/* A failed notification is worth a warning, not a stop: systemd then
 * times the start or stop out and says so itself. */
static void notified(vcg__log_t *log, const char *what, int rc) {
  if (rc != 0)
    vcg__logf(log, VCG_LOG_WARN, "core", 0, "systemd notify %s to $NOTIFY_SOCKET failed: %s", what,
              strerror(-rc));
}

static void apply_logging(vcg__main_t *m, const vcg__config_t *c) {
  m->log.level = vcg__log_parse_level(m->level ? m->level : c->core.log_level);
  m->log.format = vcg__log_parse_format(c->core.log_format);
}

static void reload_failed(vcg__main_t *m, vcg__errs_t *errs) {
  for (size_t i = 0; i < errs->n; i++)
    vcg__logf(&m->log, VCG_LOG_ERROR, "core", 0, "reload failed: %s", errs->line[i]);
  vcg__logf(&m->log, VCG_LOG_WARN, "core", 0, "reload failed: still serving with the previous "
            "configuration");
  VCG__ADD(m->proc.reloads_failed, 1);
  notified(&m->log, "READY", vcg__notify_ready());
}

/* SIGHUP: a new generation, checked like -t and against the running one,
 * then handed to every worker (take_generation() in worker.c). */
static void reload(vcg__main_t *m) {
  if (m->draining) return;
  if (m->retiring) { m->reload_again = 1; return; }
  notified(&m->log, "RELOADING", vcg__notify_reloading());
  vcg__logf(&m->log, VCG_LOG_INFO, "core", 0, "SIGHUP: reloading %s",
            m->file ? m->file : "the embedded default");
  vcg__config_t *next = calloc(1, sizeof *next), *cur = m->proc.cfg;
  vcg__errs_t errs = { 0 };
  char err[256];
  if (!next) { vcg__errs_add(&errs, "out of memory"); reload_failed(m, &errs); vcg__errs_free(&errs); return; }
  int nerr = vcg__config_load(next, m->file, m->file ? NULL : vcg__default_config, m->dirs, &errs);
  if (!nerr) nerr = vcg__reload_check(cur, next, &errs);
  if (!nerr && vcg__limits_update(&m->proc.limits, (long)next->core.max_connections,
                                  (long)next->core.max_connections_per_ip,
                                  next->core.trusted_addresses, err, sizeof err) != 0) {
    vcg__errs_add(&errs, "%s: %s", next->file, err);
    nerr = 1;
  }
  if (nerr) {
    reload_failed(m, &errs);
    vcg__errs_free(&errs);
    vcg__config_free(next);
    free(next);
    return;
  }
  vcg__errs_free(&errs);
  vcg__reload_carry(cur, next);
  apply_logging(m, next);
  m->proc.cfg = next;
  m->retiring = cur;
  atomic_store(&m->proc.reload_acks, 0);
  for (unsigned i = 0; i < m->proc.nworkers; i++) {
    vcg__worker_t *w = &m->proc.workers[i];
    atomic_store(&w->cfg_next, next);
    atomic_store(&w->cmd_reload, 1);
    uv_async_send(&w->async);
  }
}

/* Every worker runs on the new generation: the old one can go. */
static void reload_done(vcg__main_t *m) {
  vcg__config_free(m->retiring);
  free(m->retiring);
  m->retiring = NULL;
  VCG__ADD(m->proc.reloads_ok, 1);
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  atomic_store(&m->proc.last_reload_ok_s, (uint64_t)tv.tv_sec);
  vcg__logf(&m->log, VCG_LOG_INFO, "core", 0, "reload: configuration applied (%s)",
            m->proc.cfg->file);
  notified(&m->log, "READY", vcg__notify_ready());
  if (m->reload_again) {
    m->reload_again = 0;
    reload(m);
  }
}

static void drain_workers(vcg__main_t *m) {
  for (unsigned i = 0; i < m->proc.nworkers; i++) vcg__worker_request_drain(&m->proc.workers[i]);
}

static void on_drain_delay(uv_timer_t *t) {
  vcg__main_t *m = t->data;
  vcg__logf(&m->log, VCG_LOG_INFO, "core", 0, "drain_delay over: closing clients");
  drain_workers(m);
}

static void on_signal(uv_signal_t *h, int signum) {
  vcg__main_t *m = h->data;
  if (signum == SIGHUP) {
    reload(m);
    return;
  }
  if (m->draining) {
    vcg__logf(&m->log, VCG_LOG_WARN, "core", 0, "second signal: stopping now");
    uv_timer_stop(&m->drain_delay);
    for (unsigned i = 0; i < m->proc.nworkers; i++) vcg__worker_request_stop(&m->proc.workers[i]);
    return;
  }
  /* /readyz turns 503 before the first client is told to go away, and
   * stays so for drain_delay while clients are still served, so that a
   * load balancer that polls it stops sending new ones first. */
  m->draining = 1;
  atomic_store(&m->proc.draining, 1);
  int64_t delay = m->proc.cfg->core.drain_delay;
  vcg__logf(&m->log, VCG_LOG_INFO, "core", 0, "%s: draining%s", signum == SIGTERM ? "SIGTERM" : "SIGINT",
            delay > 0 ? " (/readyz 503; clients closed after drain_delay)" : "");
  notified(&m->log, "STOPPING", vcg__notify_stopping());
  if (delay > 0) uv_timer_start(&m->drain_delay, on_drain_delay, (uint64_t)delay, 0);
  else drain_workers(m);
}

static void close_main_handles(vcg__main_t *m) {
  uv_close((uv_handle_t *)&m->sigterm, NULL);
  uv_close((uv_handle_t *)&m->sigint, NULL);
  uv_close((uv_handle_t *)&m->sighup, NULL);
  uv_close((uv_handle_t *)&m->drain_delay, NULL);
  uv_close((uv_handle_t *)&m->done, NULL);
  vcg__admin_stop(m->admin);
  m->admin = NULL;
}

static void on_worker_done(uv_async_t *a) {
  vcg__main_t *m = a->data;
  if (m->retiring && atomic_load(&m->proc.reload_acks) == m->proc.nworkers) reload_done(m);
  /* A worker's loop ended; when every one has, the main loop ends too. */
  unsigned done = 0;
  for (unsigned i = 0; i < m->proc.nworkers; i++) done += atomic_load(&m->proc.workers[i].finished) != 0;
  if (done == 0) return;
  if (done < m->proc.nworkers) {
    /* One worker stopping (e.g. a failed start) stops the others. */
    if (!m->draining) {
      m->draining = 1;
      atomic_store(&m->proc.draining, 1);
      for (unsigned i = 0; i < m->proc.nworkers; i++) vcg__worker_request_stop(&m->proc.workers[i]);
    }
    return;
  }
  m->finished = 1;
  close_main_handles(m);
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

/* The same sums /metrics shows (metrics.c), so the two agree. */
static void log_stats(vcg__main_t *m) {
  vcg__stats_t t;
  vcg__stats_sum(&m->proc, &t);
#define U(x) (unsigned long long)VCG__GET(t.x)
  vcg__logf(&m->log, VCG_LOG_INFO, "core", 0,
            "totals: sessions %llu opened %llu refused (%llu observers); packets %llu in, %llu "
            "relayed, %llu dropped (%llu past their deadline), %llu malformed, %llu refused; %llu "
            "slow consumers closed; bus %llu in, %llu out",
            U(sessions_opened), U(sessions_refused), U(observers_opened), U(packets_in),
            U(packets_relayed), U(packets_dropped), U(packets_shed), U(packets_malformed),
            U(packets_refused), U(slow_closed), U(bus_in), U(bus_out));
#undef U
  if (m->proc.nworkers == 0) return;
  for (size_t i = 0; i <= m->proc.workers[0].ntransports; i++) log_counters(m, i);
}

int vcg__process_run(vcg__config_t *cfg, const char *const *dirs, const char *file,
                     const char *level) {
  static vcg__main_t m; /* lives for the whole process; static keeps it off the stack only */
  vcg__log_init(&m.log, 2);
  vcg__host_set_main_log(&m.log);
  vcg__info_init(&m.proc.info);
  m.dirs = dirs;
  m.file = file;
  m.level = level;
  char err[256];
  if (vcg__limits_init(&m.proc.limits, (long)cfg->core.max_connections,
                       (long)cfg->core.max_connections_per_ip, cfg->core.trusted_addresses, err,
                       sizeof err) != 0) {
    fprintf(stderr, "%s: %s\n", cfg->file, err);
    vcg__config_free(cfg);
    free(cfg);
    return 1;
  }
  apply_logging(&m, cfg);
  signal(SIGPIPE, SIG_IGN);

  int rc = 0;
  uv_loop_init(&m.loop);
  m.proc.cfg = cfg;
  m.proc.log = &m.log;
  m.proc.host = &vcg__host_api;
  m.proc.done_async = &m.done;
  uv_async_init(&m.loop, &m.done, on_worker_done);
  m.done.data = &m;
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  atomic_store(&m.proc.last_reload_ok_s, (uint64_t)tv.tv_sec);
  vcg__logf(&m.log, VCG_LOG_INFO, "core", 0, "vcgate %s starting: config %s, %lld worker%s",
            VCG_VERSION, cfg->file, (long long)cfg->core.workers, cfg->core.workers == 1 ? "" : "s");
  if (cfg->jwt_keys.n)
    vcg__logf(&m.log, VCG_LOG_INFO, "core", 0, "room tokens: %zu secret%s from %s, issuer \"%s\"%s",
              cfg->jwt_keys.n, cfg->jwt_keys.n == 1 ? "" : "s", cfg->jwt_keys_from,
              cfg->core.jwt_issuer,
              cfg->core.require_token ? ", legacy /lobby/{user}/{room} refused (require_token)" : "");
  if (cfg->admin_listen) {
    /* Bound before any worker: a port in use fails the start now. */
    if ((rc = vcg__admin_start(&m.admin, &m.loop, &m.proc, cfg->admin_listen, err, sizeof err)) != 0)
      vcg__logf(&m.log, VCG_LOG_ERROR, "core", 0, "%s", err);
    else
      vcg__logf(&m.log, VCG_LOG_INFO, "core", 0,
                "admin listening on http://%s (/metrics, /livez, /readyz, /version)", cfg->admin_listen);
  }

  size_t ninit = 0;
  for (; ninit < cfg->ntransports && rc == 0; ninit++) rc = init_plugin(&m, &cfg->transports[ninit]);
  if (rc == 0 && cfg->bus.loaded) rc = init_plugin(&m, &cfg->bus);
  unsigned nw = (unsigned)cfg->core.workers, spawned = 0;
  if (rc == 0) {
    m.proc.workers = calloc(nw, sizeof *m.proc.workers);
    m.proc.nworkers = nw;
    if (!m.proc.workers) rc = VCG_ENOMEM;
  }
  /* Before the first listener opens: a SIGTERM that arrives as soon as a
   * client can connect must drain, not kill the process by the default
   * action.  The main loop runs the callbacks once every worker started. */
  uv_signal_init(&m.loop, &m.sigterm);
  uv_signal_init(&m.loop, &m.sigint);
  uv_signal_init(&m.loop, &m.sighup);
  m.sigterm.data = m.sigint.data = m.sighup.data = &m;
  uv_timer_init(&m.loop, &m.drain_delay);
  m.drain_delay.data = &m;
  uv_signal_start(&m.sigterm, on_signal, SIGTERM);
  uv_signal_start(&m.sigint, on_signal, SIGINT);
  uv_signal_start(&m.sighup, on_signal, SIGHUP);
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
    atomic_store(&m.proc.draining, 1);
    for (unsigned i = 0; i < spawned; i++) vcg__worker_request_stop(&m.proc.workers[i]);
  } else {
    atomic_store(&m.proc.started, 1);
    vcg__logf(&m.log, VCG_LOG_INFO, "core", 0, "ready");
    notified(&m.log, "READY", vcg__notify_ready());
  }
  if (!spawned) close_main_handles(&m);
  uv_run(&m.loop, UV_RUN_DEFAULT);
  for (unsigned i = 0; i < spawned; i++) vcg__worker_join(&m.proc.workers[i]);
  if (spawned) log_stats(&m);
  for (unsigned i = 0; i < spawned; i++) vcg__worker_free(&m.proc.workers[i]);
  cfg = m.proc.cfg;
  if (m.retiring) { /* stopped during a reload: it has the plugins too */
    vcg__config_free(m.retiring);
    free(m.retiring);
  }
  for (size_t i = 0; i < cfg->ntransports; i++) fini_plugin(&cfg->transports[i]);
  fini_plugin(&cfg->bus);
  uv_loop_close(&m.loop);
  free(m.proc.workers);
  vcg__limits_free(&m.proc.limits);
  vcg__info_free(&m.proc.info);
  vcg__config_free(cfg);
  free(cfg);
  vcg__logf(&m.log, VCG_LOG_INFO, "core", 0, "stopped");
  return rc == 0 ? 0 : 1;
}
