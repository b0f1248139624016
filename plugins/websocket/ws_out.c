/*
 * ws_out.c -- everything that goes out on a connection: the output queue
 * of packet references, framing, the two writers and the end-of-turn
 * flush (the connection record and its close handshake are ws_conn.c).
 *
 * Packets the host hands to send() are queued per connection and written
 * from a uv_check handle after the loop has run every ready callback, so
 * all packets of one turn leave a connection in one send() (see the dirty
 * list in ws_int.h).
 *
 * Two writers.  On a ws:// socket we own (ws_own.c) the flush frames the
 * queued packets and hands the kernel the frame headers and the packets'
 * own bytes with one sendmsg() per batch: no copy, the packets stay
 * referenced until the kernel has taken all of their frame.  What it does
 * not take waits in the queue (the first qtaken packets, and how much of
 * the first one is out) until the socket's output edge, which costs no
 * system call to wait for; control frames (our PING, the PONG owed, our
 * close) go between two frames.  On wss:// (and for a ws:// client lws
 * holds bytes of) lws writes: each batch is copied behind LWS_PRE bytes of
 * headroom and handed to lws_write() as one raw write, and lws buffers
 * what the kernel refuses and calls the writeable callback when it is out.
 *
 * Deadlines.  Queued video that waited past its deadline is worth less than
 * nothing to a call, so the packets are checked as they are taken from the
 * queue to be framed: host->packet_take() sheds one past its deadline
 * (counted, CONGESTION to its sender) instead of it reaching the socket,
 * and records the relay latency of the others.  For that to mean anything
 * the bytes past this point must stay few: notsent_lowat
 * (TCP_NOTSENT_LOWAT, set at accept) keeps the kernel's unsent queue near
 * that many bytes, the kernel then takes no more in one send(), and what
 * it refuses waits (in our queue, or in lws) while nothing more is taken;
 * so a batch is at most notsent_lowat bytes (or one larger message), and
 * at most one batch is past the queue.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "ws_int.h"

/* ---------------------------------------------------- connection queue */

/* qcap doubles from 8 up to WS_QUEUE_MAX: always a power of two. */
_Static_assert((WS_QUEUE_MAX & (WS_QUEUE_MAX - 1)) == 0, "WS_QUEUE_MAX is a power of two");
#define WS_Q_SLOT(c, i) (((c)->qhead + (i)) & ((c)->qcap - 1))

static vcg_packet_t *ws_q_at(const ws_conn_t *c, uint32_t i) {
  return c->q[WS_Q_SLOT(c, i)];
}

/* Take the first packet off the queue (NULL where one was shed). */
static vcg_packet_t *ws_q_pop(ws_conn_t *c) {
  vcg_packet_t *p = c->q[c->qhead];

  c->qhead = WS_Q_SLOT(c, 1);
  c->qlen--;
  if (c->own != NULL && c->own->qtaken > 0) {
    c->own->qtaken--;
    if (p == NULL)
      c->own->qshed--;
  }
  if (c->qlen == 0)
    c->qhead = 0;
  return p;
}

/* Release every queued packet; with keep_partial, not the first one when
 * part of its frame is out already (the stream needs the rest of it). */
void vcg__ws_queue_drop(ws_conn_t *c, int keep_partial) {
  const vcg_host_api_t *host = c->inst->host;
  ws_own_t *o = c->own;
  uint32_t keep = keep_partial && o != NULL && o->woff > 0 ? 1 : 0;
  size_t len = 0;

  while (c->qlen > keep) {
    /* From the tail, so that the kept one stays at the head. */
    vcg_packet_t *p = c->q[WS_Q_SLOT(c, c->qlen - 1)];

    c->qlen--;
    if (p != NULL)
      host->packet_unref(p);
  }
  if (o != NULL) {
    o->qtaken = keep;
    o->qshed = 0;
    if (!keep)
      o->woff = 0;
  }
  if (keep)
    (void)host->packet_data(c->q[c->qhead], &len);
  c->qbytes = len;
  if (c->qlen == 0)
    c->qhead = 0;
}

