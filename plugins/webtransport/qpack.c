/*
 * qpack.c -- request decoding and response encoding with nghttp3's public
 * QPACK API.  See qpack.h.
 *
 * A decoder and an encoder are made per call: with a dynamic table
 * capacity of 0 they carry no state between header blocks, a connection
 * decodes exactly one CONNECT, and a private decoder keeps one client's
 * malformed block from ever affecting another connection.
 */
#include <stdlib.h>
#include <string.h>

#include <nghttp3/nghttp3.h>
#include <vcgate/plugin.h>

#include "h3.h"
#include "qpack.h"

static int copy_field(char *dst, size_t cap, nghttp3_vec v) {
  if (v.len >= cap || memchr(v.base, '\0', v.len)) return VCG_EINVAL;
  memcpy(dst, v.base, v.len);
  dst[v.len] = '\0';
  return 0;
}

static int keep_field(vcg__wt_request_t *req, nghttp3_vec n, nghttp3_vec v) {
  static const struct {
    const char *name;
    size_t off, cap;
    unsigned bit;
  } f[] = {
    { ":method", offsetof(vcg__wt_request_t, method), sizeof(((vcg__wt_request_t *)0)->method), VCG__WT_REQ_METHOD },
    { ":protocol", offsetof(vcg__wt_request_t, protocol), sizeof(((vcg__wt_request_t *)0)->protocol), VCG__WT_REQ_PROTOCOL },
    { ":scheme", offsetof(vcg__wt_request_t, scheme), sizeof(((vcg__wt_request_t *)0)->scheme), VCG__WT_REQ_SCHEME },
    { ":authority", offsetof(vcg__wt_request_t, authority), sizeof(((vcg__wt_request_t *)0)->authority), VCG__WT_REQ_AUTHORITY },
    { ":path", offsetof(vcg__wt_request_t, path), sizeof(((vcg__wt_request_t *)0)->path), VCG__WT_REQ_PATH },
    { "origin", offsetof(vcg__wt_request_t, origin), sizeof(((vcg__wt_request_t *)0)->origin), VCG__WT_REQ_ORIGIN },
  };
  for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
    if (strlen(f[i].name) != n.len || memcmp(f[i].name, n.base, n.len) != 0) continue;
    /* A repeated pseudo-header makes the request malformed (RFC 9114
     * section 4.3). */
    if (req->seen & f[i].bit) return VCG_EINVAL;
    req->seen |= f[i].bit;
    return copy_field((char *)req + f[i].off, f[i].cap, v);
  }
  return 0; /* other fields are not needed */
}

int vcg__wt_qpack_decode_request(int64_t stream_id, const uint8_t *block,
                                 size_t len, vcg__wt_request_t *req) {
  const nghttp3_mem *mem = nghttp3_mem_default();
  nghttp3_qpack_decoder *dec = NULL;
  nghttp3_qpack_stream_context *sctx = NULL;
  int rc = VCG_ENOMEM;

  memset(req, 0, sizeof(*req));
  if (nghttp3_qpack_decoder_new(&dec, 0, 0, mem) != 0) goto out;
  if (nghttp3_qpack_stream_context_new(&sctx, stream_id, mem) != 0) goto out;

  rc = VCG_EINVAL;
  for (;;) {
    nghttp3_qpack_nv nv;
    uint8_t flags = 0;
    nghttp3_ssize n = nghttp3_qpack_decoder_read_request(dec, sctx, &nv, &flags,
                                                         block, len, 1);
    if (n < 0) goto out;
    block += n;
    len -= (size_t)n;
    if (flags & NGHTTP3_QPACK_DECODE_FLAG_EMIT) {
      int kr = keep_field(req, nghttp3_rcbuf_get_buf(nv.name),
                          nghttp3_rcbuf_get_buf(nv.value));
      nghttp3_rcbuf_decref(nv.name);
      nghttp3_rcbuf_decref(nv.value);
      if (kr != 0) goto out;
    }
    if (flags & NGHTTP3_QPACK_DECODE_FLAG_FINAL) break;
    /* Blocked means the block needs dynamic table entries that, with a
     * capacity of 0, will never come. */
    if (flags & NGHTTP3_QPACK_DECODE_FLAG_BLOCKED) goto out;
    if (n == 0 && !(flags & NGHTTP3_QPACK_DECODE_FLAG_EMIT)) goto out;
  }
  rc = len == 0 ? 0 : VCG_EINVAL;
out:
  if (sctx) nghttp3_qpack_stream_context_del(sctx);
  if (dec) nghttp3_qpack_decoder_del(dec);
  return rc;
}

