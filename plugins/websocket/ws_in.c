/*
 * ws_in.c -- inbound messages: one binary WebSocket message is one packet
 * for the host, reassembled from its pieces up to core.max_message_size
 * (close 1009 above) and delivered in place when it arrives whole.
 *
 * Two readers.  libwebsockets 4.1's frame parser (lib/roles/ws/ops-ws.c,
 * lws_ws_rx_sm()) is lenient where RFC 6455 is not: it takes unmasked
 * client frames as if they were masked, drops the connection without a
 * close frame on a control frame over 125 bytes or a 64-bit length with
 * its top bit set, and no callback or option of 4.1 exposes the frame
 * header to change that.  So on the ws:// sockets we own after the
 * upgrade (ws_own.c) this file reads and parses frames strictly
 * (vcg__ws_frame_header()), up to WS_RD_BUF per recv() into one buffer per
 * worker, unmasking and delivering in place.  On wss://, where the bytes
 * are ciphertext, and for a ws:// client lws holds bytes of, lws's parser
 * reads (vcg__ws_on_receive()), and what is checked there is what a
 * callback sees: the close frame (vcg__ws_peer_close()).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ws_int.h"

/* ------------------------------------------- unfinished messages */

void vcg__ws_msg_reset(ws_conn_t *c) {
  if (c->rxcap > 0)
    atomic_fetch_sub(&c->inst->state->rx_used, c->rxcap);
  free(c->rx);
  c->rx = NULL;
  c->rxlen = c->rxcap = 0;
  vcg__ws_dl_remove(&c->inst->messages, &c->msg_node);
}

static void ws_rd_fail(ws_conn_t *c, int code, const char *why);

/* A message still unfinished message_timeout after it started. */
static void ws_msg_expired(vcg_instance_t *inst, ws_dl_node_t *n) {
  ws_conn_t *c = WS_CONN_OF(n, msg_node);
  static const char why[] = "message not completed in time";

  inst->host->log(inst->w, c->s, VCG_LOG_INFO, "a message unfinished after "
                  "%lld ms (%zu bytes held): closing with 1008",
                  (long long)inst->conf->message_timeout, c->rxlen);
  inst->host->counter_add(inst->w, "message_timeouts", 1);
  vcg__ws_msg_reset(c);
  if (c->own != NULL)
    ws_rd_fail(c, 1008, why);
  else
    vcg__ws_conn_begin_close(c, 1008, why);
}

void vcg__ws_in_init(vcg_instance_t *inst) {
  vcg__ws_dl_init(inst, &inst->messages, (uint64_t)inst->conf->message_timeout,
                  ws_msg_expired);
}

void vcg__ws_in_close(vcg_instance_t *inst) {
  vcg__ws_dl_close(&inst->messages);
}

/* Grow c's reassembly buffer to hold need bytes, within the process-wide
 * budget.  Memory follows what arrived, not what a frame header declares,
 * so a client that announces a large frame and stalls holds only what it
 * sent.  Returns 0 or a close code (1009 over the budget, 1011). */
static int ws_msg_grow(vcg_instance_t *inst, ws_conn_t *c, size_t need,
                       size_t max) {
  size_t ncap = c->rxcap ? c->rxcap * 2 : 8192, add, used;
  uint8_t *nb;

  while (ncap < need)
    ncap *= 2;
  if (ncap > max)
    ncap = max;
  add = ncap - c->rxcap;
  used = atomic_fetch_add(&inst->state->rx_used, add) + add;
  if (used > (size_t)inst->conf->reassembly_budget) {
    atomic_fetch_sub(&inst->state->rx_used, add);
    inst->host->counter_add(inst->w, "reassembly_over_budget", 1);
    inst->host->log(inst->w, c->s, VCG_LOG_INFO, "unfinished messages hold "
                    "the whole reassembly budget (%lld bytes): closing with 1009",
                    (long long)inst->conf->reassembly_budget);
    return 1009;
  }
  nb = realloc(c->rx, ncap);
  if (nb == NULL) {
    atomic_fetch_sub(&inst->state->rx_used, add);
    return 1011;
  }
  c->rx = nb;
  c->rxcap = ncap;
  return 0;
}

/* ------------------------------------------------------- messages */

/* The reason sent with a close code of ws_msg_piece(). */
static const char *ws_msg_why(int code) {
  return code == 1011 ? "out of memory" : "message too big";
}

/* One piece of a binary message: the first of the message, the last, and
 * how many more bytes the current frame still holds.  Returns 0, or the
 * close code the connection must end with (1009 too big or over the
 * reassembly budget, 1011 no memory). */
