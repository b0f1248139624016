/*
 * vcgate/plugin.h -- the one public header of vcgate.
 *
 * This header is the whole contract between the vcgate daemon (the "host")
 * and its plugins.  Nothing else of the core is public: plugins never link
 * against core symbols, and no struct layout of the core is part of the ABI.
 *
 * PLUGIN AUTHOR'S GUIDE
 * =====================
 *
 * Kinds.  A plugin is either a TRANSPORT (it accepts client connections and
 * carries PacketWrapper bytes in and out: WebSocket, WebTransport, ...) or a
 * BUS (it joins rooms across worker loops or processes: in-process, NATS).
 *
 * Entry point.  A plugin is a shared object exporting exactly one symbol,
 * VCG_PLUGIN_ENTRY ("vcg_plugin_entry"), of type vcg_plugin_entry_fn.  The
 * host calls it once, offering its ABI version; the plugin returns a pointer
 * to a static, const descriptor (or NULL when it cannot serve that ABI).
 * Fill the descriptor with VCG_PLUGIN_DESCRIPTOR() so the ABI fields are
 * stamped from the header you compiled against and unset vtable members are
 * NULL.  Build with -fvisibility=hidden and mark the entry with VCG_EXPORT.
 *
 * ABI rules.  VCG_ABI_MAJOR changes when anything breaks; the loader refuses
 * a plugin built for another major.  VCG_ABI_MINOR grows when members are
 * appended; a plugin built for a newer minor than the host is refused, an
 * older one is accepted (the members it does not know are NULL).  Every
 * struct that crosses the ABI begins with its size so either side can tell
 * which members the other knows.  Mandatory vtable members are listed below;
 * the loader refuses a plugin that leaves one NULL, naming the member.
 *
 * Configuration.  A plugin declares its options in a table of vcg_option_t
 * (name, type, default, range, offset into a struct of conf_size bytes).
 * The host parses the plugin's libconfig group against that table with
 * generic typed setters, so every plugin reports errors the same way
 * ("file:line: option: reason") and `vcgate -t` checks plugin options too.
 * Unknown options are errors.  configure() then sees the filled struct and
 * may add cross-option checks; it runs before any loop exists.
 *
 * Lifecycle (all on the thread noted):
 *   configure(conf)          main thread, once per config generation
 *   init(conf)    -> state   main thread, once per process; plugin-wide state
 *   start(state, worker)     worker loop thread, once per worker loop;
 *                 -> inst    returns the per-worker instance
 *   ... traffic ...          worker loop thread
 *   drain(inst)              worker loop thread: stop accepting, tell clients
 *                            to go away (close 1001 / GOAWAY); may be async
 *   stop(inst, cb)           worker loop thread: release every handle; call
 *                            cb(worker) exactly once when all handles are
 *                            closed (possibly from a later loop iteration)
 *   fini(state)              main thread, after every worker has stopped
 *
 * Threads.  Every host function below must be called on the loop thread of
 * the worker it concerns, except those marked THREAD-SAFE.  A plugin that
 * runs threads of its own (nats.c does) crosses into the core only through
 * the THREAD-SAFE entries, which hand the work to the worker loop through
 * uv_async_send.  No plugin runs a private loop thread to serve clients.
 *
 * Ownership is written next to every pointer.  In short: bytes handed to the
 * host are borrowed for the duration of the call; a vcg_packet_t handed to a
 * plugin carries one reference that the plugin releases with
 * host->packet_unref() exactly once, on every path (sent, dropped, failed).
 */
#ifndef VCGATE_PLUGIN_H
#define VCGATE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <string.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VCG_ABI_MAJOR 1
#define VCG_ABI_MINOR 2

#define VCG_PLUGIN_ENTRY "vcg_plugin_entry"

#if defined(__GNUC__)
#define VCG_EXPORT __attribute__((visibility("default")))
#define VCG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define VCG_EXPORT
#define VCG_PRINTF(f, a)
#endif

/* Error codes: 0 or a negative errno-style value, as libuv does (the
 * values are Linux's errno numbers, so a code from libuv or the C library,
 * negated, reads the same). */
