/*
 * nats.c -- the NATS bus: rooms that span many vcgate processes.
 *
 * Every worker instance owns one NATS connection.  A packet a local
 * session sends is published to `room.{room}.{session_id}`; while a room has
 * local members the instance subscribes to `room.{room}.*`.  The connection
 * is created with no-echo, so it never receives its own publications, and
 * the core delivers locally by itself, so each member receives each packet
 * exactly once: from its own worker for local senders, from NATS for the
 * others (including the other workers of this process, which have their own
 * connections).
 *
 * HOW THREADS CROSS
 * =================
 * nats.c runs on its own threads here: a read thread and a flusher thread
 * per connection, the library's global message-delivery pool, a reconnect
 * thread during outages and one thread that runs connection callbacks.  We
 * do not attach nats.c to the worker's libuv loop through its libuv adapter
 * (adapters/libuv.h), because the adapter refuses the FIRST attach from any
 * thread but the loop's (NATS_ILLEGAL_STATE), and with
 * natsOptions_SetRetryOnFailedConnect the first attach happens on nats.c's
 * reconnect thread whenever NATS is down at start: the connection would
 * never come up.  The adapter also frees its uv handles in close callbacks
 * we cannot observe, so stop() could not know when the loop is clean.
 *
 * The crossings, all of them:
 *  - loop -> nats.c: natsConnection_Publish, Subscribe, Unsubscribe, Drain,
 *    Close, Destroy.  nats.c's API is thread-safe.  Publish appends to the
 *    connection's buffer; the flusher thread writes it.  A full buffer is
 *    written synchronously, bounded by the write_deadline option.
 *  - loop -> thread pool: natsConnection_Connect runs in uv_queue_work so
 *    start() never blocks on DNS, TCP or the NATS handshake.
 *  - nats.c -> core: a received message (delivery pool thread) goes through
 *    host->bus_deliver_ts(), which copies the bytes and wakes the worker's
 *    loop; counters go through host->counter_add_ts().  Nothing else of the
 *    host is called from a nats.c thread.
 *  - nats.c -> this plugin's loop side: connection events (connected,
 *    disconnected, reconnected, closed, async errors) are written as text
 *    into a small bounded ring under inst->mu and announced with
 *    uv_async_send(&inst->async); the async callback logs them on the loop
 *    with host->log (which is not thread-safe).
 *  - Lifetime: inst->refs counts what nats.c may still call back with inst
 *    as closure: 1 for the connection (released by the closed callback, the
 *    last connection callback) and 1 per subscription (released by its
 *    on-complete callback, which nats.c runs after the handler's last
 *    return).  Each release decrements under inst->mu and calls
 *    uv_async_send while still holding it, so the loop, which reads refs
 *    under the same mutex, cannot close the async handle between the
 *    decrement and the send.  stop() finishes (and calls cb(w)) only once
 *    refs is 0: after that no nats.c thread touches inst or the worker.
 */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <nats/nats.h>
#include <uv.h>

#include <vcgate/plugin.h>

#include "htab.h"
#include "subject.h"

#define NATS_DEFAULT_SERVER "nats://127.0.0.1:4222"
#define NATS_EVENT_RING 32      /* events waiting to be logged */
#define NATS_EVENT_LEN 240
#define NATS_ROOM_MAX 512       /* longest room a received subject may name */
#define NATS_WARN_INTERVAL 1000 /* ms between repeated warnings */

typedef struct nats_conf {
  char **servers;
  char *connection_name, *user, *password, *token, *credentials;
  char *tls_ca, *tls_cert, *tls_key;
  int64_t reconnect_wait, max_reconnect, pending_bytes, connect_timeout;
  int64_t write_deadline, drain_timeout;
  int batch;
} nats_conf_t;

