/*
 * varint.h -- protobuf's base-128 varints (little-endian groups of 7 bits,
 * high bit set on every byte but the last), for the code that walks or
 * writes wire format without protobuf-c: the core's PacketWrapper scan and
 * stamping, the NATS bus's batch records, loadgen's packets.
 *
 * Header-only for the same reason as htab.h: plugins and tools compile it
 * themselves, nothing crosses the plugin ABI.  (QUIC's varints, in
 * plugins/webtransport/h3.c, are another encoding.)
 */
#ifndef VCG_UTIL_VARINT_H
#define VCG_UTIL_VARINT_H

#include <stddef.h>
#include <stdint.h>

/* Bytes v takes (1 to 10). */
static inline size_t vcg_varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) { v >>= 7; n++; }
  return n;
}

/* Write v at b (room for vcg_varint_len(v) bytes); returns the bytes
 * written. */
static inline size_t vcg_varint_put(uint8_t *b, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) { b[n++] = (uint8_t)(v | 0x80); v >>= 7; }
  b[n++] = (uint8_t)v;
  return n;
}

/* Read one varint from b[0..len); returns the bytes used, 0 when it is
 * truncated or longer than 10 bytes. */
static inline size_t vcg_varint_get(const uint8_t *b, size_t len, uint64_t *v) {
  uint64_t r = 0;
  for (size_t i = 0; i < len && i < 10; i++) {
    r |= (uint64_t)(b[i] & 0x7f) << (7 * i);
    if (!(b[i] & 0x80)) { *v = r; return i + 1; }
  }
  return 0;
}

#endif
