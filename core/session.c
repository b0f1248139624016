/* Sessions: open (lobby, limits, an id, the room), inbound packets (decode,
 * per-type rules, then the relay), queue depth, close. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "session.h"
#include "lobby.h"
#include "names.h"
#include "presence.h"
#include "relay.h"
#include "worker.h"

/* xorshift128+ seeded from the OS per worker: session ids must not be
 * guessable across sessions but need no cryptographic strength beyond
 * that, and each worker draws without locking. */
static uint64_t next_id(vcg__worker_t *w) {
  for (;;) {
    uint64_t s1 = w->rng[0];
    const uint64_t s0 = w->rng[1];
    w->rng[0] = s0;
    s1 ^= s1 << 23;
    w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    uint64_t v = w->rng[1] + s0;
    if (v) return v;
  }
}

static int refused(vcg__worker_t *w, int *why, int reason, char *msg, size_t msglen,
                   const char *text, int rc) {
  (void)w;
  *why = reason;
  snprintf(msg, msglen, "%s", text);
  return rc;
}

/* Who is joining which room: from the raw target (ABI 1.2 transports) or
 * from the user and room a 1.1 transport decoded itself. */
static int join_request(vcg__worker_t *w, const vcg_session_info_t *info, vcg__lobby_req_t *req,
                        int *why, char *msg, size_t msglen) {
  const vcg__config_t *cfg = w->cfg;
  const vcg__core_conf_t *cc = &cfg->core;
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  vcg__lobby_conf_t lc = {
    .max_user_length = (size_t)cc->max_user_length, .max_room_length = (size_t)cc->max_room_length,
    .keys = &cfg->jwt_keys, .issuer = cc->jwt_issuer, .leeway_ms = cc->jwt_leeway,
    .now_ms = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000, .require_token = cc->require_token,
  };
  const char *reason = NULL;
  int rc;
  req->display_name[0] = '\0';
  req->observer = req->is_host = 0;
  if (info->size >= offsetof(vcg_session_info_t, target) + sizeof info->target && info->target) {
    if ((rc = vcg__lobby_parse(&lc, info->target, req, why, msg, msglen)) != 0) {
      if (req->auth_fail >= 0) VCG__ADD(w->stats.auth_failures[req->auth_fail], 1);
      if (req->token && *why == VCG_CLOSE_INTERNAL &&
          !atomic_exchange(&w->proc->warned_no_secret, 1))
        vcg__logf(w->proc->log, VCG_LOG_ERROR, "core", 0,
                  "a client sent a room token but no secret is configured (core.jwt_secret, "
                  "core.jwt_secret_file or JWT_SECRET): answering 500");
      return rc;
    }
    return 0;
  }
  if (cc->require_token)
    return refused(w, why, VCG_CLOSE_GONE, msg, msglen, "this server requires a room token", VCG_EPERM);
  if ((rc = vcg__user_name_check(info->user, lc.max_user_length, &reason)) != 0)
    return refused(w, why, rc == VCG_EPERM ? VCG_CLOSE_FORBIDDEN : VCG_CLOSE_BAD_REQUEST, msg,
                   msglen, reason, rc);
  if ((rc = vcg__room_name_check(info->room, lc.max_room_length, &reason)) != 0)
    return refused(w, why, VCG_CLOSE_BAD_REQUEST, msg, msglen, reason, rc);
  snprintf(req->user, sizeof req->user, "%s", info->user);
  snprintf(req->room, sizeof req->room, "%s", info->room);
  req->token = NULL;
  return 0;
}