static int ws_queue_push(ws_conn_t *c, vcg_packet_t *p) {
  if (c->qlen == c->qcap) {
    uint32_t ncap = c->qcap ? c->qcap * 2 : 8, i;
    vcg_packet_t **nq;

    if (ncap > WS_QUEUE_MAX)
      ncap = WS_QUEUE_MAX;
    if (ncap <= c->qcap)
      return VCG_ENOBUFS;
    nq = malloc(ncap * sizeof(*nq));
    if (nq == NULL)
      return VCG_ENOBUFS;
    for (i = 0; i < c->qlen; i++)
      nq[i] = c->q[WS_Q_SLOT(c, i)];
    free(c->q);
    c->q = nq;
    c->qhead = 0;
    c->qcap = ncap;
  }
  c->q[WS_Q_SLOT(c, c->qlen)] = p;
  c->qlen++;
  return 0;
}

/* What the host is told c still holds. */
void vcg__ws_queue_report(ws_conn_t *c) {
  uint32_t shed = c->own != NULL ? c->own->qshed : 0;

  if (c->s != NULL)
    c->inst->host->session_set_queued(c->s, c->qlen - shed, c->qbytes);
}

/* The payload of c's close frame (code and reason) into dst (room for
 * 2 + WS_CLOSE_REASON_MAX); returns its length. */
static size_t ws_close_payload(const ws_conn_t *c, uint8_t *dst) {
  size_t n = c->close_reason ? strlen(c->close_reason) : 0;

  dst[0] = (uint8_t)(c->close_code >> 8);
  dst[1] = (uint8_t)(c->close_code & 0xff);
  if (n > 0)
    memcpy(dst + 2, c->close_reason, n);
  return n + 2;
}

/* ------------------------------------------- our writer (ws://, owned) */

/* What one sendmsg() of ours carries, in order. */
enum { WS_P_DATA, WS_P_PART, WS_P_PONG, WS_P_PING, WS_P_CLOSE };

typedef struct ws_piece {
  uint8_t kind;
  uint32_t idx;                /* WS_P_DATA: position in the queue */
  size_t len;                  /* the whole frame */
  size_t done;                 /* bytes of it out before this write */
  size_t plen;                 /* WS_P_DATA: the packet's bytes */
} ws_piece_t;

static ws_cout_t *ws_cout(ws_own_t *o) {
  if (o->cout == NULL)
    o->cout = calloc(1, sizeof(*o->cout));
  return o->cout;
}

static void ws_cout_trim(ws_own_t *o) {
  ws_cout_t *co = o->cout;

  if (co != NULL && co->partlen == 0 && !co->pong && !co->ping) {
    free(co);
    o->cout = NULL;
  }
}

/* Take the next batch of queued packets for writing: at most *budget of
 * them and batch_max bytes (or one larger message). */
static void ws_own_take(vcg_instance_t *inst, ws_conn_t *c, unsigned *budget) {
  const vcg_host_api_t *host = inst->host;
  ws_own_t *o = c->own;
  size_t used = 0;

  while (o->qtaken < c->qlen && *budget > 0) {
    vcg_packet_t *p = ws_q_at(c, o->qtaken);
    size_t len, hl;

    (void)host->packet_data(p, &len);
    hl = len < 126 ? 2 : len < 65536 ? 4 : 10;
    if (used > 0 && used + hl + len > inst->batch_max)
      break;
    /* The host sheds a packet past its deadline and records the relay
     * latency of the others.  It may queue CONGESTION on this very
     * connection (to its own sender): positions are re-read each time. */
    if (host->packet_take(c->s, p)) {
      c->q[WS_Q_SLOT(c, o->qtaken)] = NULL;
      o->qtaken++;
      o->qshed++;
      c->qbytes -= len;
      continue;
    }
    o->qtaken++;
    (*budget)--;
    used += hl + len;
  }
}

/* The pieces of the next write and their iovecs.  Returns the number of
 * pieces; *niov is set. */
