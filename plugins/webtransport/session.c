/*
 * session.c -- HTTP/3 and the WebTransport session on one QUIC
 * connection (see session.h).
 *
 * Flow control is credited explicitly for every byte we consume.  A
 * WebTransport uni stream is credited at the connection level only once
 * its message is complete (delivered or dropped), so the connection window
 * bounds what one client can make us buffer; its stream window holds one
 * message of the largest allowed size and is never extended.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "h3.h"
#include "qpack.h"
#include "session.h"

#define WT_DGRAM_MAX_PACKET 1200     /* larger packets always go on streams */
/* The transport's own hard cap on a session's output queue, twice the
 * core's default queue limits; the host's drop policy acts long before. */
#define WT_QUEUE_HARD_PACKETS 8192
#define WT_QUEUE_HARD_BYTES (8u << 20)
#define WT_MAX_HEADERS_FRAME (16u << 10)
#define WT_MAX_SETTINGS_FRAME 4096u
#define WT_LINGER_NS (2000ull * 1000000ull)
/* How long a server-initiated close waits for the peer to acknowledge the
 * CLOSE capsule and FIN before the session is reported gone anyway. */
#define WT_FINISH_NS (3000ull * 1000000ull)
#define WT_PEER_FIN_GRACE_NS (300ull * 1000000ull)
#define WT_BUFFERED_STREAM_REJECTED 0x3994bd84ull

/* ---- input: a stream the client opened ---- */
typedef struct wt_istream {
  struct wt_istream *prev, *next;   /* ss->is_all */
  int64_t id;
  int kind;                         /* enum vcg__wt_prefix_kind */
  vcg__wt_prefix_t pfx;
  vcg__wt_frame_rd_t fr;            /* control and request streams */
  uint8_t *buf;                     /* WT payload, or a buffered frame */
  size_t len, cap;
  uint64_t uncredited;              /* bytes not yet given back (WT uni) */
  int settings_seen;                /* control: SETTINGS; CONNECT: HEADERS */
  vcg__wt_capsule_rd_t *caps;       /* CONNECT stream only */
} wt_istream_t;

enum wt_sess_state {
  WT_S_NONE = 0,   /* no CONNECT yet */
  WT_S_OPENING,    /* inside host->session_open */
  WT_S_OPEN,       /* 200 queued: packets flow */
  WT_S_CLOSING,    /* ended by either side; session_closed still due */
  WT_S_DONE,       /* session_closed called (or no session at all) */
  WT_S_REFUSED     /* an error response was sent */
};

/* The session layer's state of one connection (c->app), made on first
 * use and freed with the connection. */
typedef struct wt_sess {
  wt_istream_t *is_all;          /* peer streams we still read (owned) */
  int64_t connect_id;            /* the CONNECT stream = session id, or -1 */
  int sstate;                    /* enum wt_sess_state */
  vcg_session_t *s;              /* the host's, until session_closed */
  int close_code_pending;        /* a close capsule must be queued */
  int server_close;              /* we closed: wait for the peer's end */
  int peer_fin;                  /* the peer ended its CONNECT stream side */
  uint64_t finish_deadline;      /* ns; session_closed by then at the latest */
  uint64_t linger_deadline;      /* ns; close the QUIC connection then */
  uint32_t close_code;
  char close_reason[128];
  uint64_t peer_streams;         /* streams the peer opened (ngtcp2 keeps each) */
} wt_sess_t;

static wt_sess_t *sess_get(wt_conn_t *c) {
  if (!c->app) {
    wt_sess_t *ss = calloc(1, sizeof(*ss));
    if (!ss) return NULL;
    ss->connect_id = -1;
    c->app = ss;
  }
  return c->app;
}

static const vcg_host_api_t *host_of(const wt_conn_t *c) { return c->set->host; }

static void log_conn(wt_conn_t *c, int level, const char *fmt, ...)
    VCG_PRINTF(3, 4);

static void log_conn(wt_conn_t *c, int level, const char *fmt, ...) {
  const vcg_host_api_t *host = host_of(c);
  wt_sess_t *ss = c->app;
  char msg[512], peer[80];
  va_list ap;
  if (!host->log_enabled(c->set->w, level)) return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  host->log(c->set->w,
            ss && (ss->sstate == WT_S_OPEN || ss->sstate == WT_S_CLOSING) ? ss->s : NULL,
            level, "%s: %s",
            vcg__wt_addr_str((struct sockaddr *)&c->remote, peer, sizeof(peer)), msg);
}

