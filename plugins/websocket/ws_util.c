/*
 * ws_util.c -- pure helpers of the websocket transport: listen address
 * parsing, request routing and the close-reason mappings.
 */
#include "ws_util.h"

#include <stdlib.h>
#include <string.h>

#include <vcgate/plugin.h>

int vcg__ws_parse_listen(const char *s, char *host, size_t hostlen,
                         uint16_t *port) {
  const char *colon, *hb, *he;
  char *end;
  unsigned long v;

  if (s == NULL || *s == '\0' || hostlen == 0)
    return VCG_EINVAL;
  if (s[0] == '[') {
    /* Bracketed IPv6 literal: the port follows the closing bracket. */
    he = strchr(s, ']');
    if (he == NULL || he[1] != ':')
      return VCG_EINVAL;
    hb = s + 1;
    colon = he + 1;
    if (he == hb)
      return VCG_EINVAL;
  } else {
    /* The last colon separates the port; an unbracketed host with another
     * colon would be an ambiguous IPv6 literal, which we refuse. */
    colon = strrchr(s, ':');
    if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
      return VCG_EINVAL;
    hb = s;
    he = colon;
  }
  if ((size_t)(he - hb) >= hostlen)
    return VCG_EINVAL;
  if (colon[1] < '0' || colon[1] > '9')
    return VCG_EINVAL;
  v = strtoul(colon + 1, &end, 10);
  if (*end != '\0' || v > 65535)
    return VCG_EINVAL;
  memcpy(host, hb, (size_t)(he - hb));
  host[he - hb] = '\0';
  if (strcmp(host, "*") == 0)
    host[0] = '\0';
  *port = (uint16_t)v;
  return 0;
}

/* Copy one path component [b, e) into dst, refusing empty or long ones. */
static int ws_component(const char *b, const char *e, char *dst) {
  size_t n = (size_t)(e - b);

  if (n == 0 || n > VCG__WS_NAME_MAX)
    return -1;
  memcpy(dst, b, n);
  dst[n] = '\0';
  return 0;
}

/* libwebsockets turns an unescaped '+' in the path into a space (form
 * decoding applied to the whole URI), so "alice+1@x" arrives as
 * "alice 1@x".  A space is never valid in a user or room name, so turning
 * spaces back into '+' restores the name the client sent; a client that
 * sent "%20" gets '+' instead, which it could have sent itself. */
static void ws_unplus(char *s) {
  for (; *s; s++)
    if (*s == ' ')
      *s = '+';
}

int vcg__ws_route(const char *path, char *user, char *room, const char **why) {
  static const char prefix[] = "/lobby";
  const char *u, *slash, *r;
  const char *dummy;

  if (why == NULL)
    why = &dummy;
  *why = NULL;
  if (path == NULL || strncmp(path, prefix, sizeof(prefix) - 1) != 0)
    return VCG__WS_ROUTE_NOT_FOUND;
  u = path + sizeof(prefix) - 1;
  if (*u == '\0') {
    *why = "expected /lobby/{user}/{room}";
    return VCG__WS_ROUTE_BAD;
  }
  if (*u != '/')
    return VCG__WS_ROUTE_NOT_FOUND; /* "/lobbyfoo" is another path */
  u++;
  slash = strchr(u, '/');
  if (slash == NULL) {
    *why = "expected /lobby/{user}/{room}";
    return VCG__WS_ROUTE_BAD;
  }
  r = slash + 1;
  if (strchr(r, '/') != NULL) {
    *why = "expected /lobby/{user}/{room}: too many path components";
    return VCG__WS_ROUTE_BAD;
  }
  if (ws_component(u, slash, user) != 0) {
    *why = slash == u ? "empty user name" : "user name too long";
    return VCG__WS_ROUTE_BAD;
  }
  if (ws_component(r, r + strlen(r), room) != 0) {
    *why = *r == '\0' ? "empty room name" : "room name too long";
    return VCG__WS_ROUTE_BAD;
  }
  ws_unplus(user);
  ws_unplus(room);
  return VCG__WS_ROUTE_LOBBY;
}

int vcg__ws_close_code(int why) {
  switch (why) {
  case VCG_CLOSE_NORMAL:      return 1000;
  case VCG_CLOSE_BAD_REQUEST:
  case VCG_CLOSE_FORBIDDEN:
  case VCG_CLOSE_SLOW:        return 1008;
  case VCG_CLOSE_TOO_BIG:     return 1009;
  case VCG_CLOSE_LIMIT:
  case VCG_CLOSE_OVERLOAD:    return 1013;
  case VCG_CLOSE_SHUTDOWN:
  case VCG_CLOSE_IDLE:        return 1001;
  case VCG_CLOSE_NOT_FOUND:   return 1008;
  case VCG_CLOSE_INTERNAL:
  default:                    return 1011;
  }
}

int vcg__ws_http_status(int why) {
  switch (why) {
  case VCG_CLOSE_BAD_REQUEST: return 400;
  case VCG_CLOSE_FORBIDDEN:   return 403;
  case VCG_CLOSE_NOT_FOUND:   return 404;
  case VCG_CLOSE_TOO_BIG:     return 413;
  case VCG_CLOSE_LIMIT:       return 429;
  case VCG_CLOSE_OVERLOAD:
  case VCG_CLOSE_SHUTDOWN:    return 503;
  case VCG_CLOSE_NORMAL:
  case VCG_CLOSE_SLOW:
  case VCG_CLOSE_IDLE:
  case VCG_CLOSE_INTERNAL:
  default:                    return 500;
  }
}
