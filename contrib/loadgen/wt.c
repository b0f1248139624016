/* loadgen WebTransport transport (https:// URLs): a QUIC client on ngtcp2
 * 0.12 + GnuTLS, a minimal HTTP/3 layer of our own (control stream with
 * SETTINGS, one extended CONNECT on client bidi stream 0) and nghttp3's
 * QPACK encoder/decoder for the header blocks, as in draft-02 WebTransport
 * (see docs/WEBTRANSPORT.md).  Each packet goes out on a new client
 * unidirectional stream (0x54, session id, bytes, FIN), as browsers do;
 * packets come in on server unidirectional streams or as datagrams.
 *
 * The server certificate is not verified: this is a benchmark client for
 * loopback, and the development certificate is self-signed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <nghttp3/nghttp3.h>
#include "lg.h"
#include "../../plugins/webtransport/udp_recv.h"
#include "../../plugins/webtransport/udp_send.h"

#define WT_PRIORITY                                                                          \
  "%DISABLE_TLS13_COMPAT_MODE:NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:"      \
  "+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-CCM:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:" \
  "+GROUP-SECP384R1:+GROUP-SECP521R1"
#define WT_MAX_PKTS_PER_FLUSH 512
#define WT_MAX_MSG (16u << 20)
#define WT_MAX_PKTLEN 1500
#define WT_ACK_MIN_MS 1            /* an ACK-only answer waits this long */
#define WT_MAX_STREAMS_UNI 1000   /* server streams open at once */
#define WT_UNI_CREDIT_BATCH 100   /* stream credit handed back at a time */
/* UDP GSO runs (udp_send.h, shared with the server plugin). */
#define WT_GSO_MAX_SEGS VCG_UDP_GSO_MAX_SEGS
#define WT_GSO_MAX_BYTES VCG_UDP_GSO_MAX_BYTES

/* One stream we send on (the control stream, the CONNECT stream or a
 * packet's uni stream).  ngtcp2 does not copy stream data: buf lives until
 * every byte is acknowledged or the stream closes. */
typedef struct wt_out {
  struct wt_out *next; /* in the pending (unsent bytes) list */
  struct wt_out *aprev, *anext; /* in the list of all our streams */
  int64_t id;
  uint8_t *buf;        /* owned */
  size_t len, sent, acked;
  int fin;             /* send FIN after the last byte */
  int queued;          /* in the pending list */
  int is_packet;       /* counts against the output budget */
} wt_out_t;

/* One stream we receive on. */
typedef struct wt_in {
  struct wt_in *iprev, *inext; /* in the list of all of them (w->ins) */
  uint8_t *buf; /* owned */
  size_t len, cap;
  int kind;     /* 0 unknown yet, 1 WT data, 2 ignored (control, QPACK) */
} wt_in_t;

/* The packets of one flush, sent with one sendmsg: every one but the last
 * is segsize bytes (UDP GSO cuts the buffer at that size). */
typedef struct {
  uint8_t buf[WT_GSO_MAX_BYTES];
  size_t len, segsize, nsegs;
  int closed; /* a shorter packet ended the run */
} wt_run_t;

typedef struct {
  lg_conn_t *c;
  uv_poll_t poll;    /* readable: our own recvmmsg (GRO needs the cmsg) */
  int sock;          /* the connected socket (owned), closed last */
  int fd;            /* sock while open for sending, -1 once closing */
  int gso;           /* UDP_SEGMENT works on it */
  uv_timer_t timer;
  uint64_t timer_due;  /* loop time (ms) the timer was set for */
  int nclosing;      /* handles whose close callback is pending */
  int closing;
  int opened;        /* CONNECT answered 2xx */
  char why[96];
  ngtcp2_conn *conn;
  ngtcp2_crypto_conn_ref ref;
  gnutls_session_t tls;
  gnutls_certificate_credentials_t cred;
  ngtcp2_path_storage ps;
  nghttp3_qpack_decoder *qdec;
  nghttp3_qpack_stream_context *qsctx;
  wt_out_t *pend_head, *pend_tail;
  wt_out_t *all;       /* every wt_out_t still known to ngtcp2, owned */
  wt_in_t *ins;        /* every wt_in_t of an unfinished stream, owned */
  uint8_t **waiting;   /* packets waiting for stream credit (FIFO) */
  size_t *waiting_len;
  size_t nwait, capwait, headwait;
  size_t out_bytes;    /* packet bytes not yet acknowledged or waiting */
  uint8_t resp[4096];  /* CONNECT stream bytes (response HEADERS, capsules) */
  size_t resplen;
  int64_t session_id;  /* the CONNECT stream id */
  uint64_t uni_credit; /* finished server streams not yet credited back */
  uint64_t rng;
} wt_t;

static void wt_flush_w(wt_t *w);

static uint64_t wt_rand64(wt_t *w) {
  w->rng ^= w->rng >> 12;
  w->rng ^= w->rng << 25;
  w->rng ^= w->rng >> 27;
  return w->rng * 0x2545f4914f6cdd1dull;
}

