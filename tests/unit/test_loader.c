/* The plugin loader's refusals, each naming the file and the reason. */
#include <string.h>
#include "loader.h"
#include "tap.h"

static int refuse(const char *name, const char *needle, char *err, size_t len) {
  char path[512];
  vcg__plugin_t *p = NULL;
  snprintf(path, sizeof path, "%s/%s.so", TEST_PLUGIN_DIR, name);
  int rc = vcg__plugin_load(path, VCG_PLUGIN_TRANSPORT, &p, err, len);
  printf("# %s\n", err);
  if (rc == 0) { vcg__plugin_unload(p); return 0; }
  return strstr(err, path) && strstr(err, needle);
}

int main(void) {
  char err[1024], path[512];
  vcg__plugin_t *p = NULL;
  snprintf(path, sizeof path, "%s/test_good.so", TEST_PLUGIN_DIR);
  CHECK(vcg__plugin_load(path, VCG_PLUGIN_TRANSPORT, &p, err, sizeof err) == 0 &&
        strcmp(p->desc->name, "test_good") == 0, "a valid plugin loads");
  vcg__plugin_unload(p);
  CHECK(vcg__plugin_load(path, VCG_PLUGIN_BUS, &p, err, sizeof err) != 0 &&
        strstr(err, "is a transport plugin, expected a bus plugin"), "the kind must match the slot");
  CHECK(refuse("test_badabi", "wrong major", err, sizeof err), "a wrong ABI major is refused");
  CHECK(refuse("test_nosend", "missing mandatory member 'transport.send'", err, sizeof err),
        "a missing mandatory member is refused by name");
  CHECK(refuse("test_notplugin", "not a vcgate plugin (no vcg_plugin_entry symbol)", err, sizeof err),
        "a shared object without the entry symbol is refused");
  CHECK(refuse("test_badmagic", "bad descriptor magic", err, sizeof err),
        "a descriptor without the magic is refused");
  CHECK(refuse("does_not_exist", "cannot load", err, sizeof err), "a missing file is refused");
  const char *dirs[] = { "/nonexistent", TEST_PLUGIN_DIR, NULL };
  CHECK(vcg__plugin_find("test_good", dirs, path, sizeof path) == 0 &&
        strstr(path, TEST_PLUGIN_DIR), "plugins are found along the search path");
  return TAP_DONE();
}
