/* loadgen WebSocket transport (RFC 6455 client, hand-rolled): HTTP upgrade
 * with Sec-WebSocket-Accept check, masked binary frames out, frames of any
 * size and fragmentation in (split across reads or not), ping -> pong,
 * close echo.  Output goes through a bounded per-connection buffer that is
 * written with uv_try_write first and uv_write for the rest, so that a loop
 * turn's packets for one connection leave in one system call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "lg.h"

#define WS_MAX_FRAME (64u << 20)
#define WS_HS_MAX 4096

enum { WS_TCP, WS_HANDSHAKE, WS_OPEN, WS_CLOSING };

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  lg_conn_t *c;
  int phase;
  int writing;        /* wreq in flight over ib */
  int handle_closing; /* uv_close called */
  char why[96];
  char accept[32];    /* expected Sec-WebSocket-Accept */
  char hs[WS_HS_MAX]; /* handshake response so far */
  size_t hslen;
  uint8_t *pend;      /* a frame split across reads, owned */
  size_t plen, pcap;
  uint8_t *msg;       /* a fragmented message being reassembled, owned */
  size_t mlen, mcap;
  int in_msg;
  uint8_t *ob;        /* output not yet handed to the kernel, owned */
  size_t oblen, obcap;
  uint8_t *ib;        /* output in flight through wreq, owned */
  size_t ibcap, iblen; /* iblen: bytes of ib handed to wreq */
  uint64_t rng;
} ws_t;

static uint32_t ws_rand(ws_t *w) {
  /* xorshift64*: mask keys need no cryptographic strength here. */
  w->rng ^= w->rng >> 12;
  w->rng ^= w->rng << 25;
  w->rng ^= w->rng >> 27;
  return (uint32_t)((w->rng * 0x2545f4914f6cdd1dull) >> 32);
}

static int buf_reserve(uint8_t **b, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t nc = *cap ? *cap : 4096;
  while (nc < need) nc *= 2;
  uint8_t *nb = realloc(*b, nc);
  if (!nb) return UV_ENOMEM;
  *b = nb;
  *cap = nc;
  return 0;
}

static void ws_close_cb(uv_handle_t *h) {
  ws_t *w = h->data;
  lg_conn_t *c = w->c;
  free(w->pend);
  free(w->msg);
  free(w->ob);
  free(w->ib);
  c->tp = NULL;
  lg_conn_closed(c, w->why[0] ? w->why : "closed");
  free(w);
}

static void ws_shutdown(ws_t *w, const char *why) {
  if (w->handle_closing) return;
  if (why != w->why && !w->why[0]) snprintf(w->why, sizeof w->why, "%s", why);
  w->handle_closing = 1;
  w->phase = WS_CLOSING;
  uv_close((uv_handle_t *)&w->tcp, ws_close_cb);
}

/* Append one masked frame to the output buffer. */
static int ws_frame(ws_t *w, int opcode, const uint8_t *p, size_t len, size_t cap) {
  size_t hl = 2 + (len < 126 ? 0 : len < 65536 ? 2 : 8) + 4;
  if (w->oblen + hl + len > cap) return UV_ENOBUFS;
  if (buf_reserve(&w->ob, &w->obcap, w->oblen + hl + len + 8) != 0) return UV_ENOBUFS;
  uint8_t *o = w->ob + w->oblen;
  size_t i = 0;
  o[i++] = (uint8_t)(0x80 | opcode);
  if (len < 126) {
    o[i++] = (uint8_t)(0x80 | len);
  } else if (len < 65536) {
    o[i++] = 0x80 | 126;
    o[i++] = (uint8_t)(len >> 8);
    o[i++] = (uint8_t)len;
  } else {
    o[i++] = 0x80 | 127;
    for (int k = 7; k >= 0; k--) o[i++] = (uint8_t)((uint64_t)len >> (8 * k));
  }
  uint32_t mk = ws_rand(w);
  uint8_t m[4];
  memcpy(m, &mk, 4);
  memcpy(o + i, m, 4);
  i += 4;
  lg_ws_mask(o + i, p, len, m);
  w->oblen += hl + len;
  return 0;
}

static void ws_flush_w(ws_t *w);

