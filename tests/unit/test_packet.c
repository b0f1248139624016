/* PacketWrapper header decoding, session-id stamping, server packets. */
#include <stdlib.h>
#include <string.h>
#include "packet.h"
#include "packet_wrapper.pb-c.h"
#include "media_packet.pb-c.h"
#include "meeting_packet.pb-c.h"
#include "tap.h"

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

int main(void) {
  uint8_t buf[4096], inner[256];
  vcg__pw_header_t h;
  size_t n = wrap(buf, VCG_PT_AES_KEY, "alice", (const uint8_t *)"k", 1, 0);
  CHECK(vcg__pw_decode(buf, n, &h) == 0 && h.type == VCG_PT_AES_KEY && h.session_id == 0,
        "decodes type and an absent session id");

  vcg_packet_t *p = vcg__packet_from_wire(buf, n, &h, 0x1122334455667788ull);
  Vcgate__PacketWrapper *pw = vcgate__packet_wrapper__unpack(NULL, p->len, p->data);
  CHECK(pw && pw->session_id == 0x1122334455667788ull && pw->packet_type == VCG_PT_AES_KEY &&
        pw->data.len == 1 && pw->user_id.len == 5,
        "stamping a zero session id yields a valid PacketWrapper carrying the sender's id");
  CHECK(p->session_id == 0x1122334455667788ull, "stamped packet records its session id");
  vcgate__packet_wrapper__free_unpacked(pw, NULL);
  vcg__packet_unref(p);

  n = wrap(buf, VCG_PT_MEDIA, "bob", inner, media(inner, 1), 42);
  CHECK(vcg__pw_decode(buf, n, &h) == 0 && h.session_id == 42 && h.media_type == 1,
        "decodes a MEDIA packet's inner media type (VIDEO)");
  p = vcg__packet_from_wire(buf, n, &h, 99);
  CHECK(p->len == n && memcmp(p->data, buf, n) == 0 && p->session_id == 42,
        "a non-zero session id is relayed unchanged");
  vcg__packet_ref(p);
  vcg__packet_unref(p);
  CHECK(p->len == n, "a reference keeps the packet alive");
  vcg__packet_unref(p);

  n = wrap(buf, VCG_PT_MEDIA, "bob", inner, media(inner, 5), 0);
  CHECK(vcg__pw_decode(buf, n, &h) == 0 && h.media_type == 5, "recognises RTT media");

  n = wrap(buf, VCG_PT_MEDIA, "bob", (const uint8_t *)"\x93\x11\x02", 3, 0);
  CHECK(vcg__pw_decode(buf, n, &h) == 0 && h.media_type == -1,
        "encrypted inner bytes give an unknown media type, not an error");

  const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0xff };
  CHECK(vcg__pw_decode(garbage, sizeof garbage, &h) == VCG_EINVAL, "garbage bytes are refused");
  const uint8_t truncated[] = { 0x1a, 0x10, 'a', 'b' }; /* data says 16 bytes, has 2 */
  CHECK(vcg__pw_decode(truncated, sizeof truncated, &h) == VCG_EINVAL,
        "a length-delimited field running past the end is refused");
  const uint8_t wrongwire[] = { 0x0a, 0x01, 0x01 }; /* field 1 as bytes: enum expected */
  CHECK(vcg__pw_decode(wrongwire, sizeof wrongwire, &h) == VCG_EINVAL,
        "a known field with the wrong wire type is refused");
  const uint8_t unknownenum[] = { 0x08, 0x63 }; /* packet_type 99 */
  CHECK(vcg__pw_decode(unknownenum, sizeof unknownenum, &h) == 0 && h.type == 99,
        "unknown packet types decode (they are relayed, not rejected)");
  CHECK(vcg__pw_decode((const uint8_t *)"", 0, &h) == 0 && h.type == 0,
        "an empty message is a valid (UNKNOWN) PacketWrapper");

  /* Differential fuzz: the zero-copy header scanner must accept exactly
   * what protobuf-c accepts and read the same two fields.  Mutations of
   * valid packets (bit flips, truncation, inserted bytes) plus random
   * bytes; a fixed seed keeps the run repeatable. */
  {
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
      Vcgate__PacketWrapper *ref = vcgate__packet_wrapper__unpack(NULL, ml, m);
      int mine = vcg__pw_decode(m, ml, &h);
      if ((ref != NULL) != (mine == 0) ||
          (ref && (h.type != (int)ref->packet_type || h.session_id != ref->session_id))) {
        agree = 0;
        printf("# disagreement on %zu bytes (protobuf-c %s, scanner %d):", ml, ref ? "accepts" : "refuses", mine);
        for (size_t k = 0; k < ml && k < 64; k++) printf(" %02x", m[k]);
        printf("\n");
      }
      accepted += ref != NULL;
      if (ref) vcgate__packet_wrapper__free_unpacked(ref, NULL);
    }
    CHECK(agree, "the header scanner agrees with protobuf-c on %d mutated and random inputs (%d valid)",
          trials, accepted);
  }

  p = vcg__packet_session_assigned(77);
  pw = vcgate__packet_wrapper__unpack(NULL, p->len, p->data);
  CHECK(pw && pw->packet_type == VCG_PT_SESSION_ASSIGNED && pw->session_id == 77 &&
        pw->user_id.len == strlen(VCG_SYSTEM_USER) &&
        memcmp(pw->user_id.data, VCG_SYSTEM_USER, pw->user_id.len) == 0 && pw->data.len == 0,
        "SESSION_ASSIGNED carries the id and the system identity, no data");
  vcgate__packet_wrapper__free_unpacked(pw, NULL);
  vcg__packet_unref(p);

  p = vcg__packet_meeting(1, "room1", 1234, "alice", 0);
  pw = vcgate__packet_wrapper__unpack(NULL, p->len, p->data);
  Vcgate__MeetingPacket *mp = pw ? vcgate__meeting_packet__unpack(NULL, pw->data.len, pw->data.data) : NULL;
  CHECK(mp && pw->packet_type == VCG_PT_MEETING && mp->event_type == 1 &&
        strcmp(mp->room_id, "room1") == 0 && mp->start_time_ms == 1234 &&
        mp->creator_id.len == 5, "MEETING_STARTED carries room, start time and creator");
  if (mp) vcgate__meeting_packet__free_unpacked(mp, NULL);
  if (pw) vcgate__packet_wrapper__free_unpacked(pw, NULL);
  vcg__packet_unref(p);
  return TAP_DONE();
}