#define VCG_EPERM    (-1)
#define VCG_ENOENT   (-2)
#define VCG_EIO      (-5)
#define VCG_EAGAIN   (-11)
#define VCG_ENOMEM   (-12)
#define VCG_EACCES   (-13)
#define VCG_EBUSY    (-16)
#define VCG_EEXIST   (-17)
#define VCG_EINVAL   (-22)
#define VCG_EMFILE   (-24)
#define VCG_ENOSPC   (-28)
#define VCG_EMSGSIZE (-90)
#define VCG_ENOTSUP  (-95)
#define VCG_EADDRINUSE (-98)
#define VCG_ENOBUFS  (-105)
#define VCG_ETIMEDOUT (-110)
#define VCG_ECONNREFUSED (-111)
#define VCG_ECANCELED (-125)

/* A short text for an error code (ABI 1.2): "invalid argument (EINVAL)".
 * Codes outside the list above are any other negative errno value, as
 * libuv returns them, and read through strerror(). */
static inline const char *vcg_strerror(int err) {
  switch (err) {
  case 0:                return "success";
  case VCG_EPERM:        return "operation not permitted (EPERM)";
  case VCG_ENOENT:       return "no such file or entry (ENOENT)";
  case VCG_EIO:          return "input/output error (EIO)";
  case VCG_EAGAIN:       return "resource temporarily unavailable (EAGAIN)";
  case VCG_ENOMEM:       return "out of memory (ENOMEM)";
  case VCG_EACCES:       return "permission denied (EACCES)";
  case VCG_EBUSY:        return "busy or needs a restart (EBUSY)";
  case VCG_EEXIST:       return "already exists (EEXIST)";
  case VCG_EINVAL:       return "invalid argument (EINVAL)";
  case VCG_EMFILE:       return "too many open files (EMFILE)";
  case VCG_ENOSPC:       return "no space left (ENOSPC)";
  case VCG_EMSGSIZE:     return "message too long (EMSGSIZE)";
  case VCG_ENOTSUP:      return "not supported (ENOTSUP)";
  case VCG_EADDRINUSE:   return "address already in use (EADDRINUSE)";
  case VCG_ENOBUFS:      return "no buffer space (ENOBUFS)";
  case VCG_ETIMEDOUT:    return "timed out (ETIMEDOUT)";
  case VCG_ECONNREFUSED: return "connection refused (ECONNREFUSED)";
  case VCG_ECANCELED:    return "canceled (ECANCELED)";
  default:               return err < 0 ? strerror(-err) : "unknown error";
  }
}

/* Opaque handles.  Their layout belongs to the host. */
typedef struct vcg_worker  vcg_worker_t;   /* one worker loop of the host */
typedef struct vcg_session vcg_session_t;  /* one client session */
typedef struct vcg_packet  vcg_packet_t;   /* immutable, reference-counted */

/* Log levels, syslog-like. */
enum vcg_log_level {
  VCG_LOG_ERROR = 0,
  VCG_LOG_WARN  = 1,
  VCG_LOG_INFO  = 2,
  VCG_LOG_DEBUG = 3
};

/* PacketWrapper.packet_type values (PROTOCOL.md). */
enum vcg_packet_type {
  VCG_PT_UNKNOWN = 0, VCG_PT_RSA_PUB_KEY = 1, VCG_PT_AES_KEY = 2,
  VCG_PT_MEDIA = 3, VCG_PT_CONNECTION = 4, VCG_PT_DIAGNOSTICS = 5,
  VCG_PT_HEALTH = 6, VCG_PT_MEETING = 7, VCG_PT_SESSION_ASSIGNED = 8,
  VCG_PT_CONGESTION = 9
};

/* Why the host refuses or ends a session, and the one table that says how
 * every transport answers it: the HTTP status of a refused request (the
 * WebSocket upgrade, the WebTransport CONNECT) and the close code of a
 * session that ends (WebSocket close frame, WebTransport CLOSE capsule).
 * Transports call vcg_close_http_status() / vcg_close_ws_code() and never
 * keep a mapping of their own, so the same refusal reads the same on every
 * transport. */
