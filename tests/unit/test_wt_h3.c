/*
 * test_wt_h3.c -- the WebTransport plugin's pure HTTP/3 pieces: varints,
 * stream prefix classification across split reads, capsules, SETTINGS and
 * QPACK request decoding.  No network.
 *
 * Link: plugins/webtransport/h3.c plugins/webtransport/qpack.c with
 * -I core/include -I plugins/webtransport and $(QUIC_LIBS) (nghttp3).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vcgate/plugin.h>

#include "h3.h"
#include "qpack.h"

static int failures, checks;

/* TAP: numbered lines and a plan, so the harness counts every check. */
static void check(int ok, const char *name) {
  printf("%s %d - %s\n", ok ? "ok" : "not ok", ++checks, name);
  if (!ok) failures++;
}

/* ------------------------------------------------------------ varints */

static void test_varint(void) {
  static const struct { uint64_t v; size_t len; const char *hex; } cases[] = {
    { 0, 1, "00" }, { 37, 1, "25" }, { 63, 1, "3f" }, { 64, 2, "4040" },
    { 0x41, 2, "4041" }, { 0x54, 2, "4054" }, { 15293, 2, "7bbd" },
    { 16383, 2, "7fff" }, { 16384, 4, "80004000" }, { 494878333, 4, "9d7f3e7d" },
    { 0x2b603742, 4, "ab603742" }, { 0xc671706a, 8, "c0000000c671706a" },
    { 151288809941952652ull, 8, "c2197c5eff14e88c" },
  };
  int ok = 1;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    uint8_t buf[8];
    char hex[17];
    size_t n = (size_t)(vcg__wt_varint_put(buf, cases[i].v) - buf);
    for (size_t k = 0; k < n; k++) snprintf(hex + 2 * k, 3, "%02x", buf[k]);
    if (n != cases[i].len || vcg__wt_varint_len(cases[i].v) != n || strcmp(hex, cases[i].hex) != 0) ok = 0;
    uint64_t v = 0;
    if (vcg__wt_varint_get(buf, n, &v) != n || v != cases[i].v) ok = 0;
    if (n > 1 && vcg__wt_varint_get(buf, n - 1, &v) != 0) ok = 0; /* short: need more */
    /* byte by byte through the incremental reader */
    vcg__wt_varint_rd_t rd;
    vcg__wt_varint_rd_reset(&rd);
    int done = 0;
    for (size_t k = 0; k < n; k++) {
      if (done) ok = 0;
      if (vcg__wt_varint_rd_feed(&rd, buf + k, 1, &done, &v) != 1) ok = 0;
    }
    if (!done || v != cases[i].v) ok = 0;
  }
  check(ok, "varint encode/decode of RFC 9000 examples and WT codepoints, whole and byte by byte");
  check(vcg__wt_varint_len(VCG__VARINT_MAX + 1) == 0, "varint refuses values above 2^62-1");
}

/* ------------------------------------------------------ stream prefix */

/* Feed s[0..len) in pieces of `step` bytes; returns kind and the offset
 * where the body starts. */
static int classify(int bidi, const uint8_t *s, size_t len, size_t step,
                    vcg__wt_prefix_t *x, size_t *body) {
  int kind = VCG__WT_PFX_MORE;
  size_t off = 0;
  vcg__wt_prefix_init(x, bidi);
  while (off < len && kind == VCG__WT_PFX_MORE) {
    size_t n = len - off < step ? len - off : step;
    size_t used = vcg__wt_prefix_feed(x, s + off, n, &kind);
    off += used;
    if (used < n && kind == VCG__WT_PFX_MORE) return -1; /* must eat all it can */
  }
  *body = off;
  return kind;
}