static size_t put_varint(uint8_t *b, uint64_t v) {
  if (v < 64) { b[0] = (uint8_t)v; return 1; }
  if (v < 16384) { b[0] = (uint8_t)(0x40 | v >> 8); b[1] = (uint8_t)v; return 2; }
  if (v < 1073741824) {
    b[0] = (uint8_t)(0x80 | v >> 24); b[1] = (uint8_t)(v >> 16); b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
    return 4;
  }
  b[0] = (uint8_t)(0xc0 | v >> 56);
  for (int i = 1; i < 8; i++) b[i] = (uint8_t)(v >> (56 - 8 * i));
  return 8;
}

/* Returns bytes used, 0 when incomplete. */
static size_t get_varint(const uint8_t *b, size_t len, uint64_t *v) {
  if (len == 0) return 0;
  size_t n = (size_t)1 << (b[0] >> 6);
  if (len < n) return 0;
  uint64_t x = b[0] & 0x3f;
  for (size_t i = 1; i < n; i++) x = x << 8 | b[i];
  *v = x;
  return n;
}

/* ------------------------------------------------------------ teardown */

static void wt_in_free(wt_t *w, wt_in_t *in) {
  if (in->iprev) in->iprev->inext = in->inext;
  else w->ins = in->inext;
  if (in->inext) in->inext->iprev = in->iprev;
  free(in->buf);
  free(in);
}

static void wt_handle_closed(uv_handle_t *h) {
  wt_t *w = h->data;
  if (--w->nclosing > 0) return;
  lg_conn_t *c = w->c;
  /* ngtcp2_conn_del does not call stream_close: free what is left here
   * (the server's control stream never ends, for one). */
  while (w->ins) wt_in_free(w, w->ins);
  for (wt_out_t *o = w->all; o;) {
    wt_out_t *nx = o->anext;
    free(o->buf);
    free(o);
    o = nx;
  }
  for (size_t i = 0; i < w->nwait; i++) free(w->waiting[(w->headwait + i) % w->capwait]);
  free(w->waiting);
  free(w->waiting_len);
  if (w->qsctx) nghttp3_qpack_stream_context_del(w->qsctx);
  if (w->qdec) nghttp3_qpack_decoder_del(w->qdec);
  if (w->conn) ngtcp2_conn_del(w->conn);
  if (w->tls) gnutls_deinit(w->tls);
  if (w->cred) gnutls_certificate_free_credentials(w->cred);
  if (w->sock >= 0) close(w->sock);
  c->tp = NULL;
  lg_conn_closed(c, w->why[0] ? w->why : "closed");
  free(w);
}

static void wt_shutdown(wt_t *w, const char *why) {
  if (w->closing) return;
  w->closing = 1;
  if (why != w->why && !w->why[0]) snprintf(w->why, sizeof w->why, "%s", why);
  w->nclosing = 2;
  w->fd = -1; /* nothing more is sent; the socket is closed with w */
  uv_timer_stop(&w->timer);
  uv_poll_stop(&w->poll);
  uv_close((uv_handle_t *)&w->timer, wt_handle_closed);
  uv_close((uv_handle_t *)&w->poll, wt_handle_closed);
}

/* ------------------------------------------------------------ sending */

static void pend_push(wt_t *w, wt_out_t *o) {
  if (o->queued) return;
  o->queued = 1;
  o->next = NULL;
  if (w->pend_tail) w->pend_tail->next = o; else w->pend_head = o;
  w->pend_tail = o;
}

static void pend_pop(wt_t *w) {
  wt_out_t *o = w->pend_head;
  w->pend_head = o->next;
  if (!w->pend_head) w->pend_tail = NULL;
  o->queued = 0;
  o->next = NULL;
}

/* Open a stream for buf (taken over on success; still the caller's on
 * error, UV_EAGAIN meaning no stream credit yet). */
static int wt_open_stream(wt_t *w, int bidi, uint8_t *buf, size_t len, int fin, int is_packet) {
  wt_out_t *o = calloc(1, sizeof *o);
  if (!o) return UV_ENOMEM;
  int rc = bidi ? ngtcp2_conn_open_bidi_stream(w->conn, &o->id, o)
                : ngtcp2_conn_open_uni_stream(w->conn, &o->id, o);
  if (rc != 0) {
    free(o);
    return rc == NGTCP2_ERR_STREAM_ID_BLOCKED ? UV_EAGAIN : UV_EPROTO;
  }
  o->buf = buf;
  o->len = len;
  o->fin = fin;
  o->is_packet = is_packet;
  o->anext = w->all;
  if (w->all) w->all->aprev = o;
  w->all = o;
  pend_push(w, o);
  return 0;
}

/* Packets waiting for stream credit, oldest first. */
static int wait_push(wt_t *w, uint8_t *buf, size_t len) {
  if (w->nwait == w->capwait) {
    size_t nc = w->capwait ? w->capwait * 2 : 64;
    uint8_t **nb = malloc(nc * sizeof *nb);
    size_t *nl = malloc(nc * sizeof *nl);
    if (!nb || !nl) { free(nb); free(nl); return UV_ENOMEM; }
    for (size_t i = 0; i < w->nwait; i++) {
      nb[i] = w->waiting[(w->headwait + i) % w->capwait];
      nl[i] = w->waiting_len[(w->headwait + i) % w->capwait];
    }
    free(w->waiting);
    free(w->waiting_len);
    w->waiting = nb;
    w->waiting_len = nl;
    w->capwait = nc;
    w->headwait = 0;
  }
  size_t at = (w->headwait + w->nwait) % w->capwait;
  w->waiting[at] = buf;
  w->waiting_len[at] = len;
  w->nwait++;
  return 0;
}

