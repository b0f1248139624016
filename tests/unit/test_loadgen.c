/* Unit tests of contrib/loadgen's pure logic: the packets it sends
 * (decoded with the project's protobuf-c code, so loadgen's hand-written
 * encoder stays valid), sealed (E2EE-like) payloads, the receive
 * classifier, the call shape, the saturation search, the overload
 * recovery time, the sequence window, the latency histogram and the
 * WebSocket helpers the bare relay shares.  One function per behaviour. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tap.h"
#include "lg.h"
#include "packet_wrapper.pb-c.h"
#include "media_packet.pb-c.h"

static uint8_t pad[LG_PAD_LEN];

static lg_pkt_t pkt(size_t size, int sealed) {
  lg_pkt_t p = {size, "lg-user-7", sealed, 1234.5, pad, 99};
  return p;
}

/* Flat templates of many sizes: protobuf-c reads a MEDIA/VIDEO packet of
 * the asked size, and the classifier reads the stamped header back. */
static void test_template(size_t size) {
  lg_template_t t;
  lg_hdr_t h = {0xabcdef01u, 7, 3, LG_K_VIDEO, 0, 0}, got;
  lg_pkt_t p = pkt(size, 0);
  CHECK(lg_template_build(&t, &p, &h) == 0, "template of %zu bytes builds", size);
  CHECK(t.len == size || t.len + 1 == size || (size < 100 && t.len > size),
        "template is %zu bytes (asked %zu)", t.len, size);
  lg_template_stamp(&t, 123456789012ull, 987654321ull);
  Vcgate__PacketWrapper *pw = vcgate__packet_wrapper__unpack(NULL, t.len, t.buf);
  CHECK(pw != NULL, "protobuf-c decodes the PacketWrapper (%zu)", size);
  if (pw) {
    CHECK(pw->packet_type == 3, "packet_type MEDIA");
    CHECK(pw->user_id.len == 9 && memcmp(pw->user_id.data, "lg-user-7", 9) == 0, "user_id");
    Vcgate__MediaPacket *mp = vcgate__media_packet__unpack(NULL, pw->data.len, pw->data.data);
    CHECK(mp != NULL && mp->media_type == 1, "inner MediaPacket is VIDEO");
    if (mp) {
      CHECK(mp->data.len >= LG_HDR_LEN, "payload holds the loadgen header");
      vcgate__media_packet__free_unpacked(mp, NULL);
    }
    vcgate__packet_wrapper__free_unpacked(pw, NULL);
  }
  CHECK(lg_wire_classify(t.buf, t.len, 0xabcdef01u, &got) == LG_RX_OURS && got.sender == 7 &&
        got.room == 3 && got.kind == LG_K_VIDEO && got.seq == 123456789012ull &&
        got.send_ns == 987654321ull,
        "classifier reads back sender, room, kind, seq, time");
  CHECK(lg_wire_classify(t.buf, t.len, 0x1234u, &got) == LG_RX_FOREIGN, "other run id is foreign");
  CHECK(lg_wire_classify(t.buf, t.len / 2, 0xabcdef01u, &got) == LG_RX_FOREIGN,
        "truncated packet is foreign, not a crash");
  lg_template_free(&t);
}

/* Every kind has its real wire form: media type, frame_type of video,
 * heartbeat metadata, the key-exchange packet types. */
