/*
 * subject.c -- NATS subjects of the vcgate bus (see subject.h).
 */
#include "subject.h"

#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <vcgate/plugin.h>

#include "varint.h"

#define SUBJECT_PREFIX "room."
#define SUBJECT_PREFIX_LEN 5

int vcg__nats_room_ok(const char *room) {
  if (room == NULL || *room == '\0' || *room == '.') return 0;
  char prev = '\0';
  for (const unsigned char *c = (const unsigned char *)room; *c; c++) {
    if (*c <= ' ' || *c == 0x7f || *c == '*' || *c == '>') return 0;
    if (*c == '.' && prev == '.') return 0;
    prev = (char)*c;
  }
  return prev != '.';
}

int vcg__nats_subject(char *buf, size_t cap, const char *room,
                      uint64_t session_id, int wildcard) {
  int n = wildcard ? snprintf(buf, cap, SUBJECT_PREFIX "%s.*", room)
          : session_id == 0 ? snprintf(buf, cap, SUBJECT_PREFIX "%s.system", room)
                            : snprintf(buf, cap, SUBJECT_PREFIX "%s.%" PRIu64, room,
                                       session_id);
  if (n < 0 || (size_t)n >= cap) return VCG_ENOBUFS;
  return n;
}

int vcg__nats_parse_subject(const char *subject, char *room, size_t cap,
                            uint64_t *session_id) {
  if (strncmp(subject, SUBJECT_PREFIX, SUBJECT_PREFIX_LEN) != 0)
    return VCG_EINVAL;
  const char *start = subject + SUBJECT_PREFIX_LEN;
  /* The last token is the session; the room is everything before it, so a
   * room containing dots still parses. */
  const char *dot = strrchr(start, '.');
  if (dot == NULL || dot == start || dot[1] == '\0') return VCG_EINVAL;
  const char *tok = dot + 1;
  uint64_t sid = 0;
  if (strcmp(tok, "system") != 0) {
    for (const char *c = tok; *c; c++) {
      if (*c < '0' || *c > '9') return VCG_EINVAL;
      uint64_t d = (uint64_t)(*c - '0');
      if (sid > (UINT64_MAX - d) / 10) return VCG_EINVAL; /* overflow */
      sid = sid * 10 + d;
    }
  }
  size_t len = (size_t)(dot - start);
  if (len + 1 > cap) return VCG_ENOBUFS;
  memcpy(room, start, len);
  room[len] = '\0';
  *session_id = sid;
  return 0;
}

#define BATCH_PREFIX "vcgate."
#define BATCH_PREFIX_LEN 7

int vcg__nats_batch_subject(char *buf, size_t cap, const char *room) {
  int n = snprintf(buf, cap, BATCH_PREFIX "%s", room);
  if (n < 0 || (size_t)n >= cap) return VCG_ENOBUFS;
  return n;
}

int vcg__nats_parse_batch_subject(const char *subject, char *room, size_t cap) {
  if (strncmp(subject, BATCH_PREFIX, BATCH_PREFIX_LEN) != 0) return VCG_EINVAL;
  const char *r = subject + BATCH_PREFIX_LEN;
  size_t len = strlen(r);
  if (len == 0) return VCG_EINVAL;
  if (len + 1 > cap) return VCG_ENOBUFS;
  memcpy(room, r, len + 1);
  return 0;
}


int vcg__nats_batch_append(uint8_t **buf, size_t *len, size_t *cap, uint64_t origin,
                           const uint8_t *data, size_t n) {
  size_t need = *len + 20 + n;
  if (need > *cap) {
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    uint8_t *nb = realloc(*buf, c);
    if (!nb) return VCG_ENOMEM;
    *buf = nb;
    *cap = c;
  }
  *len += vcg_varint_put(*buf + *len, origin);
  *len += vcg_varint_put(*buf + *len, n);
  memcpy(*buf + *len, data, n);
  *len += n;
  return 0;
}

int vcg__nats_batch_next(const uint8_t *b, size_t len, size_t *pos, uint64_t *origin,
                         const uint8_t **data, size_t *n) {
  if (*pos == len) return 0;
  uint64_t o, l;
  size_t k = vcg_varint_get(b + *pos, len - *pos, &o);
  if (!k) return VCG_EINVAL;
  size_t m = vcg_varint_get(b + *pos + k, len - *pos - k, &l);
  if (!m || l > len - *pos - k - m) return VCG_EINVAL;
  *origin = o;
  *data = b + *pos + k + m;
  *n = (size_t)l;
  *pos += k + m + (size_t)l;
  return 1;
}