enum vcg_close_reason {             /*                        HTTP   close */
  VCG_CLOSE_NORMAL       = 0,  /* client went away / normal end    -    1000 */
  VCG_CLOSE_BAD_REQUEST  = 1,  /* malformed lobby URL, identity,
                                  room or token                     400  1008 */
  VCG_CLOSE_FORBIDDEN    = 2,  /* reserved identity, bad token,
                                  no access                         403  1008 */
  VCG_CLOSE_LIMIT        = 3,  /* per-address limit or rate         429  1013 */
  VCG_CLOSE_TOO_BIG      = 4,  /* message over max size             413  1009 */
  VCG_CLOSE_SLOW         = 5,  /* slow consumer                     -    1008 */
  VCG_CLOSE_SHUTDOWN     = 6,  /* server draining                   503  1001 */
  VCG_CLOSE_INTERNAL     = 7,  /* internal error, misconfiguration  500  1011 */
  VCG_CLOSE_IDLE         = 8,  /* idle timeout                      -    1001 */
  VCG_CLOSE_OVERLOAD     = 9,  /* global limit, room full           503  1013 */
  VCG_CLOSE_NOT_FOUND    = 10, /* not a lobby path                  404  1008 */
  /* ABI 1.2 */
  VCG_CLOSE_UNAUTHORIZED = 11, /* expired token                     401  1008 */
  VCG_CLOSE_GONE         = 12, /* legacy lobby while tokens are
                                  required                          410  1008 */
  VCG_CLOSE_PROTOCOL     = 13, /* protocol violation by the client  400  1002 */
  VCG_CLOSE_BAD_DATA     = 14, /* invalid payload (non-UTF-8 text)  400  1007 */
  VCG_CLOSE_METHOD       = 15  /* wrong request method              405  1008 */
};

/* HTTP status for refusing a request with reason why. */
static inline int vcg_close_http_status(int why) {
  switch (why) {
  case VCG_CLOSE_BAD_REQUEST:
  case VCG_CLOSE_PROTOCOL:
  case VCG_CLOSE_BAD_DATA:     return 400;
  case VCG_CLOSE_UNAUTHORIZED: return 401;
  case VCG_CLOSE_FORBIDDEN:    return 403;
  case VCG_CLOSE_NOT_FOUND:    return 404;
  case VCG_CLOSE_METHOD:       return 405;
  case VCG_CLOSE_GONE:         return 410;
  case VCG_CLOSE_TOO_BIG:      return 413;
  case VCG_CLOSE_LIMIT:        return 429;
  case VCG_CLOSE_SHUTDOWN:
  case VCG_CLOSE_OVERLOAD:     return 503;
  default:                     return 500;
  }
}

/* RFC 6455 close code for ending a session with reason why (WebTransport
 * carries the same number in its CLOSE_WEBTRANSPORT_SESSION capsule). */
static inline int vcg_close_ws_code(int why) {
  switch (why) {
  case VCG_CLOSE_NORMAL:       return 1000;
  case VCG_CLOSE_SHUTDOWN:
  case VCG_CLOSE_IDLE:         return 1001;
  case VCG_CLOSE_PROTOCOL:     return 1002;
  case VCG_CLOSE_BAD_DATA:     return 1007;
  case VCG_CLOSE_BAD_REQUEST:
  case VCG_CLOSE_FORBIDDEN:
  case VCG_CLOSE_SLOW:
  case VCG_CLOSE_NOT_FOUND:
  case VCG_CLOSE_UNAUTHORIZED:
  case VCG_CLOSE_GONE:
  case VCG_CLOSE_METHOD:       return 1008;
  case VCG_CLOSE_TOO_BIG:      return 1009;
  case VCG_CLOSE_LIMIT:
  case VCG_CLOSE_OVERLOAD:     return 1013;
  default:                     return 1011;
  }
}

/* ---------------------------------------------------------------- config */

typedef enum vcg_option_type {
  VCG_OPT_END = 0,  /* terminates a table */
  VCG_OPT_INT,      /* int64_t; range [min, max] */
  VCG_OPT_BOOL,     /* int (0/1) */
  VCG_OPT_STRING,   /* char *; host-owned, valid until fini(); NULL if unset
                       and no default */
  VCG_OPT_STRLIST   /* char **, NULL-terminated, host-owned; a libconfig
                       list or array of strings, or a single string */
} vcg_option_type_t;

