/*
 * ws_int.h -- the private header of the WebSocket transport: the structs
 * every file of the plugin shares and the calls between its files.
 *
 * The files, in the order a connection meets them:
 *   ws_listen.c  our listen socket (SO_REUSEPORT), accept, adoption into lws
 *   ws_lws.c     the lws context on the worker loop, the one lws callback,
 *                lws's log sink, and the teardown reaper of stop()
 *   ws_http.c    what a request gets: the upgrade judgement (the host's
 *                lobby), /.well-known/vcgate, small HTTP replies
 *   ws_files.c   static files under webroot
 *   ws_own.c     ws:// sockets we own after the upgrade: one edge-triggered
 *                epoll set per worker, the takeover from lws, read turns
 *   ws_in.c      inbound messages: our strict frame reader on ws://, lws's
 *                callbacks on wss://, reassembly, size limits, delivery
 *   ws_conn.c    one connection's record: creation, the upgrade done, the
 *                close handshake, release
 *   ws_out.c     its output queue, framing and the end-of-turn flush
 *                (writev() of our own on ws://, lws's writes on wss://)
 *   ws_alive.c   proof of life: PING after ping_interval, hang up after
 *                idle_timeout
 *   ws_deadline.c  lists of connections that share a timeout, one timer each
 *   ws_tls.c     OpenSSL on wss://: the certificate and key (checked by
 *                configure(), swapped in by reload()), lws's client context
 *   websocket.c  options, configure(), reload(), the vtable
 *   ws_util.c    pure helpers (no lws, no libuv), unit-tested
 * Calls go one way where they can: ws_lws.c dispatches lws's events to the
 * others; ws_http.c, ws_in.c, ws_conn.c and ws_out.c never call into ws_lws.c.
 */
#ifndef VCG_WS_INT_H
#define VCG_WS_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <uv.h>
#include <libwebsockets.h>

#include <vcgate/plugin.h>

#include "ws_util.h"

#define WS_VERSION "0.2.0"

/* Hard cap on packets queued per connection.  The host's drop policy keeps
 * queues far below this; the cap only guards against a host bug. */
#define WS_QUEUE_MAX 8192u
/* Messages written per flush of one connection before yielding to the
 * others; the rest goes out at the next loop turn (ws:// sockets we own)
 * or when lws reports the socket writable (wss://). */
#define WS_WRITE_BUDGET 256
/* Read before write under fan-out load: when a turn's input came from at
 * most WS_DEFER_MAX_READERS connections, WS_DEFER_MIN_DIRTY or more
 * connections wait for a write, and a reader's socket still holds unread
 * bytes, the flush waits for the next turn (at most WS_DEFER_MAX_TURNS in
 * a row; the poll returns at once, the input being readable).  A reader
 * takes at most WS_READ_BUDGET (ws://) or rx_buffer_size (wss://) per
 * turn, so without this a backlogged sender in a large room cost one
 * send() per receiver per few packets; with it the batches grow with the
 * backlog.  Nothing waits when the input is drained. */
#define WS_DEFER_MAX_READERS 4
#define WS_DEFER_MIN_DIRTY 32
#define WS_DEFER_MAX_TURNS 4
/* Bytes of framed messages written (one send()) per batch, at most; with
 * notsent_lowat a batch is no larger than it (see ws_out.c). */
#define WS_BATCH_BYTES (256u * 1024u)
/* Bytes our ws:// reader takes per recv() (ws_in.c), into one buffer per
 * instance, and at most per connection per loop turn before the others
 * get theirs (ws_own.c). */
#define WS_RD_BUF (256u * 1024u)
#define WS_READ_BUDGET (256u * 1024u)
/* The receive buffer lws allocates per connection on ws://, where it only
 * reads for a client that sent frames before our 101 (ws_own.c): room for
 * a control frame's payload (lws's parser needs it whole), no more.  On
 * wss:// lws reads every connection and rx_buffer_size applies. */
#define WS_LWS_RX_OWNED 128u
/* Events taken from the epoll set per readiness of its descriptor. */
#define WS_EP_EVENTS 256
/* Proof of life moves a connection's keepalive deadline at most this
 * often (ws_alive.c). */
