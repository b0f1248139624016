/*
 * qpack.h -- header blocks for the WebTransport plugin, through nghttp3's
 * public QPACK encoder and decoder only (nghttp3_qpack_*).  We advertise a
 * dynamic table capacity of 0 and open no QPACK streams, so every header
 * block must be self-contained; one that references the dynamic table is
 * refused.
 */
#ifndef VCG_WT_QPACK_H
#define VCG_WT_QPACK_H

#include <stddef.h>
#include <stdint.h>

/* The pseudo-headers of an extended CONNECT that we act on. */
typedef struct vcg__wt_request {
  char method[16];
  char protocol[32];
  char scheme[16];
  char authority[256];
  char path[2048];
  char origin[256];
  unsigned seen;      /* bit per field above that was present */
} vcg__wt_request_t;

#define VCG__WT_REQ_METHOD    0x01u
#define VCG__WT_REQ_PROTOCOL  0x02u
#define VCG__WT_REQ_SCHEME    0x04u
#define VCG__WT_REQ_AUTHORITY 0x08u
#define VCG__WT_REQ_PATH      0x10u
#define VCG__WT_REQ_ORIGIN    0x20u

/* Decode one complete HEADERS frame payload of stream_id into req.
 * Returns 0, VCG_EINVAL when the block is malformed, blocked on the
 * dynamic table or a field we keep does not fit, or VCG_ENOMEM. */
int vcg__wt_qpack_decode_request(int64_t stream_id, const uint8_t *block,
                                 size_t len, vcg__wt_request_t *req);

/* Encode a whole HEADERS frame (type, length, field section) carrying
 * :status and, when name is not NULL, one more field.  On success *out is
 * a malloc'd buffer the caller frees, *outlen its length. */
int vcg__wt_qpack_encode_response(int64_t stream_id, int status,
                                  const char *name, const char *value,
                                  uint8_t **out, size_t *outlen);

/* Encode a request HEADERS frame (for tests and tools): method, scheme,
 * authority, path, and protocol when not NULL. */
int vcg__wt_qpack_encode_request(int64_t stream_id, const char *method,
                                 const char *protocol, const char *scheme,
                                 const char *authority, const char *path,
                                 uint8_t **out, size_t *outlen);

#endif /* VCG_WT_QPACK_H */
