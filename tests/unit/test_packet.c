/* PacketWrapper header decoding, session-id stamping, server packets. */
#include <stdlib.h>
#include <string.h>
#include "packet.h"
#include "packet_wrapper.pb-c.h"
#include "media_packet.pb-c.h"
#include "meeting_packet.pb-c.h"
#include "tap.h"
#include "pw_oracle.h"

static size_t wrap(uint8_t *out, int type, const char *user, const uint8_t *data, size_t dlen,
                   uint64_t sid) {
  Vcgate__PacketWrapper pw = VCGATE__PACKET_WRAPPER__INIT;
  pw.packet_type = (Vcgate__PacketWrapper__PacketType)type;
  pw.user_id.data = (uint8_t *)user;
  pw.user_id.len = strlen(user);
  pw.data.data = (uint8_t *)data;
  pw.data.len = dlen;
  pw.session_id = sid;
  return vcgate__packet_wrapper__pack(&pw, out);
}

static size_t media(uint8_t *out, int mt) {
  Vcgate__MediaPacket mp = VCGATE__MEDIA_PACKET__INIT;
  mp.media_type = (Vcgate__MediaPacket__MediaType)mt;
  mp.data.data = (uint8_t *)"frame";
  mp.data.len = 5;
  return vcgate__media_packet__pack(&mp, out);
}

static uint8_t buf[4096], inner[256];
static vcg__pw_header_t h;

TEST(decodes_type_and_absent_id) {
  size_t n = wrap(buf, VCG_PT_AES_KEY, "alice", (const uint8_t *)"k", 1, 0);
  CHECK_EQ(vcg__pw_decode(buf, n, &h), 0);
  CHECK_EQ(h.type, VCG_PT_AES_KEY);
  CHECK_UEQ(h.session_id, 0);
}

TEST(stamping_makes_valid_wrapper) {
  size_t n = wrap(buf, VCG_PT_AES_KEY, "alice", (const uint8_t *)"k", 1, 0);
  vcg__pw_decode(buf, n, &h);
  vcg_packet_t *p = vcg__packet_from_wire(buf, n, &h, 0x1122334455667788ull);
  Vcgate__PacketWrapper *pw = vcgate__packet_wrapper__unpack(NULL, p->len, p->data);
  CHECK(pw != NULL, "protobuf-c reads the stamped packet");
  if (pw) {
    CHECK_UEQ(pw->session_id, 0x1122334455667788ull);
    CHECK_EQ(pw->packet_type, VCG_PT_AES_KEY);
    CHECK_EQ(pw->data.len, 1);
    CHECK_EQ(pw->user_id.len, 5);
    vcgate__packet_wrapper__free_unpacked(pw, NULL);
  }
  CHECK_UEQ(p->session_id, 0x1122334455667788ull);
  vcg__packet_unref(p);
}

TEST(own_id_relayed_unchanged) {
  size_t n = wrap(buf, VCG_PT_MEDIA, "bob", inner, media(inner, 1), 42);
  CHECK_EQ(vcg__pw_decode(buf, n, &h), 0);
  CHECK_UEQ(h.session_id, 42);
  CHECK_EQ(h.media_type, 1);
  vcg_packet_t *p = vcg__packet_from_wire(buf, n, &h, 42);
  CHECK_EQ(p->len, n);
  CHECK(memcmp(p->data, buf, n) == 0, "the bytes are unchanged");
  CHECK_UEQ(p->session_id, 42);
  vcg__packet_unref(p);
}

TEST(other_id_overridden) {
  size_t n = wrap(buf, VCG_PT_MEDIA, "bob", inner, media(inner, 1), 42);
  vcg__pw_decode(buf, n, &h);
  vcg_packet_t *p = vcg__packet_from_wire(buf, n, &h, 99);
  CHECK_UEQ(p->session_id, 99);
  Vcgate__PacketWrapper *pw = vcgate__packet_wrapper__unpack(NULL, p->len, p->data);
  CHECK(pw != NULL, "still a PacketWrapper");
  if (pw) {
    CHECK_UEQ(pw->session_id, 99); /* the appended field wins */
    vcgate__packet_wrapper__free_unpacked(pw, NULL);
  }
  vcg__pw_header_t h2;
  CHECK_EQ(vcg__pw_decode(p->data, p->len, &h2), 0);
  CHECK_UEQ(h2.session_id, 99);
  vcg__packet_unref(p);
}