static void is_free(wt_sess_t *ss, wt_istream_t *is) {
  if (is->prev) is->prev->next = is->next;
  else ss->is_all = is->next;
  if (is->next) is->next->prev = is->prev;
  free(is->buf);
  free(is->caps);
  free(is);
}

/* Whether the peer may open more streams on this connection: Debian's
 * ngtcp2 0.12.1 keeps a record (~220 B) of every stream the peer opened
 * until the connection ends (it never marks a peer's unidirectional
 * stream closed; fixed in ngtcp2 0.14), so a connection takes at most
 * max_client_streams of them; then the session is rotated (rotate()). */
static int streams_left(const wt_conn_t *c) {
  const wt_sess_t *ss = c->app;
  return ss->peer_streams < c->max_client_streams;
}

/* A client stream we are done with: forget its record, give back its
 * connection credit and, while the connection takes more, its stream
 * credit. */
static void is_finish(wt_conn_t *c, wt_istream_t *is) {
  vcg__wt_conn_credit_conn(c, is->uncredited);
  is->uncredited = 0;
  vcg__wt_conn_stream_done(c, is->id, streams_left(c));
  is_free(c->app, is);
}

static int buf_append(wt_istream_t *is, const uint8_t *p, size_t n) {
  if (is->len + n > is->cap) {
    size_t cap = is->cap ? is->cap : 1024;
    while (cap < is->len + n) cap *= 2;
    uint8_t *b = realloc(is->buf, cap);
    if (!b) return VCG_ENOMEM;
    is->buf = b;
    is->cap = cap;
  }
  memcpy(is->buf + is->len, p, n);
  is->len += n;
  return 0;
}

/* ------------------------------------------------------------ responses */

static int respond(wt_conn_t *c, int64_t id, int status, int fin) {
  uint8_t *buf;
  size_t len;
  int rc = status == 200
               ? vcg__wt_qpack_encode_response(id, status, "sec-webtransport-http3-draft",
                                               "draft02", &buf, &len)
               : vcg__wt_qpack_encode_response(id, status, NULL, NULL, &buf, &len);
  if (rc != 0) return rc;
  wt_ostream_t **cos = &c->out.prio[WT_PRIO_CONNECT];
  if (!*cos) {
    *cos = vcg__wt_os_new(&c->out, id);
    if (!*cos) {
      free(buf);
      return VCG_ENOMEM;
    }
  }
  rc = vcg__wt_os_append(*cos, buf, len);
  free(buf);
  if (rc != 0) return rc;
  if (fin) (*cos)->fin = 1;
  vcg__wt_conn_mark(c);
  return 0;
}

/* Answer the CONNECT on stream id with the status the host's table gives
 * for `why` (enum vcg_close_reason), and end the stream. */
static void refuse(wt_conn_t *c, int64_t id, int why, const char *msg) {
  wt_sess_t *ss = c->app;
  int status = vcg_close_http_status(why);
  log_conn(c, VCG_LOG_INFO, "CONNECT refused: %d %s", status, msg);
  ss->sstate = WT_S_REFUSED;
  host_of(c)->counter_add(c->set->w, "wt_sessions_refused", 1);
  if (respond(c, id, status, 1) != 0) vcg__wt_conn_reset_stream(c, id, VCG__H3_INTERNAL_ERROR);
}

