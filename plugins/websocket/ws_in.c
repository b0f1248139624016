/*
 * ws_in.c -- inbound messages: one binary WebSocket message is one packet
 * for the host.  lws hands a message over in pieces (fragments, or parts of
 * a frame larger than its rx buffer); a message that arrives whole is
 * delivered in place, others are reassembled here up to
 * core.max_message_size (close 1009 above).
 */
#include <stdlib.h>
#include <string.h>

#include "ws_int.h"

int vcg__ws_on_receive(vcg_instance_t *inst, ws_conn_t *c, const void *in,
                       size_t len) {
  const vcg_host_api_t *host = inst->host;
  size_t max = host->max_message_size(inst->w);
  size_t remaining;
  int first = lws_is_first_fragment(c->wsi);
  int final = lws_is_final_fragment(c->wsi);

  if (c->closing)
    return 0; /* drain input until the close completes */
  vcg__ws_note_reader(inst, c);
  if (!lws_frame_is_binary(c->wsi)) {
    return vcg__ws_conn_close_now(c, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                                  "binary messages only");
  }
  /* Any message is proof of life, as a PONG would be.  Reported at most
   * once a second (the ping and idle policies count in seconds): lws keeps
   * validity timers in one sorted list per thread, so each report walks
   * it, and per message that grew with the number of connections. */
  {
    uint32_t sec = (uint32_t)(uv_now(inst->loop) / 1000);

    if (sec != c->alive_sec) {
      c->alive_sec = sec;
      lws_validity_confirmed(c->wsi);
    }
  }

  if (first && final && c->rxlen == 0) {
    /* Whole message in one piece: deliver in place, no copy. */
    if (len > max)
      goto too_big;
    host->session_deliver(c->s, in, len);
    return 0; /* a close() from the host is written by the writeable cb */
  }
  if (first)
    c->rxlen = 0;
  remaining = lws_remaining_packet_payload(c->wsi);
  if (c->rxlen + len > max || c->rxlen + len + remaining > max)
    goto too_big;
  if (c->rxcap < c->rxlen + len) {
    size_t ncap = c->rxcap ? c->rxcap : 8192;
    uint8_t *nb;

    while (ncap < c->rxlen + len + remaining)
      ncap *= 2;
    if (ncap > max)
      ncap = max;
    nb = realloc(c->rx, ncap);
    if (nb == NULL) {
      return vcg__ws_conn_close_now(c, 1011, "out of memory");
    }
    c->rx = nb;
    c->rxcap = ncap;
  }
  memcpy(c->rx + c->rxlen, in, len);
  c->rxlen += len;
  if (!final)
    return 0;
  host->session_deliver(c->s, c->rx, c->rxlen);
  /* Idle connections keep no reassembly memory. */
  free(c->rx);
  c->rx = NULL;
  c->rxlen = c->rxcap = 0;
  return 0;

too_big:
  host->log(inst->w, c->s, VCG_LOG_INFO,
            "message over %zu bytes: closing with 1009", max);
  return vcg__ws_conn_close_now(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                                "message too big");
}

