/* Plugin loader: uv_dlopen, one entry symbol, ABI negotiation. */
#ifndef VCG_LOADER_H
#define VCG_LOADER_H
#include <uv.h>
#include "vcgate/plugin.h"

typedef struct vcg__plugin {
  uv_lib_t lib;
  char *path;
  const vcg_plugin_t *desc;
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
