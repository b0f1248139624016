/* loadgen wire format: the packets loadgen sends (PacketWrapper with a
 * MediaPacket of a real media type, or key-exchange packets, optionally
 * sealed like E2EE ciphertext) and the classifier of received packets,
 * hand-written protobuf (a handful of fields; linking protobuf-c would
 * cost an unpack and copies per received message, which is exactly the
 * work a load generator must keep small).
 *
 * Where loadgen's header goes: in the clear, it starts MediaPacket.data.
 * Sealed (--encrypted media, and key exchange always), PacketWrapper.data
 * is opaque to the relay, as with videocall.rs's AES-CBC: a multiple of 16
 * bytes, starting with an 8-byte nonce followed by the header XORed with a
 * keystream of (run id, nonce), then random filler.  Every byte looks
 * random to a relay, yet the receiving loadgen, which knows the run id,
 * finds its header without any state. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "lg.h"
#include "varint.h"

uint64_t lg_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/* What each kind of packet is on the wire. */
typedef struct {
  int ptype, media_type;
  const char *frame_type; /* MediaPacket.frame_type, or NULL */
  int heartbeat;          /* carries heartbeat_metadata */
  int opaque;             /* data is sealed even in the clear (key exchange) */
} kind_wire_t;

static const kind_wire_t kind_wire[LG_K_N] = {
  [LG_K_VIDEO] = {3, 1, "delta", 0, 0},
  [LG_K_VIDEO_KEY] = {3, 1, "key", 0, 0},
  [LG_K_AUDIO] = {3, 2, NULL, 0, 0},
  [LG_K_HEARTBEAT] = {3, 4, NULL, 1, 0},
  [LG_K_KF_REQ] = {3, 6, NULL, 0, 0},
  [LG_K_RTT] = {3, 5, NULL, 0, 0},
  [LG_K_RSA_KEY] = {1, 0, NULL, 0, 1},
  [LG_K_AES_KEY] = {2, 0, NULL, 0, 1},
};

int lg_kind_class(int kind) {
  switch (kind) {
  case LG_K_AUDIO: return LG_CLS_AUDIO;
  case LG_K_VIDEO: return LG_CLS_VIDEO;
  case LG_K_VIDEO_KEY: return LG_CLS_VIDEO_KEY;
  case LG_K_HEARTBEAT:
  case LG_K_KF_REQ: return LG_CLS_CONTROL;
  case LG_K_RSA_KEY:
  case LG_K_AES_KEY: return LG_CLS_KEYX;
  default: return -1; /* RTT probes are not deliveries */
  }
}

static uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void lg_pad_init(uint8_t *pad, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = mix64(seed + i);
    memcpy(pad + i, &v, n - i < 8 ? n - i : 8);
  }
}

static void hdr_put(uint8_t *b, const lg_hdr_t *h) {
  put_le32(b, LG_MAGIC);
  put_le32(b + 4, h->run_id);
  put_le32(b + 8, h->sender);
  put_le32(b + 12, h->room);
  put_le32(b + 16, h->kind);
  put_le32(b + 20, 0);
  put_le64(b + 24, h->seq);
  put_le64(b + 32, h->send_ns);
}

static int hdr_get(const uint8_t *b, uint32_t run_id, lg_hdr_t *h) {
  if (get_le32(b) != LG_MAGIC || get_le32(b + 4) != run_id || get_le32(b + 16) >= LG_K_N) return -1;
  h->run_id = run_id;
  h->sender = get_le32(b + 8);
  h->room = get_le32(b + 12);
  h->kind = get_le32(b + 16);
  h->seq = get_le64(b + 24);
  h->send_ns = get_le64(b + 32);
  return 0;
}

/* XOR the LG_HDR_LEN bytes at b with the keystream of (run id, nonce). */
static void seal_xor(uint8_t *b, uint32_t run_id, uint64_t nonce) {
  for (int i = 0; i < LG_HDR_LEN / 8; i++) {
    uint64_t k = mix64(nonce ^ ((uint64_t)run_id * 0x9e3779b97f4a7c15ull) ^ (uint64_t)i << 56), v;
    memcpy(&v, b + 8 * i, 8);
    v ^= k;
    memcpy(b + 8 * i, &v, 8);
  }
}

/* The sealed blob's first LG_SEAL_HDR bytes: nonce, then the sealed header. */
#define LG_SEAL_HDR (8 + LG_HDR_LEN)
static void seal_put(uint8_t *b, const lg_hdr_t *h) {
  uint64_t nonce = mix64(((uint64_t)h->sender << 32 | h->kind) ^ mix64(h->seq ^ h->run_id));
  put_le64(b, nonce);
  hdr_put(b + 8, h);
  seal_xor(b + 8, h->run_id, nonce);
}

static int seal_get(const uint8_t *b, size_t len, uint32_t run_id, lg_hdr_t *h) {
  uint8_t t[LG_HDR_LEN];
  if (len < LG_SEAL_HDR) return -1;
  memcpy(t, b + 8, LG_HDR_LEN);
  seal_xor(t, run_id, get_le64(b));
  return hdr_get(t, run_id, h);
}

/* Bytes of the MediaPacket around a data field of dlen (clear media). */
static size_t media_len(const kind_wire_t *k, size_t dlen) {
  size_t n = 2 + 9 + 1 + vcg_varint_len(dlen) + dlen; /* media_type, timestamp, data */
  if (k->frame_type) n += 2 + strlen(k->frame_type);
  if (k->heartbeat) n += 6;
  return n;
}

/* PacketWrapper bytes when its data field is the clear MediaPacket (or,
 * sealed, `inner` bytes of ciphertext). */
