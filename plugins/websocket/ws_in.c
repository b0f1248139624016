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
 * header to change that.  So on ws:// this file reads the socket itself
 * once the upgrade is done and parses frames strictly
 * (vcg__ws_frame_header()): lws keeps the handshake, every write, its PING
 * timer and the close, and stops reading (lws_rx_flow_control(wsi, 0));
 * we read through a dup() of the socket, since libuv allows one poll
 * handle per descriptor and lws keeps its own for writing.  The price is
 * one descriptor and one poll handle per ws:// connection.
 *
 * The takeover is only safe when lws holds no byte past the request head
 * (a client that sent frames before our 101, which RFC 6455 4.1 forbids):
 * at ESTABLISHED the bytes the socket received (TCP_INFO) minus those
 * still queued (FIONREAD) must be exactly the head ws_listen.c peeked.
 * Otherwise, and on wss:// where the bytes are ciphertext, lws's parser
 * reads (vcg__ws_on_receive()), and what is checked there is what a
 * callback sees: the close frame (vcg__ws_peer_close()).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ws_int.h"

/* glibc's struct tcp_info stops at tcpi_total_retrans; the kernel's goes
 * on (the layout only ever grows at its end), and tcpi_bytes_received
 * (Linux 4.1) is the fourth 64-bit member after it.  <linux/tcp.h> has
 * it but cannot be included with <netinet/tcp.h>, which lws includes. */
struct ws_tcp_info {
  struct tcp_info base;
  uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
};
_Static_assert(offsetof(struct ws_tcp_info, bytes_received) == 128,
               "the kernel's tcpi_bytes_received is at byte 128");

/* Our reader of a ws:// connection. */
struct ws_rd {
  uv_poll_t poll;              /* on fd; first member (freed through it) */
  ws_conn_t *c;                /* NULL once stopped */
  int fd;                      /* our dup of the socket (owned) */
  /* A frame header split across reads. */
  uint8_t hdr[VCG__WS_FRAME_HDR_MAX];
  size_t hlen;
  /* The frame being read. */
  vcg__ws_frame_t f;
  uint64_t left, off;          /* payload bytes still to come, and read */
  unsigned in_frame : 1;
  unsigned msg_open : 1;       /* a fragmented message awaits continuations */
  unsigned dead : 1;           /* protocol error or close: read, discard */
  unsigned pong_pending : 1;
  uint8_t ctl[125];            /* a control frame's payload */
  uint8_t ctllen;
  uint8_t ponglen;
  uint8_t pong[125];           /* the PONG owed for the latest PING */
};

/* ------------------------------------------------------- liveness */

/* Any frame is proof of life, as a PONG would be.  Reported at most once a
 * second (the ping and idle policies count in seconds): lws keeps validity
 * timers in one sorted list per thread, so each report walks it, and per
 * message that grew with the number of connections. */
static void ws_alive(vcg_instance_t *inst, ws_conn_t *c) {
  uint32_t sec = (uint32_t)(uv_now(inst->loop) / 1000);

  if (sec != c->alive_sec) {
    c->alive_sec = sec;
    lws_validity_confirmed(c->wsi);
  }
}

/* ------------------------------------------- unfinished messages */

void vcg__ws_msg_reset(ws_conn_t *c) {
  if (c->rxcap > 0)
    atomic_fetch_sub(&c->inst->state->rx_used, c->rxcap);
  free(c->rx);
  c->rx = NULL;
  c->rxlen = c->rxcap = 0;
  vcg__ws_dl_remove(&c->inst->messages, &c->msg_node);
}

static void ws_rd_fail(ws_rd_t *rd, int code, const char *why);

