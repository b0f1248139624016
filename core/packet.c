#include "packet.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "packet_wrapper.pb-c.h"
#include "meeting_packet.pb-c.h"
#include "util/varint.h"

/* The inner MediaPacket's type, or -1 when the bytes are not a MediaPacket.
 * With end-to-end encryption PacketWrapper.data is AES-CBC ciphertext and
 * the type is hidden; but 1 in 65,536 ciphertexts starts with the two
 * bytes of "media_type = RTT" (08 05) and as many with KEYFRAME_REQUEST
 * (08 06), and the relay must not echo a participant's encrypted frame back
 * to it instead of relaying it (the overload benchmark with --encrypted
 * lost 24 deliveries of 2.7M that way) or rate-limit it as a keyframe
 * request.  So the whole message is walked as protobuf wire format, as
 * prost (the videocall.rs relay's decoder) would parse it, and only a
 * well-formed one has a type: random bytes rarely are, and the walk touches
 * tags and lengths only, a few steps for a video frame.  Every encoder
 * writes field 1 first, so anything else is -1 at once; a later field 1
 * wins, as in protobuf. */
static int inner_media_type(const uint8_t *d, size_t len) {
  if (!d || len == 0) return 0;
  if (d[0] != 0x08) return -1;
  int type = -1;
  for (size_t i = 0; i < len;) {
    uint64_t tag, v;
    size_t n = vcg_varint_get(d + i, len - i, &tag);
    if (!n || tag >> 3 == 0 || tag >> 3 > 0x1fffffff) return -1;
    i += n;
    switch (tag & 7) {
    case 0:
      if (!(n = vcg_varint_get(d + i, len - i, &v))) return -1;
      i += n;
      if (tag >> 3 == 1) {
        if (v > 0x7fffffff) return -1;
        type = (int)v;
      }
      continue;
    case 1: n = 8; break;
    case 5: n = 4; break;
    case 2:
      if (!(n = vcg_varint_get(d + i, len - i, &v)) || v > len - i - n) return -1;
      n += (size_t)v;
      break;
    default: return -1; /* groups (3, 4), 6, 7 */
    }
    if (tag >> 3 == 1 || n > len - i) return -1; /* media_type is a varint */
    i += n;
  }
  return type;
}

/* The relay needs two integers of each inbound PacketWrapper and must
 * refuse bytes that are not one.  protobuf-c's unpack would do both, at the
 * price of three allocations and a copy of the payload per packet, so the
 * hot path walks the wire format instead and keeps nothing.
 *
 * What it accepts: what every receiver can parse, i.e. what protobuf-c
 * 1.4 (C clients, our own tests) accepts AND what the protobuf
 * specification (prost, the Rust clients' decoder) accepts.  The two
 * differ in two corners, found by a differential fuzzer:
 *  - a tag whose field number is 0 (`80 00 01`): protobuf-c skips it as an
 *    unknown field, the specification (and prost) refuses it: refused;
 *  - a length prefix longer than 5 bytes (`2a 80 80 80 80 80 00`, a
 *    zero-padded 0): the specification allows 10-byte varints, protobuf-c
 *    refuses lengths over 5 bytes: refused.  5-byte lengths are read as
 *    protobuf-c reads them, all 35 bits, over INT_MAX refused (so
 *    `2a 80 80 80 80 10`, 2^32, is too long, not 0).
 * tests/unit/test_packet.c and tests/fuzz/fuzz_packet.c check this rule
 * exactly against protobuf-c.  protobuf-c still encodes every packet the
 * server makes. */
