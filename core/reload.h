/* Reload (SIGHUP), as nginx and NATS do it: a new configuration generation
 * is loaded and checked like `vcgate -t`, compared with the running one,
 * and swapped in only if nothing that needs a restart changed.
 *
 * What needs a restart: core.workers, core.plugin_dir, core.admin.listen,
 * the set of plugin instances (their plugins, names and order), and the
 * options a plugin names in its restart_options (every option of a plugin
 * without reload()).  Everything else applies to running sessions: limits,
 * log level and format, queue budgets, delays, room-token secrets, and
 * whatever each plugin's reload() takes (TLS certificates, say).
 *
 * Ownership when a reload is accepted: the running plugins (their loaded
 * objects and init() state) move to the new generation; so does the conf
 * of a plugin without reload(), whose options are then unchanged and still
 * in use.  The old generation keeps what it was handed back and is freed
 * once every worker has switched. */
#ifndef VCG_RELOAD_H
#define VCG_RELOAD_H
#include "conf.h"

/* Whether option o needs a restart to change, in plugin p (NULL: core). */
int vcg__option_needs_restart(const vcg__plugin_t *p, const vcg_option_t *o);
/* Compare: one line per change that needs a restart into errs ("FILE:
 * option: changed from X to Y, needs a restart").  Returns how many. */
int vcg__reload_check(const vcg__config_t *cur, const vcg__config_t *next, vcg__errs_t *errs);
/* Move the running plugins (and the confs they keep) from cur to next;
 * cur gets next's fresh copies in exchange.  Call only after a check that
 * found nothing. */
void vcg__reload_carry(vcg__config_t *cur, vcg__config_t *next);
#endif
