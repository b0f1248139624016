/*
 * ws_util.h -- pure helpers of the websocket transport (no lws, no libuv),
 * kept apart so tests/unit/test_ws_util.c can exercise them directly.
 */
#ifndef VCG_WS_UTIL_H
#define VCG_WS_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Split "host:port", "[v6addr]:port", ":port" or "*:port" into host (empty
 * string for "any address") and port (1..65535, or 0 to let the kernel
 * choose).  Returns 0 or VCG_EINVAL. */
int vcg__ws_parse_listen(const char *s, char *host, size_t hostlen,
                         uint16_t *port);

/* The request line at the start of buf (len bytes received so far):
 * "METHOD SP request-target SP HTTP/x.y", ended by CRLF (or a bare LF).
 * Returns 0 with the target at buf + *toff, *tlen bytes long, and the
 * line's length with its end in *linelen; VCG_EAGAIN while no line end has
 * arrived; VCG_EINVAL when the line is not a request line (a method of
 * token characters, one space, a target of visible ASCII, one space, then
 * "HTTP/"). */
int vcg__ws_request_line(const char *buf, size_t len, size_t *toff,
                         size_t *tlen, size_t *linelen);

/* The length of a request's head in buf (n bytes received so far): up to
 * and including the empty line that ends it (CRLF CRLF, or LF LF as lws
 * also takes), or 0 while it has not arrived. */
size_t vcg__ws_head_len(const char *buf, size_t n);

/* Whether lws 4.1 can parse request target t (n bytes): it drops a
 * request whose target decodes to a NUL without an answer and answers a
 * '%' not followed by two hex digits with 403, before any callback of
 * ours.  Returns NULL, or the reason to refuse it with 400 ourselves. */
const char *vcg__ws_target_check(const char *t, size_t n);

/* Percent-encode src into dst for a request target: bytes outside
 * unreserved and the characters of `keep` become %XX, a space becomes '+'.
 * Returns the length written (NUL-terminated) or VCG_ENOBUFS. */
long vcg__ws_pct_encode(char *dst, size_t cap, const char *src,
                        const char *keep);

/* A request target rebuilt from what lws 4.1 keeps of it: the decoded
 * path and the decoded query arguments (lws splits the query at '&' and
 * ';', decodes %XX and turns '+' into a space).  Each part is
 * percent-encoded again and the arguments joined with '&'.  The round trip
 * loses what lws's decoding threw away: "%20" and "+" both come back as
 * "+", ';' separators as '&', "/./" and "//" collapsed.  Returns the length
 * (NUL-terminated in dst) or VCG_ENOBUFS. */
long vcg__ws_target_rebuild(char *dst, size_t cap, const char *path,
                            const char *const *args, size_t nargs);

/* The reason phrase of an HTTP status we send. */
const char *vcg__ws_status_text(unsigned status);

/* A complete small HTTP/1.1 response that closes the connection: status
 * line, content-type, content-length, cache-control: no-store, any
 * `extra` header lines (each ending in CRLF; may be NULL), and body plus a
 * newline.  Returns its length, or VCG_ENOBUFS when it does not fit. */
long vcg__ws_http_format(char *dst, size_t cap, unsigned status,
                         const char *ctype, const char *extra,
                         const char *body);

/* The content type of a static file by its name's extension (html,
 * js/mjs, css, json, svg, png, ico, wasm, webmanifest, txt), or
 * application/octet-stream. */
const char *vcg__ws_mime_type(const char *path);

/* Whether a decoded request path may name a file under the webroot: it
 * starts with '/', and no segment starts with '.' (no "..", no ".", no
 * hidden files such as .git).  The caller still resolves the result with
 * realpath() and checks that it stays under the root (symlinks). */
int vcg__ws_file_path_ok(const char *path);

/* Whether an If-None-Match header value matches etag: "*", or one of its
 * comma-separated entity tags, compared weakly (RFC 9110 13.1.2: a W/
 * prefix on either side is ignored). */
int vcg__ws_etag_match(const char *if_none_match, const char *etag);

/* ------------------------------------------------------------ RFC 6455 */

/* Whether a Sec-WebSocket-Key is the base64 of 16 bytes (RFC 6455 4.1):
 * 22 characters of the base64 alphabet, the last one with its unused low
 * bits zero, then "==". */
int vcg__ws_key_ok(const char *key);

/* Whether p holds valid UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF). */
int vcg__ws_utf8_ok(const uint8_t *p, size_t n);

/* Whether a client may send close code `code` (RFC 6455 7.4: 1000-1003,
 * 1007-1014 and 3000-4999; 1004-1006 and 1015 never go on the wire). */
int vcg__ws_close_code_ok(unsigned code);

/* The close code to answer a client's close frame with: its own code when
 * the frame is valid (1000 for an empty one), 1002 for a one-byte payload
 * or a code that is not allowed, 1007 for a reason that is not UTF-8. */
unsigned vcg__ws_close_answer(const uint8_t *payload, size_t n);

/* One client frame header (RFC 6455 5.2). */
typedef struct vcg__ws_frame {
  uint8_t fin, opcode;
  uint8_t mask[4];
  uint64_t len;                /* payload length */
} vcg__ws_frame_t;

#define VCG__WS_FRAME_HDR_MAX 14

/* Parse the frame header at p (n bytes available) as a server must
 * (RFC 6455 5.1, 5.2, 5.5): reserved bits clear (no extension is
 * negotiated), a known opcode, the mask bit set, control frames final and
 * at most 125 bytes, a 64-bit length with its top bit clear, lengths in
 * their shortest form.  Returns the header's length, 0 when more bytes
 * are needed, or VCG_EINVAL with *why naming the violation. */
long vcg__ws_frame_header(const uint8_t *p, size_t n, vcg__ws_frame_t *f,
                          const char **why);

/* Unmask n payload bytes in place; off is their offset in the frame's
 * payload (the mask key cycles over the whole payload). */
void vcg__ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off);

/* The header of an unmasked server frame: FIN set, `opcode`, payload length
 * len in its shortest form.  Writes 2, 4 or 10 bytes to dst (room for
 * VCG__WS_SERVER_HDR_MAX) and returns how many. */
#define VCG__WS_SERVER_HDR_MAX 10
static inline size_t vcg__ws_server_hdr(uint8_t *dst, unsigned opcode,
                                        uint64_t len) {
  dst[0] = (uint8_t)(0x80 | (opcode & 0x0f));
  if (len < 126) {
    dst[1] = (uint8_t)len;
    return 2;
  }
  if (len < 65536) {
    dst[1] = 126;
    dst[2] = (uint8_t)(len >> 8);
    dst[3] = (uint8_t)len;
    return 4;
  }
  dst[1] = 127;
  for (int k = 0; k < 8; k++)
    dst[2 + k] = (uint8_t)(len >> (56 - 8 * k));
  return 10;
}

/* What a write of `n` bytes took of a sequence of pieces (frames, or what
 * is left of them) of rem[0..npieces) bytes each, in order: returns how
 * many pieces it took whole, and in *part how many bytes of the next one
 * (0 when it stopped at a boundary, or took them all). */
size_t vcg__ws_written(const size_t *rem, size_t npieces, size_t n,
                       size_t *part);

#endif