static void test_kinds_on_the_wire(void) {
  static const struct { int kind, ptype, mtype; const char *ft; } want[] = {
    {LG_K_VIDEO, 3, 1, "delta"}, {LG_K_VIDEO_KEY, 3, 1, "key"}, {LG_K_AUDIO, 3, 2, NULL},
    {LG_K_HEARTBEAT, 3, 4, NULL}, {LG_K_KF_REQ, 3, 6, NULL}, {LG_K_RTT, 3, 5, NULL},
    {LG_K_RSA_KEY, 1, -1, NULL}, {LG_K_AES_KEY, 2, -1, NULL},
  };
  uint8_t buf[4096];
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    lg_hdr_t h = {42, 1, 0, (uint32_t)want[i].kind, 5, 6}, got;
    lg_pkt_t p = pkt(300, 0);
    size_t off, len = lg_packet_build(buf, sizeof buf, &p, &h, &off);
    Vcgate__PacketWrapper *pw = len ? vcgate__packet_wrapper__unpack(NULL, len, buf) : NULL;
    int ok = pw && (int)pw->packet_type == want[i].ptype;
    if (ok && want[i].mtype >= 0) {
      Vcgate__MediaPacket *mp = vcgate__media_packet__unpack(NULL, pw->data.len, pw->data.data);
      ok = mp && (int)mp->media_type == want[i].mtype && mp->timestamp == 1234.5 &&
           (!want[i].ft || strcmp(mp->frame_type, want[i].ft) == 0) &&
           (want[i].kind != LG_K_HEARTBEAT ||
            (mp->heartbeat_metadata && mp->heartbeat_metadata->video_enabled));
      if (mp) vcgate__media_packet__free_unpacked(mp, NULL);
    }
    if (pw) vcgate__packet_wrapper__free_unpacked(pw, NULL);
    CHECK(ok, "kind %d: packet_type %d, media_type %d%s%s", want[i].kind, want[i].ptype,
          want[i].mtype, want[i].ft ? ", frame_type " : "", want[i].ft ? want[i].ft : "");
    CHECK(lg_wire_classify(buf, len, 42, &got) == LG_RX_OURS && got.kind == (uint32_t)want[i].kind &&
          got.seq == 5, "kind %d is read back", want[i].kind);
  }
}

/* Sealed media looks like AES-CBC ciphertext: PacketWrapper.data is a
 * multiple of 16 bytes without the header in the clear, packets differ from
 * the first byte on, and the receiving loadgen still reads its header. */
static void test_sealed_media(void) {
  uint8_t a[2048], b[2048];
  lg_hdr_t h = {0x5eed, 3, 1, LG_K_AUDIO, 100, 777}, got;
  lg_pkt_t p = pkt(160, 1);
  size_t off, la = lg_packet_build(a, sizeof a, &p, &h, &off);
  h.seq = 101;
  size_t lb = lg_packet_build(b, sizeof b, &p, &h, &off);
  Vcgate__PacketWrapper *pw = la ? vcgate__packet_wrapper__unpack(NULL, la, a) : NULL;
  CHECK(pw && pw->packet_type == 3 && pw->data.len % 16 == 0 && la <= 160 && la > 140,
        "sealed audio: MEDIA, data a multiple of 16, %zu bytes of 160", la);
  int clear = 0;
  for (size_t i = 0; pw && i + 4 <= pw->data.len; i++)
    if (memcmp(pw->data.data + i, "VCLG", 4) == 0) clear = 1;
  CHECK(pw && !clear, "the header is not in the clear");
  if (pw) vcgate__packet_wrapper__free_unpacked(pw, NULL);
  CHECK(la == lb && memcmp(a + off, b + off, 16) != 0, "two packets differ from the first data byte");
  CHECK(lg_wire_classify(a, la, 0x5eed, &got) == LG_RX_OURS && got.kind == LG_K_AUDIO &&
        got.seq == 100 && got.send_ns == 777 && got.sender == 3,
        "loadgen reads the sealed header back");
  CHECK(lg_wire_classify(a, la, 0x5eee, &got) == LG_RX_FOREIGN, "another run cannot");
}

/* A sealed template re-seals on every stamp. */
static void test_sealed_template_stamp(void) {
  lg_template_t t;
  lg_hdr_t h = {9, 2, 0, LG_K_VIDEO, 0, 0}, got;
  lg_pkt_t p = pkt(1000, 1);
  CHECK(lg_template_build(&t, &p, &h) == 0, "sealed template builds");
  lg_template_stamp(&t, 55, 66);
  CHECK(lg_wire_classify(t.buf, t.len, 9, &got) == LG_RX_OURS && got.seq == 55 && got.send_ns == 66,
        "stamped sealed template reads back seq and time");
  lg_template_free(&t);
}

