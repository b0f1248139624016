/*
 * quic.c -- the QUIC endpoint of the WebTransport plugin: UDP sockets on
 * the worker's loop, demultiplexing by server connection ID, ngtcp2
 * connection lifecycle, the write loop, timers, stateless reset and
 * version negotiation.
 *
 * Output is batched: anything that may produce packets (a received
 * datagram, a packet from the host, a close) only marks the connection
 * dirty, and one uv_check pass per loop iteration runs the write loop of
 * each dirty connection.  This keeps all ngtcp2 write calls outside ngtcp2
 * callbacks and outside reentrant host calls, and coalesces many small
 * writes into full QUIC packets.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "wt_int.h"

static void conn_flush(wt_conn_t *c);
static void conn_free(wt_conn_t *c);
static void conn_handle_error(wt_conn_t *c, int rv);

uint64_t vcg__wt_now(void) { return uv_hrtime(); }

/* ------------------------------------------------------------ addresses */

int vcg__wt_parse_addr(const char *s, struct sockaddr_storage *ss,
                       socklen_t *len) {
  char host[64];
  const char *port;
  memset(ss, 0, sizeof(*ss));
  if (s[0] == '[') {
    const char *e = strchr(s, ']');
    if (!e || e[1] != ':' || (size_t)(e - s - 1) >= sizeof(host)) return VCG_EINVAL;
    memcpy(host, s + 1, (size_t)(e - s - 1));
    host[e - s - 1] = '\0';
    port = e + 2;
  } else {
    const char *c = strrchr(s, ':');
    if (!c || (size_t)(c - s) >= sizeof(host)) return VCG_EINVAL;
    memcpy(host, s, (size_t)(c - s));
    host[c - s] = '\0';
    port = c + 1;
  }
  char *end;
  long p = strtol(port, &end, 10);
  if (*port == '\0' || *end != '\0' || p < 0 || p > 65535) return VCG_EINVAL;
  struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)p);
    *len = sizeof(*a4);
    return 0;
  }
  if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)p);
    *len = sizeof(*a6);
    return 0;
  }
  return VCG_EINVAL;
}

const char *vcg__wt_addr_str(const struct sockaddr *sa, char *buf,
                             size_t len) {
  char ip[INET6_ADDRSTRLEN];
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
    snprintf(buf, len, "[%s]:%u", ip, ntohs(a->sin6_port));
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
    snprintf(buf, len, "%s:%u", ip, ntohs(a->sin_port));
  }
  return buf;
}

/* ------------------------------------------------------------ CID table */

static uint64_t cid_hash(const wt_cidtab_t *t, const uint8_t *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull ^ t->seed;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h ^ (h >> 29);
}

static int cidtab_init(wt_cidtab_t *t) {
  t->nb = 64;
  t->n = 0;
  t->b = calloc(t->nb, sizeof(*t->b));
  if (!t->b) return VCG_ENOMEM;
  gnutls_rnd(GNUTLS_RND_NONCE, &t->seed, sizeof(t->seed));
  return 0;
}

static void cidtab_free(wt_cidtab_t *t) {
  free(t->b);
  t->b = NULL;
  t->nb = t->n = 0;
}

static wt_cident_t **cid_slot(wt_cidtab_t *t, const uint8_t *p, size_t n) {
  wt_cident_t **pp = &t->b[cid_hash(t, p, n) & (t->nb - 1)];
  while (*pp && !((*pp)->cid.datalen == n && memcmp((*pp)->cid.data, p, n) == 0))
    pp = &(*pp)->next;
  return pp;
}

static wt_conn_t *cid_find(vcg_instance_t *inst, const uint8_t *p, size_t n) {
  if (n > NGTCP2_MAX_CIDLEN) return NULL;
  wt_cident_t *e = *cid_slot(&inst->cids, p, n);
  return e ? e->conn : NULL;
}

static void cidtab_grow(wt_cidtab_t *t) {
  size_t nb = t->nb * 2;
  wt_cident_t **b = calloc(nb, sizeof(*b));
  if (!b) return; /* keep the smaller table: slower, still correct */
  for (size_t i = 0; i < t->nb; i++) {
    wt_cident_t *e = t->b[i];
    while (e) {
      wt_cident_t *nx = e->next;
      size_t k = cid_hash(t, e->cid.data, e->cid.datalen) & (nb - 1);
      e->next = b[k];
      b[k] = e;
      e = nx;
    }
  }
  free(t->b);
  t->b = b;
  t->nb = nb;
}

static int cid_add(wt_conn_t *c, const ngtcp2_cid *cid) {
  wt_cidtab_t *t = &c->inst->cids;
  wt_cident_t **pp = cid_slot(t, cid->data, cid->datalen);
  if (*pp) return (*pp)->conn == c ? 0 : VCG_EEXIST;
  wt_cident_t *e = calloc(1, sizeof(*e));
  if (!e) return VCG_ENOMEM;
  e->cid = *cid;
  e->conn = c;
  *pp = e;
  e->cnext = c->cids;
  c->cids = e;
  if (++t->n > t->nb) cidtab_grow(t);
  return 0;
}

static void cid_del(wt_conn_t *c, const ngtcp2_cid *cid) {
  wt_cidtab_t *t = &c->inst->cids;
  wt_cident_t **pp = cid_slot(t, cid->data, cid->datalen);
  wt_cident_t *e = *pp;
  if (!e || e->conn != c) return;
  *pp = e->next;
  for (wt_cident_t **q = &c->cids; *q; q = &(*q)->cnext) {
    if (*q == e) {
      *q = e->cnext;
      break;
    }
  }
  t->n--;
  free(e);
}

static void cid_del_all(wt_conn_t *c) {
  while (c->cids) {
    ngtcp2_cid cid = c->cids->cid;
    cid_del(c, &cid);
  }
}

/* ------------------------------------------------------- output streams */

wt_ostream_t *vcg__wt_os_new(wt_conn_t *c, int64_t id) {
  wt_ostream_t *os = calloc(1, sizeof(*os));
  if (!os) return NULL;
  os->id = id;
  os->next = c->os_all;
  if (c->os_all) c->os_all->prev = os;
  c->os_all = os;
  return os;
}

int vcg__wt_os_append(wt_ostream_t *os, const uint8_t *p, size_t len) {
  wt_chunk_t *ch = malloc(sizeof(*ch) + len);
  if (!ch) return VCG_ENOMEM;
  ch->next = NULL;
  ch->len = len;
  memcpy(ch->data, p, len);
  if (os->ctail) {
    os->ctail->next = ch;
  } else {
    /* Every earlier chunk was acknowledged and freed (or there was none):
     * this one starts where the stream's bytes end now. */
    os->chead = ch;
    os->cbase = os->total;
  }
  os->ctail = ch;
  os->total += len;
  return 0;
}

