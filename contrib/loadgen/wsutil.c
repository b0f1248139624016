/* WebSocket helpers (see wsutil.h), shared by loadgen's client and the
 * bench's bare relay, which must not depend on libuv: so this file includes
 * nothing of loadgen's. */
#include <stdint.h>
#include <string.h>
#include "wsutil.h"

/* ---- SHA-1 (FIPS 180-4) ---- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t hs[5], const uint8_t *p) {
  uint32_t w[80], a = hs[0], b = hs[1], c = hs[2], d = hs[3], e = hs[4];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) { f = (b & c) | (~b & d); k = 0x5a827999; }
    else if (i < 40) { f = b ^ c ^ d; k = 0x6ed9eba1; }
    else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8f1bbcdc; }
    else { f = b ^ c ^ d; k = 0xca62c1d6; }
    uint32_t t = rol(a, 5) + f + e + k + w[i];
    e = d; d = c; c = rol(b, 30); b = a; a = t;
  }
  hs[0] += a; hs[1] += b; hs[2] += c; hs[3] += d; hs[4] += e;
}

void lg_sha1(const uint8_t *data, size_t len, uint8_t out[20]) {
  uint32_t hs[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
  uint8_t blk[64];
  size_t i = 0;
  for (; len - i >= 64; i += 64) sha1_block(hs, data + i);
  size_t rem = len - i;
  memcpy(blk, data + i, rem);
  blk[rem++] = 0x80;
  if (rem > 56) {
    memset(blk + rem, 0, 64 - rem);
    sha1_block(hs, blk);
    rem = 0;
  }
  memset(blk + rem, 0, 56 - rem);
  uint64_t bits = (uint64_t)len * 8;
  for (int k = 0; k < 8; k++) blk[56 + k] = (uint8_t)(bits >> (56 - 8 * k));
  sha1_block(hs, blk);
  for (int k = 0; k < 5; k++) {
    out[4 * k] = (uint8_t)(hs[k] >> 24); out[4 * k + 1] = (uint8_t)(hs[k] >> 16);
    out[4 * k + 2] = (uint8_t)(hs[k] >> 8); out[4 * k + 3] = (uint8_t)hs[k];
  }
}

size_t lg_base64(const uint8_t *in, size_t len, char *out) {
  static const char tb[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < len) v |= in[i + 2];
    out[o++] = tb[(v >> 18) & 63];
    out[o++] = tb[(v >> 12) & 63];
    out[o++] = i + 1 < len ? tb[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < len ? tb[v & 63] : '=';
  }
  out[o] = 0;
  return o;
}

void lg_ws_accept(const char *key, size_t klen, char out[29]) {
  uint8_t cat[128 + sizeof LG_WS_GUID], d[20];
  if (klen > 128) klen = 128; /* real keys are 24 bytes; longer ones cannot match */
  memcpy(cat, key, klen);
  memcpy(cat + klen, LG_WS_GUID, sizeof LG_WS_GUID - 1);
  lg_sha1(cat, klen + sizeof LG_WS_GUID - 1, d);
  lg_base64(d, 20, out);
}

size_t lg_ws_need(const uint8_t *f, size_t len, uint64_t max, int *bad) {
  if (len < 2) return 2;
  size_t l7 = f[1] & 0x7f, hl = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((f[1] & 0x80) ? 4 : 0);
  if (len < hl) return hl;
  uint64_t pl = l7;
  if (l7 == 126) pl = (uint64_t)f[2] << 8 | f[3];
  else if (l7 == 127) { pl = 0; for (int i = 0; i < 8; i++) pl = pl << 8 | f[2 + i]; }
  if (pl > max) { *bad = 1; return hl; }
  return hl + (size_t)pl;
}

void lg_ws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mk[4]) {
  uint8_t mm[8] = {mk[0], mk[1], mk[2], mk[3], mk[0], mk[1], mk[2], mk[3]};
  uint64_t m8;
  memcpy(&m8, mm, 8);
  size_t k = 0;
  for (; k + 8 <= n; k += 8) {
    uint64_t v;
    memcpy(&v, src + k, 8);
    v ^= m8;
    memcpy(dst + k, &v, 8);
  }
  for (; k < n; k++) dst[k] = src[k] ^ mk[k & 3];
}
