/*
 * h3.c -- HTTP/3 framing for the WebTransport plugin: varints, frames,
 * SETTINGS, stream prefixes and capsules.  See h3.h.
 */
#include <string.h>

#include <vcgate/plugin.h>

#include "h3.h"

/* ------------------------------------------------------------ varints */

size_t vcg__wt_varint_len(uint64_t v) {
  if (v < 64) return 1;
  if (v < 16384) return 2;
  if (v < 1073741824ull) return 4;
  if (v <= VCG__VARINT_MAX) return 8;
  return 0;
}

uint8_t *vcg__wt_varint_put(uint8_t *p, uint64_t v) {
  switch (vcg__wt_varint_len(v)) {
  case 1:
    *p++ = (uint8_t)v;
    break;
  case 2:
    *p++ = (uint8_t)(0x40 | (v >> 8));
    *p++ = (uint8_t)v;
    break;
  case 4:
    *p++ = (uint8_t)(0x80 | (v >> 24));
    *p++ = (uint8_t)(v >> 16);
    *p++ = (uint8_t)(v >> 8);
    *p++ = (uint8_t)v;
    break;
  default: /* 8; callers never pass values above 2^62-1 */
    *p++ = (uint8_t)(0xc0 | ((v >> 56) & 0x3f));
    for (int sh = 48; sh >= 0; sh -= 8) *p++ = (uint8_t)(v >> sh);
    break;
  }
  return p;
}

size_t vcg__wt_varint_get(const uint8_t *p, size_t len, uint64_t *v) {
  if (len == 0) return 0;
  size_t n = (size_t)1 << (p[0] >> 6);
  if (len < n) return 0;
  uint64_t x = p[0] & 0x3f;
  for (size_t i = 1; i < n; i++) x = (x << 8) | p[i];
  *v = x;
  return n;
}

void vcg__wt_varint_rd_reset(vcg__wt_varint_rd_t *r) {
  r->have = 0;
  r->need = 0;
}

size_t vcg__wt_varint_rd_feed(vcg__wt_varint_rd_t *r, const uint8_t *p,
                              size_t len, int *done, uint64_t *v) {
  size_t used = 0;
  *done = 0;
  if (r->need && r->have == r->need) { /* already complete */
    *done = 1;
    vcg__wt_varint_get(r->buf, r->have, v);
    return 0;
  }
  while (used < len) {
    if (r->need == 0) r->need = (uint8_t)(1u << (p[used] >> 6));
    r->buf[r->have++] = p[used++];
    if (r->have == r->need) {
      vcg__wt_varint_get(r->buf, r->have, v);
      *done = 1;
      break;
    }
  }
  return used;
}

/* ------------------------------------------------------ stream prefix */

void vcg__wt_prefix_init(vcg__wt_prefix_t *x, int bidi) {
  memset(x, 0, sizeof(*x));
  x->bidi = bidi;
  vcg__wt_varint_rd_reset(&x->rd);
}

size_t vcg__wt_prefix_feed(vcg__wt_prefix_t *x, const uint8_t *p, size_t len,
                           int *kind) {
  size_t used = 0;
  int done;
  uint64_t v;

  *kind = VCG__WT_PFX_MORE;
  if (x->state == 2) {
    *kind = x->kind;
    return 0;
  }
  if (x->state == 0) {
    used += vcg__wt_varint_rd_feed(&x->rd, p, len, &done, &v);
    if (!done) return used;
    x->type = v;
    if (x->bidi) {
      if (v == VCG__WT_STREAM_BIDI) {
        x->state = 1;
      } else {
        /* An ordinary request stream: the varint we ate is the first
         * frame type, which the frame parser must still see. */
        memcpy(x->replay, x->rd.buf, x->rd.have);
        x->replaylen = x->rd.have;
        x->kind = VCG__WT_PFX_REQUEST;
        x->state = 2;
      }
    } else {
      switch (v) {
      case VCG__H3_STREAM_CONTROL: x->kind = VCG__WT_PFX_CONTROL; x->state = 2; break;
      case VCG__H3_STREAM_QPACK_ENC: x->kind = VCG__WT_PFX_QPACK_ENC; x->state = 2; break;
      case VCG__H3_STREAM_QPACK_DEC: x->kind = VCG__WT_PFX_QPACK_DEC; x->state = 2; break;
      case VCG__WT_STREAM_UNI: x->state = 1; break;
      default: x->kind = VCG__WT_PFX_UNKNOWN; x->state = 2; break;
      }
    }
    vcg__wt_varint_rd_reset(&x->rd);
    if (x->state == 2) {
      *kind = x->kind;
      return used;
    }
  }
  /* state 1: the session id after a WebTransport signal */
  used += vcg__wt_varint_rd_feed(&x->rd, p + used, len - used, &done, &v);
  if (!done) return used;
  x->session_id = v;
  x->kind = x->bidi ? VCG__WT_PFX_WT_BIDI : VCG__WT_PFX_WT_UNI;
  x->state = 2;
  *kind = x->kind;
  return used;
}