#define WS_ALIVE_GRAIN_MS 1000u
/* Connections accepted per readiness event of the listen socket. */
#define WS_ACCEPT_BUDGET 64
/* When accept() runs out of file descriptors: how long the listen socket
 * is left alone, and how often the condition is logged at most. */
#define WS_ACCEPT_BACKOFF_MS 100
#define WS_ACCEPT_LOG_MS 1000
/* Largest single send() lws attempts; above any message size so a message
 * is handed to the kernel in one call (lws buffers what the kernel refuses). */
#define WS_TX_PACKET (64u * 1024u * 1024u)
/* How long stop() waits for lws to close its handles before giving up
 * (leaking the context rather than freeing memory libuv still uses). */
#define WS_STOP_TIMEOUT_MS 10000
#define WS_STOP_POLL_MS 2
/* lws's opcode for a close frame written with lws_write().  lws 4.1 keeps
 * it out of its public enum (it wants lws_close_reason(), see
 * vcg__ws_on_writeable() for why we cannot) but the value is fixed by the
 * gap the public enum leaves for it between LWS_WRITE_HTTP (3) and
 * LWS_WRITE_PING (5). */
#define WS_WRITE_CLOSE ((enum lws_write_protocol)4)
/* How long a client has to echo our close frame. */
#define WS_CLOSE_ACK_SECS 3
/* A close frame's payload: the code and a reason of at most 123 bytes. */
#define WS_CLOSE_REASON_MAX 123

/* ------------------------------------------------------------- config */

typedef struct ws_conf {
  char *listen;
  int64_t ping_interval;   /* ms */
  int64_t idle_timeout;    /* ms */
  char *tls_cert;
  char *tls_key;
  int64_t max_header_size; /* bytes */
  int64_t lws_log_level;   /* 0 err, 1 +warn, 2 +notice, 3 +info */
  int64_t rx_buffer_size;  /* bytes */
  int64_t upgrade_timeout; /* ms from accept to a completed upgrade */
  char *webroot;           /* static files; NULL or "" serves none */
  int64_t notsent_lowat;   /* TCP_NOTSENT_LOWAT bytes, 0 leaves it alone */
  int64_t reassembly_budget; /* bytes of unfinished messages, process-wide */
  int64_t message_timeout; /* ms an unfinished message may take */
} ws_conf_t;

/* What every worker's instance shares (init() makes it, fini() frees it):
 * the bytes all connections hold in unfinished messages, so that many
 * connections cannot each pin max_message_size (ws_in.c); and what the
 * listener was started with that a reload cannot change but configure()
 * must be able to refuse by name (websocket.c). */
struct vcg_plugin_state {
  atomic_size_t rx_used;
  struct vcg_plugin_state *next; /* in websocket.c's list of running ones */
  char *listen;                /* owned copy of the listen address */
  int tls;                     /* started as wss:// */
};

/* The request methods the routes tell apart. */
enum { WS_METHOD_GET, WS_METHOD_HEAD, WS_METHOD_OTHER };

/* ---------------------------------------------------------- instance */

typedef struct ws_conn ws_conn_t;

/* A list of connections with the same timeout, in deadline order, and its
 * timer (ws_deadline.c).  A node is embedded in its ws_conn_t. */
typedef struct ws_dl_node {
  struct ws_dl_node *prev, *next;
  uint64_t due;                /* loop ms; 0 while not in a list */
} ws_dl_node_t;

typedef struct ws_dl {
  ws_dl_node_t *head, *tail;
  uv_timer_t timer;
  int open;
  uint64_t timeout;            /* ms from add to due */
  vcg_instance_t *inst;
  /* Called for each member past its deadline, already removed. */
  void (*expired)(vcg_instance_t *inst, ws_dl_node_t *n);
} ws_dl_t;

/* The connection a node of field `member` is embedded in. */
#define WS_CONN_OF(n, member) \
  ((ws_conn_t *)(void *)((char *)(n) - offsetof(ws_conn_t, member)))

