/*
 * endpoint.h -- the UDP side of the WebTransport plugin, one per worker:
 * its sockets (recvmmsg with GRO in; out, the GSO runs of every
 * connection of a loop turn in one sendmmsg), the table that maps server
 * connection IDs to connections, version negotiation and stateless reset.
 *
 * The bottom of the QUIC layers.  It knows nothing of connections: it
 * stores an opaque owner per connection ID and hands datagrams up through
 * the two callbacks of wt_endpoint_cb_t, which the layer above fills in
 * (conn.c's, wired by webtransport.c).  The connection layer calls down
 * into it to send, to register its IDs and to count its loop handles.
 *
 * Ownership: the endpoint owns its sockets and the table's buckets; each
 * wt_cident_t belongs to the owner that registered it (on its own list)
 * and is freed by vcg__wt_ep_cid_del*().
 */
#ifndef VCG_WT_ENDPOINT_H
#define VCG_WT_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>
#include <ngtcp2/ngtcp2.h>
#include <vcgate/plugin.h>

#include "htab.h"
#include "udp_recv.h"
#include "udp_send.h"

#define WT_MAX_LISTENERS 4
#define WT_SCID_LEN 18
#define WT_RESET_SECRET_LEN 32
/* UDP GSO: one sendmsg carries a run of equal-sized packets (udp_send.h). */
#define WT_GSO_MAX_SEGS VCG_UDP_GSO_MAX_SEGS
#define WT_GSO_MAX_BYTES VCG_UDP_GSO_MAX_BYTES
/* recvmmsg: 16 slots of 64 KiB, each a datagram or (GRO) a run of them
 * from one sender; a wakeup reads at most WT_RX_ROUNDS batches. */
#define WT_RX_SLOT VCG_UDP_RX_SLOT
#define WT_RX_SLOTS VCG_UDP_RX_MAX
#define WT_RX_ROUNDS 4
/* The runs of one loop turn, for every connection of the worker, wait in
 * ep->txbuf and go out in one sendmmsg (vcg__wt_ep_flush). */
#define WT_TX_RUNS VCG_UDP_RUNS_MAX
#define WT_TX_BYTES (256u << 10)
/* Datagrams queued while the socket buffer is full. */
#define WT_TX_QUEUE_MAX 1024

/* The clock of every ngtcp2 call: nanoseconds, monotonic. */
static inline uint64_t vcg__wt_now(void) { return uv_hrtime(); }

typedef struct wt_endpoint wt_endpoint_t;

/* A datagram the full socket buffer refused, sent when it drains. */
typedef struct wt_sendreq {
  struct wt_sendreq *next;
  struct sockaddr_storage to;
  size_t len;
  uint8_t data[];
} wt_sendreq_t;

/* One UDP socket, ours (not a uv_udp_t: libuv 1.44 passes no control
 * messages, and GRO needs them), watched by a poll handle. */
typedef struct wt_listener {
  uv_poll_t poll;
  wt_endpoint_t *ep;
  struct sockaddr_storage addr;  /* the bound address (path local) */
  socklen_t addrlen;
  int inited;                    /* poll handle needs uv_close */
  int fd;                        /* the socket (owned), closed after poll */
  int gso;                       /* UDP_SEGMENT works on this socket */
  wt_sendreq_t *qhead, *qtail;   /* EAGAIN queue, in order (owned) */
  size_t nsending;               /* its length */
} wt_listener_t;

/* One registered connection ID, a node of the endpoint's table. */
typedef struct wt_cident {
  vcg_hnode_t node;              /* in ep->cids */
  struct wt_cident *cnext;       /* the owner's list */
  ngtcp2_cid cid;
  void *owner;                   /* borrowed: what cb.packet receives */
} wt_cident_t;

