/* Rooms, fan-out and the drop policy, through the core's real session code
 * with a recording transport: every member gets one reference of the one
 * packet, the sender never; video is dropped first, control never; a
 * consumer that keeps dropping is closed.  Each case builds its own worker
 * (fixture()) and runs in its own process (RUN). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include "core.h"
#include "session.h"
#include "worker.h"
#include "packet_wrapper.pb-c.h"
#include "media_packet.pb-c.h"
#include "tap.h"

#define MAXC 16
typedef struct conn {
  int id;
  int received, closed_why;
  int stuck;              /* never drains its queue */
  vcg_packet_t *last;
  size_t qp, qb;
  vcg_session_t *s;
} conn_t;
static conn_t conns[MAXC];

static int t_send(vcg_instance_t *i, void *c, vcg_packet_t *p) {
  conn_t *k = c;
  k->received++;
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
  pw.user_id.data = (uint8_t *)"u";
  pw.user_id.len = 1;
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
static uint8_t buf[80000];

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
  uv_close((uv_handle_t *)&w.async, NULL);
  uv_close((uv_handle_t *)&w.drain_timer, NULL);
  uv_run(&w.loop, UV_RUN_DEFAULT);
  vcg__worker_free(&w);
  uv_loop_close(&w.loop);
  vcg__limits_free(&proc.limits);
  vcg__conf_release(vcg__core_options, &cfg.core);
}

static void reset_counts(void) {
  for (int k = 0; k < MAXC; k++) conns[k].received = 0;
}

/* alice, bob, carol in r1 and dave in r2, counts reset. */
static void four_members(void) {
  int why = 0;
  open_s(b, 0, "alice", "r1", &why);
  open_s(b, 1, "bob", "r1", &why);
  open_s(b, 2, "carol", "r1", &why);
  open_s(b, 3, "dave", "r2", &why);
  reset_counts();
}

static void closed(int k) {
  vcg__session_closed(conns[k].s);
  conns[k].s = NULL;
}

TEST(open_assigns_ids_and_greets) {
  fixture();
  int why = 0;
  vcg_session_t *a = open_s(b, 0, "alice", "r1", &why);
  vcg_session_t *bb = open_s(b, 1, "bob", "r1", &why);
  CHECK(a && bb, "both open");
  if (!a || !bb) return;
  CHECK(a->id && a->id != bb->id, "distinct non-zero ids");
  CHECK_EQ(conns[0].received, 2);
  CHECK_EQ(conns[0].last->type, VCG_PT_MEETING); /* SESSION_ASSIGNED, then MEETING_STARTED */
  teardown();
}

TEST(fanout_to_others_once) {
  fixture();
  four_members();
  size_t n = wrap(buf, VCG_PT_MEDIA, 2, 100);
  vcg__session_deliver(conns[0].s, buf, n);
  CHECK_EQ(conns[0].received, 0); /* never back to the sender */
  CHECK_EQ(conns[1].received, 1);
  CHECK_EQ(conns[2].received, 1);
  CHECK_EQ(conns[3].received, 0); /* other rooms get nothing */
  CHECK(conns[1].last == conns[2].last, "recipients share one packet (no per-recipient copy)");
  CHECK_EQ(atomic_load(&conns[1].last->refs), 2);
  CHECK_UEQ(conns[1].last->session_id, conns[0].s->id);
  teardown();
}

TEST(per_type_rules) {
  fixture();
  four_members();
  size_t n = wrap(buf, VCG_PT_MEDIA, 5, 10);
  vcg__session_deliver(conns[0].s, buf, n);
  CHECK_EQ(conns[0].received, 1); /* RTT: echoed to its sender only */
  CHECK_EQ(conns[1].received, 0);
  n = wrap(buf, VCG_PT_HEALTH, 0, 10);
  vcg__session_deliver(conns[0].s, buf, n);
  n = wrap(buf, VCG_PT_SESSION_ASSIGNED, 0, 0);
  vcg__session_deliver(conns[0].s, buf, n);
  n = wrap(buf, VCG_PT_CONGESTION, 0, 0);
  vcg__session_deliver(conns[0].s, buf, n);
  CHECK_EQ(conns[1].received, 0); /* HEALTH, SESSION_ASSIGNED, CONGESTION not forwarded */
  vcg__session_deliver(conns[0].s, (const uint8_t *)"\xff\xff\xff", 3);
  CHECK_EQ(conns[1].received, 0);
  CHECK_EQ(w.stats.packets_malformed, 1);
  teardown();
}

