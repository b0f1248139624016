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

size_t vcg__ws_head_len(const char *buf, size_t n) {
  for (const char *p = buf; (p = memchr(p, '\n', n - (size_t)(p - buf))) != NULL; p++) {
    size_t i = (size_t)(p - buf) + 1;

    if (i < n && buf[i] == '\n')
      return i + 1;
    if (i + 1 < n && buf[i] == '\r' && buf[i + 1] == '\n')
      return i + 2;
  }
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

/* ------------------------------------------------------------ RFC 6455 */

static int ws_b64(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int vcg__ws_key_ok(const char *key) {
  int v = 0;

  if (key == NULL || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
    return 0;
  for (int i = 0; i < 22; i++)
    if ((v = ws_b64((unsigned char)key[i])) < 0)
      return 0;
  /* 16 bytes are 128 bits: the 22nd character carries 2 of them. */
  return (v & 0x0f) == 0;
}

int vcg__ws_utf8_ok(const uint8_t *p, size_t n) {
  size_t i = 0;

  while (i < n) {
    uint8_t c = p[i];
    size_t k;
    uint32_t cp;

    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf) {
      k = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      k = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      k = 3;
      cp = c & 0x07;
    } else {
      return 0; /* a continuation byte, 0xc0/0xc1 (overlong) or > 0xf4 */
    }
    if (i + k >= n)
      return 0; /* truncated */
    for (size_t j = 1; j <= k; j++) {
      if ((p[i + j] & 0xc0) != 0x80)
        return 0;
      cp = cp << 6 | (p[i + j] & 0x3f);
    }
    if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
      return 0;
    i += k + 1;
  }
  return 1;
}

int vcg__ws_close_code_ok(unsigned code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

unsigned vcg__ws_close_answer(const uint8_t *payload, size_t n) {
  unsigned code;

  if (n == 0)
    return 1000;
  if (n == 1)
    return 1002;
  code = (unsigned)payload[0] << 8 | payload[1];
  if (!vcg__ws_close_code_ok(code))
    return 1002;
  if (!vcg__ws_utf8_ok(payload + 2, n - 2))
    return 1007;
  return code;
}

long vcg__ws_frame_header(const uint8_t *p, size_t n, vcg__ws_frame_t *f,
                          const char **why) {
  size_t need = 2;
  uint64_t len;

  if (n < 2)
    return 0;
  f->fin = p[0] >> 7;
  f->opcode = p[0] & 0x0f;
  if (p[0] & 0x70) {
    *why = "reserved bits set";
    return VCG_EINVAL;
  }
  if (f->opcode > 2 && (f->opcode < 8 || f->opcode > 10)) {
    *why = "unknown opcode";
    return VCG_EINVAL;
  }
  if (!(p[1] & 0x80)) {
    *why = "unmasked client frame";
    return VCG_EINVAL;
  }
  len = p[1] & 0x7f;
  if (f->opcode >= 8 && (!f->fin || len > 125)) {
    *why = f->fin ? "control frame over 125 bytes" : "fragmented control frame";
    return VCG_EINVAL;
  }
  need += len == 126 ? 2 : len == 127 ? 8 : 0;
  if (n < need + 4)
    return 0;
  if (len == 126) {
    len = (uint64_t)p[2] << 8 | p[3];
    if (len < 126) {
      *why = "frame length not in its shortest form";
      return VCG_EINVAL;
    }
  } else if (len == 127) {
    len = 0;
    for (int i = 0; i < 8; i++)
      len = len << 8 | p[2 + i];
    if (len >> 63) {
      *why = "frame length over 2^63";
      return VCG_EINVAL;
    }
    if (len < 65536) {
      *why = "frame length not in its shortest form";
      return VCG_EINVAL;
    }
  }
  f->len = len;
  memcpy(f->mask, p + need, 4);
  return (long)(need + 4);
}

void vcg__ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off) {
  /* 16 bytes at a time (GCC's vector extension: SSE2, the x86-64
   * baseline, or what the target has), four vectors per turn; the key
   * repeats every four bytes, so one vector of it serves every offset.
   * Each received byte is unmasked here once: it was a seventh of the
   * server's own instructions with an 8-byte loop. */
  typedef uint8_t ws_v16 __attribute__((vector_size(16)));
  uint8_t m[16];
  ws_v16 mv;
  size_t i = 0;

  for (int k = 0; k < 16; k++)
    m[k] = mask[(off + (uint64_t)k) & 3];
  memcpy(&mv, m, sizeof(mv));
  for (; i + 64 <= n; i += 64) {
    ws_v16 a, b, c, d;

    memcpy(&a, p + i, 16);
    memcpy(&b, p + i + 16, 16);
    memcpy(&c, p + i + 32, 16);
    memcpy(&d, p + i + 48, 16);
    a ^= mv;
    b ^= mv;
    c ^= mv;
    d ^= mv;
    memcpy(p + i, &a, 16);
    memcpy(p + i + 16, &b, 16);
    memcpy(p + i + 32, &c, 16);
    memcpy(p + i + 48, &d, 16);
  }
  for (; i + 16 <= n; i += 16) {
    ws_v16 a;

    memcpy(&a, p + i, 16);
    a ^= mv;
    memcpy(p + i, &a, 16);
  }
  for (; i < n; i++)
    p[i] ^= m[i & 15];
}

size_t vcg__ws_written(const size_t *rem, size_t npieces, size_t n,
                       size_t *part) {
  size_t i;

  *part = 0;
  for (i = 0; i < npieces && n >= rem[i]; i++)
    n -= rem[i];
  if (i < npieces)
    *part = n;
  return i;
}