void vcg__wt_oq_push(wt_conn_t *c, wt_ostream_t *os) {
  if (os->queued) return;
  os->queued = 1;
  os->onext = NULL;
  os->oprev = c->oq_tail;
  if (c->oq_tail) c->oq_tail->onext = os;
  else c->oq_head = os;
  c->oq_tail = os;
  if (os->id >= 0) c->oq_opened++;
}

void vcg__wt_oq_remove(wt_conn_t *c, wt_ostream_t *os) {
  if (!os->queued) return;
  if (os->oprev) os->oprev->onext = os->onext;
  else c->oq_head = os->onext;
  if (os->onext) os->onext->oprev = os->oprev;
  else c->oq_tail = os->oprev;
  os->queued = 0;
  os->oprev = os->onext = NULL;
  if (os->id >= 0) c->oq_opened--;
}

void vcg__wt_os_free(wt_conn_t *c, wt_ostream_t *os) {
  if (os->queued) vcg__wt_oq_remove(c, os);
  /* An item still counted in the session's queue leaves it unwritten. */
  if (os->counted) vcg__wt_item_written(c, os);
  if (os->prev) os->prev->next = os->next;
  else c->os_all = os->next;
  if (os->next) os->next->prev = os->prev;
  if (c->ctrl_os == os) c->ctrl_os = NULL;
  if (c->connect_os == os) c->connect_os = NULL;
  if (os->pkt) c->inst->host->packet_unref(os->pkt);
  wt_chunk_t *ch = os->chead;
  while (ch) {
    wt_chunk_t *nx = ch->next;
    free(ch);
    ch = nx;
  }
  free(os);
}

/* Free chunks the peer has acknowledged (control and CONNECT streams). */
static void os_acked(wt_ostream_t *os, uint64_t upto) {
  if (upto > os->acked) os->acked = upto;
  while (os->chead && os->cbase + os->chead->len <= os->acked) {
    wt_chunk_t *ch = os->chead;
    os->cbase += ch->len;
    os->chead = ch->next;
    if (!os->chead) os->ctail = NULL;
    free(ch);
  }
}

static int os_pending(const wt_ostream_t *os) {
  return os->sent < os->total || (os->fin && !os->fin_sent);
}

/* Vectors for the bytes from os->sent on. */
static size_t os_vecs(const wt_ostream_t *os, ngtcp2_vec *v, size_t max) {
  uint64_t off = os->sent;
  size_t n = 0;
  if (off < os->hdrlen && n < max) {
    v[n].base = (uint8_t *)(uintptr_t)(os->hdr + off);
    v[n].len = (size_t)(os->hdrlen - off);
    n++;
    off = os->hdrlen;
  }
  if (off < os->hdrlen + os->plen && n < max) {
    uint64_t o = off - os->hdrlen;
    v[n].base = (uint8_t *)(uintptr_t)(os->pdata + o);
    v[n].len = (size_t)(os->plen - o);
    n++;
    off = os->hdrlen + os->plen;
  }
  uint64_t coff = os->cbase;
  for (const wt_chunk_t *ch = os->chead; ch && n < max; ch = ch->next) {
    if (off < coff + ch->len) {
      v[n].base = (uint8_t *)(uintptr_t)(ch->data + (off - coff));
      v[n].len = (size_t)(coff + ch->len - off);
      n++;
      off = coff + ch->len;
    }
    coff += ch->len;
  }
  return n;
}

static void os_advance(wt_conn_t *c, wt_ostream_t *os, ngtcp2_ssize n,
                       int fin) {
  if (n > 0) os->sent += (uint64_t)n;
  if (fin && os->sent == os->total) os->fin_sent = 1;
  if (!os_pending(os)) {
    vcg__wt_oq_remove(c, os);
    if (os->counted) vcg__wt_item_written(c, os);
  }
}

/* ------------------------------------------------------------ UDP send */

typedef struct wt_sendreq {
  uv_udp_send_t req;
  wt_listener_t *lis;
  size_t len;
  uint8_t data[];
} wt_sendreq_t;

static void on_async_sent(uv_udp_send_t *req, int status) {
  wt_sendreq_t *sr = (wt_sendreq_t *)req;
  (void)status; /* a lost datagram is QUIC's business: it retransmits */
  sr->lis->nsending--;
  free(sr);
}

static socklen_t sa_len(const struct sockaddr *sa) {
  return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                   : sizeof(struct sockaddr_in);
}

/* The socket buffer is full (or libuv still holds older datagrams): queue
 * a bounded number of copies rather than lose a burst (and with it the
 * congestion window).  libuv sends them in order when the socket drains. */
static void lis_queue(wt_listener_t *l, const struct sockaddr *to,
                      const uint8_t *p, size_t len) {
  if (l->nsending >= 1024) return;
  wt_sendreq_t *sr = malloc(sizeof(*sr) + len);
  if (!sr) return;
  sr->lis = l;
  sr->len = len;
  memcpy(sr->data, p, len);
  uv_buf_t b = uv_buf_init((char *)sr->data, (unsigned)len);
  if (uv_udp_send(&sr->req, &l->udp, &b, 1, to, on_async_sent) != 0) {
    free(sr);
    return;
  }
  l->nsending++;
}

/* Send buf to `to` as datagrams of segsize bytes (the last may be
 * shorter): one sendmsg with GSO when the socket can, else one sendmmsg;
 * what the full socket buffer refuses is queued. */
static void lis_send_segs(wt_listener_t *l, const struct sockaddr *to,
                          const uint8_t *buf, size_t len, size_t segsize) {
  size_t off = 0;
  /* While libuv holds queued datagrams, newer ones queue behind them:
   * reordering would look like loss to the peer. */
  if (l->nsending == 0) {
    int rc = 0;
    if (l->gso && len > segsize) {
      rc = vcg__udp_send_gso(l->fd, to, sa_len(to), buf, len, segsize);
      if (rc == 0) return;
      if (vcg__udp_gso_unsupported(rc)) {
        /* Once and for all: send this run and every later one without. */
        l->gso = 0;
        vcg_instance_t *inst = l->inst;
        inst->host->log(inst->w, NULL, VCG_LOG_WARN,
                        "udp GSO refused (%s): one datagram per packet from now on",
                        uv_strerror(rc));
        rc = 0;
      } else if (rc != -EAGAIN && rc != -EWOULDBLOCK) {
        return; /* lost, as a lone datagram would be */
      }
    }
    if (rc == 0) off = vcg__udp_send_each(l->fd, to, sa_len(to), buf, len, segsize);
  }
  for (; off < len; off += segsize)
    lis_queue(l, to, buf + off, len - off < segsize ? len - off : segsize);
}

