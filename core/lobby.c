#include "lobby.h"
#include <stdio.h>
#include <string.h>
#include "names.h"
#include "stats.h"
#include "vcgate/plugin.h"

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

long vcg__pct_decode(char *dst, size_t cap, const char *src, size_t n, char space) {
  size_t o = 0;
  if (cap == 0) return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)src[i];
    if (c == '%') {
      int hi, lo;
      if (i + 2 >= n) return -1;
      hi = hexval((unsigned char)src[i + 1]);
      lo = hexval((unsigned char)src[i + 2]);
      if (hi < 0 || lo < 0) return -1;
      c = (unsigned char)(hi << 4 | lo);
      i += 2;
    }
    if (c == 0) return -1;
    if (c == ' ') c = (unsigned char)space;
    if (o + 1 >= cap) return -1;
    dst[o++] = (char)c;
  }
  dst[o] = '\0';
  return (long)o;
}

static int refuse(int *why, int reason, char *msg, size_t msglen, const char *text, int rc) {
  *why = reason;
  snprintf(msg, msglen, "%s", text);
  return rc;
}

#define LOBBY_USAGE "expected /lobby/{user}/{room} or /lobby?token=JWT"

/* The token of a query string ("a=1&token=xyz&b"): exactly one, not empty. */
static int find_token(const char *q, size_t qlen, vcg__lobby_req_t *req, int *why, char *msg,
                      size_t msglen) {
  const char *end = q + qlen, *p = q;
  int found = 0;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp ? amp : end;
    if (pe - p >= 6 && memcmp(p, "token=", 6) == 0) {
      if (found++)
        return refuse(why, VCG_CLOSE_BAD_REQUEST, msg, msglen, "more than one token", VCG_EINVAL);
      size_t raw = (size_t)(pe - p - 6);
      long n = raw > 3 * (size_t)VCG__LOBBY_TOKEN_MAX
                   ? -1 : vcg__pct_decode(req->token_buf, sizeof req->token_buf, p + 6, raw, ' ');
      if (n < 0 && raw > VCG__LOBBY_TOKEN_MAX) { /* a token, but over the limit */
        req->auth_fail = VCG__AF_MALFORMED;
        return refuse(why, VCG_CLOSE_FORBIDDEN, msg, msglen, "malformed token: too long", VCG_EPERM);
      }
      if (n < 0)
        return refuse(why, VCG_CLOSE_BAD_REQUEST, msg, msglen, "bad percent-encoding in token",
                      VCG_EINVAL);
      if (n == 0)
        return refuse(why, VCG_CLOSE_BAD_REQUEST, msg, msglen, "empty token", VCG_EINVAL);
      req->token = req->token_buf;
      req->token_len = (size_t)n;
    }
    p = pe + (amp ? 1 : 0);
  }
  if (!found) return refuse(why, VCG_CLOSE_BAD_REQUEST, msg, msglen, LOBBY_USAGE, VCG_EINVAL);
  return 0;
}

/* Decode one legacy path segment into dst. */
static int segment(char *dst, const char *b, const char *e, const char *what, int *why, char *msg,
                   size_t msglen) {
  if (b == e) {
    snprintf(msg, msglen, "empty %s", what);
    *why = VCG_CLOSE_BAD_REQUEST;
    return VCG_EINVAL;
  }
  if (vcg__pct_decode(dst, VCG__LOBBY_NAME_MAX + 1, b, (size_t)(e - b), '_') < 0) {
    snprintf(msg, msglen, "%s: bad percent-encoding or too long", what);
    *why = VCG_CLOSE_BAD_REQUEST;
    return VCG_EINVAL;
  }
  return 0;
}

/* Identity and room, from the path or the token, under the same rules. */
static int check_names(const vcg__lobby_conf_t *conf, vcg__lobby_req_t *req, int token, int *why,
                       char *msg, size_t msglen) {
  const char *reason = NULL;
  int rc;
  if ((rc = vcg__user_name_check(req->user, conf->max_user_length, &reason)) != 0) {
    snprintf(msg, msglen, "%s%s", token ? "invalid identity in token: " : "", reason);
    *why = rc == VCG_EPERM || token ? VCG_CLOSE_FORBIDDEN : VCG_CLOSE_BAD_REQUEST;
    return rc;
  }
  if ((rc = vcg__room_name_check(req->room, conf->max_room_length, &reason)) != 0) {
    snprintf(msg, msglen, "%s%s", token ? "invalid room in token: " : "", reason);
    *why = token ? VCG_CLOSE_FORBIDDEN : VCG_CLOSE_BAD_REQUEST;
    return rc;
  }
  return 0;
}

