/* Rooms of one worker: name -> members, O(1) lookup, join and leave.
 * Members are kept in an array so fan-out walks contiguous memory; a
 * member remembers its slot so leaving is a swap with the last slot.  While
 * a fan-out walks the array (busy > 0) leaving only clears the slot, and
 * the array is compacted when the walk ends, because a transport may close
 * a session from inside send(). */
#ifndef VCG_ROOM_H
#define VCG_ROOM_H
#include <stddef.h>
#include <stdint.h>
#include "vcgate/plugin.h"
#include "util/htab.h"

typedef struct vcg__room {
  vcg_hnode_t node;         /* in vcg__rooms_t.t, keyed by name */
  char *name;
  vcg_session_t **m;
  uint32_t n, cap;
  uint32_t holes;
  uint32_t busy;
  uint64_t start_ms;
  char *creator;
} vcg__room_t;

typedef struct vcg__rooms {
  vcg_htab_t t;             /* room names come from clients: seeded */
} vcg__rooms_t;

/* The slot index a session keeps for its room (set by join). */
typedef void (*vcg__room_slot_fn)(vcg_session_t *s, uint32_t idx);

/* seed: random per worker (room names are chosen by clients). */
int vcg__rooms_init(vcg__rooms_t *r, uint64_t seed);
void vcg__rooms_free(vcg__rooms_t *r);
vcg__room_t *vcg__room_find(vcg__rooms_t *r, const char *name);
/* Find or create; *created tells which. NULL on ENOMEM. */
vcg__room_t *vcg__room_get(vcg__rooms_t *r, const char *name, uint64_t now_ms, int *created);
int vcg__room_add(vcg__room_t *room, vcg_session_t *s, uint32_t *idx);
/* Remove the member at idx; `moved` receives the session that took the
 * slot (or NULL).  Returns the remaining live member count. */
uint32_t vcg__room_remove(vcg__room_t *room, uint32_t idx, vcg_session_t **moved);
/* Compact after a walk; calls slot(s, newidx) for each moved member. */
void vcg__room_compact(vcg__room_t *room, vcg__room_slot_fn slot);
void vcg__room_destroy(vcg__rooms_t *r, vcg__room_t *room);
#define vcg__room_live(room) ((room)->n - (room)->holes)
#define vcg__rooms_count(r) ((r)->t.n)
#endif
