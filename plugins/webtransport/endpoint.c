/*
 * endpoint.c -- UDP sockets, the connection ID table, version negotiation
 * and stateless reset (see endpoint.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "addr.h"
#include "endpoint.h"

/* ------------------------------------------------------------ CID table */

/* Clients choose the DCID of their first Initials, so the table is seeded
 * randomly (htab.h): nobody can aim many IDs at one chain. */
static uint64_t cid_hash(const wt_endpoint_t *ep, const uint8_t *p, size_t n) {
  return vcg_hash(p, n, ep->cids.seed);
}

typedef struct { const uint8_t *p; size_t n; } cid_key_t;

static int cid_eq(const vcg_hnode_t *x, const void *key) {
  const wt_cident_t *e = vcg_container_of(x, wt_cident_t, node);
  const cid_key_t *k = key;
  return e->cid.datalen == k->n && memcmp(e->cid.data, k->p, k->n) == 0;
}

static wt_cident_t *cid_lookup(wt_endpoint_t *ep, const uint8_t *p, size_t n) {
  if (n > NGTCP2_MAX_CIDLEN || !ep->cids.b) return NULL;
  cid_key_t k = { p, n };
  vcg_hnode_t *x = vcg_htab_find(&ep->cids, cid_hash(ep, p, n), cid_eq, &k);
  return x ? vcg_container_of(x, wt_cident_t, node) : NULL;
}

void *vcg__wt_ep_cid_find(wt_endpoint_t *ep, const uint8_t *p, size_t n) {
  wt_cident_t *e = cid_lookup(ep, p, n);
  return e ? e->owner : NULL;
}

int vcg__wt_ep_cid_add(wt_endpoint_t *ep, wt_cident_t **list, const ngtcp2_cid *cid,
                       void *owner) {
  wt_cident_t *e = cid_lookup(ep, cid->data, cid->datalen);
  if (e) return e->owner == owner ? 0 : VCG_EEXIST;
  e = calloc(1, sizeof(*e));
  if (!e) return VCG_ENOMEM;
  e->cid = *cid;
  e->owner = owner;
  vcg_htab_insert(&ep->cids, &e->node, cid_hash(ep, cid->data, cid->datalen));
  e->cnext = *list;
  *list = e;
  return 0;
}

void vcg__wt_ep_cid_del(wt_endpoint_t *ep, wt_cident_t **list, const ngtcp2_cid *cid) {
  wt_cident_t *e = cid_lookup(ep, cid->data, cid->datalen);
  if (!e) return;
  wt_cident_t **q = list;
  while (*q && *q != e) q = &(*q)->cnext;
  if (!*q) return; /* someone else's */
  *q = e->cnext;
  vcg_htab_remove(&ep->cids, &e->node);
  free(e);
}

void vcg__wt_ep_cid_del_all(wt_endpoint_t *ep, wt_cident_t **list) {
  while (*list) {
    ngtcp2_cid cid = (*list)->cid;
    vcg__wt_ep_cid_del(ep, list, &cid);
  }
}

int vcg__wt_ep_new_cid(wt_endpoint_t *ep, ngtcp2_cid *cid, size_t len) {
  for (int tries = 0; tries < 4; tries++) {
    if (gnutls_rnd(GNUTLS_RND_NONCE, cid->data, len) != 0) return VCG_EIO;
    cid->datalen = len;
    if (!vcg__wt_ep_cid_find(ep, cid->data, len)) return 0;
  }
  return VCG_EIO; /* four collisions of random IDs: something is broken */
}

int vcg__wt_ep_reset_token(const wt_endpoint_t *ep, uint8_t *token, const ngtcp2_cid *cid) {
  return ngtcp2_crypto_generate_stateless_reset_token(token, ep->reset_secret,
                                                      WT_RESET_SECRET_LEN, cid) == 0
             ? 0 : VCG_EIO;
}

/* ------------------------------------------------------------ UDP send */

static void on_poll(uv_poll_t *h, int status, int events);

