/* The WebTransport plugin's HTTP/3 parsers (plugins/webtransport/h3.c):
 * stream prefixes, frames, SETTINGS, capsules, and the QPACK request
 * decoder behind the first HEADERS frame, driven the way session.c drives
 * them.  They are incremental, so the same stream fed in one piece, one
 * byte at a time and in two random splittings must produce the same
 * trace of events.  The first byte picks the stream:
 *   mode % 4 == 0  a client unidirectional stream (control stream:
 *                  frames and SETTINGS; WebTransport uni: a payload);
 *   mode % 4 == 1  a client bidirectional stream (a request: HEADERS,
 *                  then DATA frames carrying capsules; or WebTransport bidi);
 *   mode % 4 == 2  a capsule stream alone (the DATA frames' payloads);
 *   mode % 4 == 3  a SETTINGS payload and every varint in it. */
#include <string.h>
#include "fuzz.h"
#include "h3.h"
#include "qpack.h"
#include "vcgate/plugin.h"

/* session.c's limits on what it collects. */
#define MAX_SETTINGS 4096u
#define MAX_HEADERS (16u << 10)

typedef struct {
  uint8_t *b;
  size_t n, cap;
} trace_t;

typedef struct {
  int mode;
  int decode;               /* run the QPACK decoder (one run per input) */
  vcg__wt_prefix_t pfx;
  int kind;                 /* enum vcg__wt_prefix_kind */
  vcg__wt_frame_rd_t fr;
  vcg__wt_capsule_rd_t caps;
  int caps_failed;
  int headers_seen;
  uint8_t *buf;             /* a SETTINGS or the first HEADERS payload */
  size_t len, cap;
  int collecting, too_big;
  uint64_t fhash, fgot;     /* the current frame's payload so far */
  uint64_t body_hash, body_len; /* a WebTransport uni stream's payload */
  trace_t t;
} stream_t;

static void rec(stream_t *s, int tag, uint64_t a, uint64_t b) {
  if (s->t.n + 17 > s->t.cap) {
    size_t cap = s->t.cap ? 2 * s->t.cap : 1024;
    uint8_t *nb = realloc(s->t.b, cap);
    if (!nb) abort();
    s->t.b = nb;
    s->t.cap = cap;
  }
  s->t.b[s->t.n++] = (uint8_t)tag;
  memcpy(s->t.b + s->t.n, &a, 8);
  memcpy(s->t.b + s->t.n + 8, &b, 8);
  s->t.n += 16;
}

static void capsules(stream_t *s, const uint8_t *p, size_t n) {
  while (n > 0 && !s->caps_failed && !s->caps.closed) { /* nothing may follow CLOSE */
    int ev;
    size_t used = vcg__wt_capsule_feed(&s->caps, p, n, &ev);
    FUZZ_CHECK(used <= n, "capsule_feed took %zu of %zu", used, n);
    p += used;
    n -= used;
    if (ev == VCG__WT_CAP_CLOSE) {
      size_t rl = strlen(s->caps.reason);
      FUZZ_CHECK(rl <= VCG__WT_CLOSE_REASON_MAX && s->caps.closed, "CLOSE reason of %zu bytes", rl);
      rec(s, 'C', s->caps.code, fuzz_fnv(FUZZ_FNV_INIT, (const uint8_t *)s->caps.reason, rl));
    } else if (ev == VCG__WT_CAP_DRAIN) {
      rec(s, 'D', 0, 0);
    } else if (ev == VCG__WT_CAP_ERROR) {
      rec(s, 'E', 0, 0);
      s->caps_failed = 1;
    } else {
      FUZZ_CHECK(ev == VCG__WT_CAP_NONE && n == 0, "capsule_feed: event %d, %zu bytes left", ev, n);
    }
  }
}

static void collect(stream_t *s, const uint8_t *p, size_t n) {
  if (!s->collecting) return;
  if (s->len + n > s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 256;
    while (cap < s->len + n) cap *= 2;
    uint8_t *nb = realloc(s->buf, cap);
    if (!nb) abort();
    s->buf = nb;
    s->cap = cap;
  }
  memcpy(s->buf + s->len, p, n);
  s->len += n;
}

