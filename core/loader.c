#include "loader.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int vcg__plugin_find(const char *name, const char *const *dirs, char *out,
                     size_t outlen) {
  for (size_t i = 0; dirs && dirs[i]; i++) {
    if (!dirs[i][0]) continue;
    int n = snprintf(out, outlen, "%s/%s.so", dirs[i], name);
    if (n > 0 && (size_t)n < outlen && access(out, R_OK) == 0) return 0;
  }
  return VCG_ENOENT;
}

/* Which vtable members a plugin must fill: the loader names the first
 * missing one so the author knows what to add. */
static const char *missing_member(const vcg_plugin_t *d) {
  if (d->kind == VCG_PLUGIN_TRANSPORT) {
    const vcg_transport_ops_t *o = d->transport;
    if (!o) return "transport";
    if (!o->start) return "transport.start";
    if (!o->drain) return "transport.drain";
    if (!o->stop) return "transport.stop";
    if (!o->send) return "transport.send";
    if (!o->close) return "transport.close";
  } else {
    const vcg_bus_ops_t *o = d->bus;
    if (!o) return "bus";
    if (!o->start) return "bus.start";
    if (!o->drain) return "bus.drain";
    if (!o->stop) return "bus.stop";
    if (!o->room_join) return "bus.room_join";
    if (!o->room_leave) return "bus.room_leave";
    if (!o->publish) return "bus.publish";
  }
  if (!d->name || !d->name[0]) return "name";
  if (d->options && d->conf_size == 0) return "conf_size";
  return NULL;
}

static const char *kind_name(int k) {
  return k == VCG_PLUGIN_TRANSPORT ? "transport" : k == VCG_PLUGIN_BUS ? "bus" : "unknown";
}

int vcg__plugin_load(const char *path, int expect, vcg__plugin_t **out,
                     char *err, size_t errlen) {
  vcg__plugin_t *p = calloc(1, sizeof *p);
  if (!p) { snprintf(err, errlen, "%s: out of memory", path); return VCG_ENOMEM; }
  if (uv_dlopen(path, &p->lib) != 0) {
    snprintf(err, errlen, "%s: cannot load: %s", path, uv_dlerror(&p->lib));
    uv_dlclose(&p->lib);
    free(p);
    return VCG_EINVAL;
  }
  vcg_plugin_entry_fn entry = NULL;
  const vcg_plugin_t *d = NULL;
  const char *miss;
  int rc = VCG_EINVAL;
  if (uv_dlsym(&p->lib, VCG_PLUGIN_ENTRY, (void **)&entry) != 0 || !entry) {
    snprintf(err, errlen, "%s: not a vcgate plugin (no %s symbol)", path, VCG_PLUGIN_ENTRY);
    goto fail;
  }
  d = entry(VCG_ABI_MAJOR, VCG_ABI_MINOR);
  if (!d) {
    snprintf(err, errlen, "%s: plugin refused host ABI %d.%d", path, VCG_ABI_MAJOR,
             VCG_ABI_MINOR);
    goto fail;
  }
  if (d->magic != VCG_PLUGIN_MAGIC) {
    snprintf(err, errlen, "%s: not a vcgate plugin (bad descriptor magic)", path);
    goto fail;
  }
  if (d->abi_major != VCG_ABI_MAJOR) {
    snprintf(err, errlen, "%s: built for plugin ABI %u.%u, this vcgate has %d.%d (wrong major)",
             path, d->abi_major, d->abi_minor, VCG_ABI_MAJOR, VCG_ABI_MINOR);
    goto fail;
  }
  if (d->abi_minor > VCG_ABI_MINOR) {
    snprintf(err, errlen, "%s: built for newer plugin ABI %u.%u, this vcgate has %d.%d",
             path, d->abi_major, d->abi_minor, VCG_ABI_MAJOR, VCG_ABI_MINOR);
    goto fail;
  }
  if (d->size < sizeof(vcg_plugin_t)) {
    snprintf(err, errlen, "%s: descriptor too small (%u bytes)", path, d->size);
    goto fail;
  }
  if (d->kind != VCG_PLUGIN_TRANSPORT && d->kind != VCG_PLUGIN_BUS) {
    snprintf(err, errlen, "%s: unknown plugin kind %d", path, (int)d->kind);
    goto fail;
  }
  if ((miss = missing_member(d)) != NULL) {
    snprintf(err, errlen, "%s: missing mandatory member '%s'", path, miss);
    goto fail;
  }
  if (expect && (int)d->kind != expect) {
    snprintf(err, errlen, "%s: plugin '%s' is a %s plugin, expected a %s plugin", path,
             d->name, kind_name(d->kind), kind_name(expect));
    goto fail;
  }
  p->desc = d;
#define VCG__TAKE_OPS(o) \
  p->ops = (vcg__ops_t){ (o)->configure, (o)->init, (o)->start, (o)->reload, (o)->drain, \
                         (o)->stop, (o)->fini }
  if (d->kind == VCG_PLUGIN_TRANSPORT) VCG__TAKE_OPS(d->transport);
  else VCG__TAKE_OPS(d->bus);
#undef VCG__TAKE_OPS
  /* Members appended in a minor are read only from plugins built for it:
   * an older plugin's bytes there were reserved (and may be anything). */
  if (d->abi_minor >= 2) p->restart_options = d->restart_options;
  p->path = strdup(path);
  if (!p->path) { rc = VCG_ENOMEM; snprintf(err, errlen, "%s: out of memory", path); goto fail; }
  *out = p;
  return 0;
fail:
  uv_dlclose(&p->lib);
  free(p);
  return rc;
}

void vcg__plugin_unload(vcg__plugin_t *p) {
  if (!p) return;
  uv_dlclose(&p->lib);
  free(p->path);
  free(p);
}
