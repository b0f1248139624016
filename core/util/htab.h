/*
 * htab.h -- one small intrusive hash table for the core and the in-tree
 * plugins (rooms, QUIC connection ids, the NATS bus's rooms, the in-process
 * hub, sessions by id).
 *
 * Header-only on purpose: plugins never link against core symbols, so a
 * table they share with the core must be code they compile themselves.
 * Nothing here crosses the plugin ABI; it is not installed.
 *
 * Intrusive: the caller embeds a vcg_hnode_t in its own record and the
 * table links those nodes, so an insert allocates nothing but (sometimes) a
 * larger bucket array, and a record can be removed in O(1) without a
 * lookup.  The node keeps the full 64-bit hash, so chains are compared by
 * hash first and keys are compared only on a hash match.
 *
 * Buckets are a power of two; the table doubles when entries outnumber
 * buckets (load factor <= 1) and never shrinks.  A failed grow is not an
 * error: the table keeps working with longer chains.
 *
 * Keys chosen by clients (room names, connection ids) are hashed with a
 * per-table random seed so nobody can aim many keys at one chain without
 * knowing it: vcg_hash() is FNV-1a over seed-derived state with a strong
 * 64-bit finaliser, which spreads keys well and is cheap on short keys.
 */
#ifndef VCG_UTIL_HTAB_H
#define VCG_UTIL_HTAB_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct vcg_hnode {
  struct vcg_hnode *next;   /* chain; owned by the table while linked */
  uint64_t hash;
} vcg_hnode_t;

typedef struct vcg_htab {
  vcg_hnode_t **b;          /* nb chains */
  size_t nb, n;
  uint64_t seed;
} vcg_htab_t;

/* The record that contains node `ptr` as member `member`. */
#define vcg_container_of(ptr, type, member) \
  ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* 64-bit finaliser (the MurmurHash3 fmix64 constants): every input bit
 * affects every output bit, so masking to the low bits is safe. */
static inline uint64_t vcg_hash_mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

static inline uint64_t vcg_hash(const void *key, size_t len, uint64_t seed) {
  const unsigned char *p = (const unsigned char *)key;
  uint64_t h = 1469598103934665603ull ^ vcg_hash_mix(seed + len);
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return vcg_hash_mix(h ^ seed);
}

static inline uint64_t vcg_hash_str(const char *s, uint64_t seed) {
  size_t n = 0;
  while (s[n]) n++;
  return vcg_hash(s, n, seed);
}

/* nb: initial buckets, rounded up to a power of two (at least 8).  seed:
 * 0 for keys the server chooses, random for keys clients choose.
 * Returns 0 or -12 (ENOMEM). */
static inline int vcg_htab_init(vcg_htab_t *t, size_t nb, uint64_t seed) {
  size_t n = 8;
  while (n < nb) n <<= 1;
  t->b = (vcg_hnode_t **)calloc(n, sizeof(*t->b));
  t->nb = t->b ? n : 0;
  t->n = 0;
  t->seed = seed;
  return t->b ? 0 : -12;
}

/* Frees the bucket array only: the records belong to the caller, who
 * empties the table first (vcg_htab_pop()) when it owns them. */
static inline void vcg_htab_free(vcg_htab_t *t) {
  free(t->b);
  t->b = NULL;
  t->nb = t->n = 0;
}

static inline void vcg_htab__grow(vcg_htab_t *t) {
  size_t nb = t->nb * 2;
  vcg_hnode_t **b = (vcg_hnode_t **)calloc(nb, sizeof(*b));
  if (!b) return;
  for (size_t i = 0; i < t->nb; i++) {
    vcg_hnode_t *x = t->b[i];
    while (x) {
      vcg_hnode_t *nx = x->next;
      size_t k = (size_t)x->hash & (nb - 1);
      x->next = b[k];
      b[k] = x;
      x = nx;
    }
  }
  free(t->b);
  t->b = b;
  t->nb = nb;
}

/* Link n under hash (the caller has checked that the key is absent). */
static inline void vcg_htab_insert(vcg_htab_t *t, vcg_hnode_t *n, uint64_t hash) {
  if (t->n + 1 > t->nb) vcg_htab__grow(t);
  size_t k = (size_t)hash & (t->nb - 1);
  n->hash = hash;
  n->next = t->b[k];
  t->b[k] = n;
  t->n++;
}

/* First node whose hash is `hash` and for which eq(node, key) is true, or
 * NULL.  eq is usually a static function the compiler inlines. */
static inline vcg_hnode_t *vcg_htab_find(const vcg_htab_t *t, uint64_t hash,
                                         int (*eq)(const vcg_hnode_t *, const void *),
                                         const void *key) {
  vcg_hnode_t *x = t->b[(size_t)hash & (t->nb - 1)];
  for (; x; x = x->next)
    if (x->hash == hash && eq(x, key)) return x;
  return NULL;
}

/* Unlink n (linked in t).  Returns 0, or -2 (ENOENT) when it is not. */
static inline int vcg_htab_remove(vcg_htab_t *t, vcg_hnode_t *n) {
  vcg_hnode_t **pp = &t->b[(size_t)n->hash & (t->nb - 1)];
  while (*pp && *pp != n) pp = &(*pp)->next;
  if (!*pp) return -2;
  *pp = n->next;
  n->next = NULL;
  t->n--;
  return 0;
}

/* Unlink and return any one node, NULL when empty: for emptying a table
 * whose records the caller frees. */
static inline vcg_hnode_t *vcg_htab_pop(vcg_htab_t *t) {
  for (size_t i = 0; t->n && i < t->nb; i++) {
    vcg_hnode_t *x = t->b[i];
    if (x) {
      t->b[i] = x->next;
      x->next = NULL;
      t->n--;
      return x;
    }
  }
  return NULL;
}

/* Iterate: size_t i = 0;
 *   for (vcg_hnode_t *x = vcg_htab_next(t, &i, NULL); x; x = vcg_htab_next(t, &i, x))
 * The loop body must not insert or remove nodes. */
static inline vcg_hnode_t *vcg_htab_next(const vcg_htab_t *t, size_t *i, vcg_hnode_t *x) {
  if (x && x->next) return x->next;
  if (x) (*i)++;
  for (; *i < t->nb; (*i)++)
    if (t->b[*i]) return t->b[*i];
  return NULL;
}

#endif /* VCG_UTIL_HTAB_H */
