/* Identity and room-name rules (PROTOCOL.md).  Room names become NATS
 * subject tokens, so they are strictly [A-Za-z0-9_-]; identities may also
 * carry '.', '@' and '+'.  Pure functions: unit tested. */
#ifndef VCG_NAMES_H
#define VCG_NAMES_H
#include <stddef.h>
/* 0 when valid, else VCG_EINVAL with a reason in why (static string). */
int vcg__room_name_check(const char *room, size_t maxlen, const char **why);
int vcg__user_name_check(const char *user, size_t maxlen, const char **why);
#endif
