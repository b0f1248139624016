/*
 * wt.c -- HTTP/3 and the WebTransport session on one QUIC connection.
 *
 * One session per connection: the extended CONNECT on the first client
 * bidirectional stream opens it (the stream id is the session id), client
 * unidirectional streams and datagrams carry PacketWrappers in, and
 * packets from the host go out on new unidirectional streams or as
 * datagrams.  Nothing here writes to the network: it queues bytes on
 * stream records and marks the connection dirty (quic.c writes).
 *
 * Flow control is credited explicitly for every byte we consume.  A
 * WebTransport uni stream is credited at the connection level only once
 * its message is complete (delivered or dropped), so the connection window
 * bounds what one client can make us buffer; its stream window holds one
 * message of the largest allowed size and is never extended.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qpack.h"
#include "wt_int.h"

#define WT_MAX_HEADERS_FRAME (16u << 10)
#define WT_MAX_SETTINGS_FRAME 4096u
#define WT_LINGER_NS (2000ull * 1000000ull)
/* How long a server-initiated close waits for the peer to acknowledge the
 * CLOSE capsule and FIN before the session is reported gone anyway. */
#define WT_FINISH_NS (3000ull * 1000000ull)
#define WT_PEER_FIN_GRACE_NS (300ull * 1000000ull)
#define WT_BUFFERED_STREAM_REJECTED 0x3994bd84ull

static void log_conn(wt_conn_t *c, int level, const char *fmt, ...)
    VCG_PRINTF(3, 4);

static void log_conn(wt_conn_t *c, int level, const char *fmt, ...) {
  vcg_instance_t *inst = c->inst;
  char msg[512], peer[80];
  va_list ap;
  if (!inst->host->log_enabled(inst->w, level)) return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  inst->host->log(inst->w, c->sstate == WT_S_OPEN || c->sstate == WT_S_CLOSING ? c->s : NULL,
                  level, "%s: %s",
                  vcg__wt_addr_str((struct sockaddr *)&c->remote, peer, sizeof(peer)), msg);
}

uint32_t vcg__wt_close_code(int why) {
  switch (why) {
  case VCG_CLOSE_NORMAL: return 1000;
  case VCG_CLOSE_BAD_REQUEST:
  case VCG_CLOSE_FORBIDDEN:
  case VCG_CLOSE_SLOW:
  case VCG_CLOSE_NOT_FOUND: return 1008;
  case VCG_CLOSE_TOO_BIG: return 1009;
  case VCG_CLOSE_LIMIT:
  case VCG_CLOSE_OVERLOAD: return 1013;
  case VCG_CLOSE_SHUTDOWN:
  case VCG_CLOSE_IDLE: return 1001;
  default: return 1011;
  }
}

static int http_status(int why) {
  switch (why) {
  case VCG_CLOSE_BAD_REQUEST: return 400;
  case VCG_CLOSE_FORBIDDEN: return 403;
  case VCG_CLOSE_NOT_FOUND: return 404;
  case VCG_CLOSE_TOO_BIG: return 413;
  case VCG_CLOSE_LIMIT: return 429;
  case VCG_CLOSE_SHUTDOWN:
  case VCG_CLOSE_OVERLOAD: return 503;
  default: return 500;
  }
}

/* Give back flow-control credit for n consumed bytes of stream id. */
static void credit(wt_conn_t *c, int64_t id, size_t n) {
  if (!n) return;
  ngtcp2_conn_extend_max_stream_offset(c->qc, id, n);
  ngtcp2_conn_extend_max_offset(c->qc, n);
}

static int conn_error(wt_conn_t *c, uint64_t h3err) {
  c->app_error = h3err;
  return -1;
}

static void is_free(wt_conn_t *c, wt_istream_t *is) {
  if (is->prev) is->prev->next = is->next;
  else c->is_all = is->next;
  if (is->next) is->next->prev = is->prev;
  free(is->buf);
  free(is->caps);
  free(is);
}

/* A client stream we are done with: forget its record and, because ngtcp2
 * 0.12.1 never retires client streams whose send side we never use, hand
 * the client its stream credit back ourselves. */
