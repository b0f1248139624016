/* Packets: one immutable, reference-counted buffer per relayed message.
 *
 * A packet is made once when it enters the core (from a transport or the
 * bus) and every recipient gets a reference, never a copy.  The reference
 * count is atomic because references travel between worker threads (the
 * in-process bus) and plugin threads. */
#ifndef VCG_PACKET_H
#define VCG_PACKET_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "vcgate/plugin.h"

struct vcg_packet {
  atomic_uint refs;
  uint32_t len;
  int32_t type;        /* PacketWrapper.packet_type */
  int32_t media_type;  /* MediaPacket.media_type for MEDIA, else -1 */
  uint64_t session_id; /* PacketWrapper.session_id after stamping */
  uint64_t deadline_ms;/* loop time after which it is not sent; UINT64_MAX:
                          never dropped (host->packet_deadline) */
  uint64_t arrival_ms; /* loop time it entered the relay (0: server-made) */
  uint8_t data[];
};

/* What the header decoder learned of a PacketWrapper.  The pointers are
 * into the decoded bytes (valid as long as they are). */
typedef struct vcg__pw_header {
  int type;
  int media_type;      /* -1 unless MEDIA with a readable inner type */
  uint64_t session_id;
  const uint8_t *user; /* user_id (field 2, the last one), NULL if absent */
  size_t user_len;
  const uint8_t *data; /* data (field 3), NULL if absent */
  size_t data_len;
} vcg__pw_header_t;

/* Decode and validate a PacketWrapper (protobuf-c).  Returns 0, or
 * VCG_EINVAL for bytes that are not a valid PacketWrapper. */
int vcg__pw_decode(const uint8_t *data, size_t len, vcg__pw_header_t *h);
/* Make a packet from inbound bytes, stamped with the sender's id: when the
 * header's session_id is not stamp_id (0, or another member's id a client
 * put there), field 4 is appended (protobuf's last-one-wins rule makes
 * that equal to re-encoding, without re-encoding).  refs = 1. */
vcg_packet_t *vcg__packet_from_wire(const uint8_t *data, size_t len,
                                    const vcg__pw_header_t *h, uint64_t stamp_id);
/* A packet holding exactly these bytes (bus input, already stamped). */
vcg_packet_t *vcg__packet_copy(const uint8_t *data, size_t len,
                               const vcg__pw_header_t *h);
void vcg__packet_ref(vcg_packet_t *p);
void vcg__packet_unref(vcg_packet_t *p);

#define VCG_SYSTEM_USER "system-&^%$#@!"
/* Server-made packets (protobuf-c encoded), refs = 1; NULL on ENOMEM. */
vcg_packet_t *vcg__packet_session_assigned(uint64_t session_id);
/* MeetingPacket event types (PROTOCOL.md). */
enum {
  VCG__EV_MEETING_STARTED = 1, VCG__EV_MEETING_ENDED = 2, VCG__EV_PARTICIPANT_JOINED = 3,
  VCG__EV_PARTICIPANT_LEFT = 4
};
/* A room event the server makes: a MEETING PacketWrapper from the system
 * identity.  Unset (NULL / 0) fields are omitted. */
typedef struct vcg__event {
  int type;
  const char *room;
  uint64_t start_ms;
  const char *creator;
  const char *target;        /* target_user_id: whom the event is about */
  const char *display_name;
  const char *message;
  uint64_t session_id;       /* MeetingPacket.session_id: the member's */
  uint64_t to;               /* PacketWrapper.session_id: 0 for the whole
                                room, else the one session it is for */
} vcg__event_t;
vcg_packet_t *vcg__packet_event(const vcg__event_t *e);
/* The parts of a room event the relay acts on, from a MEETING packet made
 * by the system identity (bus input).  0, or VCG_EINVAL when p is not
 * one.  target is copied into the caller's buffer (tcap bytes). */
int vcg__event_parse(const uint8_t *data, size_t len, int *type, uint64_t *start_ms,
                     uint64_t *session_id, uint64_t *to, char *target, size_t tcap);
vcg_packet_t *vcg__packet_congestion(uint64_t session_id);
#endif
