/* loadgen's saturation search: which load (packets/s per sender, or rooms)
 * to try next, from the verdict of the step just run.  Pure, so that
 * tests/unit/test_loadgen.c can walk it through every path.
 *
 * Up by `factor` while steps pass; a failing step is run once more before
 * it counts (one hypervisor stall can spoil a step), unless it failed by
 * far (LG_STEP_FAIL_HARD: no stall explains that).  A step during which
 * loadgen itself fell behind its schedule, or other processes took the
 * server's CPU, measured the machine, not the relay (LG_STEP_INVALID): it
 * is run again, up to LG_SEARCH_MAX_INVALID times, and then counts as
 * failed by far (a loadgen at its own limit is late every time; more
 * reruns would only spend the run's time).  Once a load has
 * failed, the bracket [best passing, lowest failing] is bisected
 * geometrically `refine` times.  When the very first load fails, the
 * search steps down by `factor` until one passes (then bisects up), so a
 * start above a peer's capacity still gives that peer a figure. */
#include <math.h>
#include "lg.h"

void lg_search_init(lg_search_t *s, double start, double factor, double min, double max,
                    long refine, int integer) {
  *s = (lg_search_t){0};
  s->cur = start;
  s->factor = factor;
  s->min = min;
  s->max = max;
  s->refine_left = refine;
  s->integer = integer;
}

static double mid(const lg_search_t *s) {
  double m = sqrt(s->best * s->fail);
  return s->integer ? floor(m + 0.5) : m;
}

double lg_search_next(lg_search_t *s, int verdict, const char **why) {
  double next;
  *why = NULL;
  if (verdict == LG_STEP_FATAL) { *why = "errors"; return 0; }
  if (verdict == LG_STEP_INVALID) {
    if (s->invalid < LG_SEARCH_MAX_INVALID) {
      s->invalid++;
      return s->cur;
    }
    verdict = LG_STEP_FAIL_HARD; /* loadgen cannot keep this load's schedule */
  }
  s->invalid = 0;
  if (verdict == LG_STEP_FAIL && !s->retried) { /* FAIL_HARD is not retried */
    s->retried = 1;
    return s->cur;
  }
  s->retried = 0;
  if (verdict == LG_STEP_PASS) {
    if (s->cur > s->best) s->best = s->cur;
  } else if (s->fail == 0 || s->cur < s->fail) {
    s->fail = s->cur;
  }
  if (s->fail > 0 && s->best > 0) {
    /* Bracketed: bisect while allowed and while there is room between. */
    if (s->refine_left <= 0) { *why = "bracketed"; return 0; }
    next = mid(s);
    if (next <= s->best || next >= s->fail) { *why = "bracketed"; return 0; }
    s->refine_left--;
  } else if (s->fail > 0) {
    /* Nothing has passed yet: down. */
    next = s->cur / s->factor;
    if (s->integer) next = floor(next);
    if (next < s->min || next >= s->cur) { *why = "nothing passes"; return 0; }
  } else {
    next = s->cur * s->factor;
    if (s->integer) next = fmax(s->cur + 1, floor(next + 0.5));
    if (next > s->max) {
      if (s->cur < s->max) next = s->max;
      else { *why = "max load"; return 0; }
    }
  }
  s->cur = next;
  return next;
}