static void handle_connect(wt_conn_t *c, wt_istream_t *is) {
  const vcg_host_api_t *host = host_of(c);
  wt_sess_t *ss = c->app;
  vcg__wt_request_t req;
  char msg[256];

  if (vcg__wt_qpack_decode_request(is->id, is->buf, is->len, &req) != 0) {
    refuse(c, is->id, VCG_CLOSE_PROTOCOL, "malformed header block");
    return;
  }
  if (strcmp(req.method, "CONNECT") != 0) {
    refuse(c, is->id, VCG_CLOSE_METHOD, "not a CONNECT");
    return;
  }
  if (strcmp(req.protocol, "webtransport") != 0) {
    refuse(c, is->id, VCG_CLOSE_BAD_REQUEST, "not a webtransport CONNECT");
    return;
  }
  if (c->set->draining) {
    refuse(c, is->id, VCG_CLOSE_SHUTDOWN, "server shutting down");
    return;
  }
  /* The host owns the lobby grammar: it gets :path exactly as sent and
   * answers every path, a wrong one with VCG_CLOSE_NOT_FOUND. */
  vcg_session_info_t info;
  memset(&info, 0, sizeof(info));
  info.size = sizeof(info);
  info.target = req.path;
  info.peer = (const struct sockaddr *)&c->remote;
  info.conn = c;
  /* The endpoint admitted the connection at its first Initial (conn_admit)
   * and the connection layer releases it: the session is not counted
   * again. */
  info.flags = VCG_SESSION_ADMITTED;
  vcg_session_t *s = NULL;
  int why = VCG_CLOSE_INTERNAL;
  msg[0] = '\0';
  /* The host calls send() from inside session_open (SESSION_ASSIGNED,
   * MEETING_STARTED): OPENING lets them queue, on streams, until the 200
   * is on its way. */
  ss->sstate = WT_S_OPENING;
  int rc = host->session_open(c->set->w, &info, &s, &why, msg, sizeof(msg));
  if (rc != 0) {
    vcg__wt_oq_drop_unsent(&c->out);
    refuse(c, is->id, why, msg[0] ? msg : "refused");
    return;
  }
  ss->s = s;
  if (ss->sstate == WT_S_OPENING) ss->sstate = WT_S_OPEN;
  host->counter_add(c->set->w, "wt_sessions", 1);
  log_conn(c, VCG_LOG_INFO, "session open");
  if (respond(c, is->id, 200, 0) != 0) {
    vcg__wt_session_close(c, (uint32_t)vcg_close_ws_code(VCG_CLOSE_INTERNAL), "internal error");
    return;
  }
  c->out.q_dirty = 1;
}

/* ------------------------------------------------------------- closing */

void vcg__wt_session_close(wt_conn_t *c, uint32_t code, const char *reason) {
  wt_sess_t *ss = c->app;
  if (!ss || (ss->sstate != WT_S_OPEN && ss->sstate != WT_S_OPENING)) return;
  ss->sstate = WT_S_CLOSING;
  ss->close_code_pending = 1;
  ss->server_close = 1;
  ss->finish_deadline = vcg__wt_now() + WT_FINISH_NS;
  ss->close_code = code;
  snprintf(ss->close_reason, sizeof(ss->close_reason), "%s", reason ? reason : "");
  vcg__wt_oq_drop_unsent(&c->out);
  vcg__wt_conn_mark(c);
}

/* The client ended the session (CLOSE capsule, FIN or reset): answer with
 * FIN, which Chromium needs to report a clean close. */
static void client_closed(wt_conn_t *c, int have_capsule, uint32_t code,
                          const char *reason) {
  wt_sess_t *ss = c->app;
  ss->peer_fin = 1;
  if (ss->sstate == WT_S_CLOSING && ss->server_close) {
    /* The peer answered our CLOSE capsule.  Chromium closes the QUIC
     * connection right after; give it a moment to do so itself, because a
     * CONNECTION_CLOSE from us (a host stopping the moment the session is
     * reported gone) can reach it before the page has seen the close and
     * turn it into "Connection lost". */
    uint64_t soon = vcg__wt_now() + WT_PEER_FIN_GRACE_NS;
    if (soon < ss->finish_deadline) ss->finish_deadline = soon;
    vcg__wt_conn_mark(c);
  }
  if (ss->sstate != WT_S_OPEN && ss->sstate != WT_S_OPENING) return;
  if (have_capsule) log_conn(c, VCG_LOG_INFO, "client closed session: code %u reason \"%s\"", code, reason);
  else log_conn(c, VCG_LOG_INFO, "client ended the CONNECT stream");
  ss->sstate = WT_S_CLOSING;
  vcg__wt_oq_drop_unsent(&c->out);
  if (c->out.prio[WT_PRIO_CONNECT]) c->out.prio[WT_PRIO_CONNECT]->fin = 1;
  vcg__wt_conn_mark(c);
}

/* ------------------------------------------------------------ send path */

