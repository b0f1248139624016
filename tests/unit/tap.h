/* Minimal TAP output for the C unit tests: one "ok"/"not ok" line per
 * check, counted by automake's tap-driver (and by .ci/run). */
#ifndef VCG_TAP_H
#define VCG_TAP_H
#include <stdio.h>
static int tap_n, tap_failed;
#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    int ok_ = !!(cond);                                                    \
    printf("%sok %d - ", ok_ ? "" : "not ", ++tap_n);                      \
    printf(__VA_ARGS__);                                                   \
    printf("\n");                                                          \
    if (!ok_) { tap_failed++; printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); } \
  } while (0)
#define TAP_DONE() (printf("1..%d\n", tap_n), tap_failed ? 1 : 0)
#endif