/* Which list a connection's up_node is in (ws_conn_t.up_list). */
enum { WS_LIST_NONE, WS_LIST_UPGRADES, WS_LIST_ALIVE, WS_LIST_PINGED,
       WS_LIST_CLOSING };

struct vcg_instance {
  const vcg_host_api_t *host;  /* borrowed, valid until stop completes */
  vcg_plugin_state_t *state;   /* borrowed from init(), outlives every inst */
  vcg_worker_t *w;
  const ws_conf_t *conf;       /* borrowed: the current generation's, which
                                  reload() replaces; valid until the next */
  uv_loop_t *loop;

  struct lws_context *ctx;     /* owned; NULL once destroyed */
  struct lws_context *ctx_alive; /* lws writes NULL here when ctx is freed */
  struct lws_vhost *vh;
  lws_retry_bo_t retry;        /* must outlive the vhost */
  struct lws_protocols protocols[2];
  void *ssl_ctx;               /* the vhost's SSL_CTX (lws's) on wss:// */
  void *client_ctx;            /* SSL_CTX lws borrows as the vhost's client
                                  one (owned; freed after the context) */

  int lfd;                     /* listen socket, -1 when closed */
  uv_poll_t lpoll;
  int lpoll_open;              /* lpoll initialised and not yet closed */
  /* Out of descriptors (ws_listen.c): one held in reserve to accept and
   * close with, a timer that resumes accepting, and what to log next. */
  int reserve_fd;              /* /dev/null, -1 when not held */
  uv_timer_t backoff;
  int backoff_open;
  uint64_t exhausted_logged;   /* loop ms of the last log line */
  unsigned exhausted_refused;  /* connections refused since it */
  ws_dl_t upgrades;            /* accepted sockets not yet upgraded */
  char *peekbuf;               /* hdr_max bytes, for MSG_PEEK (owned) */
  size_t hdr_max;              /* max_header_size at start (lws's too) */
  int tls;
  char url[300];               /* "ws://127.0.0.1:8080", for logs */

  ws_conn_t *conns;            /* every connection with a ws_conn_t */
  size_t nconns;

  /* The sockets we own on ws:// (ws_own.c): an epoll set of our own,
   * edge-triggered, each socket registered once for input and output, and
   * the connections that read their budget with input left, served first
   * next turn (ready_idle keeps that poll from blocking). */
  int ep;                      /* epoll descriptor (owned), -1 when none */
  uv_poll_t ep_poll;
  int ep_open;
  ws_conn_t **ready;
  size_t nready, ready_cap;
  uv_idle_t ready_idle;
  int ready_open;

  /* Connections given packets during this loop turn.  They are written
   * from the check handle, after the loop has run every ready callback, so
   * all packets of one turn leave in one send() per connection, without
   * waiting for a POLLOUT event (arming and disarming POLLOUT per batch
   * cost two epoll_ctl() calls and a loop turn of latency).  A slot is NULL
   * when its connection went away before the flush. */
  ws_conn_t **dirty;
  size_t ndirty, dirty_cap;
  uv_check_t flush;
  int flush_open, flush_active;
  /* Connections that delivered input since the last flush (up to
   * WS_DEFER_MAX_READERS; nreaders above that means "many"), and how many
   * turns in a row the flush has waited for them. */
  ws_conn_t *readers[WS_DEFER_MAX_READERS];
  unsigned nreaders;
  unsigned deferred;
  uv_idle_t nowait;            /* active while a flush waits: poll must not block */

  /* wss:// only: lws_write() needs LWS_PRE writable bytes in front of the
   * payload for its framing, and packets are shared and immutable, so each
   * message is copied here first.  Writes are synchronous, so one buffer
   * per instance serves every connection; it grows to the largest batch
   * and is reused.  On ws:// nothing is copied (ws_out.c). */
  uint8_t *sendbuf;
  size_t sendbuf_cap;
  size_t batch_max;            /* bytes per batch: WS_BATCH_BYTES or less */
  uint8_t *rdbuf;              /* WS_RD_BUF bytes for ws_in.c's reader (owned) */
  /* One writev() of ours (ws_out.c): its pieces and their frame headers. */
  struct iovec iov[2 * WS_WRITE_BUDGET + 8];
  uint8_t hdrs[WS_WRITE_BUDGET + 1][VCG__WS_SERVER_HDR_MAX];
  uint8_t ctlbuf[3][2 + 125];  /* control frames of that write */
  ws_dl_t messages;            /* connections with an unfinished message */
  ws_dl_t alive, pinged;       /* keepalive: before and after our PING */
  ws_dl_t closings;            /* sockets we own, closing: WS_CLOSE_ACK_SECS
                                  for our close frame, then for the echo */

