/*
 * hub.c -- the room table of the in-process bus (see hub.h).
 */
#include "hub.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <vcgate/plugin.h>
#include "htab.h"

typedef struct hub_room {
  vcg_hnode_t node;       /* in hub->rooms, keyed by name */
  size_t n, cap;          /* members in use / allocated */
  void **members;         /* owned array; the members themselves are not */
  char name[];            /* owned copy of the room name */
} hub_room_t;

struct vcg__hub {
  pthread_rwlock_t lock;  /* guards everything below */
  vcg_htab_t rooms;       /* hub_room_t; room names are validated, but
                             chosen by clients: seeded */
};

int vcg__hub_new(vcg__hub_t **out) {
  vcg__hub_t *hub = calloc(1, sizeof(*hub));
  uint64_t seed = 0;
  if (hub == NULL) return VCG_ENOMEM;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = (uint64_t)(uintptr_t)hub;
  if (vcg_htab_init(&hub->rooms, 64, seed) != 0) {
    free(hub);
    return VCG_ENOMEM;
  }
  if (pthread_rwlock_init(&hub->lock, NULL) != 0) {
    vcg_htab_free(&hub->rooms);
    free(hub);
    return VCG_ENOMEM;
  }
  *out = hub;
  return 0;
}

static void room_free(hub_room_t *r) {
  free(r->members);
  free(r);
}

void vcg__hub_free(vcg__hub_t *hub) {
  vcg_hnode_t *n;
  if (hub == NULL) return;
  while ((n = vcg_htab_pop(&hub->rooms)) != NULL)
    room_free(vcg_container_of(n, hub_room_t, node));
  vcg_htab_free(&hub->rooms);
  pthread_rwlock_destroy(&hub->lock);
  free(hub);
}

static int room_eq(const vcg_hnode_t *n, const void *name) {
  return strcmp(vcg_container_of(n, hub_room_t, node)->name, name) == 0;
}

/* The room named room, or NULL.  Caller holds the lock. */
static hub_room_t *hub_find(vcg__hub_t *hub, const char *room, uint64_t h) {
  vcg_hnode_t *n = vcg_htab_find(&hub->rooms, h, room_eq, room);
  return n ? vcg_container_of(n, hub_room_t, node) : NULL;
}

int vcg__hub_join(vcg__hub_t *hub, const char *room, void *member) {
  uint64_t h = vcg_hash_str(room, hub->rooms.seed);
  int rc = 0;
  pthread_rwlock_wrlock(&hub->lock);
  hub_room_t *r = hub_find(hub, room, h);
  if (r == NULL) {
    size_t len = strlen(room);
    r = calloc(1, sizeof(*r) + len + 1);
    if (r == NULL) { rc = VCG_ENOMEM; goto out; }
    memcpy(r->name, room, len + 1);
    vcg_htab_insert(&hub->rooms, &r->node, h);
  }
  for (size_t i = 0; i < r->n; i++)
    if (r->members[i] == member) goto out;  /* already a member */
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 4;
    void **m = realloc(r->members, cap * sizeof(*m));
    if (m == NULL) {
      rc = VCG_ENOMEM;
      if (r->n == 0) {  /* do not leave an empty room behind */
        vcg_htab_remove(&hub->rooms, &r->node);
        room_free(r);
      }
      goto out;
    }
    r->members = m;
    r->cap = cap;
  }
  r->members[r->n++] = member;
out:
  pthread_rwlock_unlock(&hub->lock);
  return rc;
}

/* Remove member from r; free r when it is empty.  Caller holds the write
 * lock. */
static int hub_remove(vcg__hub_t *hub, hub_room_t *r, void *member) {
  for (size_t i = 0; i < r->n; i++) {
    if (r->members[i] != member) continue;
    r->members[i] = r->members[--r->n];  /* order does not matter */
    if (r->n == 0) {
      vcg_htab_remove(&hub->rooms, &r->node);
      room_free(r);
    }
    return 0;
  }
  return VCG_ENOENT;
}

int vcg__hub_leave(vcg__hub_t *hub, const char *room, void *member) {
  int rc = VCG_ENOENT;
  pthread_rwlock_wrlock(&hub->lock);
  hub_room_t *r = hub_find(hub, room, vcg_hash_str(room, hub->rooms.seed));
  if (r != NULL) rc = hub_remove(hub, r, member);
  pthread_rwlock_unlock(&hub->lock);
  return rc;
}

void vcg__hub_leave_all(vcg__hub_t *hub, void *member) {
  pthread_rwlock_wrlock(&hub->lock);
  /* Removing while iterating is not allowed: collect the rooms first. */
  size_t n = 0, cap = hub->rooms.n, i = 0;
  hub_room_t **mine = cap ? malloc(cap * sizeof(*mine)) : NULL;
  for (vcg_hnode_t *x = vcg_htab_next(&hub->rooms, &i, NULL); x && mine;
       x = vcg_htab_next(&hub->rooms, &i, x)) {
    hub_room_t *r = vcg_container_of(x, hub_room_t, node);
    for (size_t k = 0; k < r->n; k++)
      if (r->members[k] == member) { mine[n++] = r; break; }
  }
  for (size_t k = 0; k < n; k++) hub_remove(hub, mine[k], member);
  free(mine);
  pthread_rwlock_unlock(&hub->lock);
}

size_t vcg__hub_visit(vcg__hub_t *hub, const char *room, const void *skip,
                      vcg__hub_visit_cb cb, void *arg) {
  size_t calls = 0;
  pthread_rwlock_rdlock(&hub->lock);
  hub_room_t *r = hub_find(hub, room, vcg_hash_str(room, hub->rooms.seed));
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
  size_t n = hub->rooms.n;
  pthread_rwlock_unlock(&hub->lock);
  return n;
}
