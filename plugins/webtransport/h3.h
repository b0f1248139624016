/*
 * h3.h -- the small HTTP/3 framing layer of the WebTransport plugin.
 *
 * Pure functions and incremental parsers over byte buffers, with no QUIC,
 * TLS or libuv dependency, so that every piece that must survive split
 * reads can be unit tested byte by byte (tests/unit/test_wt_h3.c).
 *
 * Every parser here is incremental: the QUIC layer hands us stream data in
 * whatever pieces the peer's STREAM frames happened to carry, and a varint
 * (or a whole frame header) may straddle two pieces.
 */
#ifndef VCG_WT_H3_H
#define VCG_WT_H3_H

#include <stddef.h>
#include <stdint.h>

/* ---- constants (RFC 9114, RFC 9297, draft-ietf-webtrans-http3) ---- */
#define VCG__H3_FRAME_DATA     0x00
#define VCG__H3_FRAME_HEADERS  0x01
#define VCG__H3_FRAME_SETTINGS 0x04
#define VCG__H3_FRAME_GOAWAY   0x07

#define VCG__H3_STREAM_CONTROL    0x00
#define VCG__H3_STREAM_PUSH       0x01
#define VCG__H3_STREAM_QPACK_ENC  0x02
#define VCG__H3_STREAM_QPACK_DEC  0x03
#define VCG__WT_STREAM_UNI        0x54 /* WebTransport uni stream signal */
#define VCG__WT_STREAM_BIDI       0x41 /* WebTransport bidi stream signal */

#define VCG__H3_SETTINGS_QPACK_MAX_TABLE_CAPACITY 0x01
#define VCG__H3_SETTINGS_MAX_FIELD_SECTION_SIZE   0x06
#define VCG__H3_SETTINGS_QPACK_BLOCKED_STREAMS    0x07
#define VCG__H3_SETTINGS_ENABLE_CONNECT_PROTOCOL  0x08
#define VCG__H3_SETTINGS_H3_DATAGRAM              0x33
#define VCG__H3_SETTINGS_WT_DRAFT02               0x2b603742ull
#define VCG__H3_SETTINGS_WT_MAX_SESSIONS_DRAFT07  0xc671706aull

#define VCG__WT_CAPSULE_CLOSE_SESSION 0x2843
#define VCG__WT_CAPSULE_DRAIN_SESSION 0x78ae

#define VCG__H3_NO_ERROR               0x100
#define VCG__H3_GENERAL_PROTOCOL_ERROR 0x101
#define VCG__H3_INTERNAL_ERROR         0x102
#define VCG__H3_STREAM_CREATION_ERROR  0x103
#define VCG__H3_CLOSED_CRITICAL_STREAM 0x104
#define VCG__H3_FRAME_UNEXPECTED       0x105
#define VCG__H3_FRAME_ERROR            0x106
#define VCG__H3_EXCESSIVE_LOAD         0x107
#define VCG__H3_SETTINGS_ERROR         0x109
#define VCG__H3_REQUEST_REJECTED       0x10b
#define VCG__H3_MESSAGE_ERROR          0x10e

#define VCG__VARINT_MAX 0x3fffffffffffffffull

/* ---- QUIC variable-length integers (RFC 9000 section 16) ---- */

/* Bytes needed to encode v: 1, 2, 4 or 8; 0 when v exceeds 2^62-1. */
size_t vcg__wt_varint_len(uint64_t v);
/* Write v at p (which has room for vcg__wt_varint_len(v) bytes); returns
 * the byte after it. */
uint8_t *vcg__wt_varint_put(uint8_t *p, uint64_t v);
/* Decode one varint from p[0..len).  Returns the bytes it occupies, or 0
 * when len is too short to hold it (the caller waits for more). */
size_t vcg__wt_varint_get(const uint8_t *p, size_t len, uint64_t *v);

/* A varint being assembled from pieces. */
typedef struct vcg__wt_varint_rd {
  uint8_t buf[8];
  uint8_t have;  /* bytes collected so far */
  uint8_t need;  /* total length once the first byte is known, else 0 */
} vcg__wt_varint_rd_t;

