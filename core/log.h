/* Logging: one line per event, plain or JSON, each naming what it concerns. */
#ifndef VCG_LOG_H
#define VCG_LOG_H
#include <stdarg.h>
#include <stdint.h>
#include "vcgate/plugin.h"

typedef enum { VCG_LOGFMT_PLAIN = 0, VCG_LOGFMT_JSON = 1 } vcg__logfmt_t;

/* The logger is an explicit object; the process owns one and hands it to
 * every worker.  Level and format are atomics so SIGHUP can change them
 * while workers log. */
typedef struct vcg__log {
  volatile int level;   /* enum vcg_log_level */
  volatile int format;  /* vcg__logfmt_t */
  int fd;               /* usually 2 */
} vcg__log_t;

void vcg__log_init(vcg__log_t *l, int fd);
int vcg__log_parse_level(const char *s);    /* -1 when unknown */
int vcg__log_parse_format(const char *s);   /* -1 when unknown */
/* `who` is the subsystem or plugin name; sid is 0 when no session. */
void vcg__logv(vcg__log_t *l, int level, const char *who, uint64_t sid,
               const char *fmt, va_list ap);
void vcg__logf(vcg__log_t *l, int level, const char *who, uint64_t sid,
               const char *fmt, ...) VCG_PRINTF(5, 6);
#define vcg__log_on(l, lvl) ((lvl) <= (l)->level)
#endif
