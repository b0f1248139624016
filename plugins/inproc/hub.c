/*
 * hub.c -- the room table of the in-process bus (see hub.h).
 */
#include "hub.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vcgate/plugin.h>

#define HUB_MIN_BUCKETS 64u

typedef struct hub_room {
  struct hub_room *next;  /* bucket chain */
  uint32_t hash;
  size_t n, cap;          /* members in use / allocated */
  void **members;         /* owned array; the members themselves are not */
  char name[];            /* owned copy of the room name */
} hub_room_t;

struct vcg__hub {
  pthread_rwlock_t lock;  /* guards everything below */
  hub_room_t **buckets;   /* nbuckets chains; nbuckets is a power of two */
  size_t nbuckets;
  size_t nrooms;
};

/* FNV-1a: room names are short, validated strings; a simple, well-spread
 * hash is enough. */
static uint32_t hub_hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

int vcg__hub_new(vcg__hub_t **out) {
  vcg__hub_t *hub = calloc(1, sizeof(*hub));
  if (hub == NULL) return VCG_ENOMEM;
  hub->buckets = calloc(HUB_MIN_BUCKETS, sizeof(*hub->buckets));
  if (hub->buckets == NULL || pthread_rwlock_init(&hub->lock, NULL) != 0) {
    free(hub->buckets);
    free(hub);
    return VCG_ENOMEM;
  }
  hub->nbuckets = HUB_MIN_BUCKETS;
  *out = hub;
  return 0;
}

void vcg__hub_free(vcg__hub_t *hub) {
  if (hub == NULL) return;
  for (size_t i = 0; i < hub->nbuckets; i++) {
    hub_room_t *r = hub->buckets[i];
    while (r != NULL) {
      hub_room_t *next = r->next;
      free(r->members);
      free(r);
      r = next;
    }
  }
  free(hub->buckets);
  pthread_rwlock_destroy(&hub->lock);
  free(hub);
}

/* Find the chain link that points at room (or at NULL where it would be
 * inserted).  Caller holds the lock. */
static hub_room_t **hub_find(vcg__hub_t *hub, const char *room, uint32_t h) {
  hub_room_t **pp = &hub->buckets[h & (hub->nbuckets - 1)];
  while (*pp != NULL && ((*pp)->hash != h || strcmp((*pp)->name, room) != 0))
    pp = &(*pp)->next;
  return pp;
}

/* Double the bucket array when rooms outnumber buckets, so chains stay
 * short.  A failed allocation only leaves the table denser. */
static void hub_grow(vcg__hub_t *hub) {
  size_t n = hub->nbuckets * 2;
  hub_room_t **b = calloc(n, sizeof(*b));
  if (b == NULL) return;
  for (size_t i = 0; i < hub->nbuckets; i++) {
    hub_room_t *r = hub->buckets[i];
    while (r != NULL) {
      hub_room_t *next = r->next;
      r->next = b[r->hash & (n - 1)];
      b[r->hash & (n - 1)] = r;
      r = next;
    }
  }
  free(hub->buckets);
  hub->buckets = b;
  hub->nbuckets = n;
}

int vcg__hub_join(vcg__hub_t *hub, const char *room, void *member) {
  uint32_t h = hub_hash(room);
  int rc = 0;
  pthread_rwlock_wrlock(&hub->lock);
  hub_room_t **pp = hub_find(hub, room, h);
  hub_room_t *r = *pp;
  if (r == NULL) {
    size_t len = strlen(room);
    r = calloc(1, sizeof(*r) + len + 1);
    if (r == NULL) { rc = VCG_ENOMEM; goto out; }
    memcpy(r->name, room, len + 1);
    r->hash = h;
    *pp = r;
    hub->nrooms++;
  }
  for (size_t i = 0; i < r->n; i++)
    if (r->members[i] == member) goto out;  /* already a member */
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 4;
    void **m = realloc(r->members, cap * sizeof(*m));
    if (m == NULL) {
      rc = VCG_ENOMEM;
      if (r->n == 0) {  /* do not leave an empty room behind */
        *pp = r->next;
        hub->nrooms--;
        free(r->members);
        free(r);
      }
      goto out;
    }
    r->members = m;
    r->cap = cap;
  }
  r->members[r->n++] = member;
  if (hub->nrooms > hub->nbuckets) hub_grow(hub);
out:
  pthread_rwlock_unlock(&hub->lock);
  return rc;
}

/* Remove member from the room at *pp; free the room when it is empty.
 * Caller holds the write lock. */
static int hub_remove(vcg__hub_t *hub, hub_room_t **pp, void *member) {
  hub_room_t *r = *pp;
  for (size_t i = 0; i < r->n; i++) {
    if (r->members[i] != member) continue;
    r->members[i] = r->members[--r->n];  /* order does not matter */
    if (r->n == 0) {
      *pp = r->next;
      hub->nrooms--;
      free(r->members);
      free(r);
    }
    return 0;
  }
  return VCG_ENOENT;
}

int vcg__hub_leave(vcg__hub_t *hub, const char *room, void *member) {
  int rc = VCG_ENOENT;
  pthread_rwlock_wrlock(&hub->lock);
  hub_room_t **pp = hub_find(hub, room, hub_hash(room));
  if (*pp != NULL) rc = hub_remove(hub, pp, member);
  pthread_rwlock_unlock(&hub->lock);
  return rc;
}

void vcg__hub_leave_all(vcg__hub_t *hub, void *member) {
  pthread_rwlock_wrlock(&hub->lock);
  for (size_t i = 0; i < hub->nbuckets; i++) {
    hub_room_t **pp = &hub->buckets[i];
    while (*pp != NULL) {
      hub_room_t *r = *pp;
      /* hub_remove unlinks r when it empties; then *pp already points at
       * the next room, otherwise step past r. */
      if (hub_remove(hub, pp, member) != 0 || *pp == r) pp = &r->next;
    }
  }
  pthread_rwlock_unlock(&hub->lock);
}

size_t vcg__hub_visit(vcg__hub_t *hub, const char *room, const void *skip,
                      vcg__hub_visit_cb cb, void *arg) {
  size_t calls = 0;
  pthread_rwlock_rdlock(&hub->lock);
  hub_room_t *r = *hub_find(hub, room, hub_hash(room));
  if (r != NULL) {
    for (size_t i = 0; i < r->n; i++) {
      if (r->members[i] == skip) continue;
      cb(r->members[i], arg);
      calls++;
    }
  }
  pthread_rwlock_unlock(&hub->lock);
  return calls;
}

size_t vcg__hub_room_count(vcg__hub_t *hub) {
  pthread_rwlock_rdlock(&hub->lock);
  size_t n = hub->nrooms;
  pthread_rwlock_unlock(&hub->lock);
  return n;
}
