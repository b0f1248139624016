/* The room-token verifier (core/jwt.c) alone, with a two-secret keyring.
 * The first byte picks what the rest is:
 *   mode & 1 == 0  a token, verbatim (seeds: real tokens);
 *   mode & 1 == 1  "HEADER\nCLAIMS" or just "CLAIMS" (raw JSON), which this
 *                  harness encodes and signs, with the newer secret or
 *                  (mode & 2) the older one, so the fuzzer's JSON gets past
 *                  the signature to the header and claim checks.
 * Whatever the token, a refusal names one of the reasons, a signed token
 * is never refused for its signature, and an accepted one is in date. */
#define _GNU_SOURCE /* memmem */
#include <string.h>
#include "fuzz.h"
#include "jwt.h"
#include "vcgate/plugin.h"

static vcg__jwt_claims_t claims; /* 8 KB: not on the stack */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int mode = data[0];
  const uint8_t *d = data + 1;
  size_t n = size - 1;
  char *tok = NULL;
  const char *t = (const char *)d;
  size_t tl = n;
  if (mode & 1) {
    const uint8_t *nl = memchr(d, '\n', n);
    tok = nl ? fuzz_sign(mode & 2 ? FUZZ_SECRET_OLD : FUZZ_SECRET, d, (size_t)(nl - d), nl + 1,
                         n - (size_t)(nl + 1 - d))
             : fuzz_sign(mode & 2 ? FUZZ_SECRET_OLD : FUZZ_SECRET, NULL, 0, d, n);
    if (!tok) return 0;
    t = tok;
    tl = strlen(tok);
  }
  int why = -1;
  char msg[128];
  msg[0] = '\0';
  int rc = vcg__jwt_verify(fuzz_keyring(), FUZZ_ISSUER, FUZZ_LEEWAY_MS, FUZZ_NOW_MS, t, tl, &claims, &why,
                           msg, sizeof msg);
  if (rc == 0) {
    FUZZ_CHECK(claims.fail == VCG__JWT_OK, "accepted with fail %d", claims.fail);
    FUZZ_CHECK(strlen(claims.sub) <= VCG__JWT_CLAIM_MAX && strlen(claims.room) <= VCG__JWT_CLAIM_MAX &&
               strlen(claims.display_name) <= VCG__JWT_DISPLAY_MAX, "claims too long");
    FUZZ_CHECK(claims.exp * 1000 + FUZZ_LEEWAY_MS > FUZZ_NOW_MS, "accepted an expired token");
    FUZZ_CHECK(claims.nbf * 1000 - FUZZ_LEEWAY_MS <= FUZZ_NOW_MS, "accepted a token not valid yet");
  } else {
    FUZZ_CHECK(rc == VCG_EPERM || rc == VCG_EACCES, "verify returned %d", rc);
    FUZZ_CHECK(claims.fail >= VCG__JWT_EXPIRED && claims.fail <= VCG__JWT_MALFORMED, "fail %d", claims.fail);
    FUZZ_CHECK((why == VCG_CLOSE_UNAUTHORIZED) == (claims.fail == VCG__JWT_EXPIRED) &&
               (why == VCG_CLOSE_UNAUTHORIZED || why == VCG_CLOSE_FORBIDDEN), "why %d for fail %d",
               why, claims.fail);
    FUZZ_CHECK(msg[0] != '\0', "refused without a reason");
    FUZZ_CHECK(!tok || claims.fail != VCG__JWT_SIGNATURE, "a correctly signed token refused for its signature");
    /* The reason must never echo the token (it is a credential). */
    FUZZ_CHECK(tl < 16 || !memmem(msg, strlen(msg), t + tl - 16, 16), "the reason contains the token");
  }
  free(tok);
  return 0;
}