static void test_prefix(void) {
  static const uint8_t wt_uni[] = { 0x40, 0x54, 0x00, 'h', 'i' };
  static const uint8_t wt_uni_sid4[] = { 0x40, 0x54, 0x44, 0x00, 'x' }; /* sid 1024 */
  static const uint8_t control[] = { 0x00, 0x04, 0x00 };
  static const uint8_t qenc[] = { 0x02 }, qdec[] = { 0x03 };
  static const uint8_t unknown[] = { 0x21, 0xff };
  static const uint8_t grease_type[] = { 0x80, 0x00, 0x00, 0x21, 0x01 }; /* 4-byte type */
  static const uint8_t wt_bidi[] = { 0x40, 0x41, 0x00, 'p' };
  static const uint8_t request[] = { 0x01, 0x05, 0, 0, 0xd1, 0xd7, 0x50 };
  vcg__wt_prefix_t x;
  size_t body;
  int ok = 1;

  for (size_t step = 1; step <= 5; step++) {
    ok &= classify(0, wt_uni, sizeof(wt_uni), step, &x, &body) == VCG__WT_PFX_WT_UNI &&
          x.session_id == 0 && body == 3;
    ok &= classify(0, wt_uni_sid4, sizeof(wt_uni_sid4), step, &x, &body) == VCG__WT_PFX_WT_UNI &&
          x.session_id == 1024 && body == 4;
    ok &= classify(0, control, sizeof(control), step, &x, &body) == VCG__WT_PFX_CONTROL && body == 1;
    ok &= classify(0, qenc, 1, step, &x, &body) == VCG__WT_PFX_QPACK_ENC;
    ok &= classify(0, qdec, 1, step, &x, &body) == VCG__WT_PFX_QPACK_DEC;
    ok &= classify(0, unknown, sizeof(unknown), step, &x, &body) == VCG__WT_PFX_UNKNOWN && body == 1;
    ok &= classify(0, grease_type, sizeof(grease_type), step, &x, &body) == VCG__WT_PFX_UNKNOWN &&
          body == 4;
    ok &= classify(1, wt_bidi, sizeof(wt_bidi), step, &x, &body) == VCG__WT_PFX_WT_BIDI && body == 3;
    ok &= classify(1, request, sizeof(request), step, &x, &body) == VCG__WT_PFX_REQUEST &&
          body == 1 && x.replaylen == 1 && x.replay[0] == 0x01;
  }
  check(ok, "stream prefixes classified for every split (1..5 bytes): WT uni/bidi, control, QPACK, unknown, request");

  /* The single-byte 0x54 is not the 2-byte varint 0x54: 0x54 as one byte
   * is the varint 0x14, an unknown type. */
  static const uint8_t wrong[] = { 0x54, 0x00 };
  check(classify(0, wrong, sizeof(wrong), 1, &x, &body) == VCG__WT_PFX_UNKNOWN,
        "a one-byte 0x54 is not mistaken for the WebTransport stream type");

  /* Incomplete prefix stays MORE. */
  check(classify(0, wt_uni, 2, 1, &x, &body) == VCG__WT_PFX_MORE && body == 2,
        "a prefix cut before the session id waits for more");
}

/* ------------------------------------------------------------ capsules */

/* Feed the whole capsule stream in `step`-byte pieces; collect events. */
static int run_capsules(const uint8_t *s, size_t len, size_t step,
                        vcg__wt_capsule_rd_t *c, int *nclose, int *ndrain,
                        int *nerror) {
  vcg__wt_capsule_rd_init(c);
  *nclose = *ndrain = *nerror = 0;
  size_t off = 0;
  int guard = 0;
  while (off < len && guard++ < 100000) {
    size_t n = len - off < step ? len - off : step;
    const uint8_t *p = s + off;
    size_t left = n;
    while (left > 0) {
      int ev;
      size_t used = vcg__wt_capsule_feed(c, p, left, &ev);
      p += used;
      left -= used;
      if (ev == VCG__WT_CAP_CLOSE) (*nclose)++;
      else if (ev == VCG__WT_CAP_DRAIN) (*ndrain)++;
      else if (ev == VCG__WT_CAP_ERROR) { (*nerror)++; return 0; }
      else if (used == 0) return -1; /* NONE must consume everything */
    }
    off += n;
  }
  return 0;
}

