/* Sessions: open (validate, limit, assign an id, join the room), inbound
 * packets (decode, per-type rules, fan-out, publish), drop policy, close. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core.h"
#include "names.h"

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

uint64_t vcg__now_ms(vcg__worker_t *w) { return uv_now(&w->loop); }

static void set_slot(vcg_session_t *s, uint32_t idx) { s->slot = idx; }

/* Hand one reference of p to s's transport, counting it in s's queue depth
 * (the transport reports the true depth with session_set_queued later). */
static int session_send(vcg_session_t *s, vcg_packet_t *p) {
  s->qp++;
  s->qb += p->len;
  return s->t->pc->loaded->desc->transport->send(s->t->inst, s->conn, p);
}

#define LOG(w, lvl, sid, ...) \
  do { if (vcg__log_on((w)->proc->log, lvl)) vcg__logf((w)->proc->log, lvl, "core", sid, __VA_ARGS__); } while (0)

int vcg__session_open(vcg_worker_t *b, const vcg_session_info_t *info,
                      vcg_session_t **out, int *why, char *msg, size_t msglen) {
  vcg__worker_t *w = b->core;
  vcg__process_t *proc = w->proc;
  const vcg__core_conf_t *cc = &proc->cfg->core;
  const char *reason = NULL;
  int rc;
  *out = NULL;
  if (w->state != VCG__RUNNING) {
    *why = VCG_CLOSE_SHUTDOWN;
    snprintf(msg, msglen, "server is shutting down");
    return VCG_ECANCELED;
  }
  if ((rc = vcg__user_name_check(info->user, (size_t)cc->max_user_length, &reason)) != 0) {
    *why = rc == VCG_EPERM ? VCG_CLOSE_FORBIDDEN : VCG_CLOSE_BAD_REQUEST;
    snprintf(msg, msglen, "%s", reason);
    w->stats.sessions_refused++;
    return rc;
  }
  if ((rc = vcg__room_name_check(info->room, (size_t)cc->max_room_length, &reason)) != 0) {
    *why = VCG_CLOSE_BAD_REQUEST;
    snprintf(msg, msglen, "%s", reason);
    w->stats.sessions_refused++;
    return rc;
  }
  vcg__room_t *room = vcg__room_find(&w->rooms, info->room);
  if (room && vcg__room_live(room) >= (uint32_t)cc->max_sessions_per_room) {
    *why = VCG_CLOSE_OVERLOAD;
    snprintf(msg, msglen, "room is full (%lld sessions)", (long long)cc->max_sessions_per_room);
    w->stats.sessions_refused++;
    return VCG_EBUSY;
  }
  int counted = 0;
  rc = vcg__limits_acquire(&proc->limits, info->peer, &counted);
  if (rc != 0) {
    *why = rc == VCG_EAGAIN ? VCG_CLOSE_LIMIT : VCG_CLOSE_OVERLOAD;
    snprintf(msg, msglen, rc == VCG_EAGAIN ? "too many connections from this address"
                                           : "server is at its connection limit");
    w->stats.sessions_refused++;
    return rc;
  }
  vcg_session_t *s = calloc(1, sizeof *s);
  int created = 0;
  if (!s || !(s->user = strdup(info->user)) ||
      !(room = vcg__room_get(&w->rooms, info->room, 0, &created))) {
    goto nomem;
  }
  if (created) {
    /* MEETING_STARTED carries the wall-clock start of the room. */
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    room->start_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    room->creator = strdup(info->user);
  }
  if (vcg__room_add(room, s, &s->slot) != 0) {
    if (created) vcg__room_destroy(&w->rooms, room);
    goto nomem;
  }
  s->id = next_id(w);
  s->t = b;
  s->conn = info->conn;
  s->room = room;
  s->ip_counted = counted;
  if (info->peer && info->peer->sa_family == AF_INET6)
    memcpy(&s->peer.in6, info->peer, sizeof s->peer.in6);
  else if (info->peer && info->peer->sa_family == AF_INET)
    memcpy(&s->peer.in, info->peer, sizeof s->peer.in);
  w->nsessions++;
  w->stats.sessions_opened++;
  if (created && w->bus.inst) {
    if (w->bus.pc->loaded->desc->bus->room_join(w->bus.inst, room->name) != 0)
      LOG(w, VCG_LOG_WARN, s->id, "bus could not join room %s; relaying locally only", room->name);
  }
  LOG(w, VCG_LOG_INFO, s->id, "opened: user %s room %s via %s", s->user, room->name, b->pc->name);
  *out = s;
  /* The first packets a client sees: its session id, then the meeting. */
  vcg_packet_t *p = vcg__packet_session_assigned(s->id);
  if (p) session_send(s, p);
  p = vcg__packet_meeting(1, room->name, room->start_ms, room->creator, 0);
  if (p) session_send(s, p);
  return 0;
nomem:
  vcg__limits_release(&proc->limits, info->peer, counted);
  if (s) free(s->user);
  free(s);
  *why = VCG_CLOSE_INTERNAL;
  snprintf(msg, msglen, "out of memory");
  return VCG_ENOMEM;
}