int vcg__pw_decode(const uint8_t *data, size_t len, vcg__pw_header_t *h) {
  const uint8_t *inner = NULL;
  size_t inner_len = 0, i = 0;
  h->type = 0;
  h->session_id = 0;
  h->media_type = -1;
  h->user = h->data = NULL;
  h->user_len = h->data_len = 0;
  while (i < len) {
    uint64_t tag, v;
    /* Tags as protobuf-c reads them: at most 5 bytes, the field number
     * kept modulo 2^32. */
    size_t n = vcg_varint_get(data + i, len - i < 5 ? len - i : 5, &tag);
    if (!n) return VCG_EINVAL;
    i += n;
    uint32_t field = (uint32_t)(tag >> 3);
    unsigned wt = (unsigned)(tag & 7);
    if (field == 0) return VCG_EINVAL;
    switch (wt) {
    case 0: /* varint */
      if (!(n = vcg_varint_get(data + i, len - i, &v))) return VCG_EINVAL;
      i += n;
      if (field == 1) h->type = (int)(int32_t)v;
      else if (field == 4) h->session_id = v;
      else if (field == 2 || field == 3) return VCG_EINVAL;
      break;
    case 1: /* 64-bit */
      if (len - i < 8 || (field >= 1 && field <= 4)) return VCG_EINVAL;
      i += 8;
      break;
    case 5: /* 32-bit */
      if (len - i < 4 || (field >= 1 && field <= 4)) return VCG_EINVAL;
      i += 4;
      break;
    case 2: /* length-delimited: at most 5 bytes, as protobuf-c reads them */
      if (!(n = vcg_varint_get(data + i, len - i < 5 ? len - i : 5, &v))) return VCG_EINVAL;
      i += n;
      if (v > INT_MAX || v > len - i) return VCG_EINVAL;
      if (field == 1 || field == 4) return VCG_EINVAL;
      if (field == 3) { inner = data + i; inner_len = (size_t)v; }
      else if (field == 2) { h->user = data + i; h->user_len = (size_t)v; }
      i += (size_t)v;
      break;
    default: /* groups (3, 4) and reserved types: not proto3 */
      return VCG_EINVAL;
    }
  }
  h->data = inner;
  h->data_len = inner_len;
  if (h->type == VCG_PT_MEDIA) h->media_type = inner_media_type(inner, inner_len);
  return 0;
}

static vcg_packet_t *packet_alloc(size_t len) {
  if (len > UINT32_MAX - 16) return NULL;
  vcg_packet_t *p = malloc(sizeof *p + len);
  if (!p) return NULL;
  atomic_init(&p->refs, 1);
  p->len = (uint32_t)len;
  p->deadline_ms = 0; /* unset: vcg__relay_stamp() sets it by class */
  p->arrival_ms = 0;
  return p;
}

vcg_packet_t *vcg__packet_from_wire(const uint8_t *data, size_t len,
                                    const vcg__pw_header_t *h, uint64_t stamp_id) {
  int stamp = stamp_id != 0 && h->session_id != stamp_id;
  vcg_packet_t *p = packet_alloc(len + (stamp ? 11 : 0));
  if (!p) return NULL;
  memcpy(p->data, data, len);
  p->len = (uint32_t)len;
  if (stamp) {
    p->data[len] = 0x20; /* field 4, varint */
    p->len += (uint32_t)(1 + vcg_varint_put(p->data + len + 1, stamp_id));
  }
  p->type = h->type;
  p->media_type = h->media_type;
  p->session_id = stamp ? stamp_id : h->session_id;
  return p;
}

vcg_packet_t *vcg__packet_copy(const uint8_t *data, size_t len, const vcg__pw_header_t *h) {
  return vcg__packet_from_wire(data, len, h, 0);
}

void vcg__packet_ref(vcg_packet_t *p) {
  atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void vcg__packet_unref(vcg_packet_t *p) {
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) free(p);
}

static vcg_packet_t *pack_wrapper(const Vcgate__PacketWrapper *pw) {
  size_t n = vcgate__packet_wrapper__get_packed_size(pw);
  vcg_packet_t *p = packet_alloc(n);
  if (!p) return NULL;
  vcgate__packet_wrapper__pack(pw, p->data);
  p->deadline_ms = UINT64_MAX; /* the server's own packets always go out */
  p->type = (int32_t)pw->packet_type;
  p->media_type = -1;
  p->session_id = pw->session_id;
  return p;
}