static void test_capsules(void) {
  uint8_t s[2048];
  size_t len = 0;
  /* GREASE capsule 41*3+23 = 146 with 5 random bytes (as Chromium sends). */
  len += vcg__wt_frame_header(s + len, 41 * 3 + 23, 5);
  memcpy(s + len, "\x01\x02\x03\x04\x05", 5);
  len += 5;
  /* An empty GREASE capsule with a large type. */
  len += vcg__wt_frame_header(s + len, 41ull * 1000000 + 23, 0);
  /* DRAIN_WEBTRANSPORT_SESSION */
  len += vcg__wt_frame_header(s + len, VCG__WT_CAPSULE_DRAIN_SESSION, 0);
  /* CLOSE_WEBTRANSPORT_SESSION code 7 reason "bye" */
  len += vcg__wt_frame_header(s + len, VCG__WT_CAPSULE_CLOSE_SESSION, 7);
  memcpy(s + len, "\x00\x00\x00\x07" "bye", 7);
  len += 7;

  vcg__wt_capsule_rd_t c;
  int ok = 1, nc, nd, ne;
  for (size_t step = 1; step <= len; step++) {
    if (run_capsules(s, len, step, &c, &nc, &nd, &ne) != 0) ok = 0;
    if (nc != 1 || nd != 1 || ne != 0 || c.code != 7 || strcmp(c.reason, "bye") != 0) ok = 0;
  }
  check(ok, "capsules: GREASE skipped, DRAIN and CLOSE(7, \"bye\") parsed for every split size");

  /* Our own encoder: a DATA frame holding CLOSE(4242, "server-bye"). */
  uint8_t f[VCG__WT_CLOSE_FRAME_MAX];
  size_t n = vcg__wt_close_frame_encode(f, sizeof(f), 4242, "server-bye");
  vcg__wt_frame_rd_t fr;
  vcg__wt_frame_rd_init(&fr);
  vcg__wt_fev_t ev;
  size_t used = vcg__wt_frame_next(&fr, f, n, &ev);
  ok = ev.kind == VCG__WT_FEV_START && ev.type == VCG__H3_FRAME_DATA && ev.len == n - used;
  ok = ok && run_capsules(f + used, n - used, 3, &c, &nc, &nd, &ne) == 0 && nc == 1 &&
       c.code == 4242 && strcmp(c.reason, "server-bye") == 0;
  check(ok, "close frame encoder round-trips through the capsule parser");

  /* And a DATA frame holding DRAIN_WEBTRANSPORT_SESSION. */
  n = vcg__wt_drain_frame_encode(f, sizeof(f));
  vcg__wt_frame_rd_init(&fr);
  used = vcg__wt_frame_next(&fr, f, n, &ev);
  ok = n == VCG__WT_DRAIN_FRAME_LEN && ev.kind == VCG__WT_FEV_START &&
       ev.type == VCG__H3_FRAME_DATA && ev.len == n - used;
  ok = ok && run_capsules(f + used, n - used, 1, &c, &nc, &nd, &ne) == 0 && nd == 1 && nc == 0 &&
       ne == 0;
  check(ok, "drain frame encoder gives one DRAIN capsule in one DATA frame");
  check(vcg__wt_drain_frame_encode(f, VCG__WT_DRAIN_FRAME_LEN - 1) == 0,
        "drain frame encoder refuses a short buffer");

  /* A CLOSE capsule too short for its code is an error. */
  len = vcg__wt_frame_header(s, VCG__WT_CAPSULE_CLOSE_SESSION, 2);
  s[len++] = 0;
  s[len++] = 0;
  run_capsules(s, len, 1, &c, &nc, &nd, &ne);
  check(ne == 1 && nc == 0, "a CLOSE capsule shorter than 4 bytes is malformed");
  /* And one with a reason over 1024 bytes. */
  len = vcg__wt_frame_header(s, VCG__WT_CAPSULE_CLOSE_SESSION, 4 + 1025);
  run_capsules(s, len, 7, &c, &nc, &nd, &ne);
  check(ne == 1, "a CLOSE reason over 1024 bytes is malformed");
}

