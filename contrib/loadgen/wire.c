/* loadgen wire format: PacketWrapper(MEDIA) templates and the classifier of
 * received packets, hand-written protobuf (a handful of fields; linking
 * protobuf-c would cost an unpack and copies per received message, which
 * is exactly the work a load generator must keep small). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "lg.h"

uint64_t lg_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) { v >>= 7; n++; }
  return n;
}

static size_t put_varint(uint8_t *b, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) { b[n++] = (uint8_t)(v | 0x80); v >>= 7; }
  b[n++] = (uint8_t)v;
  return n;
}

static void put_le32(uint8_t *b, uint32_t v) {
  for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
}
static void put_le64(uint8_t *b, uint64_t v) {
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_le32(const uint8_t *b) {
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static uint64_t get_le64(const uint8_t *b) {
  return (uint64_t)get_le32(b) | (uint64_t)get_le32(b + 4) << 32;
}

/* Sizes of the nested messages for a payload (loadgen header + padding) of
 * dlen bytes. */
static size_t media_len(size_t dlen) { return 2 + 1 + varint_len(dlen) + dlen; }
static size_t wrapper_len(size_t ulen, size_t dlen) {
  size_t ml = media_len(dlen);
  return 2 + 1 + varint_len(ulen) + ulen + 1 + varint_len(ml) + ml;
}

int lg_template_build(lg_template_t *t, size_t size, const char *user, int media_type,
                      const lg_hdr_t *h) {
  size_t ulen = strlen(user), dlen = LG_HDR_LEN;
  /* The largest payload whose wrapper fits in size (exact except where a
   * length varint grows by a byte; then one byte short). */
  if (size > wrapper_len(ulen, dlen)) {
    dlen = size - (wrapper_len(ulen, LG_HDR_LEN) - LG_HDR_LEN);
    while (dlen > LG_HDR_LEN && wrapper_len(ulen, dlen) > size) dlen--;
  }
  size_t ml = media_len(dlen), len = wrapper_len(ulen, dlen);
  uint8_t *b = malloc(len);
  if (!b) return UV_ENOMEM;
  size_t o = 0;
  b[o++] = 0x08; b[o++] = 3;                        /* packet_type = MEDIA */
  b[o++] = 0x12; o += put_varint(b + o, ulen);      /* user_id */
  memcpy(b + o, user, ulen); o += ulen;
  b[o++] = 0x1a; o += put_varint(b + o, ml);        /* data = MediaPacket */
  b[o++] = 0x08; b[o++] = (uint8_t)media_type;      /* media_type */
  b[o++] = 0x1a; o += put_varint(b + o, dlen);      /* MediaPacket.data */
  t->hdr_off = o;
  put_le32(b + o, LG_MAGIC);
  put_le32(b + o + 4, h->run_id);
  put_le32(b + o + 8, h->sender);
  put_le32(b + o + 12, h->room);
  /* Padding: a recognisable, incompressible-enough pattern. */
  for (size_t i = LG_HDR_LEN; i < dlen; i++) b[o + i] = (uint8_t)(i * 131 + 7);
  t->buf = b;
  t->len = len;
  lg_template_stamp(t, 0, 0);
  return 0;
}

void lg_template_stamp(lg_template_t *t, uint64_t seq, uint64_t send_ns) {
  put_le64(t->buf + t->hdr_off + 16, seq);
  put_le64(t->buf + t->hdr_off + 24, send_ns);
}

void lg_template_free(lg_template_t *t) {
  free(t->buf);
  t->buf = NULL;
}

/* Minimal protobuf field reader. */
typedef struct {
  const uint8_t *p, *end;
} rd_t;

static int rd_varint(rd_t *r, uint64_t *v) {
  uint64_t x = 0;
  for (unsigned shift = 0; shift < 64 && r->p < r->end; shift += 7) {
    uint8_t b = *r->p++;
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) { *v = x; return 0; }
  }
  return -1;
}

/* Next field: number, wire type; for length-delimited, *d / *dl. */
static int rd_field(rd_t *r, uint32_t *num, uint64_t *val, const uint8_t **d, size_t *dl) {
  uint64_t key;
  if (rd_varint(r, &key) != 0) return -1;
  *num = (uint32_t)(key >> 3);
  switch (key & 7) {
  case 0: return rd_varint(r, val);
  case 1: if (r->end - r->p < 8) return -1; r->p += 8; *val = 0; return 0;
  case 5: if (r->end - r->p < 4) return -1; r->p += 4; *val = 0; return 0;
  case 2: {
    uint64_t l;
    if (rd_varint(r, &l) != 0 || l > (uint64_t)(r->end - r->p)) return -1;
    *d = r->p; *dl = (size_t)l; r->p += l; *val = l;
    return 2;
  }
  default: return -1;
  }
}

int lg_wire_classify(const uint8_t *msg, size_t len, uint32_t run_id, lg_hdr_t *h) {
  rd_t r = {msg, msg + len};
  uint64_t type = 0, v;
  const uint8_t *data = NULL, *d;
  size_t dlen = 0, dl;
  uint32_t num;
  while (r.p < r.end) {
    int k = rd_field(&r, &num, &v, &d, &dl);
    if (k < 0) return LG_RX_FOREIGN;
    if (num == 1 && k == 0) type = v;
    else if (num == 3 && k == 2) { data = d; dlen = dl; }
  }
  if (type == 8 || type == 7) return LG_RX_CONTROL;
  if (type == 9) return LG_RX_CONGESTION;
  if (type != 3 || !data) return LG_RX_FOREIGN;
  rd_t m = {data, data + dlen};
  const uint8_t *payload = NULL;
  size_t plen = 0;
  while (m.p < m.end) {
    int k = rd_field(&m, &num, &v, &d, &dl);
    if (k < 0) return LG_RX_FOREIGN;
    if (num == 3 && k == 2) { payload = d; plen = dl; }
  }
  if (!payload || plen < LG_HDR_LEN || get_le32(payload) != LG_MAGIC ||
      get_le32(payload + 4) != run_id)
    return LG_RX_FOREIGN;
  h->run_id = run_id;
  h->sender = get_le32(payload + 8);
  h->room = get_le32(payload + 12);
  h->seq = get_le64(payload + 16);
  h->send_ns = get_le64(payload + 24);
  return LG_RX_OURS;
}
