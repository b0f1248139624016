/*
 * wt_int.h -- internal types shared by the units of the WebTransport
 * plugin: quic.c (endpoint and QUIC connections), wt.c (HTTP/3 and
 * WebTransport session on a connection) and webtransport.c (descriptor).
 *
 * Ownership in one paragraph: the instance owns its listeners and every
 * connection; a connection owns its ngtcp2_conn, its GnuTLS session, its
 * timer and every stream record (wt_istream_t, wt_ostream_t).  An output
 * item (wt_ostream_t with pkt != NULL) owns one reference of its packet,
 * released exactly once by wt_os_free() when the item is written and
 * acknowledged, dropped, reset, or when the connection is freed.
 */
#ifndef VCG_WT_INT_H
#define VCG_WT_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <gnutls/gnutls.h>
#include <vcgate/plugin.h>

#include "h3.h"
#include "tls.h"
#include "udp_send.h"

/* ---- configuration (filled by the host from the option table) ---- */
typedef struct vcg_wt_conf {
  char *listen;            /* "127.0.0.1:4433", "[::1]:4433", comma list */
  int64_t idle_timeout;    /* ms */
  char *tls_cert;
  char *tls_key;
  int64_t max_sessions;    /* concurrent QUIC connections per worker */
  char *cert_hash_file;
} vcg_wt_conf_t;

#define WT_MAX_LISTENERS 4
#define WT_SCID_LEN 18
#define WT_MAX_PKTLEN 1452           /* our largest UDP payload */
#define WT_DGRAM_MAX_PACKET 1200     /* larger packets always go on streams */
#define WT_STREAM_BATCH 32           /* uni streams opened ahead of writing */
/* The transport's own hard cap on a session's output queue, twice the
 * core's default queue limits; the host's drop policy acts long before. */
#define WT_QUEUE_HARD_PACKETS 8192
#define WT_QUEUE_HARD_BYTES (8u << 20)
#define WT_RESET_SECRET_LEN 32
/* UDP GSO: one sendmsg carries a run of equal-sized packets (udp_send.h). */
#define WT_GSO_MAX_SEGS VCG_UDP_GSO_MAX_SEGS
#define WT_GSO_MAX_BYTES VCG_UDP_GSO_MAX_BYTES
/* recvmmsg: libuv hands each datagram one 64 KiB slot of the read buffer;
 * 16 slots read 16 datagrams per system call.  Only the first page or so
 * of each slot is ever touched, so the resident cost is small. */
#define WT_RX_SLOT (64u << 10)
#define WT_RX_SLOTS 16

/* Process-wide state: made in init(), read-only afterwards, shared by all
 * workers' instances. */
struct vcg_plugin_state {
  const vcg_host_api_t *host;
  vcg__wt_tls_t tls;
  uint8_t reset_secret[WT_RESET_SECRET_LEN]; /* stateless reset token key */
};

typedef struct wt_conn wt_conn_t;

/* ---- CID demultiplexing table ---- */
typedef struct wt_cident {
  struct wt_cident *next;      /* hash chain */
  struct wt_cident *cnext;     /* the owning connection's list */
  ngtcp2_cid cid;
  wt_conn_t *conn;
} wt_cident_t;

typedef struct wt_cidtab {
  wt_cident_t **b;
  size_t nb, n;
  uint64_t seed;               /* random: client-chosen CIDs hash evenly */
} wt_cidtab_t;

/* ---- one UDP socket ---- */
typedef struct wt_listener {
  uv_udp_t udp;
  vcg_instance_t *inst;
  struct sockaddr_storage addr;  /* the bound address (path local) */
  socklen_t addrlen;
  int inited;                    /* udp handle needs uv_close */
  int fd;                        /* the socket, sent on directly */
  int gso;                       /* UDP_SEGMENT works on this socket */
  size_t nsending;               /* async sends in flight (EAGAIN path) */
} wt_listener_t;

/* The packets of one write loop, accumulated in inst->txbuf and sent with
 * one sendmsg: every packet but the last is segsize bytes long (UDP GSO
 * cuts the buffer into segsize datagrams), all go to one peer. */