int vcg__wt_session_send(wt_conn_t *c, vcg_packet_t *p) {
  const vcg_host_api_t *host = host_of(c);
  wt_sess_t *ss = c->app;
  wt_outq_t *q = &c->out;
  size_t len;
  const uint8_t *data = host->packet_data(p, &len);

  if (!vcg__wt_conn_active(c) || !ss ||
      (ss->sstate != WT_S_OPEN && ss->sstate != WT_S_OPENING)) {
    host->packet_unref(p);
    return 0;
  }
  if (q->q_pkts + 1 > WT_QUEUE_HARD_PACKETS || q->q_bytes + len > WT_QUEUE_HARD_BYTES) {
    host->packet_unref(p);
    host->counter_add(c->set->w, "wt_queue_overflow", 1);
    return VCG_ENOBUFS;
  }
  /* Before the 200 is out, Chromium drops datagrams: the first packets go
   * on streams.  MEDIA and large packets always do. */
  int stream = ss->sstate == WT_S_OPENING || host->packet_type(p) == VCG_PT_MEDIA ||
               len > WT_DGRAM_MAX_PACKET || !vcg__wt_conn_dgram_fits(c, len);
  wt_ostream_t *os = vcg__wt_os_new(q, stream ? WT_ID_UNOPENED : WT_ID_DGRAM);
  if (!os) {
    host->packet_unref(p);
    return VCG_ENOBUFS;
  }
  uint8_t *h = os->hdr;
  if (stream) {
    h = vcg__wt_varint_put(h, VCG__WT_STREAM_UNI);
    h = vcg__wt_varint_put(h, (uint64_t)ss->connect_id);
    os->fin = 1;
  } else {
    h = vcg__wt_varint_put(h, (uint64_t)ss->connect_id / 4);
  }
  os->hdrlen = (size_t)(h - os->hdr);
  /* The reference is the record's from here on. */
  vcg__wt_os_set_packet(q, os, p, data, len, host->packet_deadline(p));
  vcg__wt_oq_push(q, os);
  vcg__wt_conn_mark(c);
  return 0;
}

/* --------------------------------------------------------- flush hooks */

static void on_before_write(wt_conn_t *c) {
  wt_sess_t *ss = c->app;
  wt_ostream_t *cos = c->out.prio[WT_PRIO_CONNECT];
  if (!ss || !ss->close_code_pending || !cos) return;
  uint8_t frame[VCG__WT_CLOSE_FRAME_MAX];
  size_t n = vcg__wt_close_frame_encode(frame, sizeof(frame), ss->close_code, ss->close_reason);
  if (n && vcg__wt_os_append(cos, frame, n) == 0) {
    log_conn(c, VCG_LOG_INFO, "closing session: code %u reason \"%s\"", ss->close_code,
             ss->close_reason);
    cos->fin = 1;
  } else {
    vcg__wt_conn_reset_stream(c, ss->connect_id, VCG__H3_INTERNAL_ERROR);
  }
  ss->close_code_pending = 0;
}

static void session_finish(wt_conn_t *c) {
  wt_sess_t *ss = c->app;
  vcg_session_t *s = ss->s;
  vcg__wt_oq_drop_unsent(&c->out);
  ss->sstate = WT_S_DONE;
  ss->s = NULL;
  if (s) host_of(c)->session_closed(s);
}

static void on_after_write(wt_conn_t *c) {
  wt_sess_t *ss = c->app;
  if (!ss) return;
  if (c->out.q_dirty && ss->sstate == WT_S_OPEN && ss->s) {
    c->out.q_dirty = 0;
    host_of(c)->session_set_queued(ss->s, c->out.q_pkts, c->out.q_bytes);
  }
  /* A session we closed is reported gone when the peer ends the
   * connection (gone), shortly after it answered with FIN, or at the
   * deadline: reporting it at once lets a shutting-down host tear the
   * connection down before Chromium has read the capsule, and the page
   * would see "Connection lost" instead of the code and reason. */
  if (ss->sstate == WT_S_CLOSING && !ss->close_code_pending) {
    if (!ss->server_close || vcg__wt_now() >= ss->finish_deadline)
      session_finish(c);
  }
  if ((ss->sstate == WT_S_DONE || ss->sstate == WT_S_REFUSED) && !ss->linger_deadline)
    ss->linger_deadline = vcg__wt_now() + WT_LINGER_NS;
  uint64_t dl = ss->linger_deadline;
  if (ss->sstate == WT_S_CLOSING && (!dl || ss->finish_deadline < dl)) dl = ss->finish_deadline;
  vcg__wt_conn_set_deadline(c, dl);
}

static void on_deadline(wt_conn_t *c) {
  wt_sess_t *ss = c->app;
  if (ss && ss->linger_deadline && vcg__wt_now() >= ss->linger_deadline) {
    /* The session is over and the peer kept the connection: end it. */
    ss->linger_deadline = 0;
    vcg__wt_conn_close_app(c, VCG__H3_NO_ERROR);
  }
  /* A finish deadline is acted on by the flush that follows. */
}

static void on_gone(wt_conn_t *c) {
  wt_sess_t *ss = c->app;
  if (ss && (ss->sstate == WT_S_OPEN || ss->sstate == WT_S_OPENING ||
             ss->sstate == WT_S_CLOSING)) {
    log_conn(c, VCG_LOG_INFO, "connection ended");
    session_finish(c);
  } else {
    vcg__wt_oq_drop_unsent(&c->out);
  }
}

