/* Configuration checking: every problem reported as file:line: option:
 * reason, defaults applied, plugins' option tables enforced. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "conf.h"
#include "tap.h"

static const char *dirs[] = { TEST_PLUGIN_DIR, NULL };

static char path[64];
static void write_conf(const char *text) {
  strcpy(path, "/tmp/vcg-test-XXXXXX");
  int fd = mkstemp(path);
  ssize_t n = write(fd, text, strlen(text));
  (void)n;
  close(fd);
}

static int has(const vcg__errs_t *e, const char *needle) {
  for (size_t i = 0; i < e->n; i++)
    if (strstr(e->line[i], needle)) return 1;
  return 0;
}

int main(void) {
  vcg__config_t c;
  vcg__errs_t e = { 0 };
  char want[256];

  write_conf("core = {\n  workers = 0;\n  nonsense = 3;\n  queue_max_bytes = \"big\";\n"
             "  log_level = \"loud\";\n};\n"
             "transports = ( { plugin = \"test_good\"; port = 99999; colour = \"red\"; } );\n"
             "bus = { plugin = \"test_good\"; };\nextra = 1;\n");
  int n = vcg__config_load(&c, path, NULL, dirs, &e);
  for (size_t i = 0; i < e.n; i++) printf("# %s\n", e.line[i]);
  snprintf(want, sizeof want, "%s:2: core.workers: 0 is out of range [1, 64]", path);
  CHECK(has(&e, want), "out-of-range integer names file, line and option");
  snprintf(want, sizeof want, "%s:3: core.nonsense: unknown option", path);
  CHECK(has(&e, want), "unknown core option is an error with its line");
  snprintf(want, sizeof want, "%s:4: core.queue_max_bytes: expected an integer", path);
  CHECK(has(&e, want), "wrong type is an error with its line");
  snprintf(want, sizeof want, "%s:5: core.log_level: 'loud' is not one of", path);
  CHECK(has(&e, want), "bad log level is an error with its line");
  snprintf(want, sizeof want, "%s:7: transports[0].port: 99999 is out of range [1, 65535]", path);
  CHECK(has(&e, want), "a plugin's own option is range-checked by its table");
  snprintf(want, sizeof want, "%s:7: transports[0].colour: unknown option", path);
  CHECK(has(&e, want), "unknown plugin option is an error");
  snprintf(want, sizeof want, "%s:8: bus.plugin:", path);
  CHECK(has(&e, want) && has(&e, "expected a bus plugin"), "a transport plugin in the bus slot is refused");
  snprintf(want, sizeof want, "%s:9: extra: unknown option", path);
  CHECK(has(&e, want), "unknown top-level setting is an error");
  CHECK(n == (int)e.n && n >= 8, "the error count matches the lines reported (%d)", n);
  vcg__config_free(&c);
  vcg__errs_free(&e);
  unlink(path);

  write_conf("core = { workers = 2; };\ntransports = ( { plugin = \"test_good\"; } );\n");
  n = vcg__config_load(&c, path, NULL, dirs, &e);
  CHECK(n == 0, "a minimal valid config loads");
  CHECK(c.core.workers == 2 && c.core.max_message_size == 1048576 &&
        c.core.trusted_addresses && strcmp(c.core.trusted_addresses[0], "127.0.0.0/8") == 0 &&
        strcmp(c.core.trusted_addresses[1], "::1") == 0 && !c.core.trusted_addresses[2],
        "defaults fill unset options (trusted addresses exempt loopback)");
  CHECK(c.ntransports == 1 && strcmp(c.transports[0].name, "test_good") == 0 && !c.bus.loaded,
        "one transport, named after its plugin, and no bus");
  CHECK(*(int64_t *)c.transports[0].conf == 8080, "the plugin's conf gets its table defaults");
  vcg__config_free(&c);
  vcg__errs_free(&e);
  unlink(path);

  write_conf("transports = ( { plugin = \"test_good\"; },\n  { plugin = \"test_good\"; } );\n");
  n = vcg__config_load(&c, path, NULL, dirs, &e);
  CHECK(n == 1 && has(&e, "duplicate instance name 'test_good'"),
        "two instances with one name are refused (name them)");
  vcg__config_free(&c);
  vcg__errs_free(&e);
  unlink(path);

  write_conf("core = { workers = 1\n");
  n = vcg__config_load(&c, path, NULL, dirs, &e);
  snprintf(want, sizeof want, "%s:2: syntax error", path);
  CHECK(n == 1 && has(&e, want), "a syntax error names its line");
  vcg__config_free(&c);
  vcg__errs_free(&e);
  unlink(path);

  n = vcg__config_load(&c, "/nonexistent/vcgate.conf", NULL, dirs, &e);
  CHECK(n == 1 && has(&e, "/nonexistent/vcgate.conf: cannot read"), "a missing file is reported");
  vcg__config_free(&c);
  vcg__errs_free(&e);

  write_conf("core = { trusted_addresses = (\"10.0.0.0/8\", 5); };\n"
             "transports = ( { plugin = \"test_good\"; } );\n");
  n = vcg__config_load(&c, path, NULL, dirs, &e);
  CHECK(n == 1 && has(&e, "core.trusted_addresses: element 1 is not a string"),
        "a list with a non-string element is refused");
  vcg__config_free(&c);
  vcg__errs_free(&e);
  unlink(path);
  write_conf("core = {\n  log_format = \"xml\";\n  trusted_addresses = [\"10.0.0.0/8\", \"10.0.0.0/99\"];\n};\n"
             "transports = ( { plugin = \"test_good\"; } );\n");
  n = vcg__config_load(&c, path, NULL, dirs, &e);
  snprintf(want, sizeof want, "%s:2: core.log_format: 'xml' is not one of plain, json", path);
  CHECK(has(&e, want), "a bad log format names its line");
  snprintf(want, sizeof want, "%s:3: core.trusted_addresses: '10.0.0.0/99' is not an address or CIDR", path);
  CHECK(n == 2 && has(&e, want), "a bad trusted address is reported with its line at load");
  vcg__config_free(&c);
  vcg__errs_free(&e);
  unlink(path);
  return TAP_DONE();
}