static size_t ws_own_pieces(vcg_instance_t *inst, ws_conn_t *c,
                            ws_piece_t *pc, size_t *niov) {
  const vcg_host_api_t *host = inst->host;
  ws_own_t *o = c->own;
  ws_cout_t *co = o->cout;
  struct iovec *iov = inst->iov;
  size_t np = 0, ni = 0, nh = 0;
  uint32_t i = 0;

#define WS_IOV(b, n) do { iov[ni].iov_base = (void *)(b); iov[ni].iov_len = (n); ni++; } while (0)
  /* A data frame partly out, then a control frame partly out (at most one
   * of the two can be: whichever was cut is first in the next write). */
  if (o->woff > 0) {
    const uint8_t *d = host->packet_data(c->q[c->qhead], &pc[np].plen);
    size_t hl = vcg__ws_server_hdr(inst->hdrs[nh], 2, pc[np].plen);

    pc[np].len = pc[np].plen + hl;
    pc[np].kind = WS_P_DATA;
    pc[np].idx = 0;
    pc[np].done = o->woff;
    if (o->woff < hl)
      WS_IOV(inst->hdrs[nh] + o->woff, hl - o->woff);
    WS_IOV(d + (o->woff > hl ? o->woff - hl : 0),
           pc[np].len - (o->woff > hl ? o->woff : hl));
    nh++;
    np++;
    i = 1;
  }
  if (co != NULL && co->partlen > 0) {
    pc[np] = (ws_piece_t){ WS_P_PART, 0, co->partlen, co->partoff, 0 };
    WS_IOV(co->part + co->partoff, co->partlen - co->partoff);
    np++;
  }
  if (c->closing) {
    /* Nothing but the close frame after what was cut. */
    if (!c->close_sent && (co == NULL || !co->part_is_close)) {
      uint8_t *f = inst->ctlbuf[2];
      size_t n = ws_close_payload(c, f + 2);

      f[0] = 0x88;
      f[1] = (uint8_t)n;
      pc[np] = (ws_piece_t){ WS_P_CLOSE, 0, n + 2, 0, 0 };
      WS_IOV(f, n + 2);
      np++;
    }
    *niov = ni;
    return np;
  }
  if (co != NULL && co->pong) {
    uint8_t *f = inst->ctlbuf[0];

    f[0] = 0x8a;
    f[1] = co->ponglen;
    memcpy(f + 2, co->pong_data, co->ponglen);
    pc[np] = (ws_piece_t){ WS_P_PONG, 0, 2u + co->ponglen, 0, 0 };
    WS_IOV(f, 2u + co->ponglen);
    np++;
  }
  if (co != NULL && co->ping) {
    uint8_t *f = inst->ctlbuf[1];

    f[0] = 0x89;
    f[1] = 0;
    pc[np] = (ws_piece_t){ WS_P_PING, 0, 2, 0, 0 };
    WS_IOV(f, 2);
    np++;
  }
  for (; i < o->qtaken; i++) {
    vcg_packet_t *p = ws_q_at(c, i);
    const uint8_t *d;
    size_t len, hl;

    if (p == NULL)
      continue; /* shed */
    d = host->packet_data(p, &len);
    hl = vcg__ws_server_hdr(inst->hdrs[nh], 2, len);
    pc[np] = (ws_piece_t){ WS_P_DATA, i, hl + len, 0, len };
    WS_IOV(inst->hdrs[nh], hl);
    WS_IOV(d, len);
    nh++;
    np++;
  }
#undef WS_IOV
  *niov = ni;
  return np;
}

/* Our close frame is all out. */
static void ws_own_close_sent(ws_conn_t *c) {
  c->close_sent = 1;
  if (c->peer_closed) {
    vcg__ws_conn_kill(c); /* theirs came first: the handshake is complete */
    return;
  }
  vcg__ws_closing_start(c); /* WS_CLOSE_ACK_SECS for the echo, from now */
}

/* Drop shed packets at the head of the queue. */
static void ws_own_pop_shed(ws_conn_t *c) {
  while (c->own->qtaken > 0 && c->q[c->qhead] == NULL)
    (void)ws_q_pop(c);
}