static void lis_send(wt_listener_t *l, const struct sockaddr *to,
                     const uint8_t *p, size_t len) {
  lis_send_segs(l, to, p, len, len);
}

/* --------------------------------------------------------- send batches */

static void batch_init(wt_txbatch_t *b, wt_listener_t *l) {
  memset(b, 0, sizeof(*b));
  b->lis = l;
}

static void batch_flush(wt_txbatch_t *b) {
  if (b->len > 0)
    lis_send_segs(b->lis, (const struct sockaddr *)&b->to, b->lis->inst->txbuf,
                  b->len, b->segsize);
  b->len = b->segsize = b->nsegs = 0;
  b->closed = 0;
}

/* Where the next packet is written: the end of the run, after sending the
 * run if a full-sized packet would not fit any more. */
static uint8_t *batch_room(wt_txbatch_t *b, size_t maxudp) {
  if (b->closed || b->nsegs >= WT_GSO_MAX_SEGS || WT_GSO_MAX_BYTES - b->len < maxudp)
    batch_flush(b);
  return b->lis->inst->txbuf + b->len;
}

/* The packet of n bytes just written at batch_room() joins the run, or,
 * when it cannot (larger than the run's segments, or for another
 * address), the run is sent and the packet starts the next one. */
static void batch_add(wt_txbatch_t *b, const struct sockaddr *to, size_t n) {
  uint8_t *txbuf = b->lis->inst->txbuf;
  socklen_t tolen = sa_len(to);
  if (b->nsegs > 0 &&
      (n > b->segsize || tolen != b->tolen || memcmp(&b->to, to, tolen) != 0)) {
    size_t at = b->len;
    batch_flush(b);
    memmove(txbuf, txbuf + at, n);
  }
  if (b->nsegs == 0) {
    memcpy(&b->to, to, tolen);
    b->tolen = tolen;
    b->segsize = n;
  } else if (n < b->segsize) {
    b->closed = 1; /* GSO: only the last segment may be shorter */
  }
  b->len += n;
  b->nsegs++;
}

/* -------------------------------------------------------- flush machinery */

static void on_check(uv_check_t *h) {
  vcg_instance_t *inst = h->data;
  /* Detach the list first: flushing may mark other connections dirty. */
  for (int round = 0; round < 4 && inst->dirty; round++) {
    wt_conn_t *c = inst->dirty;
    inst->dirty = NULL;
    while (c) {
      wt_conn_t *nx = c->dnext;
      c->dnext = NULL;
      c->dirty = 0;
      if (c->state == WT_C_ACTIVE) conn_flush(c);
      c = nx;
    }
  }
  if (!inst->dirty && inst->flush_armed) {
    uv_check_stop(&inst->check);
    uv_idle_stop(&inst->idle);
    inst->flush_armed = 0;
  }
}

static void on_idle(uv_idle_t *h) { (void)h; }

void vcg__wt_conn_mark(wt_conn_t *c) {
  vcg_instance_t *inst = c->inst;
  if (c->dirty || c->state != WT_C_ACTIVE) return;
  c->dirty = 1;
  c->dnext = inst->dirty;
  inst->dirty = c;
  if (!inst->flush_armed && !inst->stopping) {
    uv_check_start(&inst->check, on_check);
    uv_idle_start(&inst->idle, on_idle);
    inst->flush_armed = 1;
  }
}

static void dirty_unlink(wt_conn_t *c) {
  if (!c->dirty) return;
  for (wt_conn_t **pp = &c->inst->dirty; *pp; pp = &(*pp)->dnext) {
    if (*pp == c) {
      *pp = c->dnext;
      break;
    }
  }
  c->dirty = 0;
  c->dnext = NULL;
}

/* ---------------------------------------------------------------- timers */

static void on_conn_timer(uv_timer_t *t);

static void conn_arm_timer(wt_conn_t *c) {
  if (!c->timer_inited || c->state == WT_C_DEAD) return;
  uint64_t now = vcg__wt_now(), exp;
  if (c->state == WT_C_ACTIVE) {
    exp = ngtcp2_conn_get_expiry(c->qc);
    if (c->linger_deadline && c->linger_deadline < exp) exp = c->linger_deadline;
    if (c->sstate == WT_S_CLOSING && c->finish_deadline < exp) exp = c->finish_deadline;
  } else {
    return; /* closing and draining timers are armed once, on entry */
  }
  if (exp == UINT64_MAX) {
    uv_timer_stop(&c->timer);
    return;
  }
  uint64_t ms = exp <= now ? 0 : (exp - now + 999999) / 1000000;
  /* Most flushes leave the deadline where it was: skip re-inserting the
   * timer into libuv's heap then (uv_timer_start is a stop and a start,
   * a visible cost when every flush paid it). */
  uint64_t due = uv_now(c->inst->loop) + ms;
  if (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due == due) return;
  c->timer_due = due;
  uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

static void conn_enter_period(wt_conn_t *c, int state) {
  /* RFC 9000 section 10.2: stay three PTOs, answering (closing) or
   * silent (draining), so late packets do not trigger stateless resets. */
  uint64_t pto = ngtcp2_conn_get_pto(c->qc);
  uint64_t ms = (3 * pto) / 1000000 + 1;
  if (ms > 10000) ms = 10000;
  c->state = state;
  vcg__wt_conn_gone(c);
  dirty_unlink(c);
  c->timer_due = uv_now(c->inst->loop) + ms;
  uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

static void conn_write_close(wt_conn_t *c,
                             const ngtcp2_connection_close_error *ccerr) {
  uint8_t buf[WT_MAX_PKTLEN];
  ngtcp2_path_storage ps;
  ngtcp2_pkt_info pi;
  if (c->state != WT_C_ACTIVE) return;
  if (ngtcp2_conn_is_in_closing_period(c->qc) ||
      ngtcp2_conn_is_in_draining_period(c->qc)) {
    conn_enter_period(c, WT_C_DRAINING);
    return;
  }
  ngtcp2_path_storage_zero(&ps);
  memset(&pi, 0, sizeof(pi));
  ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->qc, &ps.path, &pi, buf,
                                                      sizeof(buf), ccerr,
                                                      vcg__wt_now());
  if (n <= 0) {
    conn_free(c);
    return;
  }
  c->close_pkt = malloc((size_t)n);
  if (c->close_pkt) {
    memcpy(c->close_pkt, buf, (size_t)n);
    c->close_pktlen = (size_t)n;
  }
  lis_send(c->lis, (const struct sockaddr *)&c->remote, buf, (size_t)n);
  conn_enter_period(c, WT_C_CLOSING);
}

void vcg__wt_conn_close_app(wt_conn_t *c, uint64_t h3err) {
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);
  ngtcp2_connection_close_error_set_application_error(&ccerr, h3err, NULL, 0);
  conn_write_close(c, &ccerr);
}