#define OPT_S(f, d) VCG_OPTION_STRING(nats_conf_t, f, #f, NULL, d)
static const vcg_option_t nats_options[] = {
  VCG_OPTION_STRLIST(nats_conf_t, servers, "servers",
                     "NATS server URLs of one cluster (default [\"" NATS_DEFAULT_SERVER "\"])"),
  /* Not "name": that key is the host's (the instance name) in every
   * plugin group. */
  OPT_S(connection_name, "connection name shown by the server (default vcgate-wN)"),
  OPT_S(user, "user name (with password)"),
  OPT_S(password, "password (with user)"),
  OPT_S(token, "authentication token"),
  OPT_S(credentials, "NATS credentials file (user JWT and NKey seed)"),
  OPT_S(tls_ca, "CA certificate file (PEM) that verifies the server"),
  OPT_S(tls_cert, "client certificate chain file (PEM), with tls_key"),
  OPT_S(tls_key, "client private key file (PEM), with tls_cert"),
  VCG_OPTION_INT(nats_conf_t, reconnect_wait, "reconnect_wait", 2000, 10, 600000,
                 "milliseconds between reconnect attempts"),
  VCG_OPTION_INT(nats_conf_t, max_reconnect, "max_reconnect", -1, -1, INT32_MAX,
                 "reconnect attempts before giving up (-1 = forever)"),
  VCG_OPTION_INT(nats_conf_t, pending_bytes, "pending_bytes", 8 << 20, 0, INT32_MAX,
                 "bytes of publications buffered during an outage"),
  VCG_OPTION_INT(nats_conf_t, connect_timeout, "connect_timeout", 2000, 100, 600000,
                 "milliseconds allowed for connecting to one server"),
  VCG_OPTION_INT(nats_conf_t, write_deadline, "write_deadline", 2000, 0, 600000,
                 "milliseconds a socket write may block before the connection is reset (0 = none)"),
  VCG_OPTION_INT(nats_conf_t, drain_timeout, "drain_timeout", 2000, 100, 600000,
                 "milliseconds allowed for draining the connection at stop"),
  VCG_OPTION_BOOL(nats_conf_t, batch, "batch", 0,
                  "pack a loop turn's packets of a room into one NATS message on "
                  "vcgate.{room} (vcgate nodes only: videocall.rs relays do not see them)"),
  VCG_OPTION_END
};

typedef struct nats_room {
  vcg_hnode_t node;           /* in inst->rooms, keyed by name */
  natsSubscription *sub;      /* owned; NULL until connected */
  natsSubscription *bsub;     /* vcgate.{room} (batch mode); owned */
  /* batch mode: this turn's packets, published at its end (flush_cb) */
  uint8_t *batch;
  size_t blen, bcap;
  uint32_t bcount;
  struct nats_room *dnext;    /* inst->dirty list */
  int dirty;
  char name[];
} nats_room_t;

typedef struct nats_event {
  int level;
  char text[NATS_EVENT_LEN];
} nats_event_t;

struct vcg_plugin_state {
  int unused;                 /* nats.c keeps its own process-wide state */
};

struct vcg_instance {
  const vcg_host_api_t *host; /* borrowed until stop() completes */
  const nats_conf_t *conf;    /* borrowed until stop() completes */
  vcg_worker_t *w;
  natsOptions *opts;          /* owned */
  natsConnection *nc;         /* owned; loop thread only; NULL until the
                                 connect work is done or when it failed */
  natsConnection *nc_new;     /* written by the connect work */
  natsStatus connect_status;
  char connect_err[NATS_EVENT_LEN];
  uv_work_t connect_req;
  int connecting;             /* connect work queued, not yet completed */
  uv_async_t async;           /* nats.c threads -> loop */

  /* Loop thread only. */
  vcg_htab_t rooms;           /* nats_room_t (room names come from clients) */
  uv_check_t flush;           /* batch mode: publish the turn's batches */
  uv_idle_t nowait;           /* keeps that turn's poll from blocking */
  int flush_active;
  nats_room_t *dirty;         /* rooms with a batch to publish */
  uint64_t last_warn;         /* uv_now of the last rate-limited warning */
  int closing;                /* drain or close of nc has been started */
  vcg_stopped_cb stop_cb;
  atomic_int stopping;        /* set by stop(); read by nats.c threads */

  /* Shared with nats.c threads; guarded by mu. */
  uv_mutex_t mu;
  int refs;
  nats_event_t ring[NATS_EVENT_RING];
  unsigned ring_head, ring_count, ring_dropped;
};

/* ------------------------------------------------ crossing from nats.c */

/* Queue an event for logging on the loop.  Any thread. */
static void VCG_PRINTF(3, 4)
nats_event(vcg_instance_t *inst, int level, const char *fmt, ...) {
  uv_mutex_lock(&inst->mu);
  if (inst->ring_count == NATS_EVENT_RING) {
    inst->ring_dropped++;  /* bounded: the loop is far behind */
  } else {
    nats_event_t *ev =
        &inst->ring[(inst->ring_head + inst->ring_count) % NATS_EVENT_RING];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->text, sizeof(ev->text), fmt, ap);
    va_end(ap);
    ev->level = level;
    inst->ring_count++;
  }
  uv_async_send(&inst->async);
  uv_mutex_unlock(&inst->mu);
}

/* Drop one nats.c-side reference (see "Lifetime" above).  Any thread. */
static void nats_release(vcg_instance_t *inst) {
  uv_mutex_lock(&inst->mu);
  inst->refs--;
  uv_async_send(&inst->async);
  uv_mutex_unlock(&inst->mu);
}

