/* Presence and what the relay vouches for (core/presence.c, the checks in
 * core/session.c): PARTICIPANT_JOINED on a member's first packet that is
 * not an RTT probe, the member list to a joiner, LEFT after the grace and
 * a rejoin that cancels it, observers, and packets no client may send. */
#include "core_fixture.h"

static uint8_t pkt[4096];

static size_t rtt(uint8_t *out) { return wrap(out, VCG_PT_MEDIA, 5, 8); }

/* A PacketWrapper with the given user_id and session_id. */
static size_t as_user(uint8_t *out, int type, const char *user, uint64_t sid) {
  Vcgate__PacketWrapper pw = VCGATE__PACKET_WRAPPER__INIT;
  pw.packet_type = (Vcgate__PacketWrapper__PacketType)type;
  pw.user_id.data = (uint8_t *)user;
  pw.user_id.len = strlen(user);
  pw.session_id = sid;
  return vcgate__packet_wrapper__pack(&pw, out);
}

/* A fresh worker with alice and bob active in r1. */
static void alice_and_bob(void) {
  int why;
  fixture();
  open_s(b, 0, "alice", "r1", &why);
  open_s(b, 1, "bob", "r1", &why);
  activate(0);
  activate(1);
}

TEST(rtt_only_never_announced) {
  fixture();
  int why;
  open_s(b, 0, "alice", "r1", &why);
  activate(0);
  open_s(b, 1, "bob", "r1", &why);
  reset_counts();
  for (int i = 0; i < 5; i++) vcg__session_deliver(conns[1].s, pkt, rtt(pkt));
  CHECK_EQ(conns[1].received, 5); /* its echoes */
  CHECK_EQ(conns[0].received, 0); /* alice hears nothing of bob */
  CHECK_EQ(conns[1].s->active, 0);
  teardown();
}

TEST(first_packet_announces) {
  fixture();
  int why;
  open_s(b, 0, "alice", "r1", &why);
  activate(0);
  open_s(b, 1, "bob", "r1", &why);
  reset_counts();
  activate(1);
  uint64_t to = 1;
  Vcgate__MeetingPacket *mp = last_event(0, &to);
  CHECK(mp != NULL, "alice got a MEETING event");
  if (mp) {
    CHECK_EQ((int)mp->event_type, VCG__EV_PARTICIPANT_JOINED);
    CHECK_STREQ(mp->room_id, "r1");
    CHECK_UEQ(mp->session_id, conns[1].s->id);
    CHECK(mp->target_user_id.len == 3 && memcmp(mp->target_user_id.data, "bob", 3) == 0, "target bob");
    CHECK(mp->display_name.len == 3, "display name defaults to the identity");
    CHECK_STREQ(mp->message, "bob has joined the meeting");
    CHECK_UEQ(to, 0); /* for the whole room */
    vcgate__meeting_packet__free_unpacked(mp, NULL);
  }
  teardown();
}

TEST(joiner_gets_member_list) {
  int why;
  alice_and_bob();
  open_s(b, 2, "carol", "r1", &why);
  reset_counts();
  activate(2);
  CHECK_EQ(conns[2].received, 2); /* one JOINED per member present */
  uint64_t to = 0;
  Vcgate__MeetingPacket *mp = last_event(2, &to);
  CHECK(mp && (int)mp->event_type == VCG__EV_PARTICIPANT_JOINED, "a JOINED");
  CHECK_UEQ(to, conns[2].s->id); /* addressed to carol */
  if (mp) vcgate__meeting_packet__free_unpacked(mp, NULL);
  teardown();
}

TEST(left_after_grace) {
  alice_and_bob();
  reset_counts();
  uint64_t bob = conns[1].s->id;
  closed(1);
  CHECK_EQ(conns[0].received, 0); /* not at once: the grace */
  uint64_t start = uv_hrtime();
  while (conns[0].received == 0 && uv_hrtime() - start < 3000000000ull)
    uv_run(&w.loop, UV_RUN_ONCE);
  uint64_t ms = (uv_hrtime() - start) / 1000000;
  Vcgate__MeetingPacket *mp = last_event(0, NULL);
  CHECK(mp && (int)mp->event_type == VCG__EV_PARTICIPANT_LEFT, "alice is told bob left");
  if (mp) {
    CHECK_UEQ(mp->session_id, bob);
    vcgate__meeting_packet__free_unpacked(mp, NULL);
  }
  CHECK(ms >= 1900 && ms < 2900, "after the 2 s grace (%llu ms)", (unsigned long long)ms);
  teardown();
}

TEST(rejoin_within_grace_suppressed) {
  int why;
  alice_and_bob();
  closed(1);
  open_s(b, 2, "bob", "r1", &why);
  reset_counts();
  activate(2);
  CHECK_EQ(conns[0].received, 0); /* no JOINED for the rejoin */
  CHECK(w.leaves_head == NULL, "and the LEFT is cancelled");
  CHECK_EQ(conns[2].received, 1); /* the rejoiner still learns of alice */
  teardown();
}