static void is_finish(wt_conn_t *c, wt_istream_t *is) {
  int64_t id = is->id;
  if (is->uncredited) ngtcp2_conn_extend_max_offset(c->qc, is->uncredited);
  is->uncredited = 0;
  if (id & 0x2) ngtcp2_conn_extend_max_streams_uni(c->qc, 1);
  else ngtcp2_conn_extend_max_streams_bidi(c->qc, 1);
  ngtcp2_conn_set_stream_user_data(c->qc, id, NULL);
  is_free(c, is);
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

/* Drop every queued item that has not started on the wire. */
static void drop_unsent(wt_conn_t *c) {
  wt_ostream_t *os = c->oq_head;
  while (os) {
    wt_ostream_t *nx = os->onext;
    if (os->id == WT_ID_UNOPENED || os->id == WT_ID_DGRAM) vcg__wt_os_free(c, os);
    os = nx;
  }
}

void vcg__wt_item_written(wt_conn_t *c, wt_ostream_t *os) {
  if (!os->counted) return;
  os->counted = 0;
  c->q_pkts--;
  c->q_bytes -= os->plen;
  c->q_dirty = 1;
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
  if (!c->connect_os) {
    c->connect_os = vcg__wt_os_new(c, id);
    if (!c->connect_os) {
      free(buf);
      return VCG_ENOMEM;
    }
  }
  rc = vcg__wt_os_append(c->connect_os, buf, len);
  free(buf);
  if (rc != 0) return rc;
  if (fin) c->connect_os->fin = 1;
  vcg__wt_conn_mark(c);
  return 0;
}

static void refuse(wt_conn_t *c, int64_t id, int status, const char *why) {
  log_conn(c, VCG_LOG_INFO, "CONNECT refused: %d %s", status, why);
  c->sstate = WT_S_REFUSED;
  c->inst->host->counter_add(c->inst->w, "wt_sessions_refused", 1);
  if (respond(c, id, status, 1) != 0) ngtcp2_conn_shutdown_stream(c->qc, id, VCG__H3_INTERNAL_ERROR);
}

static void handle_connect(wt_conn_t *c, wt_istream_t *is) {
  vcg_instance_t *inst = c->inst;
  vcg__wt_request_t req;
  char user[512], room[512], msg[256];

  if (vcg__wt_qpack_decode_request(is->id, is->buf, is->len, &req) != 0) {
    refuse(c, is->id, 400, "malformed header block");
    return;
  }
  if (strcmp(req.method, "CONNECT") != 0) {
    refuse(c, is->id, 405, "not a CONNECT");
    return;
  }
  if (strcmp(req.protocol, "webtransport") != 0) {
    refuse(c, is->id, 400, "not a webtransport CONNECT");
    return;
  }
  if (vcg__wt_parse_lobby_path(req.path, user, sizeof(user), room, sizeof(room)) != 0) {
    refuse(c, is->id, 404, "not found");
    return;
  }
  if (inst->draining) {
    refuse(c, is->id, 503, "server shutting down");
    return;
  }
  vcg_session_info_t info;
  memset(&info, 0, sizeof(info));
  info.size = sizeof(info);
  info.user = user;
  info.room = room;
  info.peer = (const struct sockaddr *)&c->remote;
  info.conn = c;
  vcg_session_t *s = NULL;
  int why = VCG_CLOSE_INTERNAL;
  msg[0] = '\0';
  /* The host calls send() from inside session_open (SESSION_ASSIGNED,
   * MEETING_STARTED): OPENING lets them queue, on streams, until the 200
   * is on its way. */
  c->sstate = WT_S_OPENING;
  int rc = inst->host->session_open(inst->w, &info, &s, &why, msg, sizeof(msg));
  if (rc != 0) {
    drop_unsent(c);
    refuse(c, is->id, http_status(why), msg[0] ? msg : "refused");
    return;
  }
  c->s = s;
  if (c->sstate == WT_S_OPENING) c->sstate = WT_S_OPEN;
  inst->host->counter_add(inst->w, "wt_sessions", 1);
  log_conn(c, VCG_LOG_INFO, "session open: user %s room %s", user, room);
  if (respond(c, is->id, 200, 0) != 0) {
    vcg__wt_session_close(c, 1011, "internal error");
    return;
  }
  c->q_dirty = 1;
}

/* ------------------------------------------------------------- closing */

void vcg__wt_session_close(wt_conn_t *c, uint32_t code, const char *reason) {
  if (c->sstate != WT_S_OPEN && c->sstate != WT_S_OPENING) return;
  c->sstate = WT_S_CLOSING;
  c->close_code_pending = 1;
  c->server_close = 1;
  c->finish_deadline = vcg__wt_now() + WT_FINISH_NS;
  c->close_code = code;
  snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason ? reason : "");
  drop_unsent(c);
  vcg__wt_conn_mark(c);
}