/* A batch (batch mode): every record to the core, in order. */
static void nats_on_batch(vcg_instance_t *inst, const char *room, natsMsg *msg) {
  const uint8_t *b = (const uint8_t *)natsMsg_GetData(msg), *data;
  size_t len = (size_t)natsMsg_GetDataLength(msg), pos = 0, n;
  uint64_t origin, got = 0, failed = 0;
  int r;
  while ((r = vcg__nats_batch_next(b, len, &pos, &origin, &data, &n)) == 1) {
    if (inst->host->bus_deliver_ts(inst->w, room, origin, data, n) != 0) failed++;
    else got++;
  }
  if (r < 0) inst->host->counter_add_ts(inst->w, "nats_bad_batch", 1);
  if (failed) inst->host->counter_add_ts(inst->w, "nats_deliver_failed", failed);
  if (got) inst->host->counter_add_ts(inst->w, "nats_received", got);
}

static void nats_on_msg(natsConnection *nc, natsSubscription *sub,
                        natsMsg *msg, void *closure) {
  vcg_instance_t *inst = closure;
  char room[NATS_ROOM_MAX];
  uint64_t sid;
  if (vcg__nats_parse_batch_subject(natsMsg_GetSubject(msg), room, sizeof(room)) == 0) {
    nats_on_batch(inst, room, msg);
  } else if (vcg__nats_parse_subject(natsMsg_GetSubject(msg), room, sizeof(room),
                                     &sid) != 0) {
    inst->host->counter_add_ts(inst->w, "nats_bad_subject", 1);
  } else if (inst->host->bus_deliver_ts(inst->w, room, sid,
                                        (const uint8_t *)natsMsg_GetData(msg),
                                        (size_t)natsMsg_GetDataLength(msg)) != 0) {
    inst->host->counter_add_ts(inst->w, "nats_deliver_failed", 1);
  } else {
    inst->host->counter_add_ts(inst->w, "nats_received", 1);
  }
  natsMsg_Destroy(msg);
}

static void nats_on_sub_complete(void *closure) {
  nats_release(closure);
}

/* The host shows the connection's state in /readyz and the metrics. */
static void nats_state(vcg_instance_t *inst, int up) {
  if (inst->host->size >= offsetof(vcg_host_api_t, bus_state_ts) + sizeof(void *) &&
      inst->host->bus_state_ts != NULL)
    inst->host->bus_state_ts(inst->w, up);
}

static void nats_on_connected(natsConnection *nc, void *closure) {
  char url[256] = "";
  nats_state(closure, 1);
  natsConnection_GetConnectedUrl(nc, url, sizeof(url));
  nats_event(closure, VCG_LOG_INFO, "connected to %s", url);
}

static void nats_on_disconnected(natsConnection *nc, void *closure) {
  vcg_instance_t *inst = closure;
  nats_state(inst, 0);
  if (atomic_load(&inst->stopping)) {
    nats_event(inst, VCG_LOG_DEBUG, "disconnected from NATS (stopping)");
    return;
  }
  inst->host->counter_add_ts(inst->w, "nats_disconnects", 1);
  nats_event(inst, VCG_LOG_WARN,
             "disconnected from NATS: rooms stay local until it is back "
             "(retrying every %" PRId64 " ms)", inst->conf->reconnect_wait);
}

static void nats_on_reconnected(natsConnection *nc, void *closure) {
  vcg_instance_t *inst = closure;
  char url[256] = "";
  natsConnection_GetConnectedUrl(nc, url, sizeof(url));
  nats_state(inst, 1);
  inst->host->counter_add_ts(inst->w, "nats_reconnects", 1);
  nats_event(inst, VCG_LOG_INFO,
             "reconnected to %s: subscriptions restored", url);
}

static void nats_on_closed(natsConnection *nc, void *closure) {
  vcg_instance_t *inst = closure;
  int stopping = atomic_load(&inst->stopping);
  nats_state(inst, 0);
  nats_event(inst, stopping ? VCG_LOG_DEBUG : VCG_LOG_ERROR,
             "NATS connection closed%s", stopping ? "" :
             ": reconnect attempts exhausted, rooms are local only");
  nats_release(inst);  /* the connection's reference: its last callback */
}

static void nats_on_error(natsConnection *nc, natsSubscription *sub,
                          natsStatus err, void *closure) {
  vcg_instance_t *inst = closure;
  inst->host->counter_add_ts(inst->w, "nats_async_errors", 1);
  nats_event(inst, VCG_LOG_WARN, "NATS error: %s", natsStatus_GetText(err));
}

/* ------------------------------------------------------------- rooms */

static int room_eq(const vcg_hnode_t *n, const void *name) {
  return strcmp(vcg_container_of(n, nats_room_t, node)->name, name) == 0;
}

static nats_room_t *room_find(vcg_instance_t *inst, const char *room) {
  vcg_hnode_t *n = vcg_htab_find(&inst->rooms, vcg_hash_str(room, inst->rooms.seed), room_eq, room);
  return n ? vcg_container_of(n, nats_room_t, node) : NULL;
}