/* The write took pieces [0, whole) and `part` bytes of piece `whole`. */
static int ws_own_consumed(vcg_instance_t *inst, ws_conn_t *c,
                           const ws_piece_t *pc, size_t np, size_t whole,
                           size_t part) {
  ws_own_t *o = c->own;
  uint32_t popped = 0; /* queue positions shift as packets leave */

  for (size_t k = 0; k < whole; k++) {
    switch (pc[k].kind) {
    case WS_P_DATA: {
      vcg_packet_t *p;

      while (popped < pc[k].idx) { /* shed ones before it */
        (void)ws_q_pop(c);
        popped++;
      }
      p = ws_q_pop(c);
      popped++;
      c->qbytes -= pc[k].plen;
      inst->host->packet_unref(p);
      o->woff = 0;
      break;
    }
    case WS_P_PART:
      o->cout->partlen = 0;
      if (o->cout->part_is_close) {
        o->cout->part_is_close = 0;
        ws_own_close_sent(c);
      }
      break;
    case WS_P_PONG:
      o->cout->pong = 0;
      break;
    case WS_P_PING:
      o->cout->ping = 0;
      break;
    default: /* WS_P_CLOSE */
      ws_own_close_sent(c);
      break;
    }
  }
  if (whole < np && part > 0) {
    const ws_piece_t *q = &pc[whole];

    if (q->kind == WS_P_DATA) {
      while (popped < q->idx) {
        (void)ws_q_pop(c);
        popped++;
      }
      o->woff = (uint32_t)(q->done + part);
    } else if (q->kind == WS_P_PART) {
      o->cout->partoff = (uint8_t)(q->done + part);
    } else {
      /* A control frame cut by the kernel: its rest goes first next. */
      const uint8_t *f = q->kind == WS_P_PONG ? inst->ctlbuf[0] :
                         q->kind == WS_P_PING ? inst->ctlbuf[1] : inst->ctlbuf[2];
      ws_cout_t *co = ws_cout(o);

      if (co == NULL)
        return -1;
      memcpy(co->part, f, q->len);
      co->partlen = (uint8_t)q->len;
      co->partoff = (uint8_t)part;
      if (q->kind == WS_P_PONG)
        co->pong = 0;
      else if (q->kind == WS_P_PING)
        co->ping = 0;
      else
        co->part_is_close = 1;
    }
  }
  ws_own_pop_shed(c);
  ws_cout_trim(o);
  return 0;
}

/* Write what c owes, batch after batch, until the kernel refuses some
 * (the output edge brings us back), the budget is spent (returns 1: again
 * next turn) or nothing is left (0).  -1: the connection must go. */
static int ws_own_write(vcg_instance_t *inst, ws_conn_t *c) {
  ws_piece_t pc[WS_WRITE_BUDGET + 8];
  unsigned budget = WS_WRITE_BUDGET;
  int fd = c->fd, r = 0;

  while (c->own != NULL && !c->killed && fd >= 0) {
    ws_own_t *o = c->own;
    struct msghdr mh;
    size_t np, niov, whole, part;
    ssize_t n;

    if (o->qtaken == 0 && !c->closing) {
      ws_own_take(inst, c, &budget);
      ws_own_pop_shed(c);
    }
    np = ws_own_pieces(inst, c, pc, &niov);
    if (np == 0)
      break;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = inst->iov;
    mh.msg_iovlen = niov;
    n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break; /* the output edge comes when there is room */
    if (n < 0) {
      inst->host->log(inst->w, c->s, VCG_LOG_DEBUG, "send: %s", strerror(errno));
      r = -1;
      break;
    }
    {
      size_t rem[WS_WRITE_BUDGET + 8];

      for (size_t k = 0; k < np; k++)
        rem[k] = pc[k].len - pc[k].done;
      whole = vcg__ws_written(rem, np, (size_t)n, &part);
    }
    if (ws_own_consumed(inst, c, pc, np, whole, part) != 0) {
      r = -1;
      break;
    }
    if (whole < np)
      break; /* the kernel is full: the output edge brings us back */
    if (c->closing || c->qlen == 0)
      continue; /* (one more pass finds nothing, or the close frame) */
    if (budget == 0) {
      r = 1;
      break;
    }
  }
  vcg__ws_queue_report(c);
  return r;
}

void vcg__ws_own_writable(ws_conn_t *c) {
  ws_own_t *o = c->own;

  if (!c->established)
    return;
  if (o->qtaken > 0 || o->cout != NULL || (c->closing && !c->close_sent) ||
      (!c->closing && c->qlen > 0))
    vcg__ws_conn_wake(c);
}

