/* Fan-out and the drop policy: one packet, one reference per recipient,
 * bounded queues. */
#include <stdlib.h>
#include "relay.h"

static void set_slot(vcg_session_t *s, uint32_t idx) { s->slot = idx; }

vcg__room_t *vcg__relay_room_get(vcg__worker_t *w, const char *name, int *created) {
  vcg__room_t *room = vcg__room_get(&w->rooms, name, 0, created);
  if (room && *created) {
    VCG__ADD(w->stats.rooms, 1);
    /* MEETING_STARTED carries the wall-clock start of the room. */
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    room->start_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    if (w->bus.inst && w->bus.bop->room_join(w->bus.inst, room->name) != 0)
      VCG__LOG(w, VCG_LOG_WARN, 0, "bus could not join room %s; relaying locally only", room->name);
  }
  return room;
}

int vcg__relay_room_release(vcg__worker_t *w, vcg__room_t *room) {
  if (room->busy || vcg__room_live(room) != 0) return 0;
  if (w->bus.inst) w->bus.bop->room_leave(w->bus.inst, room->name);
  vcg__room_destroy(&w->rooms, room);
  VCG__SUB(w->stats.rooms, 1);
  return 1;
}

/* What a packet is worth to a call, which decides when it may be dropped:
 *  - VIDEO: video, screen, and packets of types the relay does not know
 *    (bulk nobody is promised): dropped first, at half the queue budget
 *    and past core.max_video_delay;
 *  - AUDIO: audio, heartbeats, RTT: at the full budget and past
 *    core.max_audio_delay;
 *  - CONTROL: key exchange, meeting events, keyframe requests: never
 *    dropped (a session that needs to drop them is closed instead).
 * With end-to-end encryption the MediaPacket is ciphertext and its type
 * unknown (media_type -1); its size tells instead: an encrypted Opus frame
 * is a few hundred bytes, video frames are larger, so small encrypted
 * media is treated as audio.  A small video delta then gets audio's
 * longer deadline, which costs little: it is small. */
enum { CLS_VIDEO, CLS_AUDIO, CLS_CONTROL };
#define VCG__SMALL_MEDIA 600
/* Key exchange and meeting events are small (an RSA public key is a few
 * hundred bytes): a "control" packet larger than this is bulk, dropped
 * like video, so nobody can use the never-dropped class to fill another
 * member's queue.  And the never-dropped class may take only this much
 * beyond the queue budget before the receiver is closed as slow. */
#define VCG__CONTROL_MAX (16u << 10)
#define VCG__CONTROL_BUDGET (256u << 10)

static int packet_class(const vcg_packet_t *p) {
  if (p->len > VCG__CONTROL_MAX && p->type != VCG_PT_MEDIA) return CLS_VIDEO;
  switch (p->type) {
  case VCG_PT_MEDIA:
    switch (p->media_type) {
    case 1: case 3: return CLS_VIDEO;           /* VIDEO, SCREEN */
    case 2: case 4: case 5: return CLS_AUDIO;   /* AUDIO, HEARTBEAT, RTT */
    case 6: return CLS_CONTROL;                 /* KEYFRAME_REQUEST */
    default: return p->len <= VCG__SMALL_MEDIA ? CLS_AUDIO : CLS_VIDEO;
    }
  case VCG_PT_RSA_PUB_KEY: case VCG_PT_AES_KEY: case VCG_PT_CONNECTION:
  case VCG_PT_MEETING: case VCG_PT_SESSION_ASSIGNED: case VCG_PT_CONGESTION:
    return CLS_CONTROL;
  default:
    return CLS_VIDEO;                           /* unknown, DIAGNOSTICS */
  }
}

int vcg__packet_kind(int type, int media_type, size_t len) {
  if (type != VCG_PT_MEDIA) return VCG__K_CONTROL;
  switch (media_type) {
  case 1: return VCG__K_VIDEO;
  case 2: return VCG__K_AUDIO;
  case 3: return VCG__K_SCREEN;
  case -1: return len <= VCG__SMALL_MEDIA ? VCG__K_AUDIO : VCG__K_VIDEO; /* encrypted */
  default: return VCG__K_CONTROL; /* heartbeats, RTT, keyframe requests */
  }
}

#define KIND(p) vcg__packet_kind((p)->type, (p)->media_type, (p)->len)

void vcg__relay_stamp(vcg__worker_t *w, vcg_packet_t *p) {
  if (p->deadline_ms) return; /* set where the packet was made */
  const vcg__core_conf_t *cc = &w->cfg->core;
  p->arrival_ms = vcg__now_ms(w);
  switch (packet_class(p)) {
  case CLS_VIDEO: p->deadline_ms = vcg__now_ms(w) + (uint64_t)cc->max_video_delay; break;
  case CLS_AUDIO: p->deadline_ms = vcg__now_ms(w) + (uint64_t)cc->max_audio_delay; break;
  default: p->deadline_ms = UINT64_MAX; break;
  }
}

static void send_congestion(vcg_session_t *sender, uint64_t now);

