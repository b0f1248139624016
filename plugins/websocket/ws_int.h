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
 *   ws_in.c      inbound messages: our strict frame reader on ws://, lws's
 *                callbacks on wss://, reassembly, size limits, delivery
 *   ws_out.c     one connection's state, its output queue, framing and the
 *                end-of-turn flush, and its close handshake
 *   ws_deadline.c  lists of connections that share a timeout, one timer each
 *   websocket.c  options, configure(), the vtable
 *   ws_util.c    pure helpers (no lws, no libuv), unit-tested
 * Calls go one way where they can: ws_lws.c dispatches lws's events to the
 * others; ws_http.c, ws_in.c and ws_out.c never call into ws_lws.c.
 */
#ifndef VCG_WS_INT_H
#define VCG_WS_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <uv.h>
#include <libwebsockets.h>

#include <vcgate/plugin.h>

#include "ws_util.h"

#define WS_VERSION "0.1.0"

/* Hard cap on packets queued per connection.  The host's drop policy keeps
 * queues far below this; the cap only guards against a host bug. */
#define WS_QUEUE_MAX 8192u
/* Messages written per flush of one connection before yielding to the
 * others; the rest goes out when lws reports the socket writable. */
#define WS_WRITE_BUDGET 256
/* Read before write under fan-out load: when a turn's input came from at
 * most WS_DEFER_MAX_READERS connections, WS_DEFER_MIN_DIRTY or more
 * connections wait for a write, and a reader's socket still holds unread
 * bytes, the flush waits for the next turn (at most WS_DEFER_MAX_TURNS in
 * a row; the poll returns at once, the input being readable).  lws reads
 * at most rx_buffer_size per turn, so without this a backlogged sender in
 * a large room cost one send() per receiver per few packets; with it the
 * batches grow with the backlog.  Nothing waits when the input is drained. */
#define WS_DEFER_MAX_READERS 4
#define WS_DEFER_MIN_DIRTY 32
#define WS_DEFER_MAX_TURNS 4
/* Bytes of framed messages handed to lws (one send()) per callback, at
 * most; with notsent_lowat a batch is no larger than it (see ws_out.c). */
#define WS_BATCH_BYTES (256u * 1024u)
/* Bytes our ws:// reader takes per recv() (ws_in.c), into one buffer per
 * instance. */
#define WS_RD_BUF (64u * 1024u)
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
 * connections cannot each pin max_message_size (ws_in.c). */
struct vcg_plugin_state {
  atomic_size_t rx_used;
};

/* The request methods the routes tell apart. */
enum { WS_METHOD_GET, WS_METHOD_HEAD, WS_METHOD_OTHER };

/* Whole seconds for lws's second-granular policies, rounded up. */
unsigned vcg__ws_secs(int64_t ms);

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

struct vcg_instance {
  const vcg_host_api_t *host;  /* borrowed, valid until stop completes */
  vcg_plugin_state_t *state;   /* borrowed from init(), outlives every inst */
  vcg_worker_t *w;
  const ws_conf_t *conf;       /* borrowed, idem */
  uv_loop_t *loop;

  struct lws_context *ctx;     /* owned; NULL once destroyed */
  struct lws_context *ctx_alive; /* lws writes NULL here when ctx is freed */
  struct lws_vhost *vh;
  lws_retry_bo_t retry;        /* must outlive the vhost */
  struct lws_protocols protocols[2];

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
  char *peekbuf;               /* max_header_size bytes, for MSG_PEEK (owned) */
  int tls;
  char url[300];               /* "ws://127.0.0.1:8080", for logs */

  ws_conn_t *conns;            /* every connection with a ws_conn_t */
  size_t nconns;

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

  /* The one copy of outbound bytes: lws_write() needs LWS_PRE writable
   * bytes in front of the payload for the frame header, and packets are
   * shared and immutable (their headroom belongs to nobody), so each message
   * is copied here first.  Writes are synchronous inside the writeable
   * callback, so one buffer per instance serves every connection; it grows
   * to the largest message sent and is reused. */
  uint8_t *sendbuf;
  size_t sendbuf_cap;
  size_t batch_max;            /* bytes per batch: WS_BATCH_BYTES or less */
  uint8_t *rdbuf;              /* WS_RD_BUF bytes for ws_in.c's reader (owned) */
  ws_dl_t messages;            /* connections with an unfinished message */

  int draining;
  int stopping;
  vcg_stopped_cb stop_cb;
  uv_timer_t reaper;           /* polls for lws teardown during stop */
  int reaper_open;
  uint64_t stop_deadline;
  int destroy_calls;
};

typedef struct ws_peek ws_peek_t;
typedef struct ws_rd ws_rd_t;

struct ws_conn {
  ws_conn_t *prev, *next;      /* in inst->conns */
  vcg_instance_t *inst;
  struct lws *wsi;             /* NULL until the socket is adopted */
  vcg_session_t *s;            /* host-owned; NULL until session_open */