static void wait_drain(wt_t *w) {
  while (w->nwait > 0) {
    uint8_t *b = w->waiting[w->headwait];
    size_t l = w->waiting_len[w->headwait];
    int rc = wt_open_stream(w, 0, b, l, 1, 1);
    if (rc == UV_EAGAIN) return;
    w->headwait = (w->headwait + 1) % w->capwait;
    w->nwait--;
    if (rc != 0) {
      free(b);
      w->out_bytes -= l;
      wt_shutdown(w, "cannot open a stream");
      return;
    }
  }
}

/* Send buf as segsize datagrams (the last may be shorter) to the peer. */
static void wt_send_segs(wt_t *w, const uint8_t *buf, size_t len, size_t segsize) {
  if (len == 0 || w->fd < 0) return;
  if (w->gso && len > segsize) {
    int rc = vcg__udp_send_gso(w->fd, NULL, 0, buf, len, segsize);
    /* Sent, or refused as a lone datagram would be (full buffer...). */
    if (rc == 0 || !vcg__udp_gso_unsupported(rc))
      return;
    w->gso = 0; /* the kernel or the device cannot: never again here */
  }
  /* What a full socket buffer refuses is lost; QUIC recovers. */
  (void)vcg__udp_send_each(w->fd, NULL, 0, buf, len, segsize);
}

static void wt_send_pkt(wt_t *w, const uint8_t *pkt, size_t len) {
  wt_send_segs(w, pkt, len, len);
}

static void run_flush(wt_t *w, wt_run_t *r) {
  wt_send_segs(w, r->buf, r->len, r->segsize);
  r->len = r->segsize = r->nsegs = 0;
  r->closed = 0;
}

/* Where the next packet goes: the end of the run, sent first if a packet
 * of maxudp bytes would not fit. */
static uint8_t *run_room(wt_t *w, wt_run_t *r, size_t maxudp) {
  if (r->closed || r->nsegs >= WT_GSO_MAX_SEGS || sizeof r->buf - r->len < maxudp)
    run_flush(w, r);
  return r->buf + r->len;
}

/* The n bytes written at run_room() join the run, or start the next one
 * when longer than its segments (GSO: only the last may differ). */
static void run_add(wt_t *w, wt_run_t *r, size_t n) {
  if (r->nsegs > 0 && n > r->segsize) {
    size_t at = r->len;
    run_flush(w, r);
    memmove(r->buf, r->buf + at, n);
  }
  if (r->nsegs == 0) r->segsize = n;
  else if (n < r->segsize) r->closed = 1;
  r->len += n;
  r->nsegs++;
}

static void wt_arm_timer(wt_t *w);

static void wt_flush_w(wt_t *w) {
  if (w->closing || !w->conn) return;
  wt_run_t run; /* not initialised: 64 KiB written only where used */
  run.len = run.segsize = run.nsegs = 0;
  run.closed = 0;
  ngtcp2_pkt_info pi;
  uint64_t ts = lg_now_ns();
  size_t maxudp = ngtcp2_conn_get_path_max_tx_udp_payload_size(w->conn);
  if (maxudp > WT_MAX_PKTLEN) maxudp = WT_MAX_PKTLEN;
  for (int n = 0; n < WT_MAX_PKTS_PER_FLUSH;) {
    /* Stays put while ngtcp2 builds one packet over several calls. */
    uint8_t *pkt = run_room(w, &run, maxudp);
    wt_out_t *o = w->pend_head;
    ngtcp2_vec v = {0};
    ngtcp2_ssize ndatalen = -1;
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    int64_t sid = -1;
    size_t nv = 0;
    if (o) {
      v.base = o->buf + o->sent;
      v.len = o->len - o->sent;
      nv = 1;
      sid = o->id;
      if (o->fin) flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    }
    ngtcp2_ssize nw = ngtcp2_conn_writev_stream(w->conn, &w->ps.path, &pi, pkt, maxudp,
                                                &ndatalen, flags, sid, &v, nv, ts);
    if (o && ndatalen >= 0) {
      o->sent += (size_t)ndatalen;
      if (o->sent == o->len) pend_pop(w);
    }
    if (nw < 0) {
      if (nw == NGTCP2_ERR_WRITE_MORE) continue;
      if (nw == NGTCP2_ERR_STREAM_DATA_BLOCKED || nw == NGTCP2_ERR_STREAM_SHUT_WR) {
        /* Retry this stream when its window grows (extend_max_stream_data). */
        if (o && w->pend_head == o) pend_pop(w);
        continue;
      }
      run_flush(w, &run); /* before the socket closes */
      snprintf(w->why, sizeof w->why, "quic write: %s", ngtcp2_strerror((int)nw));
      wt_shutdown(w, w->why);
      return;
    }
    if (nw == 0) break;
    run_add(w, &run, (size_t)nw);
    n++;
  }
  run_flush(w, &run);
  ngtcp2_conn_update_pkt_tx_time(w->conn, ts);
  wt_arm_timer(w);
}