/* A message still unfinished message_timeout after it started. */
static void ws_msg_expired(vcg_instance_t *inst, ws_dl_node_t *n) {
  ws_conn_t *c = WS_CONN_OF(n, msg_node);
  static const char why[] = "message not completed in time";

  inst->host->log(inst->w, c->s, VCG_LOG_INFO, "a message unfinished after "
                  "%lld ms (%zu bytes held): closing with 1008",
                  (long long)inst->conf->message_timeout, c->rxlen);
  inst->host->counter_add(inst->w, "message_timeouts", 1);
  vcg__ws_msg_reset(c);
  if (c->rd != NULL)
    ws_rd_fail(c->rd, 1008, why);
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
  ws_alive(inst, c);
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

static void ws_rd_closed(uv_handle_t *h) {
  ws_rd_t *rd = (ws_rd_t *)h;

  /* Only now: closing the descriptor while libuv still knew it could
   * unregister another socket that got the same number. */
  close(rd->fd);
  free(rd);
}

void vcg__ws_rd_stop(ws_conn_t *c) {
  ws_rd_t *rd = c->rd;

  if (rd == NULL)
    return;
  c->rd = NULL;
  rd->c = NULL;
  uv_poll_stop(&rd->poll);
  uv_close((uv_handle_t *)&rd->poll, ws_rd_closed);
}

/* The socket is done with (EOF, error, the close handshake complete). */
static void ws_rd_kill(ws_conn_t *c) {
  vcg__ws_rd_stop(c);
  vcg__ws_conn_kill(c);
}

/* A protocol error: say why in a close frame, read nothing more. */
static void ws_rd_fail(ws_rd_t *rd, int code, const char *why) {
  ws_conn_t *c = rd->c;

  c->inst->host->log(c->inst->w, c->s, VCG_LOG_DEBUG,
                     "closing with %d: %s", code, why);
  rd->dead = 1;
  vcg__ws_conn_begin_close(c, code, why);
}

/* Send the PONG we owe now, or once lws has written what it holds. */
static void ws_pong_flush(ws_rd_t *rd) {
  ws_conn_t *c = rd->c;
  uint8_t buf[LWS_PRE + sizeof(rd->pong)];

  if (!rd->pong_pending || c->closing)
    return;
  if (lws_partial_buffered(c->wsi)) {
    lws_callback_on_writable(c->wsi);
    return;
  }
  rd->pong_pending = 0;
  memcpy(buf + LWS_PRE, rd->pong, rd->ponglen);
  if (lws_write(c->wsi, buf + LWS_PRE, rd->ponglen, LWS_WRITE_PONG) < 0)
    ws_rd_kill(c);
}

void vcg__ws_rd_writeable(ws_conn_t *c) {
  if (c->rd != NULL)
    ws_pong_flush(c->rd);
}

/* A complete control frame. */
static void ws_rd_control(ws_rd_t *rd) {
  ws_conn_t *c = rd->c;
  unsigned code;

  switch (rd->f.opcode) {
  case 9: /* PING: answer the latest one */
    memcpy(rd->pong, rd->ctl, rd->ctllen);
    rd->ponglen = rd->ctllen;
    rd->pong_pending = 1;
    ws_pong_flush(rd);
    break;
  case 10: /* PONG: proof of life, counted in ws_alive() */
    break;
  default: /* CLOSE */
    rd->dead = 1; /* nothing comes after a close frame */
    if (c->close_sent) {
      ws_rd_kill(c); /* the echo of ours: the handshake is complete */
      return;
    }
    code = vcg__ws_close_answer(rd->ctl, rd->ctllen);
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
static void ws_rd_frame(ws_rd_t *rd) {
  ws_conn_t *c = rd->c;
  size_t max = c->inst->host->max_message_size(c->inst->w);

  rd->in_frame = 1;
  rd->left = rd->f.len;
  rd->off = 0;
  rd->ctllen = 0;
  switch (rd->f.opcode) {
  case 1:
    ws_rd_fail(rd, 1003, "binary messages only");
    return;
  case 2:
    if (rd->msg_open) {
      ws_rd_fail(rd, 1002, "a new message inside a fragmented one");
      return;
    }
    rd->msg_open = !rd->f.fin;
    break;
  case 0:
    if (!rd->msg_open) {
      ws_rd_fail(rd, 1002, "continuation without a message");
      return;
    }
    break;
  default:
    return; /* control frames are checked by the header parser */
  }
  /* The declared length alone can be too much: refuse before the bytes. */
  if (rd->f.len > max || (rd->f.opcode == 0 && c->rxlen + rd->f.len > max)) {
    c->inst->host->log(c->inst->w, c->s, VCG_LOG_INFO,
                       "message over %zu bytes: closing with 1009", max);
    ws_rd_fail(rd, 1009, "message too big");
  }
}

/* Payload bytes of the current frame (unmasked here, in place). */
static void ws_rd_payload(ws_rd_t *rd, uint8_t *p, size_t n) {
  ws_conn_t *c = rd->c;
  int last = n == rd->left, r;

  vcg__ws_unmask(p, n, rd->f.mask, rd->off);
  if (rd->f.opcode >= 8) {
    memcpy(rd->ctl + rd->ctllen, p, n);
    rd->ctllen = (uint8_t)(rd->ctllen + n);
  } else if (!c->closing) {
    r = ws_msg_piece(c->inst, c, p, n, rd->f.opcode == 2 && rd->off == 0,
                     rd->f.fin && last, rd->left - n);
    if (r != 0)
      ws_rd_fail(rd, r, ws_msg_why(r));
  }
  rd->off += n;
  rd->left -= n;
  if (rd->left == 0) {
    rd->in_frame = 0;
    if (rd->f.opcode == 0 && rd->f.fin)
      rd->msg_open = 0;
    if (rd->f.opcode >= 8 && !rd->dead)
      ws_rd_control(rd);
  }
}

/* Parse what one recv() brought. */
static void ws_rd_parse(ws_rd_t *rd, uint8_t *buf, size_t n) {
  size_t i = 0;

  while (rd->c != NULL && !rd->dead && (i < n || (rd->in_frame && rd->left == 0))) {
    if (!rd->in_frame) {
      const char *why = NULL;
      size_t take = n - i;
      long h;

      if (rd->hlen == 0 && take >= VCG__WS_FRAME_HDR_MAX) {
        h = vcg__ws_frame_header(buf + i, take, &rd->f, &why);
        if (h > 0)
          i += (size_t)h;
      } else {
        if (take > sizeof(rd->hdr) - rd->hlen)
          take = sizeof(rd->hdr) - rd->hlen;
        memcpy(rd->hdr + rd->hlen, buf + i, take);
        h = vcg__ws_frame_header(rd->hdr, rd->hlen + take, &rd->f, &why);
        if (h > 0) {
          i += (size_t)h - rd->hlen;
          rd->hlen = 0;
        } else if (h == 0) {
          rd->hlen += take;
          i += take;
        }
      }
      if (h < 0) {
        ws_rd_fail(rd, 1002, why);
        return;
      }
      if (h == 0)
        return; /* the rest of the header comes with the next read */
      ws_rd_frame(rd);
      continue;
    }
    {
      size_t take = n - i < rd->left ? n - i : (size_t)rd->left;

      ws_rd_payload(rd, buf + i, take);
      i += take;
    }
  }
}

static void ws_rd_cb(uv_poll_t *h, int status, int events) {
  ws_rd_t *rd = (ws_rd_t *)h;
  ws_conn_t *c = rd->c;
  vcg_instance_t *inst;
  ssize_t n;

  (void)events;
  if (c == NULL)
    return;
  inst = c->inst;
  if (status < 0) {
    ws_rd_kill(c);
    return;
  }
  n = recv(rd->fd, inst->rdbuf, WS_RD_BUF, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0) {
    ws_rd_kill(c); /* gone, or a close handshake that ended in EOF */
    return;
  }
  if (rd->dead)
    return; /* read and discard until the close completes */
  vcg__ws_note_reader(inst, c);
  ws_alive(inst, c);
  ws_rd_parse(rd, (uint8_t *)inst->rdbuf, (size_t)n);
}

void vcg__ws_rd_start(ws_conn_t *c) {
  vcg_instance_t *inst = c->inst;
  int fd = lws_get_socket_fd(c->wsi), inq = -1;
  struct ws_tcp_info ti;
  socklen_t tl = sizeof(ti);
  ws_rd_t *rd;

  if (inst->tls || c->head_len == 0)
    return;
  memset(&ti, 0, sizeof(ti));
  if (ioctl(fd, FIONREAD, &inq) != 0 ||
      getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0 ||
      tl < sizeof(ti) || ti.bytes_received - (uint64_t)inq != c->head_len) {
    /* (A FIN counts one byte in tcpi_bytes_received: a client that closed
     * at once is read by lws too, which ends it as well as we would.) */
    inst->host->log(inst->w, c->s, VCG_LOG_DEBUG, "libwebsockets holds bytes "
                    "past the request head (sent before our 101, or a close): "
                    "it reads this connection");
    return;
  }
  rd = calloc(1, sizeof(*rd));
  if (rd == NULL)
    return;
  rd->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (rd->fd < 0) {
    free(rd);
    return; /* out of descriptors: lws reads this one */
  }
  if (uv_poll_init_socket(inst->loop, &rd->poll, rd->fd) != 0) {
    close(rd->fd);
    free(rd);
    return;
  }
  rd->c = c;
  c->rd = rd;
  lws_rx_flow_control(c->wsi, 0);
  if (uv_poll_start(&rd->poll, UV_READABLE, ws_rd_cb) != 0) {
    vcg__ws_rd_stop(c);
    lws_rx_flow_control(c->wsi, 1);
  }
}
