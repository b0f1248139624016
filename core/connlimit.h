/* Connection limits shared by every worker of the process: a global count
 * and a per-address count, with a trusted-address list exempt from the
 * per-address limit (loopback by default, so local proxies and benchmarks
 * are not throttled). */
#ifndef VCG_CONNLIMIT_H
#define VCG_CONNLIMIT_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include "util/htab.h"

typedef struct vcg__cidr {
  int family;          /* AF_INET or AF_INET6 */
  uint8_t addr[16];
  int bits;
} vcg__cidr_t;

typedef struct vcg__ipcount vcg__ipcount_t;

typedef struct vcg__limits {
  atomic_long total;
  atomic_long max_total;      /* a reload may change the limits: atomics */
  atomic_long max_per_ip;
  uv_mutex_t lock;            /* guards the trusted list and the table */
  vcg__cidr_t *trusted;
  size_t ntrusted;
  vcg_htab_t by_addr;         /* vcg__ipcount_t by address */
} vcg__limits_t;

/* Parse "a.b.c.d/n", "::1", "fe80::/10".  0 or VCG_EINVAL. */
int vcg__cidr_parse(const char *s, vcg__cidr_t *out);
int vcg__cidr_match(const vcg__cidr_t *c, const struct sockaddr *sa);

int vcg__limits_init(vcg__limits_t *l, long max_total, long max_per_ip,
                     char **trusted, char *err, size_t errlen);
void vcg__limits_free(vcg__limits_t *l);
/* A reload: new limits for the next connections (open ones keep their
 * slots).  0, or VCG_EINVAL with the reason in err (nothing changed). */
int vcg__limits_update(vcg__limits_t *l, long max_total, long max_per_ip, char **trusted,
                       char *err, size_t errlen);
/* Take one slot for a connection from sa.  Returns 0; VCG_EAGAIN when the
 * address is over its limit; VCG_EBUSY when the process is full. *counted
 * tells whether the per-address count was taken (release must mirror it). */
int vcg__limits_acquire(vcg__limits_t *l, const struct sockaddr *sa, int *counted);
void vcg__limits_release(vcg__limits_t *l, const struct sockaddr *sa, int counted);
#endif
