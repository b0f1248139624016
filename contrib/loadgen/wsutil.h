/* WebSocket helpers shared by loadgen's client (ws.c) and the bench's bare
 * relay (contrib/bench/bare-relay.c): the handshake digest
 * (Sec-WebSocket-Accept = base64(SHA-1(key + GUID))) and the frame length
 * rule.  No dependency beyond libc, so that the bare relay stays free of
 * libuv. */
#ifndef VCG_LOADGEN_WSUTIL_H
#define VCG_LOADGEN_WSUTIL_H

#include <stddef.h>
#include <stdint.h>

#define LG_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void lg_sha1(const uint8_t *data, size_t len, uint8_t out[20]);
size_t lg_base64(const uint8_t *in, size_t len, char *out); /* out: 4*ceil(len/3)+1 */
/* Sec-WebSocket-Accept for a Sec-WebSocket-Key of klen bytes; out holds 29. */
void lg_ws_accept(const char *key, size_t klen, char out[29]);
/* Bytes needed to know, then to complete, the frame starting at f (len
 * bytes of it so far): the header size while the header is incomplete,
 * then header + payload.  Sets *bad when the payload exceeds max. */
size_t lg_ws_need(const uint8_t *f, size_t len, uint64_t max, int *bad);
/* dst[i] = src[i] ^ mk[i % 4] for i < n, eight bytes at a time, so that
 * framing is one pass over the payload; dst == src masks in place. */
void lg_ws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mk[4]);

#endif
