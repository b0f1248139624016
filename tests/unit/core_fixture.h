/* The fixture of the core's unit tests (test_fanout.c, test_presence.c):
 * a worker with one recording transport, driven through the real session
 * code.  Each case calls fixture() and teardown(); RUN forks per case. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include "core.h"
#include "session.h"
#include "worker.h"
#include "presence.h"
#include "packet_wrapper.pb-c.h"
#include "media_packet.pb-c.h"
#include "meeting_packet.pb-c.h"
#include "tap.h"

#define MAXC 16
#define HIST 16
typedef struct conn {
  int id;
  int received, closed_why;
  int stuck;              /* never drains its queue */
  vcg_packet_t *last;
  int types[HIST];        /* packet types of the last HIST packets, newest last */
  size_t qp, qb;
  vcg_session_t *s;
} conn_t;
static conn_t conns[MAXC];

static int t_send(vcg_instance_t *i, void *c, vcg_packet_t *p) {
  conn_t *k = c;
  k->received++;
  memmove(k->types, k->types + 1, sizeof k->types - sizeof k->types[0]);
  k->types[HIST - 1] = p->type;
  if (k->last) vcg__packet_unref(k->last);
  k->last = p; /* keep the newest to compare identity */
  if (!k->stuck && k->s) vcg__session_set_queued(k->s, 0, 0); /* written at once */
  return 0;
}
static void t_close(vcg_instance_t *i, void *c, int why, const char *r) { ((conn_t *)c)->closed_why = why; }
static int t_start(const vcg_host_api_t *h, vcg_plugin_state_t *s, const void *c, vcg_worker_t *w,
                   vcg_instance_t **i) { return 0; }
static void t_drain(vcg_instance_t *i) {}
static void t_stop(vcg_instance_t *i, vcg_stopped_cb cb) {}
static const vcg_transport_ops_t ops = { .start = t_start, .drain = t_drain, .stop = t_stop,
                                         .send = t_send, .close = t_close };
static const vcg_plugin_t desc = VCG_PLUGIN_DESCRIPTOR(.name = "rec", .kind = VCG_PLUGIN_TRANSPORT,
                                                       .transport = &ops);

static size_t wrap(uint8_t *out, int type, int media_type, size_t payload) {
  static uint8_t inner[70000], data[70000];
  memset(data, 'x', payload);
  Vcgate__MediaPacket mp = VCGATE__MEDIA_PACKET__INIT;
  mp.media_type = (Vcgate__MediaPacket__MediaType)media_type;
  mp.data.data = data;
  mp.data.len = payload;
  size_t il = vcgate__media_packet__pack(&mp, inner);
  Vcgate__PacketWrapper pw = VCGATE__PACKET_WRAPPER__INIT;
  pw.packet_type = (Vcgate__PacketWrapper__PacketType)type;
  /* No user_id: a client's own identity is optional (enforce_identity
   * checks one that is set). */
  pw.data.data = inner;
  pw.data.len = il;
  return vcgate__packet_wrapper__pack(&pw, out);
}

static vcg_session_t *open_s(vcg_worker_t *bind, int k, const char *user, const char *room, int *why) {
  struct sockaddr_in sa = { .sin_family = AF_INET };
  char target[300];
  inet_pton(AF_INET, "192.0.2.1", &sa.sin_addr);
  /* The target as a client sends it: the identity percent-encoded. */
  size_t o = (size_t)snprintf(target, sizeof target, "/lobby/");
  for (const char *c = user; *c && o < sizeof target - 4; c++)
    o += (size_t)(isalnum((unsigned char)*c) ? snprintf(target + o, 2, "%c", *c)
                                             : snprintf(target + o, 4, "%%%02X", (unsigned char)*c));
  snprintf(target + o, sizeof target - o, "/%s", room);
  vcg_session_info_t info = { .size = sizeof info, .peer = (struct sockaddr *)&sa,
                              .conn = &conns[k], .target = target };
  char msg[128];
  vcg_session_t *s = NULL;
  conns[k].id = k;
  if (vcg__session_open(bind, &info, &s, why, msg, sizeof msg) != 0) return NULL;
  conns[k].s = s;
  return s;
}