/* The client ended the session (CLOSE capsule, FIN or reset): answer with
 * FIN, which Chromium needs to report a clean close. */
static void client_closed(wt_conn_t *c, int have_capsule, uint32_t code,
                          const char *reason) {
  c->peer_fin = 1;
  if (c->sstate == WT_S_CLOSING && c->server_close) {
    /* The peer answered our CLOSE capsule.  Chromium closes the QUIC
     * connection right after; give it a moment to do so itself, because a
     * CONNECTION_CLOSE from us (a host stopping the moment the session is
     * reported gone) can reach it before the page has seen the close and
     * turn it into "Connection lost". */
    uint64_t soon = vcg__wt_now() + WT_PEER_FIN_GRACE_NS;
    if (soon < c->finish_deadline) c->finish_deadline = soon;
    vcg__wt_conn_mark(c);
  }
  if (c->sstate != WT_S_OPEN && c->sstate != WT_S_OPENING) return;
  if (have_capsule) log_conn(c, VCG_LOG_INFO, "client closed session: code %u reason \"%s\"", code, reason);
  else log_conn(c, VCG_LOG_INFO, "client ended the CONNECT stream");
  c->sstate = WT_S_CLOSING;
  drop_unsent(c);
  if (c->connect_os) c->connect_os->fin = 1;
  vcg__wt_conn_mark(c);
}

void vcg__wt_close(vcg_instance_t *inst, void *conn, int why,
                   const char *reason) {
  wt_conn_t *c = conn;
  (void)inst;
  vcg__wt_session_close(c, vcg__wt_close_code(why), reason);
}

/* ------------------------------------------------------------ send path */

static int dgram_fits(wt_conn_t *c, size_t len) {
  const ngtcp2_transport_params *rp = ngtcp2_conn_get_remote_transport_params(c->qc);
  size_t need = len + 8; /* quarter stream id */
  if (!rp || rp->max_datagram_frame_size < need + 9) return 0;
  /* Short header (1 + CID 20 + PN 4), AEAD tag 16, frame type and length. */
  size_t room = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->qc);
  return room > 50 && need + 50 <= room;
}

int vcg__wt_send(vcg_instance_t *inst, void *conn, vcg_packet_t *p) {
  wt_conn_t *c = conn;
  const vcg_host_api_t *host = inst->host;
  size_t len;
  const uint8_t *data = host->packet_data(p, &len);

  if (c->state != WT_C_ACTIVE || (c->sstate != WT_S_OPEN && c->sstate != WT_S_OPENING)) {
    host->packet_unref(p);
    return 0;
  }
  if (c->q_pkts + 1 > WT_QUEUE_HARD_PACKETS || c->q_bytes + len > WT_QUEUE_HARD_BYTES) {
    host->packet_unref(p);
    host->counter_add(inst->w, "wt_queue_overflow", 1);
    return VCG_ENOBUFS;
  }
  /* Before the 200 is out, Chromium drops datagrams: the first packets go
   * on streams.  MEDIA and large packets always do. */
  int stream = c->sstate == WT_S_OPENING || host->packet_type(p) == VCG_PT_MEDIA ||
               len > WT_DGRAM_MAX_PACKET || !dgram_fits(c, len);
  wt_ostream_t *os = vcg__wt_os_new(c, stream ? WT_ID_UNOPENED : WT_ID_DGRAM);
  if (!os) {
    host->packet_unref(p);
    return VCG_ENOBUFS;
  }
  os->pkt = p; /* the reference is the item's from here on */
  os->pdata = data;
  os->plen = len;
  uint8_t *h = os->hdr;
  if (stream) {
    h = vcg__wt_varint_put(h, VCG__WT_STREAM_UNI);
    h = vcg__wt_varint_put(h, (uint64_t)c->connect_id);
    os->fin = 1;
  } else {
    h = vcg__wt_varint_put(h, (uint64_t)c->connect_id / 4);
  }
  os->hdrlen = (size_t)(h - os->hdr);
  os->total = os->hdrlen + len;
  os->cbase = os->total;
  os->counted = 1;
  c->q_pkts++;
  c->q_bytes += len;
  c->q_dirty = 1;
  vcg__wt_oq_push(c, os);
  vcg__wt_conn_mark(c);
  return 0;
}