TEST(keyframe_requests_limited) {
  fixture();
  four_members();
  size_t n = wrap(buf, VCG_PT_MEDIA, 6, 0);
  for (int i = 0; i < 5; i++) vcg__session_deliver(conns[0].s, buf, n);
  CHECK_EQ(conns[1].received, 2);
  teardown();
}

/* bob never drains his queue (8 packets budget). */
static void stuck_bob(void) {
  conns[1].s->qp = 0;
  conns[1].s->qb = 0;
  conns[1].stuck = 1;
}

TEST(video_dropped_first) {
  fixture();
  four_members();
  stuck_bob();
  size_t n = wrap(buf, VCG_PT_MEDIA, 1, 100);
  for (int i = 0; i < 10; i++) vcg__session_deliver(conns[0].s, buf, n);
  CHECK_EQ(conns[1].received, 4); /* half the budget */
  CHECK_EQ(conns[2].received, 10);
  CHECK(conns[0].last && conns[0].last->type == VCG_PT_CONGESTION, "the sender is told of congestion");
  CHECK_UEQ(conns[0].last->session_id, conns[0].s->id);
  teardown();
}

TEST(audio_dropped_at_full_budget) {
  fixture();
  four_members();
  stuck_bob();
  size_t n = wrap(buf, VCG_PT_MEDIA, 2, 100);
  for (int i = 0; i < 10; i++) vcg__session_deliver(conns[0].s, buf, n);
  CHECK_EQ(conns[1].received, 8);
  teardown();
}

TEST(control_never_dropped_then_slow_close) {
  fixture();
  four_members();
  stuck_bob();
  size_t n = wrap(buf, VCG_PT_AES_KEY, 0, 10);
  for (int i = 0; i < 16; i++) vcg__session_deliver(conns[0].s, buf, n);
  CHECK_EQ(conns[1].received, 16);
  CHECK_EQ(conns[1].closed_why, 0);
  vcg__session_deliver(conns[0].s, buf, n);
  CHECK_EQ(conns[1].closed_why, VCG_CLOSE_SLOW); /* past twice the budget */
  CHECK_EQ(conns[2].received, 17);
  CHECK_EQ(conns[2].closed_why, 0);
  teardown();
}

TEST(room_capacity_and_address_limit) {
  fixture();
  four_members();
  int why = 0;
  CHECK(open_s(b, 4, "erin", "r1", &why) != NULL, "a fourth member fits a room of four");
  CHECK(open_s(b, 5, "frank", "r1", &why) == NULL, "a fifth does not");
  CHECK_EQ(why, VCG_CLOSE_OVERLOAD);
  CHECK(open_s(b, 5, "frank", "r3", &why) != NULL, "the sixth connection from the address opens");
  CHECK(open_s(b, 6, "gina", "r3", &why) == NULL, "the seventh does not");
  CHECK_EQ(why, VCG_CLOSE_LIMIT);
  teardown();
}

TEST(names_refused) {
  fixture();
  int why = 0;
  CHECK(open_s(b, 0, "system-&^%$#@!", "r3", &why) == NULL, "the system identity is refused");
  CHECK_EQ(why, VCG_CLOSE_FORBIDDEN);
  CHECK(open_s(b, 0, "gina", "bad.room", &why) == NULL, "a bad room name is refused");
  CHECK_EQ(why, VCG_CLOSE_BAD_REQUEST);
  CHECK_EQ(w.stats.sessions_refused, 2);
  teardown();
}

TEST(close_frees_room_and_slots) {
  fixture();
  four_members();
  closed(3);
  CHECK(vcg__room_find(&w.rooms, "r2") == NULL, "the last member leaving frees the room");
  closed(1);
  size_t n = wrap(buf, VCG_PT_MEDIA, 2, 10);
  vcg__session_deliver(conns[2].s, buf, n);
  CHECK_EQ(conns[0].received, 1);
  CHECK_EQ(conns[1].received, 0); /* a closed session no longer receives */
  closed(0);
  closed(2);
  CHECK_EQ(w.nsessions, 0);
  CHECK_EQ(atomic_load(&proc.limits.total), 0);
  teardown();
}

