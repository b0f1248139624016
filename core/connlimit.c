#include "connlimit.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "vcgate/plugin.h"

struct vcg__ipcount {
  vcg_hnode_t node;            /* in l->by_addr */
  uint8_t key[17];             /* family tag + 16 address bytes */
  long count;
};

int vcg__cidr_parse(const char *s, vcg__cidr_t *out) {
  char buf[64];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  if (n == 0 || n >= sizeof buf) return VCG_EINVAL;
  memcpy(buf, s, n);
  buf[n] = '\0';
  memset(out, 0, sizeof *out);
  if (inet_pton(AF_INET, buf, out->addr) == 1) { out->family = AF_INET; out->bits = 32; }
  else if (inet_pton(AF_INET6, buf, out->addr) == 1) { out->family = AF_INET6; out->bits = 128; }
  else return VCG_EINVAL;
  if (slash) {
    char *end;
    long b = strtol(slash + 1, &end, 10);
    if (*end || end == slash + 1 || b < 0 || b > out->bits) return VCG_EINVAL;
    out->bits = (int)b;
  }
  return 0;
}

/* Normalise an address to (family, bytes); IPv4-mapped IPv6 counts as IPv4
 * so a dual-stack listener cannot double a client's allowance. */
static int addr_bytes(const struct sockaddr *sa, uint8_t out[16]) {
  if (!sa) return 0;
  if (sa->sa_family == AF_INET) {
    memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    return AF_INET;
  }
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a)) { memcpy(out, a->s6_addr + 12, 4); return AF_INET; }
    memcpy(out, a, 16);
    return AF_INET6;
  }
  return 0;
}

int vcg__cidr_match(const vcg__cidr_t *c, const struct sockaddr *sa) {
  uint8_t a[16];
  if (addr_bytes(sa, a) != c->family) return 0;
  int full = c->bits / 8, rem = c->bits % 8;
  if (memcmp(a, c->addr, (size_t)full) != 0) return 0;
  if (rem) {
    uint8_t mask = (uint8_t)(0xff << (8 - rem));
    if ((a[full] & mask) != (c->addr[full] & mask)) return 0;
  }
  return 1;
}

/* Parse a trusted list into a new array. */
static int parse_trusted(char **trusted, vcg__cidr_t **out, size_t *nout, char *err, size_t errlen) {
  size_t n = 0;
  while (trusted && trusted[n]) n++;
  vcg__cidr_t *t = calloc(n ? n : 1, sizeof *t);
  if (!t) { snprintf(err, errlen, "out of memory"); return VCG_ENOMEM; }
  for (size_t i = 0; i < n; i++) {
    if (vcg__cidr_parse(trusted[i], &t[i]) != 0) {
      snprintf(err, errlen, "core.trusted_addresses: '%s' is not an address or CIDR", trusted[i]);
      free(t);
      return VCG_EINVAL;
    }
  }
  *out = t;
  *nout = n;
  return 0;
}

int vcg__limits_init(vcg__limits_t *l, long max_total, long max_per_ip,
                     char **trusted, char *err, size_t errlen) {
  memset(l, 0, sizeof *l);
  atomic_init(&l->total, 0);
  atomic_init(&l->max_total, max_total);
  atomic_init(&l->max_per_ip, max_per_ip);
  uint64_t seed = 0;
  /* Addresses are the client's choice (IPv6 especially): a random seed
   * keeps them from being aimed at one chain. */
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = (uint64_t)(uintptr_t)l;
  if (parse_trusted(trusted, &l->trusted, &l->ntrusted, err, errlen) != 0) return VCG_EINVAL;
  if (vcg_htab_init(&l->by_addr, 1024, seed) != 0) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  if (uv_mutex_init(&l->lock) != 0) { snprintf(err, errlen, "mutex init failed"); goto fail; }
  return 0;
fail:
  free(l->trusted);
  vcg_htab_free(&l->by_addr);
  l->trusted = NULL;
  return VCG_EINVAL;
}