static void lis_watch(wt_listener_t *l) {
  if (!l->inited || uv_is_closing((uv_handle_t *)&l->poll)) return;
  uv_poll_start(&l->poll, UV_READABLE | (l->qhead ? UV_WRITABLE : 0), on_poll);
}

/* The socket buffer is full (or older datagrams still wait): keep a
 * bounded number of copies rather than lose a burst (and with it the
 * congestion window), sent in order when the socket drains. */
static void lis_queue(wt_listener_t *l, const struct sockaddr *to,
                      const uint8_t *p, size_t len) {
  if (l->nsending >= WT_TX_QUEUE_MAX) return;
  wt_sendreq_t *sr = malloc(sizeof(*sr) + len);
  if (!sr) return;
  sr->next = NULL;
  memcpy(&sr->to, to, vcg__wt_sa_len(to));
  sr->len = len;
  memcpy(sr->data, p, len);
  if (l->qtail) l->qtail->next = sr;
  else l->qhead = sr;
  l->qtail = sr;
  if (l->nsending++ == 0) lis_watch(l);
}

static void lis_queue_free(wt_listener_t *l) {
  while (l->qhead) {
    wt_sendreq_t *sr = l->qhead;
    l->qhead = sr->next;
    free(sr);
  }
  l->qtail = NULL;
  l->nsending = 0;
}

/* Writable again: send what waited, in order. */
static void lis_drain_queue(wt_listener_t *l) {
  while (l->qhead) {
    wt_sendreq_t *sr = l->qhead;
    const struct sockaddr *to = (const struct sockaddr *)&sr->to;
    ssize_t n;
    do n = sendto(l->fd, sr->data, sr->len, 0, to, vcg__wt_sa_len(to));
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    /* Sent, or lost as any datagram may be: QUIC retransmits. */
    l->qhead = sr->next;
    if (!l->qhead) l->qtail = NULL;
    l->nsending--;
    free(sr);
  }
  lis_watch(l);
}

/* GSO refused once: send this run and every later one without. */
static void gso_off(wt_listener_t *l, int rc) {
  wt_endpoint_t *ep = l->ep;
  l->gso = 0;
  ep->host->log(ep->w, NULL, VCG_LOG_WARN,
                "udp GSO refused (%s): one datagram per packet from now on", vcg_strerror(rc));
}

/* Send buf to `to` as datagrams of segsize bytes (the last may be
 * shorter): one sendmsg with GSO when the socket can, else one sendmmsg;
 * what the full socket buffer refuses is queued. */
static void lis_send_segs(wt_listener_t *l, const struct sockaddr *to,
                          const uint8_t *buf, size_t len, size_t segsize) {
  size_t off = 0;
  /* While datagrams wait in the queue, newer ones queue behind them:
   * reordering would look like loss to the peer. */
  if (l->nsending == 0) {
    int rc = 0;
    if (l->gso && len > segsize) {
      rc = vcg__udp_send_gso(l->fd, to, vcg__wt_sa_len(to), buf, len, segsize);
      if (rc == 0) return;
      if (vcg__udp_gso_unsupported(rc)) {
        gso_off(l, rc);
        rc = 0;
      } else if (rc != -EAGAIN && rc != -EWOULDBLOCK) {
        return; /* lost, as a lone datagram would be */
      }
    }
    if (rc == 0) off = vcg__udp_send_each(l->fd, to, vcg__wt_sa_len(to), buf, len, segsize);
  }
  for (; off < len; off += segsize)
    lis_queue(l, to, buf + off, len - off < segsize ? len - off : segsize);
}

/* The runs [i, n) of ep->runs, all on listener l: sendmmsg as far as the
 * kernel takes them, the rest one by one (queued when the buffer is full,
 * without GSO once the device refused it). */