/* --------------------------------------------------------- flush hooks */

void vcg__wt_flush_session(wt_conn_t *c) {
  if (c->close_code_pending && c->connect_os) {
    uint8_t frame[VCG__WT_CLOSE_FRAME_MAX];
    size_t n = vcg__wt_close_frame_encode(frame, sizeof(frame), c->close_code, c->close_reason);
    if (n && vcg__wt_os_append(c->connect_os, frame, n) == 0) {
      log_conn(c, VCG_LOG_INFO, "closing session: code %u reason \"%s\"", c->close_code,
               c->close_reason);
      c->connect_os->fin = 1;
    } else {
      ngtcp2_conn_shutdown_stream(c->qc, c->connect_id, VCG__H3_INTERNAL_ERROR);
    }
    c->close_code_pending = 0;
  }
}

static void session_finish(wt_conn_t *c) {
  vcg_session_t *s = c->s;
  drop_unsent(c);
  c->sstate = WT_S_DONE;
  c->s = NULL;
  if (s) c->inst->host->session_closed(s);
}

void vcg__wt_after_write(wt_conn_t *c) {
  if (c->q_dirty && c->sstate == WT_S_OPEN && c->s) {
    c->q_dirty = 0;
    c->inst->host->session_set_queued(c->s, c->q_pkts, c->q_bytes);
  }
  /* A session we closed is reported gone when the peer ends the
   * connection (conn_gone), shortly after it answered with FIN, or at the
   * deadline: reporting it at once lets a shutting-down host tear the
   * connection down before Chromium has read the capsule, and the page
   * would see "Connection lost" instead of the code and reason. */
  if (c->sstate == WT_S_CLOSING && !c->close_code_pending) {
    if (!c->server_close || vcg__wt_now() >= c->finish_deadline)
      session_finish(c);
  }
  if ((c->sstate == WT_S_DONE || c->sstate == WT_S_REFUSED) && !c->linger_deadline)
    c->linger_deadline = vcg__wt_now() + WT_LINGER_NS;
}

void vcg__wt_conn_gone(wt_conn_t *c) {
  if (c->sstate == WT_S_OPEN || c->sstate == WT_S_OPENING || c->sstate == WT_S_CLOSING) {
    log_conn(c, VCG_LOG_INFO, "connection ended");
    session_finish(c);
  } else {
    drop_unsent(c);
  }
}

/* -------------------------------------------------------- stream input */

int vcg__wt_on_app_tx_key(wt_conn_t *c) {
  uint8_t buf[128];
  size_t n = vcg__wt_control_stream_prefix(buf, sizeof(buf), 1);
  wt_ostream_t *os = vcg__wt_os_new(c, WT_ID_UNOPENED);
  if (!os || !n) return -1;
  if (vcg__wt_os_append(os, buf, n) != 0) return -1;
  int64_t id;
  if (ngtcp2_conn_open_uni_stream(c->qc, &id, os) != 0) return -1;
  os->id = id;
  c->ctrl_os = os;
  vcg__wt_conn_mark(c);
  return 0;
}