TEST(observers) {
  fixture();
  int why;
  open_s(b, 0, "alice", "r1", &why);
  activate(0);
  open_s(b, 1, "eve", "r1", &why);
  conns[1].s->observer = 1; /* as a token with observer = true makes it */
  reset_counts();
  vcg__session_deliver(conns[1].s, pkt, wrap(pkt, VCG_PT_MEDIA, 1, 100));
  vcg__session_deliver(conns[1].s, pkt, wrap(pkt, VCG_PT_AES_KEY, 0, 10));
  vcg__session_deliver(conns[1].s, pkt, wrap(pkt, VCG_PT_HEALTH, 0, 10));
  CHECK_EQ(conns[0].received, 0); /* nothing forwarded, no JOINED */
  CHECK_EQ(w.stats.packets_refused, 2); /* media and key counted; HEALTH is allowed */
  vcg__session_deliver(conns[1].s, pkt, rtt(pkt));
  CHECK_EQ(conns[1].received, 1); /* RTT is echoed */
  vcg__session_deliver(conns[0].s, pkt, wrap(pkt, VCG_PT_MEDIA, 2, 100));
  CHECK_EQ(conns[1].received, 2); /* an observer receives everything */
  teardown();
}

TEST(server_only_packets_refused) {
  fixture();
  four_members();
  vcg__session_deliver(conns[0].s, pkt, as_user(pkt, VCG_PT_MEDIA, VCG_SYSTEM_USER, 0));
  vcg__session_deliver(conns[0].s, pkt, as_user(pkt, VCG_PT_MEETING, "alice", 0));
  vcg__session_deliver(conns[0].s, pkt, as_user(pkt, VCG_PT_SESSION_ASSIGNED, "alice", 0));
  vcg__session_deliver(conns[0].s, pkt, as_user(pkt, VCG_PT_CONGESTION, "alice", 0));
  CHECK_EQ(conns[1].received, 0);
  CHECK_EQ(w.stats.packets_refused, 4);
  teardown();
}

TEST(identity_enforced) {
  fixture();
  four_members();
  vcg__session_deliver(conns[0].s, pkt, as_user(pkt, VCG_PT_AES_KEY, "bob", 0));
  CHECK_EQ(conns[2].received, 0); /* alice may not speak as bob */
  CHECK_EQ(w.stats.packets_refused, 1);
  vcg__session_deliver(conns[0].s, pkt, as_user(pkt, VCG_PT_AES_KEY, "alice", 0));
  CHECK_EQ(conns[2].received, 1); /* as herself she may */
  cfg.core.enforce_identity = 0;
  vcg__session_deliver(conns[0].s, pkt, as_user(pkt, VCG_PT_AES_KEY, "bob", 0));
  CHECK_EQ(conns[2].received, 2); /* unless the option is off */
  teardown();
}

TEST(session_id_is_the_senders) {
  fixture();
  four_members();
  vcg__session_deliver(conns[0].s, pkt, as_user(pkt, VCG_PT_AES_KEY, "alice", conns[1].s->id));
  CHECK_EQ(conns[2].received, 1);
  CHECK_UEQ(conns[2].last->session_id, conns[0].s->id); /* not bob's */
  teardown();
}

TEST(bus_event_to_one_session) {
  fixture();
  four_members();
  vcg__event_t e = { .type = VCG__EV_PARTICIPANT_JOINED, .room = "r1", .target = "zed",
                     .session_id = 77, .to = conns[1].s->id };
  vcg_packet_t *p = vcg__packet_event(&e);
  CHECK(vcg__presence_bus_event(&w, "r1", p) == 1, "an event");
  CHECK_EQ(conns[1].received, 1); /* only its addressee */
  CHECK_EQ(conns[0].received + conns[2].received, 0);
  vcg__packet_unref(p);
  e.to = 0;
  p = vcg__packet_event(&e);
  vcg__presence_bus_event(&w, "r1", p);
  CHECK_EQ(conns[0].received, 1); /* a JOINED from another node: to everyone */
  CHECK_EQ(conns[2].received, 1);
  vcg__packet_unref(p);
  teardown();
}

int main(void) {
  RUN(rtt_only_never_announced, "an RTT-only (election) session is never announced");
  RUN(first_packet_announces, "the first packet that is not RTT announces PARTICIPANT_JOINED");
  RUN(joiner_gets_member_list, "a joiner is told of every member present, addressed to it");
  RUN(left_after_grace, "PARTICIPANT_LEFT follows a disconnect after the 2 s grace");
  RUN(rejoin_within_grace_suppressed, "a rejoin within the grace cancels the LEFT and the new JOINED");
  RUN(observers, "observers are not announced, may send RTT and HEALTH only, receive everything");
  RUN(server_only_packets_refused, "the system identity and server-only types from a client are dropped");
  RUN(identity_enforced, "a packet speaking as another identity is dropped (enforce_identity)");
  RUN(session_id_is_the_senders, "a relayed packet carries its sender's session id, whatever it claimed");
  RUN(bus_event_to_one_session, "a bus event addressed to one session reaches only it");
  return TAP_DONE();
}