/* Subscribe r on the current connection.  A failure (connection closed
 * for good) is logged and the room stays local: local delivery never
 * depends on NATS.  Loop thread. */
static void subscribe_one(vcg_instance_t *inst, natsSubscription **sub, const char *subj) {
  natsStatus s = natsConnection_Subscribe(sub, inst->nc, subj, nats_on_msg, inst);
  if (s != NATS_OK) {
    *sub = NULL;
    inst->host->counter_add(inst->w, "nats_subscribe_failed", 1);
    inst->host->log(inst->w, NULL, VCG_LOG_ERROR, "subscribe %s: %s", subj,
                    natsStatus_GetText(s));
    return;
  }
  /* The reference is taken before the callback can possibly run. */
  uv_mutex_lock(&inst->mu);
  inst->refs++;
  uv_mutex_unlock(&inst->mu);
  if (natsSubscription_SetOnCompleteCB(*sub, nats_on_sub_complete, inst) != NATS_OK)
    nats_release(inst);  /* already closed: no completion will come */
}

static void room_subscribe(vcg_instance_t *inst, nats_room_t *r) {
  char subj[NATS_ROOM_MAX + 16];
  if (vcg__nats_subject(subj, sizeof(subj), r->name, 0, 1) < 0) return;
  subscribe_one(inst, &r->sub, subj);
  if (inst->conf->batch && vcg__nats_batch_subject(subj, sizeof(subj), r->name) > 0)
    subscribe_one(inst, &r->bsub, subj);
}

static void unsubscribe(natsSubscription *sub) {
  if (sub == NULL) return;
  natsSubscription_Unsubscribe(sub);  /* completion releases the ref */
  natsSubscription_Destroy(sub);
}

static void batch_publish(vcg_instance_t *inst, nats_room_t *r);

/* Unsubscribe and free r (already unlinked; its batch goes out first).
 * Loop thread. */
static void room_free(vcg_instance_t *inst, nats_room_t *r) {
  batch_publish(inst, r);
  for (nats_room_t **pp = &inst->dirty; *pp; pp = &(*pp)->dnext)
    if (*pp == r) { *pp = r->dnext; break; }
  unsubscribe(r->sub);
  unsubscribe(r->bsub);
  free(r->batch);
  free(r);
}

static int nats_room_join(vcg_instance_t *inst, const char *room) {
  if (!vcg__nats_room_ok(room) || strlen(room) >= NATS_ROOM_MAX) {
    inst->host->log(inst->w, NULL, VCG_LOG_WARN,
                    "room '%s' cannot be a NATS subject: kept local", room);
    return VCG_EINVAL;
  }
  if (room_find(inst, room) != NULL) return 0;
  size_t len = strlen(room);
  nats_room_t *r = calloc(1, sizeof(*r) + len + 1);
  if (r == NULL) return VCG_ENOMEM;
  memcpy(r->name, room, len + 1);
  /* Before the connection exists the room is only recorded; the connect
   * completion subscribes every recorded room. */
  if (inst->nc != NULL) room_subscribe(inst, r);
  vcg_htab_insert(&inst->rooms, &r->node, vcg_hash_str(r->name, inst->rooms.seed));
  return 0;
}

static void nats_room_leave(vcg_instance_t *inst, const char *room) {
  nats_room_t *r = room_find(inst, room);
  if (r == NULL) return;
  vcg_htab_remove(&inst->rooms, &r->node);
  room_free(inst, r);
}

/* ----------------------------------------------------------- publish */

/* Rate-limited warning: a flood of oversize packets must not flood logs. */
static int nats_warn_due(vcg_instance_t *inst) {
  uint64_t now = uv_now(inst->host->loop(inst->w));
  if (inst->last_warn != 0 && now - inst->last_warn < NATS_WARN_INTERVAL)
    return 0;
  inst->last_warn = now;
  return 1;
}

/* Hand bytes to nats.c for subj.  `count` packets ride in them (a batch
 * carries several).  0 or a negative code; counted and rate-limit logged. */