static void ws_write_cb(uv_write_t *req, int status) {
  ws_t *w = req->data;
  w->writing = 0;
  w->iblen = 0;
  if (w->handle_closing) return;
  if (status < 0) {
    snprintf(w->why, sizeof w->why, "write: %s", uv_strerror(status));
    ws_shutdown(w, w->why);
    return;
  }
  ws_flush_w(w);
}

static void ws_flush_w(ws_t *w) {
  if (w->writing || w->oblen == 0 || w->handle_closing || w->phase == WS_TCP) return;
  uv_buf_t b = uv_buf_init((char *)w->ob, (unsigned)w->oblen);
  int n = uv_try_write((uv_stream_t *)&w->tcp, &b, 1);
  if (n == UV_EAGAIN) n = 0;
  if (n < 0) {
    snprintf(w->why, sizeof w->why, "write: %s", uv_strerror(n));
    ws_shutdown(w, w->why);
    return;
  }
  if ((size_t)n == w->oblen) {
    w->oblen = 0;
    return;
  }
  /* The kernel took part: the rest goes out through uv_write from ib,
   * while new frames collect in the (swapped) ob. */
  uint8_t *t = w->ib;
  size_t tc = w->ibcap;
  w->ib = w->ob;
  w->ibcap = w->obcap;
  w->ob = t;
  w->obcap = tc;
  size_t rest = w->oblen - (size_t)n;
  w->oblen = 0;
  b = uv_buf_init((char *)w->ib + n, (unsigned)rest);
  w->wreq.data = w;
  int rc = uv_write(&w->wreq, (uv_stream_t *)&w->tcp, &b, 1, ws_write_cb);
  if (rc < 0) {
    snprintf(w->why, sizeof w->why, "write: %s", uv_strerror(rc));
    ws_shutdown(w, w->why);
    return;
  }
  w->writing = 1;
  w->iblen = rest;
}

static void ws_flush(lg_conn_t *c) {
  if (c->tp) ws_flush_w(c->tp);
}

static size_t ws_pending(lg_conn_t *c) {
  ws_t *w = c->tp;
  return w ? w->oblen + w->iblen : 0;
}

static int ws_send(lg_conn_t *c, const uint8_t *msg, size_t len) {
  ws_t *w = c->tp;
  if (!w || w->phase != WS_OPEN) return UV_ENOTCONN;
  return ws_frame(w, 0x2, msg, len, lg_max_out(c->lg));
}

static void ws_close(lg_conn_t *c) {
  ws_t *w = c->tp;
  if (!w) return;
  if (w->phase == WS_OPEN) {
    const uint8_t code[2] = {0x03, 0xe8}; /* 1000 */
    /* Best effort: the close frame goes out with whatever is buffered. */
    if (ws_frame(w, 0x8, code, 2, (size_t)-1) == 0 && !w->writing && w->oblen) {
      uv_buf_t b = uv_buf_init((char *)w->ob, (unsigned)w->oblen);
      (void)uv_try_write((uv_stream_t *)&w->tcp, &b, 1);
    }
  }
  ws_shutdown(w, "closed by loadgen");
}