static void conn_handle_error(wt_conn_t *c, int rv) {
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_default(&ccerr);
  switch (rv) {
  case NGTCP2_ERR_DRAINING:
    conn_enter_period(c, WT_C_DRAINING);
    return;
  case NGTCP2_ERR_DROP_CONN:
  case NGTCP2_ERR_IDLE_CLOSE:
  case NGTCP2_ERR_RETRY:
  case NGTCP2_ERR_HANDSHAKE_TIMEOUT:
    conn_free(c);
    return;
  case NGTCP2_ERR_CRYPTO:
    ngtcp2_connection_close_error_set_transport_error_tls_alert(
        &ccerr, ngtcp2_conn_get_tls_alert(c->qc), NULL, 0);
    break;
  case NGTCP2_ERR_CALLBACK_FAILURE:
    if (c->app_error) {
      ngtcp2_connection_close_error_set_application_error(&ccerr, c->app_error, NULL, 0);
      break;
    }
    /* fall through */
  default:
    ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, rv, NULL, 0);
    break;
  }
  conn_write_close(c, &ccerr);
}

static void on_conn_timer(uv_timer_t *t) {
  wt_conn_t *c = t->data;
  if (c->state == WT_C_CLOSING || c->state == WT_C_DRAINING) {
    conn_free(c);
    return;
  }
  if (c->state != WT_C_ACTIVE) return;
  uint64_t now = vcg__wt_now();
  if (c->linger_deadline && now >= c->linger_deadline) {
    /* The session is over and the peer kept the connection: end it. */
    c->linger_deadline = 0;
    vcg__wt_conn_close_app(c, VCG__H3_NO_ERROR);
    return;
  }
  int rv = ngtcp2_conn_handle_expiry(c->qc, now);
  if (rv != 0) {
    conn_handle_error(c, rv);
    return;
  }
  conn_flush(c);
}

/* ------------------------------------------------------------ write loop */

/* Blocked on stream flow control during this flush (see conn_flush). */
static int os_blocked(const wt_conn_t *c, const wt_ostream_t *os) {
  return os->blocked_gen == c->flush_gen;
}

/* The next item with bytes to write, or NULL.  Control streams come
 * first; the packet queue is served in order and stops at an item whose
 * stream is not opened yet (streams cannot be opened mid-packet). */
static wt_ostream_t *pick(wt_conn_t *c, int *stopped) {
  *stopped = 0;
  if (c->ctrl_os && c->ctrl_os->id >= 0 && !os_blocked(c, c->ctrl_os) && os_pending(c->ctrl_os))
    return c->ctrl_os;
  if (c->connect_os && !os_blocked(c, c->connect_os) && os_pending(c->connect_os))
    return c->connect_os;
  for (wt_ostream_t *os = c->oq_head; os; os = os->onext) {
    if (os->id == WT_ID_UNOPENED) {
      *stopped = 1;
      return NULL;
    }
    if (os_blocked(c, os) || !os_pending(os)) continue;
    return os;
  }
  return NULL;
}

/* Open streams for queued packets, a batch ahead of the writer. */
static int open_streams(wt_conn_t *c) {
  for (wt_ostream_t *os = c->oq_head; os; os = os->onext) {
    if (os->id != WT_ID_UNOPENED) continue;
    if (c->oq_opened >= WT_STREAM_BATCH) break;
    int64_t id;
    int rv = ngtcp2_conn_open_uni_stream(c->qc, &id, os);
    if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED) break; /* wait for credit */
    if (rv != 0) return rv;
    os->id = id;
    c->oq_opened++;
  }
  return 0;
}

/* Returns 0 when done or congestion limited, 1 when it stopped before an
 * unopened stream, or a negative ngtcp2 error. */
