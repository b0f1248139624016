/* The rule vcg__pw_decode() must follow exactly (core/packet.c), with
 * protobuf-c as the oracle: accept what protobuf-c accepts, except a field
 * number 0, which protobuf-c keeps as an unknown field and the protobuf
 * specification refuses.  Shared by tests/unit/test_packet.c and
 * tests/fuzz/fuzz_packet.c, so the two check one rule.  *out gets
 * protobuf-c's result (NULL when it refused); the caller frees it. */
#ifndef VCG_PW_ORACLE_H
#define VCG_PW_ORACLE_H
#include "packet_wrapper.pb-c.h"

static inline int oracle_accepts(const uint8_t *m, size_t ml, Vcgate__PacketWrapper **out) {
  Vcgate__PacketWrapper *ref = vcgate__packet_wrapper__unpack(NULL, ml, m);
  *out = ref;
  if (!ref) return 0;
  for (unsigned k = 0; k < ref->base.n_unknown_fields; k++)
    if (ref->base.unknown_fields[k].tag == 0) return 0;
  return 1;
}
#endif