int vcg__limits_update(vcg__limits_t *l, long max_total, long max_per_ip, char **trusted,
                       char *err, size_t errlen) {
  vcg__cidr_t *t;
  size_t n;
  if (parse_trusted(trusted, &t, &n, err, errlen) != 0) return VCG_EINVAL;
  uv_mutex_lock(&l->lock);
  vcg__cidr_t *old = l->trusted;
  l->trusted = t;
  l->ntrusted = n;
  uv_mutex_unlock(&l->lock);
  free(old);
  atomic_store(&l->max_total, max_total);
  atomic_store(&l->max_per_ip, max_per_ip);
  return 0;
}

void vcg__limits_free(vcg__limits_t *l) {
  if (!l->by_addr.b) return;
  vcg_hnode_t *n;
  while ((n = vcg_htab_pop(&l->by_addr)) != NULL) free(vcg_container_of(n, vcg__ipcount_t, node));
  vcg_htab_free(&l->by_addr);
  free(l->trusted);
  uv_mutex_destroy(&l->lock);
  memset(l, 0, sizeof *l);
}

static int trusted(const vcg__limits_t *l, const struct sockaddr *sa) {
  for (size_t i = 0; i < l->ntrusted; i++)
    if (vcg__cidr_match(&l->trusted[i], sa)) return 1;
  return 0;
}

static int key_eq(const vcg_hnode_t *n, const void *key) {
  return memcmp(vcg_container_of(n, vcg__ipcount_t, node)->key, key, 17) == 0;
}

int vcg__limits_acquire(vcg__limits_t *l, const struct sockaddr *sa, int *counted) {
  *counted = 0;
  if (atomic_fetch_add(&l->total, 1) >= atomic_load(&l->max_total)) {
    atomic_fetch_sub(&l->total, 1);
    return VCG_EBUSY;
  }
  uint8_t key[17] = { 0 };
  int fam = addr_bytes(sa, key + 1);
  if (!fam) return 0;
  key[0] = (uint8_t)fam;
  uint64_t h = vcg_hash(key, sizeof key, l->by_addr.seed);
  int rc = 0;
  uv_mutex_lock(&l->lock);
  if (trusted(l, sa)) {
    uv_mutex_unlock(&l->lock);
    return 0;
  }
  vcg_hnode_t *hn = vcg_htab_find(&l->by_addr, h, key_eq, key);
  vcg__ipcount_t *e = hn ? vcg_container_of(hn, vcg__ipcount_t, node) : NULL;
  if (!e) {
    e = calloc(1, sizeof *e);
    if (!e) rc = VCG_ENOMEM;
    else { memcpy(e->key, key, sizeof key); vcg_htab_insert(&l->by_addr, &e->node, h); }
  }
  if (e && e->count >= atomic_load(&l->max_per_ip)) rc = VCG_EAGAIN;
  else if (e) { e->count++; *counted = 1; }
  if (e && e->count == 0) { vcg_htab_remove(&l->by_addr, &e->node); free(e); }
  uv_mutex_unlock(&l->lock);
  if (rc) atomic_fetch_sub(&l->total, 1);
  return rc;
}

void vcg__limits_release(vcg__limits_t *l, const struct sockaddr *sa, int counted) {
  atomic_fetch_sub(&l->total, 1);
  if (!counted) return;
  uint8_t key[17] = { 0 };
  int fam = addr_bytes(sa, key + 1);
  key[0] = (uint8_t)fam;
  uv_mutex_lock(&l->lock);
  vcg_hnode_t *hn = vcg_htab_find(&l->by_addr, vcg_hash(key, sizeof key, l->by_addr.seed), key_eq, key);
  vcg__ipcount_t *e = hn ? vcg_container_of(hn, vcg__ipcount_t, node) : NULL;
  if (e && --e->count == 0) {
    vcg_htab_remove(&l->by_addr, &e->node);
    free(e);
  }
  uv_mutex_unlock(&l->lock);
}
