/* The lobby: the one grammar of the URL a client opens to join a room,
 * for every transport (PROTOCOL.md, "Connecting").
 *
 *   /lobby/{user}/{room}     legacy: identity and room from the path
 *   /lobby?token=JWT         token: identity, room and rights from an
 *                            HS256 token (core/jwt.c)
 *
 * Transports hand the host the request target exactly as received (path
 * and query, not decoded); vcg__lobby_parse() splits and percent-decodes
 * it, validates identity and room (names.c) and answers a refusal with an
 * enum vcg_close_reason and a short text, which every transport turns into
 * the same HTTP status through plugin.h's table.  Pure: no loop, no
 * globals, so tests/unit/test_lobby.c and the fuzzer call it directly. */
#ifndef VCG_LOBBY_H
#define VCG_LOBBY_H
#include <stddef.h>
#include <stdint.h>
#include "jwt.h"

/* Longest identity or room the lobby copies (core.max_user_length's and
 * max_room_length's upper bounds). */
#define VCG__LOBBY_NAME_MAX 4096
/* Longest token accepted (a videocall.rs token is a few hundred bytes). */
#define VCG__LOBBY_TOKEN_MAX 4096

/* What the lobby needs of the configuration. */
typedef struct vcg__lobby_conf {
  size_t max_user_length, max_room_length;
  const vcg__jwt_keys_t *keys;  /* NULL or empty: no token can be verified */
  const char *issuer;           /* the token's required iss */
  int64_t leeway_ms;
  int64_t now_ms;               /* wall clock */
  int require_token;            /* the legacy path answers 410 Gone */
} vcg__lobby_conf_t;

/* A parsed, validated join request. */
typedef struct vcg__lobby_req {
  char user[VCG__LOBBY_NAME_MAX + 1];   /* identity, validated */
  char room[VCG__LOBBY_NAME_MAX + 1];   /* room, validated */
  char display_name[VCG__JWT_DISPLAY_MAX + 1]; /* the token's, or "" */
  int observer, is_host;                /* from the token */
  const char *token;                    /* in token_buf; NULL on the legacy path */
  size_t token_len;
  char token_buf[VCG__LOBBY_TOKEN_MAX + 1];
  vcg__jwt_claims_t claims;             /* scratch for the token's claims */
  int auth_fail;                        /* a refused token: VCG__AF_* (stats.h), else -1 */
} vcg__lobby_req_t;

/* Parse target: the legacy identity and room, or a token, verified
 * (jwt.c) and turned into identity, room and rights.  Returns 0, or a
 * negative code with *why (enum vcg_close_reason) and a reason in msg:
 * NOT_FOUND for a path that is not the lobby, BAD_REQUEST for a malformed
 * lobby URL or name, FORBIDDEN for the reserved identity or a token that
 * does not verify or grants no access, UNAUTHORIZED for an expired token,
 * GONE for the legacy path when tokens are required, INTERNAL ("server
 * misconfigured") for a token when no secret is configured. */
int vcg__lobby_parse(const vcg__lobby_conf_t *conf, const char *target,
                     vcg__lobby_req_t *req, int *why, char *msg, size_t msglen);

/* Percent-decode src[0..n) into dst (cap bytes, NUL-terminated).  `space`
 * is what a decoded space becomes (the legacy path turns it into '_', as
 * videocall.rs does).  Returns the decoded length, or -1 for a '%' not
 * followed by two hex digits, a decoded NUL, or a result over cap - 1. */
long vcg__pct_decode(char *dst, size_t cap, const char *src, size_t n, char space);
#endif
