/* Output records and the output queue of one connection (see stream.h). */
#include <stdlib.h>
#include <string.h>

#include "stream.h"

void vcg__wt_outq_init(wt_outq_t *q, const vcg_host_api_t *host) {
  memset(q, 0, sizeof(*q));
  q->host = host;
}

void vcg__wt_outq_free(wt_outq_t *q) {
  while (q->all) vcg__wt_os_free(q, q->all);
}

wt_ostream_t *vcg__wt_os_new(wt_outq_t *q, int64_t id) {
  wt_ostream_t *os = calloc(1, sizeof(*os));
  if (!os) return NULL;
  os->id = id;
  os->next = q->all;
  if (q->all) q->all->prev = os;
  q->all = os;
  return os;
}

/* The record no longer counts in the session's queue depth. */
static void uncount(wt_outq_t *q, wt_ostream_t *os) {
  if (!os->counted) return;
  os->counted = 0;
  q->q_pkts--;
  q->q_bytes -= os->plen;
  q->q_dirty = 1;
}

void vcg__wt_os_set_packet(wt_outq_t *q, wt_ostream_t *os, vcg_packet_t *p,
                           const uint8_t *data, size_t len, uint64_t deadline) {
  os->pkt = p;
  os->pdata = data;
  os->plen = len;
  os->deadline = deadline;
  os->total = os->hdrlen + len;
  os->cbase = os->total;
  os->counted = 1;
  q->q_pkts++;
  q->q_bytes += len;
  q->q_dirty = 1;
}

vcg_packet_t *vcg__wt_os_take_packet(wt_outq_t *q, wt_ostream_t *os) {
  vcg_packet_t *p = os->pkt;
  uncount(q, os);
  os->pkt = NULL;
  os->pdata = NULL;
  os->plen = 0;
  return p;
}

int vcg__wt_os_append(wt_ostream_t *os, const uint8_t *p, size_t len) {
  wt_chunk_t *ch = malloc(sizeof(*ch) + len);
  if (!ch) return VCG_ENOMEM;
  ch->next = NULL;
  ch->len = len;
  memcpy(ch->data, p, len);
  if (os->ctail) {
    os->ctail->next = ch;
  } else {
    /* Every earlier chunk was acknowledged and freed (or there was none):
     * this one starts where the stream's bytes end now. */
    os->chead = ch;
    os->cbase = os->total;
  }
  os->ctail = ch;
  os->total += len;
  return 0;
}

void vcg__wt_oq_push(wt_outq_t *q, wt_ostream_t *os) {
  if (os->queued) return;
  os->queued = 1;
  os->onext = NULL;
  os->oprev = q->tail;
  if (q->tail) q->tail->onext = os;
  else q->head = os;
  q->tail = os;
  if (os->id >= 0) q->opened++;
  if (os->id == WT_ID_UNOPENED && !q->unopened) q->unopened = os;
}

void vcg__wt_oq_remove(wt_outq_t *q, wt_ostream_t *os) {
  if (!os->queued) return;
  if (q->unopened == os) q->unopened = os->onext;
  if (os->oprev) os->oprev->onext = os->onext;
  else q->head = os->onext;
  if (os->onext) os->onext->oprev = os->oprev;
  else q->tail = os->oprev;
  os->queued = 0;
  os->oprev = os->onext = NULL;
  if (os->id >= 0) q->opened--;
}

void vcg__wt_os_free(wt_outq_t *q, wt_ostream_t *os) {
  if (os->queued) vcg__wt_oq_remove(q, os);
  /* A record still counted in the session's queue leaves it unwritten. */
  uncount(q, os);
  if (os->prev) os->prev->next = os->next;
  else q->all = os->next;
  if (os->next) os->next->prev = os->prev;
  for (int i = 0; i < WT_PRIO_N; i++)
    if (q->prio[i] == os) q->prio[i] = NULL;
  if (os->pkt) q->host->packet_unref(os->pkt);
  wt_chunk_t *ch = os->chead;
  while (ch) {
    wt_chunk_t *nx = ch->next;
    free(ch);
    ch = nx;
  }
  free(os);
}

void vcg__wt_oq_drop_unsent(wt_outq_t *q) {
  wt_ostream_t *os = q->head;
  while (os) {
    wt_ostream_t *nx = os->onext;
    if (os->id == WT_ID_UNOPENED || os->id == WT_ID_DGRAM) vcg__wt_os_free(q, os);
    os = nx;
  }
}

void vcg__wt_os_acked(wt_ostream_t *os, uint64_t upto) {
  if (upto > os->acked) os->acked = upto;
  while (os->chead && os->cbase + os->chead->len <= os->acked) {
    wt_chunk_t *ch = os->chead;
    os->cbase += ch->len;
    os->chead = ch->next;
    if (!os->chead) os->ctail = NULL;
    free(ch);
  }
}

int vcg__wt_os_pending(const wt_ostream_t *os) {
  return os->sent < os->total || (os->fin && !os->fin_sent);
}

size_t vcg__wt_os_vecs(const wt_ostream_t *os, ngtcp2_vec *v, size_t max) {
  uint64_t off = os->sent;
  size_t n = 0;
  if (off < os->hdrlen && n < max) {
    v[n].base = (uint8_t *)(uintptr_t)(os->hdr + off);
    v[n].len = (size_t)(os->hdrlen - off);
    n++;
    off = os->hdrlen;
  }
  if (off < os->hdrlen + os->plen && n < max) {
    uint64_t o = off - os->hdrlen;
    v[n].base = (uint8_t *)(uintptr_t)(os->pdata + o);
    v[n].len = (size_t)(os->plen - o);
    n++;
    off = os->hdrlen + os->plen;
  }
  uint64_t coff = os->cbase;
  for (const wt_chunk_t *ch = os->chead; ch && n < max; ch = ch->next) {
    if (off < coff + ch->len) {
      v[n].base = (uint8_t *)(uintptr_t)(ch->data + (off - coff));
      v[n].len = (size_t)(coff + ch->len - off);
      n++;
      off = coff + ch->len;
    }
    coff += ch->len;
  }
  return n;
}

void vcg__wt_os_advance(wt_outq_t *q, wt_ostream_t *os, ngtcp2_ssize n, int fin) {
  if (n > 0) os->sent += (uint64_t)n;
  if (fin && os->sent == os->total) os->fin_sent = 1;
  if (!vcg__wt_os_pending(os)) {
    vcg__wt_oq_remove(q, os);
    uncount(q, os);
  }
}