static int write_loop(wt_conn_t *c) {
  wt_txbatch_t batch;
  ngtcp2_path_storage ps;
  ngtcp2_pkt_info pi;
  ngtcp2_vec vec[8];
  uint64_t ts = vcg__wt_now();
  size_t maxudp = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->qc);
  if (maxudp > WT_MAX_PKTLEN) maxudp = WT_MAX_PKTLEN;
  size_t quantum = ngtcp2_conn_get_send_quantum(c->qc) / maxudp;
  size_t maxpkts = quantum < 1 ? 1 : quantum > 64 ? 64 : quantum;
  size_t npkts = 0;
  int result = 0;

  /* The packets go out together at the end (or when the run cannot grow):
   * one system call instead of one per packet. */
  batch_init(&batch, c->lis);
  ngtcp2_path_storage_zero(&ps);
  memset(&pi, 0, sizeof(pi));
  for (;;) {
    int stopped;
    wt_ostream_t *os = pick(c, &stopped);
    ngtcp2_ssize nwrite;
    /* Stays put while ngtcp2 builds one packet over several calls
     * (WRITE_MORE): the run only moves when a packet is complete. */
    uint8_t *buf = batch_room(&batch, maxudp);

    if (os && os->id == WT_ID_DGRAM) {
      int accepted = 0;
      size_t nv = os_vecs(os, vec, 8);
      nwrite = ngtcp2_conn_writev_datagram(c->qc, &ps.path, &pi, buf, maxudp, &accepted,
                                           NGTCP2_WRITE_DATAGRAM_FLAG_MORE, 0, vec, nv, ts);
      if (nwrite == NGTCP2_ERR_WRITE_MORE || (nwrite >= 0 && accepted)) {
        os->sent = os->total;
        vcg__wt_oq_remove(c, os);
        vcg__wt_os_free(c, os); /* written: the item ends here */
        if (nwrite == NGTCP2_ERR_WRITE_MORE) continue;
      } else if (nwrite == NGTCP2_ERR_INVALID_ARGUMENT || nwrite == NGTCP2_ERR_INVALID_STATE) {
        /* Too large for the peer, or datagrams not negotiated: drop it. */
        vcg__wt_os_free(c, os);
        continue;
      } else if (nwrite >= 0 && ++os->tries > 8) {
        vcg__wt_os_free(c, os);
      }
      if (nwrite < 0) {
        result = (int)nwrite;
        break;
      }
    } else {
      ngtcp2_ssize ndatalen = -1;
      int64_t sid = -1;
      size_t nv = 0;
      uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
      int fin = 0;
      if (os) {
        sid = os->id;
        nv = os_vecs(os, vec, 8);
        size_t sum = 0;
        for (size_t i = 0; i < nv; i++) sum += vec[i].len;
        if (os->fin && os->sent + sum == os->total) {
          flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
          fin = 1;
        }
      } else if (stopped) {
        result = 1;
      }
      nwrite = ngtcp2_conn_writev_stream(c->qc, &ps.path, &pi, buf, maxudp, &ndatalen,
                                         flags, sid, vec, nv, ts);
      if (nwrite < 0) {
        switch (nwrite) {
        case NGTCP2_ERR_STREAM_DATA_BLOCKED:
          os->blocked_gen = c->flush_gen;
          continue;
        case NGTCP2_ERR_STREAM_SHUT_WR:
        case NGTCP2_ERR_STREAM_NOT_FOUND:
          /* The peer reset or stopped the stream: nothing more to send;
           * the record goes when ngtcp2 closes the stream. */
          os->sent = os->total;
          os->fin_sent = 1;
          os_advance(c, os, 0, 0);
          continue;
        case NGTCP2_ERR_WRITE_MORE:
          os_advance(c, os, ndatalen, fin);
          continue;
        default:
          result = (int)nwrite;
          break;
        }
        if (result < 0) break;
      }
      if (os && ndatalen >= 0) os_advance(c, os, ndatalen, fin);
    }
    if (nwrite == 0) break; /* nothing to send, or congestion limited */
    batch_add(&batch, (const struct sockaddr *)ps.path.remote.addr, (size_t)nwrite);
    if (++npkts >= maxpkts) {
      result = 0; /* pacing: the expiry timer resumes */
      break;
    }
  }
  /* Packets written before an error still go out, ahead of the
   * CONNECTION_CLOSE that the caller sends. */
  batch_flush(&batch);
  if (result >= 0) ngtcp2_conn_update_pkt_tx_time(c->qc, ts);
  return result;
}

static void conn_flush(wt_conn_t *c) {
  if (c->state != WT_C_ACTIVE) return;
  vcg__wt_flush_session(c);
  if (c->state != WT_C_ACTIVE) return;
  /* Flow-control blocks are re-tested on every flush: ngtcp2 answers
   * STREAM_DATA_BLOCKED again at once while they last.  A new flush
   * generation lifts them all at once: walking every stream here was
   * O(queue) per flush, most of the server's time once queues grew. */
  c->flush_gen++;
  for (int round = 0; round < 8; round++) {
    size_t before = c->oq_opened;
    int rv = open_streams(c);
    /* After the first round, go on only while new streams could be opened
     * for the packets waiting behind: without stream credit (or with a
     * full batch of blocked streams) there is nothing new to write. */
    if (rv == 0 && round > 0 && c->oq_opened == before) break;
    if (rv == 0) rv = write_loop(c);
    if (rv < 0) {
      conn_handle_error(c, rv);
      return;
    }
    if (rv == 0) break;
  }
  vcg__wt_after_write(c);
  if (c->state == WT_C_ACTIVE) conn_arm_timer(c);
}

/* ------------------------------------------------------ ngtcp2 callbacks */

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) {
  wt_conn_t *c = ref->user_data;
  return c->qc;
}

static void cb_rand(uint8_t *dest, size_t destlen, const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  gnutls_rnd(GNUTLS_RND_RANDOM, dest, destlen);
}