/* ------------------------------------------------------------ frames */

static void test_frames_split(void) {
  /* HEADERS(3 bytes) + unknown frame type 0x21 (reserved) + DATA(0). */
  uint8_t s[64];
  size_t len = 0;
  len += vcg__wt_frame_header(s + len, VCG__H3_FRAME_HEADERS, 3);
  memcpy(s + len, "abc", 3);
  len += 3;
  len += vcg__wt_frame_header(s + len, 0x21, 2);
  memcpy(s + len, "zz", 2);
  len += 2;
  len += vcg__wt_frame_header(s + len, VCG__H3_FRAME_DATA, 0);
  int ok = 1;
  for (size_t step = 1; step <= len; step++) {
    vcg__wt_frame_rd_t r;
    vcg__wt_frame_rd_init(&r);
    char seen[64] = "";
    char data[16] = "";
    size_t off = 0;
    while (off < len) {
      size_t n = len - off < step ? len - off : step;
      const uint8_t *p = s + off;
      for (;;) {
        vcg__wt_fev_t ev;
        size_t u = vcg__wt_frame_next(&r, p, n, &ev);
        p += u;
        n -= u;
        if (ev.kind == VCG__WT_FEV_NONE) break;
        char t[16];
        snprintf(t, sizeof(t), "%c%llx;", ev.kind == VCG__WT_FEV_START ? 'S' : ev.kind == VCG__WT_FEV_END ? 'E' : 'D',
                 (unsigned long long)ev.type);
        if (ev.kind != VCG__WT_FEV_DATA || strstr(seen, "D1;") == NULL || seen[strlen(seen) - 3] != 'D')
          strncat(seen, t, sizeof(seen) - strlen(seen) - 1);
        if (ev.kind == VCG__WT_FEV_DATA && ev.type == VCG__H3_FRAME_HEADERS)
          strncat(data, (const char *)ev.data, ev.datalen);
      }
      off += step < len - off ? step : len - off;
    }
    if (strcmp(data, "abc") != 0 || !vcg__wt_frame_rd_idle(&r)) ok = 0;
    if (strncmp(seen, "S1;D1;", 6) != 0 || !strstr(seen, "E1;S21;") || !strstr(seen, "S0;E0;")) ok = 0;
  }
  check(ok, "frame reader: HEADERS, unknown and empty DATA frames for every split size");
}

/* ------------------------------------------------------------ SETTINGS */