/* Deliver one packet from alice and return what bob received. */
static vcg_packet_t *relayed(const uint8_t *data, size_t n) {
  conns[1].received = 0;
  vcg__session_deliver(conns[0].s, data, n);
  return conns[1].received ? conns[1].last : NULL;
}

TEST(deadlines_by_class) {
  fixture();
  four_members();
  uint64_t now = uv_now(&w.loop);
  vcg_packet_t *p = relayed(buf, wrap(buf, VCG_PT_MEDIA, 1, 2000));
  CHECK(p != NULL, "video relayed");
  if (p) CHECK_UEQ(vcg__host_api.packet_deadline(p), now + 150);
  p = relayed(buf, wrap(buf, VCG_PT_MEDIA, 2, 100));
  if (p) CHECK_UEQ(vcg__host_api.packet_deadline(p), now + 500);
  p = relayed(buf, wrap(buf, VCG_PT_AES_KEY, 0, 100));
  if (p) CHECK_UEQ(vcg__host_api.packet_deadline(p), UINT64_MAX);
  /* Encrypted media (inner type unknown): small is audio, large video. */
  Vcgate__PacketWrapper pw = VCGATE__PACKET_WRAPPER__INIT;
  static uint8_t cipher[3000];
  memset(cipher, 0x93, sizeof cipher);
  pw.packet_type = VCGATE__PACKET_WRAPPER__PACKET_TYPE__MEDIA;
  pw.data.data = cipher;
  pw.data.len = 200;
  p = relayed(buf, vcgate__packet_wrapper__pack(&pw, buf));
  CHECK(p && p->media_type == -1, "encrypted media has no readable type");
  if (p) CHECK_UEQ(vcg__host_api.packet_deadline(p), now + 500);
  pw.data.len = 2500;
  p = relayed(buf, vcgate__packet_wrapper__pack(&pw, buf));
  if (p) CHECK_UEQ(vcg__host_api.packet_deadline(p), now + 150);
  p = relayed(buf, wrap(buf, 42, 0, 100)); /* a type the relay does not know: bulk */
  if (p) CHECK_UEQ(vcg__host_api.packet_deadline(p), now + 150);
  teardown();
}

TEST(shed_counts_and_tells_sender) {
  fixture();
  four_members();
  vcg_packet_t *p = relayed(buf, wrap(buf, VCG_PT_MEDIA, 1, 2000));
  CHECK(p != NULL, "video relayed");
  if (!p) return;
  conns[1].last = NULL;   /* bob's transport hands its reference back */
  conns[0].received = 0;
  vcg__host_api.packet_shed(conns[1].s, p);
  CHECK_EQ(w.stats.packets_shed, 1);
  CHECK_EQ(conns[1].s->drops, 1);
  CHECK_EQ(conns[0].received, 1);
  CHECK(conns[0].last && conns[0].last->type == VCG_PT_CONGESTION, "alice is told of congestion");
  teardown();
}

int main(void) {
  RUN(open_assigns_ids_and_greets, "sessions get distinct ids, SESSION_ASSIGNED then MEETING_STARTED");
  RUN(fanout_to_others_once, "every other member gets one shared, stamped reference; the sender none");
  RUN(per_type_rules, "RTT echoed; HEALTH, SESSION_ASSIGNED, CONGESTION, malformed bytes not forwarded");
  RUN(keyframe_requests_limited, "keyframe requests are limited to two a second per session");
  RUN(video_dropped_first, "video is dropped at half the queue budget and the sender told");
  RUN(audio_dropped_at_full_budget, "audio is dropped at the full budget");
  RUN(control_never_dropped_then_slow_close, "key exchange is never dropped; past twice the budget: closed as slow");
  RUN(room_capacity_and_address_limit, "a full room refuses with OVERLOAD, the address limit with LIMIT");
  RUN(names_refused, "the system identity is forbidden, a bad room name a bad request");
  RUN(close_frees_room_and_slots, "closing frees the room and every limit slot");
  RUN(deadlines_by_class, "deadlines: video 150 ms, audio 500 ms, key exchange never; encrypted by size");
  RUN(shed_counts_and_tells_sender, "a packet shed past its deadline is counted and its sender told");
  return TAP_DONE();
}
