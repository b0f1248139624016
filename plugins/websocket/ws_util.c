/*
 * ws_util.c -- pure helpers of the websocket transport: listen address
 * parsing, the request line, request targets, small HTTP responses,
 * static file names.
 */
#include "ws_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <vcgate/plugin.h>

int vcg__ws_parse_listen(const char *s, char *host, size_t hostlen,
                         uint16_t *port) {
  const char *colon, *hb, *he;
  char *end;
  unsigned long v;

  if (s == NULL || *s == '\0' || hostlen == 0)
    return VCG_EINVAL;
  if (s[0] == '[') {
    /* Bracketed IPv6 literal: the port follows the closing bracket. */
    he = strchr(s, ']');
    if (he == NULL || he[1] != ':')
      return VCG_EINVAL;
    hb = s + 1;
    colon = he + 1;
    if (he == hb)
      return VCG_EINVAL;
  } else {
    /* The last colon separates the port; an unbracketed host with another
     * colon would be an ambiguous IPv6 literal, which we refuse. */
    colon = strrchr(s, ':');
    if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
      return VCG_EINVAL;
    hb = s;
    he = colon;
  }
  if ((size_t)(he - hb) >= hostlen)
    return VCG_EINVAL;
  if (colon[1] < '0' || colon[1] > '9')
    return VCG_EINVAL;
  v = strtoul(colon + 1, &end, 10);
  if (*end != '\0' || v > 65535)
    return VCG_EINVAL;
  memcpy(host, hb, (size_t)(he - hb));
  host[he - hb] = '\0';
  if (strcmp(host, "*") == 0)
    host[0] = '\0';
  *port = (uint16_t)v;
  return 0;
}

/* RFC 7230 tchar: the characters of a method token. */
static int ws_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || (c != 0 && strchr("!#$%&'*+-.^_`|~", c));
}

int vcg__ws_request_line(const char *buf, size_t len, size_t *toff,
                         size_t *tlen, size_t *linelen) {
  const char *nl = memchr(buf, '\n', len);
  size_t end, i, t0;

  if (nl == NULL)
    return VCG_EAGAIN;
  *linelen = (size_t)(nl - buf) + 1;
  end = (size_t)(nl - buf);
  if (end > 0 && buf[end - 1] == '\r')
    end--;
  for (i = 0; i < end && ws_tchar((unsigned char)buf[i]); i++)
    ;
  if (i == 0 || i >= end || buf[i] != ' ')
    return VCG_EINVAL;
  t0 = ++i;
  /* A request-target is visible ASCII: anything else must be
   * percent-encoded by the client. */
  for (; i < end && buf[i] > 0x20 && buf[i] < 0x7f; i++)
    ;
  if (i == t0 || i >= end || buf[i] != ' ')
    return VCG_EINVAL;
  if (end - (i + 1) < 8 || memcmp(buf + i + 1, "HTTP/", 5) != 0)
    return VCG_EINVAL;
  *toff = t0;
  *tlen = i - t0;
  return 0;
}

static int ws_hex(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}

const char *vcg__ws_target_check(const char *t, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (t[i] != '%')
      continue;
    if (i + 2 >= n || !ws_hex((unsigned char)t[i + 1]) ||
        !ws_hex((unsigned char)t[i + 2]))
      return "bad percent-encoding in the request target";
    if (t[i + 1] == '0' && t[i + 2] == '0')
      return "NUL (%00) in the request target";
    i += 2;
  }
  return NULL;
}

long vcg__ws_pct_encode(char *dst, size_t cap, const char *src,
                        const char *keep) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;

  for (; *src; src++) {
    unsigned char c = (unsigned char)*src;

    if (o + 4 > cap)
      return VCG_ENOBUFS;
    if (c == ' ') {
      dst[o++] = '+';
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') || strchr("-._~", c) ||
               strchr(keep, c)) {
      dst[o++] = (char)c;
    } else {
      dst[o++] = '%';
      dst[o++] = hex[c >> 4];
      dst[o++] = hex[c & 15];
    }
  }
  if (o >= cap)
    return VCG_ENOBUFS;
  dst[o] = '\0';
  return (long)o;
}