static int encode_block(int64_t stream_id, const nghttp3_nv *nva, size_t n,
                        uint8_t **out, size_t *outlen) {
  const nghttp3_mem *mem = nghttp3_mem_default();
  nghttp3_qpack_encoder *enc = NULL;
  nghttp3_buf pbuf, rbuf, ebuf;
  int rc = VCG_ENOMEM;

  nghttp3_buf_init(&pbuf);
  nghttp3_buf_init(&rbuf);
  nghttp3_buf_init(&ebuf);
  *out = NULL;
  if (nghttp3_qpack_encoder_new(&enc, 0, mem) != 0) goto done;
  if (nghttp3_qpack_encoder_encode(enc, &pbuf, &rbuf, &ebuf, stream_id, nva, n) != 0)
    goto done;
  /* With capacity 0 nothing may go to the (absent) encoder stream. */
  if (nghttp3_buf_len(&ebuf) != 0) {
    rc = VCG_EINVAL;
    goto done;
  }
  size_t plen = nghttp3_buf_len(&pbuf), rlen = nghttp3_buf_len(&rbuf);
  size_t blen = plen + rlen;
  uint8_t hdr[16];
  size_t hlen = vcg__wt_frame_header(hdr, VCG__H3_FRAME_HEADERS, blen);
  uint8_t *buf = malloc(hlen + blen);
  if (!buf) goto done;
  memcpy(buf, hdr, hlen);
  if (plen) memcpy(buf + hlen, pbuf.pos, plen);
  if (rlen) memcpy(buf + hlen + plen, rbuf.pos, rlen);
  *out = buf;
  *outlen = hlen + blen;
  rc = 0;
done:
  nghttp3_buf_free(&pbuf, mem);
  nghttp3_buf_free(&rbuf, mem);
  nghttp3_buf_free(&ebuf, mem);
  if (enc) nghttp3_qpack_encoder_del(enc);
  return rc;
}

static nghttp3_nv mknv(const char *n, const char *v) {
  nghttp3_nv nv;
  nv.name = (uint8_t *)(uintptr_t)n;
  nv.namelen = strlen(n);
  nv.value = (uint8_t *)(uintptr_t)v;
  nv.valuelen = strlen(v);
  nv.flags = NGHTTP3_NV_FLAG_NONE;
  return nv;
}

int vcg__wt_qpack_encode_response(int64_t stream_id, int status,
                                  const char *name, const char *value,
                                  uint8_t **out, size_t *outlen) {
  char st[8];
  nghttp3_nv nva[2];
  size_t n = 0;

  if (status < 100 || status > 999) return VCG_EINVAL;
  st[0] = (char)('0' + status / 100);
  st[1] = (char)('0' + status / 10 % 10);
  st[2] = (char)('0' + status % 10);
  st[3] = '\0';
  nva[n++] = mknv(":status", st);
  if (name && value) nva[n++] = mknv(name, value);
  return encode_block(stream_id, nva, n, out, outlen);
}

int vcg__wt_qpack_encode_request(int64_t stream_id, const char *method,
                                 const char *protocol, const char *scheme,
                                 const char *authority, const char *path,
                                 uint8_t **out, size_t *outlen) {
  nghttp3_nv nva[5];
  size_t n = 0;
  nva[n++] = mknv(":method", method);
  if (protocol) nva[n++] = mknv(":protocol", protocol);
  nva[n++] = mknv(":scheme", scheme);
  nva[n++] = mknv(":authority", authority);
  nva[n++] = mknv(":path", path);
  return encode_block(stream_id, nva, n, out, outlen);
}