typedef struct vcg_option {
  const char *name;         /* the libconfig setting name */
  vcg_option_type_t type;
  size_t offset;            /* offset of the field in the plugin's conf */
  int64_t def_int;          /* default for INT and BOOL */
  const char *def_str;      /* default for STRING (may be NULL) */
  int64_t min, max;         /* inclusive range for INT; lengths for STRING */
  const char *doc;          /* one line, shown by `vcgate --help-plugin` */
} vcg_option_t;

#define VCG_OPTION_INT(st, field, nm, def, lo, hi, d) \
  { (nm), VCG_OPT_INT, offsetof(st, field), (def), NULL, (lo), (hi), (d) }
#define VCG_OPTION_BOOL(st, field, nm, def, d) \
  { (nm), VCG_OPT_BOOL, offsetof(st, field), (def), NULL, 0, 1, (d) }
#define VCG_OPTION_STRING(st, field, nm, def, d) \
  { (nm), VCG_OPT_STRING, offsetof(st, field), 0, (def), 0, 4096, (d) }
#define VCG_OPTION_STRLIST(st, field, nm, d) \
  { (nm), VCG_OPT_STRLIST, offsetof(st, field), 0, NULL, 0, 0, (d) }
#define VCG_OPTION_END { NULL, VCG_OPT_END, 0, 0, NULL, 0, 0, NULL }

/* ------------------------------------------------------------ host API */

/* What a transport tells the host about a new connection. */
typedef struct vcg_session_info {
  uint32_t size;             /* sizeof(vcg_session_info_t) */
  const char *user;          /* URL-decoded identity; borrowed for the call */
  const char *room;          /* room name; borrowed for the call */
  const struct sockaddr *peer; /* peer address; borrowed for the call */
  void *conn;                /* the transport's connection; the host passes
                                it back in send()/close(), never touches it */
  /* ABI 1.2.  The request target exactly as the client sent it: path and
   * query, NOT percent-decoded ("/lobby/alice/standup",
   * "/lobby?token=eyJ..."); borrowed for the call.  When set, the host
   * parses the lobby grammar itself (core/lobby.c) and user and room are
   * ignored, so every transport accepts and refuses the same URLs; a
   * transport built for ABI 1.1 passes user and room instead. */
  const char *target;
  /* ABI 1.2.  VCG_SESSION_ADMITTED: the connection already holds a slot
   * from host->conn_admit(), so the host does not count it again. */
  uint32_t flags;
} vcg_session_info_t;

#define VCG_SESSION_ADMITTED 0x1u

