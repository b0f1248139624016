/*
 * inproc.c -- the in-process bus: joins the worker loops of one process.
 *
 * Each worker loop has its own sessions and rooms; a room whose members are
 * spread over several workers is joined here.  init() creates a hub (the
 * room table of hub.c, shared by all workers and guarded by its lock);
 * room_join/room_leave record which worker instances have local members in
 * a room; publish() hands one packet reference to every OTHER worker in the
 * room through host->bus_deliver_packet_ts(), which queues it on that
 * worker's loop (uv_async).  The packet bytes are never copied.
 *
 * Threads.  Every vtable call runs on the calling worker's loop thread;
 * the only shared state is the hub.  publish() calls bus_deliver_packet_ts()
 * while holding the hub's read lock: that entry only enqueues and wakes the
 * other loop, never calls back into the bus, and holding the lock
 * guarantees that a worker which has passed stop() (which removes it from
 * the hub under the write lock) is never delivered to afterwards.
 *
 * Several cores in one test process each call init() and get their own
 * hub, so they never see each other's rooms.
 */
#include <stdlib.h>

#include <vcgate/plugin.h>

#include "hub.h"

struct vcg_plugin_state {
  vcg__hub_t *hub;            /* owned; freed in fini() */
};

struct vcg_instance {
  const vcg_host_api_t *host; /* borrowed, valid until stop() completes */
  vcg_plugin_state_t *state;  /* borrowed, outlives every instance */
  vcg_worker_t *w;            /* the worker this instance runs on */
};

static int inproc_init(const vcg_host_api_t *host, const void *conf,
                       vcg_plugin_state_t **state) {
  vcg_plugin_state_t *st = calloc(1, sizeof(*st));
  if (st == NULL) return VCG_ENOMEM;
  int rc = vcg__hub_new(&st->hub);
  if (rc != 0) {
    free(st);
    return rc;
  }
  *state = st;
  return 0;
}

static void inproc_fini(vcg_plugin_state_t *state) {
  if (state == NULL) return;
  vcg__hub_free(state->hub);
  free(state);
}

static int inproc_start(const vcg_host_api_t *host, vcg_plugin_state_t *state,
                        const void *conf, vcg_worker_t *w,
                        vcg_instance_t **inst) {
  if (state == NULL) return VCG_EINVAL;  /* init() always makes one */
  vcg_instance_t *in = calloc(1, sizeof(*in));
  if (in == NULL) return VCG_ENOMEM;
  in->host = host;
  in->state = state;
  in->w = w;
  /* The instance enters the hub room by room, through room_join(). */
  *inst = in;
  return 0;
}

static void inproc_drain(vcg_instance_t *inst) {
  /* Nothing to do: the bus has no clients of its own.  Rooms empty as the
   * transports close their sessions. */
  (void)inst;
}

static void inproc_stop(vcg_instance_t *inst, vcg_stopped_cb cb) {
  vcg_worker_t *w = inst->w;
  /* After this no other worker delivers to w (see the threads note). */
  vcg__hub_leave_all(inst->state->hub, inst);
  free(inst);
  cb(w);
}

static int inproc_room_join(vcg_instance_t *inst, const char *room) {
  int rc = vcg__hub_join(inst->state->hub, room, inst);
  if (rc != 0)
    inst->host->log(inst->w, NULL, VCG_LOG_ERROR,
                    "room %s: cannot join the in-process bus (out of memory)",
                    room);
  return rc;
}

static void inproc_room_leave(vcg_instance_t *inst, const char *room) {
  (void)vcg__hub_leave(inst->state->hub, room, inst);
}

/* What publish() passes to each visit of a room member. */
typedef struct inproc_pub {
  const vcg_host_api_t *host;
  const char *room;
  uint64_t session_id;
  vcg_packet_t *p;
  size_t failed;  /* deliveries the host refused */
} inproc_pub_t;

static void inproc_deliver_one(void *member, void *arg) {
  vcg_instance_t *other = member;
  inproc_pub_t *pub = arg;
  /* One reference per recipient worker; bus_deliver_packet_ts consumes it
   * on every path, including failure. */
  pub->host->packet_ref(pub->p);
  if (pub->host->bus_deliver_packet_ts(other->w, pub->room, pub->session_id,
                                       pub->p) != 0)
    pub->failed++;
}

static int inproc_publish(vcg_instance_t *inst, const char *room,
                          uint64_t session_id, vcg_packet_t *p) {
  inproc_pub_t pub = { inst->host, room, session_id, p, 0 };
  vcg__hub_visit(inst->state->hub, room, inst, inproc_deliver_one, &pub);
  /* Release the reference publish() was given; the recipients hold their
   * own.  With a single worker this is all publish() does. */
  inst->host->packet_unref(p);
  if (pub.failed > 0)
    inst->host->counter_add(inst->w, "inproc_deliver_failed", pub.failed);
  return 0;
}

static const vcg_bus_ops_t inproc_ops = {
  .init = inproc_init,
  .start = inproc_start,
  .drain = inproc_drain,
  .stop = inproc_stop,
  .fini = inproc_fini,
  .room_join = inproc_room_join,
  .room_leave = inproc_room_leave,
  .publish = inproc_publish,
};

static const vcg_plugin_t inproc_plugin = VCG_PLUGIN_DESCRIPTOR(
  .name = "inproc",
  .version = "0.1.0",
  .description = "in-process bus joining the worker loops of one process",
  .kind = VCG_PLUGIN_BUS,
  .options = NULL,
  .conf_size = 0,
  .bus = &inproc_ops,
);

VCG_PLUGIN_DEFINE(inproc_plugin)