static void close_session(vcg_session_t *s, int why, const char *reason) {
  if (s->closing) return;
  s->closing = 1;
  s->t->pc->loaded->desc->transport->close(s->t->inst, s->conn, why, reason);
}

/* Drop classes: video goes first (half the budget), then other media
 * (the full budget); key exchange and control packets are never dropped,
 * and a session whose queue holds twice its budget is closed. */
enum { CLS_VIDEO, CLS_MEDIA, CLS_CONTROL };
static int drop_class(const vcg_packet_t *p) {
  if (p->type != VCG_PT_MEDIA) return CLS_CONTROL;
  if (p->media_type == 1 || p->media_type == 3) return CLS_VIDEO;
  if (p->media_type == 6) return CLS_CONTROL; /* keyframe request: tiny, needed */
  return CLS_MEDIA;
}

static void send_congestion(vcg__worker_t *w, vcg_session_t *sender, uint64_t now) {
  if (!sender || sender->closing || now - sender->last_congestion_ms < 1000) return;
  sender->last_congestion_ms = now ? now : 1;
  vcg_packet_t *c = vcg__packet_congestion(sender->id);
  if (c) session_send(sender, c);
}

/* Hand one reference of p to r's transport, or drop it by policy. */
static void enqueue(vcg__worker_t *w, vcg_session_t *r, vcg_session_t *sender, vcg_packet_t *p,
                    uint64_t now) {
  const vcg__core_conf_t *cc = &w->proc->cfg->core;
  size_t maxb = (size_t)cc->queue_max_bytes, maxp = (size_t)cc->queue_max_packets;
  int cls = drop_class(p);
  size_t nb = r->qb + p->len, np = r->qp + 1;
  int drop = 0;
  if (cls == CLS_VIDEO) drop = nb > maxb / 2 || np > maxp / 2;
  else if (cls == CLS_MEDIA) drop = nb > maxb || np > maxp;
  if (cls == CLS_CONTROL && (nb > 2 * maxb || np > 2 * maxp)) {
    w->stats.slow_closed++;
    vcg__logf(w->proc->log, VCG_LOG_WARN, "core", r->id,
              "slow consumer: user %s room %s holds %zu packets / %zu bytes; closing",
              r->user, r->room->name, r->qp, r->qb);
    close_session(r, VCG_CLOSE_SLOW, "slow consumer");
    return;
  }
  if (drop) {
    w->stats.packets_dropped++;
    r->drops++;
    if (!r->drop_since_ms) {
      r->drop_since_ms = now ? now : 1;
      vcg__logf(w->proc->log, VCG_LOG_INFO, "core", r->id,
                "queue full (%zu packets / %zu bytes): dropping media for user %s",
                r->qp, r->qb, r->user);
    } else if (now - r->drop_since_ms > (uint64_t)cc->slow_consumer_timeout) {
      w->stats.slow_closed++;
      vcg__logf(w->proc->log, VCG_LOG_WARN, "core", r->id,
                "slow consumer: user %s room %s dropped %llu packets over %llu ms; closing",
                r->user, r->room->name, (unsigned long long)r->drops,
                (unsigned long long)(now - r->drop_since_ms));
      close_session(r, VCG_CLOSE_SLOW, "slow consumer");
    }
    send_congestion(w, sender, now);
    return;
  }
  vcg__packet_ref(p);
  w->stats.packets_relayed++;
  if (session_send(r, p) == VCG_ENOBUFS) {
    w->stats.packets_dropped++;
    r->drops++;
    if (!r->drop_since_ms) r->drop_since_ms = now ? now : 1;
  }
}

