/*
 * conn_write.c -- the write loop of one QUIC connection: open streams for
 * queued packets, hand ngtcp2 the records of the output queue in order,
 * and send the packets it makes in GSO batches.  Called by conn.c only;
 * errors go back to it (it closes the connection).
 */
#include <string.h>

#include "conn.h"

/* The stream error of a reset that sheds a stale packet: WebTransport
 * application error 0 in HTTP/3's mapped range (draft-ietf-webtrans-http3:
 * 0x52e4a40fa8db + code + code / 0x1e). */
#define WT_SHED_ERROR 0x52e4a40fa8dbull

/* Blocked on stream flow control during this flush (see conn_flush). */
static int os_blocked(const wt_conn_t *c, const wt_ostream_t *os) {
  return os->blocked_gen == c->flush_gen;
}

/* Whether packet record os is past its deadline before any of it went on
 * the wire (no stream byte sent; a datagram is written whole or not). */
static int os_stale(const wt_ostream_t *os, uint64_t now_ms) {
  return os->pkt && os->sent == 0 && now_ms > os->deadline;
}

/* Hand a stale packet to the session layer (which gives it to the host)
 * and end its record: freed at once when no stream carries it yet,
 * else the stream is reset and ngtcp2 frees the record as it closes it. */
static void end_record(wt_conn_t *c, wt_ostream_t *os) {
  if (os->id < 0) {
    vcg__wt_os_free(&c->out, os);
    return;
  }
  vcg__wt_oq_remove(&c->out, os);
  os->sent = os->total;
  os->fin_sent = 1;
  ngtcp2_conn_shutdown_stream_write(c->qc, os->id, WT_SHED_ERROR);
}

static void shed(wt_conn_t *c, wt_ostream_t *os) {
  c->set->cb->shed(c, os);
  end_record(c, os);
}

/* A fresh packet record chosen to write: tell the layer above once.  0 to
 * write it; 1 when the host shed it instead (record ended). */
static int taken(wt_conn_t *c, wt_ostream_t *os) {
  if (!os->pkt || os->taken || os->sent) return 0;
  os->taken = 1;
  if (!c->set->cb->take(c, os)) return 0;
  end_record(c, os);
  return 1;
}

/* The next record with bytes to write, or NULL.  Prioritised streams come
 * first; the packet queue is served in order and stops at a record whose
 * stream is not opened yet (streams cannot be opened mid-packet).  Packets
 * past their deadline are shed on the way, never written late. */
static wt_ostream_t *pick(wt_conn_t *c, uint64_t now_ms, int *stopped) {
  wt_outq_t *q = &c->out;
  *stopped = 0;
  for (int i = 0; i < WT_PRIO_N; i++) {
    wt_ostream_t *os = q->prio[i];
    if (os && os->id >= 0 && !os_blocked(c, os) && vcg__wt_os_pending(os)) return os;
  }
  wt_ostream_t *nx;
  for (wt_ostream_t *os = q->head; os; os = nx) {
    nx = os->onext;
    if (os->id == WT_ID_UNOPENED) {
      *stopped = 1;
      return NULL;
    }
    if (os_blocked(c, os) || !vcg__wt_os_pending(os)) continue;
    if (os_stale(os, now_ms)) {
      shed(c, os);
      continue;
    }
    if (taken(c, os)) continue;
    return os;
  }
  return NULL;
}

/* Open streams for queued packets, a batch ahead of the writer; a packet
 * already past its deadline is shed instead of getting a stream. */
static int open_streams(wt_conn_t *c) {
  wt_outq_t *q = &c->out;
  uint64_t now_ms = uv_now(c->set->loop);
  wt_ostream_t *nx, *os;
  int rv = 0;
  for (os = q->unopened; os; os = nx) {
    nx = os->onext;
    if (os->id != WT_ID_UNOPENED) continue; /* a datagram */
    if (q->opened >= WT_STREAM_BATCH) break;
    if (os_stale(os, now_ms)) {
      shed(c, os);
      continue;
    }
    int64_t id;
    rv = ngtcp2_conn_open_uni_stream(c->qc, &id, os);
    if (rv == NGTCP2_ERR_STREAM_ID_BLOCKED) {
      rv = 0; /* wait for credit */
      break;
    }
    if (rv != 0) break;
    os->id = id;
    q->opened++;
  }
  q->unopened = os; /* the first still unopened, or NULL */
  return rv;
}

/* One datagram record: written (or given up) here. */
static ngtcp2_ssize write_dgram(wt_conn_t *c, wt_ostream_t *os, ngtcp2_path *path,
                                ngtcp2_pkt_info *pi, uint8_t *buf, size_t maxudp,
                                uint64_t ts, int *again) {
  ngtcp2_vec vec[8];
  int accepted = 0;
  size_t nv = vcg__wt_os_vecs(os, vec, 8);
  ngtcp2_ssize nwrite = ngtcp2_conn_writev_datagram(c->qc, path, pi, buf, maxudp, &accepted,
                                                    NGTCP2_WRITE_DATAGRAM_FLAG_MORE, 0, vec,
                                                    nv, ts);
  *again = 0;
  if (nwrite == NGTCP2_ERR_WRITE_MORE || (nwrite >= 0 && accepted)) {
    os->sent = os->total;
    vcg__wt_os_free(&c->out, os); /* written: the record ends here */
    *again = nwrite == NGTCP2_ERR_WRITE_MORE;
  } else if (nwrite == NGTCP2_ERR_INVALID_ARGUMENT || nwrite == NGTCP2_ERR_INVALID_STATE) {
    /* Too large for the peer, or datagrams not negotiated: drop it. */
    vcg__wt_os_free(&c->out, os);
    *again = 1;
  } else if (nwrite >= 0 && ++os->tries > 8) {
    vcg__wt_os_free(&c->out, os);
  }
  return nwrite;
}