static void send_runs(wt_endpoint_t *ep, wt_listener_t *l, size_t i, size_t n) {
  vcg__udp_run_t v[WT_TX_RUNS];
  size_t k = 0;
  for (size_t j = i; j < n; j++, k++) {
    const wt_txrun_t *r = &ep->runs[j];
    v[k] = (vcg__udp_run_t){ (const struct sockaddr *)&r->to, r->tolen, ep->txbuf + r->off,
                             r->len, r->segsize };
  }
  size_t done = 0;
  while (done < k && l->nsending == 0 && l->gso) {
    int rc = vcg__udp_send_runs(l->fd, v + done, k - done);
    if (rc > 0) {
      done += (size_t)rc;
    } else if (rc == -EAGAIN || rc == -EWOULDBLOCK) {
      break; /* the rest is queued below */
    } else if (vcg__udp_gso_unsupported(rc) && v[done].len > v[done].segsize) {
      gso_off(l, rc);
    } else {
      done++; /* this one is lost, as a lone datagram would be */
    }
  }
  for (; done < k; done++)
    lis_send_segs(l, v[done].to, v[done].buf, v[done].len, v[done].segsize);
}

void vcg__wt_ep_flush(wt_endpoint_t *ep) {
  size_t i = 0;
  while (i < ep->nruns) {
    /* Consecutive runs of one listener share a system call. */
    size_t j = i + 1;
    while (j < ep->nruns && ep->runs[j].lis == ep->runs[i].lis) j++;
    send_runs(ep, ep->runs[i].lis, i, j);
    i = j;
  }
  ep->nruns = 0;
  ep->txused = 0;
}

void vcg__wt_ep_send(wt_listener_t *l, const struct sockaddr *to,
                     const uint8_t *p, size_t len) {
  /* After the packets already written this turn: a CONNECTION_CLOSE must
   * not overtake its connection's last data. */
  if (l->ep->nruns) vcg__wt_ep_flush(l->ep);
  lis_send_segs(l, to, p, len, len);
}

/* --------------------------------------------------------- send batches */

void vcg__wt_batch_init(wt_txbatch_t *b, wt_listener_t *l) {
  memset(b, 0, sizeof(*b));
  b->lis = l;
}

void vcg__wt_batch_flush(wt_txbatch_t *b) {
  wt_endpoint_t *ep = b->lis->ep;
  if (b->len > 0) {
    wt_txrun_t *r = &ep->runs[ep->nruns++];
    r->lis = b->lis;
    memcpy(&r->to, &b->to, b->tolen);
    r->tolen = b->tolen;
    r->off = ep->txused;
    r->len = b->len;
    r->segsize = b->segsize;
    ep->txused += b->len;
  }
  b->len = b->segsize = b->nsegs = 0;
  b->closed = 0;
}

uint8_t *vcg__wt_batch_room(wt_txbatch_t *b, size_t maxudp) {
  wt_endpoint_t *ep = b->lis->ep;
  if (b->closed || b->nsegs >= WT_GSO_MAX_SEGS || WT_GSO_MAX_BYTES - b->len < maxudp)
    vcg__wt_batch_flush(b);
  /* Room for the packet and for the two runs vcg__wt_batch_add may
   * commit: else the turn's runs go out now. */
  if (WT_TX_BYTES - ep->txused - b->len < maxudp || ep->nruns + 2 > WT_TX_RUNS) {
    vcg__wt_batch_flush(b);
    vcg__wt_ep_flush(ep);
  }
  return ep->txbuf + ep->txused + b->len;
}

/* The packet joins the run, or, when it cannot (larger than the run's
 * segments), the run is committed and the packet, which lies right after
 * it in txbuf, starts the next one. */
void vcg__wt_batch_add(wt_txbatch_t *b, const struct sockaddr *to, size_t n) {
  socklen_t tolen = vcg__wt_sa_len(to);
  if (b->nsegs > 0 && n > b->segsize) vcg__wt_batch_flush(b);
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
  if (n > 0) vcg__wt_ep_send(l, to, buf, (size_t)n);
}

