/* The admin listener's request reader (core/http.c), read the way
 * core/admin.c reads it: bytes arrive in pieces into a buffer of
 * VCG__HTTP_MAX_HEAD bytes and the whole buffer is parsed again after each
 * piece; the answer is the first non-zero result, -431 when the buffer
 * fills first, nothing (0) when the input ends first.  A request split
 * anywhere must get the same answer, and the same request, as one read:
 * checked for one-byte pieces (inputs up to 256 bytes) and two random
 * splittings of every input. */
#include <string.h>
#include "fuzz.h"
#include "http.h"

typedef struct {
  int rc;
  vcg__http_req_t req;
} answer_t;

static answer_t serve(const uint8_t *d, size_t n, size_t piece, uint64_t seed) {
  static char buf[VCG__HTTP_MAX_HEAD]; /* admin.c's connection buffer */
  answer_t a;
  size_t len = 0, off = 0;
  memset(&a, 0, sizeof a);
  while (off < n) {
    size_t k = fuzz_chunk(&seed, piece, n - off);
    if (k > sizeof buf - len) k = sizeof buf - len; /* one read fills at most the buffer */
    memcpy(buf + len, d + off, k);
    len += k;
    off += k;
    a.rc = vcg__http_parse(buf, len, &a.req);
    if (a.rc == 0 && len < sizeof buf) continue;
    if (a.rc == 0) a.rc = -431;
    if (a.rc > 0) {
      FUZZ_CHECK((size_t)a.rc <= len && buf[a.rc - 1] == '\n', "took %d of %zu bytes", a.rc, len);
      FUZZ_CHECK(a.req.path[0] == '/' && strlen(a.req.path) < sizeof a.req.path, "path");
      FUZZ_CHECK(strcmp(a.req.method, a.req.head ? "HEAD" : "GET") == 0, "method '%s'", a.req.method);
      FUZZ_CHECK(a.req.minor == 0 || a.req.minor == 1, "HTTP/1.%d", a.req.minor);
    } else {
      static const int ok[] = { -400, -405, -413, -414, -431, -505 };
      size_t i = 0;
      while (i < sizeof ok / sizeof ok[0] && ok[i] != a.rc) i++;
      FUZZ_CHECK(i < sizeof ok / sizeof ok[0], "status %d", a.rc);
    }
    return a;
  }
  return a;
}

static void same(const answer_t *whole, const answer_t *split, const char *how) {
  FUZZ_CHECK(whole->rc == split->rc, "one read answers %d, %s %d", whole->rc, how, split->rc);
  if (whole->rc > 0)
    FUZZ_CHECK(memcmp(&whole->req, &split->req, sizeof whole->req) == 0, "%s: another request", how);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint64_t seed = fuzz_fnv(FUZZ_FNV_INIT, data, size) | 1;
  answer_t whole = serve(data, size, 0, seed);
  answer_t a;
  /* Every piece costs a parse of all the bytes so far: one byte at a time
   * only for short inputs, and pieces that grow with the input. */
  if (size <= 256) {
    a = serve(data, size, 1, seed);
    same(&whole, &a, "one byte at a time");
  }
  size_t small = size / 64 > 16 ? size / 64 : 16;
  a = serve(data, size, small, seed);
  same(&whole, &a, "small pieces");
  a = serve(data, size, size / 2 + 1, seed);
  same(&whole, &a, "two or more pieces");
  return 0;
}
