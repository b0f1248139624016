/*
 * subject.c -- NATS subjects of the vcgate bus (see subject.h).
 */
#include "subject.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <vcgate/plugin.h>

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
