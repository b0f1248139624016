/* Unit tests of contrib/loadgen's pure logic: the PacketWrapper template
 * (decoded with the project's protobuf-c code, so loadgen's hand-written
 * encoder stays valid), the receive classifier, the sequence window, the
 * latency histogram and the WebSocket handshake digest. */
#include <stdlib.h>
#include <string.h>
#include "tap.h"
#include "lg.h"
#include "packet_wrapper.pb-c.h"
#include "media_packet.pb-c.h"

static void test_template(size_t size) {
  lg_template_t t;
  lg_hdr_t h = {0xabcdef01u, 7, 3, 0, 0}, got;
  CHECK(lg_template_build(&t, size, "lg-user-7", 1, &h) == 0, "template of %zu bytes builds", size);
  CHECK(t.len == size || t.len + 1 == size, "template is %zu bytes (asked %zu)", t.len, size);
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
        got.room == 3 && got.seq == 123456789012ull && got.send_ns == 987654321ull,
        "classifier reads back sender, room, seq, time");
  CHECK(lg_wire_classify(t.buf, t.len, 0x1234u, &got) == LG_RX_FOREIGN, "other run id is foreign");
  CHECK(lg_wire_classify(t.buf, t.len / 2, 0xabcdef01u, &got) == LG_RX_FOREIGN,
        "truncated packet is foreign, not a crash");
  lg_template_free(&t);
}

int main(void) {
  size_t sizes[] = {64, 127, 128, 129, 200, 1000, 16383, 16384, 16385, 70000};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) test_template(sizes[i]);

  const uint8_t sa[] = {0x08, 0x08, 0x20, 0x05}, cg[] = {0x08, 0x09}, mt[] = {0x08, 0x07};
  lg_hdr_t h;
  CHECK(lg_wire_classify(sa, sizeof sa, 1, &h) == LG_RX_CONTROL, "SESSION_ASSIGNED is control");
  CHECK(lg_wire_classify(mt, sizeof mt, 1, &h) == LG_RX_CONTROL, "MEETING is control");
  CHECK(lg_wire_classify(cg, sizeof cg, 1, &h) == LG_RX_CONGESTION, "CONGESTION is counted apart");

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

  lg_hist_t *hist = calloc(1, sizeof *hist);
  for (uint64_t v = 1; v <= 100000; v++) lg_hist_add(hist, v * 1000);
  uint64_t p50 = lg_hist_pct(hist, 50), p99 = lg_hist_pct(hist, 99);
  CHECK(p50 > 49000000 && p50 < 51000000, "p50 within 2%% (%llu)", (unsigned long long)p50);
  CHECK(p99 > 97000000 && p99 < 101000000, "p99 within 2%% (%llu)", (unsigned long long)p99);
  CHECK(lg_hist_pct(hist, 100) == 100000000, "p100 is the max");
  free(hist);

  uint8_t d[20];
  char b[32];
  const char *cat = "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  lg_sha1((const uint8_t *)cat, strlen(cat), d);
  lg_base64(d, 20, b);
  CHECK(strcmp(b, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0, "RFC 6455 accept example (%s)", b);
  return TAP_DONE();
}