void vcg__worker_fanout(vcg__worker_t *w, vcg__room_t *room, vcg_session_t *sender,
                        uint64_t origin, vcg_packet_t *p) {
  uint64_t now = vcg__now_ms(w);
  room->busy++;
  for (uint32_t i = 0; i < room->n; i++) {
    vcg_session_t *r = room->m[i];
    if (!r || r == sender || r->closing || (origin && r->id == origin)) continue;
    enqueue(w, r, sender, p, now);
  }
  room->busy--;
  vcg__room_compact(room, set_slot);
  /* Members that left during the walk may have emptied the room. */
  if (!room->busy && vcg__room_live(room) == 0 && !sender) {
    if (w->bus.inst) w->bus.pc->loaded->desc->bus->room_leave(w->bus.inst, room->name);
    vcg__room_destroy(&w->rooms, room);
  }
}

/* Keyframe requests make every sender of video produce a large frame, so a
 * session may send at most two a second. */
static int keyframe_allowed(vcg__worker_t *w, vcg_session_t *s) {
  uint64_t now = vcg__now_ms(w);
  if (now - s->kf_window_ms >= 1000) { s->kf_window_ms = now; s->kf_count = 0; }
  return s->kf_count++ < 2;
}

int vcg__session_deliver(vcg_session_t *s, const uint8_t *data, size_t len) {
  vcg__worker_t *w = s->t->core;
  if (s->closing) return 0;
  w->stats.packets_in++;
  if (len > (size_t)w->proc->cfg->core.max_message_size) {
    close_session(s, VCG_CLOSE_TOO_BIG, "message too big");
    return VCG_EMSGSIZE;
  }
  vcg__pw_header_t h;
  if (vcg__pw_decode(data, len, &h) != 0) {
    w->stats.packets_malformed++;
    if (vcg__log_on(w->proc->log, VCG_LOG_DEBUG))
      vcg__logf(w->proc->log, VCG_LOG_DEBUG, "core", s->id,
                "dropped %zu bytes that are not a PacketWrapper", len);
    return 0;
  }
  switch (h.type) {
  case VCG_PT_HEALTH:      /* diagnostics for the server, not for peers */
  case VCG_PT_CONGESTION:  /* only the server makes these */
  case VCG_PT_SESSION_ASSIGNED:
    return 0;
  case VCG_PT_MEDIA:
    if (h.media_type == 5) { /* RTT: echoed to its sender only, unchanged */
      vcg_packet_t *e = vcg__packet_copy(data, len, &h);
      if (e) session_send(s, e);
      return 0;
    }
    if (h.media_type == 6 && !keyframe_allowed(w, s)) return 0;
    break;
  default:
    break;
  }
  vcg_packet_t *p = vcg__packet_from_wire(data, len, &h, s->id);
  if (!p) return 0;
  vcg__worker_fanout(w, s->room, s, 0, p);
  if (w->bus.inst) {
    vcg__packet_ref(p);
    w->stats.bus_out++;
    w->bus.pc->loaded->desc->bus->publish(w->bus.inst, s->room->name, s->id, p);
  }
  vcg__packet_unref(p);
  return 0;
}

