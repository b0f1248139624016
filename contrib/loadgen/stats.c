/* loadgen measurement helpers: the latency histogram, the overload
 * recovery time and the per (receiver, sender) sequence window. */
#include <stdlib.h>
#include <string.h>
#include "lg.h"

static unsigned hist_index(uint64_t v) {
  if (v < 2 * LG_HIST_SUB) return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - 6;
  return shift * LG_HIST_SUB + (unsigned)(v >> shift);
}

/* Middle of the bucket's range. */
static uint64_t hist_value(unsigned idx) {
  if (idx < 2 * LG_HIST_SUB) return idx;
  unsigned shift = idx / LG_HIST_SUB - 1;
  uint64_t mant = idx - (uint64_t)shift * LG_HIST_SUB;
  return (mant << shift) + ((1ull << shift) >> 1);
}

void lg_hist_add(lg_hist_t *h, uint64_t v) {
  h->c[hist_index(v)]++;
  h->n++;
  if (v > h->max) h->max = v;
}

uint64_t lg_hist_pct(const lg_hist_t *h, double pct) {
  if (h->n == 0) return 0;
  uint64_t want = (uint64_t)((double)h->n * pct / 100.0 + 0.5);
  if (want < 1) want = 1;
  if (want > h->n) want = h->n;
  uint64_t acc = 0;
  for (unsigned i = 0; i < LG_HIST_N; i++) {
    acc += h->c[i];
    if (acc >= want) {
      uint64_t v = hist_value(i);
      return v > h->max ? h->max : v;
    }
  }
  return h->max;
}

void lg_hist_merge(lg_hist_t *into, const lg_hist_t *from) {
  for (unsigned i = 0; i < LG_HIST_N; i++) into->c[i] += from->c[i];
  into->n += from->n;
  if (from->max > into->max) into->max = from->max;
}

double lg_recovery_ms(const double *p99_ms, const uint64_t *samples, int n, double win_ms,
                      double limit_ms) {
  int k = n;
  while (k > 0 && samples[k - 1] > 0 && p99_ms[k - 1] <= limit_ms) k--;
  return k == n ? -1.0 : k * win_ms;
}

/* 2^16 words = 4M sequence numbers of open gap per pair at most (512 KiB);
 * past that the oldest word is given up (its missing numbers stay lost). */
#define SEQWIN_MAXW (1u << 16)

static int seqwin_grow(lg_seqwin_t *s) {
  uint32_t nw = s->nw ? s->nw * 2 : 4;
  uint64_t *w = calloc(nw, sizeof *w);
  if (!w) return UV_ENOMEM;
  for (uint32_t i = 0; i < s->nw; i++) w[i] = s->w[(s->head + i) & (s->nw - 1)];
  free(s->w);
  s->w = w;
  s->nw = nw;
  s->head = 0;
  return 0;
}

int lg_seqwin_add(lg_seqwin_t *s, uint64_t seq) {
  if (seq < s->base) return 1;
  uint64_t wi = (seq - s->base) / 64;
  while (wi >= s->nw) {
    if (s->nw < SEQWIN_MAXW) {
      int rc = seqwin_grow(s);
      if (rc) return rc;
    } else {
      s->w[s->head] = 0;
      s->head = (s->head + 1) & (s->nw - 1);
      s->base += 64;
      wi--;
    }
  }
  uint64_t *word = &s->w[(s->head + wi) & (s->nw - 1)];
  uint64_t bit = 1ull << ((seq - s->base) % 64);
  if (*word & bit) return 1;
  *word |= bit;
  s->uniq++;
  while (s->w[s->head] == ~0ull) {
    s->w[s->head] = 0;
    s->head = (s->head + 1) & (s->nw - 1);
    s->base += 64;
  }
  return 0;
}

void lg_seqwin_free(lg_seqwin_t *s) {
  free(s->w);
  memset(s, 0, sizeof *s);
}
