#include "room.h"
#include <stdlib.h>
#include <string.h>

static size_t hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ull; }
  return (size_t)h;
}

int vcg__rooms_init(vcg__rooms_t *r) {
  r->nb = 64;
  r->count = 0;
  r->b = calloc(r->nb, sizeof *r->b);
  return r->b ? 0 : VCG_ENOMEM;
}

void vcg__rooms_free(vcg__rooms_t *r) {
  for (size_t i = 0; r->b && i < r->nb; i++) {
    vcg__room_t *x = r->b[i];
    while (x) {
      vcg__room_t *nx = x->next;
      free(x->m); free(x->name); free(x->creator); free(x);
      x = nx;
    }
  }
  free(r->b);
  memset(r, 0, sizeof *r);
}

vcg__room_t *vcg__room_find(vcg__rooms_t *r, const char *name) {
  vcg__room_t *x = r->b[hash(name) & (r->nb - 1)];
  while (x && strcmp(x->name, name) != 0) x = x->next;
  return x;
}

/* Keep the load factor under 1 so lookups stay O(1). */
static void grow(vcg__rooms_t *r) {
  size_t nb = r->nb * 2;
  vcg__room_t **b = calloc(nb, sizeof *b);
  if (!b) return; /* keep working with longer chains */
  for (size_t i = 0; i < r->nb; i++) {
    vcg__room_t *x = r->b[i];
    while (x) {
      vcg__room_t *nx = x->next;
      size_t k = hash(x->name) & (nb - 1);
      x->next = b[k];
      b[k] = x;
      x = nx;
    }
  }
  free(r->b);
  r->b = b;
  r->nb = nb;
}

vcg__room_t *vcg__room_get(vcg__rooms_t *r, const char *name, uint64_t now_ms, int *created) {
  *created = 0;
  vcg__room_t *x = vcg__room_find(r, name);
  if (x) return x;
  x = calloc(1, sizeof *x);
  if (!x || !(x->name = strdup(name))) { free(x); return NULL; }
  x->start_ms = now_ms;
  if (r->count + 1 > r->nb) grow(r);
  size_t k = hash(name) & (r->nb - 1);
  x->next = r->b[k];
  r->b[k] = x;
  r->count++;
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
  vcg__room_t **pp = &r->b[hash(room->name) & (r->nb - 1)];
  while (*pp && *pp != room) pp = &(*pp)->next;
  if (*pp) { *pp = room->next; r->count--; }
  free(room->m); free(room->name); free(room->creator); free(room);
}
