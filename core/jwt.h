/* Room tokens: HS256 JSON Web Tokens as videocall.rs's meeting service
 * issues them (PROTOCOL.md, "Connecting").
 *
 * Verification is deliberately narrow: the header must say alg HS256 (no
 * "none", no other algorithm, no key id games), the signature is an
 * HMAC-SHA256 computed by GnuTLS and compared in constant time against
 * every configured secret (several, so a secret can be rotated without
 * refusing live clients), the JSON is parsed by jansson, and every claim
 * has the type the issuer writes.  Names in the claims are checked by the
 * lobby (core/lobby.c) against the same rules as the legacy path.  Pure
 * (time is passed in): tests/unit/test_jwt.c and tests/fuzz call it. */
#ifndef VCG_JWT_H
#define VCG_JWT_H
#include <stddef.h>
#include <stdint.h>

#define VCG__JWT_MAX 4096            /* longest token accepted */
#define VCG__JWT_CLAIM_MAX 4096      /* longest sub / room copied */
#define VCG__JWT_DISPLAY_MAX 256     /* longest display_name copied */

/* The secrets tokens may be signed with (HMAC keys, raw bytes). */
typedef struct vcg__jwt_keys {
  size_t n;
  uint8_t **key;
  size_t *len;
} vcg__jwt_keys_t;

/* Why a token was refused (the metrics' reason label). */
enum { VCG__JWT_OK = -1, VCG__JWT_EXPIRED = 0, VCG__JWT_SIGNATURE, VCG__JWT_ISSUER,
       VCG__JWT_MALFORMED };

typedef struct vcg__jwt_claims {
  char sub[VCG__JWT_CLAIM_MAX + 1];
  char room[VCG__JWT_CLAIM_MAX + 1];
  char display_name[VCG__JWT_DISPLAY_MAX + 1]; /* "" when absent */
  int room_join, is_host, observer;
  int64_t exp, nbf;                /* seconds; nbf 0 when absent */
  int fail;                        /* VCG__JWT_*: why verify refused it */
} vcg__jwt_claims_t;

/* Add a secret (copied).  0 or VCG_ENOMEM. */
int vcg__jwt_keys_add(vcg__jwt_keys_t *k, const void *secret, size_t len);
/* Erase and free every secret. */
void vcg__jwt_keys_free(vcg__jwt_keys_t *k);

/* Verify token[0..len) and fill *c.  now_ms is the wall clock, leeway_ms
 * the allowed clock skew for exp and nbf.  Returns 0, or a negative code
 * with *why (enum vcg_close_reason: UNAUTHORIZED for an expired or not yet
 * valid token, FORBIDDEN for anything else) and a reason in msg that never
 * contains the token. */
int vcg__jwt_verify(const vcg__jwt_keys_t *keys, const char *issuer, int64_t leeway_ms,
                    int64_t now_ms, const char *token, size_t len, vcg__jwt_claims_t *c,
                    int *why, char *msg, size_t msglen);

/* Make a token for c signed with key (for `vcgate --token` and tests):
 * header {"alg":"HS256","typ":"JWT"}, claims sub, room, room_join,
 * is_host, observer, display_name, iss, iat, exp = now_s + ttl_s.
 * *out is malloc'ed.  0 or a negative code. */
int vcg__jwt_mint(const uint8_t *key, size_t keylen, const char *issuer,
                  const vcg__jwt_claims_t *c, int64_t now_s, int64_t ttl_s, char **out);
#endif