int vcg__wt_on_stream_open(wt_conn_t *c, int64_t id) {
  if (ngtcp2_conn_is_local_stream(c->qc, id)) return 0;
  wt_istream_t *is = calloc(1, sizeof(*is));
  if (!is) return -1;
  is->id = id;
  is->kind = VCG__WT_PFX_MORE;
  vcg__wt_prefix_init(&is->pfx, !(id & 0x2));
  vcg__wt_frame_rd_init(&is->fr);
  is->next = c->is_all;
  if (c->is_all) c->is_all->prev = is;
  c->is_all = is;
  ngtcp2_conn_set_stream_user_data(c->qc, id, is);
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
        return conn_error(c, 0x10a /* H3_MISSING_SETTINGS */);
      if (is->settings_seen && ev.type == VCG__H3_FRAME_SETTINGS)
        return conn_error(c, VCG__H3_FRAME_UNEXPECTED);
      if (ev.type == VCG__H3_FRAME_DATA || ev.type == VCG__H3_FRAME_HEADERS)
        return conn_error(c, VCG__H3_FRAME_UNEXPECTED);
      if (ev.type == VCG__H3_FRAME_SETTINGS && ev.len > WT_MAX_SETTINGS_FRAME)
        return conn_error(c, VCG__H3_EXCESSIVE_LOAD);
      is->len = 0;
      break;
    case VCG__WT_FEV_DATA:
      if (ev.type == VCG__H3_FRAME_SETTINGS && buf_append(is, ev.data, ev.datalen) != 0)
        return conn_error(c, VCG__H3_INTERNAL_ERROR);
      break;
    case VCG__WT_FEV_END:
      if (ev.type == VCG__H3_FRAME_SETTINGS) {
        vcg__wt_peer_settings_t ps;
        if (vcg__wt_settings_parse(is->buf, is->len, &ps) != 0)
          return conn_error(c, VCG__H3_SETTINGS_ERROR);
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
    if (!is->caps) return conn_error(c, VCG__H3_INTERNAL_ERROR);
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
      ngtcp2_conn_shutdown_stream(c->qc, is->id, VCG__H3_MESSAGE_ERROR);
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
        if (ev.len > WT_MAX_HEADERS_FRAME) return conn_error(c, VCG__H3_EXCESSIVE_LOAD);
        is->len = 0;
      } else if (ev.type == VCG__H3_FRAME_DATA && !is->settings_seen) {
        return conn_error(c, VCG__H3_FRAME_UNEXPECTED);
      } else if (ev.type == VCG__H3_FRAME_SETTINGS || ev.type == VCG__H3_FRAME_GOAWAY ||
                 ev.type == 0x03 || ev.type == 0x05 || ev.type == 0x0d) {
        return conn_error(c, VCG__H3_FRAME_UNEXPECTED);
      }
      if (ev.type == VCG__H3_FRAME_HEADERS && !is->settings_seen && ev.len == 0)
        return conn_error(c, VCG__H3_FRAME_ERROR);
      break;
    case VCG__WT_FEV_DATA:
      if (ev.type == VCG__H3_FRAME_HEADERS && !is->settings_seen) {
        if (buf_append(is, ev.data, ev.datalen) != 0) return conn_error(c, VCG__H3_INTERNAL_ERROR);
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
  if (c->sstate != WT_S_OPEN || !c->s) return;
  c->inst->host->session_deliver(c->s, p, n);
}

static int uni_data(wt_conn_t *c, wt_istream_t *is, const uint8_t *data,
                    size_t len, int fin) {
  size_t off = 0;
  if (is->kind == VCG__WT_PFX_MORE) {
    int kind;
    off = vcg__wt_prefix_feed(&is->pfx, data, len, &kind);
    credit(c, is->id, off);
    if (kind == VCG__WT_PFX_MORE) {
      if (fin) is_finish(c, is);
      return 0;
    }
    is->kind = kind;
    if (kind == VCG__WT_PFX_UNKNOWN ||
        (kind == VCG__WT_PFX_WT_UNI && (int64_t)is->pfx.session_id != c->connect_id)) {
      /* Unknown stream types must be read and discarded or refused
       * (RFC 9114 section 6.2); we refuse them. */
      ngtcp2_conn_shutdown_stream_read(c->qc, is->id, VCG__H3_STREAM_CREATION_ERROR);
      credit(c, is->id, len - off);
      is_finish(c, is);
      return 0;
    }
  }
  const uint8_t *p = data + off;
  size_t n = len - off;
  switch (is->kind) {
  case VCG__WT_PFX_CONTROL:
    credit(c, is->id, n);
    if (control_feed(c, is, p, n) != 0) return -1;
    if (fin) return conn_error(c, VCG__H3_CLOSED_CRITICAL_STREAM);
    return 0;
  case VCG__WT_PFX_QPACK_ENC:
  case VCG__WT_PFX_QPACK_DEC:
    /* With capacity 0 there is nothing to learn from these streams. */
    credit(c, is->id, n);
    if (fin) return conn_error(c, VCG__H3_CLOSED_CRITICAL_STREAM);
    return 0;
  case VCG__WT_PFX_WT_UNI:
    break;
  default:
    credit(c, is->id, n);
    return 0;
  }
  /* A WebTransport uni stream: one PacketWrapper, read to FIN. */
  is->uncredited += n;
  if (is->len + n > c->inst->max_msg) {
    log_conn(c, VCG_LOG_INFO, "message over %zu bytes refused", c->inst->max_msg);
    c->inst->host->counter_add(c->inst->w, "wt_messages_too_big", 1);
    /* No STOP_SENDING: the close below ends the stream anyway, and a stream
     * error racing the CLOSE capsule can make Chromium report "Connection
     * lost" instead of the close code.  The rest of the stream is read and
     * discarded (its record is gone, see vcg__wt_on_stream_data). */
    is_finish(c, is);
    vcg__wt_session_close(c, vcg__wt_close_code(VCG_CLOSE_TOO_BIG), "message too big");
    return 0;
  }
  if (n && buf_append(is, p, n) != 0) return conn_error(c, VCG__H3_INTERNAL_ERROR);
  if (fin) {
    deliver(c, is->buf, is->len);
    is_finish(c, is);
  }
  return 0;
}

static int bidi_data(wt_conn_t *c, wt_istream_t *is, const uint8_t *data,
                     size_t len, int fin) {
  size_t off = 0;
  if (is->kind == VCG__WT_PFX_MORE) {
    int kind;
    off = vcg__wt_prefix_feed(&is->pfx, data, len, &kind);
    credit(c, is->id, off);
    if (kind == VCG__WT_PFX_MORE) {
      if (fin) is_finish(c, is);
      return 0;
    }
    is->kind = kind;
    if (kind == VCG__WT_PFX_WT_BIDI || c->connect_id >= 0) {
      /* We take packets on uni streams and datagrams only, and one
       * session per connection. */
      ngtcp2_conn_shutdown_stream(c->qc, is->id, kind == VCG__WT_PFX_WT_BIDI
                                                     ? WT_BUFFERED_STREAM_REJECTED
                                                     : VCG__H3_REQUEST_REJECTED);
      credit(c, is->id, len - off);
      is_finish(c, is);
      return 0;
    }
    c->connect_id = is->id;
    if (request_feed(c, is, is->pfx.replay, is->pfx.replaylen) != 0) return -1;
  }
  credit(c, is->id, len - off);
  if (request_feed(c, is, data + off, len - off) != 0) return -1;
  if (fin && is->id == c->connect_id) client_closed(c, 0, 0, "");
  return 0;
}

int vcg__wt_on_stream_data(wt_conn_t *c, uint32_t flags, int64_t id,
                           const uint8_t *data, size_t len, void *sud) {
  wt_istream_t *is = sud;
  int fin = (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0;
  if (!is) {
    credit(c, id, len); /* a stream we finished or refused */
    return 0;
  }
  return (id & 0x2) ? uni_data(c, is, data, len, fin) : bidi_data(c, is, data, len, fin);
}

int vcg__wt_on_stream_reset(wt_conn_t *c, int64_t id, void *sud) {
  wt_istream_t *is = sud;
  if (!is) return 0;
  if (is->kind == VCG__WT_PFX_CONTROL || is->kind == VCG__WT_PFX_QPACK_ENC ||
      is->kind == VCG__WT_PFX_QPACK_DEC)
    return conn_error(c, VCG__H3_CLOSED_CRITICAL_STREAM);
  if (id == c->connect_id) {
    client_closed(c, 0, 0, "");
    return 0; /* the record goes when ngtcp2 closes the stream */
  }
  is_finish(c, is);
  return 0;
}

int vcg__wt_on_stream_close(wt_conn_t *c, int64_t id, void *sud) {
  wt_istream_t *is = sud;
  if (id == c->connect_id) {
    client_closed(c, 0, 0, "");
    if (c->connect_os) vcg__wt_os_free(c, c->connect_os);
  }
  if (is) is_finish(c, is);
  return 0;
}

int vcg__wt_on_datagram(wt_conn_t *c, const uint8_t *data, size_t len) {
  uint64_t q;
  size_t n = vcg__wt_varint_get(data, len, &q);
  if (!n || c->connect_id < 0 || q != (uint64_t)c->connect_id / 4) return 0;
  data += n;
  len -= n;
  /* A 4-byte "ping" only keeps the connection alive (PROTOCOL.md). */
  if (len == 4 && memcmp(data, "ping", 4) == 0) return 0;
  if (len > c->inst->max_msg) {
    c->inst->host->counter_add(c->inst->w, "wt_messages_too_big", 1);
    return 0;
  }
  deliver(c, data, len);
  return 0;
}