/* A client Initial the endpoint lets in, for the layer above. */
typedef struct wt_accept {
  const ngtcp2_pkt_hd *hd;       /* the Initial's header (borrowed) */
  const struct sockaddr *from;
  const ngtcp2_cid *odcid;       /* after a Retry: the client's first DCID */
  int admitted;                  /* host->conn_admit()'s answer (0 or 1) */
} wt_accept_t;

/* The calls up, filled by the layer above. */
typedef struct wt_endpoint_cb {
  /* A datagram whose DCID `owner` registered.  data is borrowed. */
  void (*packet)(void *owner, wt_listener_t *l, const struct sockaddr *from,
                 const uint8_t *data, size_t len);
  /* A client Initial for no known CID that passed ngtcp2_accept, address
   * validation when it is required, the half-open limits and
   * host->conn_admit(): make a connection that registers its CIDs, takes
   * over a->admitted (it calls host->conn_release() once when freed) and
   * counts as half-open until vcg__wt_ep_half_open_end(); return its owner
   * pointer.  NULL drops the packet (the endpoint then undoes both). */
  void *(*accept)(void *ud, wt_listener_t *l, const wt_accept_t *a);
  void *ud;
} wt_endpoint_cb_t;

/* When a tokenless Initial is answered with Retry (option `retry`). */
enum wt_retry_mode { WT_RETRY_AUTO = 0, WT_RETRY_ALWAYS, WT_RETRY_NEVER };

/* Address validation and the cost of half-open connections. */
typedef struct wt_endpoint_conf {
  int retry;                     /* enum wt_retry_mode */
  size_t retry_threshold;        /* auto: Retry from this many half-open */
  size_t max_half_open_per_address; /* the core's trusted addresses exempt */
  const uint8_t *token_secret;   /* WT_TOKEN_SECRET_LEN bytes, process-wide */
} wt_endpoint_conf_t;

#define WT_TOKEN_SECRET_LEN 32
/* How long a Retry token stays valid: one round trip is enough. */
#define WT_RETRY_TOKEN_TIMEOUT_NS (10ull * 1000000000ull)

/* A client address with half-open connections (ep->half_open_by_addr). */
typedef struct wt_ho_addr {
  vcg_hnode_t node;
  int family;
  uint8_t addr[16];
  size_t n;
} wt_ho_addr_t;

/* A run in ep->txbuf: packets of one connection to one peer, every one
 * but the last segsize bytes long (UDP GSO cuts it at that size). */
typedef struct wt_txrun {
  wt_listener_t *lis;
  struct sockaddr_storage to;
  socklen_t tolen;
  size_t off, len, segsize;
} wt_txrun_t;

/* The run one write loop is building at the end of ep->txbuf; committed
 * to the turn's runs when it cannot grow or the loop ends. */
typedef struct wt_txbatch {
  wt_listener_t *lis;
  struct sockaddr_storage to;
  socklen_t tolen;
  size_t len;                    /* bytes after ep->txused */
  size_t segsize;                /* the first packet's size */
  size_t nsegs;
  int closed;                    /* a shorter packet ended the run */
} wt_txbatch_t;

struct wt_endpoint {
  const vcg_host_api_t *host;
  vcg_worker_t *w;
  uv_loop_t *loop;
  const uint8_t *reset_secret;   /* WT_RESET_SECRET_LEN bytes, process-wide */
  wt_endpoint_cb_t cb;
  wt_listener_t lis[WT_MAX_LISTENERS];
  size_t nlis;
  vcg_htab_t cids;               /* wt_cident_t by CID; randomly seeded */
  int accepting;                 /* 0 once draining: no new connections */
  wt_endpoint_conf_t conf;
  size_t half_open;              /* connections before handshake completion */
  vcg_htab_t half_open_by_addr;  /* wt_ho_addr_t (owned) by client address */
  /* Loop handles whose close callback is still due, the endpoint's and the
   * connections' (vcg__wt_ep_handle_*): when the last one of a stopping
   * endpoint has closed, stopped(stopped_ud) runs. */
  size_t open_handles;
  int stopping;
  void (*stopped)(void *ud);
  void *stopped_ud;
  uint64_t sr_window;            /* stateless reset rate limit window (ns) */
  unsigned sr_count;
  wt_txrun_t runs[WT_TX_RUNS];   /* the turn's committed runs */
  size_t nruns;
  size_t txused;                 /* bytes of txbuf in committed runs */
  vcg__udp_rx_t rx;              /* recvmmsg headers */
  uint8_t txbuf[WT_TX_BYTES];               /* the turn's packets */
  uint8_t rxbuf[WT_RX_SLOTS * WT_RX_SLOT];  /* recvmmsg slots */
};