static int publish_bytes(vcg_instance_t *inst, const char *subj, const uint8_t *data, size_t len,
                         uint64_t count) {
  const vcg_host_api_t *host = inst->host;
  if (inst->nc == NULL || inst->closing) {
    host->counter_add(inst->w, "nats_publish_failed", count);
    return VCG_EAGAIN;
  }
  /* 0 until the first server INFO: nats.c then checks by itself. */
  int64_t max = natsConnection_GetMaxPayload(inst->nc);
  natsStatus s = NATS_MAX_PAYLOAD;
  if (max <= 0 || (int64_t)len <= max)
    s = natsConnection_Publish(inst->nc, subj, data, (int)len);
  if (s == NATS_MAX_PAYLOAD) {
    host->counter_add(inst->w, "nats_oversize", count);
    if (nats_warn_due(inst))
      host->log(inst->w, NULL, VCG_LOG_WARN,
                "%zu bytes for %s exceed the NATS max_payload (%" PRId64 " bytes): not "
                "relayed to other nodes", len, subj, max);
    return VCG_EMSGSIZE;
  }
  if (s != NATS_OK) {
    /* Typically the outage buffer (pending_bytes) is full. */
    host->counter_add(inst->w, "nats_publish_failed", count);
    if (nats_warn_due(inst))
      host->log(inst->w, NULL, VCG_LOG_WARN, "publish to %s failed: %s",
                subj, natsStatus_GetText(s));
    return VCG_ENOBUFS;
  }
  host->counter_add(inst->w, "nats_published", count);
  return 0;
}

/* A batch holds at most this much before it goes out mid-turn: latency
 * and the server's max_payload (1 MiB by default) stay far away. */
#define NATS_BATCH_MAX (64u << 10)

static void batch_publish(vcg_instance_t *inst, nats_room_t *r) {
  char subj[NATS_ROOM_MAX + 16];
  if (!r->blen) return;
  if (vcg__nats_batch_subject(subj, sizeof(subj), r->name) > 0)
    (void)publish_bytes(inst, subj, r->batch, r->blen, r->bcount);
  r->blen = 0;
  r->bcount = 0;
}

/* End of a loop turn (batch mode): every room's batch, one message each. */
static void nats_flush_cb(uv_check_t *h) {
  vcg_instance_t *inst = h->data;
  while (inst->dirty) {
    nats_room_t *r = inst->dirty;
    inst->dirty = r->dnext;
    r->dirty = 0;
    batch_publish(inst, r);
  }
  uv_check_stop(&inst->flush);
  uv_idle_stop(&inst->nowait);
  inst->flush_active = 0;
}

static void nats_nowait_cb(uv_idle_t *h) { (void)h; }

/* Batch mode: add p to its room's batch for the end of this turn.  Returns
 * 1 when it was added, 0 when it must go alone (no room record, or too
 * big to share a message). */
static int batch_add(vcg_instance_t *inst, const char *room, uint64_t session_id,
                     const uint8_t *data, size_t len) {
  nats_room_t *r = room_find(inst, room);
  if (r == NULL) return 0;
  if (len > NATS_BATCH_MAX / 2) {
    batch_publish(inst, r); /* what came before goes first: order holds */
    return 0;
  }
  if (r->blen + len + 20 > NATS_BATCH_MAX) batch_publish(inst, r);
  if (vcg__nats_batch_append(&r->batch, &r->blen, &r->bcap, session_id, data, len) != 0)
    return 0;
  r->bcount++;
  if (!r->dirty) {
    r->dirty = 1;
    r->dnext = inst->dirty;
    inst->dirty = r;
  }
  if (!inst->flush_active) {
    inst->flush_active = 1;
    uv_check_start(&inst->flush, nats_flush_cb);
    uv_idle_start(&inst->nowait, nats_nowait_cb);
  }
  return 1;
}

static int nats_publish(vcg_instance_t *inst, const char *room,
                        uint64_t session_id, vcg_packet_t *p) {
  const vcg_host_api_t *host = inst->host;
  size_t len;
  const uint8_t *data = host->packet_data(p, &len);
  char subj[NATS_ROOM_MAX + 32];
  int rc = 0;

  /* Room events (session id 0) keep their own subject: other relays and
   * meeting services read room.{room}.system. */
  if (inst->conf->batch && session_id != 0 && inst->nc != NULL && !inst->closing &&
      batch_add(inst, room, session_id, data, len)) {
    host->packet_unref(p);
    return 0;
  }
  if (vcg__nats_subject(subj, sizeof(subj), room, session_id, 0) < 0) {
    host->counter_add(inst->w, "nats_publish_failed", 1);
    rc = VCG_EINVAL;
  } else {
    rc = publish_bytes(inst, subj, data, len, 1);
  }
  host->packet_unref(p);
  return rc;
}

/* ----------------------------------------------------------- connect */

static void nats_connect_work(uv_work_t *req) {
  vcg_instance_t *inst = req->data;
  inst->nc_new = NULL;
  inst->connect_status = natsConnection_Connect(&inst->nc_new, inst->opts);
  if (inst->connect_status != NATS_OK &&
      inst->connect_status != NATS_NOT_YET_CONNECTED) {
    /* The error text lives in this thread's nats.c error stack. */
    const char *e = nats_GetLastError(NULL);
    snprintf(inst->connect_err, sizeof(inst->connect_err), "%s",
             e != NULL ? e : natsStatus_GetText(inst->connect_status));
  }
  /* This is a libuv pool thread, not one of nats.c's: the error stack
   * nats.c keeps per thread must be released here or it leaks. */
  nats_ReleaseThreadMemory();
}