static void send_stateless_reset(wt_listener_t *l, const uint8_t *dcid,
                                 size_t dcidlen, size_t pktlen,
                                 const struct sockaddr *to) {
  wt_endpoint_t *ep = l->ep;
  uint8_t buf[64], rnd[64], token[NGTCP2_STATELESS_RESET_TOKENLEN];
  ngtcp2_cid cid;
  uint64_t now = vcg__wt_now();

  /* At most 100 resets a second per worker: garbage must not turn us into
   * a reflector. */
  if (now - ep->sr_window > 1000000000ull) {
    ep->sr_window = now;
    ep->sr_count = 0;
  }
  if (++ep->sr_count > 100) return;
  /* Smaller than what triggered it (no reset loops between two servers)
   * and at least the RFC's minimum. */
  if (pktlen < 1 + NGTCP2_MIN_STATELESS_RESET_RANDLEN + NGTCP2_STATELESS_RESET_TOKENLEN + 1) return;
  size_t randlen = pktlen - 1 - NGTCP2_STATELESS_RESET_TOKENLEN - 1;
  if (randlen > 40) randlen = 40;
  ngtcp2_cid_init(&cid, dcid, dcidlen);
  if (vcg__wt_ep_reset_token(ep, token, &cid) != 0) return;
  gnutls_rnd(GNUTLS_RND_NONCE, rnd, randlen);
  ngtcp2_ssize n = ngtcp2_pkt_write_stateless_reset(buf, sizeof(buf), token, rnd, randlen);
  if (n > 0) vcg__wt_ep_send(l, to, buf, (size_t)n);
}

/* ------------------------------------------------ half-open connections */

/* The IP address of sa (no port): what per-address limits count. */
static size_t addr_key(const struct sockaddr *sa, uint8_t *out) {
  if (sa->sa_family == AF_INET6) {
    memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    return 16;
  }
  memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
  return 4;
}

typedef struct { int family; const uint8_t *p; size_t n; } ho_key_t;

static int ho_eq(const vcg_hnode_t *x, const void *key) {
  const wt_ho_addr_t *a = vcg_container_of(x, wt_ho_addr_t, node);
  const ho_key_t *k = key;
  return a->family == k->family && memcmp(a->addr, k->p, k->n) == 0;
}

/* The entry of sa's address, made when `make` (NULL on ENOMEM or absent). */
static wt_ho_addr_t *ho_get(wt_endpoint_t *ep, const struct sockaddr *sa, int make) {
  uint8_t b[16];
  ho_key_t k = { sa->sa_family, b, addr_key(sa, b) };
  uint64_t hash = vcg_hash(b, k.n, ep->half_open_by_addr.seed);
  vcg_hnode_t *x = vcg_htab_find(&ep->half_open_by_addr, hash, ho_eq, &k);
  if (x || !make) return x ? vcg_container_of(x, wt_ho_addr_t, node) : NULL;
  wt_ho_addr_t *a = calloc(1, sizeof(*a));
  if (!a) return NULL;
  a->family = k.family;
  memcpy(a->addr, b, k.n);
  vcg_htab_insert(&ep->half_open_by_addr, &a->node, hash);
  return a;
}

void vcg__wt_ep_half_open_end(wt_endpoint_t *ep, const struct sockaddr *from) {
  if (ep->half_open) ep->half_open--;
  wt_ho_addr_t *a = ep->half_open_by_addr.b ? ho_get(ep, from, 0) : NULL;
  if (a && --a->n == 0) {
    vcg_htab_remove(&ep->half_open_by_addr, &a->node);
    free(a);
  }
}

/* ------------------------------------------------------------ Retry */

/* Answer a tokenless Initial with a Retry whose token proves, when it
 * comes back, that the client receives at its address.  Stateless: the
 * Retry is smaller than the Initial (no amplification) and costs no
 * memory. */