typedef struct wt_txbatch {
  wt_listener_t *lis;
  struct sockaddr_storage to;
  socklen_t tolen;
  size_t len;                    /* bytes in inst->txbuf */
  size_t segsize;                /* the first packet's size */
  size_t nsegs;
  int closed;                    /* a shorter packet ended the run */
} wt_txbatch_t;

/* ---- per-worker instance ---- */
struct vcg_instance {
  const vcg_host_api_t *host;
  vcg_plugin_state_t *st;
  const vcg_wt_conf_t *conf;
  vcg_worker_t *w;
  uv_loop_t *loop;
  wt_listener_t lis[WT_MAX_LISTENERS];
  size_t nlis;
  uv_check_t check;              /* deferred flush of dirty connections */
  uv_idle_t idle;                /* keeps the poll from blocking meanwhile */
  int flush_armed;
  wt_cidtab_t cids;
  wt_conn_t *conns;              /* all live connections */
  size_t nconns;
  wt_conn_t *dirty;              /* connections with output to flush */
  int draining, stopping;
  vcg_stopped_cb stop_cb;
  size_t open_handles;           /* handles whose close callback is due */
  size_t max_msg;                /* host->max_message_size(w) */
  uint64_t sr_window;            /* stateless reset rate limit window (ns) */
  unsigned sr_count;
  uint8_t txbuf[WT_GSO_MAX_BYTES];  /* the write loop's packets (GSO) */
  uint8_t rxbuf[WT_RX_SLOTS * WT_RX_SLOT]; /* recvmmsg slots */
};

/* ---- output: a stream we write, or one datagram ---- */
#define WT_ID_DGRAM (-1)
#define WT_ID_UNOPENED (-2)

typedef struct wt_chunk {
  struct wt_chunk *next;
  size_t len;
  uint8_t data[];
} wt_chunk_t;

typedef struct wt_ostream {
  struct wt_ostream *prev, *next;   /* conn->os_all */
  struct wt_ostream *oprev, *onext; /* conn output queue (not yet written) */
  int64_t id;                       /* stream id, WT_ID_DGRAM or UNOPENED */
  /* The bytes: hdr, then the packet, then the chunks (control streams). */
  uint8_t hdr[16];
  size_t hdrlen;
  vcg_packet_t *pkt;                /* one reference, or NULL */
  const uint8_t *pdata;
  size_t plen;
  wt_chunk_t *chead, *ctail;
  uint64_t cbase;                   /* stream offset of chead's first byte */
  uint64_t sent, total, acked;
  uint64_t blocked_gen;             /* == conn->flush_gen: flow blocked */
  unsigned fin : 1, fin_sent : 1, queued : 1, counted : 1;
  unsigned char tries;              /* datagram attempts without success */
} wt_ostream_t;

/* ---- input: a stream the client opened ---- */
typedef struct wt_istream {
  struct wt_istream *prev, *next;   /* conn->is_all */
  int64_t id;
  int kind;                         /* enum vcg__wt_prefix_kind */
  vcg__wt_prefix_t pfx;
  vcg__wt_frame_rd_t fr;            /* control and request streams */
  uint8_t *buf;                     /* WT payload, or a buffered frame */
  size_t len, cap;
  uint64_t uncredited;              /* bytes not yet given back (WT uni) */
  int settings_seen;
  int ignored;                      /* STOP_SENDING sent; drop the rest */
  vcg__wt_capsule_rd_t *caps;       /* CONNECT stream only */
} wt_istream_t;

enum wt_conn_state { WT_C_ACTIVE = 0, WT_C_CLOSING, WT_C_DRAINING, WT_C_DEAD };
enum wt_sess_state {
  WT_S_NONE = 0,   /* no CONNECT yet */
  WT_S_OPENING,    /* inside host->session_open */
  WT_S_OPEN,       /* 200 queued: packets flow */
  WT_S_CLOSING,    /* ended by either side; session_closed still due */
  WT_S_DONE,       /* session_closed called (or no session at all) */
  WT_S_REFUSED     /* an error response was sent */
};

