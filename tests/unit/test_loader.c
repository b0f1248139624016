/* The plugin loader: ABI negotiation and every refusal, each naming the
 * file and the reason. */
#include <string.h>
#include "loader.h"
#include "tap.h"

static char err[1024];

static const char *plugin(const char *name) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s.so", TEST_PLUGIN_DIR, name);
  return path;
}

/* Load must fail with a message naming the file and containing needle. */
static void refused(const char *name, const char *needle) {
  vcg__plugin_t *p = NULL;
  const char *path = plugin(name);
  int rc = vcg__plugin_load(path, VCG_PLUGIN_TRANSPORT, &p, err, sizeof err);
  if (rc == 0) vcg__plugin_unload(p);
  CHECK(rc != 0, "%s was refused", name);
  CHECK(strstr(err, path) != NULL, "the message names the file: %s", err);
  CHECK(strstr(err, needle) != NULL, "the message says '%s': %s", needle, err);
}

TEST(valid_plugin_loads) {
  vcg__plugin_t *p = NULL;
  CHECK_EQ(vcg__plugin_load(plugin("test_good"), VCG_PLUGIN_TRANSPORT, &p, err, sizeof err), 0);
  CHECK_STREQ(p->desc->name, "test_good");
  CHECK(p->ops.start && p->ops.stop && p->ops.drain, "the common members are taken");
  vcg__plugin_unload(p);
}

TEST(kind_must_match) {
  vcg__plugin_t *p = NULL;
  CHECK(vcg__plugin_load(plugin("test_good"), VCG_PLUGIN_BUS, &p, err, sizeof err) != 0, "refused");
  CHECK(strstr(err, "is a transport plugin, expected a bus plugin") != NULL, "%s", err);
}

TEST(older_minor_loads_with_new_members_null) {
  vcg__plugin_t *p = NULL;
  CHECK_EQ(vcg__plugin_load(plugin("test_oldminor"), VCG_PLUGIN_TRANSPORT, &p, err, sizeof err), 0);
  if (!p) return;
  CHECK_EQ(p->desc->abi_minor, 1);
  CHECK(p->restart_options == NULL, "a 1.1 plugin's restart_options reads as NULL");
  vcg__plugin_unload(p);
}

TEST(newer_minor_refused) { refused("test_newminor", "built for newer plugin ABI 1.99"); }
TEST(other_major_refused) { refused("test_badabi", "wrong major"); }
TEST(missing_member_refused) { refused("test_nosend", "missing mandatory member 'transport.send'"); }
TEST(no_entry_symbol_refused) {
  refused("test_notplugin", "not a vcgate plugin (no vcg_plugin_entry symbol)");
}
TEST(bad_magic_refused) { refused("test_badmagic", "bad descriptor magic"); }
TEST(missing_file_refused) { refused("does_not_exist", "cannot load"); }

TEST(search_path) {
  char path[512];
  const char *dirs[] = { "/nonexistent", TEST_PLUGIN_DIR, NULL };
  CHECK_EQ(vcg__plugin_find("test_good", dirs, path, sizeof path), 0);
  CHECK(strstr(path, TEST_PLUGIN_DIR) != NULL, "found in %s", path);
  CHECK_EQ(vcg__plugin_find("nope", dirs, path, sizeof path), VCG_ENOENT);
}

int main(void) {
  RUN(valid_plugin_loads, "a valid plugin loads");
  RUN(kind_must_match, "the kind must match the slot");
  RUN(older_minor_loads_with_new_members_null, "a plugin built for an older minor loads, newer members NULL");
  RUN(newer_minor_refused, "a plugin built for a newer minor is refused by name");
  RUN(other_major_refused, "a plugin built for another major is refused by name");
  RUN(missing_member_refused, "a missing mandatory member is refused by name");
  RUN(no_entry_symbol_refused, "a shared object without the entry symbol is refused");
  RUN(bad_magic_refused, "a descriptor without the magic is refused");
  RUN(missing_file_refused, "a missing file is refused");
  RUN(search_path, "plugins are found along the search path");
  return TAP_DONE();
}