/* Verify the token and take identity, room and rights from it. */
static int token_join(const vcg__lobby_conf_t *conf, vcg__lobby_req_t *req, int *why, char *msg,
                      size_t msglen) {
  if (!conf->keys || conf->keys->n == 0) {
    req->auth_fail = VCG__AF_NO_SECRET;
    return refuse(why, VCG_CLOSE_INTERNAL, msg, msglen, "server misconfigured", VCG_EINVAL);
  }
  vcg__jwt_claims_t *c = &req->claims;
  int rc = vcg__jwt_verify(conf->keys, conf->issuer, conf->leeway_ms, conf->now_ms, req->token,
                           req->token_len, c, why, msg, msglen);
  if (rc != 0) {
    static const int map[] = { VCG__AF_EXPIRED, VCG__AF_SIGNATURE, VCG__AF_ISSUER, VCG__AF_MALFORMED };
    req->auth_fail = c->fail >= 0 && c->fail < 4 ? map[c->fail] : VCG__AF_MALFORMED;
    return rc;
  }
  if (!c->room_join && !c->observer) {
    req->auth_fail = VCG__AF_NO_ACCESS;
    return refuse(why, VCG_CLOSE_FORBIDDEN, msg, msglen, "token grants no access to the room",
                  VCG_EPERM);
  }
  snprintf(req->user, sizeof req->user, "%s", c->sub);
  snprintf(req->room, sizeof req->room, "%s", c->room);
  snprintf(req->display_name, sizeof req->display_name, "%s", c->display_name);
  req->observer = c->observer;
  req->is_host = c->is_host;
  if ((rc = check_names(conf, req, 1, why, msg, msglen)) != 0) req->auth_fail = VCG__AF_CLAIMS;
  return rc;
}

int vcg__lobby_parse(const vcg__lobby_conf_t *conf, const char *target,
                     vcg__lobby_req_t *req, int *why, char *msg, size_t msglen) {
  static const char pfx[] = "/lobby";
  const size_t pl = sizeof pfx - 1;
  req->user[0] = req->room[0] = req->display_name[0] = '\0';
  req->observer = req->is_host = 0;
  req->auth_fail = -1;
  req->token = NULL;
  req->token_len = 0;
  if (!target) return refuse(why, VCG_CLOSE_BAD_REQUEST, msg, msglen, "no request target", VCG_EINVAL);
  size_t tlen = strlen(target);
  const char *q = memchr(target, '?', tlen);
  size_t plen = q ? (size_t)(q - target) : tlen;
  if (memchr(target, '#', tlen))
    return refuse(why, VCG_CLOSE_BAD_REQUEST, msg, msglen, "fragment in request target", VCG_EINVAL);
  if (plen < pl || memcmp(target, pfx, pl) != 0 || (plen > pl && target[pl] != '/'))
    return refuse(why, VCG_CLOSE_NOT_FOUND, msg, msglen, "not found", VCG_ENOENT);
  int rc;
  if (plen <= pl + 1) {
    /* "/lobby" or "/lobby/": the token form, or nothing. */
    if (!q || plen == pl + 1) return refuse(why, VCG_CLOSE_BAD_REQUEST, msg, msglen, LOBBY_USAGE, VCG_EINVAL);
    if ((rc = find_token(q + 1, tlen - plen - 1, req, why, msg, msglen)) != 0) return rc;
    return token_join(conf, req, why, msg, msglen);
  }
  /* /lobby/{user}/{room}: exactly two segments; the query is ignored. */
  if (conf->require_token)
    return refuse(why, VCG_CLOSE_GONE, msg, msglen,
                  "this server requires a room token: /lobby?token=JWT", VCG_EPERM);
  const char *u = target + pl + 1, *end = target + plen;
  const char *slash = memchr(u, '/', (size_t)(end - u));
  if (!slash) return refuse(why, VCG_CLOSE_BAD_REQUEST, msg, msglen, LOBBY_USAGE, VCG_EINVAL);
  const char *r = slash + 1;
  if (memchr(r, '/', (size_t)(end - r)))
    return refuse(why, VCG_CLOSE_BAD_REQUEST, msg, msglen,
                  "expected /lobby/{user}/{room}: too many path components", VCG_EINVAL);
  if ((rc = segment(req->user, u, slash, "identity", why, msg, msglen)) != 0) return rc;
  if ((rc = segment(req->room, r, end, "room name", why, msg, msglen)) != 0) return rc;
  return check_names(conf, req, 0, why, msg, msglen);
}