static void frame_start(stream_t *s, const vcg__wt_fev_t *ev) {
  s->collecting = 0;
  s->len = 0;
  if (ev->type == VCG__H3_FRAME_SETTINGS || (ev->type == VCG__H3_FRAME_HEADERS && !s->headers_seen)) {
    uint64_t max = ev->type == VCG__H3_FRAME_SETTINGS ? MAX_SETTINGS : MAX_HEADERS;
    s->collecting = ev->len <= max;
    if (!s->collecting) rec(s, 'B', ev->type, ev->len); /* session.c: H3_EXCESSIVE_LOAD */
  }
}

static void frame_end(stream_t *s, const vcg__wt_fev_t *ev) {
  if (!s->collecting) return;
  s->collecting = 0;
  if (ev->type == VCG__H3_FRAME_SETTINGS) {
    vcg__wt_peer_settings_t ps;
    int rc = vcg__wt_settings_parse(s->buf, s->len, &ps);
    rec(s, 'S', (uint64_t)rc, rc ? 0 : fuzz_fnv(FUZZ_FNV_INIT, (const uint8_t *)&ps, sizeof ps));
  } else {
    /* The same block decodes the same way: the trace keeps the block, and
     * only one run pays for the decoder. */
    s->headers_seen = 1;
    rec(s, 'Q', s->len, fuzz_fnv(FUZZ_FNV_INIT, s->buf, s->len));
    if (s->decode) {
      vcg__wt_request_t req;
      int rc = vcg__wt_qpack_decode_request(0, s->buf, s->len, &req);
      FUZZ_CHECK(rc == 0 || rc == VCG_EINVAL, "qpack_decode_request returned %d", rc);
    }
  }
}

static void frames(stream_t *s, const uint8_t *p, size_t n) {
  vcg__wt_fev_t ev;
  const size_t limit = 4 * n + 8; /* events a reader that progresses can report */
  for (size_t guard = 0;; guard++) {
    FUZZ_CHECK(guard <= limit, "the frame reader makes no progress");
    size_t used = vcg__wt_frame_next(&s->fr, p, n, &ev);
    FUZZ_CHECK(used <= n, "frame_next took %zu of %zu", used, n);
    p += used;
    n -= used;
    switch (ev.kind) {
    case VCG__WT_FEV_NONE:
      FUZZ_CHECK(n == 0, "frame_next: nothing to report with %zu bytes left", n);
      return;
    case VCG__WT_FEV_START:
      FUZZ_CHECK(used > 0, "a frame header from no bytes");
      rec(s, 'F', ev.type, ev.len);
      s->fhash = FUZZ_FNV_INIT;
      s->fgot = 0;
      frame_start(s, &ev);
      break;
    case VCG__WT_FEV_DATA:
      FUZZ_CHECK(ev.datalen > 0 && ev.datalen == used && s->fgot + ev.datalen <= ev.len,
                 "payload piece of %zu bytes at %llu of %llu", ev.datalen,
                 (unsigned long long)s->fgot, (unsigned long long)ev.len);
      s->fgot += ev.datalen;
      s->fhash = fuzz_fnv(s->fhash, ev.data, ev.datalen);
      collect(s, ev.data, ev.datalen);
      if (ev.type == VCG__H3_FRAME_DATA && s->headers_seen) capsules(s, ev.data, ev.datalen);
      break;
    case VCG__WT_FEV_END:
      FUZZ_CHECK(used == 0 && s->fgot == ev.len, "frame ended after %llu of %llu bytes",
                 (unsigned long long)s->fgot, (unsigned long long)ev.len);
      rec(s, 'f', ev.type, s->fhash);
      frame_end(s, &ev);
      break;
    default:
      FUZZ_CHECK(0, "frame event %d", ev.kind);
    }
  }
}