static void on_release(wt_conn_t *c) {
  wt_sess_t *ss = c->app;
  if (!ss) return;
  while (ss->is_all) is_free(ss, ss->is_all);
  free(ss);
  c->app = NULL;
}

static void on_acked(wt_conn_t *c, wt_ostream_t *os) {
  wt_sess_t *ss = c->app;
  /* A closing session waits for the CONNECT stream's acknowledgement. */
  if (ss && os == c->out.prio[WT_PRIO_CONNECT] && ss->sstate == WT_S_CLOSING)
    vcg__wt_conn_mark(c);
}

static int on_take(wt_conn_t *c, wt_ostream_t *os) {
  wt_sess_t *ss = c->app;
  if (!ss || !ss->s) return 0;
  if (!host_of(c)->packet_take(ss->s, os->pkt)) return 0;
  (void)vcg__wt_os_take_packet(&c->out, os); /* the host released it */
  return 1;
}

static void on_shed(wt_conn_t *c, wt_ostream_t *os) {
  wt_sess_t *ss = c->app;
  vcg_packet_t *p = vcg__wt_os_take_packet(&c->out, os);
  if (!p) return;
  if (ss && ss->s) host_of(c)->packet_shed(ss->s, p);
  else host_of(c)->packet_unref(p);
}

/* -------------------------------------------------------- stream input */

static int on_ready(wt_conn_t *c) {
  uint8_t buf[128];
  if (!sess_get(c)) return -1;
  size_t n = vcg__wt_control_stream_prefix(buf, sizeof(buf), 1);
  wt_ostream_t *os = vcg__wt_os_new(&c->out, WT_ID_UNOPENED);
  if (!os || !n) return -1;
  c->out.prio[WT_PRIO_CONTROL] = os;
  if (vcg__wt_os_append(os, buf, n) != 0) return -1;
  if (vcg__wt_conn_open_uni(c, os) != 0) return -1;
  vcg__wt_conn_mark(c);
  return 0;
}

/* Session rotation, the bound on ngtcp2's stream records: at 7/8 of
 * max_client_streams the client is told DRAIN_WEBTRANSPORT_SESSION (open
 * a new session now), at the limit the session closes with 1001, as on
 * a server shutdown, which clients answer by reconnecting (a same
 * identity rejoin within the presence grace is not announced, DESIGN.md).
 * The connection and every record go with it. */
static void rotate(wt_conn_t *c) {
  wt_sess_t *ss = c->app;
  uint64_t max = c->max_client_streams;
  wt_ostream_t *cos = c->out.prio[WT_PRIO_CONNECT];
  if (ss->peer_streams == max - max / 8 && cos && ss->sstate == WT_S_OPEN) {
    uint8_t f[VCG__WT_DRAIN_FRAME_LEN];
    size_t n = vcg__wt_drain_frame_encode(f, sizeof(f));
    if (n && vcg__wt_os_append(cos, f, n) == 0) {
      log_conn(c, VCG_LOG_INFO, "%llu client streams: asking the client to move to a new session",
               (unsigned long long)ss->peer_streams);
      vcg__wt_conn_mark(c);
    }
  }
  if (ss->peer_streams == max + 1) {
    host_of(c)->counter_add(c->set->w, "wt_sessions_rotated", 1);
    vcg__wt_session_close(c, (uint32_t)vcg_close_ws_code(VCG_CLOSE_SHUTDOWN),
                          "session rotation: reconnect");
  }
}

static int on_stream_open(wt_conn_t *c, int64_t id) {
  wt_sess_t *ss = sess_get(c);
  if (!ss) return -1;
  ss->peer_streams++;
  rotate(c);
  wt_istream_t *is = calloc(1, sizeof(*is));
  if (!is) return -1;
  is->id = id;
  is->kind = VCG__WT_PFX_MORE;
  vcg__wt_prefix_init(&is->pfx, !(id & 0x2));
  vcg__wt_frame_rd_init(&is->fr);
  is->next = ss->is_all;
  if (ss->is_all) ss->is_all->prev = is;
  ss->is_all = is;
  vcg__wt_conn_set_stream_ud(c, id, is);
  return 0;
}