void vcg__relay_shed(vcg_session_t *r, vcg_packet_t *p) {
  vcg__worker_t *w = r->t->core;
  VCG__ADD(w->stats.packets_dropped, 1);
  VCG__ADD(w->stats.packets_shed, 1);
  VCG__ADD(w->stats.dropped[KIND(p)], 1);
  r->drops++;
  send_congestion(vcg__session_find(w, p->session_id), vcg__now_ms(w));
  vcg__packet_unref(p);
}

int vcg__relay_take(vcg_session_t *r, vcg_packet_t *p) {
  vcg__worker_t *w = r->t->core;
  uint64_t now = vcg__now_ms(w);
  if (p->deadline_ms && now > p->deadline_ms) {
    vcg__relay_shed(r, p);
    return 1;
  }
  if (p->arrival_ms) vcg__latency_record(&w->stats, now - p->arrival_ms);
  return 0;
}

static void send_congestion(vcg_session_t *sender, uint64_t now) {
  if (!sender || sender->closing || now - sender->last_congestion_ms < 1000) return;
  sender->last_congestion_ms = now ? now : 1;
  vcg_packet_t *c = vcg__packet_congestion(sender->id);
  if (!c) return;
  VCG__ADD(sender->t->core->stats.congestion, 1);
  vcg__session_send(sender, c);
}

static void slow_close(vcg__worker_t *w, vcg_session_t *r, const char *detail) {
  VCG__ADD(w->stats.slow_closed, 1);
  vcg__logf(w->proc->log, VCG_LOG_WARN, "core", r->id, "slow consumer: user %s room %s %s; closing",
            r->user, r->room->name, detail);
  vcg__session_close(r, VCG_CLOSE_SLOW, "slow consumer");
}

/* Hand one reference of p to r's transport, or drop it by policy. */
static void enqueue(vcg__worker_t *w, vcg_session_t *r, vcg_session_t *sender, vcg_packet_t *p,
                    uint64_t now) {
  const vcg__core_conf_t *cc = &w->cfg->core;
  size_t maxb = (size_t)cc->queue_max_bytes, maxp = (size_t)cc->queue_max_packets;
  int cls = packet_class(p);
  size_t nb = r->qb + p->len, np = r->qp + 1;
  int drop = 0;
  char detail[96];
  if (cls == CLS_VIDEO) drop = nb > maxb / 2 || np > maxp / 2;
  else if (cls == CLS_AUDIO) drop = nb > maxb || np > maxp;
  if (cls == CLS_CONTROL && (nb > maxb + VCG__CONTROL_BUDGET || np > maxp + 256)) {
    snprintf(detail, sizeof detail, "holds %zu packets / %zu bytes", r->qp, r->qb);
    slow_close(w, r, detail);
    return;
  }
  if (drop) {
    VCG__ADD(w->stats.packets_dropped, 1);
    VCG__ADD(w->stats.dropped[KIND(p)], 1);
    r->drops++;
    if (!r->drop_since_ms) {
      r->drop_since_ms = now ? now : 1;
      vcg__logf(w->proc->log, VCG_LOG_INFO, "core", r->id,
                "queue full (%zu packets / %zu bytes): dropping media for user %s", r->qp, r->qb,
                r->user);
    } else if (now - r->drop_since_ms > (uint64_t)cc->slow_consumer_timeout) {
      snprintf(detail, sizeof detail, "dropped %llu packets over %llu ms",
               (unsigned long long)r->drops, (unsigned long long)(now - r->drop_since_ms));
      slow_close(w, r, detail);
    }
    send_congestion(sender, now);
    return;
  }
  vcg__packet_ref(p);
  VCG__ADD(w->stats.packets_relayed, 1);
  VCG__ADD(r->t->ts.tx_packets[KIND(p)], 1);
  VCG__ADD(r->t->ts.tx_bytes, p->len);
  if (vcg__session_send(r, p) == VCG_ENOBUFS) {
    /* The transport's own hard cap: a drop like the policy's, and the
     * sender hears of it the same way. */
    VCG__ADD(w->stats.packets_dropped, 1);
    VCG__ADD(w->stats.dropped[KIND(p)], 1);
    r->drops++;
    if (!r->drop_since_ms) r->drop_since_ms = now ? now : 1;
    send_congestion(sender, now);
  }
}

void vcg__relay_fanout(vcg__worker_t *w, vcg__room_t *room, vcg_session_t *sender,
                       uint64_t origin, vcg_packet_t *p) {
  uint64_t now = vcg__now_ms(w);
  vcg__relay_stamp(w, p);
  room->busy++;
  for (uint32_t i = 0; i < room->n; i++) {
    vcg_session_t *r = room->m[i];
    if (!r || r == sender || r->closing || (origin && r->id == origin)) continue;
    enqueue(w, r, sender, p, now);
  }
  room->busy--;
  vcg__room_compact(room, set_slot);
  /* Members that left during the walk may have emptied the room (a
   * sender's own room stays: the sender is still in it). */
  if (!sender) vcg__relay_room_release(w, room);
}

void vcg__relay_publish(vcg__worker_t *w, const char *room, uint64_t session_id,
                        vcg_packet_t *p) {
  if (!w->bus.inst) return;
  vcg__packet_ref(p);
  VCG__ADD(w->stats.bus_out, 1);
  w->bus.bop->publish(w->bus.inst, room, session_id, p);
}
