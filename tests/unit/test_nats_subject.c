/*
 * test_nats_subject.c -- the NATS bus's subjects (plugins/nats/subject.c):
 * which rooms may become subjects, how subjects are built and parsed.
 *
 * Build: cc -I core/include -I plugins/nats tests/unit/test_nats_subject.c
 *        plugins/nats/subject.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vcgate/plugin.h>

#include "subject.h"
#include "tap.h"


int main(void) {
  char buf[64], room[32];
  uint64_t sid = 99;

  CHECK(vcg__nats_room_ok("lobby") && vcg__nats_room_ok("a.b") &&
        vcg__nats_room_ok("r-1_x"), "room: plain names are accepted");
  CHECK(!vcg__nats_room_ok("") && !vcg__nats_room_ok(NULL),
        "room: empty is refused");
  CHECK(!vcg__nats_room_ok("a*") && !vcg__nats_room_ok(">") &&
        !vcg__nats_room_ok("a b") && !vcg__nats_room_ok("a\tb"),
        "room: wildcards and whitespace are refused");
  CHECK(!vcg__nats_room_ok(".a") && !vcg__nats_room_ok("a.") &&
        !vcg__nats_room_ok("a..b"), "room: empty subject tokens are refused");

  CHECK(vcg__nats_subject(buf, sizeof(buf), "lobby", 18446744073709551615u, 0) > 0 &&
        strcmp(buf, "room.lobby.18446744073709551615") == 0,
        "subject: room.{room}.{session_id}");
  CHECK(vcg__nats_subject(buf, sizeof(buf), "lobby", 0, 1) > 0 &&
        strcmp(buf, "room.lobby.*") == 0, "subject: wildcard room.{room}.*");
  CHECK(vcg__nats_subject(buf, 8, "lobby", 1, 0) == VCG_ENOBUFS,
        "subject: too small a buffer is ENOBUFS");

  CHECK(vcg__nats_parse_subject("room.lobby.42", room, sizeof(room), &sid) == 0 &&
        strcmp(room, "lobby") == 0 && sid == 42, "parse: room and session");
  CHECK(vcg__nats_parse_subject("room.a.b.7", room, sizeof(room), &sid) == 0 &&
        strcmp(room, "a.b") == 0 && sid == 7, "parse: a room with dots");
  CHECK(vcg__nats_parse_subject("room.lobby.system", room, sizeof(room), &sid) == 0 &&
        sid == 0, "parse: system events have origin 0");
  CHECK(vcg__nats_parse_subject("room.lobby.x1", room, sizeof(room), &sid) == VCG_EINVAL &&
        vcg__nats_parse_subject("room.lobby", room, sizeof(room), &sid) == VCG_EINVAL &&
        vcg__nats_parse_subject("room..5", room, sizeof(room), &sid) == VCG_EINVAL &&
        vcg__nats_parse_subject("room.lobby.", room, sizeof(room), &sid) == VCG_EINVAL &&
        vcg__nats_parse_subject("health.x.1", room, sizeof(room), &sid) == VCG_EINVAL,
        "parse: other shapes are EINVAL");
  CHECK(vcg__nats_parse_subject("room.l.18446744073709551616", room, sizeof(room), &sid) == VCG_EINVAL,
        "parse: session id overflow is EINVAL");
  CHECK(vcg__nats_parse_subject("room.a-very-long-room-name-indeed-yes.1", room, 8, &sid) == VCG_ENOBUFS,
        "parse: room longer than the buffer is ENOBUFS");
  CHECK(vcg__nats_subject(buf, sizeof(buf), "lobby", 0, 0) > 0 &&
        strcmp(buf, "room.lobby.system") == 0, "subject: session id 0 is the room's events");

  /* Batches: records in, the same records out, in order. */
  uint8_t *b = NULL;
  size_t blen = 0, bcap = 0, pos = 0, n;
  const uint8_t *data;
  uint64_t origin;
  CHECK(vcg__nats_batch_append(&b, &blen, &bcap, 42, (const uint8_t *)"abc", 3) == 0 &&
        vcg__nats_batch_append(&b, &blen, &bcap, 1ull << 40, (const uint8_t *)"", 0) == 0,
        "batch: records appended");
  CHECK(vcg__nats_batch_next(b, blen, &pos, &origin, &data, &n) == 1 && origin == 42 && n == 3 &&
        memcmp(data, "abc", 3) == 0, "batch: first record back");
  CHECK(vcg__nats_batch_next(b, blen, &pos, &origin, &data, &n) == 1 && origin == 1ull << 40 &&
        n == 0, "batch: second record back");
  CHECK(vcg__nats_batch_next(b, blen, &pos, &origin, &data, &n) == 0, "batch: then the end");
  pos = 0;
  CHECK(vcg__nats_batch_next(b, blen - 1, &pos, &origin, &data, &n) == 1 &&
        vcg__nats_batch_next(b, blen - 1, &pos, &origin, &data, &n) == VCG_EINVAL,
        "batch: a truncated record is EINVAL");
  pos = 0;
  const uint8_t bad[] = { 0x01, 0x7f, 'x' }; /* says 127 bytes, has 1 */
  CHECK(vcg__nats_batch_next(bad, sizeof bad, &pos, &origin, &data, &n) == VCG_EINVAL,
        "batch: a length past the end is EINVAL");
  free(b);
  CHECK(vcg__nats_batch_subject(buf, sizeof(buf), "lobby") > 0 && strcmp(buf, "vcgate.lobby") == 0 &&
        vcg__nats_parse_batch_subject("vcgate.lobby", room, sizeof(room)) == 0 &&
        strcmp(room, "lobby") == 0 &&
        vcg__nats_parse_batch_subject("room.lobby.1", room, sizeof(room)) == VCG_EINVAL,
        "batch: the subject vcgate.{room}");
  return TAP_DONE();
}