void vcg__ws_own_pong(ws_conn_t *c, const uint8_t *payload, size_t n) {
  ws_cout_t *co;

  if (c->closing)
    return;
  co = ws_cout(c->own);
  if (co == NULL)
    return; /* out of memory: the client's PING goes unanswered */
  memcpy(co->pong_data, payload, n);
  co->ponglen = (uint8_t)n;
  co->pong = 1; /* a later PING replaces an earlier one's PONG */
  vcg__ws_conn_wake(c);
}

void vcg__ws_own_ping(ws_conn_t *c) {
  ws_cout_t *co;

  if (c->closing)
    return;
  co = ws_cout(c->own);
  if (co == NULL)
    return; /* the idle timeout still ends a dead peer */
  co->ping = 1;
  vcg__ws_conn_wake(c);
}

/* ----------------------------------------------- lws's writer (wss://) */

/* Frame up to WS_WRITE_BUDGET queued messages (at most batch_max bytes)
 * of c and hand them to lws as one raw write: one send() for the batch.
 * Called from the flush handle and from the writeable callback; lws takes
 * raw writes outside its callback and buffers whatever the kernel refuses
 * (and then asks for POLLOUT itself).  Returns 0, or -1 when the
 * connection must go. */
static int ws_write_queued(vcg_instance_t *inst, ws_conn_t *c) {
  const vcg_host_api_t *host = inst->host;
  int budget = WS_WRITE_BUDGET;
  size_t used = 0;

  if (lws_partial_buffered(c->wsi)) {
    /* lws still holds part of an earlier batch: the writeable callback
     * comes once the kernel has taken it. */
    lws_callback_on_writable(c->wsi);
    return 0;
  }
  /* The copy is the one copy per recipient lws_write() needs (it wants
   * LWS_PRE bytes of headroom before the payload, which the shared,
   * immutable packets do not have). */
  while (c->qlen > 0 && budget > 0) {
    vcg_packet_t *p = c->q[c->qhead];
    const uint8_t *data;
    size_t len, hl;

    data = host->packet_data(p, &len);
    hl = len < 126 ? 2 : len < 65536 ? 4 : 10;
    if (used > 0 && used + hl + len > inst->batch_max)
      break; /* the next callback sends the rest */
    (void)ws_q_pop(c);
    c->qbytes -= len;
    /* See ws_own_take(). */
    if (host->packet_take(c->s, p)) continue;
    budget--;
    if (inst->sendbuf_cap < LWS_PRE + used + hl + len) {
      size_t ncap = inst->sendbuf_cap ? inst->sendbuf_cap : 16384;
      uint8_t *nb;

      while (ncap < LWS_PRE + used + hl + len)
        ncap *= 2;
      nb = realloc(inst->sendbuf, ncap);
      if (nb == NULL) {
        host->log(inst->w, c->s, VCG_LOG_ERROR,
                  "out of memory for a %zu-byte message", len);
        host->packet_unref(p);
        return -1;
      }
      inst->sendbuf = nb;
      inst->sendbuf_cap = ncap;
    }
    (void)vcg__ws_server_hdr(inst->sendbuf + LWS_PRE + used, 2, len);
    memcpy(inst->sendbuf + LWS_PRE + used + hl, data, len);
    used += hl + len;
    host->packet_unref(p);
  }
  if (used > 0 &&
      lws_write(c->wsi, inst->sendbuf + LWS_PRE, used, LWS_WRITE_RAW) < 0) {
    vcg__ws_queue_report(c);
    return -1;
  }
  vcg__ws_queue_report(c);
  if (c->qlen > 0)
    lws_callback_on_writable(c->wsi);
  return 0;
}

