/* The inbox: packets the bus delivers, from the worker's loop or from any
 * thread (queued under a lock and handed to the loop through its
 * uv_async), fanned out to the local members of their room. */
#ifndef VCG_INBOX_H
#define VCG_INBOX_H
#include "core.h"

int vcg__bus_deliver(vcg_worker_t *b, const char *room, uint64_t origin,
                     const uint8_t *data, size_t len);
int vcg__bus_deliver_ts(vcg_worker_t *b, const char *room, uint64_t origin,
                        const uint8_t *data, size_t len);
int vcg__bus_deliver_packet_ts(vcg_worker_t *b, const char *room, uint64_t origin,
                               vcg_packet_t *p);
/* On w's loop: fan out everything other threads queued.  Also releases
 * whatever is left when the worker finishes. */
void vcg__inbox_drain(vcg__worker_t *w);
#endif