/* Our control stream's counterpart: SETTINGS first, then anything. */
static int control_feed(wt_conn_t *c, wt_istream_t *is, const uint8_t *p,
                        size_t n) {
  vcg__wt_fev_t ev;
  for (;;) {
    size_t used = vcg__wt_frame_next(&is->fr, p, n, &ev);
    p += used;
    n -= used;
    switch (ev.kind) {
    case VCG__WT_FEV_NONE:
      return 0;
    case VCG__WT_FEV_START:
      if (!is->settings_seen && ev.type != VCG__H3_FRAME_SETTINGS)
        return vcg__wt_conn_fail(c, 0x10a /* H3_MISSING_SETTINGS */);
      if (is->settings_seen && ev.type == VCG__H3_FRAME_SETTINGS)
        return vcg__wt_conn_fail(c, VCG__H3_FRAME_UNEXPECTED);
      if (ev.type == VCG__H3_FRAME_DATA || ev.type == VCG__H3_FRAME_HEADERS)
        return vcg__wt_conn_fail(c, VCG__H3_FRAME_UNEXPECTED);
      if (ev.type == VCG__H3_FRAME_SETTINGS && ev.len > WT_MAX_SETTINGS_FRAME)
        return vcg__wt_conn_fail(c, VCG__H3_EXCESSIVE_LOAD);
      is->len = 0;
      break;
    case VCG__WT_FEV_DATA:
      if (ev.type == VCG__H3_FRAME_SETTINGS && buf_append(is, ev.data, ev.datalen) != 0)
        return vcg__wt_conn_fail(c, VCG__H3_INTERNAL_ERROR);
      break;
    case VCG__WT_FEV_END:
      if (ev.type == VCG__H3_FRAME_SETTINGS) {
        vcg__wt_peer_settings_t ps;
        if (vcg__wt_settings_parse(is->buf, is->len, &ps) != 0)
          return vcg__wt_conn_fail(c, VCG__H3_SETTINGS_ERROR);
        is->settings_seen = 1;
        log_conn(c, VCG_LOG_DEBUG,
                 "peer SETTINGS: %zu pairs, h3_datagram %d, wt draft02 %d, qpack table %llu",
                 ps.count, ps.h3_datagram, ps.wt_draft02,
                 (unsigned long long)ps.qpack_max_table_capacity);
        is->len = 0;
      }
      break;
    }
  }
}

static int capsules_feed(wt_conn_t *c, wt_istream_t *is, const uint8_t *p,
                         size_t n) {
  if (!is->caps) {
    is->caps = malloc(sizeof(*is->caps));
    if (!is->caps) return vcg__wt_conn_fail(c, VCG__H3_INTERNAL_ERROR);
    vcg__wt_capsule_rd_init(is->caps);
  }
  while (n > 0) {
    int ev;
    if (is->caps->closed) return 0; /* nothing may follow CLOSE */
    size_t used = vcg__wt_capsule_feed(is->caps, p, n, &ev);
    p += used;
    n -= used;
    if (ev == VCG__WT_CAP_CLOSE) {
      client_closed(c, 1, is->caps->code, is->caps->reason);
    } else if (ev == VCG__WT_CAP_DRAIN) {
      log_conn(c, VCG_LOG_DEBUG, "client sent DRAIN_WEBTRANSPORT_SESSION");
    } else if (ev == VCG__WT_CAP_ERROR) {
      vcg__wt_conn_reset_stream(c, is->id, VCG__H3_MESSAGE_ERROR);
      client_closed(c, 0, 0, "");
      return 0;
    } else if (used == 0) {
      return 0;
    }
  }
  return 0;
}