  int draining;
  int stopping;
  vcg_stopped_cb stop_cb;
  uv_timer_t reaper;           /* polls for lws teardown during stop */
  int reaper_open;
  uint64_t stop_deadline;
  int destroy_calls;
};

typedef struct ws_peek ws_peek_t;

/* Control frames owed on a socket we own (ws_out.c), allocated while any
 * is: the PONG for the latest PING, our own PING, and a control frame the
 * kernel took only part of (its rest goes first). */
typedef struct ws_cout {
  uint8_t part[2 + 125];
  uint8_t partlen, partoff;
  uint8_t ponglen;
  unsigned pong : 1;
  unsigned ping : 1;
  unsigned part_is_close : 1;  /* part is the rest of our close frame */
  uint8_t pong_data[125];
} ws_cout_t;

/* A ws:// socket we own after the upgrade (ws_own.c): our frame reader's
 * state (ws_in.c) and our writer's (ws_out.c). */
typedef struct ws_own {
  /* Reader: a frame header split across reads, the frame being read. */
  uint8_t hdr[VCG__WS_FRAME_HDR_MAX];
  uint8_t hlen;
  uint8_t ctllen;
  unsigned in_frame : 1;
  unsigned msg_open : 1;       /* a fragmented message awaits continuations */
  unsigned dead : 1;           /* protocol error or close: read, discard */
  vcg__ws_frame_t f;
  uint64_t left, off;          /* payload bytes still to come, and read */
  uint8_t *ctl;                /* a control frame's payload while it is read
                                  (125 bytes, owned), NULL otherwise */
  /* Writer: the first qtaken packets of the queue are taken (handed to
   * packet_take(), framed) and being written, NULL where one was shed;
   * woff bytes of the first one's frame are out.  New packets are taken
   * only once those are all out, so at most one batch is past the queue. */
  uint32_t qtaken, qshed;
  uint32_t woff;
  ws_cout_t *cout;             /* owned, NULL while no control frame is owed */
} ws_own_t;

struct ws_conn {
  ws_conn_t *prev, *next;      /* in inst->conns */
  vcg_instance_t *inst;
  struct lws *wsi;             /* NULL until the socket is adopted */
  vcg_session_t *s;            /* host-owned; NULL until session_open */

  /* From accept to the upgrade (ws_listen.c). */
  int fd;                      /* ours until adopted, then lws's (the number
                                  stays valid until CLOSED); -1 when gone */
  ws_peek_t *peek;             /* while we wait for the request line (owned) */
  char *target;                /* the first request's raw target (owned);
                                  NULL on TLS, or once a request used it */
  uint32_t head_len;           /* bytes of the first request's head, as
                                  peeked (0 on TLS) */
  ws_own_t *own;               /* the socket is ours (ws://, owned) */
  union {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
  } peer;
  /* In inst->upgrades until upgraded, then in inst->alive or inst->pinged,
   * and in inst->closings once closing (up_list says which). */
  ws_dl_node_t up_node;
  uint32_t alive_ms;           /* loop ms (low 32 bits) of the last move in
                                  inst->alive */

  int32_t dirty_idx;           /* slot in inst->dirty, -1 when absent */
  int32_t ready_idx;           /* slot in inst->ready, -1 when absent */

  /* FIFO of packet references (ring of qcap, a power of two), owned: each
   * holds one reference. */
  vcg_packet_t **q;
  uint32_t qhead, qlen, qcap;
  size_t qbytes;

