/* The relay: a worker's rooms as the bus sees them, and the fan-out of one
 * packet to the local members of a room under the drop policy (bounded
 * queues, video first, never key exchange or control, slow consumers
 * closed, CONGESTION to the sender). */
#ifndef VCG_RELAY_H
#define VCG_RELAY_H
#include "core.h"

/* Find or create the room `name` of w, joining the bus on creation.
 * NULL on ENOMEM. */
vcg__room_t *vcg__relay_room_get(vcg__worker_t *w, const char *name, int *created);
/* Free room when it has no members and no walk is in progress, leaving the
 * bus.  Returns 1 when it was freed. */
int vcg__relay_room_release(vcg__worker_t *w, vcg__room_t *room);
/* Hand p (borrowed: each recipient gets its own reference) to every local
 * member of room except sender (NULL for bus input) and except the session
 * whose id is origin (0: none). */
void vcg__relay_fanout(vcg__worker_t *w, vcg__room_t *room, vcg_session_t *sender,
                       uint64_t origin, vcg_packet_t *p);
/* Set p's deadline by its class (once, on the worker that made it). */
void vcg__relay_stamp(vcg__worker_t *w, vcg_packet_t *p);
/* r's transport dropped p past its deadline: count it, tell the sender
 * (when it is a local session) and release p's reference. */
void vcg__relay_shed(vcg_session_t *r, vcg_packet_t *p);
/* r's transport takes p from its queue to write it now: 1 when p is past
 * its deadline (shed as above: do not touch it again), else 0 (the relay
 * latency is recorded). */
int vcg__relay_take(vcg_session_t *r, vcg_packet_t *p);
/* The metrics' kind (VCG__K_*) of a packet of this type, media type and size. */
int vcg__packet_kind(int type, int media_type, size_t len);
/* Publish p (borrowed) for the other workers and nodes. */
void vcg__relay_publish(vcg__worker_t *w, const char *room, uint64_t session_id,
                        vcg_packet_t *p);
#endif