static int cb_get_new_cid(ngtcp2_conn *qc, ngtcp2_cid *cid, uint8_t *token,
                          size_t cidlen, void *ud) {
  wt_conn_t *c = ud;
  (void)qc;
  for (int tries = 0; tries < 4; tries++) {
    if (gnutls_rnd(GNUTLS_RND_NONCE, cid->data, cidlen) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
    cid->datalen = cidlen;
    if (cid_find(c->inst, cid->data, cidlen)) continue; /* astronomically rare */
    if (ngtcp2_crypto_generate_stateless_reset_token(token, c->inst->st->reset_secret,
                                                     WT_RESET_SECRET_LEN, cid) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
    return cid_add(c, cid) == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return NGTCP2_ERR_CALLBACK_FAILURE;
}

static int cb_remove_cid(ngtcp2_conn *qc, const ngtcp2_cid *cid, void *ud) {
  (void)qc;
  cid_del(ud, cid);
  return 0;
}

static int cb_handshake_completed(ngtcp2_conn *qc, void *ud) {
  wt_conn_t *c = ud;
  (void)qc;
  /* The client now uses our CIDs: the original DCID may be reused by
   * anyone else from here on. */
  if (c->odcid_registered) {
    cid_del(c, &c->odcid);
    c->odcid_registered = 0;
  }
  return 0;
}

static int cb_stream_open(ngtcp2_conn *qc, int64_t id, void *ud) {
  (void)qc;
  return vcg__wt_on_stream_open(ud, id) == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

static int cb_recv_stream_data(ngtcp2_conn *qc, uint32_t flags, int64_t id,
                               uint64_t offset, const uint8_t *data,
                               size_t len, void *ud, void *sud) {
  (void)qc;
  (void)offset;
  return vcg__wt_on_stream_data(ud, flags, id, data, len, sud) == 0
             ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

static wt_ostream_t *os_of(wt_conn_t *c, int64_t id, void *sud) {
  if ((id & 0x3) == 0x3) return sud;                  /* our uni streams */
  if (c->connect_os && c->connect_os->id == id) return c->connect_os;
  return NULL;
}

static int cb_acked(ngtcp2_conn *qc, int64_t id, uint64_t offset,
                    uint64_t datalen, void *ud, void *sud) {
  (void)qc;
  wt_conn_t *c = ud;
  wt_ostream_t *os = os_of(c, id, sud);
  if (os) os_acked(os, offset + datalen);
  /* A closing session waits for this acknowledgement (wt.c). */
  if (os && os == c->connect_os && c->sstate == WT_S_CLOSING) vcg__wt_conn_mark(c);
  return 0;
}

static int cb_stream_close(ngtcp2_conn *qc, uint32_t flags, int64_t id,
                           uint64_t code, void *ud, void *sud) {
  wt_conn_t *c = ud;
  (void)qc;
  (void)flags;
  (void)code;
  if ((id & 0x3) == 0x3) {
    /* Our uni stream is fully acknowledged (or reset): the packet it
     * carried is released here. */
    wt_ostream_t *os = sud;
    if (os) vcg__wt_os_free(c, os);
    return 0;
  }
  return vcg__wt_on_stream_close(c, id, sud) == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

static int cb_stream_reset(ngtcp2_conn *qc, int64_t id, uint64_t final_size,
                           uint64_t code, void *ud, void *sud) {
  (void)qc;
  (void)final_size;
  (void)code;
  return vcg__wt_on_stream_reset(ud, id, sud) == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

static int cb_extend_max_stream_data(ngtcp2_conn *qc, int64_t id,
                                     uint64_t max_data, void *ud, void *sud) {
  (void)qc;
  (void)max_data;
  wt_ostream_t *os = os_of(ud, id, sud);
  if (os) os->blocked_gen = 0;
  vcg__wt_conn_mark(ud);
  return 0;
}

static int cb_extend_max_local_streams_uni(ngtcp2_conn *qc, uint64_t max,
                                           void *ud) {
  (void)qc;
  (void)max;
  vcg__wt_conn_mark(ud); /* queued packets may get streams now */
  return 0;
}

static int cb_recv_datagram(ngtcp2_conn *qc, uint32_t flags,
                            const uint8_t *data, size_t len, void *ud) {
  (void)qc;
  (void)flags;
  return vcg__wt_on_datagram(ud, data, len) == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

static int cb_recv_tx_key(ngtcp2_conn *qc, ngtcp2_crypto_level level,
                          void *ud) {
  (void)qc;
  if (level != NGTCP2_CRYPTO_LEVEL_APPLICATION) return 0;
  /* Remote transport parameters are known: open our control stream. */
  return vcg__wt_on_app_tx_key(ud) == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

static const ngtcp2_callbacks server_callbacks = {
  .recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
  .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
  .encrypt = ngtcp2_crypto_encrypt_cb,
  .decrypt = ngtcp2_crypto_decrypt_cb,
  .hp_mask = ngtcp2_crypto_hp_mask_cb,
  .update_key = ngtcp2_crypto_update_key_cb,
  .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
  .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
  .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
  .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
  .rand = cb_rand,
  .get_new_connection_id = cb_get_new_cid,
  .remove_connection_id = cb_remove_cid,
  .handshake_completed = cb_handshake_completed,
  .stream_open = cb_stream_open,
  .recv_stream_data = cb_recv_stream_data,
  .acked_stream_data_offset = cb_acked,
  .stream_close = cb_stream_close,
  .stream_reset = cb_stream_reset,
  .extend_max_stream_data = cb_extend_max_stream_data,
  .extend_max_local_streams_uni = cb_extend_max_local_streams_uni,
  .recv_datagram = cb_recv_datagram,
  .recv_tx_key = cb_recv_tx_key,
};

/* ------------------------------------------------------- connection life */

/* One of the instance's handles finished closing.  The last one of a
 * stopping instance frees the instance and reports to the host. */
static void inst_handle_closed(vcg_instance_t *inst) {
  inst->open_handles--;
  if (inst->stopping && inst->open_handles == 0) {
    vcg_stopped_cb cb = inst->stop_cb;
    vcg_worker_t *w = inst->w;
    free(inst);
    if (cb) cb(w);
  }
}

static void on_timer_closed(uv_handle_t *h) {
  wt_conn_t *c = h->data;
  vcg_instance_t *inst = c->inst;
  free(c);
  inst_handle_closed(inst);
}

static void conn_free(wt_conn_t *c) {
  vcg_instance_t *inst = c->inst;
  if (c->state == WT_C_DEAD) return;
  vcg__wt_conn_gone(c); /* session_closed, queued packets released */
  c->state = WT_C_DEAD;
  dirty_unlink(c);
  cid_del_all(c);
  while (c->os_all) vcg__wt_os_free(c, c->os_all);
  while (c->is_all) {
    wt_istream_t *is = c->is_all;
    c->is_all = is->next;
    free(is->buf);
    free(is->caps);
    free(is);
  }
  if (c->qc) ngtcp2_conn_del(c->qc);
  c->qc = NULL;
  if (c->tls) gnutls_deinit(c->tls);
  c->tls = NULL;
  free(c->close_pkt);
  c->close_pkt = NULL;
  if (c->prev) c->prev->next = c->next;
  else inst->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  inst->nconns--;
  if (c->timer_inited) {
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  } else {
    free(c);
  }
}

static wt_conn_t *conn_new(wt_listener_t *l, const ngtcp2_pkt_hd *hd,
                           const struct sockaddr *from, socklen_t fromlen) {
  vcg_instance_t *inst = l->inst;
  wt_conn_t *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->inst = inst;
  c->lis = l;
  c->connect_id = -1;
  memcpy(&c->local, &l->addr, l->addrlen);
  c->locallen = l->addrlen;
  memcpy(&c->remote, from, fromlen);
  c->remotelen = fromlen;
  c->odcid = hd->dcid;

  ngtcp2_cid scid;
  scid.datalen = WT_SCID_LEN;
  do {
    gnutls_rnd(GNUTLS_RND_NONCE, scid.data, scid.datalen);
  } while (cid_find(inst, scid.data, scid.datalen));

  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = vcg__wt_now();
  settings.max_tx_udp_payload_size = WT_MAX_PKTLEN;
  /* We credit flow control ourselves (wt.c): no auto-tuned windows. */
  uint64_t stream_uni = inst->max_msg + 64;
  uint64_t conn_window = 4u << 20;
  if (conn_window < 2 * stream_uni) conn_window = 2 * stream_uni;
  settings.max_window = 0;
  settings.max_stream_window = 0;

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_local = 256u << 10;
  params.initial_max_stream_data_bidi_remote = 256u << 10;
  /* One PacketWrapper per uni stream: the stream window holds exactly one
   * message of the largest allowed size plus its prefix, so a bigger one
   * is seen (and refused) rather than stalled. */
  params.initial_max_stream_data_uni = stream_uni;
  params.initial_max_data = conn_window;
  params.initial_max_streams_bidi = 4;
  params.initial_max_streams_uni = 100;
  params.max_idle_timeout = (uint64_t)inst->conf->idle_timeout * NGTCP2_MILLISECONDS;
  params.active_connection_id_limit = 4;
  params.max_datagram_frame_size = 65535;
  params.original_dcid = hd->dcid;
  params.stateless_reset_token_present = 1;
  if (ngtcp2_crypto_generate_stateless_reset_token(params.stateless_reset_token,
                                                   inst->st->reset_secret,
                                                   WT_RESET_SECRET_LEN, &scid) != 0)
    goto fail;

  ngtcp2_path path = {
    { (ngtcp2_sockaddr *)&c->local, c->locallen },
    { (ngtcp2_sockaddr *)&c->remote, c->remotelen },
    NULL,
  };
  if (ngtcp2_conn_server_new(&c->qc, &hd->scid, &scid, &path, hd->version,
                             &server_callbacks, &settings, &params, NULL, c) != 0)
    goto fail;
  if (vcg__wt_tls_session_new(&inst->st->tls, &c->tls) != 0) goto fail;
  if (ngtcp2_crypto_gnutls_configure_server_session(c->tls) != 0) goto fail;
  c->cref.get_conn = get_conn;
  c->cref.user_data = c;
  gnutls_session_set_ptr(c->tls, &c->cref);
  ngtcp2_conn_set_tls_native_handle(c->qc, c->tls);

  if (uv_timer_init(inst->loop, &c->timer) != 0) goto fail;
  c->timer.data = c;
  c->timer_inited = 1;
  inst->open_handles++;

  c->next = inst->conns;
  if (inst->conns) inst->conns->prev = c;
  inst->conns = c;
  inst->nconns++;

  if (cid_add(c, &scid) != 0 || cid_add(c, &hd->dcid) != 0) {
    conn_free(c);
    return NULL;
  }
  c->odcid_registered = 1;
  return c;
fail:
  if (c->qc) ngtcp2_conn_del(c->qc);
  if (c->tls) gnutls_deinit(c->tls);
  free(c);
  return NULL;
}

/* --------------------------------------------------------------- receive */

static void send_version_negotiation(wt_listener_t *l, const ngtcp2_version_cid *vc,
                                     const struct sockaddr *to) {
  uint8_t buf[256];
  uint8_t r;
  const uint32_t sv[] = { NGTCP2_PROTO_VER_V1 };
  gnutls_rnd(GNUTLS_RND_NONCE, &r, 1);
  ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(buf, sizeof(buf), r, vc->scid,
                                                        vc->scidlen, vc->dcid, vc->dcidlen,
                                                        sv, 1);
  if (n > 0) lis_send(l, to, buf, (size_t)n);
}

static void send_stateless_reset(wt_listener_t *l, const uint8_t *dcid,
                                 size_t dcidlen, size_t pktlen,
                                 const struct sockaddr *to) {
  vcg_instance_t *inst = l->inst;
  uint8_t buf[64], rnd[64], token[NGTCP2_STATELESS_RESET_TOKENLEN];
  ngtcp2_cid cid;
  uint64_t now = vcg__wt_now();

  /* At most 100 resets a second per worker: garbage must not turn us into
   * a reflector. */
  if (now - inst->sr_window > 1000000000ull) {
    inst->sr_window = now;
    inst->sr_count = 0;
  }
  if (++inst->sr_count > 100) return;
  /* Smaller than what triggered it (no reset loops between two servers)
   * and at least the RFC's minimum. */
  if (pktlen < 1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN + 1) return;
  size_t randlen = pktlen - 1 - NGTCP2_STATELESS_RESET_TOKENLEN - 1;
  if (randlen > 40) randlen = 40;
  ngtcp2_cid_init(&cid, dcid, dcidlen);
  if (ngtcp2_crypto_generate_stateless_reset_token(token, inst->st->reset_secret,
                                                   WT_RESET_SECRET_LEN, &cid) != 0)
    return;
  gnutls_rnd(GNUTLS_RND_NONCE, rnd, randlen);
  ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(buf, sizeof(buf), token, rnd, randlen);
  if (n > 0) lis_send(l, to, buf, (size_t)n);
}

static void on_datagram(wt_listener_t *l, const uint8_t *data, size_t len,
                        const struct sockaddr *from) {
  vcg_instance_t *inst = l->inst;
  ngtcp2_version_cid vc;
  socklen_t fromlen = from->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                  : sizeof(struct sockaddr_in);

  int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, WT_SCID_LEN);
  if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
    if (!inst->draining) send_version_negotiation(l, &vc, from);
    return;
  }
  if (rv != 0) return; /* not QUIC: ignored */

  wt_conn_t *c = cid_find(inst, vc.dcid, vc.dcidlen);
  if (!c) {
    if (data[0] & 0x80) {
      /* A long header: maybe a new connection.  ngtcp2_accept checks that
       * it is a client Initial of at least 1200 bytes. */
      ngtcp2_pkt_hd hd;
      if (inst->draining || inst->stopping) return;
      if (inst->nconns >= (size_t)inst->conf->max_sessions) {
        inst->host->counter_add(inst->w, "wt_connections_refused", 1);
        return;
      }
      if (ngtcp2_accept(&hd, data, len) != 0) return;
      c = conn_new(l, &hd, from, fromlen);
      if (!c) return;
      inst->host->counter_add(inst->w, "wt_connections", 1);
    } else {
      send_stateless_reset(l, vc.dcid, vc.dcidlen, len, from);
      return;
    }
  }
  if (c->state == WT_C_CLOSING) {
    if (c->close_pkt) lis_send(c->lis, from, c->close_pkt, c->close_pktlen);
    return;
  }
  if (c->state != WT_C_ACTIVE) return;

  ngtcp2_path path = {
    { (ngtcp2_sockaddr *)&l->addr, l->addrlen },
    { (ngtcp2_sockaddr *)(uintptr_t)from, fromlen },
    NULL,
  };
  ngtcp2_pkt_info pi;
  memset(&pi, 0, sizeof(pi));
  rv = ngtcp2_conn_read_pkt(c->qc, &path, &pi, data, len, vcg__wt_now());
  if (rv != 0) {
    if (!ngtcp2_conn_get_handshake_completed(c->qc) && rv != NGTCP2_ERR_CRYPTO &&
        rv != NGTCP2_ERR_DRAINING && rv != NGTCP2_ERR_CALLBACK_FAILURE) {
      conn_free(c); /* a bad first flight: nothing worth a close frame */
      return;
    }
    conn_handle_error(c, rv);
    return;
  }
  vcg__wt_conn_mark(c);
}

/* With recvmmsg, libuv splits the buffer into 64 KiB slots, one datagram
 * each: it must be a multiple of that size.  The buffer is the instance's
 * and is reused at once, so nothing is freed on UV_UDP_MMSG_FREE. */
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  wt_listener_t *l = h->data;
  (void)hint;
  buf->base = (char *)l->inst->rxbuf;
  buf->len = sizeof(l->inst->rxbuf);
}

/* One call per datagram (UV_UDP_MMSG_CHUNK with recvmmsg), then one with
 * nread == 0 and no address that ends the batch: ignored here, since the
 * flush already waits for the loop's check phase. */
static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *addr, unsigned flags) {
  wt_listener_t *l = h->data;
  if (nread <= 0 || !addr || (flags & UV_UDP_PARTIAL)) return;
  on_datagram(l, (const uint8_t *)buf->base, (size_t)nread, addr);
}

/* --------------------------------------------------------- start / stop */

/* Whether the kernel knows UDP_SEGMENT (Linux 4.18+).  It must be asked
 * first: an older kernel ignores the unknown control message and would
 * send the whole run as one oversized datagram.  A device that cannot
 * segment still refuses at the first send (lis_send_segs falls back).
 * VCGATE_WT_NO_GSO=1 forces the fallback, for tests. */
static int gso_probe(int fd) {
  const char *off = getenv("VCGATE_WT_NO_GSO");
  if (off && *off && strcmp(off, "0") != 0) return 0;
  return vcg__udp_gso_probe(fd);
}

static int lis_open(vcg_instance_t *inst, wt_listener_t *l, const char *spec) {
  char where[80];
  int rc = vcg__wt_parse_addr(spec, &l->addr, &l->addrlen);
  if (rc != 0) return rc;
  int fam = l->addr.ss_family;
  int fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  /* SO_REUSEPORT (not libuv's REUSEADDR) so that each worker binds its own
   * socket to the same address and the kernel spreads the flows. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
      (fam == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
      bind(fd, (struct sockaddr *)&l->addr, l->addrlen) != 0) {
    rc = -errno;
    close(fd);
    inst->host->log(inst->w, NULL, VCG_LOG_ERROR, "cannot bind udp %s: %s",
                    vcg__wt_addr_str((struct sockaddr *)&l->addr, where, sizeof(where)),
                    uv_strerror(rc));
    return rc;
  }
  l->addrlen = sizeof(l->addr);
  getsockname(fd, (struct sockaddr *)&l->addr, &l->addrlen);
  /* AF_UNSPEC: libuv makes no socket of its own, we open ours below.
   * RECVMMSG: up to WT_RX_SLOTS datagrams per system call. */
  if ((rc = uv_udp_init_ex(inst->loop, &l->udp, AF_UNSPEC | UV_UDP_RECVMMSG)) != 0) {
    close(fd);
    return rc;
  }
  l->udp.data = l;
  l->inst = inst;
  l->inited = 1;
  inst->open_handles++;
  if ((rc = uv_udp_open(&l->udp, fd)) != 0) {
    close(fd);
    return rc;
  }
  l->fd = fd;
  l->gso = gso_probe(fd);
  uv_send_buffer_size((uv_handle_t *)&l->udp, &(int){ 4 << 20 });
  uv_recv_buffer_size((uv_handle_t *)&l->udp, &(int){ 4 << 20 });
  if ((rc = uv_udp_recv_start(&l->udp, on_alloc, on_recv)) != 0) return rc;
  if (inst->host->worker_index(inst->w) == 0) {
    char url[128], have[8];
    vcg__wt_addr_str((struct sockaddr *)&l->addr, where, sizeof(where));
    inst->host->log(inst->w, NULL, VCG_LOG_INFO, "listening on https://%s (webtransport, udp)",
                    where);
    /* The first listener is the one pages are told about (GET
     * /.well-known/vcgate/webtransport on the WebSocket listener). */
    snprintf(url, sizeof(url), "https://%s", where);
    if (inst->host->info_get(inst->w, "webtransport.url", have, sizeof(have)) == VCG_ENOENT)
      inst->host->info_set(inst->w, "webtransport.url", url);
  }
  return 0;
}

static void on_handle_closed(uv_handle_t *h) { inst_handle_closed(h->data); }

static void on_udp_closed(uv_handle_t *h) {
  wt_listener_t *l = h->data;
  h->data = l->inst;
  on_handle_closed(h);
}

int vcg__wt_endpoint_start(vcg_instance_t *inst) {
  int rc;
  if ((rc = cidtab_init(&inst->cids)) != 0) return rc;
  uv_check_init(inst->loop, &inst->check);
  uv_idle_init(inst->loop, &inst->idle);
  inst->check.data = inst;
  inst->idle.data = inst;
  inst->open_handles += 2;

  /* listen is one address or a comma-separated list of them. */
  const char *p = inst->conf->listen;
  while (p && *p) {
    char spec[96];
    size_t n = strcspn(p, ", ");
    if (n == 0) {
      p++;
      continue;
    }
    if (n >= sizeof(spec) || inst->nlis >= WT_MAX_LISTENERS) return VCG_EINVAL;
    memcpy(spec, p, n);
    spec[n] = '\0';
    if ((rc = lis_open(inst, &inst->lis[inst->nlis], spec)) != 0) {
      if (inst->lis[inst->nlis].inited) inst->nlis++;
      return rc;
    }
    inst->nlis++;
    p += n;
  }
  return inst->nlis ? 0 : VCG_EINVAL;
}

/* Close everything.  When the last handle has closed, the instance is
 * freed and inst->stop_cb(w) runs (possibly in a later loop iteration). */
void vcg__wt_endpoint_stop(vcg_instance_t *inst) {
  inst->stopping = 1;
  /* Hold one count ourselves so no close callback can finish the stop
   * before every close has been started. */
  inst->open_handles++;
  while (inst->conns) {
    wt_conn_t *c = inst->conns;
    if (c->state == WT_C_ACTIVE) vcg__wt_conn_close_app(c, VCG__H3_NO_ERROR);
    /* Best effort: the close frame went out; do not wait three PTOs. */
    conn_free(c);
  }
  for (size_t i = 0; i < inst->nlis; i++) {
    if (inst->lis[i].inited && !uv_is_closing((uv_handle_t *)&inst->lis[i].udp)) {
      uv_udp_recv_stop(&inst->lis[i].udp);
      uv_close((uv_handle_t *)&inst->lis[i].udp, on_udp_closed);
    }
  }
  if (!uv_is_closing((uv_handle_t *)&inst->check)) {
    uv_check_stop(&inst->check);
    uv_idle_stop(&inst->idle);
    uv_close((uv_handle_t *)&inst->check, on_handle_closed);
    uv_close((uv_handle_t *)&inst->idle, on_handle_closed);
  }
  cidtab_free(&inst->cids);
  inst_handle_closed(inst);
}
