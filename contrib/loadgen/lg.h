/* loadgen: the vcgate benchmark client.  Shared types between the scenario
 * driver (loadgen.c), the wire format (wire.c), the measurement helpers
 * (stats.c) and the transport modules (ws.c; a WebTransport module can be
 * added as a second lg_transport_t without touching the driver).
 *
 * Everything runs on one libuv loop in one thread; there is no global
 * mutable state: the whole run lives in one lg_t. */
#ifndef VCG_LOADGEN_LG_H
#define VCG_LOADGEN_LG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include "wsutil.h"

/* Error codes: 0 or a negative errno-style value (libuv's UV_E*). */

/* ------------------------------------------------------------ wire */

/* The loadgen header carried in MediaPacket.data, little-endian, followed
 * by padding up to --size.  run_id lets a receiver tell our packets from
 * stray ones of an earlier run. */
#define LG_MAGIC 0x474c4356u /* "VCLG" */
#define LG_HDR_LEN 32
typedef struct {
  uint32_t run_id;
  uint32_t sender;  /* global participant index of the sender */
  uint32_t room;    /* room index of the sender */
  uint64_t seq;     /* per-sender sequence number, from 0 */
  uint64_t send_ns; /* CLOCK_MONOTONIC when the packet was built */
} lg_hdr_t;

/* A prebuilt PacketWrapper(MEDIA) of exactly `len` bytes; seq and send
 * time are patched in place at hdr_off for each packet. */
typedef struct {
  uint8_t *buf; /* owned */
  size_t len;
  size_t hdr_off;
} lg_template_t;

int lg_template_build(lg_template_t *t, size_t size, const char *user, int media_type,
                      const lg_hdr_t *h);
void lg_template_free(lg_template_t *t);
void lg_template_stamp(lg_template_t *t, uint64_t seq, uint64_t send_ns);

/* What a received PacketWrapper was. */
enum { LG_RX_OURS, LG_RX_CONTROL, LG_RX_CONGESTION, LG_RX_FOREIGN };
/* Classify msg; for LG_RX_OURS fills *h.  Never reads past len. */
int lg_wire_classify(const uint8_t *msg, size_t len, uint32_t run_id, lg_hdr_t *h);


/* ------------------------------------------------------------ stats */

/* Latency histogram in ns: exact below 128 ns, then 64 linear sub-buckets
 * per power of two (relative error under 1.6%), up to 2^64. */
#define LG_HIST_SUB 64
#define LG_HIST_N (59 * LG_HIST_SUB)
typedef struct {
  uint64_t c[LG_HIST_N];
  uint64_t n, max;
} lg_hist_t;
void lg_hist_add(lg_hist_t *h, uint64_t v);
uint64_t lg_hist_pct(const lg_hist_t *h, double pct); /* ns */
void lg_hist_merge(lg_hist_t *into, const lg_hist_t *from);

/* Which sequence numbers of one sender one receiver has seen: a bitmap
 * over a sliding window [base, base + 64 * nw), grown while a gap is open
 * and slid forward past fully received words. */
typedef struct {
  uint64_t base;
  uint64_t *w; /* owned, ring of nw words starting at head */
  uint32_t nw, head;
  uint64_t uniq;
} lg_seqwin_t;
/* 0: new; 1: already seen (duplicate); negative: out of memory. */
int lg_seqwin_add(lg_seqwin_t *s, uint64_t seq);
void lg_seqwin_free(lg_seqwin_t *s);

uint64_t lg_now_ns(void);

/* ------------------------------------------------------------ transports */

typedef struct lg lg_t;
typedef struct lg_conn lg_conn_t;

typedef struct {
  char scheme[8];   /* "ws", "https" */
  char host[256];
  char port[8];
  char prefix[256]; /* path before /lobby, without trailing '/' */
  struct sockaddr_storage addr;
  socklen_t addrlen;
} lg_url_t;

/* A transport module.  The driver calls these; the transport calls back
 * lg_conn_opened / lg_conn_message / lg_conn_closed. */
typedef struct {
  const char *scheme;
  /* Open c (c->url, c->path set); opened/closed callbacks report the end. */
  int (*connect)(lg_t *lg, lg_conn_t *c);
  /* Queue one message (bytes borrowed for the call).  VCG-style codes:
   * UV_ENOBUFS when the connection's bounded output buffer is full. */
  int (*send)(lg_conn_t *c, const uint8_t *msg, size_t len);
  /* Push what send() queued to the network. */
  void (*flush)(lg_conn_t *c);
  /* Close (politely when possible); lg_conn_closed follows. */
  void (*close)(lg_conn_t *c);
  /* Release transport state after lg_conn_closed (may be NULL). */
  void (*free)(lg_conn_t *c);
} lg_transport_t;

extern const lg_transport_t lg_ws_transport;
#ifdef LG_WITH_WT
extern const lg_transport_t lg_wt_transport; /* https:// (WebTransport) */
#endif

enum { LG_C_IDLE, LG_C_CONNECTING, LG_C_OPEN, LG_C_CLOSED, LG_C_FAILED };

struct lg_conn {
  lg_t *lg;
  const lg_transport_t *tr;
  void *tp;            /* transport state, owned by the transport */
  const lg_url_t *url; /* borrowed from lg */
  char path[160];
  uint32_t idx, room, slot; /* global index, room index, index in room */
  int state;
  int sender;          /* sends packets */
  uint64_t t_connect_ns;
  lg_template_t tpl;
  uint64_t seq;        /* next sequence number */
  uint64_t step_sent;  /* packets sent in the current step */
  uint64_t phase_ns;   /* offset of this sender's schedule */
  lg_seqwin_t *win;    /* one per sender slot of the room (receivers) */
  lg_conn_t *dirty_next;
  int dirty;
};

/* Driver callbacks for transports. */
void lg_conn_opened(lg_conn_t *c);
void lg_conn_message(lg_conn_t *c, const uint8_t *msg, size_t len);
void lg_conn_closed(lg_conn_t *c, const char *why);
uv_loop_t *lg_loop(lg_t *lg);
/* A shared read buffer for transports (one thread: used within one read). */
uv_buf_t lg_readbuf(lg_t *lg);
/* Address to bind before connecting (NULL: any), spreads source addresses. */
const struct sockaddr *lg_bind_addr(lg_t *lg, lg_conn_t *c);
size_t lg_max_out(lg_t *lg);

#endif