static void send_retry(wt_listener_t *l, const ngtcp2_pkt_hd *hd, const struct sockaddr *from) {
  wt_endpoint_t *ep = l->ep;
  uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN], buf[256];
  ngtcp2_cid scid;
  if (vcg__wt_ep_new_cid(ep, &scid, WT_SCID_LEN) != 0) return;
  ngtcp2_ssize tlen = ngtcp2_crypto_generate_retry_token(
      token, ep->conf.token_secret, WT_TOKEN_SECRET_LEN, hd->version,
      (const ngtcp2_sockaddr *)from, vcg__wt_sa_len(from), &scid, &hd->dcid, vcg__wt_now());
  if (tlen < 0) return;
  ngtcp2_ssize n = ngtcp2_crypto_write_retry(buf, sizeof(buf), hd->version, &hd->scid, &scid,
                                             &hd->dcid, token, (size_t)tlen);
  if (n <= 0) return;
  ep->host->counter_add(ep->w, "wt_retry_sent", 1);
  vcg__wt_ep_send(l, from, buf, (size_t)n);
}

/* A token that does not verify: tell the client (RFC 9000 8.1.3) without
 * keeping any state. */
static void send_invalid_token(wt_listener_t *l, const ngtcp2_pkt_hd *hd,
                               const struct sockaddr *from) {
  uint8_t buf[256];
  ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(buf, sizeof(buf), hd->version, &hd->scid,
                                                        &hd->dcid, NGTCP2_INVALID_TOKEN, NULL, 0);
  l->ep->host->counter_add(l->ep->w, "wt_retry_token_invalid", 1);
  if (n > 0) vcg__wt_ep_send(l, from, buf, (size_t)n);
}

/* A client Initial for no known connection.  In order, all before any
 * memory is spent on it: address validation (Retry) when the option asks
 * for it, the host's global and per-address limits (conn_admit), and the
 * plugin's own limit of half-open connections per address. */
static void *accept_initial(wt_listener_t *l, const uint8_t *data, size_t len,
                            const struct sockaddr *from) {
  wt_endpoint_t *ep = l->ep;
  ngtcp2_pkt_hd hd;
  ngtcp2_cid odcid;
  int validated = 0;
  if (!ep->accepting || ep->stopping) return NULL;
  if (ngtcp2_accept(&hd, data, len) != 0) return NULL;
  if (hd.token.len > 0 && hd.token.base[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
    if (ngtcp2_crypto_verify_retry_token(&odcid, hd.token.base, hd.token.len,
                                         ep->conf.token_secret, WT_TOKEN_SECRET_LEN, hd.version,
                                         (const ngtcp2_sockaddr *)from, vcg__wt_sa_len(from),
                                         &hd.dcid, WT_RETRY_TOKEN_TIMEOUT_NS,
                                         vcg__wt_now()) != 0) {
      send_invalid_token(l, &hd, from);
      return NULL;
    }
    validated = 1;
  }
  /* (A NEW_TOKEN token would be another magic byte: we issue none, so it
   * counts as no token at all.) */
  if (!validated && (ep->conf.retry == WT_RETRY_ALWAYS ||
                     (ep->conf.retry == WT_RETRY_AUTO && ep->half_open >= ep->conf.retry_threshold))) {
    send_retry(l, &hd, from);
    return NULL;
  }
  int admitted = ep->host->conn_admit(ep->w, from);
  if (admitted < 0) {
    ep->host->counter_add(ep->w, "wt_connections_refused", 1);
    return NULL;
  }
  /* Addresses the host does not count (its trusted list: admitted == 0)
   * are not limited here either. */
  wt_ho_addr_t *a = ho_get(ep, from, 1);
  if (!a || (admitted && a->n >= ep->conf.max_half_open_per_address)) {
    if (a && a->n == 0) {
      vcg_htab_remove(&ep->half_open_by_addr, &a->node);
      free(a);
    }
    ep->host->conn_release(ep->w, from, admitted);
    ep->host->counter_add(ep->w, "wt_half_open_refused", 1);
    return NULL;
  }
  a->n++;
  ep->half_open++;
  wt_accept_t acc = { &hd, from, validated ? &odcid : NULL, admitted };
  void *owner = ep->cb.accept(ep->cb.ud, l, &acc);
  if (!owner) {
    vcg__wt_ep_half_open_end(ep, from);
    ep->host->conn_release(ep->w, from, admitted);
  }
  return owner;
}

static void on_datagram(wt_listener_t *l, const uint8_t *data, size_t len,
                        const struct sockaddr *from) {
  wt_endpoint_t *ep = l->ep;
  ngtcp2_version_cid vc;

  int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, WT_SCID_LEN);
  if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
    if (ep->accepting) send_version_negotiation(l, &vc, from);
    return;
  }
  if (rv != 0) return; /* not QUIC: ignored */

  void *owner = vcg__wt_ep_cid_find(ep, vc.dcid, vc.dcidlen);
  if (!owner) {
    if (!(data[0] & 0x80)) {
      send_stateless_reset(l, vc.dcid, vc.dcidlen, len, from);
      return;
    }
    /* A long header: maybe a new connection. */
    owner = accept_initial(l, data, len, from);
    if (!owner) return;
  }
  ep->cb.packet(owner, l, from, data, len);
}