  /* Reassembly of a fragmented message (or one larger than a read);
   * allocated only while such a message is in flight, counted in
   * state->rx_used, and it must be finished by msg_deadline. */
  uint8_t *rx;
  size_t rxlen, rxcap;
  ws_dl_node_t msg_node;       /* in inst->messages while rx is held */

  unsigned has_slot : 1;       /* holds a host->conn_admit() slot */
  unsigned slot_counted : 1;   /* conn_admit()'s value, for conn_release() */
  unsigned up_list : 3;        /* WS_LIST_* */
  unsigned established : 1;    /* the upgrade completed */
  unsigned closing : 1;        /* close requested: no more data written */
  unsigned close_sent : 1;     /* our close frame is out, awaiting the echo */
  unsigned peer_closed : 1;    /* the client sent its close: hang up after ours */
  unsigned ping_due : 1;       /* wss://: our PING is to be written */
  unsigned killed : 1;         /* vcg__ws_conn_kill() ran: lws closes it */
  uint16_t close_code;
  char *close_reason;          /* owned, NULL for none; at most
                                  WS_CLOSE_REASON_MAX bytes */
};

/* ---------------------------------------------------- ws_deadline.c */

void vcg__ws_dl_init(vcg_instance_t *inst, ws_dl_t *dl, uint64_t timeout_ms,
                     void (*expired)(vcg_instance_t *, ws_dl_node_t *));
/* Start n's deadline (now + the list's timeout); restarts it when n is in
 * the list already. */
void vcg__ws_dl_add(ws_dl_t *dl, ws_dl_node_t *n);
/* Take n out (no-op when it is not in). */
void vcg__ws_dl_remove(ws_dl_t *dl, ws_dl_node_t *n);
/* A new timeout for the list: every member's deadline moves by the
 * difference, so each counts from when it started, as new ones will (the
 * order stays).  Members now past it expire on the timer's next run. */
void vcg__ws_dl_set_timeout(ws_dl_t *dl, uint64_t timeout_ms);
/* Close the timer (teardown). */
void vcg__ws_dl_close(ws_dl_t *dl);

/* ---------------------------------------------------- ws_lws.c */

/* Route lws's process-wide log to the host (init(), main thread). */
void vcg__ws_log_init(const ws_conf_t *conf);
/* Make the lws context and vhost of inst on its loop.  On failure the
 * instance is torn down (asynchronously when the context had started) and
 * freed: the caller must not touch it again. */
int vcg__ws_lws_start(vcg_instance_t *inst);
/* Close everything of inst and free it; cb (may be NULL) runs when done. */
void vcg__ws_teardown(vcg_instance_t *inst, vcg_stopped_cb cb);
/* The thread-local record lws's log sink uses (see ws_lws.c). */
void vcg__ws_tl_acquire(const vcg_host_api_t *host, vcg_worker_t *w);
void vcg__ws_tl_release(void);

/* ---------------------------------------------------- ws_tls.c */

/* Whether the PEM files cert (a chain) and key can be read and the key is
 * the certificate's.  Returns 0, or VCG_EINVAL with "option: reason" in
 * err (main thread: configure()). */
int vcg__ws_tls_check(const char *cert, const char *key, char *err,
                      size_t errlen);
/* Load the pair into inst's SSL_CTX in one step, for the handshakes that
 * start from now on; live connections keep theirs.  Returns 0, or
 * VCG_EINVAL (logged) with the old pair still in place. */
int vcg__ws_tls_reload(vcg_instance_t *inst, const char *cert, const char *key);
/* An empty client SSL_CTX for lws's vhost (see ws_tls.c), and its free. */
void *vcg__ws_tls_client_ctx_new(void);
void vcg__ws_tls_ctx_free(void *ctx);

/* ---------------------------------------------------- ws_listen.c */

/* Bind and listen on conf->listen, and watch the socket on inst's loop.
 * On failure lfd may be open and lpoll initialised: the caller cleans up
 * (vcg__ws_teardown() when lpoll_open). */
int vcg__ws_listen_open(vcg_instance_t *inst);
/* Stop accepting (asynchronously for the poll handle).  Idempotent. */
void vcg__ws_listen_close(vcg_instance_t *inst);
/* Stop accepting, and close every socket not yet handed to lws and the
 * sweep timer (teardown). */