TEST(header_points_at_user_and_data) {
  size_t n = wrap(buf, VCG_PT_MEDIA, "bob", inner, media(inner, 1), 0);
  CHECK_EQ(vcg__pw_decode(buf, n, &h), 0);
  CHECK_EQ(h.user_len, 3);
  CHECK(h.user && memcmp(h.user, "bob", 3) == 0, "user_id found");
  CHECK(h.data && h.data_len > 0, "data found");
}

TEST(reference_counting) {
  size_t n = wrap(buf, VCG_PT_MEDIA, "bob", inner, media(inner, 1), 42);
  vcg__pw_decode(buf, n, &h);
  vcg_packet_t *p = vcg__packet_from_wire(buf, n, &h, 42);
  CHECK_EQ(atomic_load(&p->refs), 1);
  vcg__packet_ref(p);
  CHECK_EQ(atomic_load(&p->refs), 2);
  vcg__packet_unref(p);
  CHECK_EQ(atomic_load(&p->refs), 1); /* one reference left: still alive */
  CHECK_EQ(p->len, n);
  vcg__packet_unref(p); /* the last one frees it (ASan checks nothing is left) */
}

TEST(media_types) {
  size_t n = wrap(buf, VCG_PT_MEDIA, "bob", inner, media(inner, 5), 0);
  CHECK_EQ(vcg__pw_decode(buf, n, &h), 0);
  CHECK_EQ(h.media_type, 5);
  n = wrap(buf, VCG_PT_MEDIA, "bob", (const uint8_t *)"\x93\x11\x02", 3, 0);
  CHECK_EQ(vcg__pw_decode(buf, n, &h), 0);
  CHECK_EQ(h.media_type, -1); /* encrypted: unknown, not an error */
}

static int inner_type(const uint8_t *d, size_t len) {
  size_t n = wrap(buf, VCG_PT_MEDIA, "bob", d, len, 0);
  if (vcg__pw_decode(buf, n, &h) != 0) return -100;
  return h.media_type;
}

