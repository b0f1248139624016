/* Minimal TAP for the C unit tests, counted by automake's tap-driver (and
 * by .ci/run).
 *
 * A test file is a list of independent cases, each a function that sets up
 * what it needs and checks one behaviour:
 *
 *   TEST(video_dropped_first) { ... CHECK_EQ(got, 4); ... }
 *   int main(void) {
 *     RUN(video_dropped_first, "video is dropped once the queue is half full");
 *     return TAP_DONE();
 *   }
 *
 * RUN forks, so every case starts from the process as main() left it and
 * no case can see another's state, crash or leak (under ASan each child's
 * leak check runs at its exit).  A case prints one "ok"/"not ok" line;
 * every failed check inside it prints where it failed and, for the _EQ
 * forms, both operands, as libuv's ASSERT_EQ does.  CHECK used outside a
 * case is a TAP line of its own (the older style some files still use). */
#ifndef VCG_TAP_H
#define VCG_TAP_H
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int tap_n, tap_failed;
static int tap_in_case, tap_case_failed;

static void tap__result(int ok, const char *file, int line, const char *expr) {
  if (tap_in_case) {
    if (!ok) {
      tap_case_failed++;
      printf("#   failed at %s:%d: %s\n", file, line, expr);
    }
    return;
  }
  if (!ok) tap_failed++;
}

#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    int ok_ = !!(cond);                                                    \
    if (!tap_in_case) {                                                    \
      printf("%sok %d - ", ok_ ? "" : "not ", ++tap_n);                    \
      printf(__VA_ARGS__);                                                 \
      printf("\n");                                                        \
      if (!ok_) printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    } else if (!ok_) {                                                     \
      printf("#   ");                                                      \
      printf(__VA_ARGS__);                                                 \
      printf("\n");                                                        \
    }                                                                      \
    tap__result(ok_, __FILE__, __LINE__, #cond);                           \
  } while (0)

/* Integer comparisons that print both operands when they fail. */
#define CHECK_CMP_(a, op, b, T, fmt)                                       \
  do {                                                                     \
    T a_ = (T)(a), b_ = (T)(b);                                            \
    int ok_ = a_ op b_;                                                    \
    if (!ok_ && tap_in_case)                                               \
      printf("#   %s %s %s: %" fmt " vs %" fmt "\n", #a, #op, #b, a_, b_);  \
    if (!tap_in_case) {                                                    \
      printf("%sok %d - %s %s %s\n", ok_ ? "" : "not ", ++tap_n, #a, #op, #b); \
      if (!ok_) printf("#   %" fmt " vs %" fmt "\n", a_, b_);              \
    }                                                                      \
    tap__result(ok_, __FILE__, __LINE__, #a " " #op " " #b);               \
  } while (0)
#define CHECK_EQ(a, b) CHECK_CMP_(a, ==, b, intmax_t, PRIdMAX)
#define CHECK_NE(a, b) CHECK_CMP_(a, !=, b, intmax_t, PRIdMAX)
#define CHECK_LT(a, b) CHECK_CMP_(a, <, b, intmax_t, PRIdMAX)
#define CHECK_LE(a, b) CHECK_CMP_(a, <=, b, intmax_t, PRIdMAX)
#define CHECK_GE(a, b) CHECK_CMP_(a, >=, b, intmax_t, PRIdMAX)
#define CHECK_GT(a, b) CHECK_CMP_(a, >, b, intmax_t, PRIdMAX)
#define CHECK_UEQ(a, b) CHECK_CMP_(a, ==, b, uintmax_t, PRIuMAX)

#define CHECK_STREQ(a, b)                                                  \
  do {                                                                     \
    const char *a_ = (a), *b_ = (b);                                       \
    int ok_ = a_ && b_ && strcmp(a_, b_) == 0;                             \
    if (!ok_ && tap_in_case)                                               \
      printf("#   %s == %s: \"%s\" vs \"%s\"\n", #a, #b, a_ ? a_ : "(null)", \
             b_ ? b_ : "(null)");                                          \
    if (!tap_in_case)                                                      \
      printf("%sok %d - %s == %s\n", ok_ ? "" : "not ", ++tap_n, #a, #b);  \
    tap__result(ok_, __FILE__, __LINE__, #a " == " #b);                    \
  } while (0)

#define TEST(name) static void name(void)

/* Run one case in a child process: one TAP line for the case. */
static void tap__run(void (*fn)(void), const char *name, const char *desc) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    tap_in_case = 1;
    tap_case_failed = 0;
    fn();
    fflush(stdout);
    exit(tap_case_failed ? 1 : 0);
  }
  int st = 0, ok = 0;
  if (pid > 0 && waitpid(pid, &st, 0) == pid)
    ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
  if (pid > 0 && WIFSIGNALED(st)) printf("#   %s: killed by signal %d\n", name, WTERMSIG(st));
  else if (pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) > 1)
    printf("#   %s: exited with status %d\n", name, WEXITSTATUS(st));
  if (pid < 0) printf("#   %s: fork failed\n", name);
  printf("%sok %d - %s\n", ok ? "" : "not ", ++tap_n, desc);
  if (!ok) tap_failed++;
}
#define RUN(fn, desc) tap__run(fn, #fn, desc)

#define TAP_DONE() (printf("1..%d\n", tap_n), tap_failed ? 1 : 0)
#endif