static void wt_timer_cb(uv_timer_t *t) {
  wt_t *w = t->data;
  int rc = ngtcp2_conn_handle_expiry(w->conn, lg_now_ns());
  if (rc != 0) {
    snprintf(w->why, sizeof w->why, "quic: %s", rc == NGTCP2_ERR_IDLE_CLOSE ? "idle timeout"
                                                                             : ngtcp2_strerror(rc));
    wt_shutdown(w, w->why);
    return;
  }
  wt_flush_w(w);
}

static void wt_arm_timer(wt_t *w) {
  ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(w->conn), now = lg_now_ns();
  if (exp == UINT64_MAX) { uv_timer_stop(&w->timer); return; }
  uint64_t ms = exp > now ? (exp - now + 999999) / 1000000 : 0;
  /* Unchanged deadline (most flushes): leave libuv's timer heap alone. */
  uint64_t due = uv_now(lg_loop(w->c->lg)) + ms;
  if (uv_is_active((uv_handle_t *)&w->timer) && w->timer_due == due) return;
  w->timer_due = due;
  uv_timer_start(&w->timer, wt_timer_cb, ms, 0);
}

/* ------------------------------------------------------------ HTTP/3 */

static int wt_start_h3(wt_t *w) {
  /* Control stream: type 0x00, SETTINGS with QPACK off, H3 datagrams and
   * WebTransport draft-02, the settings a browser sends. */
  uint8_t s[64], f[48];
  size_t fl = 0, sl = 0;
  const uint64_t settings[][2] = {{0x01, 0}, {0x07, 0}, {0x33, 1}, {0xffd277, 1}, {0x2b603742, 1}};
  for (size_t i = 0; i < sizeof settings / sizeof *settings; i++) {
    fl += put_varint(f + fl, settings[i][0]);
    fl += put_varint(f + fl, settings[i][1]);
  }
  sl += put_varint(s + sl, 0x00);
  sl += put_varint(s + sl, 0x04);
  sl += put_varint(s + sl, fl);
  memcpy(s + sl, f, fl);
  sl += fl;
  uint8_t *cb = malloc(sl);
  if (!cb) return UV_ENOMEM;
  memcpy(cb, s, sl);
  int rc = wt_open_stream(w, 0, cb, sl, 0, 0);
  if (rc != 0) { free(cb); return rc; }

  /* Extended CONNECT on the first client bidi stream (the session id). */
  lg_conn_t *c = w->c;
  char authority[300], path[512];
  snprintf(authority, sizeof authority, "%s:%s", c->url->host, c->url->port);
  snprintf(path, sizeof path, "%s%s", c->url->prefix, c->path);
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP3_NV_FLAG_NONE}
  nghttp3_nv nva[] = {
    NV(":method", "CONNECT"), NV(":scheme", "https"), NV(":authority", authority),
    NV(":path", path), NV(":protocol", "webtransport"),
    NV("sec-webtransport-http3-draft02", "1"), NV("origin", "http://loadgen.invalid"),
  };
#undef NV
  nghttp3_qpack_encoder *enc = NULL;
  const nghttp3_mem *mem = nghttp3_mem_default();
  nghttp3_buf pb, rb, eb;
  nghttp3_buf_init(&pb);
  nghttp3_buf_init(&rb);
  nghttp3_buf_init(&eb);
  if (nghttp3_qpack_encoder_new(&enc, 0, mem) != 0) return UV_ENOMEM;
  rc = nghttp3_qpack_encoder_encode(enc, &pb, &rb, &eb, 0, nva, sizeof nva / sizeof *nva);
  size_t plen = (size_t)(pb.last - pb.pos), rlen = (size_t)(rb.last - rb.pos);
  uint8_t *hb = rc == 0 ? malloc(16 + plen + rlen) : NULL;
  size_t hl = 0;
  if (hb) {
    hl += put_varint(hb + hl, 0x01);
    hl += put_varint(hb + hl, plen + rlen);
    memcpy(hb + hl, pb.pos, plen);
    hl += plen;
    memcpy(hb + hl, rb.pos, rlen);
    hl += rlen;
  }
  nghttp3_buf_free(&pb, mem);
  nghttp3_buf_free(&rb, mem);
  nghttp3_buf_free(&eb, mem);
  nghttp3_qpack_encoder_del(enc);
  if (!hb) return UV_ENOMEM;
  rc = wt_open_stream(w, 1, hb, hl, 0, 0);
  if (rc != 0) { free(hb); return rc; }
  wt_out_t *o = w->pend_tail;
  w->session_id = o->id;
  if (nghttp3_qpack_decoder_new(&w->qdec, 0, 0, mem) != 0 ||
      nghttp3_qpack_stream_context_new(&w->qsctx, w->session_id, mem) != 0)
    return UV_ENOMEM;
  return 0;
}

/* Bytes on the CONNECT stream: the response HEADERS, then DATA frames
 * with capsules (a CLOSE_WEBTRANSPORT_SESSION ends the session). */