TEST(ciphertext_that_starts_like_rtt) {
  /* The first two bytes say RTT / KEYFRAME_REQUEST, the rest is not
   * protobuf: a bad wire type, a length past the end, a runaway varint. */
  CHECK_EQ(inner_type((const uint8_t *)"\x08\x05\x07\x10\x20", 5), -1);
  CHECK_EQ(inner_type((const uint8_t *)"\x08\x06\x12\x40xyz", 6), -1);
  CHECK_EQ(inner_type((const uint8_t *)"\x08\x05\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 13), -1);
  CHECK_EQ(inner_type((const uint8_t *)"\x08\x05\x11\x01\x02", 5), -1); /* fixed64 cut short */
  CHECK_EQ(inner_type((const uint8_t *)"\x08\x05\x00\x01", 4), -1);     /* field number 0 */
  /* media_type with another wire type later: not a MediaPacket. */
  CHECK_EQ(inner_type((const uint8_t *)"\x08\x01\x0a\x00", 4), -1);
  /* A later media_type wins, as in protobuf; other fields are skipped. */
  CHECK_EQ(inner_type((const uint8_t *)"\x08\x01\x12\x01" "a" "\x1d\x01\x02\x03\x04\x08\x05", 12), 5);
  /* Random 160-byte "ciphertexts" that start 08 05: hardly any is
   * well-formed protobuf, so hardly any is taken for an RTT probe. */
  uint8_t ct[160];
  uint32_t x = 12345, rtt = 0;
  for (int k = 0; k < 100000; k++) {
    ct[0] = 0x08;
    ct[1] = 0x05;
    for (size_t i = 2; i < sizeof ct; i++) {
      x = x * 1103515245u + 12345u;
      ct[i] = (uint8_t)(x >> 16);
    }
    rtt += inner_type(ct, sizeof ct) == 5;
  }
  CHECK_LE(rtt, 10);
}

TEST(malformed_refused) {
  const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0xff };
  CHECK_EQ(vcg__pw_decode(garbage, sizeof garbage, &h), VCG_EINVAL);
  const uint8_t truncated[] = { 0x1a, 0x10, 'a', 'b' }; /* data says 16 bytes, has 2 */
  CHECK_EQ(vcg__pw_decode(truncated, sizeof truncated, &h), VCG_EINVAL);
  const uint8_t wrongwire[] = { 0x0a, 0x01, 0x01 }; /* field 1 as bytes: enum expected */
  CHECK_EQ(vcg__pw_decode(wrongwire, sizeof wrongwire, &h), VCG_EINVAL);
}

TEST(unknown_and_empty_accepted) {
  const uint8_t unknownenum[] = { 0x08, 0x63 }; /* packet_type 99: relayed, not rejected */
  CHECK_EQ(vcg__pw_decode(unknownenum, sizeof unknownenum, &h), 0);
  CHECK_EQ(h.type, 99);
  CHECK_EQ(vcg__pw_decode((const uint8_t *)"", 0, &h), 0);
  CHECK_EQ(h.type, 0);
}

TEST(fuzzer_findings) {
  Vcgate__PacketWrapper *ref;
  /* Field number 0: protobuf-c skips it, the specification refuses it. */
  const uint8_t field0[] = { 0x80, 0x00, 0x01 };
  CHECK_EQ(vcg__pw_decode(field0, sizeof field0, &h), VCG_EINVAL);
  CHECK_EQ(oracle_accepts(field0, sizeof field0, &ref), 0);
  if (ref) vcgate__packet_wrapper__free_unpacked(ref, NULL);
  /* A 6-byte length prefix: protobuf-c refuses it, and so do we. */
  const uint8_t longlen[] = { 0x2a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 };
  CHECK_EQ(vcg__pw_decode(longlen, sizeof longlen, &h), VCG_EINVAL);
  CHECK_EQ(oracle_accepts(longlen, sizeof longlen, &ref), 0);
  if (ref) vcgate__packet_wrapper__free_unpacked(ref, NULL);
  /* A 5-byte length prefix is read in full: 2^32 is too long, not 0
   * (tests/fuzz/corpus/packet/len5-2pow32, found by fuzz_packet). */
  const uint8_t len2p32[] = { 0x2a, 0x80, 0x80, 0x80, 0x80, 0x10 };
  CHECK_EQ(vcg__pw_decode(len2p32, sizeof len2p32, &h), VCG_EINVAL);
  CHECK_EQ(oracle_accepts(len2p32, sizeof len2p32, &ref), 0);
  if (ref) vcgate__packet_wrapper__free_unpacked(ref, NULL);
  /* A 5-byte length prefix of 0 is what protobuf-c still reads. */
  const uint8_t len5[] = { 0x2a, 0x80, 0x80, 0x80, 0x80, 0x00 };
  CHECK_EQ(vcg__pw_decode(len5, sizeof len5, &h), 0);
  CHECK_EQ(oracle_accepts(len5, sizeof len5, &ref), 1);
  if (ref) vcgate__packet_wrapper__free_unpacked(ref, NULL);
}

/* Differential fuzz: the header scanner accepts exactly what the rule
 * above accepts and reads the same two fields.  Mutations of valid packets
 * (bit flips, truncation, inserted bytes) plus random bytes; a fixed seed
 * keeps the run repeatable (tests/fuzz/ runs the open-ended version). */
TEST(differential_against_protobuf_c) {
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  int agree = 1, trials = 200000, accepted = 0;
  uint8_t base[512], m[600];
  for (int t = 0; t < trials && agree; t++) {
    seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
    size_t bl = wrap(base, (int)(seed % 12), "user@x", inner, media(inner, (int)(seed >> 8) % 8),
                     (seed >> 16) % 3 ? (seed >> 20) : 0);
    size_t ml = bl;
    memcpy(m, base, bl);
    int kind = (int)((seed >> 40) % 4);
    uint64_t r = seed;
    if (kind == 0) { for (int k = 0; k < 3; k++) { r = r * 6364136223846793005ull + 1; m[(r >> 33) % ml] ^= (uint8_t)(1u << ((r >> 20) % 8)); } }
    else if (kind == 1) ml = (size_t)((r >> 33) % (bl + 1));
    else if (kind == 2) { size_t at = (size_t)((r >> 33) % (bl + 1)); memmove(m + at + 1, m + at, bl - at); m[at] = (uint8_t)(r >> 8); ml++; }
    else { ml = (size_t)((r >> 33) % 24); for (size_t k = 0; k < ml; k++) { r = r * 6364136223846793005ull + 1; m[k] = (uint8_t)(r >> 56); } }
    Vcgate__PacketWrapper *ref;
    int want = oracle_accepts(m, ml, &ref);
    int mine = vcg__pw_decode(m, ml, &h);
    if (want != (mine == 0) ||
        (want && (h.type != (int)ref->packet_type || h.session_id != ref->session_id))) {
      agree = 0;
      printf("#   disagreement on %zu bytes (rule %s, scanner %d):", ml, want ? "accepts" : "refuses", mine);
      for (size_t k = 0; k < ml && k < 64; k++) printf(" %02x", m[k]);
      printf("\n");
    }
    accepted += want;
    if (ref) vcgate__packet_wrapper__free_unpacked(ref, NULL);
  }
  CHECK(agree, "agrees on %d inputs (%d valid)", trials, accepted);
}

TEST(session_assigned_packet) {
  vcg_packet_t *p = vcg__packet_session_assigned(77);
  Vcgate__PacketWrapper *pw = vcgate__packet_wrapper__unpack(NULL, p->len, p->data);
  CHECK(pw != NULL, "decodes");
  if (pw) {
    CHECK_EQ(pw->packet_type, VCG_PT_SESSION_ASSIGNED);
    CHECK_UEQ(pw->session_id, 77);
    CHECK_EQ(pw->user_id.len, strlen(VCG_SYSTEM_USER));
    CHECK(memcmp(pw->user_id.data, VCG_SYSTEM_USER, pw->user_id.len) == 0, "system identity");
    CHECK_EQ(pw->data.len, 0);
    vcgate__packet_wrapper__free_unpacked(pw, NULL);
  }
  vcg__packet_unref(p);
}

TEST(meeting_started_packet) {
  vcg__event_t e = { .type = VCG__EV_MEETING_STARTED, .room = "room1", .start_ms = 1234,
                     .creator = "alice" };
  vcg_packet_t *p = vcg__packet_event(&e);
  Vcgate__PacketWrapper *pw = vcgate__packet_wrapper__unpack(NULL, p->len, p->data);
  Vcgate__MeetingPacket *mp = pw ? vcgate__meeting_packet__unpack(NULL, pw->data.len, pw->data.data) : NULL;
  CHECK(mp != NULL, "decodes");
  if (mp) {
    CHECK_EQ(pw->packet_type, VCG_PT_MEETING);
    CHECK_EQ(mp->event_type, 1);
    CHECK_STREQ(mp->room_id, "room1");
    CHECK_UEQ(mp->start_time_ms, 1234);
    CHECK_EQ(mp->creator_id.len, 5);
    vcgate__meeting_packet__free_unpacked(mp, NULL);
  }
  if (pw) vcgate__packet_wrapper__free_unpacked(pw, NULL);
  vcg__packet_unref(p);
}

int main(void) {
  RUN(decodes_type_and_absent_id, "decodes the type and an absent session id");
  RUN(stamping_makes_valid_wrapper, "stamping a zero id yields a valid PacketWrapper with the sender's id");
  RUN(own_id_relayed_unchanged, "the sender's own session id is relayed unchanged");
  RUN(other_id_overridden, "another member's session id is overridden with the sender's");
  RUN(header_points_at_user_and_data, "the header scan finds user_id and data");
  RUN(reference_counting, "references count up and down; the last unref frees");
  RUN(media_types, "the inner media type is read (RTT), or -1 when encrypted");
  RUN(ciphertext_that_starts_like_rtt, "ciphertext that starts with the bytes of RTT is not an RTT probe");
  RUN(malformed_refused, "garbage, truncation and wrong wire types are refused");
  RUN(unknown_and_empty_accepted, "unknown packet types and an empty message decode");
  RUN(fuzzer_findings, "field number 0, 6-byte lengths and 5-byte lengths of 2^32 are refused (fuzzer findings)");
  RUN(differential_against_protobuf_c, "the header scanner follows protobuf-c (and the spec) exactly");
  RUN(session_assigned_packet, "SESSION_ASSIGNED carries the id and the system identity, no data");
  RUN(meeting_started_packet, "MEETING_STARTED carries room, start time and creator");
  return TAP_DONE();
}
