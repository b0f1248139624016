/* The token harnesses' keyring and signer (see fuzz.h). */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <string.h>
#include "fuzz.h"
#include "jwt.h"

const vcg__jwt_keys_t *fuzz_keyring(void) {
  static vcg__jwt_keys_t k; /* lives as long as the process */
  if (k.n == 0 && (vcg__jwt_keys_add(&k, FUZZ_SECRET_OLD, strlen(FUZZ_SECRET_OLD)) != 0 ||
                   vcg__jwt_keys_add(&k, FUZZ_SECRET, strlen(FUZZ_SECRET)) != 0))
    abort();
  return &k;
}

/* Append base64url (no padding) of d[0..n) at out; returns its length. */
static size_t b64url(char *out, const uint8_t *d, size_t n) {
  gnutls_datum_t in = { (unsigned char *)d, (unsigned)n }, enc = { NULL, 0 };
  size_t o = 0;
  if (n == 0 || gnutls_base64_encode2(&in, &enc) < 0) return 0;
  for (unsigned i = 0; i < enc.size; i++) {
    char c = (char)enc.data[i];
    if (c == '=' || c == '\n' || c == '\r') continue;
    out[o++] = c == '+' ? '-' : c == '/' ? '_' : c;
  }
  gnutls_free(enc.data);
  return o;
}

char *fuzz_sign(const char *key, const uint8_t *hdr, size_t hlen, const uint8_t *claims,
                size_t clen) {
  static const char std_hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  if (!hdr) {
    hdr = (const uint8_t *)std_hdr;
    hlen = sizeof std_hdr - 1;
  }
  char *tok = malloc(4 * (hlen + clen + 32) / 3 + 16);
  if (!tok) return NULL;
  size_t n = b64url(tok, hdr, hlen);
  tok[n++] = '.';
  n += b64url(tok + n, claims, clen);
  uint8_t mac[32];
  if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, strlen(key), tok, n, mac) != 0) {
    free(tok);
    return NULL;
  }
  tok[n++] = '.';
  n += b64url(tok + n, mac, sizeof mac);
  tok[n] = '\0';
  return tok;
}