/* Functions of the host, handed to every plugin call that needs them. */
typedef struct vcg_host_api {
  uint32_t size;             /* sizeof(vcg_host_api_t) as the host knows it */
  uint16_t abi_major, abi_minor;

  /* Log a line prefixed with the plugin's name (and the session id when
   * s != NULL).  Cheap when the level is filtered out.  w may be NULL on
   * the main thread during configure() and init() (ABI 1.1), when no
   * worker exists yet; the line is then prefixed "plugin". */
  void (*log)(vcg_worker_t *w, vcg_session_t *s, int level,
              const char *fmt, ...) VCG_PRINTF(4, 5);
  int (*log_enabled)(vcg_worker_t *w, int level);

  /* The worker's loop (the plugin runs every handle on it). */
  uv_loop_t *(*loop)(vcg_worker_t *w);
  unsigned (*worker_index)(vcg_worker_t *w);

  /* ---- packets ---- */
  /* Read-only view of the PacketWrapper bytes.  Valid while a reference is
   * held. */
  const uint8_t *(*packet_data)(const vcg_packet_t *p, size_t *len);
  int (*packet_type)(const vcg_packet_t *p);       /* enum vcg_packet_type */
  int (*packet_media_type)(const vcg_packet_t *p); /* MediaType or -1 */
  uint64_t (*packet_session_id)(const vcg_packet_t *p);
  /* Reference counting is atomic: refs may travel between threads. */
  void (*packet_ref)(vcg_packet_t *p);
  void (*packet_unref)(vcg_packet_t *p);

  /* ---- transports ---- */
  /* Open a session for a new connection.  The host parses the request
   * target (info->target: the lobby URL, legacy or token), authenticates,
   * validates identity and room, applies limits, assigns a session id,
   * joins the room and queues SESSION_ASSIGNED (which reaches the transport
   * through send()).  Hand it every request that asks for a session,
   * whatever its path: the host answers a path that is not a lobby with
   * VCG_CLOSE_NOT_FOUND.  On refusal returns a negative code, sets *why
   * (enum vcg_close_reason) and writes a human-readable reason into msg;
   * the transport answers with vcg_close_http_status(*why) and msg.  On success *out is the session, owned by the host, valid
   * until the transport calls session_closed().  Note: the host calls
   * send() for this conn from inside session_open() (SESSION_ASSIGNED,
   * MEETING_STARTED), so the conn must be ready to queue before the call;
   * a transport that cannot write yet (WebTransport before its 200) keeps
   * the packets queued until it can. */
  int (*session_open)(vcg_worker_t *w, const vcg_session_info_t *info,
                      vcg_session_t **out, int *why, char *msg, size_t msglen);
  /* One inbound message (bytes borrowed for the call).  Returns 0 when the
   * message was accepted or dropped by policy (malformed, rate limited:
   * counted, never relayed), or a negative code when the host has asked the
   * transport to close the session (through close()). */
  int (*session_deliver)(vcg_session_t *s, const uint8_t *data, size_t len);
  /* The connection is gone: the host leaves the room, unrefs what is still
   * queued for it, and frees the session.  Call exactly once; after it the
   * host never calls send()/close() for this connection again. */
  void (*session_closed)(vcg_session_t *s);
  uint64_t (*session_id)(const vcg_session_t *s);
  /* The drop policy lives in the host, which needs the depth of each
   * session's output queue.  The host adds every packet it hands to send();
   * the transport reports the absolute depth (packets and bytes it still
   * holds for the session) whenever it has written or dropped some. */
  void (*session_set_queued)(vcg_session_t *s, size_t packets, size_t bytes);
  /* Limits from core config, for transports to apply before reading. */
  size_t (*max_message_size)(vcg_worker_t *w);

  /* ---- buses ---- */
  /* Deliver a packet from another node/worker to the local members of room,
   * never to origin_session.  Loop thread of w.  The bytes are borrowed. */
  int (*bus_deliver)(vcg_worker_t *w, const char *room,
                     uint64_t origin_session, const uint8_t *data, size_t len);
  /* THREAD-SAFE: the same, from any thread; the bytes are copied once. */
  int (*bus_deliver_ts)(vcg_worker_t *w, const char *room,
                        uint64_t origin_session, const uint8_t *data,
                        size_t len);
  /* THREAD-SAFE: the same with a packet reference (one ref is consumed, on
   * every path); used by the in-process bus to avoid copies. */
  int (*bus_deliver_packet_ts)(vcg_worker_t *w, const char *room,
                               uint64_t origin_session, vcg_packet_t *p);

  /* ---- metrics ---- */
  /* Add to a named counter (labelled with the plugin name).  Loop thread. */
  void (*counter_add)(vcg_worker_t *w, const char *name, uint64_t v);
  /* THREAD-SAFE variant. */
  void (*counter_add_ts)(vcg_worker_t *w, const char *name, uint64_t v);

  /* ---- ABI 1.1: process-wide facts ---- */
  /* One plugin publishes a fact for others, e.g. the WebTransport plugin
   * its URL and certificate hash, which the WebSocket listener serves to
   * pages as JSON.  Keys are "plugin.fact"; key and value are copied (at
   * most 64 keys, values up to 1024 bytes).  THREAD-SAFE. */
  int (*info_set)(vcg_worker_t *w, const char *key, const char *value);
  /* Copy the value of key into buf: 0, VCG_ENOENT when unset, VCG_ENOBUFS
   * when buf is too small.  THREAD-SAFE. */
  int (*info_get)(vcg_worker_t *w, const char *key, char *buf, size_t len);

  /* ---- ABI 1.2: admission ---- */
  /* A connection counts against the global and per-address limits from
   * the moment it costs the server memory (an accepted socket before its
   * upgrade, a half-open QUIC connection), not only once it is a session.
   * Ask before spending anything on it: returns 0 or 1 (admitted; keep the
   * value and pass it to conn_release() exactly once when the connection
   * is gone), VCG_EAGAIN (the address is over core.max_connections_per_ip:
   * answer 429 or drop) or VCG_EBUSY (the process is at
   * core.max_connections: 503 or drop).  A session opened for an admitted
   * connection sets VCG_SESSION_ADMITTED in its info. */
  int (*conn_admit)(vcg_worker_t *w, const struct sockaddr *peer);
  void (*conn_release)(vcg_worker_t *w, const struct sockaddr *peer, int admitted);

  /* ---- ABI 1.2: deadlines ---- */
  /* The loop time (uv_now() of w's loop, ms) after which p is not worth
   * sending any more, or UINT64_MAX for packets that are never dropped
   * (key exchange, control).  A transport checks it when it takes p from
   * its queue to write it; past the deadline it calls packet_shed()
   * instead of writing, so a receiver that falls behind gets fresh video
   * rather than seconds of old video. */
  uint64_t (*packet_deadline)(const vcg_packet_t *p);
  /* s's transport drops p (past its deadline).  The host counts it and
   * tells the sender (CONGESTION, at most once a second).  Ownership: the
   * reference passes to the host, which releases it. */
  void (*packet_shed)(vcg_session_t *s, vcg_packet_t *p);
  /* The two above in one call, and what a transport should use: s's
   * transport takes p from its queue to write it now.  Returns 0: write
   * it (the host records its relay latency); or 1: p was past its
   * deadline and has been shed as by packet_shed() (the reference is the
   * host's now: do not touch p again). */
  int (*packet_take)(vcg_session_t *s, vcg_packet_t *p);

  /* ---- ABI 1.2: bus health ---- */
  /* THREAD-SAFE.  A bus reports whether its connection is up (1) or not
   * (0); the host shows it in metrics (bus_up, bus_reconnects_total) and in
   * /readyz.  A bus that never calls this counts as up. */
  void (*bus_state_ts)(vcg_worker_t *w, int up);

  /* ---- ABI 1.2: lobby check ---- */
  /* Judge a request target as session_open() would (the lobby grammar,
   * names, token, require_token; not the limits), opening nothing: 0 when
   * it would be accepted, else a negative code with *why and a reason in
   * msg.  For answering a plain GET of a lobby URL with the status and
   * reason a page can show its user (browsers hide why an upgrade failed). */
  int (*lobby_check)(vcg_worker_t *w, const char *target, int *why, char *msg, size_t msglen);
} vcg_host_api_t;

