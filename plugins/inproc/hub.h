/*
 * hub.h -- the room table of the in-process bus.
 *
 * A hub maps a room name to the set of members (opaque pointers: the
 * inproc plugin stores its per-worker instances) that joined it.  It is
 * shared by every worker loop of one process, so all operations take the
 * hub's read-write lock: joins and leaves write, visits read, which lets
 * the workers publish concurrently.  Room lookup is a hash table (O(1));
 * the member set of a room is a small array, since a room never has more
 * members than the process has workers.
 *
 * The hub knows nothing of the host API, so tests/unit/test_inproc_hub.c
 * links hub.c alone.
 */
#ifndef VCG_INPROC_HUB_H
#define VCG_INPROC_HUB_H

#include <stddef.h>

typedef struct vcg__hub vcg__hub_t;

/* Called for each member of a room during vcg__hub_visit(), under the
 * hub's read lock: it must not call back into the hub. */
typedef void (*vcg__hub_visit_cb)(void *member, void *arg);

/* Create an empty hub into *out.  Returns 0 or VCG_ENOMEM. */
int vcg__hub_new(vcg__hub_t **out);
/* Free the hub and every room still in it (members are not owned). */
void vcg__hub_free(vcg__hub_t *hub);

/* Add member to room (idempotent).  Returns 0 or VCG_ENOMEM. */
int vcg__hub_join(vcg__hub_t *hub, const char *room, void *member);
/* Remove member from room; the room is freed when its last member leaves.
 * Returns 0, or VCG_ENOENT when member was not in room. */
int vcg__hub_leave(vcg__hub_t *hub, const char *room, void *member);
/* Remove member from every room (a worker stopping). */
void vcg__hub_leave_all(vcg__hub_t *hub, void *member);

/* Call cb(member, arg) for every member of room except skip.  Returns the
 * number of calls made. */
size_t vcg__hub_visit(vcg__hub_t *hub, const char *room, const void *skip,
                      vcg__hub_visit_cb cb, void *arg);

/* Number of rooms in the hub (tests and diagnostics). */
size_t vcg__hub_room_count(vcg__hub_t *hub);

#endif /* VCG_INPROC_HUB_H */