static void nats_maybe_finish(vcg_instance_t *inst);

static void nats_connect_done(uv_work_t *req, int status) {
  vcg_instance_t *inst = req->data;
  const vcg_host_api_t *host = inst->host;
  inst->connecting = 0;
  if (status != 0 || inst->nc_new == NULL) {
    /* Cancelled by stop(), or failed for good (bad TLS files, ...): no
     * connection, so no closed callback will release its reference. */
    if (status == 0)
      host->log(inst->w, NULL, VCG_LOG_ERROR,
                "cannot connect to NATS: %s; rooms are local only",
                inst->connect_err);
    nats_release(inst);
    return;
  }
  inst->nc = inst->nc_new;
  inst->nc_new = NULL;
  if (inst->connect_status == NATS_OK) {
    char url[256] = "";
    nats_state(inst, 1);
    natsConnection_GetConnectedUrl(inst->nc, url, sizeof(url));
    host->log(inst->w, NULL, VCG_LOG_INFO, "connected to %s (max_payload %"
              PRId64 " bytes)", url, natsConnection_GetMaxPayload(inst->nc));
  } else {
    host->log(inst->w, NULL, VCG_LOG_WARN,
              "NATS not reachable yet: connecting in the background every %"
              PRId64 " ms; rooms are local until then",
              inst->conf->reconnect_wait);
  }
  if (atomic_load(&inst->stopping)) {
    nats_maybe_finish(inst);
    return;
  }
  size_t i = 0;
  for (vcg_hnode_t *x = vcg_htab_next(&inst->rooms, &i, NULL); x;
       x = vcg_htab_next(&inst->rooms, &i, x)) {
    nats_room_t *r = vcg_container_of(x, nats_room_t, node);
    if (r->sub == NULL) room_subscribe(inst, r);
  }
}

/* Build the nats.c options from conf.  Loop thread (pure setup). */
static int nats_make_opts(vcg_instance_t *inst, char *err, size_t errlen) {
  const nats_conf_t *c = inst->conf;
  natsOptions *o = NULL;
  natsStatus s = natsOptions_Create(&o);
  static const char *def_servers[] = { NATS_DEFAULT_SERVER };
  const char **servers = def_servers;
  int n = 1;
  char name[64];

  if (c->servers != NULL && c->servers[0] != NULL) {
    servers = (const char **)c->servers;
    for (n = 0; c->servers[n] != NULL; n++) {}
  }
  if (c->connection_name == NULL)
    snprintf(name, sizeof(name), "vcgate-w%u", inst->host->worker_index(inst->w));
  else
    snprintf(name, sizeof(name), "%s", c->connection_name);

#define TRY(what, call) \
  do { if (s == NATS_OK && (s = (call)) != NATS_OK) \
         snprintf(err, errlen, "%s: %s", what, natsStatus_GetText(s)); } while (0)
  if (s != NATS_OK) snprintf(err, errlen, "nats options: %s", natsStatus_GetText(s));
  TRY("servers", natsOptions_SetServers(o, servers, n));
  TRY("name", natsOptions_SetName(o, name));
  TRY("no-echo", natsOptions_SetNoEcho(o, true));
  TRY("delivery", natsOptions_UseGlobalMessageDelivery(o, true));
  TRY("reconnect_wait", natsOptions_SetReconnectWait(o, c->reconnect_wait));
  TRY("max_reconnect", natsOptions_SetMaxReconnect(o, (int)c->max_reconnect));
  TRY("pending_bytes", natsOptions_SetReconnectBufSize(o, (int)c->pending_bytes));
  TRY("connect_timeout", natsOptions_SetTimeout(o, c->connect_timeout));
  if (c->write_deadline > 0)
    TRY("write_deadline", natsOptions_SetWriteDeadline(o, c->write_deadline));
  if (c->user != NULL)
    TRY("user", natsOptions_SetUserInfo(o, c->user, c->password));
  if (c->token != NULL) TRY("token", natsOptions_SetToken(o, c->token));
  if (c->credentials != NULL)
    TRY("credentials", natsOptions_SetUserCredentialsFromFiles(o, c->credentials, NULL));
  if (c->tls_ca != NULL || c->tls_cert != NULL)
    TRY("tls", natsOptions_SetSecure(o, true));
  if (c->tls_ca != NULL)
    TRY("tls_ca", natsOptions_LoadCATrustedCertificates(o, c->tls_ca));
  if (c->tls_cert != NULL)
    TRY("tls_cert", natsOptions_LoadCertificatesChain(o, c->tls_cert, c->tls_key));
  /* Start in the background when NATS is down (connectedCb is required
   * for the asynchronous retry). */
  TRY("retry", natsOptions_SetRetryOnFailedConnect(o, true, nats_on_connected, inst));
  TRY("callbacks", natsOptions_SetDisconnectedCB(o, nats_on_disconnected, inst));
  TRY("callbacks", natsOptions_SetReconnectedCB(o, nats_on_reconnected, inst));
  TRY("callbacks", natsOptions_SetClosedCB(o, nats_on_closed, inst));
  TRY("callbacks", natsOptions_SetErrorHandler(o, nats_on_error, inst));
#undef TRY
  if (s != NATS_OK) {
    natsOptions_Destroy(o);
    return VCG_EINVAL;
  }
  inst->opts = o;
  return 0;
}

