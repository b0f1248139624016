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

/* What loadgen sends (one sender, one sequence space for all kinds but
 * RTT probes, which have their own).  Each kind has its real wire form:
 * MEDIA with media_type VIDEO (frame_type "delta" / "key"), AUDIO,
 * HEARTBEAT (with heartbeat_metadata), KEYFRAME_REQUEST, RTT; and the key
 * exchange packets RSA_PUB_KEY / AES_KEY (PROTOCOL.md). */
enum {
  LG_K_VIDEO, LG_K_VIDEO_KEY, LG_K_AUDIO, LG_K_HEARTBEAT, LG_K_KF_REQ, LG_K_RTT,
  LG_K_RSA_KEY, LG_K_AES_KEY, LG_K_N
};
/* Delivery classes the reports count apart.  video_key (key frames) is a
 * subset of video: a key frame counts in both. */
enum { LG_CLS_AUDIO, LG_CLS_VIDEO, LG_CLS_VIDEO_KEY, LG_CLS_CONTROL, LG_CLS_KEYX, LG_NCLS };
/* The class of a kind (video key frames: LG_CLS_VIDEO_KEY), or -1 for
 * RTT probes, which a relay echoes to the sender and which are no
 * delivery. */
int lg_kind_class(int kind);

/* The loadgen header, little-endian: magic, run id, sender, room, kind,
 * 0, seq, send time.  run_id lets a receiver tell our packets from stray
 * ones of an earlier run.  In the clear it starts MediaPacket.data; sealed
 * (E2EE-like, see wire.c) it follows a nonce, masked. */
#define LG_MAGIC 0x474c4356u /* "VCLG" */
#define LG_HDR_LEN 40
typedef struct {
  uint32_t run_id;
  uint32_t sender;  /* global participant index of the sender */
  uint32_t room;    /* room index of the sender */
  uint32_t kind;    /* LG_K_* */
  uint64_t seq;     /* per-sender sequence number, from 0 */
  uint64_t send_ns; /* CLOCK_MONOTONIC when the packet was built */
} lg_hdr_t;

/* Random filler for payloads, LG_PAD_LEN bytes, made once per run. */
#define LG_PAD_LEN (64 * 1024)
void lg_pad_init(uint8_t *pad, size_t n, uint64_t seed);

/* One packet to build. */
typedef struct {
  size_t size;        /* PacketWrapper bytes wanted (at least the header's) */
  const char *user;   /* user_id, borrowed */
  int sealed;         /* media as opaque ciphertext (--encrypted) */
  double ts_ms;       /* MediaPacket.timestamp */
  const uint8_t *pad; /* LG_PAD_LEN bytes of filler, borrowed */
  uint64_t pad_off;   /* varies the filler between packets */
} lg_pkt_t;

/* Writes the packet of kind h->kind into buf; returns its length, or 0
 * when it does not fit in cap.  *hdr_off: where the header (sealed: the
 * nonce) starts. */
size_t lg_packet_build(uint8_t *buf, size_t cap, const lg_pkt_t *p, const lg_hdr_t *h,
                       size_t *hdr_off);

/* A prebuilt packet whose seq and send time are patched in place per
 * send (the flat shape's one packet per sender). */
typedef struct {
  uint8_t *buf; /* owned */
  size_t len;
  size_t hdr_off;
  lg_hdr_t h;
  int sealed;
} lg_template_t;

int lg_template_build(lg_template_t *t, const lg_pkt_t *p, const lg_hdr_t *h);
void lg_template_free(lg_template_t *t);
void lg_template_stamp(lg_template_t *t, uint64_t seq, uint64_t send_ns);

/* What a received PacketWrapper was. */
enum { LG_RX_OURS, LG_RX_CONTROL, LG_RX_CONGESTION, LG_RX_FOREIGN };
/* Classify msg; for LG_RX_OURS fills *h.  Never reads past len. */
int lg_wire_classify(const uint8_t *msg, size_t len, uint32_t run_id, lg_hdr_t *h);

/* ------------------------------------------------------------ shapes */

/* One periodic stream of a participant: its kind (video: key frames are
 * picked per frame) and packets per second. */
typedef struct {
  int kind;
  double rate;
} lg_stream_def_t;

/* The call shape (shape.c): audio, video, heartbeat, keyframe request,
 * key exchange, RTT probe. */
#define LG_CALL_STREAMS 6
extern const lg_stream_def_t lg_call_streams[LG_CALL_STREAMS];
/* The n-th packet (from 0) of call stream st of participant `sender`: its
 * kind and PacketWrapper size (0: the smallest the kind allows). */
void lg_call_packet(int st, uint32_t sender, uint64_t n, int *kind, size_t *size);

/* ------------------------------------------------------------ search */

/* The saturation search (search.c): the load of the next step from the
 * verdict of the last one. */
enum { LG_STEP_PASS, LG_STEP_FAIL, LG_STEP_FAIL_HARD, LG_STEP_INVALID, LG_STEP_FATAL };
#define LG_SEARCH_MAX_INVALID 2
typedef struct {
  double cur;         /* load of the step being run */
  double best, fail;  /* highest passing, lowest failing load (0: none yet) */
  double factor, min, max;
  long refine_left;   /* bisection steps left */
  int retried;        /* cur failed once already */
  int invalid;        /* consecutive invalid runs of cur */
  int integer;        /* loads are whole numbers (rooms) */
} lg_search_t;
void lg_search_init(lg_search_t *s, double start, double factor, double min, double max,
                    long refine, int integer);
/* The next load, or 0 to stop with *why ("bracketed": the bisection is
 * done, "nothing passes", "max load", "errors"). */
double lg_search_next(lg_search_t *s, int verdict, const char **why);

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

/* Overload recovery: over n consecutive windows of win_ms (p99 and sample
 * count of each), the time from the first window's start until p99 stays
 * at or under limit_ms with samples in every window to the end; -1 when
 * the last window is still over (or empty). */
double lg_recovery_ms(const double *p99_ms, const uint64_t *samples, int n, double win_ms,
                      double limit_ms);

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
  /* Bytes send() took that the network has not (yet) taken: a drain is
   * over only when loadgen's own queue is empty too. */
  size_t (*pending)(lg_conn_t *c);
  /* Release transport state after lg_conn_closed (may be NULL). */
  void (*free)(lg_conn_t *c);
} lg_transport_t;

extern const lg_transport_t lg_ws_transport;
#ifdef LG_WITH_WT
extern const lg_transport_t lg_wt_transport; /* https:// (WebTransport) */
#endif

enum { LG_C_IDLE, LG_C_CONNECTING, LG_C_OPEN, LG_C_CLOSED, LG_C_FAILED };

/* One periodic stream of one sender within the current step (or
 * overload phase): packet i is due at step start + phase_ns + i / rate. */
typedef struct {
  int def;            /* index in lg_call_streams, or -1: the flat shape's packet */
  double rate;        /* packets per second */
  uint64_t phase_ns;
  uint64_t step_sent; /* packets of this step sent (or skipped) so far */
  uint64_t next_ns;   /* when the next one is due */
  uint64_t total;     /* packets of this stream ever (numbers video frames) */
} lg_stream_t;
#define LG_MAX_STREAMS LG_CALL_STREAMS

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
  char user[48];       /* user_id */
  lg_template_t tpl;   /* the flat shape's packet */
  uint64_t seq;        /* next sequence number */
  uint64_t rtt_seq;    /* next RTT probe number (a sequence of its own) */
  lg_stream_t st[LG_MAX_STREAMS]; /* what this sender sends, on which schedule */
  int nst;
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
