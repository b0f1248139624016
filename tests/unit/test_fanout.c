/* Rooms, fan-out and the drop policy, through the core's real session code
 * with a recording transport: every member gets one reference of the one
 * packet, the sender never; video is dropped first, control never; a
 * consumer that keeps dropping is closed.  Each case builds its own worker
 * (fixture()) and runs in its own process (RUN). */
#include "core_fixture.h"

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
  /* The budget (8 packets) plus the never-dropped class's allowance (256). */
  for (int i = 0; i < 8 + 256; i++) vcg__session_deliver(conns[0].s, buf, n);
  CHECK_EQ(conns[1].received, 264);
  CHECK_EQ(conns[1].closed_why, 0);
  vcg__session_deliver(conns[0].s, buf, n);
  CHECK_EQ(conns[1].closed_why, VCG_CLOSE_SLOW);
  CHECK_EQ(conns[2].received, 265);
  CHECK_EQ(conns[2].closed_why, 0);
  teardown();
}

TEST(large_control_is_bulk) {
  fixture();
  four_members();
  stuck_bob();
  size_t n = wrap(buf, VCG_PT_AES_KEY, 0, 20000); /* over 16 KiB: not key exchange */
  for (int i = 0; i < 10; i++) vcg__session_deliver(conns[0].s, buf, n);
  CHECK_EQ(conns[1].received, 4); /* dropped like video, at half the budget */
  CHECK_EQ(conns[1].closed_why, 0);
  CHECK_EQ(conns[2].received, 10);
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
  RUN(control_never_dropped_then_slow_close, "key exchange is never dropped; past its small allowance: closed as slow");
  RUN(large_control_is_bulk, "a \"control\" packet over 16 KiB is bulk, dropped like video");
  RUN(room_capacity_and_address_limit, "a full room refuses with OVERLOAD, the address limit with LIMIT");
  RUN(names_refused, "the system identity is forbidden, a bad room name a bad request");
  RUN(close_frees_room_and_slots, "closing frees the room and every limit slot");
  RUN(deadlines_by_class, "deadlines: video 150 ms, audio 500 ms, key exchange never; encrypted by size");
  RUN(shed_counts_and_tells_sender, "a packet shed past its deadline is counted and its sender told");
  return TAP_DONE();
}
