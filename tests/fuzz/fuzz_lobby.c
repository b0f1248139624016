/* The lobby URL parser (core/lobby.c) with a keyring, so /lobby?token=
 * reaches the JWT verifier, and vcg__pct_decode on its own.  The first
 * byte picks what the rest is:
 *   mode & 3 == 0  a request target, as a transport hands it over;
 *   mode & 3 == 1  the claims JSON of a token this harness signs, joined
 *                  as /lobby?token=... (the fuzzer cannot forge an HMAC,
 *                  and the claims checks sit behind it);
 *   mode & 3 == 2  vcg__pct_decode input: capacity byte, space byte, text;
 *   mode & 3 == 3  a request target on a server with no secret.
 * Bit 0x10 shortens the name limits, bit 0x20 sets require_token. */
#include <string.h>
#include "fuzz.h"
#include "lobby.h"
#include "stats.h"
#include "vcgate/plugin.h"

static vcg__lobby_req_t req; /* 13 KB: not on the stack */

static void pct(const uint8_t *d, size_t n) {
  char dst[300];
  if (n < 2) return;
  size_t cap = d[0]; /* 0..255, within dst */
  char space = d[1] ? (char)d[1] : '_'; /* callers pass '_' or ' ', never NUL */
  long r = vcg__pct_decode(dst, cap, (const char *)d + 2, n - 2, space);
  FUZZ_CHECK(r >= -1 && r < (long)(cap ? cap : 1), "pct_decode returned %ld for cap %zu", r, cap);
  if (r < 0) return;
  FUZZ_CHECK(dst[r] == '\0' && strlen(dst) == (size_t)r, "decoded text not terminated at %ld", r);
  FUZZ_CHECK((size_t)r <= n - 2, "decoded %ld bytes from %zu", r, n - 2);
  if (!memchr(d + 2, '%', n - 2)) FUZZ_CHECK((size_t)r == n - 2, "no escapes, yet %ld of %zu", r, n - 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int mode = data[0];
  const uint8_t *d = data + 1;
  size_t n = size - 1;
  if ((mode & 3) == 2) {
    pct(d, n);
    return 0;
  }
  vcg__lobby_conf_t conf = {
    .max_user_length = mode & 0x10 ? 16 : 256,
    .max_room_length = mode & 0x10 ? 8 : 255,
    .keys = (mode & 3) == 3 ? NULL : fuzz_keyring(),
    .issuer = FUZZ_ISSUER,
    .leeway_ms = FUZZ_LEEWAY_MS,
    .now_ms = FUZZ_NOW_MS,
    .require_token = !!(mode & 0x20),
  };
  char *target;
  if ((mode & 3) == 1) {
    char *tok = fuzz_sign(FUZZ_SECRET, NULL, 0, d, n);
    if (!tok) return 0;
    target = malloc(strlen(tok) + 16);
    if (target) strcat(strcpy(target, "/lobby?token="), tok);
    free(tok);
  } else {
    /* Transports hand over a C string: the target ends at a NUL. */
    target = malloc(n + 1);
    if (target) {
      memcpy(target, d, n);
      target[n] = '\0';
    }
  }
  if (!target) return 0;
  int why = -1;
  char msg[128];
  msg[0] = '\0';
  int rc = vcg__lobby_parse(&conf, target, &req, &why, msg, sizeof msg);
  if (rc == 0) {
    size_t ul = strlen(req.user), rl = strlen(req.room);
    FUZZ_CHECK(ul > 0 && ul <= conf.max_user_length, "identity of %zu bytes accepted", ul);
    FUZZ_CHECK(rl > 0 && rl <= conf.max_room_length, "room of %zu bytes accepted", rl);
    FUZZ_CHECK(req.auth_fail == -1, "accepted, yet auth_fail %d", req.auth_fail);
    FUZZ_CHECK(!req.token || (req.token_len == strlen(req.token)), "token length");
  } else {
    FUZZ_CHECK(rc < 0, "lobby_parse returned %d", rc);
    FUZZ_CHECK(why >= VCG_CLOSE_BAD_REQUEST && why <= VCG_CLOSE_METHOD, "why %d", why);
    FUZZ_CHECK(msg[0] && strlen(msg) < sizeof msg, "refused without a reason");
    FUZZ_CHECK(req.auth_fail >= -1 && req.auth_fail < VCG__AF_N, "auth_fail %d", req.auth_fail);
  }
  free(target);
  return 0;
}