/* Readable: a few recvmmsg batches (a bound, so that the other handles
 * of the loop get their turn; epoll is level-triggered, the rest is read
 * next time).  With GRO a slot is a run of one sender's datagrams, each
 * handled on its own.  Writable: the EAGAIN queue drains. */
static void on_poll(uv_poll_t *h, int status, int events) {
  wt_listener_t *l = h->data;
  wt_endpoint_t *ep = l->ep;
  if (status < 0) return; /* a socket error (ICMP): the next read clears it */
  if (events & UV_WRITABLE) lis_drain_queue(l);
  if (!(events & UV_READABLE)) return;
  for (int round = 0; round < WT_RX_ROUNDS && !ep->stopping; round++) {
    int r = vcg__udp_recv(l->fd, &ep->rx, ep->rxbuf, WT_RX_SLOT, WT_RX_SLOTS);
    if (r <= 0) return; /* drained, or an error the next read clears */
    for (int i = 0; i < r && !ep->stopping; i++) {
      const uint8_t *d = ep->rxbuf + (size_t)i * WT_RX_SLOT;
      const struct sockaddr *from = (const struct sockaddr *)&ep->rx.from[i];
      size_t len = ep->rx.len[i], seg = ep->rx.segsize[i];
      for (size_t off = 0; off < len; off += seg)
        on_datagram(l, d + off, len - off < seg ? len - off : seg, from);
    }
    if (r < WT_RX_SLOTS) return;
  }
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

static int lis_open(wt_endpoint_t *ep, wt_listener_t *l, const char *spec) {
  char where[80];
  l->ep = ep;
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
    ep->host->log(ep->w, NULL, VCG_LOG_ERROR, "cannot bind udp %s: %s",
                  vcg__wt_addr_str((struct sockaddr *)&l->addr, where, sizeof(where)),
                  vcg_strerror(rc));
    return rc;
  }
  l->addrlen = sizeof(l->addr);
  getsockname(fd, (struct sockaddr *)&l->addr, &l->addrlen);
  if ((rc = uv_poll_init_socket(ep->loop, &l->poll, fd)) != 0) {
    close(fd);
    return rc;
  }
  l->poll.data = l;
  l->inited = 1;
  l->fd = fd; /* closed once the poll handle is */
  ep->open_handles++;
  l->gso = gso_probe(fd);
  vcg__udp_gro_enable(fd);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &(int){ 4 << 20 }, sizeof(int));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &(int){ 4 << 20 }, sizeof(int));
  if ((rc = uv_poll_start(&l->poll, UV_READABLE, on_poll)) != 0) return rc;
  if (ep->host->worker_index(ep->w) == 0) {
    char url[128], have[8];
    vcg__wt_addr_str((struct sockaddr *)&l->addr, where, sizeof(where));
    ep->host->log(ep->w, NULL, VCG_LOG_INFO, "listening on https://%s (webtransport, udp)",
                  where);
    /* The first listener is the one pages are told about (GET
     * /.well-known/vcgate/webtransport on the WebSocket listener). */
    snprintf(url, sizeof(url), "https://%s", where);
    if (ep->host->info_get(ep->w, "webtransport.url", have, sizeof(have)) == VCG_ENOENT)
      ep->host->info_set(ep->w, "webtransport.url", url);
  }
  return 0;
}