static size_t wrapper_len(size_t ulen, size_t inner) {
  return 2 + 1 + vcg_varint_len(ulen) + ulen + 1 + vcg_varint_len(inner) + inner;
}

static size_t pkt_len(const kind_wire_t *k, int sealed, size_t ulen, size_t dlen) {
  return wrapper_len(ulen, sealed ? dlen : media_len(k, dlen));
}

size_t lg_packet_build(uint8_t *buf, size_t cap, const lg_pkt_t *p, const lg_hdr_t *h,
                       size_t *hdr_off) {
  if (h->kind >= LG_K_N) return 0;
  const kind_wire_t *k = &kind_wire[h->kind];
  int sealed = p->sealed || k->opaque;
  size_t ulen = strlen(p->user), unit = sealed ? 16 : 1;
  size_t dmin = sealed ? (LG_SEAL_HDR + 15) / 16 * 16 : LG_HDR_LEN, dlen = dmin;
  /* The largest data field whose packet fits in size (exact unless a
   * length varint grows by a byte, or sealed data rounds to 16). */
  size_t base = pkt_len(k, sealed, ulen, dmin);
  if (p->size > base) {
    dlen = (dmin + (p->size - base)) / unit * unit;
    while (dlen > dmin && pkt_len(k, sealed, ulen, dlen) > p->size) dlen -= unit;
  }
  size_t len = pkt_len(k, sealed, ulen, dlen);
  if (len > cap) return 0;
  size_t o = 0;
  buf[o++] = 0x08; buf[o++] = (uint8_t)k->ptype;        /* packet_type */
  buf[o++] = 0x12; o += vcg_varint_put(buf + o, ulen);       /* user_id */
  memcpy(buf + o, p->user, ulen); o += ulen;
  buf[o++] = 0x1a;                                       /* data */
  if (sealed) {
    o += vcg_varint_put(buf + o, dlen);
    *hdr_off = o;
    seal_put(buf + o, h);
    o += LG_SEAL_HDR;
    dlen -= LG_SEAL_HDR;
  } else {
    o += vcg_varint_put(buf + o, media_len(k, dlen));
    buf[o++] = 0x08; buf[o++] = (uint8_t)k->media_type; /* media_type (first: relays read it) */
    if (k->frame_type) {                                /* frame_type */
      size_t fl = strlen(k->frame_type);
      buf[o++] = 0x22; buf[o++] = (uint8_t)fl;
      memcpy(buf + o, k->frame_type, fl); o += fl;
    }
    buf[o++] = 0x29; memcpy(buf + o, &p->ts_ms, 8); o += 8; /* timestamp (double, LE) */
    if (k->heartbeat) {                                 /* heartbeat_metadata: video, audio on */
      static const uint8_t hb[6] = {0x4a, 0x04, 0x08, 0x01, 0x10, 0x01};
      memcpy(buf + o, hb, 6); o += 6;
    }
    buf[o++] = 0x1a; o += vcg_varint_put(buf + o, dlen);    /* MediaPacket.data */
    *hdr_off = o;
    hdr_put(buf + o, h);
    o += LG_HDR_LEN;
    dlen -= LG_HDR_LEN;
  }
  /* Filler: random bytes, as codec output and ciphertext are (the pad
   * repeats for packets larger than it). */
  for (size_t po = (size_t)(p->pad_off % LG_PAD_LEN); dlen > 0; po = 0) {
    size_t n = dlen < LG_PAD_LEN - po ? dlen : LG_PAD_LEN - po;
    memcpy(buf + o, p->pad + po, n);
    o += n;
    dlen -= n;
  }
  return o;
}

int lg_template_build(lg_template_t *t, const lg_pkt_t *p, const lg_hdr_t *h) {
  size_t cap = p->size + 128 + strlen(p->user);
  memset(t, 0, sizeof *t);
  t->buf = malloc(cap);
  if (!t->buf) return UV_ENOMEM;
  t->len = lg_packet_build(t->buf, cap, p, h, &t->hdr_off);
  if (t->len == 0) {
    free(t->buf);
    t->buf = NULL;
    return UV_EINVAL;
  }
  t->h = *h;
  t->sealed = p->sealed || kind_wire[h->kind].opaque;
  return 0;
}

void lg_template_stamp(lg_template_t *t, uint64_t seq, uint64_t send_ns) {
  t->h.seq = seq;
  t->h.send_ns = send_ns;
  if (t->sealed) {
    seal_put(t->buf + t->hdr_off, &t->h);
  } else {
    put_le64(t->buf + t->hdr_off + 24, seq);
    put_le64(t->buf + t->hdr_off + 32, send_ns);
  }
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
  size_t n = vcg_varint_get(r->p, (size_t)(r->end - r->p), v);
  if (n == 0) return -1;
  r->p += n;
  return 0;
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
  if (!data) return LG_RX_FOREIGN;
  if (type == 1 || type == 2) return seal_get(data, dlen, run_id, h) == 0 ? LG_RX_OURS : LG_RX_FOREIGN;
  if (type != 3) return LG_RX_FOREIGN;
  /* Clear media first; what does not parse as a MediaPacket holding our
   * header may be sealed. */
  rd_t m = {data, data + dlen};
  const uint8_t *payload = NULL;
  size_t plen = 0;
  while (m.p < m.end) {
    int k = rd_field(&m, &num, &v, &d, &dl);
    if (k < 0) { payload = NULL; break; }
    if (num == 3 && k == 2) { payload = d; plen = dl; }
  }
  if (payload && plen >= LG_HDR_LEN && hdr_get(payload, run_id, h) == 0) return LG_RX_OURS;
  return seal_get(data, dlen, run_id, h) == 0 ? LG_RX_OURS : LG_RX_FOREIGN;
}