/* One complete frame f of total bytes (writable: unmasked in place). */
static void ws_frame_in(ws_t *w, uint8_t *f, size_t total) {
  int fin = f[0] & 0x80, op = f[0] & 0x0f, masked = f[1] & 0x80;
  size_t l7 = f[1] & 0x7f, hl = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
  uint8_t mk[4] = {0};
  if (masked) { memcpy(mk, f + hl, 4); hl += 4; }
  uint8_t *p = f + hl;
  size_t pl = total - hl;
  if (masked) lg_ws_mask(p, p, pl, mk);
  switch (op) {
  case 0x1:
  case 0x2:
    if (w->in_msg) { ws_shutdown(w, "protocol: data frame inside a fragmented message"); return; }
    if (fin) { lg_conn_message(w->c, p, pl); return; }
    w->in_msg = 1;
    w->mlen = 0;
    /* fall through: the first fragment is appended like a continuation */
    /* FALLTHROUGH */
  case 0x0:
    if (!w->in_msg) { ws_shutdown(w, "protocol: stray continuation frame"); return; }
    if (w->mlen + pl > WS_MAX_FRAME || buf_reserve(&w->msg, &w->mcap, w->mlen + pl) != 0) {
      ws_shutdown(w, "message too large");
      return;
    }
    memcpy(w->msg + w->mlen, p, pl);
    w->mlen += pl;
    if (fin) {
      w->in_msg = 0;
      lg_conn_message(w->c, w->msg, w->mlen);
    }
    return;
  case 0x8: {
    unsigned code = pl >= 2 ? (unsigned)p[0] << 8 | p[1] : 1005;
    snprintf(w->why, sizeof w->why, "server closed: %u %.*s", code,
             pl > 2 ? (int)(pl - 2 > 60 ? 60 : pl - 2) : 0, pl > 2 ? (const char *)p + 2 : "");
    if (w->phase == WS_OPEN) {
      const uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};
      if (ws_frame(w, 0x8, echo, code == 1005 ? 0 : 2, (size_t)-1) == 0 && !w->writing) {
        uv_buf_t b = uv_buf_init((char *)w->ob, (unsigned)w->oblen);
        (void)uv_try_write((uv_stream_t *)&w->tcp, &b, 1);
      }
    }
    ws_shutdown(w, w->why);
    return;
  }
  case 0x9:
    if (ws_frame(w, 0xA, p, pl, (size_t)-1) == 0) ws_flush_w(w);
    return;
  case 0xA:
    return;
  default:
    ws_shutdown(w, "protocol: unknown opcode");
    return;
  }
}

static void ws_frames_in(ws_t *w, uint8_t *d, size_t n) {
  int bad = 0;
  while (n > 0 && !w->handle_closing) {
    if (w->plen > 0) {
      /* Complete the frame split across reads, then continue in place. */
      size_t need;
      while ((need = lg_ws_need(w->pend, w->plen, WS_MAX_FRAME, &bad)) > w->plen && n > 0 && !bad) {
        size_t take = need - w->plen < n ? need - w->plen : n;
        if (buf_reserve(&w->pend, &w->pcap, w->plen + take) != 0) { ws_shutdown(w, "out of memory"); return; }
        memcpy(w->pend + w->plen, d, take);
        w->plen += take;
        d += take;
        n -= take;
      }
      if (bad) { ws_shutdown(w, "frame too large"); return; }
      if (need > w->plen) return; /* still incomplete; input used up */
      w->plen = 0;
      ws_frame_in(w, w->pend, need);
      continue;
    }
    size_t need = lg_ws_need(d, n, WS_MAX_FRAME, &bad);
    if (bad) { ws_shutdown(w, "frame too large"); return; }
    if (need <= n) {
      ws_frame_in(w, d, need);
      d += need;
      n -= need;
      continue;
    }
    if (buf_reserve(&w->pend, &w->pcap, n > 64 ? n : 64) != 0) { ws_shutdown(w, "out of memory"); return; }
    memcpy(w->pend, d, n);
    w->plen = n;
    return;
  }
}

static void ws_handshake_in(ws_t *w, const uint8_t *d, size_t n) {
  size_t take = n < WS_HS_MAX - 1 - w->hslen ? n : WS_HS_MAX - 1 - w->hslen;
  memcpy(w->hs + w->hslen, d, take);
  size_t old = w->hslen;
  w->hslen += take;
  w->hs[w->hslen] = 0;
  char *end = strstr(w->hs, "\r\n\r\n");
  if (!end) {
    if (w->hslen >= WS_HS_MAX - 1) ws_shutdown(w, "handshake: response headers too large");
    return;
  }
  size_t hdr = (size_t)(end - w->hs) + 4;
  int status = 0;
  if (sscanf(w->hs, "HTTP/1.%*d %d", &status) != 1 || status != 101) {
    snprintf(w->why, sizeof w->why, "handshake: HTTP %d", status);
    ws_shutdown(w, w->why);
    return;
  }
  int ok = 0;
  for (char *line = strstr(w->hs, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
    static const char k[] = "sec-websocket-accept:";
    if (strncasecmp(line + 2, k, sizeof k - 1) == 0) {
      const char *v = line + 2 + sizeof k - 1;
      while (*v == ' ') v++;
      ok = strncmp(v, w->accept, strlen(w->accept)) == 0;
    }
  }
  if (!ok) { ws_shutdown(w, "handshake: bad or missing Sec-WebSocket-Accept"); return; }
  w->phase = WS_OPEN;
  lg_conn_opened(w->c);
  /* Bytes after the headers are already frames. */
  size_t used = hdr - old;
  if (used < n && !w->handle_closing) ws_frames_in(w, (uint8_t *)d + used, n - used);
}

static void ws_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  ws_t *w = h->data;
  *buf = lg_readbuf(w->c->lg);
}