static void feed(stream_t *s, const uint8_t *p, size_t n) {
  if (s->mode == 2) {
    capsules(s, p, n);
    return;
  }
  if (s->kind == VCG__WT_PFX_MORE) {
    int kind;
    size_t used = vcg__wt_prefix_feed(&s->pfx, p, n, &kind);
    FUZZ_CHECK(used <= n, "prefix_feed took %zu of %zu", used, n);
    p += used;
    n -= used;
    if (kind == VCG__WT_PFX_MORE) {
      FUZZ_CHECK(n == 0, "prefix undecided with %zu bytes left", n);
      return;
    }
    s->kind = kind;
    rec(s, 'P', (uint64_t)kind, s->pfx.type ^ (s->pfx.session_id << 1));
    if (kind == VCG__WT_PFX_REQUEST) {
      FUZZ_CHECK(s->pfx.replaylen >= 1 && s->pfx.replaylen <= 8, "replay of %zu bytes", s->pfx.replaylen);
      frames(s, s->pfx.replay, s->pfx.replaylen);
    }
  }
  switch (s->kind) {
  case VCG__WT_PFX_CONTROL:
  case VCG__WT_PFX_REQUEST:
    frames(s, p, n);
    break;
  case VCG__WT_PFX_WT_UNI:
    s->body_hash = fuzz_fnv(s->body_hash, p, n);
    s->body_len += n;
    break;
  default: /* QPACK streams, refused and unknown streams: discarded */
    break;
  }
}

/* Run the stream in pieces (fuzz_chunk's `piece`); returns its trace. */
static trace_t run(int mode, const uint8_t *d, size_t n, size_t piece, uint64_t seed) {
  stream_t *s = calloc(1, sizeof *s);
  if (!s) abort();
  s->mode = mode;
  s->decode = piece == 0;
  s->body_hash = FUZZ_FNV_INIT;
  vcg__wt_prefix_init(&s->pfx, mode == 1);
  vcg__wt_frame_rd_init(&s->fr);
  vcg__wt_capsule_rd_init(&s->caps);
  for (size_t off = 0; off < n;) {
    size_t k = fuzz_chunk(&seed, piece, n - off);
    feed(s, d + off, k);
    off += k;
  }
  rec(s, 'Z', (uint64_t)s->kind | (uint64_t)vcg__wt_frame_rd_idle(&s->fr) << 8 |
                  (uint64_t)s->caps.closed << 9 | (uint64_t)s->caps_failed << 10,
      s->body_hash ^ s->body_len);
  trace_t t = s->t;
  free(s->buf);
  free(s);
  return t;
}

/* Every varint in p, read at once and through the incremental reader. */
static void varints(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint64_t a = 0, b = 0;
    size_t la = vcg__wt_varint_get(p + i, n - i, &a);
    vcg__wt_varint_rd_t rd;
    vcg__wt_varint_rd_reset(&rd);
    int done = 0;
    size_t lb = 0;
    while (!done && i + lb < n) lb += vcg__wt_varint_rd_feed(&rd, p + i + lb, 1, &done, &b);
    FUZZ_CHECK(la == (done ? lb : 0) && (!la || a == b), "varint at %zu: %zu/%llu vs %zu/%llu", i, la,
               (unsigned long long)a, lb, (unsigned long long)b);
    if (la) {
      uint8_t enc[8];
      size_t el = (size_t)(vcg__wt_varint_put(enc, a) - enc);
      FUZZ_CHECK(el == vcg__wt_varint_len(a) && el <= la && vcg__wt_varint_get(enc, el, &b) == el && a == b,
                 "varint %llu does not round-trip", (unsigned long long)a);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int mode = data[0] % 4;
  const uint8_t *d = data + 1;
  size_t n = size - 1;
  if (mode == 3) {
    vcg__wt_peer_settings_t ps;
    int rc = vcg__wt_settings_parse(d, n, &ps);
    FUZZ_CHECK(rc == 0 || rc == VCG_EINVAL, "settings_parse returned %d", rc);
    varints(d, n);
    return 0;
  }
  uint64_t seed = fuzz_fnv(FUZZ_FNV_INIT, data, size) | 1;
  static const size_t pieces[] = { 1, 7, 0 };
  trace_t whole = run(mode, d, n, 0, seed);
  for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
    size_t piece = pieces[i] ? pieces[i] : n / 3 + 1;
    trace_t t = run(mode, d, n, piece, seed + i);
    FUZZ_CHECK(t.n == whole.n && memcmp(t.b, whole.b, t.n) == 0,
               "pieces of up to %zu bytes give another trace (%zu vs %zu bytes)", piece, t.n, whole.n);
    free(t.b);
  }
  free(whole.b);
  return 0;
}
