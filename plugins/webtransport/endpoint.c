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
      rc = vcg__udp_send_gso(l->fd, to, vcg__wt_sa_len(to), buf, len, segsize);
      if (rc == 0) return;
      if (vcg__udp_gso_unsupported(rc)) {
        /* Once and for all: send this run and every later one without. */
        l->gso = 0;
        wt_endpoint_t *ep = l->ep;
        ep->host->log(ep->w, NULL, VCG_LOG_WARN,
                      "udp GSO refused (%s): one datagram per packet from now on",
                      vcg_strerror(rc));
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

void vcg__wt_ep_send(wt_listener_t *l, const struct sockaddr *to,
                     const uint8_t *p, size_t len) {
  lis_send_segs(l, to, p, len, len);
}

/* --------------------------------------------------------- send batches */

void vcg__wt_batch_init(wt_txbatch_t *b, wt_listener_t *l) {
  memset(b, 0, sizeof(*b));
  b->lis = l;
}

void vcg__wt_batch_flush(wt_txbatch_t *b) {
  if (b->len > 0)
    lis_send_segs(b->lis, (const struct sockaddr *)&b->to, b->lis->ep->txbuf,
                  b->len, b->segsize);
  b->len = b->segsize = b->nsegs = 0;
  b->closed = 0;
}

uint8_t *vcg__wt_batch_room(wt_txbatch_t *b, size_t maxudp) {
  if (b->closed || b->nsegs >= WT_GSO_MAX_SEGS || WT_GSO_MAX_BYTES - b->len < maxudp)
    vcg__wt_batch_flush(b);
  return b->lis->ep->txbuf + b->len;
}

/* The packet joins the run, or, when it cannot (larger than the run's
 * segments, or for another address), the run is sent and the packet
 * starts the next one. */
void vcg__wt_batch_add(wt_txbatch_t *b, const struct sockaddr *to, size_t n) {
  uint8_t *txbuf = b->lis->ep->txbuf;
  socklen_t tolen = vcg__wt_sa_len(to);
  if (b->nsegs > 0 &&
      (n > b->segsize || tolen != b->tolen || memcmp(&b->to, to, tolen) != 0)) {
    size_t at = b->len;
    vcg__wt_batch_flush(b);
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

/* With recvmmsg, libuv splits the buffer into 64 KiB slots, one datagram
 * each: it must be a multiple of that size.  The buffer is the endpoint's
 * and is reused at once, so nothing is freed on UV_UDP_MMSG_FREE. */
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  wt_listener_t *l = h->data;
  (void)hint;
  buf->base = (char *)l->ep->rxbuf;
  buf->len = sizeof(l->ep->rxbuf);
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
  /* AF_UNSPEC: libuv makes no socket of its own, we open ours below.
   * RECVMMSG: up to WT_RX_SLOTS datagrams per system call. */
  if ((rc = uv_udp_init_ex(ep->loop, &l->udp, AF_UNSPEC | UV_UDP_RECVMMSG)) != 0) {
    close(fd);
    return rc;
  }
  l->udp.data = l;
  l->inited = 1;
  ep->open_handles++;
  if ((rc = uv_udp_open(&l->udp, fd)) != 0) {
    close(fd);
    return rc;
  }
  l->fd = fd;
  l->gso = gso_probe(fd);
  uv_send_buffer_size((uv_handle_t *)&l->udp, &(int){ 4 << 20 });
  uv_recv_buffer_size((uv_handle_t *)&l->udp, &(int){ 4 << 20 });
  if ((rc = uv_udp_recv_start(&l->udp, on_alloc, on_recv)) != 0) return rc;
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
  vcg__wt_ep_handle_closed(l->ep);
}

void vcg__wt_ep_stop(wt_endpoint_t *ep, void (*stopped)(void *ud), void *ud) {
  ep->stopping = 1;
  ep->accepting = 0;
  ep->stopped = stopped;
  ep->stopped_ud = ud;
  /* Hold one count ourselves so no close callback can finish the stop
   * before every close has been started. */
  ep->open_handles++;
  for (size_t i = 0; i < ep->nlis; i++) {
    if (ep->lis[i].inited && !uv_is_closing((uv_handle_t *)&ep->lis[i].udp)) {
      uv_udp_recv_stop(&ep->lis[i].udp);
      uv_close((uv_handle_t *)&ep->lis[i].udp, on_udp_closed);
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