static int open_session(vcg_worker_t *b, const vcg_session_info_t *info,
                        vcg_session_t **out, int *why, char *msg, size_t msglen) {
  vcg__worker_t *w = b->core;
  vcg__process_t *proc = w->proc;
  const vcg__core_conf_t *cc = &w->cfg->core;
  int rc;
  *out = NULL;
  if (w->state != VCG__RUNNING) {
    *why = VCG_CLOSE_SHUTDOWN;
    snprintf(msg, msglen, "server is shutting down");
    return VCG_ECANCELED;
  }
  /* The request is large (two names and a token); it lives only here. */
  vcg__lobby_req_t *req = malloc(sizeof *req);
  if (!req) return refused(w, why, VCG_CLOSE_INTERNAL, msg, msglen, "out of memory", VCG_ENOMEM);
  if ((rc = join_request(w, info, req, why, msg, msglen)) != 0) {
    free(req);
    return rc;
  }
  vcg__room_t *room = vcg__room_find(&w->rooms, req->room);
  if (room && vcg__room_live(room) >= (uint32_t)cc->max_sessions_per_room) {
    char text[64];
    snprintf(text, sizeof text, "room is full (%lld sessions)", (long long)cc->max_sessions_per_room);
    free(req);
    return refused(w, why, VCG_CLOSE_OVERLOAD, msg, msglen, text, VCG_EBUSY);
  }
  int counted = 0;
  int admitted = info->size >= offsetof(vcg_session_info_t, flags) + sizeof info->flags &&
                 (info->flags & VCG_SESSION_ADMITTED);
  rc = admitted ? 0 : vcg__limits_acquire(&proc->limits, info->peer, &counted);
  if (rc != 0) {
    free(req);
    return refused(w, why, rc == VCG_EAGAIN ? VCG_CLOSE_LIMIT : VCG_CLOSE_OVERLOAD, msg, msglen,
                   rc == VCG_EAGAIN ? "too many connections from this address"
                                    : "server is at its connection limit", rc);
  }
  vcg_session_t *s = calloc(1, sizeof *s);
  int created = 0;
  if (!s || !(s->user = strdup(req->user)) ||
      !(room = vcg__relay_room_get(w, req->room, &created)))
    goto nomem;
  if (created && !(room->creator = strdup(req->user))) {
    vcg__relay_room_release(w, room);
    goto nomem;
  }
  if (!(s->display_name = strdup(req->display_name[0] ? req->display_name : req->user)) ||
      vcg__room_add(room, s, &s->slot) != 0) {
    vcg__relay_room_release(w, room);
    goto nomem;
  }
  s->observer = req->observer;
  s->is_host = req->is_host;
  free(req);
  s->id = next_id(w);
  s->t = b;
  s->conn = info->conn;
  s->room = room;
  s->ip_counted = counted;
  s->admitted = admitted;
  vcg_htab_insert(&w->sessions, &s->idnode, vcg_hash_mix(s->id));
  if (info->peer && info->peer->sa_family == AF_INET6)
    memcpy(&s->peer.in6, info->peer, sizeof s->peer.in6);
  else if (info->peer && info->peer->sa_family == AF_INET)
    memcpy(&s->peer.in, info->peer, sizeof s->peer.in);
  w->nsessions++;
  VCG__ADD(w->stats.sessions_opened, 1);
  if (s->observer) VCG__ADD(w->stats.observers_opened, 1);
  VCG__LOG(w, VCG_LOG_INFO, s->id, "opened: user %s room %s via %s%s", s->user, room->name,
           b->pc->name, s->observer ? " (observer)" : "");
  *out = s;
  /* The first packets a client sees: its session id, then the meeting. */
  vcg_packet_t *p = vcg__packet_session_assigned(s->id);
  if (p) vcg__session_send(s, p);
  vcg__event_t ev = { .type = VCG__EV_MEETING_STARTED, .room = room->name,
                      .start_ms = room->start_ms, .creator = room->creator };
  p = vcg__packet_event(&ev);
  if (p) vcg__session_send(s, p);
  if (created) vcg__presence_room_started(w, room);
  return 0;
nomem:
  free(req);
  if (!admitted) vcg__limits_release(&proc->limits, info->peer, counted);
  if (s) { free(s->user); free(s->display_name); }
  free(s);
  return refused(w, why, VCG_CLOSE_INTERNAL, msg, msglen, "out of memory", VCG_ENOMEM);
}

int vcg__lobby_check(vcg_worker_t *b, const char *target, int *why, char *msg, size_t msglen) {
  vcg__lobby_req_t *req = malloc(sizeof *req);
  if (!req) return refused(b->core, why, VCG_CLOSE_INTERNAL, msg, msglen, "out of memory", VCG_ENOMEM);
  vcg_session_info_t info = { .size = sizeof info, .target = target };
  int rc = join_request(b->core, &info, req, why, msg, msglen);
  free(req);
  return rc;
}

int vcg__session_open(vcg_worker_t *b, const vcg_session_info_t *info,
                      vcg_session_t **out, int *why, char *msg, size_t msglen) {
  int rc = open_session(b, info, out, why, msg, msglen);
  if (rc != 0) {
    VCG__ADD(b->core->stats.sessions_refused, 1);
    VCG__ADD(b->ts.rejected[vcg__reject_index(*why)], 1);
  } else {
    VCG__ADD(b->ts.opened, 1);
    VCG__ADD(b->ts.sessions, 1);
  }
  return rc;
}

/* Keyframe requests make every sender of video produce a large frame, so a
 * session may send at most two a second. */
static int keyframe_allowed(vcg__worker_t *w, vcg_session_t *s) {
  uint64_t now = vcg__now_ms(w);
  if (now - s->kf_window_ms >= 1000) { s->kf_window_ms = now; s->kf_count = 0; }
  return s->kf_count++ < 2;
}

/* A client packet the relay does not vouch for: counted, not relayed. */
static int refuse_packet(vcg__worker_t *w, vcg_session_t *s, const char *what) {
  VCG__ADD(w->stats.packets_refused, 1);
  VCG__LOG(w, VCG_LOG_DEBUG, s->id, "dropped a packet: %s", what);
  return 0;
}