static void wt_connect_stream_in(wt_t *w, const uint8_t *d, size_t n, int fin) {
  if (w->resplen + n > sizeof w->resp) { wt_shutdown(w, "CONNECT stream: too many bytes"); return; }
  memcpy(w->resp + w->resplen, d, n);
  w->resplen += n;
  size_t off = 0;
  for (;;) {
    uint64_t type, len;
    size_t a = get_varint(w->resp + off, w->resplen - off, &type), b;
    if (!a) break;
    b = get_varint(w->resp + off + a, w->resplen - off - a, &len);
    if (!b || len > w->resplen - off - a - b) break;
    const uint8_t *p = w->resp + off + a + b;
    if (type == 0x01 && !w->opened) {
      nghttp3_qpack_nv nv;
      uint8_t flags = 0;
      int status = 0;
      const uint8_t *q = p;
      size_t left = (size_t)len;
      while (left > 0 || !(flags & NGHTTP3_QPACK_DECODE_FLAG_FINAL)) {
        nghttp3_ssize r = nghttp3_qpack_decoder_read_request(w->qdec, w->qsctx, &nv, &flags, q,
                                                             left, 1);
        if (r < 0) { wt_shutdown(w, "CONNECT response: bad QPACK"); return; }
        q += r;
        left -= (size_t)r;
        if (flags & NGHTTP3_QPACK_DECODE_FLAG_EMIT) {
          nghttp3_vec nm = nghttp3_rcbuf_get_buf(nv.name), vl = nghttp3_rcbuf_get_buf(nv.value);
          if (nm.len == 7 && memcmp(nm.base, ":status", 7) == 0 && vl.len == 3)
            status = (vl.base[0] - '0') * 100 + (vl.base[1] - '0') * 10 + (vl.base[2] - '0');
          nghttp3_rcbuf_decref(nv.name);
          nghttp3_rcbuf_decref(nv.value);
        }
        if (flags & NGHTTP3_QPACK_DECODE_FLAG_FINAL) break;
        if (r == 0 && left == 0) break;
      }
      if (status < 200 || status > 299) {
        snprintf(w->why, sizeof w->why, "handshake: HTTP %d", status);
        wt_shutdown(w, w->why);
        return;
      }
      w->opened = 1;
      lg_conn_opened(w->c);
      if (w->closing) return;
    } else if (type == 0x00 && len >= 2) {
      uint64_t ct;
      size_t k = get_varint(p, (size_t)len, &ct);
      if (k && ct == 0x2843) {
        snprintf(w->why, sizeof w->why, "server closed the session");
        wt_shutdown(w, w->why);
        return;
      }
    }
    off += a + b + (size_t)len;
  }
  memmove(w->resp, w->resp + off, w->resplen - off);
  w->resplen -= off;
  if (fin) wt_shutdown(w, w->opened ? "server ended the session" : "handshake: stream ended");
}

/* ------------------------------------------------------------ callbacks */

static ngtcp2_conn *wt_get_conn(ngtcp2_crypto_conn_ref *ref) {
  wt_t *w = ref->user_data;
  return w->conn;
}

static void wt_rand_cb(uint8_t *dest, size_t destlen, const ngtcp2_rand_ctx *rctx) {
  (void)gnutls_rnd(GNUTLS_RND_RANDOM, dest, destlen);
}

static int wt_new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen,
                         void *ud) {
  if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen) != 0 ||
      gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  cid->datalen = cidlen;
  return 0;
}

