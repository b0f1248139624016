/* What the fuzz harnesses share: the libFuzzer entry points, a check that
 * aborts (so libFuzzer, or replay.c's main, reports the input), and
 * per-input randomness for chunkings.  Each harness is one fuzz_NAME.c
 * built twice: with clang and libFuzzer (`make fuzz`), and with the
 * configured compiler and replay.c (`make -C tests/fuzz fuzz-replay`). */
#ifndef VCG_FUZZ_H
#define VCG_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A disagreement or a broken invariant: a finding.  abort() makes it a
 * crash for libFuzzer, which saves the input. */
#define FUZZ_CHECK(cond, ...)                                                   \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                             \
      fputc('\n', stderr);                                                      \
      abort();                                                                  \
    }                                                                           \
  } while (0)

/* FNV-1a, to seed fuzz_rand from the input (the same input always gets
 * the same chunking, so a finding reproduces) and to compare payloads. */
#define FUZZ_FNV_INIT 0xcbf29ce484222325ull
static inline uint64_t fuzz_fnv(uint64_t h, const uint8_t *d, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 0x100000001b3ull;
  return h;
}

/* xorshift64*; *s must not be 0. */
static inline uint64_t fuzz_rand(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545f4914f6cdd1dull;
}

/* A piece size for splitting `left` bytes: 0 asks for everything at once
 * (one read), 1 for one byte at a time, otherwise up to `max` bytes. */
static inline size_t fuzz_chunk(uint64_t *s, size_t max, size_t left) {
  size_t k = max == 0 ? left : 1 + (size_t)(fuzz_rand(s) % max);
  return k < left ? k : left;
}

/* The room-token keyring every token harness uses: two secrets (rotation:
 * the second is the one the seed tokens are signed with), the issuer and
 * a fixed wall clock, so the seeds stay valid. */
#define FUZZ_SECRET_OLD "fuzz-old-secret"
#define FUZZ_SECRET "fuzz-secret"
#define FUZZ_ISSUER "videocall-meeting-backend"
#define FUZZ_NOW_MS 1750000000000LL /* 2025-06-15 */
#define FUZZ_LEEWAY_MS 60000
struct vcg__jwt_keys;
/* The keyring with both secrets, made on first use (aborts on ENOMEM). */
const struct vcg__jwt_keys *fuzz_keyring(void);
/* A token made of a header and claims given as raw JSON (base64url-encoded
 * here) and signed HS256 with key, so the fuzzer mutates the JSON and the
 * claim checks behind the signature see it.  hdr NULL: the usual header.
 * Returns a malloc'ed NUL-terminated token, NULL on ENOMEM. */
char *fuzz_sign(const char *key, const uint8_t *hdr, size_t hlen, const uint8_t *claims,
                size_t clen);
#endif