static void test_server_packets(void) {
  const uint8_t sa[] = {0x08, 0x08, 0x20, 0x05}, cg[] = {0x08, 0x09}, mt[] = {0x08, 0x07};
  lg_hdr_t h;
  CHECK(lg_wire_classify(sa, sizeof sa, 1, &h) == LG_RX_CONTROL, "SESSION_ASSIGNED is control");
  CHECK(lg_wire_classify(mt, sizeof mt, 1, &h) == LG_RX_CONTROL, "MEETING is control");
  CHECK(lg_wire_classify(cg, sizeof cg, 1, &h) == LG_RX_CONGESTION, "CONGESTION is counted apart");
}

static void test_kind_classes(void) {
  CHECK(lg_kind_class(LG_K_AUDIO) == LG_CLS_AUDIO && lg_kind_class(LG_K_VIDEO) == LG_CLS_VIDEO &&
        lg_kind_class(LG_K_VIDEO_KEY) == LG_CLS_VIDEO_KEY &&
        lg_kind_class(LG_K_HEARTBEAT) == LG_CLS_CONTROL && lg_kind_class(LG_K_KF_REQ) == LG_CLS_CONTROL &&
        lg_kind_class(LG_K_RSA_KEY) == LG_CLS_KEYX && lg_kind_class(LG_K_AES_KEY) == LG_CLS_KEYX,
        "kinds map to audio / video / video_key / control / key_exchange");
  CHECK(lg_kind_class(LG_K_RTT) < 0, "RTT probes are no delivery class");
}

/* The call shape: its rates, and per participant one 15 KB key frame in
 * every 60 video frames, deltas of 1-3 KB, 160-byte audio, key exchange
 * alternating RSA_PUB_KEY / AES_KEY. */
static void test_call_shape(void) {
  double want[LG_K_N] = {0};
  for (int s = 0; s < LG_CALL_STREAMS; s++) want[lg_call_streams[s].kind] += lg_call_streams[s].rate;
  CHECK(want[LG_K_AUDIO] == 50 && want[LG_K_VIDEO] == 30 && want[LG_K_HEARTBEAT] == 1 &&
        want[LG_K_RTT] == 1, "50 audio, 30 video, 1 heartbeat, 1 RTT probe per second");
  int vst = -1, kst = -1, ast = -1;
  for (int s = 0; s < LG_CALL_STREAMS; s++) {
    if (lg_call_streams[s].kind == LG_K_VIDEO) vst = s;
    if (lg_call_streams[s].kind == LG_K_RSA_KEY) kst = s;
    if (lg_call_streams[s].kind == LG_K_AUDIO) ast = s;
  }
  int keys_ok = 1, deltas_ok = 1, kind;
  size_t size;
  for (uint32_t sender = 0; sender < 10; sender++) {
    int keys = 0;
    for (uint64_t n = 100; n < 160; n++) {
      lg_call_packet(vst, sender, n, &kind, &size);
      if (kind == LG_K_VIDEO_KEY) keys += size == 15000;
      else if (kind != LG_K_VIDEO || size < 1000 || size > 3000) deltas_ok = 0;
    }
    if (keys != 1) keys_ok = 0;
  }
  CHECK(keys_ok, "one 15 KB key frame in every 60 frames of each participant");
  CHECK(deltas_ok, "deltas are 1000-3000 bytes");
  lg_call_packet(ast, 3, 7, &kind, &size);
  CHECK(kind == LG_K_AUDIO && size == 160, "audio packets are 160 bytes");
  int k0, k1;
  lg_call_packet(kst, 0, 0, &k0, &size);
  lg_call_packet(kst, 0, 1, &k1, &size);
  CHECK(k0 == LG_K_RSA_KEY && k1 == LG_K_AES_KEY, "key exchange alternates RSA_PUB_KEY, AES_KEY");
}