static int wt_handshake_completed_cb(ngtcp2_conn *conn, void *ud) {
  wt_t *w = ud;
  return wt_start_h3(w) == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

static int wt_recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t id,
                                  uint64_t offset, const uint8_t *data, size_t len, void *ud,
                                  void *sud) {
  wt_t *w = ud;
  int fin = (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0;
  ngtcp2_conn_extend_max_stream_offset(conn, id, len);
  ngtcp2_conn_extend_max_offset(conn, len);
  if (id == w->session_id) {
    wt_connect_stream_in(w, data, len, fin);
    return 0;
  }
  if (!(id & 0x2)) return 0; /* other bidi streams: not used by the relay */
  wt_in_t *in = sud;
  if (!in) {
    in = calloc(1, sizeof *in);
    if (!in) return NGTCP2_ERR_CALLBACK_FAILURE;
    in->inext = w->ins;
    if (w->ins) w->ins->iprev = in;
    w->ins = in;
    ngtcp2_conn_set_stream_user_data(conn, id, in);
  }
  if (in->kind == 2) return 0;
  if (in->len + len > WT_MAX_MSG) { wt_shutdown(w, "message too large"); return 0; }
  if (in->len + len > in->cap) {
    size_t nc = in->cap ? in->cap : 2048;
    while (nc < in->len + len) nc *= 2;
    uint8_t *nb = realloc(in->buf, nc);
    if (!nb) return NGTCP2_ERR_CALLBACK_FAILURE;
    in->buf = nb;
    in->cap = nc;
  }
  memcpy(in->buf + in->len, data, len);
  in->len += len;
  if (in->kind == 0) {
    uint64_t type, sid;
    size_t a = get_varint(in->buf, in->len, &type);
    if (!a) return 0;
    if (type != 0x54) {
      in->kind = 2; /* control / QPACK streams: nothing we need */
      free(in->buf);
      in->buf = NULL;
      in->len = in->cap = 0;
      return 0;
    }
    size_t b = get_varint(in->buf + a, in->len - a, &sid);
    if (!b) return 0;
    in->kind = 1;
    memmove(in->buf, in->buf + a + b, in->len - a - b);
    in->len -= a + b;
  }
  if (fin) {
    if (in->kind == 1) lg_conn_message(w->c, in->buf, in->len);
    /* The stream is done.  ngtcp2 0.12 neither retires peer-initiated uni
     * streams nor returns their credit (fixed in 0.14), so give the credit
     * back here, and free our state now rather than at stream_close. */
    wt_in_free(w, in);
    ngtcp2_conn_set_stream_user_data(conn, id, NULL);
    /* In batches: ngtcp2 sends MAX_STREAMS as soon as any credit is
     * pending, so one stream at a time made every flush send an
     * ack-eliciting packet (and the server acknowledge it).  A tenth of
     * the 1000-stream window keeps the server far from blocking. */
    if (++w->uni_credit >= WT_UNI_CREDIT_BATCH) {
      ngtcp2_conn_extend_max_streams_uni(conn, w->uni_credit);
      w->uni_credit = 0;
    }
  }
  return 0;
}

static int wt_acked_cb(ngtcp2_conn *conn, int64_t id, uint64_t offset, uint64_t datalen,
                       void *ud, void *sud) {
  wt_t *w = ud;
  wt_out_t *o = sud;
  if (!o || (id & 0x1) == 1) return 0; /* server-initiated: not ours to free */
  o->acked += datalen;
  if (o->acked >= o->len && o->is_packet && o->buf) {
    w->out_bytes -= o->len;
    free(o->buf);
    o->buf = NULL;
  }
  return 0;
}

static int wt_stream_close_cb(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t code,
                              void *ud, void *sud) {
  wt_t *w = ud;
  if (id & 0x1) {
    /* Server-initiated: state left only if the stream was cut before FIN
     * (credit for finished streams was returned at FIN). */
    wt_in_t *in = sud;
    if (in) wt_in_free(w, in);
    return 0;
  }
  wt_out_t *o = sud;
  if (!o) return 0;
  if (o->queued) {
    /* Unlink from the pending list. */
    wt_out_t **pp = &w->pend_head, *prev = NULL;
    while (*pp && *pp != o) { prev = *pp; pp = &(*pp)->next; }
    if (*pp) {
      *pp = o->next;
      if (w->pend_tail == o) w->pend_tail = prev;
    }
  }
  if (o->buf) {
    if (o->is_packet) w->out_bytes -= o->len;
    free(o->buf);
  }
  if (o->aprev) o->aprev->anext = o->anext; else w->all = o->anext;
  if (o->anext) o->anext->aprev = o->aprev;
  free(o);
  return 0;
}

static int wt_extend_uni_cb(ngtcp2_conn *conn, uint64_t max, void *ud) {
  wait_drain(ud);
  return 0;
}

static int wt_extend_stream_data_cb(ngtcp2_conn *conn, int64_t id, uint64_t max, void *ud,
                                    void *sud) {
  wt_out_t *o = sud;
  if (o && !(id & 0x1) && o->sent < o->len) pend_push(ud, o);
  return 0;
}

static int wt_recv_datagram_cb(ngtcp2_conn *conn, uint32_t flags, const uint8_t *data,
                               size_t len, void *ud) {
  wt_t *w = ud;
  uint64_t q;
  size_t a = get_varint(data, len, &q);
  if (a) lg_conn_message(w->c, data + a, len - a);
  return 0;
}

/* ------------------------------------------------------------ socket */

/* After reading: answer at once while the handshake runs or when we have
 * stream data waiting; otherwise what is due is only an acknowledgement,
 * which waits for the timer, at least WT_ACK_MIN_MS.  On loopback ngtcp2's
 * ACK delay (a fraction of a microsecond-scale RTT) meant one ACK-only
 * datagram per datagram received, something a client on a real network
 * does not send (Chromium waits a quarter of the RTT, up to 10 packets). */
static void wt_rx_done(wt_t *w) {
  if (!ngtcp2_conn_get_handshake_completed(w->conn) || w->pend_head) {
    wt_flush_w(w);
    return;
  }
  ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(w->conn), now = lg_now_ns();
  if (exp == UINT64_MAX) return;
  uint64_t ms = exp > now ? (exp - now + 999999) / 1000000 : 0;
  if (ms < WT_ACK_MIN_MS) ms = WT_ACK_MIN_MS;
  uint64_t due = uv_now(lg_loop(w->c->lg)) + ms;
  /* An earlier deadline already set stays. */
  if (uv_is_active((uv_handle_t *)&w->timer) && w->timer_due <= due) return;
  w->timer_due = due;
  uv_timer_start(&w->timer, wt_timer_cb, ms, 0);
}

/* One datagram (or GRO segment) for the connection: 0, or -1 once it
 * failed (shut down). */
static int wt_read_one(wt_t *w, const uint8_t *p, size_t n) {
  ngtcp2_pkt_info pi = {0};
  int rc = ngtcp2_conn_read_pkt(w->conn, &w->ps.path, &pi, p, n, lg_now_ns());
  if (rc == 0) return 0;
  if (!w->why[0]) {
    uint8_t alert = ngtcp2_conn_get_tls_alert(w->conn);
    if (alert) snprintf(w->why, sizeof w->why, "quic: TLS alert %u", alert);
    else snprintf(w->why, sizeof w->why, "quic: %s", ngtcp2_strerror(rc));
  }
  wt_shutdown(w, w->why);
  return -1;
}

/* The socket is readable: recvmmsg batches (UDP GRO: a run of the
 * server's datagrams arrives as one buffer and one queue entry, as it
 * would at a client with GRO on a real network; on loopback the kernel
 * otherwise splits every run again and charges that to the sending CPU,
 * the server's), a few per wakeup so one busy connection cannot hold the
 * loop, and the answer (ACKs, more data) once per wakeup.  loadgen is
 * single-threaded: one batch header serves every connection. */
static void wt_poll_cb(uv_poll_t *p, int status, int events) {
  static vcg__udp_rx_t rx;
  wt_t *w = p->data;
  (void)events;
  if (w->closing) return;
  if (status < 0) {
    snprintf(w->why, sizeof w->why, "udp poll: %s", uv_strerror(status));
    wt_shutdown(w, w->why);
    return;
  }
  uv_buf_t rb = lg_readbuf(w->c->lg);
  unsigned slots = (unsigned)(rb.len / VCG_UDP_RX_SLOT);
  if (slots > VCG_UDP_RX_MAX) slots = VCG_UDP_RX_MAX;
  int got = 0;
  for (int round = 0; round < 4; round++) {
    int r = vcg__udp_recv(w->sock, &rx, (uint8_t *)rb.base, VCG_UDP_RX_SLOT, slots);
    if (r <= 0) break; /* drained, or an error ICMP put there: QUIC times out */
    for (int i = 0; i < r; i++) {
      const uint8_t *d = (const uint8_t *)rb.base + (size_t)i * VCG_UDP_RX_SLOT;
      size_t len = rx.len[i], seg = rx.segsize[i];
      for (size_t off = 0; off < len; off += seg)
        if (wt_read_one(w, d + off, len - off < seg ? len - off : seg) != 0) return;
    }
    got = 1;
    if ((unsigned)r < slots) break;
  }
  if (got) wt_rx_done(w);
}

static int wt_connect(lg_t *lg, lg_conn_t *c) {
  wt_t *w = calloc(1, sizeof *w);
  if (!w) return UV_ENOMEM;
  w->c = c;
  w->session_id = -1;
  w->rng = lg_now_ns() ^ ((uint64_t)c->idx << 32);
  w->fd = -1;
  /* Our own socket and a poll handle on it (not uv_udp_t): the receive
   * path needs recvmmsg's control messages (wt_poll_cb). */
  w->sock = socket(c->url->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (w->sock < 0) {
    int e = -errno;
    free(w);
    return e;
  }
  int rc = uv_poll_init_socket(lg_loop(lg), &w->poll, w->sock);
  if (rc < 0) {
    close(w->sock);
    free(w);
    return rc;
  }
  uv_timer_init(lg_loop(lg), &w->timer);
  w->poll.data = w->timer.data = w;
  c->tp = w;
  const struct sockaddr *src = lg_bind_addr(lg, c);
  struct sockaddr_storage local;
  socklen_t ll = sizeof local;
  const char *step = "udp bind";
  if (src && bind(w->sock, src, sizeof(struct sockaddr_in)) != 0) rc = -errno;
  if (rc >= 0) {
    step = "udp connect";
    if (connect(w->sock, (const struct sockaddr *)&c->url->addr, c->url->addrlen) != 0) rc = -errno;
  }
  if (rc >= 0) {
    step = "udp getsockname";
    if (getsockname(w->sock, (struct sockaddr *)&local, &ll) != 0) rc = -errno;
  }
  if (rc >= 0) {
    w->fd = w->sock;
    w->gso = vcg__udp_gso_probe(w->fd);
    vcg__udp_gro_enable(w->fd);
  }
  if (rc >= 0) { step = "udp poll"; rc = uv_poll_start(&w->poll, UV_READABLE, wt_poll_cb); }
  if (rc < 0) {
    snprintf(w->why, sizeof w->why, "%s: %s", step, uv_strerror(rc));
    wt_shutdown(w, w->why);
    return 0;
  }
  ngtcp2_path_storage_init(&w->ps, (const ngtcp2_sockaddr *)&local, (ngtcp2_socklen)ll,
                           (const ngtcp2_sockaddr *)&c->url->addr, c->url->addrlen, NULL);
  ngtcp2_cid dcid, scid;
  dcid.datalen = 16;
  scid.datalen = 8;
  for (size_t i = 0; i < 16; i++) dcid.data[i] = (uint8_t)wt_rand64(w);
  for (size_t i = 0; i < 8; i++) scid.data[i] = (uint8_t)wt_rand64(w);
  ngtcp2_callbacks cb = {
    .client_initial = ngtcp2_crypto_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_retry = ngtcp2_crypto_recv_retry_cb,
    .update_key = ngtcp2_crypto_update_key_cb,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
    .rand = wt_rand_cb,
    .get_new_connection_id = wt_new_cid_cb,
    .handshake_completed = wt_handshake_completed_cb,
    .recv_stream_data = wt_recv_stream_data_cb,
    .acked_stream_data_offset = wt_acked_cb,
    .stream_close = wt_stream_close_cb,
    .extend_max_local_streams_uni = wt_extend_uni_cb,
    .extend_max_stream_data = wt_extend_stream_data_cb,
    .recv_datagram = wt_recv_datagram_cb,
  };
  ngtcp2_settings st;
  ngtcp2_settings_default(&st);
  st.initial_ts = lg_now_ns();
  st.max_window = 64u << 20;
  st.max_stream_window = 16u << 20;
  ngtcp2_transport_params tp;
  ngtcp2_transport_params_default(&tp);
  tp.initial_max_stream_data_bidi_local = 1u << 20;
  tp.initial_max_stream_data_bidi_remote = 1u << 20;
  tp.initial_max_stream_data_uni = 1u << 20;
  tp.initial_max_data = 16u << 20;
  tp.initial_max_streams_bidi = 16;
  tp.initial_max_streams_uni = WT_MAX_STREAMS_UNI;
  tp.max_idle_timeout = 30ull * 1000000000ull;
  tp.max_datagram_frame_size = 65535;
  rc = ngtcp2_conn_client_new(&w->conn, &dcid, &scid, &w->ps.path, NGTCP2_PROTO_VER_V1, &cb, &st,
                              &tp, NULL, w);
  if (rc != 0) {
    w->conn = NULL;
    snprintf(w->why, sizeof w->why, "quic: %s", ngtcp2_strerror(rc));
    wt_shutdown(w, w->why);
    return 0;
  }
  const gnutls_datum_t alpn = {(unsigned char *)"h3", 2};
  w->ref.get_conn = wt_get_conn;
  w->ref.user_data = w;
  if (gnutls_certificate_allocate_credentials(&w->cred) != 0 ||
      gnutls_init(&w->tls, GNUTLS_CLIENT | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA) != 0 ||
      ngtcp2_crypto_gnutls_configure_client_session(w->tls) != 0 ||
      gnutls_priority_set_direct(w->tls, WT_PRIORITY, NULL) != 0 ||
      gnutls_credentials_set(w->tls, GNUTLS_CRD_CERTIFICATE, w->cred) != 0 ||
      gnutls_alpn_set_protocols(w->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY) != 0) {
    snprintf(w->why, sizeof w->why, "tls setup failed");
    wt_shutdown(w, w->why);
    return 0;
  }
  gnutls_session_set_ptr(w->tls, &w->ref);
  ngtcp2_conn_set_tls_native_handle(w->conn, w->tls);
  /* Idle connections (the connections scenario) must outlive the 30 s
   * idle timeout: PING every 10 s. */
  ngtcp2_conn_set_keep_alive_timeout(w->conn, 10ull * 1000000000ull);
  wt_flush_w(w);
  return 0;
}

static int wt_send(lg_conn_t *c, const uint8_t *msg, size_t len) {
  wt_t *w = c->tp;
  if (!w || !w->opened || w->closing) return UV_ENOTCONN;
  if (w->out_bytes + len > lg_max_out(c->lg)) return UV_ENOBUFS;
  uint8_t *b = malloc(len + 10);
  if (!b) return UV_ENOBUFS;
  size_t h = put_varint(b, 0x54);
  h += put_varint(b + h, (uint64_t)w->session_id);
  memcpy(b + h, msg, len);
  /* Packets keep their order: once one waits for stream credit, later
   * ones wait behind it. */
  int rc = w->nwait > 0 ? UV_EAGAIN : wt_open_stream(w, 0, b, h + len, 1, 1);
  if (rc == UV_EAGAIN) rc = wait_push(w, b, h + len);
  if (rc != 0) {
    free(b);
    return UV_ENOBUFS;
  }
  w->out_bytes += h + len;
  return 0;
}

static void wt_flush(lg_conn_t *c) {
  if (c->tp) wt_flush_w(c->tp);
}

static size_t wt_pending(lg_conn_t *c) {
  wt_t *w = c->tp;
  return w ? w->out_bytes : 0;
}

static void wt_close(lg_conn_t *c) {
  wt_t *w = c->tp;
  if (!w || w->closing) return;
  if (w->conn && ngtcp2_conn_get_handshake_completed(w->conn)) {
    uint8_t pkt[1500];
    ngtcp2_connection_close_error ce;
    ngtcp2_connection_close_error_default(&ce);
    ngtcp2_connection_close_error_set_application_error(&ce, 0x100 /* H3_NO_ERROR */, NULL, 0);
    ngtcp2_pkt_info pi;
    ngtcp2_ssize n = ngtcp2_conn_write_connection_close(w->conn, &w->ps.path, &pi, pkt, sizeof pkt,
                                                         &ce, lg_now_ns());
    if (n > 0) wt_send_pkt(w, pkt, (size_t)n);
  }
  wt_shutdown(w, "closed by loadgen");
}

const lg_transport_t lg_wt_transport = {
  .scheme = "https",
  .connect = wt_connect,
  .send = wt_send,
  .flush = wt_flush,
  .close = wt_close,
  .pending = wt_pending,
  .free = NULL,
};