/* ------------------------------------------------------- loop side */

static void nats_async_cb(uv_async_t *h) {
  vcg_instance_t *inst = h->data;
  nats_event_t ev;
  unsigned dropped;
  for (;;) {
    uv_mutex_lock(&inst->mu);
    int have = inst->ring_count > 0;
    if (have) {
      ev = inst->ring[inst->ring_head];
      inst->ring_head = (inst->ring_head + 1) % NATS_EVENT_RING;
      inst->ring_count--;
    }
    dropped = inst->ring_dropped;
    inst->ring_dropped = 0;
    uv_mutex_unlock(&inst->mu);
    if (dropped > 0)
      inst->host->log(inst->w, NULL, VCG_LOG_WARN,
                      "%u NATS events not logged (too many at once)", dropped);
    if (!have) break;
    inst->host->log(inst->w, NULL, ev.level, "%s", ev.text);
  }
  if (atomic_load(&inst->stopping)) nats_maybe_finish(inst);
}

static void nats_free(vcg_instance_t *inst) {
  if (inst->opts != NULL) natsOptions_Destroy(inst->opts);
  vcg_htab_free(&inst->rooms);
  uv_mutex_destroy(&inst->mu);
  free(inst);
}

/* Close callback of a start() that failed after uv_async_init. */
static void nats_free_cb(uv_handle_t *h) {
  nats_free(h->data);
}

static void nats_closed_cb(uv_handle_t *h) {
  vcg_instance_t *inst = h->data;
  vcg_worker_t *w = inst->w;
  vcg_stopped_cb cb = inst->stop_cb;
  nats_free(inst);
  /* The worker thread called nats.c (publish, subscribe): release the
   * thread-local memory nats.c keeps for it. */
  nats_ReleaseThreadMemory();
  cb(w);
}

/* Finish stop() once nats.c holds no reference to inst.  Loop thread. */
static void nats_maybe_finish(vcg_instance_t *inst) {
  if (inst->connecting || uv_is_closing((uv_handle_t *)&inst->async)) return;
  if (inst->nc != NULL && !inst->closing) {
    inst->closing = 1;
    /* First pass: drain (flushes what we published, then closes without
     * blocking the loop); Close when not connected, which only stops the
     * reconnect thread.  Either way the closed callback follows. */
    if (!natsConnection_IsClosed(inst->nc) &&
        natsConnection_DrainTimeout(inst->nc, inst->conf->drain_timeout) != NATS_OK)
      natsConnection_Close(inst->nc);
  }
  uv_mutex_lock(&inst->mu);
  int refs = inst->refs;
  uv_mutex_unlock(&inst->mu);
  if (refs > 0) return;  /* the last release wakes us through async */
  if (inst->nc != NULL) natsConnection_Destroy(inst->nc);
  inst->nc = NULL;
  uv_close((uv_handle_t *)&inst->flush, NULL);
  uv_close((uv_handle_t *)&inst->nowait, NULL);
  uv_close((uv_handle_t *)&inst->async, nats_closed_cb);
}

