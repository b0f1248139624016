#include "jwt.h"
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "vcgate/plugin.h"

int vcg__jwt_keys_add(vcg__jwt_keys_t *k, const void *secret, size_t len) {
  uint8_t **nk = realloc(k->key, (k->n + 1) * sizeof *nk);
  if (!nk) return VCG_ENOMEM;
  k->key = nk;
  size_t *nl = realloc(k->len, (k->n + 1) * sizeof *nl);
  if (!nl) return VCG_ENOMEM;
  k->len = nl;
  uint8_t *copy = malloc(len ? len : 1);
  if (!copy) return VCG_ENOMEM;
  memcpy(copy, secret, len);
  k->key[k->n] = copy;
  k->len[k->n] = len;
  k->n++;
  return 0;
}

void vcg__jwt_keys_free(vcg__jwt_keys_t *k) {
  for (size_t i = 0; i < k->n; i++) {
    gnutls_memset(k->key[i], 0, k->len[i]);
    free(k->key[i]);
  }
  free(k->key);
  free(k->len);
  memset(k, 0, sizeof *k);
}

/* base64url without padding (RFC 7515 section 2) -> bytes, through
 * GnuTLS's decoder after mapping the alphabet back to RFC 4648 base64.
 * *out is gnutls_malloc'ed.  0 or -1. */
static int b64url_decode(const char *s, size_t n, gnutls_datum_t *out) {
  if (n % 4 == 1) return -1;
  char *std = malloc(n + 3);
  if (!std) return -1;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '-') c = '+';
    else if (c == '_') c = '/';
    else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
      free(std);
      return -1;
    }
    std[i] = c;
  }
  size_t m = n;
  while (m % 4) std[m++] = '=';
  gnutls_datum_t in = { (unsigned char *)std, (unsigned)m };
  int rc = m ? gnutls_base64_decode2(&in, out) : -1;
  free(std);
  return rc < 0 ? -1 : 0;
}

/* bytes -> base64url without padding; *out malloc'ed. */
static int b64url_encode(const void *data, size_t n, char **out) {
  gnutls_datum_t in = { (unsigned char *)data, (unsigned)n }, enc = { NULL, 0 };
  if (gnutls_base64_encode2(&in, &enc) < 0) return VCG_ENOMEM;
  char *s = malloc(enc.size + 1);
  if (!s) { gnutls_free(enc.data); return VCG_ENOMEM; }
  size_t o = 0;
  for (unsigned i = 0; i < enc.size; i++) {
    char c = (char)enc.data[i];
    if (c == '=' || c == '\n' || c == '\r') continue;
    s[o++] = c == '+' ? '-' : c == '/' ? '_' : c;
  }
  s[o] = '\0';
  gnutls_free(enc.data);
  *out = s;
  return 0;
}

static int fail_(vcg__jwt_claims_t *c, int kind, int *why, int reason, char *msg, size_t msglen,
                 const char *text) {
  c->fail = kind;
  *why = reason;
  snprintf(msg, msglen, "%s", text);
  return reason == VCG_CLOSE_UNAUTHORIZED ? VCG_EACCES : VCG_EPERM;
}

#define MALFORMED(text) fail_(c, VCG__JWT_MALFORMED, why, VCG_CLOSE_FORBIDDEN, msg, msglen, "malformed token: " text)

/* A string claim into dst (cap bytes with the NUL). */
static int str_claim(json_t *o, const char *name, int required, char *dst, size_t cap) {
  json_t *v = json_object_get(o, name);
  dst[0] = '\0';
  if (!v) return required ? -1 : 0;
  if (!json_is_string(v) || json_string_length(v) >= cap || strlen(json_string_value(v)) !=
      json_string_length(v))
    return -1; /* wrong type, too long, or an embedded NUL */
  memcpy(dst, json_string_value(v), json_string_length(v) + 1);
  return 0;
}

static int bool_claim(json_t *o, const char *name, int required, int *dst) {
  json_t *v = json_object_get(o, name);
  *dst = 0;
  if (!v) return required ? -1 : 0;
  if (!json_is_boolean(v)) return -1;
  *dst = json_is_true(v);
  return 0;
}

/* A NumericDate (seconds; an integer, or a real as some issuers write). */
static int time_claim(json_t *o, const char *name, int required, int64_t *dst) {
  json_t *v = json_object_get(o, name);
  *dst = 0;
  if (!v) return required ? -1 : 0;
  if (!json_is_number(v)) return -1;
  double d = json_number_value(v);
  if (d < 0 || d > 9.2e15) return -1;
  *dst = (int64_t)d;
  return 0;
}

