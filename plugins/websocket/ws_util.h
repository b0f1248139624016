/*
 * ws_util.h -- pure helpers of the websocket transport (no lws, no libuv),
 * kept apart so tests/unit/test_ws_util.c can exercise them directly.
 */
#ifndef VCG_WS_UTIL_H
#define VCG_WS_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Longest user or room name the transport forwards to the host; the host
 * applies its own, usually stricter, validation. */
#define VCG__WS_NAME_MAX 256

/* Result of routing an HTTP request path. */
enum vcg__ws_route {
  VCG__WS_ROUTE_LOBBY = 0,     /* /lobby/{user}/{room}: user and room filled */
  VCG__WS_ROUTE_NOT_FOUND = 1, /* no such path: 404 */
  VCG__WS_ROUTE_BAD = 2        /* a lobby path that is malformed: 400 */
};

/* Split "host:port", "[v6addr]:port", ":port" or "*:port" into host (empty
 * string for "any address") and port (1..65535, or 0 to let the kernel
 * choose).  Returns 0 or VCG_EINVAL. */
int vcg__ws_parse_listen(const char *s, char *host, size_t hostlen,
                         uint16_t *port);

/* Route a request path.  libwebsockets has already percent-decoded the path
 * (and collapsed "//" and "/./"), so path is taken as decoded and is NOT
 * decoded a second time (that would turn "%2541" into "A").  On LOBBY the
 * components are copied NUL-terminated into user and room (each of at least
 * VCG__WS_NAME_MAX + 1 bytes), with spaces turned back into '+' (lws
 * decodes an unescaped '+' as a space).  On BAD, *why (if not NULL) names
 * the problem. */
int vcg__ws_route(const char *path, char *user, char *room, const char **why);

/* enum vcg_close_reason -> WebSocket close code (RFC 6455 section 7.4). */
int vcg__ws_close_code(int why);
/* enum vcg_close_reason -> HTTP status for a refused upgrade. */
int vcg__ws_http_status(int why);

#endif