void vcg__ws_listen_stop(vcg_instance_t *inst);
/* c is upgraded or gone: no upgrade deadline any more. */
void vcg__ws_upgrade_done(ws_conn_t *c);
/* c answered a plain request and stays open for another: a new
 * upgrade_timeout from now. */
void vcg__ws_upgrade_restart(ws_conn_t *c);
/* c is gone: give back its host->conn_admit() slot (once). */
void vcg__ws_slot_release(ws_conn_t *c);

/* ---------------------------------------------------- ws_http.c */

/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: the upgrade value is `upgrade`.
 * Returns what the callback returns: 0 lets lws complete the upgrade, 1
 * means a response was written instead, -1 hangs up. */
int vcg__ws_http_upgrade(vcg_instance_t *inst, struct lws *wsi,
                         const char *upgrade);
/* LWS_CALLBACK_HTTP: a plain HTTP request.  Returns 0 to keep going or -1
 * to hang up, as the callback does. */
int vcg__ws_http_request(vcg_instance_t *inst, struct lws *wsi);
/* A response is complete (LWS_CALLBACK_HTTP_FILE_COMPLETION too): end the
 * transaction; returns what the callback returns. */
int vcg__ws_http_done(vcg_instance_t *inst, struct lws *wsi);
/* Write a complete small text/plain response that closes the connection,
 * with `extra` header lines (CRLF-terminated, may be NULL).  Returns 0 or
 * -1 when the connection must be dropped. */
int vcg__ws_http_reply(struct lws *wsi, unsigned status, const char *extra,
                       const char *body);

/* ---------------------------------------------------- ws_files.c */

/* Answer a plain request for path (decoded) from the webroot.  Returns -1
 * to hang up, 0 when a complete response was written (the caller ends the
 * transaction), 1 when lws sends a file and ends the transaction itself. */
int vcg__ws_files_serve(vcg_instance_t *inst, struct lws *wsi,
                        const char *path, int method);

/* ---------------------------------------------------- ws_own.c */

/* The epoll set and the ready list of inst (start and teardown). */
int vcg__ws_own_init(vcg_instance_t *inst);
void vcg__ws_own_close(vcg_instance_t *inst);
/* At ESTABLISHED on ws://: read and write the socket ourselves from now
 * on, when lws holds none of its bytes in either direction. */
void vcg__ws_own_start(ws_conn_t *c);
/* Stop (CLOSED: the descriptor is still open) or forget (WSI_DESTROY:
 * lws has closed it) our side of the socket.  Idempotent. */
void vcg__ws_own_stop(ws_conn_t *c, int fd_open);
/* c read its budget with input left: read it again next turn. */
void vcg__ws_own_ready(ws_conn_t *c);

/* ---------------------------------------------------- ws_in.c */

/* LWS_CALLBACK_RECEIVE: one piece of a message (lws's reader). */
int vcg__ws_on_receive(vcg_instance_t *inst, ws_conn_t *c, const void *in,
                       size_t len);
/* LWS_CALLBACK_WS_PEER_INITIATED_CLOSE (lws's reader): check the client's
 * close frame; returns what the callback returns. */
int vcg__ws_peer_close(vcg_instance_t *inst, ws_conn_t *c, const void *in,
                       size_t len);
/* Our reader on a socket we own: read up to WS_READ_BUDGET and parse it. */
void vcg__ws_own_read(ws_conn_t *c);
/* Drop c's unfinished message and give its memory back (close, free). */
void vcg__ws_msg_reset(ws_conn_t *c);
/* The unfinished-message timer of inst (start and teardown). */
void vcg__ws_in_init(vcg_instance_t *inst);
void vcg__ws_in_close(vcg_instance_t *inst);

/* ---------------------------------------------------- ws_alive.c */