/* A PacketWrapper from the server: the system identity, no data. */
static vcg_packet_t *system_packet(int type, uint64_t session_id) {
  Vcgate__PacketWrapper pw = VCGATE__PACKET_WRAPPER__INIT;
  pw.packet_type = (Vcgate__PacketWrapper__PacketType)type;
  pw.user_id.data = (uint8_t *)VCG_SYSTEM_USER;
  pw.user_id.len = strlen(VCG_SYSTEM_USER);
  pw.session_id = session_id;
  return pack_wrapper(&pw);
}

vcg_packet_t *vcg__packet_session_assigned(uint64_t session_id) {
  return system_packet(VCG_PT_SESSION_ASSIGNED, session_id);
}

vcg_packet_t *vcg__packet_event(const vcg__event_t *e) {
  Vcgate__MeetingPacket mp = VCGATE__MEETING_PACKET__INIT;
  mp.event_type = (Vcgate__MeetingPacket__MeetingEventType)e->type;
  mp.room_id = (char *)(e->room ? e->room : "");
  mp.start_time_ms = e->start_ms;
  mp.message = (char *)(e->message ? e->message : "");
  if (e->creator) {
    mp.creator_id.data = (uint8_t *)e->creator;
    mp.creator_id.len = strlen(e->creator);
  }
  if (e->target) {
    mp.target_user_id.data = (uint8_t *)e->target;
    mp.target_user_id.len = strlen(e->target);
  }
  if (e->display_name) {
    mp.display_name.data = (uint8_t *)e->display_name;
    mp.display_name.len = strlen(e->display_name);
  }
  mp.session_id = e->session_id;
  size_t n = vcgate__meeting_packet__get_packed_size(&mp);
  uint8_t stackbuf[1024], *buf = n <= sizeof stackbuf ? stackbuf : malloc(n);
  if (!buf) return NULL;
  vcgate__meeting_packet__pack(&mp, buf);
  Vcgate__PacketWrapper pw = VCGATE__PACKET_WRAPPER__INIT;
  pw.packet_type = VCGATE__PACKET_WRAPPER__PACKET_TYPE__MEETING;
  pw.user_id.data = (uint8_t *)VCG_SYSTEM_USER;
  pw.user_id.len = strlen(VCG_SYSTEM_USER);
  pw.data.data = buf;
  pw.data.len = n;
  pw.session_id = e->to;
  vcg_packet_t *p = pack_wrapper(&pw);
  if (buf != stackbuf) free(buf);
  return p;
}

int vcg__event_parse(const uint8_t *data, size_t len, int *type, uint64_t *start_ms,
                     uint64_t *session_id, uint64_t *to, char *target, size_t tcap) {
  vcg__pw_header_t h;
  if (vcg__pw_decode(data, len, &h) != 0 || h.type != VCG_PT_MEETING || !h.user ||
      h.user_len != strlen(VCG_SYSTEM_USER) || memcmp(h.user, VCG_SYSTEM_USER, h.user_len) != 0)
    return VCG_EINVAL;
  Vcgate__MeetingPacket *mp = vcgate__meeting_packet__unpack(NULL, h.data_len, h.data ? h.data : (const uint8_t *)"");
  if (!mp) return VCG_EINVAL;
  *type = (int)mp->event_type;
  *start_ms = mp->start_time_ms;
  *session_id = mp->session_id;
  *to = h.session_id;
  size_t n = mp->target_user_id.len < tcap ? mp->target_user_id.len : tcap - 1;
  if (n) memcpy(target, mp->target_user_id.data, n);
  target[n] = '\0';
  vcgate__meeting_packet__free_unpacked(mp, NULL);
  return 0;
}

vcg_packet_t *vcg__packet_congestion(uint64_t session_id) {
  return system_packet(VCG_PT_CONGESTION, session_id);
}
