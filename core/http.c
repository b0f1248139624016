#include "http.h"
#include <string.h>
#include <strings.h>

/* RFC 9110 tchar. */
static int tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* The end of the line starting at p (the LF), or NULL if none in [p, end). */
static const char *eol(const char *p, const char *end) {
  return memchr(p, '\n', (size_t)(end - p));
}

/* Length of the line [p, lf) without a trailing CR. */
static size_t line_len(const char *p, const char *lf) {
  size_t n = (size_t)(lf - p);
  return n && p[n - 1] == '\r' ? n - 1 : n;
}

static int request_line(const char *p, size_t n, vcg__http_req_t *req) {
  const char *sp1 = memchr(p, ' ', n);
  if (!sp1 || sp1 == p) return -400;
  size_t ml = (size_t)(sp1 - p);
  for (size_t i = 0; i < ml; i++)
    if (!tchar((unsigned char)p[i])) return -400;
  const char *t = sp1 + 1, *end = p + n;
  const char *sp2 = memchr(t, ' ', (size_t)(end - t));
  if (!sp2 || sp2 == t) return -400;
  const char *v = sp2 + 1;
  if ((size_t)(end - v) != 8 || memcmp(v, "HTTP/1.", 7) != 0) {
    if ((size_t)(end - v) >= 5 && memcmp(v, "HTTP/", 5) == 0) return -505;
    return -400;
  }
  if (v[7] != '0' && v[7] != '1') return -505;
  req->minor = v[7] - '0';
  if (*t != '/') return -400; /* origin-form only */
  size_t tl = (size_t)(sp2 - t);
  for (size_t i = 0; i < tl; i++)
    if ((unsigned char)t[i] <= ' ' || (unsigned char)t[i] >= 0x7f) return -400;
  const char *q = memchr(t, '?', tl);
  size_t pl = q ? (size_t)(q - t) : tl;
  if (pl >= sizeof req->path) return -414;
  memcpy(req->path, t, pl);
  req->path[pl] = '\0';
  if (ml == 3 && memcmp(p, "GET", 3) == 0) req->head = 0;
  else if (ml == 4 && memcmp(p, "HEAD", 4) == 0) req->head = 1;
  else return -405;
  memcpy(req->method, p, ml);
  req->method[ml] = '\0';
  return 0;
}

/* One header line: a token, ':', a value of visible bytes, spaces, tabs. */
static int header_line(const char *p, size_t n) {
  const char *colon = memchr(p, ':', n);
  if (!colon || colon == p) return -400;
  for (const char *c = p; c < colon; c++)
    if (!tchar((unsigned char)*c)) return -400;
  const char *v = colon + 1;
  size_t vl = n - (size_t)(v - p);
  for (size_t i = 0; i < vl; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c < ' ' && c != '\t') return -400;
    if (c == 0x7f) return -400;
  }
  size_t nl = (size_t)(colon - p);
  while (vl && (*v == ' ' || *v == '\t')) { v++; vl--; }
  /* No request body: a probe or a scrape has none, and refusing one keeps
   * the reader this simple. */
  if (nl == 14 && strncasecmp(p, "content-length", 14) == 0 && !(vl == 1 && *v == '0'))
    return -413;
  if (nl == 17 && strncasecmp(p, "transfer-encoding", 17) == 0) return -413;
  return 0;
}

int vcg__http_parse(const char *buf, size_t len, vcg__http_req_t *req) {
  const char *end = buf + (len > VCG__HTTP_MAX_HEAD ? VCG__HTTP_MAX_HEAD : len);
  const char *p = buf, *lf;
  memset(req, 0, sizeof *req);
  if (!(lf = eol(p, end))) return len >= VCG__HTTP_MAX_HEAD ? -431 : 0;
  int rc = request_line(p, line_len(p, lf), req);
  if (rc) return rc;
  p = lf + 1;
  for (int n = 0;; n++) {
    if (!(lf = eol(p, end))) return len >= VCG__HTTP_MAX_HEAD ? -431 : 0;
    size_t l = line_len(p, lf);
    if (l == 0) return (int)(lf + 1 - buf); /* the empty line: done */
    if (n >= VCG__HTTP_MAX_HEADERS) return -431;
    if (*p == ' ' || *p == '\t') return -400; /* obsolete line folding */
    if ((rc = header_line(p, l)) != 0) return rc;
    p = lf + 1;
  }
}