static int ws_msg_piece(vcg_instance_t *inst, ws_conn_t *c, const uint8_t *in,
                        size_t len, int first, int final, uint64_t remaining) {
  const vcg_host_api_t *host = inst->host;
  size_t max = host->max_message_size(inst->w);
  int r;

  if (first && final && c->rxlen == 0) {
    /* Whole message in one piece: deliver in place, no copy. */
    if (len > max)
      goto too_big;
    host->session_deliver(c->s, in, len);
    return 0; /* a close() from the host is written by the writeable cb */
  }
  if (first)
    c->rxlen = 0;
  if (c->rxlen + len > max || remaining > max - c->rxlen - len)
    goto too_big;
  if (c->rxcap < c->rxlen + len &&
      (r = ws_msg_grow(inst, c, c->rxlen + len, max)) != 0)
    return r;
  if (c->msg_node.due == 0)
    vcg__ws_dl_add(&c->inst->messages, &c->msg_node); /* it starts now */
  memcpy(c->rx + c->rxlen, in, len);
  c->rxlen += len;
  if (!final)
    return 0;
  host->session_deliver(c->s, c->rx, c->rxlen);
  /* Idle connections keep no reassembly memory. */
  vcg__ws_msg_reset(c);
  return 0;

too_big:
  host->log(inst->w, c->s, VCG_LOG_INFO,
            "message over %zu bytes: closing with 1009", max);
  return 1009;
}

/* ------------------------------------------------ lws's reader (wss://) */

int vcg__ws_on_receive(vcg_instance_t *inst, ws_conn_t *c, const void *in,
                       size_t len) {
  int r;

  if (c->closing)
    return 0; /* drain input until the close completes */
  vcg__ws_note_reader(inst, c);
  if (!lws_frame_is_binary(c->wsi)) {
    return vcg__ws_conn_close_now(c, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                                  "binary messages only");
  }
  vcg__ws_alive(c);
  r = ws_msg_piece(inst, c, in, len, lws_is_first_fragment(c->wsi),
                   lws_is_final_fragment(c->wsi),
                   lws_remaining_packet_payload(c->wsi));
  if (r != 0)
    return vcg__ws_conn_close_now(c, r, ws_msg_why(r));
  return 0;
}

int vcg__ws_peer_close(vcg_instance_t *inst, ws_conn_t *c, const void *in,
                       size_t len) {
  uint8_t frame[LWS_PRE + 2 + 32];
  unsigned code;
  const char *why;

  (void)inst;
  if (c == NULL)
    return 0;
  /* After our close frame this is the client's echo: the handshake is
   * complete, hang up (lws would otherwise echo it back). */
  if (c->close_sent)
    return -1;
  code = vcg__ws_close_answer(in, len);
  if (len == 0 || (len >= 2 && code == ((unsigned)((const uint8_t *)in)[0] << 8 |
                                         ((const uint8_t *)in)[1])))
    return 0; /* valid: lws echoes it and closes */
  /* lws would echo a close code a client may not send (it only replaces
   * some of them) and a reason that is not UTF-8: answer as RFC 6455 7.4.1
   * says, then hang up. */
  why = code == 1007 ? "close reason is not UTF-8" : "invalid close frame";
  frame[LWS_PRE] = (uint8_t)(code >> 8);
  frame[LWS_PRE + 1] = (uint8_t)code;
  memcpy(frame + LWS_PRE + 2, why, strlen(why));
  (void)lws_write(c->wsi, frame + LWS_PRE, 2 + strlen(why), WS_WRITE_CLOSE);
  c->close_sent = 1;
  return -1;
}

/* --------------------------------------------------- our reader (ws://) */

/* The socket is done with (EOF, error, the close handshake complete). */
static void ws_rd_kill(ws_conn_t *c) {
  c->own->dead = 1;
  vcg__ws_conn_kill(c);
}

/* A protocol error: say why in a close frame, read nothing more. */
static void ws_rd_fail(ws_conn_t *c, int code, const char *why) {
  c->inst->host->log(c->inst->w, c->s, VCG_LOG_DEBUG,
                     "closing with %d: %s", code, why);
  c->own->dead = 1;
  vcg__ws_conn_begin_close(c, code, why);
}

/* A complete control frame, its payload in p. */
static void ws_rd_control(ws_conn_t *c, const uint8_t *p, size_t n) {
  ws_own_t *o = c->own;
  unsigned code;

  switch (o->f.opcode) {
  case 9: /* PING: answer the latest one */
    vcg__ws_own_pong(c, p, n);
    break;
  case 10: /* PONG: proof of life, counted in vcg__ws_alive() */
    break;
  default: /* CLOSE */
    o->dead = 1; /* nothing comes after a close frame */
    if (c->close_sent) {
      ws_rd_kill(c); /* the echo of ours: the handshake is complete */
      return;
    }
    code = vcg__ws_close_answer(p, n);
    c->peer_closed = 1; /* hang up once ours is out */
    if (code == 1002 || code == 1007)
      vcg__ws_conn_begin_close(c, (int)code, code == 1007 ?
                               "close reason is not UTF-8" : "invalid close frame");
    else
      vcg__ws_conn_begin_close(c, (int)code, "");
    break;
  }
}

