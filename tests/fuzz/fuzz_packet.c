/* The PacketWrapper header scan (core/packet.c), differential against
 * protobuf-c under the rule in tests/unit/pw_oracle.h: the scanner accepts
 * exactly what the rule accepts and reads the same packet_type,
 * session_id, user_id and data.  Then, for an accepted packet, stamping
 * another session id (vcg__packet_from_wire) must give bytes both decoders
 * read with that id; and the bus's room-event reader (vcg__event_parse)
 * must survive the same bytes. */
#include <string.h>
#include "fuzz.h"
#include "packet.h"
#include "pw_oracle.h"

static void same_bytes(const char *what, const uint8_t *a, size_t al, const ProtobufCBinaryData *b) {
  FUZZ_CHECK(al == b->len, "%s: scanner %zu bytes, protobuf-c %zu", what, al, b->len);
  FUZZ_CHECK(al == 0 || memcmp(a, b->data, al) == 0, "%s: different bytes", what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Vcgate__PacketWrapper *ref;
  vcg__pw_header_t h;
  int want = oracle_accepts(data, size, &ref);
  int mine = vcg__pw_decode(data, size, &h);
  FUZZ_CHECK(mine == 0 || mine == VCG_EINVAL, "scanner returned %d", mine);
  FUZZ_CHECK(want == (mine == 0), "the rule %s, the scanner %s (%zu bytes)",
             want ? "accepts" : "refuses", mine ? "refuses" : "accepts", size);
  if (want) {
    FUZZ_CHECK(h.type == (int)ref->packet_type, "packet_type %d vs %d", h.type, (int)ref->packet_type);
    FUZZ_CHECK(h.session_id == ref->session_id, "session_id %llu vs %llu",
               (unsigned long long)h.session_id, (unsigned long long)ref->session_id);
    same_bytes("user_id", h.user, h.user_len, &ref->user_id);
    same_bytes("data", h.data, h.data_len, &ref->data);
    /* Stamp an id that differs from the one sent (never 0: 0 means "do
     * not stamp"). */
    uint64_t stamp = ref->session_id ^ 0x8000000000000001ull;
    vcg_packet_t *p = vcg__packet_from_wire(data, size, &h, stamp);
    FUZZ_CHECK(p != NULL, "packet_from_wire: out of memory");
    vcg__pw_header_t h2;
    FUZZ_CHECK(vcg__pw_decode(p->data, p->len, &h2) == 0, "the scanner refuses its own stamped packet");
    FUZZ_CHECK(h2.session_id == stamp && p->session_id == stamp && h2.type == h.type,
               "stamped session_id %llu", (unsigned long long)h2.session_id);
    Vcgate__PacketWrapper *ref2;
    FUZZ_CHECK(oracle_accepts(p->data, p->len, &ref2), "the rule refuses the stamped packet");
    FUZZ_CHECK(ref2->session_id == stamp, "protobuf-c reads stamped session_id %llu",
               (unsigned long long)ref2->session_id);
    same_bytes("stamped user_id", h.user, h.user_len, &ref2->user_id);
    vcgate__packet_wrapper__free_unpacked(ref2, NULL);
    vcg__packet_unref(p);
  }
  if (ref) vcgate__packet_wrapper__free_unpacked(ref, NULL);

  int type;
  uint64_t start_ms, sid, to;
  char target[64];
  if (vcg__event_parse(data, size, &type, &start_ms, &sid, &to, target, sizeof target) == 0)
    FUZZ_CHECK(strlen(target) < sizeof target, "event target not terminated");
  return 0;
}
