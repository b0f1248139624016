/* Workers: one libuv loop per thread, its plugin instances, its rooms.
 * main.c makes, starts, drains, stops and joins them; the rest of the core
 * only tells a worker that one of its sessions is gone. */
#ifndef VCG_WORKER_H
#define VCG_WORKER_H
#include "core.h"

int vcg__worker_init(vcg__worker_t *w, vcg__process_t *proc, unsigned index);
int vcg__worker_spawn(vcg__worker_t *w);
/* From the main thread: begin the drain, or stop at once. */
void vcg__worker_request_drain(vcg__worker_t *w);
void vcg__worker_request_stop(vcg__worker_t *w);
void vcg__worker_join(vcg__worker_t *w);
/* Separate from join so main can read the counters of stopped workers. */
void vcg__worker_free(vcg__worker_t *w);
/* A session of w closed: a draining worker stops once the last one has. */
void vcg__worker_session_gone(vcg__worker_t *w);
#endif
