/*
 * conn.h -- one QUIC connection of the WebTransport plugin: the ngtcp2
 * connection and its GnuTLS session, the handshake, ngtcp2's callbacks,
 * timers, the write loop and the closing and draining periods; and the
 * worker's set of connections with its deferred flush.
 *
 * Layering, as in ngtcp2's own server example: this layer sits on the
 * endpoint (endpoint.h: sockets, connection IDs) and under the HTTP/3 and
 * WebTransport session layer (session.h).  It knows nothing of HTTP/3: it
 * calls up only through the wt_conn_cb_t table the session layer fills
 * (as nghttp3's callbacks do), and the session layer calls down through
 * the functions below.
 *
 * Output is batched: anything that may produce packets (a received
 * datagram, a packet from the host, a close) only marks the connection
 * dirty (an expired timer too), and one uv_check pass per loop iteration
 * runs the write loop of each dirty connection and sends what they all
 * wrote in one sendmmsg (vcg__wt_ep_flush).  This keeps every ngtcp2 write call outside
 * ngtcp2 callbacks and outside reentrant host calls, and coalesces many
 * small writes into full QUIC packets.
 *
 * Ownership: the set owns every connection; a connection owns its
 * ngtcp2_conn, its GnuTLS session, its timer, its connection IDs (on the
 * endpoint's table) and its output records (c->out).  c->app belongs to
 * the session layer, which frees it in its `release` callback; that runs
 * when the connection's memory is freed (after its timer closed), never
 * synchronously under a callback.
 */
#ifndef VCG_WT_CONN_H
#define VCG_WT_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <gnutls/gnutls.h>
#include <vcgate/plugin.h>

#include "endpoint.h"
#include "stream.h"
#include "tls.h"

#define WT_MAX_PKTLEN 1452           /* our largest UDP payload */
#define WT_STREAM_BATCH 32           /* uni streams opened ahead of writing */
#define WT_STREAM_PREFIX_MAX 64      /* a WebTransport stream's prefix, rounded up */
#define WT_BIDI_WINDOW (64u << 10)   /* the CONNECT stream's window */

typedef struct wt_conn wt_conn_t;
typedef struct wt_connset wt_connset_t;

/* The calls up into the session layer.  Those returning int return 0, or
 * nonzero to fail the connection (with the HTTP/3 error given to
 * vcg__wt_conn_fail() first, else an internal error). */
typedef struct wt_conn_cb {
  /* 1-RTT keys are in place: the application may open its streams. */
  int (*ready)(wt_conn_t *c);
  /* The peer opened stream id (never called for our own streams). */
  int (*stream_open)(wt_conn_t *c, int64_t id);
  /* Bytes of a peer stream, in order; sud is what the session layer set
   * with vcg__wt_conn_set_stream_ud(). */
  int (*stream_data)(wt_conn_t *c, int64_t id, const uint8_t *data, size_t len,
                     int fin, void *sud);
  int (*stream_reset)(wt_conn_t *c, int64_t id, void *sud);
  /* A peer-initiated or bidirectional stream closed in ngtcp2. */
  int (*stream_close)(wt_conn_t *c, int64_t id, void *sud);
  /* The peer acknowledged bytes of a prioritised stream (stream.h). */
  void (*acked)(wt_conn_t *c, wt_ostream_t *os);
  int (*datagram)(wt_conn_t *c, const uint8_t *data, size_t len);
  /* A packet record was not yet on the wire when its deadline passed: the
   * layer takes the packet out (vcg__wt_os_take_packet) and drops it. */
  void (*shed)(wt_conn_t *c, wt_ostream_t *os);
  /* A packet record is about to go on the wire: the layer tells the host
   * (relay latency).  Returns 1 when the host shed it after all (the
   * layer has taken the packet out), 0 to write it. */
  int (*take)(wt_conn_t *c, wt_ostream_t *os);
  /* Around each write loop. */
  void (*before_write)(wt_conn_t *c);
  void (*after_write)(wt_conn_t *c);
  /* The deadline set with vcg__wt_conn_set_deadline() passed. */
  void (*deadline)(wt_conn_t *c);
  /* The connection stopped carrying traffic (closing, draining, idle or
   * freed); may be called more than once. */
  void (*gone)(wt_conn_t *c);
  /* The connection's memory is being freed (a loop iteration after it
   * went DEAD): free c->app. */
  void (*release)(wt_conn_t *c);
} wt_conn_cb_t;