static void ws_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  ws_t *w = s->data;
  if (nread == 0) return;
  if (nread < 0) {
    if (!w->why[0])
      snprintf(w->why, sizeof w->why, "read: %s", nread == UV_EOF ? "connection closed by peer"
                                                                 : uv_strerror((int)nread));
    ws_shutdown(w, w->why);
    return;
  }
  if (w->phase == WS_HANDSHAKE) ws_handshake_in(w, (uint8_t *)buf->base, (size_t)nread);
  else if (w->phase == WS_OPEN) ws_frames_in(w, (uint8_t *)buf->base, (size_t)nread);
}

static void ws_connect_cb(uv_connect_t *req, int status) {
  ws_t *w = req->data;
  if (w->handle_closing) return;
  if (status < 0) {
    snprintf(w->why, sizeof w->why, "connect: %s", uv_strerror(status));
    ws_shutdown(w, w->why);
    return;
  }
  lg_conn_t *c = w->c;
  uint8_t key[16];
  char k64[32], req_s[512];
  for (int i = 0; i < 16; i += 4) {
    uint32_t r = ws_rand(w);
    memcpy(key + i, &r, 4);
  }
  lg_base64(key, 16, k64);
  lg_ws_accept(k64, strlen(k64), w->accept);
  int n = snprintf(req_s, sizeof req_s,
                   "GET %s%s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   c->url->prefix, c->path, c->url->host, c->url->port, k64);
  if (n <= 0 || (size_t)n >= sizeof req_s ||
      buf_reserve(&w->ob, &w->obcap, (size_t)n) != 0) {
    ws_shutdown(w, "request too long");
    return;
  }
  memcpy(w->ob, req_s, (size_t)n);
  w->oblen = (size_t)n;
  w->phase = WS_HANDSHAKE;
  uv_tcp_nodelay(&w->tcp, 1);
  int rc = uv_read_start((uv_stream_t *)&w->tcp, ws_alloc_cb, ws_read_cb);
  if (rc < 0) {
    snprintf(w->why, sizeof w->why, "read: %s", uv_strerror(rc));
    ws_shutdown(w, w->why);
    return;
  }
  ws_flush_w(w);
}

static int ws_connect(lg_t *lg, lg_conn_t *c) {
  ws_t *w = calloc(1, sizeof *w);
  if (!w) return UV_ENOMEM;
  w->c = c;
  w->rng = lg_now_ns() ^ ((uint64_t)c->idx << 32) ^ 0x9e3779b97f4a7c15ull;
  int rc = uv_tcp_init(lg_loop(lg), &w->tcp);
  if (rc < 0) { free(w); return rc; }
  w->tcp.data = w;
  w->creq.data = w;
  c->tp = w;
  const struct sockaddr *src = lg_bind_addr(lg, c);
  if (src && (rc = uv_tcp_bind(&w->tcp, src, 0)) < 0) {
    snprintf(w->why, sizeof w->why, "bind: %s", uv_strerror(rc));
    ws_shutdown(w, w->why);
    return 0; /* reported through lg_conn_closed */
  }
  rc = uv_tcp_connect(&w->creq, &w->tcp, (const struct sockaddr *)&c->url->addr, ws_connect_cb);
  if (rc < 0) {
    snprintf(w->why, sizeof w->why, "connect: %s", uv_strerror(rc));
    ws_shutdown(w, w->why);
  }
  return 0;
}

const lg_transport_t lg_ws_transport = {
  .scheme = "ws",
  .connect = ws_connect,
  .send = ws_send,
  .flush = ws_flush,
  .close = ws_close,
  .pending = ws_pending,
  .free = NULL,
};