int vcg__wt_ep_init(wt_endpoint_t *ep, const vcg_host_api_t *host, vcg_worker_t *w,
                    const uint8_t *reset_secret, const wt_endpoint_conf_t *conf,
                    const wt_endpoint_cb_t *cb) {
  ep->host = host;
  ep->w = w;
  ep->loop = host->loop(w);
  ep->reset_secret = reset_secret;
  ep->cb = *cb;
  ep->conf = *conf;
  ep->accepting = 1;
  uint64_t seed[2];
  if (gnutls_rnd(GNUTLS_RND_NONCE, seed, sizeof(seed)) != 0) return VCG_EIO;
  if (vcg_htab_init(&ep->half_open_by_addr, 16, seed[1]) != 0) return VCG_ENOMEM;
  return vcg_htab_init(&ep->cids, 64, seed[0]);
}

int vcg__wt_ep_start(wt_endpoint_t *ep, const char *listen) {
  const char *p = listen;
  int rc;
  while (p && *p) {
    char spec[96];
    size_t n = strcspn(p, ", ");
    if (n == 0) {
      p++;
      continue;
    }
    if (n >= sizeof(spec) || ep->nlis >= WT_MAX_LISTENERS) return VCG_EINVAL;
    memcpy(spec, p, n);
    spec[n] = '\0';
    if ((rc = lis_open(ep, &ep->lis[ep->nlis], spec)) != 0) {
      if (ep->lis[ep->nlis].inited) ep->nlis++;
      return rc;
    }
    ep->nlis++;
    p += n;
  }
  return ep->nlis ? 0 : VCG_EINVAL;
}

void vcg__wt_ep_handle_ref(wt_endpoint_t *ep) { ep->open_handles++; }

void vcg__wt_ep_handle_closed(wt_endpoint_t *ep) {
  ep->open_handles--;
  if (ep->stopping && ep->open_handles == 0 && ep->stopped) {
    void (*cb)(void *) = ep->stopped;
    ep->stopped = NULL;
    cb(ep->stopped_ud); /* may free ep */
  }
}

static void on_udp_closed(uv_handle_t *h) {
  wt_listener_t *l = h->data;
  close(l->fd);
  l->fd = -1;
  lis_queue_free(l);
  vcg__wt_ep_handle_closed(l->ep);
}

void vcg__wt_ep_stop(wt_endpoint_t *ep, void (*stopped)(void *ud), void *ud) {
  /* What the connections wrote last (their CONNECTION_CLOSEs went out
   * already) still goes. */
  vcg__wt_ep_flush(ep);
  ep->stopping = 1;
  ep->accepting = 0;
  ep->stopped = stopped;
  ep->stopped_ud = ud;
  /* Hold one count ourselves so no close callback can finish the stop
   * before every close has been started. */
  ep->open_handles++;
  for (size_t i = 0; i < ep->nlis; i++) {
    if (ep->lis[i].inited && !uv_is_closing((uv_handle_t *)&ep->lis[i].poll)) {
      uv_poll_stop(&ep->lis[i].poll);
      uv_close((uv_handle_t *)&ep->lis[i].poll, on_udp_closed);
    }
  }
  vcg_htab_free(&ep->cids);
  /* The connections are gone (the layer above stopped first), and with
   * them every half-open count; free what is left regardless. */
  for (vcg_hnode_t *x; (x = vcg_htab_pop(&ep->half_open_by_addr));)
    free(vcg_container_of(x, wt_ho_addr_t, node));
  vcg_htab_free(&ep->half_open_by_addr);
  vcg__wt_ep_handle_closed(ep);
}
