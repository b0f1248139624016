/* QPACK request decoding (plugins/webtransport/qpack.c, nghttp3's decoder
 * with a dynamic table of capacity 0): any header block either decodes
 * into terminated fields that fit or is refused.  A decoded request that
 * has the four fields vcg__wt_qpack_encode_request writes is encoded
 * again and must decode to the same fields. */
#include <string.h>
#include "fuzz.h"
#include "h3.h"
#include "qpack.h"
#include "vcgate/plugin.h"

#define FIELD_OK(r, f, bit) \
  (strlen((r)->f) < sizeof (r)->f && ((r)->seen & (bit) || (r)->f[0] == '\0'))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vcg__wt_request_t req, again;
  int rc = vcg__wt_qpack_decode_request(0, data, size, &req);
  FUZZ_CHECK(rc == 0 || rc == VCG_EINVAL, "decode returned %d", rc);
  if (rc != 0) return 0;
  FUZZ_CHECK(FIELD_OK(&req, method, VCG__WT_REQ_METHOD) && FIELD_OK(&req, protocol, VCG__WT_REQ_PROTOCOL) &&
             FIELD_OK(&req, scheme, VCG__WT_REQ_SCHEME) && FIELD_OK(&req, authority, VCG__WT_REQ_AUTHORITY) &&
             FIELD_OK(&req, path, VCG__WT_REQ_PATH) && FIELD_OK(&req, origin, VCG__WT_REQ_ORIGIN),
             "a field is unterminated or set without being seen");
  const unsigned need = VCG__WT_REQ_METHOD | VCG__WT_REQ_SCHEME | VCG__WT_REQ_AUTHORITY | VCG__WT_REQ_PATH;
  if ((req.seen & need) != need) return 0;
  uint8_t *frame;
  size_t flen;
  rc = vcg__wt_qpack_encode_request(0, req.method, req.seen & VCG__WT_REQ_PROTOCOL ? req.protocol : NULL,
                                    req.scheme, req.authority, req.path, &frame, &flen);
  FUZZ_CHECK(rc == 0, "encode_request returned %d", rc);
  uint64_t type, len;
  size_t a = vcg__wt_varint_get(frame, flen, &type);
  size_t b = a ? vcg__wt_varint_get(frame + a, flen - a, &len) : 0;
  FUZZ_CHECK(a && b && type == VCG__H3_FRAME_HEADERS && len == flen - a - b, "not one HEADERS frame");
  rc = vcg__wt_qpack_decode_request(0, frame + a + b, (size_t)len, &again);
  FUZZ_CHECK(rc == 0, "our own encoding does not decode (%d)", rc);
  FUZZ_CHECK(again.seen == (req.seen & (need | VCG__WT_REQ_PROTOCOL)) && !strcmp(again.method, req.method) &&
             !strcmp(again.protocol, req.protocol) && !strcmp(again.scheme, req.scheme) &&
             !strcmp(again.authority, req.authority) && !strcmp(again.path, req.path),
             "the request does not survive encoding");
  free(frame);
  return 0;
}