/* ------------------------------------------------------- frame reader */

void vcg__wt_frame_rd_init(vcg__wt_frame_rd_t *r) {
  memset(r, 0, sizeof(*r));
  vcg__wt_varint_rd_reset(&r->rd);
}

int vcg__wt_frame_rd_idle(const vcg__wt_frame_rd_t *r) {
  return r->state == 0 && r->rd.have == 0;
}

size_t vcg__wt_frame_next(vcg__wt_frame_rd_t *r, const uint8_t *data,
                          size_t len, vcg__wt_fev_t *ev) {
  size_t used = 0;
  int done;
  uint64_t v;

  memset(ev, 0, sizeof(*ev));
  ev->kind = VCG__WT_FEV_NONE;
  ev->type = r->type;
  ev->len = r->len;

  if (r->state == 3) { /* the payload ended on the previous call */
    r->state = 0;
    ev->kind = VCG__WT_FEV_END;
    return 0;
  }
  if (r->state == 0) {
    used += vcg__wt_varint_rd_feed(&r->rd, data, len, &done, &v);
    if (!done) return used;
    r->type = v;
    vcg__wt_varint_rd_reset(&r->rd);
    r->state = 1;
  }
  if (r->state == 1) {
    used += vcg__wt_varint_rd_feed(&r->rd, data + used, len - used, &done, &v);
    if (!done) return used;
    r->len = r->left = v;
    vcg__wt_varint_rd_reset(&r->rd);
    r->state = r->left ? 2 : 3;
    ev->kind = VCG__WT_FEV_START;
    ev->type = r->type;
    ev->len = r->len;
    return used;
  }
  /* state 2: payload */
  if (used == len) return used;
  size_t n = len - used;
  if ((uint64_t)n > r->left) n = (size_t)r->left;
  ev->kind = VCG__WT_FEV_DATA;
  ev->type = r->type;
  ev->len = r->len;
  ev->data = data + used;
  ev->datalen = n;
  r->left -= n;
  if (r->left == 0) r->state = 3;
  return used + n;
}

size_t vcg__wt_frame_header(uint8_t *out, uint64_t type, uint64_t len) {
  uint8_t *p = vcg__wt_varint_put(out, type);
  p = vcg__wt_varint_put(p, len);
  return (size_t)(p - out);
}

/* ------------------------------------------------------------ capsules */

void vcg__wt_capsule_rd_init(vcg__wt_capsule_rd_t *c) {
  memset(c, 0, sizeof(*c));
  vcg__wt_frame_rd_init(&c->fr);
}