int vcg__ws_on_writeable(vcg_instance_t *inst, ws_conn_t *c) {
  if (c->own != NULL) {
    /* Not asked for by us (a fallback of vcg__ws_conn_wake()): lws writes
     * nothing of its own on these sockets, so ours may go now. */
    int r = ws_own_write(inst, c);

    if (r > 0)
      vcg__ws_conn_wake(c);
    return r < 0 ? -1 : 0;
  }
  if (c->closing) {
    /* We write the close frame ourselves instead of lws_close_reason() +
     * return -1: on that path lws 4.1 (Debian's build has _DEBUG, which
     * closes a wsi twice "to test uv") kills the socket before the close
     * frame is sent.  We then wait for the client's echo (handled in
     * LWS_CALLBACK_WS_PEER_INITIATED_CLOSE) or the timeout. */
    uint8_t frame[LWS_PRE + 2 + WS_CLOSE_REASON_MAX];
    size_t n;

    if (c->close_sent)
      return 0;
    n = ws_close_payload(c, frame + LWS_PRE);
    if (lws_write(c->wsi, frame + LWS_PRE, n, WS_WRITE_CLOSE) < 0)
      return -1;
    c->close_sent = 1;
    if (c->peer_closed)
      return -1; /* theirs came first: the handshake is complete */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, WS_CLOSE_ACK_SECS);
    return 0;
  }
  if (c->ping_due) {
    /* One byte of payload: lws 4.1 drops the callback for an empty PONG
     * (it logs "received pong" and never reports it), so the client's
     * echo of an empty PING would never count as proof of life. */
    uint8_t ping[LWS_PRE + 1] = { 0 };

    if (lws_partial_buffered(c->wsi)) {
      lws_callback_on_writable(c->wsi);
      return 0;
    }
    c->ping_due = 0;
    ping[LWS_PRE] = 'v';
    if (lws_write(c->wsi, ping + LWS_PRE, 1, LWS_WRITE_PING) < 0)
      return -1;
  }
  return ws_write_queued(inst, c);
}

/* ------------------------------------------------------- the flush */

void vcg__ws_note_reader(vcg_instance_t *inst, ws_conn_t *c) {
  if (inst->nreaders > WS_DEFER_MAX_READERS)
    return;
  if (inst->nreaders > 0 && inst->readers[inst->nreaders - 1] == c)
    return;
  if (inst->nreaders < WS_DEFER_MAX_READERS)
    inst->readers[inst->nreaders] = c;
  inst->nreaders++;
}

/* Whether this turn's flush should wait for more input (see
 * WS_DEFER_MAX_READERS): one FIONREAD per reader, and only in turns that
 * fan a few readers out to many connections. */
static int ws_flush_should_wait(vcg_instance_t *inst) {
  if (inst->ndirty < WS_DEFER_MIN_DIRTY || inst->nreaders == 0 ||
      inst->nreaders > WS_DEFER_MAX_READERS ||
      inst->deferred >= WS_DEFER_MAX_TURNS || inst->draining)
    return 0;
  for (unsigned i = 0; i < inst->nreaders; i++) {
    ws_conn_t *c = inst->readers[i];
    int unread = 0;

    if (c == NULL || c->closing || c->killed)
      continue;
    if (c->ready_idx >= 0)
      return 1; /* read its budget with input left */
    if (ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0)
      return 1;
  }
  return 0;
}

/* An active idle handle makes the loop poll without blocking. */
static void ws_nowait_cb(uv_idle_t *h) {
  (void)h;
}

static void ws_flush_arm(vcg_instance_t *inst);

/* The check handle: write every connection given packets this turn. */
static void ws_flush_cb(uv_check_t *h) {
  vcg_instance_t *inst = h->data;
  size_t i, again = 0;

  if (ws_flush_should_wait(inst)) {
    inst->deferred++; /* nowait stays active: the next poll does not block */
    inst->nreaders = 0; /* the next turn's readers decide again */
    return;
  }
  inst->deferred = 0;
  inst->nreaders = 0;

  /* ndirty is re-read: packet_take() may queue CONGESTION for a sender,
   * which marks it during the walk.  Connections with more than a budget
   * to write keep their place for the next turn (slots before i). */
  for (i = 0; i < inst->ndirty; i++) {
    ws_conn_t *c = inst->dirty[i];
    int r;

    if (c == NULL)
      continue; /* freed since it was marked */
    inst->dirty[i] = NULL;
    c->dirty_idx = -1;
    if (!c->established || c->killed)
      continue;
    if (c->own != NULL) {
      r = ws_own_write(inst, c);
    } else {
      if (c->closing)
        continue; /* the writeable callback writes its close frame */
      r = ws_write_queued(inst, c);
    }
    if (r > 0) {
      c->dirty_idx = (int32_t)again;
      inst->dirty[again++] = c;
    } else if (r < 0) {
      /* A send error is final.  Outside a callback we cannot return -1:
       * lws closes the socket on its next pass, and WSI_DESTROY then
       * closes the session. */
      inst->host->log(inst->w, c->s, VCG_LOG_DEBUG, "write failed; closing");
      c->closing = 1;
      vcg__ws_queue_drop(c, 0);
      vcg__ws_queue_report(c);
      vcg__ws_conn_kill(c);
    }
  }
  inst->ndirty = again;
  if (again > 0)
    return; /* check and nowait stay active for them */
  uv_check_stop(&inst->flush);
  uv_idle_stop(&inst->nowait);
  inst->flush_active = 0;
}