/* The CONNECT stream: HEADERS, then DATA frames carrying capsules. */
static int request_feed(wt_conn_t *c, wt_istream_t *is, const uint8_t *p,
                        size_t n) {
  vcg__wt_fev_t ev;
  for (;;) {
    size_t used = vcg__wt_frame_next(&is->fr, p, n, &ev);
    p += used;
    n -= used;
    switch (ev.kind) {
    case VCG__WT_FEV_NONE:
      return 0;
    case VCG__WT_FEV_START:
      if (ev.type == VCG__H3_FRAME_HEADERS && !is->settings_seen) {
        /* settings_seen doubles as "request headers received" here. */
        if (ev.len > WT_MAX_HEADERS_FRAME) return vcg__wt_conn_fail(c, VCG__H3_EXCESSIVE_LOAD);
        is->len = 0;
      } else if (ev.type == VCG__H3_FRAME_DATA && !is->settings_seen) {
        return vcg__wt_conn_fail(c, VCG__H3_FRAME_UNEXPECTED);
      } else if (ev.type == VCG__H3_FRAME_SETTINGS || ev.type == VCG__H3_FRAME_GOAWAY ||
                 ev.type == 0x03 || ev.type == 0x05 || ev.type == 0x0d) {
        return vcg__wt_conn_fail(c, VCG__H3_FRAME_UNEXPECTED);
      }
      if (ev.type == VCG__H3_FRAME_HEADERS && !is->settings_seen && ev.len == 0)
        return vcg__wt_conn_fail(c, VCG__H3_FRAME_ERROR);
      break;
    case VCG__WT_FEV_DATA:
      if (ev.type == VCG__H3_FRAME_HEADERS && !is->settings_seen) {
        if (buf_append(is, ev.data, ev.datalen) != 0)
          return vcg__wt_conn_fail(c, VCG__H3_INTERNAL_ERROR);
      } else if (ev.type == VCG__H3_FRAME_DATA) {
        if (capsules_feed(c, is, ev.data, ev.datalen) != 0) return -1;
      }
      /* trailers and unknown frames: skipped */
      break;
    case VCG__WT_FEV_END:
      if (ev.type == VCG__H3_FRAME_HEADERS && !is->settings_seen) {
        is->settings_seen = 1;
        handle_connect(c, is);
        free(is->buf);
        is->buf = NULL;
        is->len = is->cap = 0;
      }
      break;
    }
  }
}

static void deliver(wt_conn_t *c, const uint8_t *p, size_t n) {
  wt_sess_t *ss = c->app;
  if (ss->sstate != WT_S_OPEN || !ss->s) return;
  host_of(c)->session_deliver(ss->s, p, n);
}

static int uni_data(wt_conn_t *c, wt_istream_t *is, const uint8_t *data,
                    size_t len, int fin) {
  wt_sess_t *ss = c->app;
  size_t max_msg = c->max_msg;
  size_t off = 0;
  if (is->kind == VCG__WT_PFX_MORE) {
    int kind;
    off = vcg__wt_prefix_feed(&is->pfx, data, len, &kind);
    vcg__wt_conn_credit(c, is->id, off);
    if (kind == VCG__WT_PFX_MORE) {
      if (fin) is_finish(c, is);
      return 0;
    }
    is->kind = kind;
    if (kind == VCG__WT_PFX_UNKNOWN ||
        (kind == VCG__WT_PFX_WT_UNI && (int64_t)is->pfx.session_id != ss->connect_id)) {
      /* Unknown stream types must be read and discarded or refused
       * (RFC 9114 section 6.2); we refuse them. */
      vcg__wt_conn_stop_reading(c, is->id, VCG__H3_STREAM_CREATION_ERROR);
      vcg__wt_conn_credit(c, is->id, len - off);
      is_finish(c, is);
      return 0;
    }
  }
  const uint8_t *p = data + off;
  size_t n = len - off;
  switch (is->kind) {
  case VCG__WT_PFX_CONTROL:
    vcg__wt_conn_credit(c, is->id, n);
    if (control_feed(c, is, p, n) != 0) return -1;
    if (fin) return vcg__wt_conn_fail(c, VCG__H3_CLOSED_CRITICAL_STREAM);
    return 0;
  case VCG__WT_PFX_QPACK_ENC:
  case VCG__WT_PFX_QPACK_DEC:
    /* With capacity 0 there is nothing to learn from these streams. */
    vcg__wt_conn_credit(c, is->id, n);
    if (fin) return vcg__wt_conn_fail(c, VCG__H3_CLOSED_CRITICAL_STREAM);
    return 0;
  case VCG__WT_PFX_WT_UNI:
    break;
  default:
    vcg__wt_conn_credit(c, is->id, n);
    return 0;
  }
  /* A WebTransport uni stream: one PacketWrapper, read to FIN. */
  is->uncredited += n;
  if (is->len + n > max_msg) {
    log_conn(c, VCG_LOG_INFO, "message over %zu bytes refused", max_msg);
    host_of(c)->counter_add(c->set->w, "wt_messages_too_big", 1);
    /* No STOP_SENDING: the close below ends the stream anyway, and a stream
     * error racing the CLOSE capsule can make Chromium report "Connection
     * lost" instead of the close code.  The rest of the stream is read and
     * discarded (its record is gone, see on_stream_data). */
    is_finish(c, is);
    vcg__wt_session_close(c, (uint32_t)vcg_close_ws_code(VCG_CLOSE_TOO_BIG), "message too big");
    return 0;
  }
  if (n && buf_append(is, p, n) != 0) return vcg__wt_conn_fail(c, VCG__H3_INTERNAL_ERROR);
  if (fin) {
    deliver(c, is->buf, is->len);
    is_finish(c, is);
  }
  return 0;
}

