/* The admin listener's HTTP/1.1 request reader: strict and small, because
 * the listener serves a handful of GETs to Prometheus, kubelet probes and
 * operators, and must refuse anything else cheaply.  Pure (no sockets):
 * tests/unit/test_http.c and tests/fuzz/fuzz_http.c call it directly. */
#ifndef VCG_HTTP_H
#define VCG_HTTP_H
#include <stddef.h>

#define VCG__HTTP_MAX_HEAD 8192   /* request line and headers */
#define VCG__HTTP_MAX_HEADERS 64

typedef struct vcg__http_req {
  char method[8];                 /* "GET" or "HEAD" once accepted */
  char path[512];                 /* the target up to '?' */
  int minor;                      /* HTTP/1.x */
  int head;                       /* HEAD: answer without a body */
} vcg__http_req_t;

/* Read one request head from buf[0..len).  Returns the number of bytes it
 * took (> 0) when the head is complete and acceptable; 0 when more bytes
 * are needed; or the negated HTTP status to answer (-400 malformed, -405
 * a method other than GET and HEAD, -413 a body, -414 a target over
 * sizeof path, -431 a head over VCG__HTTP_MAX_HEAD or too many headers,
 * -505 a version other than HTTP/1.0 and 1.1). */
int vcg__http_parse(const char *buf, size_t len, vcg__http_req_t *req);
#endif