void vcg__session_set_queued(vcg_session_t *s, size_t packets, size_t bytes) {
  s->qp = packets;
  s->qb = bytes;
  if (s->drop_since_ms) {
    const vcg__core_conf_t *cc = &s->t->core->proc->cfg->core;
    if (bytes <= (size_t)cc->queue_max_bytes / 4 && packets <= (size_t)cc->queue_max_packets / 4)
      s->drop_since_ms = 0; /* caught up: the slow-consumer clock restarts */
  }
}

void vcg__session_closed(vcg_session_t *s) {
  vcg__worker_t *w = s->t->core;
  vcg__room_t *room = s->room;
  vcg_session_t *moved = NULL;
  uint32_t left = vcg__room_remove(room, s->slot, &moved);
  if (moved) moved->slot = s->slot;
  if (left == 0 && !room->busy) {
    if (w->bus.inst) w->bus.pc->loaded->desc->bus->room_leave(w->bus.inst, room->name);
    vcg__room_destroy(&w->rooms, room);
  }
  vcg__limits_release(&w->proc->limits, &s->peer.sa, s->ip_counted);
  vcg__logf(w->proc->log, VCG_LOG_INFO, "core", s->id, "closed: user %s (%llu dropped)",
            s->user, (unsigned long long)s->drops);
  free(s->user);
  free(s);
  w->nsessions--;
  vcg__worker_session_gone(w);
}

/* ---- bus input ---- */

static int bus_fanout(vcg__worker_t *w, const char *room_name, uint64_t origin, vcg_packet_t *p) {
  vcg__room_t *room = vcg__room_find(&w->rooms, room_name);
  w->stats.bus_in++;
  if (room) vcg__worker_fanout(w, room, NULL, origin, p);
  vcg__packet_unref(p);
  return 0;
}

int vcg__bus_deliver(vcg_worker_t *b, const char *room, uint64_t origin,
                     const uint8_t *data, size_t len) {
  vcg__worker_t *w = b->core;
  vcg__pw_header_t h;
  if (len > (size_t)w->proc->cfg->core.max_message_size || vcg__pw_decode(data, len, &h) != 0) {
    w->stats.packets_malformed++;
    return VCG_EINVAL;
  }
  vcg_packet_t *p = vcg__packet_copy(data, len, &h);
  if (!p) return VCG_ENOMEM;
  return bus_fanout(w, room, origin, p);
}

int vcg__bus_deliver_packet_ts(vcg_worker_t *b, const char *room, uint64_t origin,
                               vcg_packet_t *p) {
  vcg__worker_t *w = b->core;
  size_t rl = strlen(room);
  vcg__inbox_item_t *it = malloc(sizeof *it + rl + 1);
  if (!it) { vcg__packet_unref(p); return VCG_ENOMEM; }
  memcpy(it->room, room, rl + 1);
  it->p = p;
  it->origin = origin;
  it->next = NULL;
  uv_mutex_lock(&w->qlock);
  if (w->inbox_tail) w->inbox_tail->next = it; else w->inbox_head = it;
  w->inbox_tail = it;
  uv_mutex_unlock(&w->qlock);
  uv_async_send(&w->async);
  return 0;
}

int vcg__bus_deliver_ts(vcg_worker_t *b, const char *room, uint64_t origin,
                        const uint8_t *data, size_t len) {
  vcg__pw_header_t h;
  if (len > (size_t)b->core->proc->cfg->core.max_message_size || vcg__pw_decode(data, len, &h) != 0)
    return VCG_EINVAL;
  vcg_packet_t *p = vcg__packet_copy(data, len, &h);
  if (!p) return VCG_ENOMEM;
  return vcg__bus_deliver_packet_ts(b, room, origin, p);
}

void vcg__worker_drain_inbox(vcg__worker_t *w) {
  uv_mutex_lock(&w->qlock);
  vcg__inbox_item_t *it = w->inbox_head;
  w->inbox_head = w->inbox_tail = NULL;
  uv_mutex_unlock(&w->qlock);
  while (it) {
    vcg__inbox_item_t *nx = it->next;
    bus_fanout(w, it->room, it->origin, it->p);
    free(it);
    it = nx;
  }
}