static vcg__log_t log_;
static vcg__plugin_t loaded = { .desc = &desc };
static vcg__plugin_conf_t pc = { .plugin = "rec", .name = "rec", .loaded = &loaded };
static vcg__config_t cfg = { .file = "test", .transports = &pc, .ntransports = 1 };
static vcg__process_t proc;
static vcg__worker_t w;
static vcg_worker_t *b;
static uint8_t buf[80000] __attribute__((unused));

/* A worker with one recording transport, an 8-packet queue budget, rooms
 * of at most 4 and 6 connections per address. */
static void fixture(void) {
  vcg__log_init(&log_, 2);
  log_.level = VCG_LOG_ERROR;
  vcg__errs_t e = { 0 };
  vcg__conf_fill(vcg__core_options, NULL, &cfg.core, NULL, "core.", "test", &e);
  cfg.core.queue_max_packets = 8;
  cfg.core.max_sessions_per_room = 4;
  cfg.core.max_connections_per_ip = 6;
  proc = (vcg__process_t){ .cfg = &cfg, .log = &log_, .host = &vcg__host_api };
  char err[128];
  vcg__limits_init(&proc.limits, 100, 6, cfg.core.trusted_addresses, err, sizeof err);
  CHECK_EQ(vcg__worker_init(&w, &proc, 0), 0);
  b = &w.transports[0];
}

static void teardown(void) {
  for (int k = 0; k < MAXC; k++)
    if (conns[k].s) vcg__session_closed(conns[k].s);
  for (int k = 0; k < MAXC; k++) if (conns[k].last) vcg__packet_unref(conns[k].last);
  vcg__presence_stop(&w);
  uv_close((uv_handle_t *)&w.async, NULL);
  uv_close((uv_handle_t *)&w.drain_timer, NULL);
  uv_close((uv_handle_t *)&w.leave_timer, NULL);
  uv_run(&w.loop, UV_RUN_DEFAULT);
  vcg__worker_free(&w);
  uv_loop_close(&w.loop);
  vcg__limits_free(&proc.limits);
  vcg__conf_release(vcg__core_options, &cfg.core);
}

static void reset_counts(void) {
  for (int k = 0; k < MAXC; k++) conns[k].received = 0;
}

/* Every member announces itself (a HEALTH packet activates it, presence
 * sends the PARTICIPANT_JOINED events), so later counts are of relayed
 * packets only. */
static void activate(int k) {
  uint8_t h[64];
  vcg__session_deliver(conns[k].s, h, wrap(h, VCG_PT_HEALTH, 0, 1));
}

/* alice, bob, carol in r1 and dave in r2, all active, counts reset. */
static void four_members(void) {
  int why = 0;
  open_s(b, 0, "alice", "r1", &why);
  open_s(b, 1, "bob", "r1", &why);
  open_s(b, 2, "carol", "r1", &why);
  open_s(b, 3, "dave", "r2", &why);
  for (int k = 0; k < 4; k++) activate(k);
  reset_counts();
}

static void closed(int k) {
  vcg__session_closed(conns[k].s);
  conns[k].s = NULL;
}


/* The MeetingPacket a conn received last, unpacked (free it), or NULL;
 * *to is its PacketWrapper.session_id (the addressee). */
__attribute__((unused)) static Vcgate__MeetingPacket *last_event(int k, uint64_t *to) {
  vcg_packet_t *p = conns[k].last;
  if (!p || p->type != VCG_PT_MEETING) return NULL;
  Vcgate__PacketWrapper *pw = vcgate__packet_wrapper__unpack(NULL, p->len, p->data);
  if (!pw) return NULL;
  Vcgate__MeetingPacket *mp = vcgate__meeting_packet__unpack(NULL, pw->data.len, pw->data.data);
  if (to) *to = pw->session_id;
  vcgate__packet_wrapper__free_unpacked(pw, NULL);
  return mp;
}
