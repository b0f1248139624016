/* The Prometheus exposition of the core's counters (stats.h), summed over
 * the workers at the moment of the scrape, and the totals logged at exit
 * from the same sums, so the two always agree. */
#ifndef VCG_METRICS_H
#define VCG_METRICS_H
#include <stddef.h>
#include "core.h"

/* A growable text buffer. */
typedef struct vcg__sbuf {
  char *s;
  size_t len, cap;
  int oom;                 /* an allocation failed: the text is truncated */
} vcg__sbuf_t;
void vcg__sbuf_printf(vcg__sbuf_t *b, const char *fmt, ...) VCG_PRINTF(2, 3);
void vcg__sbuf_free(vcg__sbuf_t *b);

/* Sum the core counters of every worker into *out. */
void vcg__stats_sum(const vcg__process_t *p, vcg__stats_t *out);
/* The text format (version 0.0.4) of every metric into b. */
void vcg__metrics_render(const vcg__process_t *p, vcg__sbuf_t *b);
#endif
