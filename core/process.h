/* The running process: plugins' process-wide state, the worker loops, the
 * admin listener, and the signals (SIGTERM/SIGINT drain, SIGHUP reload),
 * all driven from the main thread's loop. */
#ifndef VCG_PROCESS_H
#define VCG_PROCESS_H
#include "conf.h"

/* Run on cfg (malloc'ed, owned from here on: a reload replaces and frees
 * it) until the process stops.  dirs: the plugin search path for
 * reloads; file: the configuration file a reload reads again (NULL: the
 * embedded default); level: the -l override (NULL).  Returns the exit
 * status. */
int vcg__process_run(vcg__config_t *cfg, const char *const *dirs, const char *file,
                     const char *level);
#endif