/* ------------------------------------------------------------ vtables */

typedef struct vcg_plugin_state vcg_plugin_state_t; /* plugin-defined */
typedef struct vcg_instance     vcg_instance_t;     /* plugin-defined */

typedef void (*vcg_stopped_cb)(vcg_worker_t *w);

/* Members shared by both kinds. */
#define VCG__COMMON_OPS                                                      \
  /* Optional.  Cross-option checks on the filled conf (main thread).  On   \
   * error write "option: reason" into err and return VCG_EINVAL. */        \
  int (* const configure)(const void *conf, char *err, size_t errlen);      \
  /* Optional.  Process-wide state (main thread). */                        \
  int (* const init)(const vcg_host_api_t *host, const void *conf,          \
                     vcg_plugin_state_t **state);                           \
  /* MANDATORY.  Per-worker start on w's loop thread.  host and conf stay \
   * valid until stop() completes; state is what init() made (or NULL). */ \
  int (* const start)(const vcg_host_api_t *host, vcg_plugin_state_t *state,\
                      const void *conf, vcg_worker_t *w,                    \
                      vcg_instance_t **inst);                               \
  /* Optional.  Apply a new conf (same layout) at SIGHUP; return 0 if       \
   * applied, VCG_EBUSY if a restart is needed. */                          \
  int (* const reload)(vcg_instance_t *inst, const void *conf);             \
  /* MANDATORY.  Stop accepting / tell peers to go away. */                 \
  void (* const drain)(vcg_instance_t *inst);                               \
  /* MANDATORY.  Close every handle, then call cb(w) once. */               \
  void (* const stop)(vcg_instance_t *inst, vcg_stopped_cb cb);             \
  /* Optional.  Free process-wide state (main thread). */                   \
  void (* const fini)(vcg_plugin_state_t *state);