/* ---- the saturation search ---- */

static double step(lg_search_t *s, int verdict) {
  const char *why;
  return lg_search_next(s, verdict, &why);
}

static void test_search_ramps_up(void) {
  lg_search_t s;
  lg_search_init(&s, 100, 2, 1, 1e6, 0, 0);
  CHECK(step(&s, LG_STEP_PASS) == 200 && step(&s, LG_STEP_PASS) == 400, "passing steps double the load");
}

static void test_search_retries_once(void) {
  lg_search_t s;
  lg_search_init(&s, 100, 2, 1, 1e6, 0, 0);
  step(&s, LG_STEP_PASS);
  CHECK(step(&s, LG_STEP_FAIL) == 200, "a failed step is run again at the same load");
  CHECK(step(&s, LG_STEP_PASS) == 400, "and a pass then goes on up");
}

static void test_search_hard_fail_not_retried(void) {
  lg_search_t s;
  const char *why;
  lg_search_init(&s, 100, 2, 1, 1e6, 0, 0);
  step(&s, LG_STEP_PASS);
  CHECK(lg_search_next(&s, LG_STEP_FAIL_HARD, &why) == 0 && strcmp(why, "bracketed") == 0 &&
        s.best == 100 && s.fail == 200, "a far-off failure counts at once (best 100, fail 200)");
}

static void test_search_invalid_rerun(void) {
  lg_search_t s;
  const char *why;
  lg_search_init(&s, 100, 2, 1, 1e6, 0, 0);
  step(&s, LG_STEP_PASS);
  int same = 0;
  for (int i = 0; i < LG_SEARCH_MAX_INVALID; i++) same += step(&s, LG_STEP_INVALID) == 200;
  CHECK(same == LG_SEARCH_MAX_INVALID, "a step where loadgen was late is run again (%d times)", same);
  CHECK(lg_search_next(&s, LG_STEP_INVALID, &why) == 0 && s.fail == 200 && s.best == 100,
        "then it counts as failed, without the ordinary retry");
  lg_search_init(&s, 100, 2, 1, 1e6, 0, 0);
  step(&s, LG_STEP_PASS);
  step(&s, LG_STEP_INVALID);
  CHECK(step(&s, LG_STEP_PASS) == 400, "a valid pass after a late run goes on up");
}

static void test_search_bisects(void) {
  lg_search_t s;
  const char *why;
  lg_search_init(&s, 100, 2, 1, 1e6, 2, 0);
  step(&s, LG_STEP_PASS);                  /* 100 ok -> 200 */
  step(&s, LG_STEP_FAIL);                  /* retry 200 */
  double m1 = step(&s, LG_STEP_FAIL);      /* 200 fails */
  CHECK(fabs(m1 - sqrt(100.0 * 200)) < 1e-9, "then the geometric midpoint (%.1f)", m1);
  double m2 = step(&s, LG_STEP_PASS);      /* 141 ok */
  CHECK(fabs(m2 - sqrt(m1 * 200)) < 1e-9, "a pass moves the bracket's low end (%.1f)", m2);
  CHECK(lg_search_next(&s, LG_STEP_PASS, &why) == 0 && strcmp(why, "bracketed") == 0 &&
        s.best == m2, "after --refine bisections it stops at the best pass");
}

static void test_search_steps_down(void) {
  lg_search_t s;
  lg_search_init(&s, 800, 2, 1, 1e6, 1, 0);
  step(&s, LG_STEP_FAIL);
  CHECK(step(&s, LG_STEP_FAIL) == 400, "when the first load fails, the search steps down");
  CHECK(step(&s, LG_STEP_FAIL_HARD) == 200, "and down again");
  double m = step(&s, LG_STEP_PASS);
  CHECK(fabs(m - sqrt(200.0 * 400)) < 1e-9, "the first pass brackets and bisects (%.1f)", m);
}

