#include "names.h"
#include <string.h>
#include "vcgate/plugin.h"
#include "packet.h"

static int is_alnum_(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-';
}

int vcg__room_name_check(const char *room, size_t maxlen, const char **why) {
  size_t n = room ? strlen(room) : 0;
  if (n == 0) { *why = "room name is empty"; return VCG_EINVAL; }
  if (n > maxlen) { *why = "room name is too long"; return VCG_EINVAL; }
  for (size_t i = 0; i < n; i++)
    if (!is_alnum_((unsigned char)room[i])) {
      *why = "room name may contain only A-Z a-z 0-9 _ -";
      return VCG_EINVAL;
    }
  return 0;
}

int vcg__user_name_check(const char *user, size_t maxlen, const char **why) {
  size_t n = user ? strlen(user) : 0;
  if (n == 0) { *why = "identity is empty"; return VCG_EINVAL; }
  if (n > maxlen) { *why = "identity is too long"; return VCG_EINVAL; }
  if (strcmp(user, VCG_SYSTEM_USER) == 0) { *why = "identity is reserved"; return VCG_EPERM; }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)user[i];
    if (!is_alnum_(c) && c != '.' && c != '@' && c != '+') {
      *why = "identity may contain only A-Z a-z 0-9 _ - . @ +";
      return VCG_EINVAL;
    }
  }
  return 0;
}