typedef struct vcg_transport_ops {
  VCG__COMMON_OPS
  /* MANDATORY.  Queue one packet for the connection.  Ownership: one
   * reference of p passes to the plugin, which releases it with
   * host->packet_unref() once written or dropped, on every path.  Returns
   * 0 or VCG_ENOBUFS when the connection's queue is full (the plugin has
   * then already released the reference). */
  int (* const send)(vcg_instance_t *inst, void *conn, vcg_packet_t *p);
  /* MANDATORY.  Close the connection with an enum vcg_close_reason and a
   * short text.  Asynchronous: the plugin calls host->session_closed()
   * when it is gone. */
  void (* const close)(vcg_instance_t *inst, void *conn, int why,
                       const char *reason);
} vcg_transport_ops_t;

typedef struct vcg_bus_ops {
  VCG__COMMON_OPS
  /* MANDATORY.  The first local session of the worker joined room. */
  int (* const room_join)(vcg_instance_t *inst, const char *room);
  /* MANDATORY.  The last local session of the worker left room. */
  void (* const room_leave)(vcg_instance_t *inst, const char *room);
  /* MANDATORY.  Publish a packet a local session sent.  Ownership: one
   * reference of p passes to the plugin (release it on every path). */
  int (* const publish)(vcg_instance_t *inst, const char *room,
                        uint64_t session_id, vcg_packet_t *p);
} vcg_bus_ops_t;

typedef enum vcg_plugin_kind {
  VCG_PLUGIN_TRANSPORT = 1,
  VCG_PLUGIN_BUS = 2
} vcg_plugin_kind_t;

/* The descriptor a plugin returns from its entry point. */
typedef struct vcg_plugin {
  uint32_t size;             /* sizeof(vcg_plugin_t), stamped */
  uint16_t abi_major;        /* stamped from this header */
  uint16_t abi_minor;
  uint32_t magic;            /* VCG_PLUGIN_MAGIC, stamped */
  const char *name;          /* stable name: config, logs, metrics */
  const char *version;       /* the plugin's own version string */
  const char *description;
  vcg_plugin_kind_t kind;
  const vcg_option_t *options; /* terminated by VCG_OPTION_END; may be NULL */
  size_t conf_size;          /* size of the conf struct the options fill */
  const vcg_transport_ops_t *transport; /* when kind == TRANSPORT */
  const vcg_bus_ops_t *bus;             /* when kind == BUS */
  /* ABI 1.2.  Names of options whose change needs a restart (listen
   * addresses, say), NULL-terminated; every other option is applied by
   * reload() on SIGHUP.  A plugin without reload() needs a restart for any
   * change.  The host reads this only from plugins built for 1.2 or later. */
  const char *const *restart_options;
  void *reserved[3];         /* zero: room for growth within a major */
} vcg_plugin_t;

#define VCG_PLUGIN_MAGIC 0x76636770u /* "vcgp" */

/* Fill a descriptor: VCG_PLUGIN_DESCRIPTOR(.name = "x", .kind = ...,
 * .transport = &ops).  Unset members are zero. */
#define VCG_PLUGIN_DESCRIPTOR(...)                                           \
  { .size = sizeof(vcg_plugin_t), .abi_major = VCG_ABI_MAJOR,               \
    .abi_minor = VCG_ABI_MINOR, .magic = VCG_PLUGIN_MAGIC, __VA_ARGS__ }

/* The entry point: host_major/minor are the host's ABI.  Return the
 * descriptor (static storage) or NULL. */
typedef const vcg_plugin_t *(*vcg_plugin_entry_fn)(unsigned host_major,
                                                   unsigned host_minor);

/* Define the entry point returning `desc`, refusing other ABI majors. */
#define VCG_PLUGIN_DEFINE(desc)                                              \
  VCG_EXPORT const vcg_plugin_t *vcg_plugin_entry(unsigned host_major,       \
                                                  unsigned host_minor);      \
  VCG_EXPORT const vcg_plugin_t *vcg_plugin_entry(unsigned host_major,       \
                                                  unsigned host_minor) {     \
    (void)host_minor;                                                        \
    return host_major == VCG_ABI_MAJOR ? &(desc) : NULL;                     \
  }

#ifdef __cplusplus
}
#endif
#endif /* VCGATE_PLUGIN_H */