static void test_search_nothing_passes(void) {
  lg_search_t s;
  const char *why;
  lg_search_init(&s, 4, 2, 1, 1e6, 0, 0);
  double r = 1;
  for (int i = 0; i < 5 && r > 0; i++) r = lg_search_next(&s, LG_STEP_FAIL_HARD, &why);
  CHECK(r == 0 && strcmp(why, "nothing passes") == 0 && s.best == 0,
        "below --min-rate it gives up: nothing passes");
}

static void test_search_integer_rooms(void) {
  lg_search_t s;
  const char *why;
  lg_search_init(&s, 1, 1.3, 1, 1000, 5, 1);
  CHECK(step(&s, LG_STEP_PASS) == 2, "rooms grow by at least one");
  CHECK(lg_search_next(&s, LG_STEP_FAIL_HARD, &why) == 0 && strcmp(why, "bracketed") == 0 &&
        s.best == 1, "1 passes, 2 fails: nothing left between, best 1");
  lg_search_init(&s, 10, 2, 1, 1000, 5, 1);
  step(&s, LG_STEP_PASS);                  /* 10 ok -> 20 */
  double m = step(&s, LG_STEP_FAIL_HARD);  /* 20 fails -> 14 */
  CHECK(m == 14, "integer midpoint of 10 and 20 is 14 (%.0f)", m);
  int repeats = 0;
  double prev = m;
  while (m > 0) {
    m = lg_search_next(&s, LG_STEP_PASS, &why);
    if (m == prev) repeats++;
    prev = m;
  }
  CHECK(repeats == 0 && strcmp(why, "bracketed") == 0 && s.best == 19,
        "bisection over rooms ends when no whole number is left between (best %.0f)", s.best);
}

static void test_search_max(void) {
  lg_search_t s;
  const char *why;
  lg_search_init(&s, 300, 2, 1, 500, 0, 1);
  CHECK(step(&s, LG_STEP_PASS) == 500, "the last step is capped at the maximum");
  CHECK(lg_search_next(&s, LG_STEP_PASS, &why) == 0 && strcmp(why, "max load") == 0,
        "passing at the maximum stops: max load");
}

static void test_search_fatal(void) {
  lg_search_t s;
  const char *why;
  lg_search_init(&s, 100, 2, 1, 1e6, 3, 0);
  CHECK(lg_search_next(&s, LG_STEP_FATAL, &why) == 0 && strcmp(why, "errors") == 0,
        "errors (disconnects, duplicates, misrouting) stop the search at once");
}

/* ---- overload recovery ---- */

static void test_recovery(void) {
  double p99[6] = {900, 400, 60, 30, 20, 10};
  uint64_t n[6] = {5, 5, 5, 5, 5, 5};
  CHECK(lg_recovery_ms(p99, n, 6, 250, 50) == 750, "recovered from the start of window 3: 750 ms");
  double late[3] = {10, 10, 80};
  CHECK(lg_recovery_ms(late, n, 3, 250, 50) == -1, "still over in the last window: -1");
  double good[3] = {10, 10, 10};
  CHECK(lg_recovery_ms(good, n, 3, 250, 50) == 0, "never over: 0");
  uint64_t gap[3] = {5, 5, 0};
  CHECK(lg_recovery_ms(good, gap, 3, 250, 50) == -1, "a window with nothing delivered is no recovery");
  double blip[4] = {10, 90, 10, 10};
  CHECK(lg_recovery_ms(blip, n, 4, 250, 50) == 500, "a relapse restarts the clock: 500 ms");
}

/* ---- stats ---- */