int vcg__jwt_verify(const vcg__jwt_keys_t *keys, const char *issuer, int64_t leeway_ms,
                    int64_t now_ms, const char *token, size_t len, vcg__jwt_claims_t *c,
                    int *why, char *msg, size_t msglen) {
  c->fail = VCG__JWT_OK;
  if (len > VCG__JWT_MAX) return MALFORMED("too long");
  const char *d1 = memchr(token, '.', len);
  const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
  if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
    return MALFORMED("expected three base64url parts");
  gnutls_datum_t hdr = { 0 }, body = { 0 }, sig = { 0 };
  json_t *h = NULL, *o = NULL;
  int rc;
  if (b64url_decode(token, (size_t)(d1 - token), &hdr) || b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &body) ||
      b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), &sig)) {
    rc = MALFORMED("bad base64url");
    goto out;
  }
  json_error_t jerr;
  h = json_loadb((const char *)hdr.data, hdr.size, JSON_REJECT_DUPLICATES, &jerr);
  json_t *alg = h ? json_object_get(h, "alg") : NULL;
  if (!json_is_object(h)) { rc = MALFORMED("header is not a JSON object"); goto out; }
  if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0) {
    rc = fail_(c, VCG__JWT_MALFORMED, why, VCG_CLOSE_FORBIDDEN, msg, msglen, "token algorithm is not HS256");
    goto out;
  }
  if (json_object_get(h, "crit")) { rc = MALFORMED("unsupported critical header"); goto out; }
  /* The signature before any claim is believed. */
  uint8_t mac[32];
  int ok = 0;
  for (size_t i = 0; i < keys->n && !ok; i++) {
    if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, keys->key[i], keys->len[i], token, (size_t)(d2 - token),
                         mac) != 0)
      continue;
    ok = sig.size == sizeof mac && gnutls_memcmp(mac, sig.data, sizeof mac) == 0;
  }
  if (!ok) { rc = fail_(c, VCG__JWT_SIGNATURE, why, VCG_CLOSE_FORBIDDEN, msg, msglen, "invalid token signature"); goto out; }
  o = json_loadb((const char *)body.data, body.size, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(o)) { rc = MALFORMED("claims are not a JSON object"); goto out; }
  char iss[256];
  if (str_claim(o, "sub", 1, c->sub, sizeof c->sub) || str_claim(o, "room", 1, c->room, sizeof c->room) ||
      str_claim(o, "display_name", 0, c->display_name, sizeof c->display_name) ||
      str_claim(o, "iss", 1, iss, sizeof iss) || bool_claim(o, "room_join", 0, &c->room_join) ||
      bool_claim(o, "is_host", 0, &c->is_host) || bool_claim(o, "observer", 0, &c->observer) ||
      time_claim(o, "exp", 1, &c->exp) || time_claim(o, "nbf", 0, &c->nbf)) {
    rc = MALFORMED("a claim is missing or has the wrong type");
    goto out;
  }
  if (strcmp(iss, issuer) != 0) {
    rc = fail_(c, VCG__JWT_ISSUER, why, VCG_CLOSE_FORBIDDEN, msg, msglen, "invalid token issuer");
    goto out;
  }
  if (c->exp * 1000 + leeway_ms <= now_ms) {
    rc = fail_(c, VCG__JWT_EXPIRED, why, VCG_CLOSE_UNAUTHORIZED, msg, msglen, "token has expired");
    goto out;
  }
  if (c->nbf && c->nbf * 1000 - leeway_ms > now_ms) {
    rc = fail_(c, VCG__JWT_EXPIRED, why, VCG_CLOSE_UNAUTHORIZED, msg, msglen, "token is not valid yet");
    goto out;
  }
  rc = 0;
out:
  gnutls_free(hdr.data);
  gnutls_free(body.data);
  gnutls_free(sig.data);
  json_decref(h);
  json_decref(o);
  return rc;
}

int vcg__jwt_mint(const uint8_t *key, size_t keylen, const char *issuer,
                  const vcg__jwt_claims_t *c, int64_t now_s, int64_t ttl_s, char **out) {
  json_t *claims = json_pack("{s:s, s:s, s:b, s:b, s:b, s:s, s:s, s:I, s:I}", "sub", c->sub,
                             "room", c->room, "room_join", c->room_join, "is_host", c->is_host,
                             "observer", c->observer, "display_name",
                             c->display_name[0] ? c->display_name : c->sub, "iss", issuer,
                             "iat", (json_int_t)now_s, "exp", (json_int_t)(now_s + ttl_s));
  if (!claims) return VCG_EINVAL;
  char *body = json_dumps(claims, JSON_COMPACT);
  json_decref(claims);
  if (!body) return VCG_ENOMEM;
  static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  char *h64 = NULL, *b64 = NULL, *s64 = NULL, *tok = NULL;
  int rc = VCG_ENOMEM;
  if (b64url_encode(hdr, sizeof hdr - 1, &h64) || b64url_encode(body, strlen(body), &b64)) goto out;
  size_t n = strlen(h64) + 1 + strlen(b64);
  if (!(tok = malloc(n + 64))) goto out;
  snprintf(tok, n + 1, "%s.%s", h64, b64);
  uint8_t mac[32];
  if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, keylen, tok, n, mac) != 0) { rc = VCG_EINVAL; goto out; }
  if (b64url_encode(mac, sizeof mac, &s64)) goto out;
  snprintf(tok + n, 64, ".%s", s64);
  *out = tok;
  tok = NULL;
  rc = 0;
out:
  free(body);
  free(h64);
  free(b64);
  free(s64);
  free(tok);
  return rc;
}
