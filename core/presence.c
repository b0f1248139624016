/* Presence: PARTICIPANT_JOINED / PARTICIPANT_LEFT and the member list
 * (see presence.h for the rules and how events cross the bus). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "presence.h"
#include "relay.h"

/* A PARTICIPANT_LEFT waiting out its grace.  The worker keeps them in one
 * FIFO: every entry waits the same time, so the head is always due first. */
typedef struct vcg__leave {
  struct vcg__leave *next;
  uint64_t due_ms, session_id;
  char *room, *user, *display;
} vcg__leave_t;

static void leave_free(vcg__leave_t *l) {
  free(l->room);
  free(l->user);
  free(l->display);
  free(l);
}

static vcg_packet_t *member_event(int type, const char *room, const char *user,
                                  const char *display, uint64_t sid, uint64_t to) {
  char msg[VCG__JWT_DISPLAY_MAX + 64];
  snprintf(msg, sizeof msg, "%s has %s the meeting", display && *display ? display : user,
           type == VCG__EV_PARTICIPANT_JOINED ? "joined" : "left");
  vcg__event_t e = { .type = type, .room = room, .target = user, .display_name = display,
                     .message = msg, .session_id = sid, .to = to };
  return vcg__packet_event(&e);
}

static vcg_packet_t *joined_of(const vcg_session_t *m, uint64_t to) {
  return member_event(VCG__EV_PARTICIPANT_JOINED, m->room->name, m->user, m->display_name, m->id, to);
}

/* Hand p (one reference, consumed) to the local room and the bus.
 * `except`: a local member not to tell (the joiner itself). */
static void broadcast(vcg__worker_t *w, const char *room_name, vcg_session_t *except,
                      vcg_packet_t *p) {
  if (!p) return;
  vcg__room_t *room = vcg__room_find(&w->rooms, room_name);
  VCG__ADD(w->stats.events_sent, 1);
  if (room) vcg__relay_fanout(w, room, except, 0, p);
  vcg__relay_publish(w, room_name, 0, p);
  vcg__packet_unref(p);
}

static int announced(const vcg_session_t *m) {
  return m && m->active && !m->observer && !m->closing;
}

static void on_leave_timer(uv_timer_t *t);

static void arm(vcg__worker_t *w) {
  if (!w->leaves_head) return;
  uint64_t now = vcg__now_ms(w), due = w->leaves_head->due_ms;
  uv_timer_start(&w->leave_timer, on_leave_timer, due > now ? due - now : 0, 0);
}

static void announce_left(vcg__worker_t *w, vcg__leave_t *l) {
  broadcast(w, l->room, NULL,
            member_event(VCG__EV_PARTICIPANT_LEFT, l->room, l->user, l->display, l->session_id, 0));
}

static void on_leave_timer(uv_timer_t *t) {
  vcg__worker_t *w = t->data;
  uint64_t now = vcg__now_ms(w);
  while (w->leaves_head && w->leaves_head->due_ms <= now) {
    vcg__leave_t *l = w->leaves_head;
    w->leaves_head = l->next;
    if (!w->leaves_head) w->leaves_tail = NULL;
    announce_left(w, l);
    leave_free(l);
  }
  arm(w);
}

int vcg__presence_init(vcg__worker_t *w) {
  w->leaves_head = w->leaves_tail = NULL;
  int rc = uv_timer_init(&w->loop, &w->leave_timer);
  w->leave_timer.data = w;
  return rc;
}

/* Cancel a LEFT in grace for user in room (a rejoin).  Returns 1 if one was. */
static int cancel_leave(vcg__worker_t *w, const char *room, const char *user) {
  for (vcg__leave_t **pp = &w->leaves_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
    vcg__leave_t *l = *pp;
    if (strcmp(l->room, room) != 0 || strcmp(l->user, user) != 0) continue;
    *pp = l->next;
    if (w->leaves_tail == l) w->leaves_tail = prev;
    leave_free(l);
    if (!w->leaves_head) uv_timer_stop(&w->leave_timer);
    return 1;
  }
  return 0;
}

/* Tell `to` (a session on this node or, through the bus, on another) of
 * every announced local member of room except `skip`. */
static void roster(vcg__worker_t *w, vcg__room_t *room, vcg_session_t *local_to, uint64_t to,
                   const vcg_session_t *skip) {
  for (uint32_t i = 0; i < room->n; i++) {
    vcg_session_t *m = room->m[i];
    if (m == skip || !announced(m)) continue;
    vcg_packet_t *p = joined_of(m, to);
    if (!p) continue;
    VCG__ADD(w->stats.events_sent, 1);
    if (local_to) vcg__session_send(local_to, p);
    else {
      vcg__relay_publish(w, room->name, 0, p);
      vcg__packet_unref(p);
    }
  }
}