size_t vcg__wt_capsule_feed(vcg__wt_capsule_rd_t *c, const uint8_t *p,
                            size_t len, int *ev) {
  size_t used = 0;
  vcg__wt_fev_t fe;

  *ev = VCG__WT_CAP_NONE;
  for (;;) {
    size_t n = vcg__wt_frame_next(&c->fr, p + used, len - used, &fe);
    used += n;
    switch (fe.kind) {
    case VCG__WT_FEV_NONE:
      return used;
    case VCG__WT_FEV_START:
      if (fe.type == VCG__WT_CAPSULE_CLOSE_SESSION) {
        /* A 32-bit code and at most 1024 bytes of reason. */
        if (fe.len < 4 || fe.len > sizeof(c->buf)) {
          *ev = VCG__WT_CAP_ERROR;
          return used;
        }
        c->buflen = 0;
      }
      break;
    case VCG__WT_FEV_DATA:
      if (fe.type == VCG__WT_CAPSULE_CLOSE_SESSION) {
        memcpy(c->buf + c->buflen, fe.data, fe.datalen);
        c->buflen += fe.datalen;
      }
      /* Every other capsule type, GREASE included, is skipped unseen. */
      break;
    case VCG__WT_FEV_END:
      if (fe.type == VCG__WT_CAPSULE_CLOSE_SESSION) {
        c->code = ((uint32_t)c->buf[0] << 24) | ((uint32_t)c->buf[1] << 16) |
                  ((uint32_t)c->buf[2] << 8) | c->buf[3];
        size_t rl = c->buflen - 4;
        memcpy(c->reason, c->buf + 4, rl);
        c->reason[rl] = '\0';
        c->closed = 1;
        *ev = VCG__WT_CAP_CLOSE;
        return used;
      }
      if (fe.type == VCG__WT_CAPSULE_DRAIN_SESSION) {
        *ev = VCG__WT_CAP_DRAIN;
        return used;
      }
      break;
    }
  }
}

size_t vcg__wt_close_frame_encode(uint8_t *out, size_t cap, uint32_t code,
                                  const char *reason) {
  size_t rl = reason ? strlen(reason) : 0;
  if (rl > VCG__WT_CLOSE_REASON_MAX) rl = VCG__WT_CLOSE_REASON_MAX;
  uint64_t caplen = 4 + rl;
  uint64_t caps = vcg__wt_varint_len(VCG__WT_CAPSULE_CLOSE_SESSION) +
                  vcg__wt_varint_len(caplen) + caplen;
  size_t total = vcg__wt_varint_len(VCG__H3_FRAME_DATA) +
                 vcg__wt_varint_len(caps) + (size_t)caps;
  if (total > cap) return 0;
  uint8_t *p = out;
  p += vcg__wt_frame_header(p, VCG__H3_FRAME_DATA, caps);
  p += vcg__wt_frame_header(p, VCG__WT_CAPSULE_CLOSE_SESSION, caplen);
  *p++ = (uint8_t)(code >> 24);
  *p++ = (uint8_t)(code >> 16);
  *p++ = (uint8_t)(code >> 8);
  *p++ = (uint8_t)code;
  if (rl) memcpy(p, reason, rl);
  p += rl;
  return (size_t)(p - out);
}

size_t vcg__wt_drain_frame_encode(uint8_t *out, size_t cap) {
  /* The capsule: type 0x78ae (a 4-byte varint), length 0. */
  size_t caps = vcg__wt_varint_len(VCG__WT_CAPSULE_DRAIN_SESSION) + 1;
  size_t hl = vcg__wt_varint_len(VCG__H3_FRAME_DATA) + vcg__wt_varint_len(caps);
  if (hl + caps > cap || hl + caps != VCG__WT_DRAIN_FRAME_LEN) return 0;
  uint8_t *p = out + vcg__wt_frame_header(out, VCG__H3_FRAME_DATA, caps);
  p += vcg__wt_frame_header(p, VCG__WT_CAPSULE_DRAIN_SESSION, 0);
  return (size_t)(p - out);
}

/* ------------------------------------------------------------ SETTINGS */

size_t vcg__wt_settings_encode(uint8_t *out, size_t cap,
                               const vcg__wt_setting_t *s, size_t n) {
  uint64_t plen = 0;
  for (size_t i = 0; i < n; i++) {
    size_t a = vcg__wt_varint_len(s[i].id), b = vcg__wt_varint_len(s[i].value);
    if (!a || !b) return 0;
    plen += a + b;
  }
  size_t total = vcg__wt_varint_len(VCG__H3_FRAME_SETTINGS) +
                 vcg__wt_varint_len(plen) + (size_t)plen;
  if (total > cap) return 0;
  uint8_t *p = out + vcg__wt_frame_header(out, VCG__H3_FRAME_SETTINGS, plen);
  for (size_t i = 0; i < n; i++) {
    p = vcg__wt_varint_put(p, s[i].id);
    p = vcg__wt_varint_put(p, s[i].value);
  }
  return (size_t)(p - out);
}