/* Settings every connection of the set gets (from the plugin's options).
 * A reload changes them for connections made afterwards; a live one keeps
 * what its handshake announced (c->max_msg, c->max_client_streams). */
typedef struct wt_conn_conf {
  uint64_t idle_timeout_ms;
  uint64_t handshake_timeout_ms; /* a half-open connection is dropped then */
  size_t max_sessions;           /* connections at once */
  size_t max_msg;                /* core.max_message_size */
  uint64_t max_client_streams;   /* per connection, then session rotation */
  uint64_t connection_window;    /* bytes a client may have in flight */
  uint64_t max_concurrent_streams; /* client uni streams open at once */
} wt_conn_conf_t;

struct wt_connset {
  const vcg_host_api_t *host;
  vcg_worker_t *w;
  uv_loop_t *loop;
  wt_endpoint_t *ep;             /* borrowed: sockets and connection IDs */
  gnutls_priority_t prio;        /* borrowed: process-wide */
  vcg__wt_cred_t *cred;          /* one reference: what new handshakes use */
  const wt_conn_cb_t *cb;        /* the session layer's */
  wt_conn_conf_t conf;
  int draining;                  /* the session layer refuses new sessions */
  uv_check_t check;              /* deferred flush of dirty connections */
  uv_idle_t idle;                /* keeps the poll from blocking meanwhile */
  int flush_armed, stopping;
  wt_conn_t *conns;              /* all live connections (owned) */
  size_t nconns;
  wt_conn_t *dirty;              /* connections with output to flush */
};

enum wt_conn_state { WT_C_ACTIVE = 0, WT_C_CLOSING, WT_C_DRAINING, WT_C_DEAD };

struct wt_conn {
  /* Read by the session layer. */
  wt_connset_t *set;
  struct sockaddr_storage remote;
  socklen_t remotelen;
  wt_outq_t out;                 /* output records */
  void *app;                     /* the session layer's state, or NULL */

  /* The connection layer's own. */
  wt_conn_t *prev, *next;        /* set->conns */
  wt_conn_t *dnext;              /* set->dirty */
  int dirty;
  uint64_t flush_gen;            /* conn_flush calls, from 1 */
  size_t max_msg;                /* set->conf's at creation: the stream window */
  uint64_t max_client_streams;   /* set->conf's at creation */

  wt_listener_t *lis;
  ngtcp2_conn *qc;
  gnutls_session_t tls;
  vcg__wt_cred_t *cred;          /* one reference: what tls was made with */
  ngtcp2_crypto_conn_ref cref;
  struct sockaddr_storage local;
  socklen_t locallen;
  uv_timer_t timer;
  uint64_t timer_due;            /* loop time (ms) the timer was set for */
  int timer_inited;
  wt_cident_t *cids;             /* CIDs registered for this connection */
  ngtcp2_cid odcid;              /* the client's original DCID */
  int odcid_registered;
  int state;                     /* enum wt_conn_state */
  int admitted;                  /* host->conn_admit()'s answer ... */
  int holds_admission;           /* ... released once, in conn_free */
  int half_open;                 /* counted by the endpoint until handshake */
  uint64_t app_error;            /* H3 error to close with, 0 = none */
  uint8_t *close_pkt;            /* CONNECTION_CLOSE, resent while closing */
  size_t close_pktlen;
  uint64_t app_deadline;         /* ns; cb->deadline then, 0 = none */
};