long vcg__ws_target_rebuild(char *dst, size_t cap, const char *path,
                            const char *const *args, size_t nargs) {
  /* A path keeps its structure ('/') and the sub-delims; an argument keeps
   * '=' (name from value, and base64 padding) but not the separators '&'
   * and ';', which lws has already split on. */
  long n = vcg__ws_pct_encode(dst, cap, path, "/!$&'()*+,;=:@");
  size_t o;

  if (n < 0)
    return n;
  o = (size_t)n;
  for (size_t i = 0; i < nargs; i++) {
    if (o + 2 > cap)
      return VCG_ENOBUFS;
    dst[o++] = i == 0 ? '?' : '&';
    n = vcg__ws_pct_encode(dst + o, cap - o, args[i], "!$'()*+,=:@/?");
    if (n < 0)
      return n;
    o += (size_t)n;
  }
  dst[o] = '\0';
  return (long)o;
}

const char *vcg__ws_status_text(unsigned status) {
  switch (status) {
  case 200: return "OK";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 410: return "Gone";
  case 413: return "Payload Too Large";
  case 414: return "URI Too Long";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 503: return "Service Unavailable";
  default:  return "Internal Server Error";
  }
}

long vcg__ws_http_format(char *dst, size_t cap, unsigned status,
                         const char *ctype, const char *extra,
                         const char *body) {
  int blen = (int)strnlen(body, 1536);
  /* Any origin may read these small public answers (a page served from
   * elsewhere fetches the WebTransport certificate hash). */
  int n = snprintf(dst, cap,
                   "HTTP/1.1 %u %s\r\n"
                   "content-type: %s\r\n"
                   "content-length: %d\r\n"
                   "access-control-allow-origin: *\r\n"
                   "connection: close\r\n"
                   "cache-control: no-store\r\n"
                   "%s"
                   "\r\n%.*s\n",
                   status, vcg__ws_status_text(status), ctype, blen + 1,
                   extra ? extra : "", blen, body);

  if (n < 0 || (size_t)n >= cap)
    return VCG_ENOBUFS;
  return n;
}

const char *vcg__ws_mime_type(const char *path) {
  static const struct { const char *ext, *type; } types[] = {
    { "html", "text/html; charset=utf-8" },
    { "js", "text/javascript; charset=utf-8" },
    { "mjs", "text/javascript; charset=utf-8" },
    { "css", "text/css; charset=utf-8" },
    { "json", "application/json" },
    { "svg", "image/svg+xml" },
    { "png", "image/png" },
    { "ico", "image/x-icon" },
    { "wasm", "application/wasm" },
    { "webmanifest", "application/manifest+json" },
    { "txt", "text/plain; charset=utf-8" },
  };
  const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');

  if (dot != NULL && (slash == NULL || dot > slash))
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
      if (strcasecmp(dot + 1, types[i].ext) == 0)
        return types[i].type;
  return "application/octet-stream";
}

int vcg__ws_file_path_ok(const char *path) {
  if (path == NULL || path[0] != '/')
    return 0;
  for (const char *p = path; (p = strchr(p, '/')) != NULL; p++)
    if (p[1] == '.')
      return 0;
  return 1;
}

/* One entity tag of a list at *p (skipping spaces and commas): its opaque
 * part without W/ and quotes, in [*b, *e).  Returns 0 at the end. */
static int ws_next_etag(const char **p, const char **b, const char **e) {
  const char *s = *p;

  while (*s == ' ' || *s == '\t' || *s == ',')
    s++;
  if (*s == '\0')
    return 0;
  if (s[0] == 'W' && s[1] == '/')
    s += 2;
  if (*s == '"') {
    const char *q = strchr(s + 1, '"');

    *b = s + 1;
    *e = q ? q : s + strlen(s);
    s = q ? q + 1 : *e;
  } else {
    *b = s;
    while (*s && *s != ',')
      s++;
    *e = s;
    while (*e > *b && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
      (*e)--;
  }
  *p = s;
  return 1;
}

int vcg__ws_etag_match(const char *inm, const char *etag) {
  const char *eb, *ee, *b, *e, *p = etag;

  if (inm == NULL || etag == NULL || !ws_next_etag(&p, &eb, &ee))
    return 0;
  p = inm;
  while (ws_next_etag(&p, &b, &e)) {
    if (e - b == 1 && *b == '*')
      return 1;
    if (e - b == ee - eb && memcmp(b, eb, (size_t)(e - b)) == 0)
      return 1;
  }
  return 0;
}
