#include "room.h"
#include <stdlib.h>
#include <string.h>

int vcg__rooms_init(vcg__rooms_t *r, uint64_t seed) {
  return vcg_htab_init(&r->t, 64, seed) == 0 ? 0 : VCG_ENOMEM;
}

static void room_free(vcg__room_t *x) {
  free(x->m);
  free(x->name);
  free(x->creator);
  free(x);
}

void vcg__rooms_free(vcg__rooms_t *r) {
  vcg_hnode_t *n;
  while ((n = vcg_htab_pop(&r->t)) != NULL) room_free(vcg_container_of(n, vcg__room_t, node));
  vcg_htab_free(&r->t);
}

static int room_eq(const vcg_hnode_t *n, const void *name) {
  return strcmp(vcg_container_of(n, vcg__room_t, node)->name, name) == 0;
}

vcg__room_t *vcg__room_find(vcg__rooms_t *r, const char *name) {
  vcg_hnode_t *n = vcg_htab_find(&r->t, vcg_hash_str(name, r->t.seed), room_eq, name);
  return n ? vcg_container_of(n, vcg__room_t, node) : NULL;
}

vcg__room_t *vcg__room_get(vcg__rooms_t *r, const char *name, uint64_t now_ms, int *created) {
  *created = 0;
  vcg__room_t *x = vcg__room_find(r, name);
  if (x) return x;
  x = calloc(1, sizeof *x);
  if (!x || !(x->name = strdup(name))) { free(x); return NULL; }
  x->start_ms = now_ms;
  vcg_htab_insert(&r->t, &x->node, vcg_hash_str(name, r->t.seed));
  *created = 1;
  return x;
}

int vcg__room_add(vcg__room_t *room, vcg_session_t *s, uint32_t *idx) {
  if (room->n == room->cap) {
    uint32_t cap = room->cap ? room->cap * 2 : 8;
    vcg_session_t **m = realloc(room->m, cap * sizeof *m);
    if (!m) return VCG_ENOMEM;
    room->m = m;
    room->cap = cap;
  }
  *idx = room->n;
  room->m[room->n++] = s;
  return 0;
}

uint32_t vcg__room_remove(vcg__room_t *room, uint32_t idx, vcg_session_t **moved) {
  *moved = NULL;
  if (room->busy) {
    room->m[idx] = NULL;
    room->holes++;
  } else {
    room->n--;
    if (idx != room->n) {
      room->m[idx] = room->m[room->n];
      *moved = room->m[idx];
    }
  }
  return vcg__room_live(room);
}

void vcg__room_compact(vcg__room_t *room, vcg__room_slot_fn slot) {
  if (room->busy || !room->holes) return;
  uint32_t j = 0;
  for (uint32_t i = 0; i < room->n; i++) {
    if (!room->m[i]) continue;
    if (i != j) { room->m[j] = room->m[i]; slot(room->m[j], j); }
    j++;
  }
  room->n = j;
  room->holes = 0;
}

void vcg__room_destroy(vcg__rooms_t *r, vcg__room_t *room) {
  vcg_htab_remove(&r->t, &room->node);
  room_free(room);
}