void vcg__wt_varint_rd_reset(vcg__wt_varint_rd_t *r);
/* Feed bytes; returns how many were consumed.  *done is set to 1 (and *v to
 * the value) when the varint is complete; the reader then consumes nothing
 * more until reset. */
size_t vcg__wt_varint_rd_feed(vcg__wt_varint_rd_t *r, const uint8_t *p,
                              size_t len, int *done, uint64_t *v);

/* ---- stream prefix classification ---- */

enum vcg__wt_prefix_kind {
  VCG__WT_PFX_MORE = 0,   /* need more bytes */
  VCG__WT_PFX_CONTROL,    /* uni 0x00: HTTP/3 control stream */
  VCG__WT_PFX_QPACK_ENC,  /* uni 0x02 */
  VCG__WT_PFX_QPACK_DEC,  /* uni 0x03 */
  VCG__WT_PFX_WT_UNI,     /* uni 0x54 + session id */
  VCG__WT_PFX_WT_BIDI,    /* bidi 0x41 + session id */
  VCG__WT_PFX_REQUEST,    /* bidi: first varint is an HTTP/3 frame type;
                             the collected bytes must be replayed */
  VCG__WT_PFX_UNKNOWN     /* uni: an unknown or unsupported stream type */
};

typedef struct vcg__wt_prefix {
  vcg__wt_varint_rd_t rd;
  int bidi;              /* classifying a bidirectional stream */
  int state;             /* 0 type, 1 session id, 2 done */
  int kind;              /* enum vcg__wt_prefix_kind once done */
  uint64_t type;
  uint64_t session_id;   /* for WT_UNI / WT_BIDI */
  uint8_t replay[8];     /* REQUEST: the bytes of the first varint */
  size_t replaylen;
} vcg__wt_prefix_t;

void vcg__wt_prefix_init(vcg__wt_prefix_t *x, int bidi);
/* Feed stream bytes; returns how many were consumed (the rest belongs to
 * the stream's body) and sets *kind.  Once a kind other than MORE is
 * returned, the classification is final; for REQUEST the caller must first
 * process x->replay[0..replaylen) as body bytes. */
size_t vcg__wt_prefix_feed(vcg__wt_prefix_t *x, const uint8_t *p, size_t len,
                           int *kind);

/* ---- frame (and capsule) reader: type varint, length varint, payload ---- */

enum vcg__wt_fev_kind {
  VCG__WT_FEV_NONE = 0,  /* input exhausted, nothing to report */
  VCG__WT_FEV_START,     /* a frame header was read: type, len */
  VCG__WT_FEV_DATA,      /* a piece of the payload: data, datalen */
  VCG__WT_FEV_END        /* the payload is complete */
};

typedef struct vcg__wt_fev {
  int kind;
  uint64_t type;
  uint64_t len;
  const uint8_t *data;
  size_t datalen;
} vcg__wt_fev_t;

typedef struct vcg__wt_frame_rd {
  vcg__wt_varint_rd_t rd;
  int state;           /* 0 type, 1 length, 2 payload, 3 end pending */
  uint64_t type, len, left;
} vcg__wt_frame_rd_t;

void vcg__wt_frame_rd_init(vcg__wt_frame_rd_t *r);
/* Advance over data; returns the bytes consumed and fills *ev.  Call in a
 * loop until ev->kind == NONE (which happens only once len bytes are all
 * consumed or nothing can progress).  Capsules (RFC 9297) share this
 * type-length-value layout, so the same reader parses them. */
size_t vcg__wt_frame_next(vcg__wt_frame_rd_t *r, const uint8_t *data,
                          size_t len, vcg__wt_fev_t *ev);
/* Nonzero when the reader sits between frames (a clean end of stream). */
int vcg__wt_frame_rd_idle(const vcg__wt_frame_rd_t *r);

/* ---- capsules carried in the CONNECT stream's DATA frames ---- */

#define VCG__WT_CLOSE_REASON_MAX 1024

