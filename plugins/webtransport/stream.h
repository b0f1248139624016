/*
 * stream.h -- the output records of one QUIC connection: a stream we
 * write (our control stream, our side of the CONNECT stream, one packet's
 * unidirectional stream) or one datagram, and the connection's output
 * queue.
 *
 * Ownership: the queue (wt_outq_t, embedded in the connection) owns every
 * record in its `all` list.  A record with pkt != NULL owns one reference
 * of that packet, released exactly once by vcg__wt_os_free() when the
 * record is written and acknowledged, dropped, reset, or when the
 * connection is freed.  Bytes are never copied for packets (ngtcp2 reads
 * them in place until they are acknowledged); control bytes are kept in
 * chunks until acknowledged.
 *
 * The queue also keeps the depth of what it holds for the session
 * (records marked `counted`), which the session layer reports to the host;
 * nothing here calls up.
 */
#ifndef VCG_WT_STREAM_H
#define VCG_WT_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include <ngtcp2/ngtcp2.h>
#include <vcgate/plugin.h>

#define WT_ID_DGRAM (-1)     /* the record is one datagram */
#define WT_ID_UNOPENED (-2)  /* a stream not opened in ngtcp2 yet */

typedef struct wt_chunk {
  struct wt_chunk *next;
  size_t len;
  uint8_t data[];
} wt_chunk_t;

typedef struct wt_ostream {
  struct wt_ostream *prev, *next;   /* q->all */
  struct wt_ostream *oprev, *onext; /* the queue (not yet written) */
  int64_t id;                       /* stream id, WT_ID_DGRAM or UNOPENED */
  /* The bytes: hdr, then the packet, then the chunks (control streams). */
  uint8_t hdr[16];
  size_t hdrlen;
  vcg_packet_t *pkt;                /* one reference, or NULL */
  const uint8_t *pdata;
  size_t plen;
  uint64_t deadline;                /* loop ms past which pkt is stale */
  wt_chunk_t *chead, *ctail;
  uint64_t cbase;                   /* stream offset of chead's first byte */
  uint64_t sent, total, acked;
  uint64_t blocked_gen;             /* == the flush generation: flow blocked */
  unsigned fin : 1, fin_sent : 1, queued : 1, counted : 1;
  unsigned taken : 1;               /* the host was told it goes out (take) */
  unsigned char tries;              /* datagram attempts without success */
} wt_ostream_t;

/* Streams the write loop serves before the packet queue, in this order. */
enum { WT_PRIO_CONTROL = 0, WT_PRIO_CONNECT = 1, WT_PRIO_N = 2 };

typedef struct wt_outq {
  const vcg_host_api_t *host;       /* for packet_unref */
  wt_ostream_t *all;                /* every record (owned) */
  wt_ostream_t *head, *tail;        /* the queue, in order */
  size_t opened;                    /* queued records with a stream id */
  /* No unopened record comes before this one in the queue (a hint, NULL:
   * none at all).  Streams are opened in queue order, so every opened
   * record precedes every unopened one: the opener starts here instead of
   * walking the opened ones on every call. */
  wt_ostream_t *unopened;
  wt_ostream_t *prio[WT_PRIO_N];    /* borrowed from `all`; NULL when gone */
  size_t q_pkts, q_bytes;           /* counted records: the session's depth */
  int q_dirty;                      /* changed since last reported */
} wt_outq_t;

void vcg__wt_outq_init(wt_outq_t *q, const vcg_host_api_t *host);
/* Free every record (connection teardown). */
void vcg__wt_outq_free(wt_outq_t *q);

/* A new record for stream id (or WT_ID_*), not queued; NULL on ENOMEM. */
wt_ostream_t *vcg__wt_os_new(wt_outq_t *q, int64_t id);
/* Make os carry packet p (its reference passes to os) after the hdrlen
 * bytes already in os->hdr, counted in the session's queue depth. */
void vcg__wt_os_set_packet(wt_outq_t *q, wt_ostream_t *os, vcg_packet_t *p,
                           const uint8_t *data, size_t len, uint64_t deadline);
/* Take the packet back out of os (it leaves the depth); the caller owns
 * the returned reference. */
vcg_packet_t *vcg__wt_os_take_packet(wt_outq_t *q, wt_ostream_t *os);
/* Append a copy of p[0..len) (control and CONNECT streams). */
int vcg__wt_os_append(wt_ostream_t *os, const uint8_t *p, size_t len);
void vcg__wt_os_free(wt_outq_t *q, wt_ostream_t *os);

void vcg__wt_oq_push(wt_outq_t *q, wt_ostream_t *os);
void vcg__wt_oq_remove(wt_outq_t *q, wt_ostream_t *os);
/* Free every queued packet record that has not started on the wire. */
void vcg__wt_oq_drop_unsent(wt_outq_t *q);

/* The peer acknowledged the bytes up to `upto`: free chunks before it. */
void vcg__wt_os_acked(wt_ostream_t *os, uint64_t upto);
/* Bytes (or the FIN) still to be written. */
int vcg__wt_os_pending(const wt_ostream_t *os);
/* Vectors for the bytes from os->sent on; returns how many (<= max). */
size_t vcg__wt_os_vecs(const wt_ostream_t *os, ngtcp2_vec *v, size_t max);
/* n more bytes (and the FIN when fin) were written; a record with nothing
 * left leaves the queue and the session's depth. */
void vcg__wt_os_advance(wt_outq_t *q, wt_ostream_t *os, ngtcp2_ssize n, int fin);

#endif /* VCG_WT_STREAM_H */