static void ws_flush_arm(vcg_instance_t *inst) {
  if (inst->flush_active)
    return;
  /* The check handle runs after the poll, which would block when the
   * packets were queued outside of it (a timer: presence's LEFT, say):
   * an active idle handle makes that poll return at once. */
  uv_check_start(&inst->flush, ws_flush_cb);
  uv_idle_start(&inst->nowait, ws_nowait_cb);
  inst->flush_active = 1;
}

/* Queue c for the end-of-turn flush.  Returns 0, or -1 when it could not
 * be (stopping, or no memory for the list). */
static int ws_mark_dirty(vcg_instance_t *inst, ws_conn_t *c) {
  if (c->dirty_idx >= 0)
    return 0;
  if (!inst->flush_open)
    return -1;
  if (inst->ndirty == inst->dirty_cap) {
    size_t ncap = inst->dirty_cap ? inst->dirty_cap * 2 : 64;
    ws_conn_t **nd = ncap <= INT32_MAX ? realloc(inst->dirty, ncap * sizeof(*nd)) : NULL;

    if (nd == NULL)
      return -1;
    inst->dirty = nd;
    inst->dirty_cap = ncap;
  }
  c->dirty_idx = (int32_t)inst->ndirty;
  inst->dirty[inst->ndirty++] = c;
  ws_flush_arm(inst);
  return 0;
}

void vcg__ws_conn_wake(ws_conn_t *c) {
  if (c->killed || c->wsi == NULL)
    return;
  /* The flush, or else lws's writeable callback (which writes our frames
   * on a socket we own as well: lws writes nothing there itself). */
  if (ws_mark_dirty(c->inst, c) != 0)
    lws_callback_on_writable(c->wsi);
}

int vcg__ws_conn_send(vcg_instance_t *inst, ws_conn_t *c, vcg_packet_t *p) {
  size_t len;

  if (c->closing) {
    inst->host->packet_unref(p);
    return 0;
  }
  if (ws_queue_push(c, p) != 0) {
    inst->host->packet_unref(p);
    return VCG_ENOBUFS;
  }
  (void)inst->host->packet_data(p, &len);
  c->qbytes += len;
  /* With more queued, the flush or the writer's output edge is due
   * already. */
  if (c->established && c->qlen == 1)
    vcg__ws_conn_wake(c);
  return 0;
}

void vcg__ws_batch_limit(vcg_instance_t *inst) {
  int64_t lowat = inst->conf->notsent_lowat;

  inst->batch_max = WS_BATCH_BYTES;
  if (lowat > 0 && (uint64_t)lowat < WS_BATCH_BYTES)
    inst->batch_max = (size_t)lowat;
}

void vcg__ws_flush_init(vcg_instance_t *inst) {
  uv_check_init(inst->loop, &inst->flush);
  inst->flush.data = inst;
  uv_idle_init(inst->loop, &inst->nowait);
  inst->nowait.data = inst;
  inst->flush_open = 1;
  vcg__ws_batch_limit(inst);
}

void vcg__ws_flush_close(vcg_instance_t *inst) {
  if (!inst->flush_open)
    return;
  inst->flush_open = 0;
  inst->flush_active = 0;
  uv_close((uv_handle_t *)&inst->flush, NULL);
  uv_close((uv_handle_t *)&inst->nowait, NULL);
}