struct wt_conn {
  wt_conn_t *prev, *next;        /* inst->conns */
  wt_conn_t *dnext;              /* inst->dirty */
  int dirty;
  uint64_t flush_gen;            /* conn_flush calls, from 1 */
  vcg_instance_t *inst;
  wt_listener_t *lis;
  ngtcp2_conn *qc;
  gnutls_session_t tls;
  ngtcp2_crypto_conn_ref cref;
  struct sockaddr_storage local, remote;
  socklen_t locallen, remotelen;
  uv_timer_t timer;
  uint64_t timer_due;            /* loop time (ms) the timer was set for */
  int timer_inited;
  wt_cident_t *cids;             /* CIDs registered for this connection */
  ngtcp2_cid odcid;              /* the client's original DCID */
  int odcid_registered;
  int state;                     /* enum wt_conn_state */
  uint64_t app_error;            /* H3 error to close with, 0 = none */
  uint8_t *close_pkt;            /* CONNECTION_CLOSE, resent while closing */
  size_t close_pktlen;
  uint64_t linger_deadline;      /* ns; close the QUIC connection then */

  /* streams */
  wt_ostream_t *os_all;
  wt_ostream_t *oq_head, *oq_tail;
  size_t oq_opened;              /* opened items still in the queue */
  wt_ostream_t *ctrl_os;         /* our control stream */
  wt_ostream_t *connect_os;      /* our side of the CONNECT stream */
  wt_istream_t *is_all;
  int64_t connect_id;            /* the CONNECT stream = session id, or -1 */

  /* WebTransport session */
  int sstate;                    /* enum wt_sess_state */
  vcg_session_t *s;
  int close_code_pending;        /* a close capsule must be queued */
  int server_close;              /* we closed: wait for the peer's end */
  int peer_fin;                  /* the peer ended its CONNECT stream side */
  uint64_t finish_deadline;      /* ns; session_closed by then at the latest */
  uint32_t close_code;
  char close_reason[128];
  size_t q_pkts, q_bytes;        /* held for the session, reported */
  int q_dirty;
};

/* ---- quic.c ---- */
uint64_t vcg__wt_now(void);
int vcg__wt_endpoint_start(vcg_instance_t *inst);
void vcg__wt_endpoint_stop(vcg_instance_t *inst);
void vcg__wt_conn_mark(wt_conn_t *c);
void vcg__wt_conn_close_app(wt_conn_t *c, uint64_t h3err);
wt_ostream_t *vcg__wt_os_new(wt_conn_t *c, int64_t id);
int vcg__wt_os_append(wt_ostream_t *os, const uint8_t *p, size_t len);
void vcg__wt_os_free(wt_conn_t *c, wt_ostream_t *os);
void vcg__wt_oq_push(wt_conn_t *c, wt_ostream_t *os);
void vcg__wt_oq_remove(wt_conn_t *c, wt_ostream_t *os);
int vcg__wt_parse_addr(const char *s, struct sockaddr_storage *ss,
                       socklen_t *len);
const char *vcg__wt_addr_str(const struct sockaddr *sa, char *buf,
                             size_t len);

/* ---- wt.c ---- */
/* ngtcp2 callbacks that the HTTP/3 / WebTransport layer implements. */
int vcg__wt_on_stream_open(wt_conn_t *c, int64_t id);
int vcg__wt_on_stream_data(wt_conn_t *c, uint32_t flags, int64_t id,
                           const uint8_t *data, size_t len, void *sud);
int vcg__wt_on_stream_reset(wt_conn_t *c, int64_t id, void *sud);
int vcg__wt_on_stream_close(wt_conn_t *c, int64_t id, void *sud);
int vcg__wt_on_datagram(wt_conn_t *c, const uint8_t *data, size_t len);
int vcg__wt_on_app_tx_key(wt_conn_t *c);
/* Session bookkeeping around the connection's life. */
void vcg__wt_flush_session(wt_conn_t *c);   /* before writing */
void vcg__wt_after_write(wt_conn_t *c);     /* after writing */
void vcg__wt_conn_gone(wt_conn_t *c);       /* connection being freed */
void vcg__wt_item_written(wt_conn_t *c, wt_ostream_t *os);
int vcg__wt_send(vcg_instance_t *inst, void *conn, vcg_packet_t *p);
void vcg__wt_close(vcg_instance_t *inst, void *conn, int why,
                   const char *reason);
void vcg__wt_session_close(wt_conn_t *c, uint32_t code, const char *reason);
uint32_t vcg__wt_close_code(int why);

#endif /* VCG_WT_INT_H */
