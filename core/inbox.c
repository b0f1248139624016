/* Bus input: packets from other workers and nodes, onto this loop. */
#include <stdlib.h>
#include <string.h>
#include "inbox.h"
#include "presence.h"
#include "relay.h"

static int bus_fanout(vcg__worker_t *w, const char *room_name, uint64_t origin, vcg_packet_t *p) {
  VCG__ADD(w->stats.bus_in, 1);
  /* Room events (from the server of another node, or a meeting service)
   * come with no origin session; presence decides who gets them. */
  if (!(origin == 0 && p->type == VCG_PT_MEETING && vcg__presence_bus_event(w, room_name, p))) {
    vcg__room_t *room = vcg__room_find(&w->rooms, room_name);
    if (room) vcg__relay_fanout(w, room, NULL, origin, p);
  }
  vcg__packet_unref(p);
  return 0;
}

/* A packet from bytes the bus received: the same size and header checks
 * as a client's packet, stamping nothing. */
static vcg_packet_t *packet_from_bus(vcg__worker_t *w, const uint8_t *data, size_t len) {
  vcg__pw_header_t h;
  /* Any thread: the limit is the worker's atomic copy, not its cfg. */
  if (len > atomic_load_explicit(&w->max_msg, memory_order_relaxed) || vcg__pw_decode(data, len, &h) != 0)
    return NULL;
  return vcg__packet_copy(data, len, &h);
}

int vcg__bus_deliver(vcg_worker_t *b, const char *room, uint64_t origin,
                     const uint8_t *data, size_t len) {
  vcg__worker_t *w = b->core;
  vcg_packet_t *p = packet_from_bus(w, data, len);
  if (!p) {
    VCG__ADD(w->stats.packets_malformed, 1);
    return VCG_EINVAL;
  }
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
  vcg_packet_t *p = packet_from_bus(b->core, data, len);
  if (!p) return VCG_EINVAL;
  return vcg__bus_deliver_packet_ts(b, room, origin, p);
}

void vcg__inbox_drain(vcg__worker_t *w) {
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