/* A frame header was parsed: check it against the message state. */
static void ws_rd_frame(ws_conn_t *c) {
  ws_own_t *o = c->own;
  size_t max = c->inst->host->max_message_size(c->inst->w);

  o->in_frame = 1;
  o->left = o->f.len;
  o->off = 0;
  o->ctllen = 0;
  switch (o->f.opcode) {
  case 1:
    ws_rd_fail(c, 1003, "binary messages only");
    return;
  case 2:
    if (o->msg_open) {
      ws_rd_fail(c, 1002, "a new message inside a fragmented one");
      return;
    }
    o->msg_open = !o->f.fin;
    break;
  case 0:
    if (!o->msg_open) {
      ws_rd_fail(c, 1002, "continuation without a message");
      return;
    }
    break;
  default:
    return; /* control frames are checked by the header parser */
  }
  /* The declared length alone can be too much: refuse before the bytes. */
  if (o->f.len > max || (o->f.opcode == 0 && c->rxlen + o->f.len > max)) {
    c->inst->host->log(c->inst->w, c->s, VCG_LOG_INFO,
                       "message over %zu bytes: closing with 1009", max);
    ws_rd_fail(c, 1009, "message too big");
  }
}

/* Payload bytes of the current frame (unmasked here, in place). */
static void ws_rd_payload(ws_conn_t *c, uint8_t *p, size_t n) {
  ws_own_t *o = c->own;
  int last = n == o->left, r;

  vcg__ws_unmask(p, n, o->f.mask, o->off);
  if (o->f.opcode >= 8) {
    if (last && o->ctllen == 0) {
      /* The whole payload in this read: no copy. */
      o->off += n;
      o->left = 0;
      o->in_frame = 0;
      if (!o->dead)
        ws_rd_control(c, p, n);
      return;
    }
    if (o->ctl == NULL && (o->ctl = malloc(125)) == NULL) {
      ws_rd_fail(c, 1011, "out of memory");
      return;
    }
    memcpy(o->ctl + o->ctllen, p, n);
    o->ctllen = (uint8_t)(o->ctllen + n);
  } else if (!c->closing) {
    r = ws_msg_piece(c->inst, c, p, n, o->f.opcode == 2 && o->off == 0,
                     o->f.fin && last, o->left - n);
    if (r != 0)
      ws_rd_fail(c, r, ws_msg_why(r));
  }
  o->off += n;
  o->left -= n;
  if (o->left == 0) {
    o->in_frame = 0;
    if (o->f.opcode == 0 && o->f.fin)
      o->msg_open = 0;
    if (o->f.opcode >= 8) {
      if (!o->dead)
        ws_rd_control(c, o->ctl, o->ctllen);
      if (c->own != NULL) {
        free(c->own->ctl);
        c->own->ctl = NULL;
      }
    }
  }
}

/* Parse what one recv() brought. */
static void ws_rd_parse(ws_conn_t *c, uint8_t *buf, size_t n) {
  size_t i = 0;

  while (c->own != NULL && !c->own->dead &&
         (i < n || (c->own->in_frame && c->own->left == 0))) {
    ws_own_t *o = c->own;

    if (!o->in_frame) {
      const char *why = NULL;
      size_t take = n - i;
      long h;

      if (o->hlen == 0 && take >= VCG__WS_FRAME_HDR_MAX) {
        h = vcg__ws_frame_header(buf + i, take, &o->f, &why);
        if (h > 0)
          i += (size_t)h;
      } else {
        if (take > sizeof(o->hdr) - o->hlen)
          take = sizeof(o->hdr) - o->hlen;
        memcpy(o->hdr + o->hlen, buf + i, take);
        h = vcg__ws_frame_header(o->hdr, o->hlen + take, &o->f, &why);
        if (h > 0) {
          i += (size_t)h - o->hlen;
          o->hlen = 0;
        } else if (h == 0) {
          o->hlen = (uint8_t)(o->hlen + take);
          i += take;
        }
      }
      if (h < 0) {
        ws_rd_fail(c, 1002, why);
        return;
      }
      if (h == 0)
        return; /* the rest of the header comes with the next read */
      ws_rd_frame(c);
      continue;
    }
    {
      size_t take = n - i < o->left ? n - i : (size_t)o->left;

      ws_rd_payload(c, buf + i, take);
      i += take;
    }
  }
}

void vcg__ws_own_read(ws_conn_t *c) {
  vcg_instance_t *inst = c->inst;
  int fd = c->fd;
  size_t budget = WS_READ_BUDGET;

  while (c->own != NULL && !c->killed && fd >= 0) {
    size_t want = budget < WS_RD_BUF ? budget : WS_RD_BUF;
    ssize_t n = recv(fd, inst->rdbuf, want, MSG_DONTWAIT);

    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return; /* empty: the next input edge brings more */
    if (n <= 0) {
      ws_rd_kill(c); /* gone, or a close handshake that ended in EOF */
      return;
    }
    if (!c->own->dead) {
      vcg__ws_note_reader(inst, c);
      vcg__ws_alive(c);
      ws_rd_parse(c, inst->rdbuf, (size_t)n);
    } /* else read and discard until the close completes */
    if ((size_t)n < want)
      return; /* a short read emptied the socket */
    budget -= (size_t)n;
    if (budget == 0) {
      vcg__ws_own_ready(c); /* more next turn, after the others */
      return;
    }
  }
}