void vcg__presence_activate(vcg__worker_t *w, vcg_session_t *s) {
  if (s->active || s->observer) return;
  s->active = 1;
  vcg__room_t *room = s->room;
  /* The members here, directly; the other nodes answer the JOINED below
   * (or, for a rejoin, the request addressed to the joiner itself). */
  roster(w, room, s, s->id, s);
  if (cancel_leave(w, room->name, s->user)) {
    VCG__LOG(w, VCG_LOG_DEBUG, s->id, "user %s rejoined %s within the grace: no LEFT/JOINED",
             s->user, room->name);
    vcg_packet_t *req = joined_of(s, s->id);
    if (req) {
      vcg__relay_publish(w, room->name, 0, req);
      vcg__packet_unref(req);
    }
    return;
  }
  broadcast(w, room->name, s, joined_of(s, 0));
}

void vcg__presence_gone(vcg__worker_t *w, vcg_session_t *s) {
  if (!s->active || s->observer) return;
  vcg__leave_t *l = calloc(1, sizeof *l);
  if (!l || !(l->room = strdup(s->room->name)) || !(l->user = strdup(s->user)) ||
      !(l->display = strdup(s->display_name))) {
    if (l) leave_free(l);
    return;
  }
  l->session_id = s->id;
  l->due_ms = vcg__now_ms(w) + VCG__LEAVE_GRACE_MS;
  if (w->state >= VCG__STOPPING) { /* no grace when the node goes away */
    announce_left(w, l);
    leave_free(l);
    return;
  }
  if (w->leaves_tail) w->leaves_tail->next = l; else w->leaves_head = l;
  w->leaves_tail = l;
  if (w->leaves_head == l) arm(w);
}

void vcg__presence_room_started(vcg__worker_t *w, vcg__room_t *room) {
  vcg__event_t e = { .type = VCG__EV_MEETING_STARTED, .room = room->name,
                     .start_ms = room->start_ms, .creator = room->creator };
  vcg_packet_t *p = vcg__packet_event(&e);
  if (!p) return;
  vcg__relay_publish(w, room->name, 0, p);
  vcg__packet_unref(p);
}

int vcg__presence_bus_event(vcg__worker_t *w, const char *room_name, vcg_packet_t *p) {
  int type;
  uint64_t start_ms, sid, to;
  char target[VCG__JWT_CLAIM_MAX + 1];
  if (vcg__event_parse(p->data, p->len, &type, &start_ms, &sid, &to, target, sizeof target) != 0)
    return 0;
  vcg__room_t *room = vcg__room_find(&w->rooms, room_name);
  if (to) {
    if (type == VCG__EV_PARTICIPANT_JOINED && to == sid) {
      /* A rejoiner on another node asks who is here. */
      if (room) roster(w, room, NULL, to, NULL);
      return 1;
    }
    vcg_session_t *s = vcg__session_find(w, to);
    if (s && room && s->room == room && !s->closing) {
      vcg__packet_ref(p);
      vcg__session_send(s, p);
    }
    return 1;
  }
  switch (type) {
  case VCG__EV_MEETING_STARTED:
    /* Every node's room has its own start; members see the earliest. */
    if (room && start_ms && start_ms < room->start_ms) room->start_ms = start_ms;
    return 1;
  case VCG__EV_PARTICIPANT_JOINED:
    /* A member rejoining on another node cancels its LEFT here. */
    if (target[0]) cancel_leave(w, room_name, target);
    if (room) {
      vcg__relay_fanout(w, room, NULL, 0, p);
      room = vcg__room_find(&w->rooms, room_name); /* the walk may have freed it */
      if (room) roster(w, room, NULL, sid, NULL);
    }
    return 1;
  default:
    /* PARTICIPANT_LEFT from another node, and whatever a meeting service
     * publishes (MEETING_ACTIVATED, PARTICIPANT_ADMITTED, ...): to all. */
    if (room) vcg__relay_fanout(w, room, NULL, 0, p);
    return 1;
  }
}

void vcg__presence_stop(vcg__worker_t *w) {
  while (w->leaves_head) {
    vcg__leave_t *l = w->leaves_head;
    w->leaves_head = l->next;
    announce_left(w, l);
    leave_free(l);
  }
  w->leaves_tail = NULL;
  uv_timer_stop(&w->leave_timer);
}