int vcg__wt_settings_parse(const uint8_t *p, size_t len,
                           vcg__wt_peer_settings_t *out) {
  /* Known identifiers seen so far, to refuse duplicates (bit per slot). */
  static const uint64_t known[] = {
    VCG__H3_SETTINGS_QPACK_MAX_TABLE_CAPACITY,
    VCG__H3_SETTINGS_MAX_FIELD_SECTION_SIZE,
    VCG__H3_SETTINGS_QPACK_BLOCKED_STREAMS,
    VCG__H3_SETTINGS_ENABLE_CONNECT_PROTOCOL,
    VCG__H3_SETTINGS_H3_DATAGRAM,
    VCG__H3_SETTINGS_WT_DRAFT02,
    VCG__H3_SETTINGS_WT_MAX_SESSIONS_DRAFT07,
  };
  unsigned seen = 0;

  memset(out, 0, sizeof(*out));
  out->max_field_section_size = UINT64_MAX;
  size_t off = 0;
  while (off < len) {
    uint64_t id, val;
    size_t a = vcg__wt_varint_get(p + off, len - off, &id);
    if (!a) return VCG_EINVAL;
    size_t b = vcg__wt_varint_get(p + off + a, len - off - a, &val);
    if (!b) return VCG_EINVAL;
    off += a + b;
    out->count++;
    /* HTTP/2 settings that HTTP/3 reserves (RFC 9114 section 7.2.4.1). */
    if (id == 0x02 || id == 0x03 || id == 0x04 || id == 0x05) return VCG_EINVAL;
    for (unsigned i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
      if (known[i] != id) continue;
      if (seen & (1u << i)) return VCG_EINVAL;
      seen |= 1u << i;
    }
    switch (id) {
    case VCG__H3_SETTINGS_QPACK_MAX_TABLE_CAPACITY: out->qpack_max_table_capacity = val; break;
    case VCG__H3_SETTINGS_MAX_FIELD_SECTION_SIZE: out->max_field_section_size = val; break;
    case VCG__H3_SETTINGS_QPACK_BLOCKED_STREAMS: out->qpack_blocked_streams = val; break;
    case VCG__H3_SETTINGS_ENABLE_CONNECT_PROTOCOL:
      if (val > 1) return VCG_EINVAL;
      out->enable_connect_protocol = (int)val;
      break;
    case VCG__H3_SETTINGS_H3_DATAGRAM:
      if (val > 1) return VCG_EINVAL;
      out->h3_datagram = (int)val;
      break;
    case VCG__H3_SETTINGS_WT_DRAFT02: out->wt_draft02 = val != 0; break;
    case VCG__H3_SETTINGS_WT_MAX_SESSIONS_DRAFT07: out->wt_max_sessions = val; break;
    default: break; /* unknown and GREASE identifiers are ignored */
    }
  }
  return 0;
}

size_t vcg__wt_control_stream_prefix(uint8_t *out, size_t cap,
                                     uint64_t wt_max_sessions) {
  /* QPACK dynamic table capacity 0 and no blocked streams: we open no
   * QPACK encoder or decoder stream, which RFC 9204 allows and Chromium
   * accepts (WEBTRANSPORT.md, design B). */
  const vcg__wt_setting_t s[] = {
    { VCG__H3_SETTINGS_QPACK_MAX_TABLE_CAPACITY, 0 },
    { VCG__H3_SETTINGS_QPACK_BLOCKED_STREAMS, 0 },
    { VCG__H3_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 },
    { VCG__H3_SETTINGS_H3_DATAGRAM, 1 },
    { VCG__H3_SETTINGS_WT_DRAFT02, 1 },
    { VCG__H3_SETTINGS_WT_MAX_SESSIONS_DRAFT07, wt_max_sessions ? wt_max_sessions : 1 },
  };
  if (cap < 1) return 0;
  out[0] = VCG__H3_STREAM_CONTROL;
  size_t n = vcg__wt_settings_encode(out + 1, cap - 1, s, sizeof(s) / sizeof(s[0]));
  return n ? n + 1 : 0;
}