  /* From accept to the upgrade (ws_listen.c). */
  int fd;                      /* ours until adopted, then lws's; -1 when gone */
  ws_peek_t *peek;             /* while we wait for the request line (owned) */
  char *target;                /* the first request's raw target (owned);
                                  NULL on TLS, or once a request used it */
  uint32_t head_len;           /* bytes of the first request's head, as
                                  peeked (0 on TLS) */
  ws_rd_t *rd;                 /* our reader once upgraded on ws:// (owned) */
  union {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
  } peer;
  ws_dl_node_t up_node;        /* in inst->upgrades until upgraded */
  unsigned has_slot : 1;       /* holds a host->conn_admit() slot */
  unsigned slot_counted : 1;   /* conn_admit()'s value, for conn_release() */

  int32_t dirty_idx;           /* slot in inst->dirty, -1 when absent */
  uint32_t alive_sec;          /* loop second of the last validity report */

  /* FIFO of packet references (ring), owned: each holds one reference. */
  vcg_packet_t **q;
  uint32_t qhead, qlen, qcap;
  size_t qbytes;

  /* Reassembly of a fragmented message (or one larger than a read);
   * allocated only while such a message is in flight, counted in
   * state->rx_used, and it must be finished by msg_deadline. */
  uint8_t *rx;
  size_t rxlen, rxcap;
  ws_dl_node_t msg_node;       /* in inst->messages while rx is held */

  unsigned established : 1;    /* the upgrade completed */
  unsigned closing : 1;        /* close requested: no more data written */
  unsigned close_sent : 1;     /* our close frame is out, awaiting the echo */
  unsigned peer_closed : 1;    /* the client sent its close: hang up after ours */
  uint16_t close_code;
  char close_reason[124];      /* RFC 6455: reason <= 123 bytes */
};

/* ---------------------------------------------------- ws_deadline.c */

void vcg__ws_dl_init(vcg_instance_t *inst, ws_dl_t *dl, uint64_t timeout_ms,
                     void (*expired)(vcg_instance_t *, ws_dl_node_t *));
/* Start n's deadline (now + the list's timeout); restarts it when n is in
 * the list already. */
void vcg__ws_dl_add(ws_dl_t *dl, ws_dl_node_t *n);
/* Take n out (no-op when it is not in). */
void vcg__ws_dl_remove(ws_dl_t *dl, ws_dl_node_t *n);
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

/* ---------------------------------------------------- ws_in.c */

/* LWS_CALLBACK_RECEIVE: one piece of a message (lws's reader). */
int vcg__ws_on_receive(vcg_instance_t *inst, ws_conn_t *c, const void *in,
                       size_t len);
/* LWS_CALLBACK_WS_PEER_INITIATED_CLOSE (lws's reader): check the client's
 * close frame; returns what the callback returns. */
int vcg__ws_peer_close(vcg_instance_t *inst, ws_conn_t *c, const void *in,
                       size_t len);
/* At ESTABLISHED on ws://: read the socket ourselves from now on, when lws
 * holds none of its bytes. */
void vcg__ws_rd_start(ws_conn_t *c);
/* Stop our reader (CLOSED, WSI_DESTROY).  Idempotent. */
void vcg__ws_rd_stop(ws_conn_t *c);
/* The connection is writable: send what our reader owes (a PONG). */
void vcg__ws_rd_writeable(ws_conn_t *c);
/* Drop c's unfinished message and give its memory back (close, free). */
void vcg__ws_msg_reset(ws_conn_t *c);
/* The unfinished-message timer of inst (start and teardown). */
void vcg__ws_in_init(vcg_instance_t *inst);
void vcg__ws_in_close(vcg_instance_t *inst);

/* ---------------------------------------------------- ws_out.c */

/* A connection's state from accept on, linked into inst. */
ws_conn_t *vcg__ws_conn_new(vcg_instance_t *inst);
/* Bind c to its wsi through lws's opaque user data (after adoption). */
void vcg__ws_conn_bind(ws_conn_t *c, struct lws *wsi);
/* Unlink and free c, releasing every queued reference.  Does not call
 * session_closed(); the caller decides. */
void vcg__ws_conn_free(ws_conn_t *c);
/* Mark c closing with code and reason; the close frame is written by
 * vcg__ws_on_writeable().  Idempotent. */
void vcg__ws_conn_begin_close(ws_conn_t *c, int code, const char *reason);
/* Close the socket now, without a close frame, from outside lws's
 * callbacks; WSI_DESTROY follows. */
void vcg__ws_conn_kill(ws_conn_t *c);
/* Close from inside a RECEIVE callback: returns -1 for the callback. */
int vcg__ws_conn_close_now(ws_conn_t *c, int code, const char *reason);
/* Queue one packet reference for c (the vtable's send()). */
int vcg__ws_conn_send(vcg_instance_t *inst, ws_conn_t *c, vcg_packet_t *p);
/* LWS_CALLBACK_SERVER_WRITEABLE. */
int vcg__ws_on_writeable(vcg_instance_t *inst, ws_conn_t *c);
/* c delivered input this turn (see WS_DEFER_MAX_READERS). */
void vcg__ws_note_reader(vcg_instance_t *inst, ws_conn_t *c);
/* The end-of-turn flush handles of inst (start and teardown). */
void vcg__ws_flush_init(vcg_instance_t *inst);
void vcg__ws_flush_close(vcg_instance_t *inst);

#endif
