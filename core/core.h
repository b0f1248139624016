/* Internal shapes of the vcgate core: process, workers, plugin bindings,
 * sessions.  Nothing here is part of the plugin ABI. */
#ifndef VCG_CORE_H
#define VCG_CORE_H
#include <stdatomic.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <uv.h>
#include "vcgate/plugin.h"
#include "conf.h"
#include "connlimit.h"
#include "log.h"
#include "packet.h"
#include "room.h"
#include "stats.h"

typedef struct vcg__worker vcg__worker_t;
typedef struct vcg__process vcg__process_t;


#define VCG__MAX_COUNTERS 32
/* The handle a plugin instance sees as vcg_worker_t: one per (worker,
 * plugin instance), so logs and counters carry the plugin's name. */
struct vcg_worker {
  vcg__worker_t *core;
  vcg__plugin_conf_t *pc;
  vcg_instance_t *inst;
  int kind;
  /* The plugin's vtable, resolved once when the worker is made, so the
   * per-packet calls are one load away (NULL for the other kind). */
  const vcg_transport_ops_t *top;
  const vcg_bus_ops_t *bop;
  vcg__tstats_t ts;          /* a transport binding's metrics */
  atomic_int bus_up;         /* a bus binding: connected (host->bus_state_ts) */
  atomic_int bus_was_up;
  vcg__ctr_t bus_reconnects;
  int started, stopped;
  /* Named counters, added to from the loop and (the *_ts calls) from
   * plugin threads.  Adding to an existing counter is one atomic add; the
   * mutex only serialises the first use of a new name, which is published
   * by the release store of ncounters. */
  uv_mutex_t clock;
  atomic_int ncounters;
  const char *cname[VCG__MAX_COUNTERS];
  _Atomic uint64_t cval[VCG__MAX_COUNTERS];
};

struct vcg_session {
  vcg_hnode_t idnode;       /* in the worker's sessions, keyed by id */
  uint64_t id;
  struct vcg_worker *t;     /* the transport binding */
  void *conn;
  char *user;
  vcg__room_t *room;
  uint32_t slot;
  int closing;
  int close_why;            /* the server's enum vcg_close_reason, when closing */
  int ip_counted;
  int admitted;             /* the transport holds the limits slot */
  /* Presence (presence.c): a session is "testing" until its first packet
   * that is not an RTT probe, then active (announced).  Observers are
   * never announced and may send only RTT probes and HEALTH. */
  unsigned active : 1, observer : 1, is_host : 1, ident_warned : 1;
  char *display_name;       /* the token's, or the identity */
  size_t qp, qb;            /* queued packets / bytes in the transport */
  uint64_t drop_since_ms;   /* 0 when not dropping */
  uint64_t drops;
  uint64_t last_congestion_ms;
  uint64_t kf_window_ms;
  uint32_t kf_count;
  /* Peer address for the per-IP count; a union of the two families
   * instead of sockaddr_storage keeps 100 bytes off every session. */
  union {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
  } peer;
};

/* One item handed to a worker from another thread. */
typedef struct vcg__inbox_item {
  struct vcg__inbox_item *next;
  vcg_packet_t *p;
  uint64_t origin;
  char room[];
} vcg__inbox_item_t;

enum { VCG__RUNNING = 0, VCG__DRAINING = 1, VCG__STOPPING = 2, VCG__STOPPED = 3 };