/* Returns 0 when done or congestion limited, 1 when it stopped before an
 * unopened stream, or a negative ngtcp2 error. */
static int write_loop(wt_conn_t *c) {
  wt_outq_t *q = &c->out;
  wt_txbatch_t batch;
  ngtcp2_path_storage ps;
  ngtcp2_pkt_info pi;
  ngtcp2_vec vec[8];
  uint64_t ts = vcg__wt_now();
  uint64_t now_ms = uv_now(c->set->loop);
  size_t maxudp = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->qc);
  if (maxudp > WT_MAX_PKTLEN) maxudp = WT_MAX_PKTLEN;
  size_t quantum = ngtcp2_conn_get_send_quantum(c->qc) / maxudp;
  size_t maxpkts = quantum < 1 ? 1 : quantum > 64 ? 64 : quantum;
  size_t npkts = 0;
  int result = 0;

  /* The packets go out together at the end (or when the run cannot grow):
   * one system call instead of one per packet. */
  vcg__wt_batch_init(&batch, c->lis);
  ngtcp2_path_storage_zero(&ps);
  memset(&pi, 0, sizeof(pi));
  for (;;) {
    int stopped;
    wt_ostream_t *os = pick(c, now_ms, &stopped);
    ngtcp2_ssize nwrite;
    /* Stays put while ngtcp2 builds one packet over several calls
     * (WRITE_MORE): the run only moves when a packet is complete. */
    uint8_t *buf = vcg__wt_batch_room(&batch, maxudp);

    if (os && os->id == WT_ID_DGRAM) {
      int again;
      nwrite = write_dgram(c, os, &ps.path, &pi, buf, maxudp, ts, &again);
      if (again) continue;
      if (nwrite < 0) {
        result = (int)nwrite;
        break;
      }
    } else {
      ngtcp2_ssize ndatalen = -1;
      int64_t sid = -1;
      size_t nv = 0;
      uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
      int fin = 0;
      if (os) {
        sid = os->id;
        nv = vcg__wt_os_vecs(os, vec, 8);
        size_t sum = 0;
        for (size_t i = 0; i < nv; i++) sum += vec[i].len;
        if (os->fin && os->sent + sum == os->total) {
          flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
          fin = 1;
        }
      } else if (stopped) {
        result = 1;
      }
      nwrite = ngtcp2_conn_writev_stream(c->qc, &ps.path, &pi, buf, maxudp, &ndatalen,
                                         flags, sid, vec, nv, ts);
      if (nwrite < 0) {
        switch (nwrite) {
        case NGTCP2_ERR_STREAM_DATA_BLOCKED:
          os->blocked_gen = c->flush_gen;
          continue;
        case NGTCP2_ERR_STREAM_SHUT_WR:
        case NGTCP2_ERR_STREAM_NOT_FOUND:
          /* The peer reset or stopped the stream: nothing more to send;
           * the record goes when ngtcp2 closes the stream. */
          os->sent = os->total;
          os->fin_sent = 1;
          vcg__wt_os_advance(q, os, 0, 0);
          continue;
        case NGTCP2_ERR_WRITE_MORE:
          vcg__wt_os_advance(q, os, ndatalen, fin);
          continue;
        default:
          result = (int)nwrite;
          break;
        }
        if (result < 0) break;
      }
      if (os && ndatalen >= 0) vcg__wt_os_advance(q, os, ndatalen, fin);
    }
    if (nwrite == 0) break; /* nothing to send, or congestion limited */
    vcg__wt_batch_add(&batch, (const struct sockaddr *)ps.path.remote.addr, (size_t)nwrite);
    if (++npkts >= maxpkts) {
      result = 0; /* pacing: the expiry timer resumes */
      break;
    }
  }
  /* Packets written before an error still go out, ahead of the
   * CONNECTION_CLOSE that the caller sends. */
  vcg__wt_batch_flush(&batch);
  if (result >= 0) ngtcp2_conn_update_pkt_tx_time(c->qc, ts);
  return result;
}

int vcg__wt_conn_write(wt_conn_t *c) {
  /* Flow-control blocks are re-tested on every flush: ngtcp2 answers
   * STREAM_DATA_BLOCKED again at once while they last.  A new flush
   * generation lifts them all at once: walking every stream here was
   * O(queue) per flush, most of the server's time once queues grew. */
  c->flush_gen++;
  for (int round = 0; round < 8; round++) {
    size_t before = c->out.opened;
    int rv = open_streams(c);
    /* After the first round, go on only while new streams could be opened
     * for the packets waiting behind: without stream credit (or with a
     * full batch of blocked streams) there is nothing new to write. */
    if (rv == 0 && round > 0 && c->out.opened == before) break;
    if (rv == 0) rv = write_loop(c);
    if (rv < 0) return rv;
    if (rv == 0) break;
  }
  return 0;
}