static int bidi_data(wt_conn_t *c, wt_istream_t *is, const uint8_t *data,
                     size_t len, int fin) {
  wt_sess_t *ss = c->app;
  size_t off = 0;
  if (is->kind == VCG__WT_PFX_MORE) {
    int kind;
    off = vcg__wt_prefix_feed(&is->pfx, data, len, &kind);
    vcg__wt_conn_credit(c, is->id, off);
    if (kind == VCG__WT_PFX_MORE) {
      if (fin) is_finish(c, is);
      return 0;
    }
    is->kind = kind;
    if (kind == VCG__WT_PFX_WT_BIDI || ss->connect_id >= 0) {
      /* We take packets on uni streams and datagrams only, and one
       * session per connection. */
      vcg__wt_conn_reset_stream(c, is->id, kind == VCG__WT_PFX_WT_BIDI
                                               ? WT_BUFFERED_STREAM_REJECTED
                                               : VCG__H3_REQUEST_REJECTED);
      vcg__wt_conn_credit(c, is->id, len - off);
      is_finish(c, is);
      return 0;
    }
    ss->connect_id = is->id;
    if (request_feed(c, is, is->pfx.replay, is->pfx.replaylen) != 0) return -1;
  }
  vcg__wt_conn_credit(c, is->id, len - off);
  if (request_feed(c, is, data + off, len - off) != 0) return -1;
  if (fin && is->id == ss->connect_id) client_closed(c, 0, 0, "");
  return 0;
}

static int on_stream_data(wt_conn_t *c, int64_t id, const uint8_t *data, size_t len,
                          int fin, void *sud) {
  wt_istream_t *is = sud;
  if (!is) {
    vcg__wt_conn_credit(c, id, len); /* a stream we finished or refused */
    return 0;
  }
  return (id & 0x2) ? uni_data(c, is, data, len, fin) : bidi_data(c, is, data, len, fin);
}

static int on_stream_reset(wt_conn_t *c, int64_t id, void *sud) {
  wt_istream_t *is = sud;
  wt_sess_t *ss = c->app;
  if (!is) return 0;
  if (is->kind == VCG__WT_PFX_CONTROL || is->kind == VCG__WT_PFX_QPACK_ENC ||
      is->kind == VCG__WT_PFX_QPACK_DEC)
    return vcg__wt_conn_fail(c, VCG__H3_CLOSED_CRITICAL_STREAM);
  if (id == ss->connect_id) {
    client_closed(c, 0, 0, "");
    return 0; /* the record goes when ngtcp2 closes the stream */
  }
  is_finish(c, is);
  return 0;
}

static int on_stream_close(wt_conn_t *c, int64_t id, void *sud) {
  wt_istream_t *is = sud;
  wt_sess_t *ss = c->app;
  if (!ss) return 0;
  if (id == ss->connect_id) {
    client_closed(c, 0, 0, "");
    if (c->out.prio[WT_PRIO_CONNECT]) vcg__wt_os_free(&c->out, c->out.prio[WT_PRIO_CONNECT]);
  }
  if (is) is_finish(c, is);
  return 0;
}

static int on_datagram(wt_conn_t *c, const uint8_t *data, size_t len) {
  wt_sess_t *ss = c->app;
  uint64_t q;
  size_t n = vcg__wt_varint_get(data, len, &q);
  if (!ss || !n || ss->connect_id < 0 || q != (uint64_t)ss->connect_id / 4) return 0;
  data += n;
  len -= n;
  /* A 4-byte "ping" only keeps the connection alive (PROTOCOL.md). */
  if (len == 4 && memcmp(data, "ping", 4) == 0) return 0;
  if (len > c->max_msg) {
    host_of(c)->counter_add(c->set->w, "wt_messages_too_big", 1);
    return 0;
  }
  deliver(c, data, len);
  return 0;
}

const wt_conn_cb_t vcg__wt_session_cb = {
  .ready = on_ready,
  .stream_open = on_stream_open,
  .stream_data = on_stream_data,
  .stream_reset = on_stream_reset,
  .stream_close = on_stream_close,
  .acked = on_acked,
  .datagram = on_datagram,
  .shed = on_shed,
  .take = on_take,
  .before_write = on_before_write,
  .after_write = on_after_write,
  .deadline = on_deadline,
  .gone = on_gone,
  .release = on_release,
};
