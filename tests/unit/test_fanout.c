/* Rooms, fan-out and the drop policy, through the core's real session code
 * with a recording transport: every member gets one reference of the one
 * packet, the sender never; video is dropped first, control never; a
 * consumer that keeps dropping is closed. */
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

static vcg_session_t *open_s(vcg_worker_t *b, int k, const char *user, const char *room, int *why) {
  struct sockaddr_in sa = { .sin_family = AF_INET };
  inet_pton(AF_INET, "192.0.2.1", &sa.sin_addr);
  vcg_session_info_t info = { sizeof info, user, room, (struct sockaddr *)&sa, &conns[k] };
  char msg[128];
  vcg_session_t *s = NULL;
  conns[k].id = k;
  if (vcg__session_open(b, &info, &s, why, msg, sizeof msg) != 0) return NULL;
  conns[k].s = s;
  return s;
}

int main(void) {
  vcg__log_t log;
  vcg__log_init(&log, 2);
  log.level = VCG_LOG_ERROR;
  vcg__plugin_t loaded = { .desc = &desc };
  vcg__plugin_conf_t pc = { .plugin = "rec", .name = "rec", .loaded = &loaded };
  vcg__config_t cfg = { .file = "test", .transports = &pc, .ntransports = 1 };
  vcg__errs_t e = { 0 };
  vcg__conf_fill(vcg__core_options, NULL, &cfg.core, NULL, "core.", "test", &e);
  cfg.core.queue_max_packets = 8;
  cfg.core.max_sessions_per_room = 4;
  cfg.core.max_connections_per_ip = 6;
  vcg__process_t proc = { .cfg = &cfg, .log = &log, .host = &vcg__host_api };
  char err[128];
  vcg__limits_init(&proc.limits, 100, 6, cfg.core.trusted_addresses, err, sizeof err);
  vcg__worker_t w;
  CHECK(vcg__worker_init(&w, &proc, 0) == 0, "worker initialises");
  vcg_worker_t *b = &w.transports[0];
  int why = 0;

  vcg_session_t *a = open_s(b, 0, "alice", "r1", &why);
  vcg_session_t *bb = open_s(b, 1, "bob", "r1", &why);
  vcg_session_t *c = open_s(b, 2, "carol", "r1", &why);
  vcg_session_t *d = open_s(b, 3, "dave", "r2", &why);
  CHECK(a && bb && c && d && a->id && a->id != bb->id, "sessions open with distinct non-zero ids");
  CHECK(conns[0].received == 2 && conns[0].last->type == VCG_PT_MEETING,
        "a new session is sent SESSION_ASSIGNED then MEETING_STARTED");
  for (int k = 0; k < 4; k++) conns[k].received = 0;

  uint8_t buf[80000];
  size_t n = wrap(buf, VCG_PT_MEDIA, 2, 100);
  vcg__session_deliver(a, buf, n);
  CHECK(conns[0].received == 0, "the sender does not get its own packet");
  CHECK(conns[1].received == 1 && conns[2].received == 1, "every other member gets it once");
  CHECK(conns[3].received == 0, "other rooms get nothing");
  CHECK(conns[1].last == conns[2].last && atomic_load(&conns[1].last->refs) == 2,
        "recipients share one packet (no per-recipient copy)");
  CHECK(conns[1].last->session_id == a->id, "the relayed packet is stamped with the sender's id");

  n = wrap(buf, VCG_PT_MEDIA, 5, 10);
  vcg__session_deliver(a, buf, n);
  CHECK(conns[0].received == 1 && conns[1].received == 1, "RTT is echoed to its sender only");
  n = wrap(buf, VCG_PT_HEALTH, 0, 10);
  vcg__session_deliver(a, buf, n);
  CHECK(conns[1].received == 1 && conns[0].received == 1, "HEALTH is not forwarded");
  vcg__session_deliver(a, (const uint8_t *)"\xff\xff\xff", 3);
  CHECK(conns[1].received == 1 && w.stats.packets_malformed == 1, "malformed bytes are counted, not relayed");

  n = wrap(buf, VCG_PT_SESSION_ASSIGNED, 0, 0);
  vcg__session_deliver(a, buf, n);
  n = wrap(buf, VCG_PT_CONGESTION, 0, 0);
  vcg__session_deliver(a, buf, n);
  CHECK(conns[1].received == 1 && conns[2].received == 1,
        "SESSION_ASSIGNED and CONGESTION from a client are not forwarded");

  n = wrap(buf, VCG_PT_MEDIA, 6, 0);
  for (int i = 0; i < 5; i++) vcg__session_deliver(a, buf, n);
  CHECK(conns[1].received == 3, "keyframe requests are limited to two a second per session");

  /* Drop policy: bob never drains his queue (8 packets budget). */
  for (int k = 0; k < 4; k++) conns[k].received = 0;
  bb->qp = 0; bb->qb = 0;
  conns[1].stuck = 1;
  n = wrap(buf, VCG_PT_MEDIA, 1, 100);
  for (int i = 0; i < 10; i++) vcg__session_deliver(a, buf, n);
  CHECK(conns[1].received == 4, "video is dropped once the queue holds half its budget (got %d)", conns[1].received);
  n = wrap(buf, VCG_PT_MEDIA, 2, 100);
  for (int i = 0; i < 10; i++) vcg__session_deliver(a, buf, n);
  CHECK(conns[1].received == 8, "audio is dropped at the full budget (got %d)", conns[1].received);
  CHECK(conns[0].received >= 1 && conns[0].last->type == VCG_PT_CONGESTION &&
        conns[0].last->session_id == a->id, "the sender is told of congestion");
  n = wrap(buf, VCG_PT_AES_KEY, 0, 10);
  for (int i = 0; i < 8; i++) vcg__session_deliver(a, buf, n);
  CHECK(conns[1].received == 16 && !conns[1].closed_why, "key exchange is never dropped");
  vcg__session_deliver(a, buf, n);
  CHECK(conns[1].closed_why == VCG_CLOSE_SLOW, "past twice the budget the slow consumer is closed");
  CHECK(conns[2].received == 29 && !conns[2].closed_why, "a healthy member got every packet meanwhile (%d)", conns[2].received);

  /* Room capacity and per-address limit. */
  vcg_session_t *e4 = open_s(b, 4, "erin", "r1", &why);
  CHECK(e4 != NULL, "a fourth member fits a room of four");
  CHECK(open_s(b, 5, "frank", "r1", &why) == NULL && why == VCG_CLOSE_OVERLOAD, "a full room refuses with OVERLOAD");
  vcg_session_t *f = open_s(b, 5, "frank", "r3", &why);
  CHECK(f && open_s(b, 6, "gina", "r3", &why) == NULL && why == VCG_CLOSE_LIMIT,
        "the per-address limit refuses the seventh connection");
  CHECK(open_s(b, 6, "system-&^%$#@!", "r3", &why) == NULL && why == VCG_CLOSE_FORBIDDEN,
        "the system identity is forbidden");
  CHECK(open_s(b, 6, "gina", "bad.room", &why) == NULL && why == VCG_CLOSE_BAD_REQUEST,
        "a bad room name is a bad request");

  vcg__session_closed(bb);
  vcg__session_closed(d);
  CHECK(vcg__room_find(&w.rooms, "r2") == NULL, "the last member leaving frees the room");
  for (int k = 0; k < MAXC; k++) conns[k].received = 0;
  n = wrap(buf, VCG_PT_MEDIA, 2, 10);
  vcg__session_deliver(c, buf, n);
  CHECK(conns[0].received == 1 && conns[4].received == 1 && conns[1].received == 0,
        "a closed session no longer receives; the others still do (%d %d %d)", conns[0].received, conns[4].received, conns[1].received);
  vcg__session_closed(a);
  vcg__session_closed(c);
  vcg__session_closed(e4);
  vcg__session_closed(f);
  CHECK(w.nsessions == 0 && atomic_load(&proc.limits.total) == 0, "closing every session returns every slot");
  for (int k = 0; k < MAXC; k++) if (conns[k].last) vcg__packet_unref(conns[k].last);
  uv_close((uv_handle_t *)&w.async, NULL);
  uv_close((uv_handle_t *)&w.drain_timer, NULL);
  uv_run(&w.loop, UV_RUN_DEFAULT);
  w.thread = uv_thread_self();
  vcg__rooms_free(&w.rooms);
  uv_loop_close(&w.loop);
  free(w.transports);
  vcg__limits_free(&proc.limits);
  vcg__conf_release(vcg__core_options, &cfg.core);
  return TAP_DONE();
}
