/* Presence, as the videocall.rs relay does it (PROTOCOL.md): a member is
 * announced (PARTICIPANT_JOINED) when it first sends something that is not
 * an RTT probe, to the room on every node; a joiner is told of the members
 * already present, on this node directly and on the others through the bus
 * (each node answers a JOINED from the bus with its own members, addressed
 * to the joiner); PARTICIPANT_LEFT follows a disconnect after a 2 s grace
 * that a rejoin of the same identity cancels, together with the new JOINED.
 * Observers are never announced and are told of nobody.
 *
 * Room events cross the bus as MEETING packets of the system identity,
 * published with session id 0 (NATS: room.{room}.system); PacketWrapper.
 * session_id 0 means the whole room, otherwise the one session the event
 * is for (a roster answer).  Events an external meeting service publishes
 * there are delivered to every member. */
#ifndef VCG_PRESENCE_H
#define VCG_PRESENCE_H
#include "core.h"

#define VCG__LEAVE_GRACE_MS 2000

int vcg__presence_init(vcg__worker_t *w);
/* The first packet of s that is not an RTT probe. */
void vcg__presence_activate(vcg__worker_t *w, vcg_session_t *s);
/* s is going away (still in its room). */
void vcg__presence_gone(vcg__worker_t *w, vcg_session_t *s);
/* A room was created on this node: tell the other nodes it started. */
void vcg__presence_room_started(vcg__worker_t *w, vcg__room_t *room);
/* A room event from the bus (bytes borrowed).  Returns 1 when data was a
 * room event and has been handled, 0 when it is an ordinary packet. */
int vcg__presence_bus_event(vcg__worker_t *w, const char *room, vcg_packet_t *p);
/* The worker stops: announce every LEFT still in its grace now, and stop
 * the timer. */
void vcg__presence_stop(vcg__worker_t *w);
#endif
