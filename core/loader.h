/* Plugin loader: uv_dlopen, one entry symbol, ABI negotiation. */
#ifndef VCG_LOADER_H
#define VCG_LOADER_H
#include <uv.h>
#include "vcgate/plugin.h"

/* The members both vtables share (VCG__COMMON_OPS), taken at load from
 * whichever vtable the plugin's kind has, so callers need not ask. */
typedef struct vcg__ops {
  int (*configure)(const void *conf, char *err, size_t errlen);
  int (*init)(const vcg_host_api_t *host, const void *conf, vcg_plugin_state_t **state);
  int (*start)(const vcg_host_api_t *host, vcg_plugin_state_t *state, const void *conf,
               vcg_worker_t *w, vcg_instance_t **inst);
  int (*reload)(vcg_instance_t *inst, const void *conf);
  void (*drain)(vcg_instance_t *inst);
  void (*stop)(vcg_instance_t *inst, vcg_stopped_cb cb);
  void (*fini)(vcg_plugin_state_t *state);
} vcg__ops_t;

#ifndef VCG_PLUGIN_DIR
#define VCG_PLUGIN_DIR "/usr/local/lib/vcgate" /* the build passes $(libdir)/vcgate */
#endif

typedef struct vcg__plugin {
  uv_lib_t lib;
  char *path;
  const vcg_plugin_t *desc;
  vcg__ops_t ops;
  const char *const *restart_options; /* NULL unless the plugin is >= 1.2 */
  vcg_plugin_state_t *state;   /* from init(), NULL before */
  int inited;
} vcg__plugin_t;

/* Load and check the plugin at path.  `expect` is the kind the config
 * slot wants (0: any).  On failure returns a negative code and writes a
 * reason naming the file into err; nothing stays loaded. */
int vcg__plugin_load(const char *path, int expect, vcg__plugin_t **out,
                     char *err, size_t errlen);
/* Find NAME.so in dirs (NULL-terminated); writes the path into out. */
int vcg__plugin_find(const char *name, const char *const *dirs, char *out,
                     size_t outlen);
void vcg__plugin_unload(vcg__plugin_t *p);
#endif