/* ---- the set (per worker) ---- */
/* cred: the caller's reference passes to the set. */
int vcg__wt_connset_init(wt_connset_t *cs, const vcg_host_api_t *host, vcg_worker_t *w,
                         wt_endpoint_t *ep, gnutls_priority_t prio, vcg__wt_cred_t *cred,
                         const wt_conn_cb_t *cb, const wt_conn_conf_t *conf);
/* A reload: connections made from now on get conf and, when cred is not
 * NULL, the credentials cred (the caller's reference passes to the set;
 * live connections keep theirs). */
void vcg__wt_connset_reconf(wt_connset_t *cs, const wt_conn_conf_t *conf,
                            vcg__wt_cred_t *cred);
/* Close every connection at once (best effort CONNECTION_CLOSE with the
 * application error app_error) and the set's handles. */
void vcg__wt_connset_stop(wt_connset_t *cs, uint64_t app_error);
/* The endpoint's callbacks (wt_endpoint_cb_t), with ud = the set. */
void *vcg__wt_conn_accept(void *set, wt_listener_t *l, const wt_accept_t *a);
void vcg__wt_conn_packet(void *conn, wt_listener_t *l, const struct sockaddr *from,
                         const uint8_t *data, size_t len);

/* The connection flow-control window a client gets: connection_window,
 * but never less than one message of core.max_message_size. */
uint64_t vcg__wt_conn_window(const wt_conn_conf_t *conf);

/* ---- one connection, for the session layer ---- */
int vcg__wt_conn_active(const wt_conn_t *c);
/* Output is due: flush in this loop iteration's check phase. */
void vcg__wt_conn_mark(wt_conn_t *c);
/* Close the connection with an HTTP/3 application error. */
void vcg__wt_conn_close_app(wt_conn_t *c, uint64_t h3err);
/* From inside a callback: fail the connection with h3err; returns -1. */
int vcg__wt_conn_fail(wt_conn_t *c, uint64_t h3err);
/* Give the peer back n bytes of flow-control credit on stream id and on
 * the connection, or on the connection only. */
void vcg__wt_conn_credit(wt_conn_t *c, int64_t id, size_t n);
void vcg__wt_conn_credit_conn(wt_conn_t *c, uint64_t n);
/* The session layer is done with peer stream id: forget its user data
 * and, when `more`, give the peer its stream credit back (ngtcp2 0.12.1
 * never retires client streams whose send side we never use). */
void vcg__wt_conn_stream_done(wt_conn_t *c, int64_t id, int more);
void vcg__wt_conn_set_stream_ud(wt_conn_t *c, int64_t id, void *sud);
/* Reset both directions / stop reading, with an HTTP/3 error code. */
void vcg__wt_conn_reset_stream(wt_conn_t *c, int64_t id, uint64_t code);
void vcg__wt_conn_stop_reading(wt_conn_t *c, int64_t id, uint64_t code);
/* Open a unidirectional stream for os (its id is set).  0 or an ngtcp2
 * error (NGTCP2_ERR_STREAM_ID_BLOCKED: no credit yet). */
int vcg__wt_conn_open_uni(wt_conn_t *c, wt_ostream_t *os);
/* Whether a datagram with len payload bytes fits the peer's limits. */
int vcg__wt_conn_dgram_fits(wt_conn_t *c, size_t len);
/* Call cb->deadline at `ns` (vcg__wt_now() time), 0 for never. */
void vcg__wt_conn_set_deadline(wt_conn_t *c, uint64_t ns);

/* ---- inside the connection layer ---- */
/* conn_write.c: write what the output queue holds, as far as flow and
 * congestion control allow.  0 or a negative ngtcp2 error (conn.c then
 * closes the connection). */
int vcg__wt_conn_write(wt_conn_t *c);

#endif /* VCG_WT_CONN_H */