/* The keepalive lists of inst (start, reload and teardown). */
void vcg__ws_alive_init(vcg_instance_t *inst);
void vcg__ws_alive_reload(vcg_instance_t *inst);
void vcg__ws_alive_close(vcg_instance_t *inst);
/* c is established: its first ping_interval starts now. */
void vcg__ws_alive_start(ws_conn_t *c);
/* Proof of life from c (any frame): its ping_interval starts again. */
void vcg__ws_alive(ws_conn_t *c);
/* c is closing or gone: no more keepalive. */
void vcg__ws_alive_stop(ws_conn_t *c);
/* Take c's up_node out of whichever list has it (upgrades, keepalive,
 * closing). */
void vcg__ws_node_release(ws_conn_t *c);

/* ---------------------------------------------------- ws_conn.c */

/* A connection's state from accept on, linked into inst. */
ws_conn_t *vcg__ws_conn_new(vcg_instance_t *inst);
/* Bind c to its wsi through lws's opaque user data (after adoption). */
void vcg__ws_conn_bind(ws_conn_t *c, struct lws *wsi);
/* LWS_CALLBACK_ESTABLISHED: the upgrade is done (keepalive, takeover,
 * what was queued or a close that came before). */
void vcg__ws_conn_established(ws_conn_t *c);
/* LWS_CALLBACK_CLOSED: lws is closing the socket; nothing more is written
 * and what was queued is released. */
void vcg__ws_conn_closed(ws_conn_t *c);
/* Unlink and free c, releasing every queued reference.  Does not call
 * session_closed(); the caller decides. */
void vcg__ws_conn_free(ws_conn_t *c);
/* Mark c closing with code and reason; the close frame is written by
 * the flush (a socket we own) or vcg__ws_on_writeable().  Idempotent. */
void vcg__ws_conn_begin_close(ws_conn_t *c, int code, const char *reason);
/* Close the socket now, without a close frame, from outside lws's
 * callbacks; WSI_DESTROY follows.  Idempotent. */
void vcg__ws_conn_kill(ws_conn_t *c);
/* Close from inside a RECEIVE callback: returns -1 for the callback. */
int vcg__ws_conn_close_now(ws_conn_t *c, int code, const char *reason);
/* c (a socket we own) enters the closing list: WS_CLOSE_ACK_SECS from now
 * to finish the close handshake, then it is hung up. */
void vcg__ws_closing_start(ws_conn_t *c);
/* The list of sockets we own that are closing, one deadline each (start
 * and teardown). */
void vcg__ws_closings_init(vcg_instance_t *inst);
void vcg__ws_closings_close(vcg_instance_t *inst);

/* ---------------------------------------------------- ws_out.c */

/* Release every packet queued for c; with keep_partial, not the first when
 * part of its frame is out already (the stream needs the rest of it). */
void vcg__ws_queue_drop(ws_conn_t *c, int keep_partial);
/* Tell the host what c still holds queued. */
void vcg__ws_queue_report(ws_conn_t *c);
/* Queue one packet reference for c (the vtable's send()). */
int vcg__ws_conn_send(vcg_instance_t *inst, ws_conn_t *c, vcg_packet_t *p);
/* c has something to write (packets, a control frame, its close): at the
 * end of this turn on a socket we own, when writable under lws. */
void vcg__ws_conn_wake(ws_conn_t *c);
/* A socket we own is writable again (its EPOLLOUT edge). */
void vcg__ws_own_writable(ws_conn_t *c);
/* Owe the client a PONG with this payload, or our own PING (a socket we
 * own). */
void vcg__ws_own_pong(ws_conn_t *c, const uint8_t *payload, size_t n);
void vcg__ws_own_ping(ws_conn_t *c);
/* LWS_CALLBACK_SERVER_WRITEABLE. */
int vcg__ws_on_writeable(vcg_instance_t *inst, ws_conn_t *c);
/* c delivered input this turn (see WS_DEFER_MAX_READERS). */
void vcg__ws_note_reader(vcg_instance_t *inst, ws_conn_t *c);
/* The end-of-turn flush handles of inst (start and teardown). */
void vcg__ws_flush_init(vcg_instance_t *inst);
void vcg__ws_flush_close(vcg_instance_t *inst);
/* notsent_lowat changed: the largest batch follows it. */
void vcg__ws_batch_limit(vcg_instance_t *inst);

#endif
