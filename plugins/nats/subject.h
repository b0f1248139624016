/*
 * subject.h -- NATS subjects of the vcgate bus (PROTOCOL.md, "NATS").
 *
 * Packets are published to `room.{room}.{session_id}` and a node subscribes
 * to `room.{room}.*`; room events use `room.{room}.system`.  These helpers
 * are pure (no nats.c, no host) so tests/unit/test_nats_subject.c links
 * subject.c alone.
 */
#ifndef VCG_NATS_SUBJECT_H
#define VCG_NATS_SUBJECT_H

#include <stddef.h>
#include <stdint.h>

/* 1 when room can be embedded in a subject: non-empty, no whitespace or
 * control bytes, no wildcard ('*', '>'), no empty token (leading, trailing
 * or doubled '.').  The core validates room names already; this is the
 * bus's own guard, since a wildcard in a room would subscribe to others'
 * traffic. */
int vcg__nats_room_ok(const char *room);

/* Write `room.{room}.{session_id}` (`room.{room}.system` for session id
 * 0, a room event; `room.{room}.*` when wildcard is set) into buf.  Returns the length, or VCG_ENOBUFS when buf is too
 * small (nothing useful is written then). */
int vcg__nats_subject(char *buf, size_t cap, const char *room,
                      uint64_t session_id, int wildcard);

/* Split a received subject `room.{room}.{token}` into the room (copied,
 * NUL-terminated, into room/cap) and the origin session id: the decimal
 * token, or 0 for `system`.  Returns 0, VCG_EINVAL for a subject of
 * another shape, or VCG_ENOBUFS when the room does not fit. */
int vcg__nats_parse_subject(const char *subject, char *room, size_t cap,
                            uint64_t *session_id);

/* Batches (the bus's `batch` option): every packet a worker publishes to a
 * room in one loop turn, in one NATS message on `vcgate.{room}`, a subject
 * videocall.rs relays do not subscribe to.  The payload is a sequence of
 * records: varint origin session id, varint length, that many bytes of
 * PacketWrapper.  Write the subject into buf; returns its length or
 * VCG_ENOBUFS. */
int vcg__nats_batch_subject(char *buf, size_t cap, const char *room);
/* The room of a batch subject (copied into room/cap): 0, VCG_EINVAL when
 * subject is not `vcgate.{room}`, VCG_ENOBUFS when it does not fit. */
int vcg__nats_parse_batch_subject(const char *subject, char *room, size_t cap);
/* Append one record to a batch buffer (grown as needed, *buf malloc'ed).
 * 0 or VCG_ENOMEM. */
int vcg__nats_batch_append(uint8_t **buf, size_t *len, size_t *cap, uint64_t origin,
                           const uint8_t *data, size_t n);
/* The next record of batch b[*pos..len): 1 with origin, data, n set and
 * *pos advanced; 0 at the end; VCG_EINVAL for a malformed record. */
int vcg__nats_batch_next(const uint8_t *b, size_t len, size_t *pos, uint64_t *origin,
                         const uint8_t **data, size_t *n);

#endif /* VCG_NATS_SUBJECT_H */