int vcg__session_deliver(vcg_session_t *s, const uint8_t *data, size_t len) {
  vcg__worker_t *w = s->t->core;
  const vcg__core_conf_t *cc = &w->cfg->core;
  if (s->closing) return 0;
  VCG__ADD(w->stats.packets_in, 1);
  if (len > (size_t)cc->max_message_size) {
    vcg__session_close(s, VCG_CLOSE_TOO_BIG, "message too big");
    return VCG_EMSGSIZE;
  }
  VCG__ADD(s->t->ts.rx_bytes, len);
  vcg__pw_header_t h;
  if (vcg__pw_decode(data, len, &h) != 0) {
    VCG__ADD(s->t->ts.rx_packets[VCG__K_CONTROL], 1);
    VCG__ADD(w->stats.packets_malformed, 1);
    VCG__LOG(w, VCG_LOG_DEBUG, s->id, "dropped %zu bytes that are not a PacketWrapper", len);
    return 0;
  }
  VCG__ADD(s->t->ts.rx_packets[vcg__packet_kind(h.type, h.media_type, len)], 1);
  if (h.type == VCG_PT_MEDIA && h.media_type == 5) {
    /* RTT: echoed to its sender only, unchanged, on the channel it came
     * in on; it does not make the session active (connection election). */
    vcg_packet_t *e = vcg__packet_copy(data, len, &h);
    if (e) vcg__session_send(s, e);
    return 0;
  }
  /* What the relay vouches for: the server's identity and its packet types
   * are the server's alone, and the sender's identity is the session's. */
  if (h.user && h.user_len == sizeof VCG_SYSTEM_USER - 1 &&
      memcmp(h.user, VCG_SYSTEM_USER, h.user_len) == 0)
    return refuse_packet(w, s, "the system identity");
  switch (h.type) {
  case VCG_PT_MEETING: case VCG_PT_SESSION_ASSIGNED: case VCG_PT_CONGESTION:
    return refuse_packet(w, s, "a server-only packet type");
  default:
    break;
  }
  if (s->observer)
    return h.type == VCG_PT_HEALTH ? 0 : refuse_packet(w, s, "observers may not send");
  if (cc->enforce_identity && h.user && h.user_len &&
      (h.user_len != strlen(s->user) || memcmp(h.user, s->user, h.user_len) != 0)) {
    if (!s->ident_warned) {
      s->ident_warned = 1;
      vcg__logf(w->proc->log, VCG_LOG_WARN, "core", s->id,
                "user %s sent packets as another identity; dropping them (core.enforce_identity)",
                s->user);
    }
    return refuse_packet(w, s, "user_id is not the session's identity");
  }
  vcg__presence_activate(w, s);
  if (h.type == VCG_PT_HEALTH) return 0; /* diagnostics for the server, not for peers */
  if (h.type == VCG_PT_MEDIA && h.media_type == 6 && !keyframe_allowed(w, s)) return 0;
  vcg_packet_t *p = vcg__packet_from_wire(data, len, &h, s->id);
  if (!p) return 0;
  vcg__relay_fanout(w, s->room, s, 0, p);
  vcg__relay_publish(w, s->room->name, s->id, p);
  vcg__packet_unref(p);
  return 0;
}

void vcg__session_set_queued(vcg_session_t *s, size_t packets, size_t bytes) {
  VCG__ADD(s->t->core->stats.queued_bytes, (uint64_t)bytes - (uint64_t)s->qb);
  s->qp = packets;
  s->qb = bytes;
  if (s->drop_since_ms) {
    const vcg__core_conf_t *cc = &s->t->core->cfg->core;
    if (bytes <= (size_t)cc->queue_max_bytes / 4 && packets <= (size_t)cc->queue_max_packets / 4)
      s->drop_since_ms = 0; /* caught up: the slow-consumer clock restarts */
  }
}

void vcg__session_closed(vcg_session_t *s) {
  vcg__worker_t *w = s->t->core;
  vcg__room_t *room = s->room;
  vcg__presence_gone(w, s);
  VCG__SUB(w->stats.queued_bytes, s->qb);
  VCG__SUB(s->t->ts.sessions, 1);
  VCG__ADD(s->t->ts.closed[s->closing ? vcg__close_code_index(s->close_why) : VCG__CC_NONE], 1);
  vcg_session_t *moved = NULL;
  vcg__room_remove(room, s->slot, &moved);
  if (moved) moved->slot = s->slot;
  vcg__relay_room_release(w, room);
  if (!s->admitted) vcg__limits_release(&w->proc->limits, &s->peer.sa, s->ip_counted);
  vcg_htab_remove(&w->sessions, &s->idnode);
  vcg__logf(w->proc->log, VCG_LOG_INFO, "core", s->id, "closed: user %s (%llu dropped)", s->user,
            (unsigned long long)s->drops);
  free(s->user);
  free(s->display_name);
  free(s);
  w->nsessions--;
  vcg__worker_session_gone(w);
}