/* Prepare ep (embedded in a zeroed instance). */
int vcg__wt_ep_init(wt_endpoint_t *ep, const vcg_host_api_t *host, vcg_worker_t *w,
                    const uint8_t *reset_secret, const wt_endpoint_conf_t *conf,
                    const wt_endpoint_cb_t *cb);
/* A connection made by cb.accept completed its handshake or is gone
 * before it: it no longer counts as half-open. */
void vcg__wt_ep_half_open_end(wt_endpoint_t *ep, const struct sockaddr *from);
/* Bind the listeners of `listen` (one address or a comma list). */
int vcg__wt_ep_start(wt_endpoint_t *ep, const char *listen);
/* Close the sockets; stopped(ud) runs once every counted handle closed
 * (possibly at once, possibly in a later loop iteration). */
void vcg__wt_ep_stop(wt_endpoint_t *ep, void (*stopped)(void *ud), void *ud);
/* A loop handle of the layers above was opened / finished closing. */
void vcg__wt_ep_handle_ref(wt_endpoint_t *ep);
void vcg__wt_ep_handle_closed(wt_endpoint_t *ep);

/* Send one datagram now, after the turn's runs (queued, bounded, when the
 * socket buffer is full). */
void vcg__wt_ep_send(wt_listener_t *l, const struct sockaddr *to,
                     const uint8_t *p, size_t len);
/* Send the turn's runs: one sendmmsg per listener.  The connection layer
 * calls it at the end of its flush pass. */
void vcg__wt_ep_flush(wt_endpoint_t *ep);

void vcg__wt_batch_init(wt_txbatch_t *b, wt_listener_t *l);
/* Where the next packet is written (commits the run first if the packet
 * cannot join it, and sends the turn's runs first if ep->txbuf is full).
 * Stays put between calls while nothing was added. */
uint8_t *vcg__wt_batch_room(wt_txbatch_t *b, size_t maxudp);
/* The n bytes just written at vcg__wt_batch_room() are a packet to `to`. */
void vcg__wt_batch_add(wt_txbatch_t *b, const struct sockaddr *to, size_t n);
/* Commit the run to the turn (sent by vcg__wt_ep_flush). */
void vcg__wt_batch_flush(wt_txbatch_t *b);

/* ---- connection IDs ---- */
void *vcg__wt_ep_cid_find(wt_endpoint_t *ep, const uint8_t *p, size_t n);
/* Register cid for owner on its list.  0, VCG_EEXIST, VCG_ENOMEM. */
int vcg__wt_ep_cid_add(wt_endpoint_t *ep, wt_cident_t **list, const ngtcp2_cid *cid,
                       void *owner);
void vcg__wt_ep_cid_del(wt_endpoint_t *ep, wt_cident_t **list, const ngtcp2_cid *cid);
void vcg__wt_ep_cid_del_all(wt_endpoint_t *ep, wt_cident_t **list);
/* A random connection ID of len bytes that no connection uses.  0 or
 * VCG_EIO. */
int vcg__wt_ep_new_cid(wt_endpoint_t *ep, ngtcp2_cid *cid, size_t len);
/* The stateless reset token of cid (from the process-wide secret). */
int vcg__wt_ep_reset_token(const wt_endpoint_t *ep, uint8_t *token, const ngtcp2_cid *cid);

#endif /* VCG_WT_ENDPOINT_H */