static int nats_start(const vcg_host_api_t *host, vcg_plugin_state_t *state,
                      const void *conf, vcg_worker_t *w,
                      vcg_instance_t **out) {
  vcg_instance_t *inst = calloc(1, sizeof(*inst));
  char err[NATS_EVENT_LEN] = "";
  if (inst == NULL) return VCG_ENOMEM;
  inst->host = host;
  inst->conf = conf;
  inst->w = w;
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = (uint64_t)(uintptr_t)inst;
  if (vcg_htab_init(&inst->rooms, 64, seed) != 0) {
    free(inst);
    return VCG_ENOMEM;
  }
  if (uv_mutex_init(&inst->mu) != 0) {
    vcg_htab_free(&inst->rooms);
    free(inst);
    return VCG_ENOMEM;
  }
  int rc = nats_make_opts(inst, err, sizeof(err));
  if (rc != 0) {
    host->log(w, NULL, VCG_LOG_ERROR, "%s", err);
    nats_free(inst);
    return rc;
  }
  rc = uv_async_init(host->loop(w), &inst->async, nats_async_cb);
  if (rc != 0) {
    nats_free(inst);
    return rc;
  }
  inst->async.data = inst;
  /* Batch mode's end-of-turn flush (idle unless batch is on).  They close
   * before the async handle, whose close callback frees inst. */
  uv_check_init(host->loop(w), &inst->flush);
  uv_idle_init(host->loop(w), &inst->nowait);
  inst->flush.data = inst->nowait.data = inst;
  nats_state(inst, 0); /* down until connected */
  inst->connect_req.data = inst;
  inst->refs = 1;  /* the connection's, see "Lifetime" */
  inst->connecting = 1;
  rc = uv_queue_work(host->loop(w), &inst->connect_req, nats_connect_work,
                     nats_connect_done);
  if (rc != 0) {
    /* Nothing of nats.c runs yet: free once the async handle is closed. */
    uv_close((uv_handle_t *)&inst->flush, NULL);
    uv_close((uv_handle_t *)&inst->nowait, NULL);
    uv_close((uv_handle_t *)&inst->async, nats_free_cb);
    return rc;
  }
  *out = inst;
  return 0;
}

static void nats_drain(vcg_instance_t *inst) {
  /* Sessions drain in the transports; the bus keeps relaying until stop()
   * so that the last packets of departing clients still cross nodes. */
  (void)inst;
}

static void nats_stop(vcg_instance_t *inst, vcg_stopped_cb cb) {
  inst->stop_cb = cb;
  atomic_store(&inst->stopping, 1);
  vcg_hnode_t *x;
  while ((x = vcg_htab_pop(&inst->rooms)) != NULL) room_free(inst, vcg_container_of(x, nats_room_t, node));
  if (inst->connecting) uv_cancel((uv_req_t *)&inst->connect_req);
  /* Also when cancelled, connect_done runs and finishes the stop. */
  nats_maybe_finish(inst);
}

static int nats_configure(const void *conf, char *err, size_t errlen) {
  const nats_conf_t *c = conf;
  if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
    snprintf(err, errlen, "%s: tls_cert and tls_key go together",
             c->tls_cert ? "tls_key" : "tls_cert");
    return VCG_EINVAL;
  }
  if ((c->user == NULL) != (c->password == NULL)) {
    snprintf(err, errlen, "%s: user and password go together",
             c->user ? "password" : "user");
    return VCG_EINVAL;
  }
  if ((c->user != NULL) + (c->token != NULL) + (c->credentials != NULL) > 1) {
    snprintf(err, errlen, "token: use one of user/password, token, credentials");
    return VCG_EINVAL;
  }
  return 0;
}

/* Keep the code at addr loaded until the process exits.  nats.c signals
 * the end of nats_CloseAndWait() from its last thread, and detached threads
 * (connection drain) still run a few instructions of libnats after that;
 * if the host then dlclose()s this plugin, and with it libnats, such a
 * thread jumps into unmapped memory (seen as a SIGSEGV at exit, about one
 * stop in fifty).  Pinning libnats, and this plugin whose callbacks return
 * into it, closes that window. */
static void nats_pin(void *addr) {
  Dl_info info;
  if (dladdr(addr, &info) != 0 && info.dli_fname != NULL)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

static int nats_init(const vcg_host_api_t *host, const void *conf,
                     vcg_plugin_state_t **state) {
  vcg_plugin_state_t *st = calloc(1, sizeof(*st));
  if (st == NULL) return VCG_ENOMEM;
  nats_pin((void *)nats_Open);
  nats_pin((void *)nats_init);
  if (nats_Open(-1) != NATS_OK) {
    free(st);
    return VCG_EINVAL;
  }
  *state = st;
  return 0;
}

static void nats_fini(vcg_plugin_state_t *state) {
  /* Every connection is closed (each worker has stopped): wait for nats.c's
   * own threads to end so that unloading the plugin cannot pull libnats
   * from under them.  nats.c cannot be reopened afterwards, which matches
   * init() running once per process. */
  nats_CloseAndWait(5000);
  free(state);
}

static const vcg_bus_ops_t nats_ops = {
  .configure = nats_configure,
  .init = nats_init,
  .start = nats_start,
  .drain = nats_drain,
  .stop = nats_stop,
  .fini = nats_fini,
  .room_join = nats_room_join,
  .room_leave = nats_room_leave,
  .publish = nats_publish,
};

static const vcg_plugin_t nats_plugin = VCG_PLUGIN_DESCRIPTOR(
  .name = "nats",
  .version = "0.1.0",
  .description = "NATS bus: rooms spanning many vcgate processes",
  .kind = VCG_PLUGIN_BUS,
  .options = nats_options,
  .conf_size = sizeof(nats_conf_t),
  .bus = &nats_ops,
);

VCG_PLUGIN_DEFINE(nats_plugin)