enum vcg__wt_cap_ev {
  VCG__WT_CAP_NONE = 0,
  VCG__WT_CAP_CLOSE,     /* CLOSE_WEBTRANSPORT_SESSION: code, reason */
  VCG__WT_CAP_DRAIN,     /* DRAIN_WEBTRANSPORT_SESSION */
  VCG__WT_CAP_ERROR      /* malformed capsule: the session must end */
};

typedef struct vcg__wt_capsule_rd {
  vcg__wt_frame_rd_t fr;
  uint8_t buf[4 + VCG__WT_CLOSE_REASON_MAX];  /* a CLOSE capsule's payload */
  size_t buflen;
  int closed;          /* a CLOSE capsule was seen */
  uint32_t code;       /* its application error code */
  char reason[VCG__WT_CLOSE_REASON_MAX + 1];
} vcg__wt_capsule_rd_t;

void vcg__wt_capsule_rd_init(vcg__wt_capsule_rd_t *c);
/* Feed capsule-stream bytes (the concatenated payloads of DATA frames).
 * Returns the bytes consumed and sets *ev; call again with the rest until
 * it returns NONE with everything consumed.  Unknown and GREASE capsule
 * types (0x29 * N + 0x17 and the rest) are skipped. */
size_t vcg__wt_capsule_feed(vcg__wt_capsule_rd_t *c, const uint8_t *p,
                            size_t len, int *ev);

/* Encode CLOSE_WEBTRANSPORT_SESSION(code, reason) wrapped in one HTTP/3
 * DATA frame into out (cap bytes).  The reason is truncated to
 * VCG__WT_CLOSE_REASON_MAX bytes.  Returns the length, or 0 if cap is too
 * small.  VCG__WT_CLOSE_FRAME_MAX bytes always suffice. */
#define VCG__WT_CLOSE_FRAME_MAX (16 + 4 + VCG__WT_CLOSE_REASON_MAX)
size_t vcg__wt_close_frame_encode(uint8_t *out, size_t cap, uint32_t code,
                                  const char *reason);

/* Encode DRAIN_WEBTRANSPORT_SESSION (no payload) wrapped in one HTTP/3
 * DATA frame: "open a new session, this one will end".  Returns the
 * length (VCG__WT_DRAIN_FRAME_LEN), or 0 if cap is too small. */
#define VCG__WT_DRAIN_FRAME_LEN 7
size_t vcg__wt_drain_frame_encode(uint8_t *out, size_t cap);

/* ---- SETTINGS ---- */

typedef struct vcg__wt_setting {
  uint64_t id;
  uint64_t value;
} vcg__wt_setting_t;

/* Encode a whole SETTINGS frame (type, length, pairs).  Returns its length
 * or 0 when cap is too small. */
size_t vcg__wt_settings_encode(uint8_t *out, size_t cap,
                               const vcg__wt_setting_t *s, size_t n);

/* What we care about in the peer's SETTINGS. */
typedef struct vcg__wt_peer_settings {
  uint64_t qpack_max_table_capacity;
  uint64_t qpack_blocked_streams;
  uint64_t max_field_section_size;  /* UINT64_MAX when absent */
  int enable_connect_protocol;
  int h3_datagram;
  int wt_draft02;
  uint64_t wt_max_sessions;
  size_t count;                      /* pairs seen, GREASE included */
} vcg__wt_peer_settings_t;

/* Parse a SETTINGS payload (without type and length).  Returns 0, or
 * VCG_EINVAL for a truncated pair, a repeated identifier or an HTTP/2-only
 * setting (RFC 9114 section 7.2.4.1: H3_SETTINGS_ERROR). */
int vcg__wt_settings_parse(const uint8_t *p, size_t len,
                           vcg__wt_peer_settings_t *out);

/* The server's control stream opening bytes: stream type 0x00 and our
 * SETTINGS frame (QPACK capacity 0, extended CONNECT, H3 datagrams,
 * WebTransport draft-02 and draft-07 with wt_max_sessions). */
size_t vcg__wt_control_stream_prefix(uint8_t *out, size_t cap,
                                     uint64_t wt_max_sessions);

/* Write an HTTP/3 frame header (type, length) and return its size. */
size_t vcg__wt_frame_header(uint8_t *out, uint64_t type, uint64_t len);

#endif /* VCG_WT_H3_H */