static void test_seqwin(void) {
  lg_seqwin_t w = {0};
  int dup = 0, fresh = 0;
  for (uint64_t s = 0; s < 100000; s++)
    if (s % 1000 != 500) fresh += lg_seqwin_add(&w, s) == 0;
  CHECK(fresh == 99900 && w.uniq == 99900, "window counts every new number once");
  int want = 0;
  for (uint64_t s = 0; s < 100000; s += 7) {
    dup += lg_seqwin_add(&w, s) == 1;
    want += s % 1000 != 500;
  }
  CHECK(dup == want, "re-sent numbers are duplicates (%d of %d)", dup, want);
  CHECK(lg_seqwin_add(&w, 1500) == 0, "a late number inside an open gap is new");
  CHECK(lg_seqwin_add(&w, 1500) == 1, "and then a duplicate");
  lg_seqwin_free(&w);
}

static void test_hist(void) {
  lg_hist_t *hist = calloc(1, sizeof *hist);
  for (uint64_t v = 1; v <= 100000; v++) lg_hist_add(hist, v * 1000);
  uint64_t p50 = lg_hist_pct(hist, 50), p99 = lg_hist_pct(hist, 99);
  CHECK(p50 > 49000000 && p50 < 51000000, "p50 within 2%% (%llu)", (unsigned long long)p50);
  CHECK(p99 > 97000000 && p99 < 101000000, "p99 within 2%% (%llu)", (unsigned long long)p99);
  CHECK(lg_hist_pct(hist, 100) == 100000000, "p100 is the max");
  free(hist);
}

/* ---- WebSocket helpers (loadgen's client and the bare relay) ---- */

static void test_ws_accept(void) {
  char b[29];
  lg_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, b);
  CHECK(strcmp(b, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0, "RFC 6455 accept example (%s)", b);
}

static void test_ws_need(void) {
  int bad = 0;
  const uint8_t small[6] = {0x82, 0x85}, mid[8] = {0x82, 0xfe, 0x01, 0x00},
                big[] = {0x82, 0xff, 0, 0, 0, 0, 0x10, 0, 0, 0, 1, 2, 3, 4};
  CHECK(lg_ws_need(small, 1, 1 << 20, &bad) == 2, "two bytes to know a frame");
  CHECK(lg_ws_need(small, 2, 1 << 20, &bad) == 6, "then the header with its mask");
  CHECK(lg_ws_need(small, 6, 1 << 20, &bad) == 2 + 4 + 5, "masked 5-byte frame is 11 bytes");
  CHECK(lg_ws_need(mid, 2, 1 << 20, &bad) == 8, "16-bit length: header of 8 with the mask");
  CHECK(lg_ws_need(mid, 8, 1 << 20, &bad) == 8 + 256 && !bad, "16-bit length read");
  CHECK(lg_ws_need(big, sizeof big, 1 << 20, &bad) == 14 && bad, "a 256 MiB frame is refused");
}

static void test_ws_mask(void) {
  uint8_t src[37], dst[37], mk[4] = {1, 2, 3, 250};
  for (int i = 0; i < 37; i++) src[i] = (uint8_t)(i * 13);
  lg_ws_mask(dst, src, 37, mk);
  int ok = 1;
  for (int i = 0; i < 37; i++) ok &= dst[i] == (uint8_t)(src[i] ^ mk[i & 3]);
  lg_ws_mask(dst, dst, 37, mk);
  CHECK(ok && memcmp(dst, src, 37) == 0, "masking copies and XORs; in place undoes it");
}

int main(void) {
  lg_pad_init(pad, sizeof pad, 1);
  size_t sizes[] = {64, 127, 128, 129, 200, 1000, 16383, 16384, 16385, 70000};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) test_template(sizes[i]);
  test_kinds_on_the_wire();
  test_sealed_media();
  test_sealed_template_stamp();
  test_server_packets();
  test_kind_classes();
  test_call_shape();
  test_search_ramps_up();
  test_search_retries_once();
  test_search_hard_fail_not_retried();
  test_search_invalid_rerun();
  test_search_bisects();
  test_search_steps_down();
  test_search_nothing_passes();
  test_search_integer_rooms();
  test_search_max();
  test_search_fatal();
  test_recovery();
  test_seqwin();
  test_hist();
  test_ws_accept();
  test_ws_need();
  test_ws_mask();
  return TAP_DONE();
}
