#include "reload.h"
#include <stdio.h>
#include <string.h>

/* Core options that belong to how the process was built at start. */
static const char *const core_restart[] = { "workers", "plugin_dir", NULL };

int vcg__option_needs_restart(const vcg__plugin_t *p, const vcg_option_t *o) {
  const char *const *list = p ? p->restart_options : core_restart;
  if (p && !p->ops.reload) return 1;
  for (; list && *list; list++)
    if (strcmp(*list, o->name) == 0) return 1;
  return 0;
}

/* The value of o in conf, as text, for the message. */
static void show(const vcg_option_t *o, const void *conf, char *buf, size_t len) {
  const char *f = (const char *)conf + o->offset;
  switch (o->type) {
  case VCG_OPT_INT: snprintf(buf, len, "%lld", (long long)*(const int64_t *)f); break;
  case VCG_OPT_BOOL: snprintf(buf, len, "%s", *(const int *)f ? "true" : "false"); break;
  case VCG_OPT_STRING: {
    const char *s = *(char *const *)f;
    snprintf(buf, len, s ? "\"%s\"" : "unset", s);
    break;
  }
  case VCG_OPT_STRLIST: {
    size_t n = (size_t)snprintf(buf, len, "[");
    for (char *const *v = *(char **const *)f; v && *v && n < len; v++)
      n += (size_t)snprintf(buf + n, len - n, "%s\"%s\"", n > 1 ? ", " : "", *v);
    if (n < len) snprintf(buf + n, len - n, "]");
    break;
  }
  default: buf[0] = '\0';
  }
}

static int same(const vcg_option_t *o, const void *a, const void *b) {
  const char *fa = (const char *)a + o->offset, *fb = (const char *)b + o->offset;
  switch (o->type) {
  case VCG_OPT_INT: return *(const int64_t *)fa == *(const int64_t *)fb;
  case VCG_OPT_BOOL: return *(const int *)fa == *(const int *)fb;
  case VCG_OPT_STRING: {
    const char *x = *(char *const *)fa, *y = *(char *const *)fb;
    return x == y || (x && y && strcmp(x, y) == 0);
  }
  case VCG_OPT_STRLIST: {
    char *const *x = *(char **const *)fa, *const *y = *(char **const *)fb;
    for (; x && y && *x && *y; x++, y++)
      if (strcmp(*x, *y) != 0) return 0;
    return (!x || !*x) && (!y || !*y);
  }
  default: return 1;
  }
}

/* Every option of a table that needs a restart and changed. */
static int check_table(const char *file, const char *where, const vcg__plugin_t *p,
                       const vcg_option_t *opts, const void *a, const void *b, vcg__errs_t *errs) {
  int n = 0;
  for (const vcg_option_t *o = opts; o && o->name; o++) {
    if (!vcg__option_needs_restart(p, o) || same(o, a, b)) continue;
    char was[256], now[256];
    show(o, a, was, sizeof was);
    show(o, b, now, sizeof now);
    vcg__errs_add(errs, "%s: %s%s: changed from %s to %s, which needs a restart", file, where,
                  o->name, was, now);
    n++;
  }
  return n;
}

static int check_instance(const char *file, const char *where, const vcg__plugin_conf_t *a,
                          const vcg__plugin_conf_t *b, vcg__errs_t *errs) {
  if (!a->loaded != !b->loaded || (a->loaded && (strcmp(a->plugin, b->plugin) != 0 ||
                                                 strcmp(a->name, b->name) != 0))) {
    vcg__errs_add(errs, "%s: %s: the plugin instance changed (%s to %s), which needs a restart",
                  file, where, a->loaded ? a->name : "none", b->loaded ? b->name : "none");
    return 1;
  }
  if (!a->loaded) return 0;
  char w[80];
  snprintf(w, sizeof w, "%.70s.", where);
  return check_table(file, w, a->loaded, a->loaded->desc->options, a->conf, b->conf, errs);
}

int vcg__reload_check(const vcg__config_t *cur, const vcg__config_t *next, vcg__errs_t *errs) {
  const char *file = next->file;
  int n = check_table(file, "core.", NULL, vcg__core_options, &cur->core, &next->core, errs);
  const char *al = cur->admin_listen ? cur->admin_listen : "", *bl = next->admin_listen ? next->admin_listen : "";
  if (strcmp(al, bl) != 0) {
    vcg__errs_add(errs, "%s: core.admin.listen: changed from \"%s\" to \"%s\", which needs a restart",
                  file, al, bl);
    n++;
  }
  if (cur->ntransports != next->ntransports) {
    vcg__errs_add(errs, "%s: transports: %zu instances, now %zu, which needs a restart", file,
                  cur->ntransports, next->ntransports);
    return n + 1;
  }
  for (size_t i = 0; i < cur->ntransports; i++) {
    char where[40];
    snprintf(where, sizeof where, "transports[%zu]", i);
    n += check_instance(file, where, &cur->transports[i], &next->transports[i], errs);
  }
  n += check_instance(file, "bus", &cur->bus, &next->bus, errs);
  return n;
}

static void carry(vcg__plugin_conf_t *a, vcg__plugin_conf_t *b) {
  if (!a->loaded) return;
  vcg__plugin_t *l = a->loaded;
  a->loaded = b->loaded;
  b->loaded = l;
  if (!l->ops.reload) {
    /* Its options are unchanged (checked) and it keeps reading its conf. */
    void *c = a->conf;
    a->conf = b->conf;
    b->conf = c;
  }
}

void vcg__reload_carry(vcg__config_t *cur, vcg__config_t *next) {
  for (size_t i = 0; i < cur->ntransports; i++) carry(&cur->transports[i], &next->transports[i]);
  carry(&cur->bus, &next->bus);
}