static void test_settings(void) {
  uint8_t buf[128];
  size_t n = vcg__wt_control_stream_prefix(buf, sizeof(buf), 16);
  int ok = n > 3 && buf[0] == 0x00;
  vcg__wt_frame_rd_t r;
  vcg__wt_frame_rd_init(&r);
  vcg__wt_fev_t ev;
  size_t used = vcg__wt_frame_next(&r, buf + 1, n - 1, &ev);
  ok = ok && ev.kind == VCG__WT_FEV_START && ev.type == VCG__H3_FRAME_SETTINGS &&
       ev.len == n - 1 - used;
  vcg__wt_peer_settings_t ps;
  ok = ok && vcg__wt_settings_parse(buf + 1 + used, (size_t)ev.len, &ps) == 0;
  ok = ok && ps.enable_connect_protocol == 1 && ps.h3_datagram == 1 && ps.wt_draft02 == 1 &&
       ps.wt_max_sessions == 16 && ps.qpack_max_table_capacity == 0 &&
       ps.qpack_blocked_streams == 0 && ps.count == 6;
  check(ok, "our SETTINGS (0x08=1, 0x33=1, 0x2b603742=1, 0xc671706a=N, QPACK 0) round-trip");

  /* Chromium-like SETTINGS with a GREASE pair and 0xffd277. */
  const vcg__wt_setting_t chrome[] = {
    { 0x01, 65536 }, { 0x06, 16384 }, { 0x07, 100 }, { 0x33, 1 }, { 0xffd277, 1 },
    { 0x2b603742, 1 }, { 0x1f * 7 + 0x21, 12345 },
  };
  n = vcg__wt_settings_encode(buf, sizeof(buf), chrome, 7);
  vcg__wt_frame_rd_init(&r);
  used = vcg__wt_frame_next(&r, buf, n, &ev);
  ok = vcg__wt_settings_parse(buf + used, n - used, &ps) == 0 && ps.count == 7 &&
       ps.qpack_max_table_capacity == 65536 && ps.max_field_section_size == 16384 &&
       ps.h3_datagram == 1 && ps.wt_draft02 == 1 && !ps.enable_connect_protocol;
  check(ok, "Chromium-style SETTINGS with GREASE parse");

  const vcg__wt_setting_t dup[] = { { 0x33, 1 }, { 0x33, 1 } };
  n = vcg__wt_settings_encode(buf, sizeof(buf), dup, 2);
  used = 2;
  check(vcg__wt_settings_parse(buf + used, n - used, &ps) == VCG_EINVAL, "a repeated setting is refused");
  const vcg__wt_setting_t h2[] = { { 0x02, 0 } };
  n = vcg__wt_settings_encode(buf, sizeof(buf), h2, 1);
  check(vcg__wt_settings_parse(buf + 2, n - 2, &ps) == VCG_EINVAL, "an HTTP/2-only setting is refused");
  static const uint8_t cut[] = { 0x33 };
  check(vcg__wt_settings_parse(cut, 1, &ps) == VCG_EINVAL, "a truncated pair is refused");
}

/* ------------------------------------------------------------ QPACK */

static void test_qpack(void) {
  uint8_t *f = NULL;
  size_t flen = 0;
  int ok = vcg__wt_qpack_encode_request(0, "CONNECT", "webtransport", "https", "127.0.0.1:4433",
                                        "/lobby/alice%40example.com/room-1", &f, &flen) == 0;
  vcg__wt_request_t req;
  if (ok) {
    vcg__wt_frame_rd_t r;
    vcg__wt_frame_rd_init(&r);
    vcg__wt_fev_t ev;
    size_t used = vcg__wt_frame_next(&r, f, flen, &ev);
    ok = ev.kind == VCG__WT_FEV_START && ev.type == VCG__H3_FRAME_HEADERS && ev.len == flen - used;
    ok = ok && vcg__wt_qpack_decode_request(0, f + used, flen - used, &req) == 0;
    ok = ok && strcmp(req.method, "CONNECT") == 0 && strcmp(req.protocol, "webtransport") == 0 &&
         strcmp(req.authority, "127.0.0.1:4433") == 0 &&
         strcmp(req.path, "/lobby/alice%40example.com/room-1") == 0;
    /* A truncated block is refused. */
    ok = ok && vcg__wt_qpack_decode_request(0, f + used, flen - used - 3, &req) != 0;
  }
  free(f);
  check(ok, "QPACK: an encoded extended CONNECT decodes to :method/:protocol/:authority/:path");

  /* A block that references the dynamic table (Required Insert Count 1)
   * cannot be decoded with capacity 0. */
  static const uint8_t dyn[] = { 0x02, 0x00, 0x80 };
  check(vcg__wt_qpack_decode_request(0, dyn, sizeof(dyn), &req) != 0,
        "QPACK: a block needing the dynamic table is refused");

  ok = vcg__wt_qpack_encode_response(0, 200, "sec-webtransport-http3-draft", "draft02", &f, &flen) == 0;
  ok = ok && flen > 2 && f[0] == VCG__H3_FRAME_HEADERS;
  free(f);
  check(ok, "QPACK: a 200 response encodes as one HEADERS frame");
}

int main(void) {
  test_varint();
  test_prefix();
  test_capsules();
  test_frames_split();
  test_settings();
  test_qpack();
  printf("1..%d\n", checks);
  return failures ? 1 : 0;
}
