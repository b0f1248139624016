/* The configuration loader (core/conf.c) fed the input as config text.
 * No plugin can be found: the search path is an empty directory made here
 * and the fuzz build's core.plugin_dir does not exist, so every transport
 * and bus group ends in "not found" after its common checks.  A config,
 * however bad, must come back as a count of errors that equals the lines
 * reported, each one non-empty, and free without a leak (libFuzzer's leak
 * check runs after every input that allocated more than it freed). */
#include <string.h>
#include <unistd.h>
#include "conf.h"
#include "fuzz.h"

static char empty_dir[] = "/tmp/vcg-fuzz-plugins-XXXXXX";
static const char *dirs[] = { empty_dir, NULL };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if (!mkdtemp(empty_dir)) abort();
  /* The loader falls back to JWT_SECRET: keep the environment out. */
  unsetenv("JWT_SECRET");
  return 0;
}

static void cleanup(void) { rmdir(empty_dir); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int registered;
  if (!registered++) atexit(cleanup);
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  vcg__config_t c;
  vcg__errs_t e = { 0 };
  int n = vcg__config_load(&c, NULL, text, dirs, &e);
  FUZZ_CHECK(n >= 0 && (size_t)n == e.n, "%d errors counted, %zu reported", n, e.n);
  for (size_t i = 0; i < e.n; i++)
    FUZZ_CHECK(e.line[i] && strlen(e.line[i]) > 2 && strstr(e.line[i], ": "), "error line %zu: '%s'",
               i, e.line[i] ? e.line[i] : "(null)");
  vcg__config_free(&c);
  vcg__errs_free(&e);
  free(text);
  return 0;
}