struct vcg__worker {
  vcg__process_t *proc;
  /* The configuration generation this worker runs on.  Worker thread
   * only: a reload hands the next one over through cmd_reload, and the
   * main thread frees the old one once every worker has switched. */
  const vcg__config_t *cfg;
  const vcg__config_t *_Atomic cfg_next; /* set by main, taken by the worker */
  atomic_int cmd_reload;
  atomic_size_t max_msg;     /* cfg's max_message_size, for other threads */
  unsigned index;
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t async;          /* inbox and commands from other threads */
  uv_timer_t drain_timer;
  uv_mutex_t qlock;
  vcg__inbox_item_t *inbox_head, *inbox_tail;
  atomic_int cmd_drain, cmd_stop;
  atomic_int finished;       /* set by the worker, read by main */
  int state;
  int start_rc;
  uv_sem_t started;          /* posted once start has finished */
  struct vcg_worker *transports;
  size_t ntransports;
  struct vcg_worker bus;     /* bus.pc NULL: no bus */
  int pending_stops;
  vcg__rooms_t rooms;
  vcg_htab_t sessions;       /* vcg_session_t by id (idnode) */
  struct vcg__leave *leaves_head, *leaves_tail; /* presence: LEFT in grace */
  uv_timer_t leave_timer;
  size_t nsessions;
  uint64_t rng[2];
  vcg__stats_t stats;
};

#define VCG__MAX_INFO 64
/* Facts plugins publish for each other (host->info_set / info_get). */
typedef struct vcg__info {
  uv_mutex_t lock;
  size_t n;
  char *key[VCG__MAX_INFO];
  char *val[VCG__MAX_INFO];
} vcg__info_t;

struct vcg__process {
  vcg__config_t *cfg;
  vcg__log_t *log;
  vcg__limits_t limits;
  const vcg_host_api_t *host;
  vcg__worker_t *workers;
  unsigned nworkers;
  uv_async_t *done_async;    /* main loop: a worker finished */
  atomic_int workers_done;
  atomic_int warned_no_secret; /* the "no secret" ERROR is logged once */
  /* Process state for /readyz and the metrics; main thread writes. */
  atomic_int started;        /* every worker started: every listener bound */
  atomic_int draining;       /* SIGTERM/SIGINT came */
  vcg__ctr_t reloads_ok, reloads_failed, last_reload_ok_s;
  atomic_uint reload_acks;   /* workers that took the new generation */
  vcg__info_t info;
};

/* Hand one reference of p to s's transport, counting it in s's queue depth
 * (the transport reports the true depth with session_set_queued later). */
static inline int vcg__session_send(vcg_session_t *s, vcg_packet_t *p) {
  s->qp++;
  s->qb += p->len;
  VCG__ADD(s->t->core->stats.queued_bytes, p->len);
  return s->t->top->send(s->t->inst, s->conn, p);
}

/* Ask s's transport to close it (once); session_closed() follows later. */
static inline void vcg__session_close(vcg_session_t *s, int why, const char *reason) {
  if (s->closing) return;
  s->closing = 1;
  s->close_why = why;
  s->t->top->close(s->t->inst, s->conn, why, reason);
}

static inline uint64_t vcg__now_ms(vcg__worker_t *w) { return uv_now(&w->loop); }

static inline int vcg__session_id_eq(const vcg_hnode_t *n, const void *id) {
  return vcg_container_of(n, vcg_session_t, idnode)->id == *(const uint64_t *)id;
}
/* The local session with this id on w, or NULL (ids are random: the
 * table hashes them with no seed). */
static inline vcg_session_t *vcg__session_find(vcg__worker_t *w, uint64_t id) {
  vcg_hnode_t *n = id ? vcg_htab_find(&w->sessions, vcg_hash_mix(id), vcg__session_id_eq, &id) : NULL;
  return n ? vcg_container_of(n, vcg_session_t, idnode) : NULL;
}

#define VCG__LOG(w, lvl, sid, ...)                                            \
  do {                                                                        \
    if (vcg__log_on((w)->proc->log, lvl))                                     \
      vcg__logf((w)->proc->log, lvl, "core", sid, __VA_ARGS__);               \
  } while (0)

/* host.c */
/* host->log(NULL, ...) during configure/init, before any worker exists,
 * writes to this logger; main sets it once before loading plugins. */
void vcg__host_set_main_log(vcg__log_t *l);
int vcg__info_init(vcg__info_t *in);
void vcg__info_free(vcg__info_t *in);
extern const vcg_host_api_t vcg__host_api;
void vcg__counter_add(vcg_worker_t *b, const char *name, uint64_t v);
#endif
