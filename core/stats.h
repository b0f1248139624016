/* Counters and gauges of the core, the home of the metrics.
 *
 * Each worker counts its own traffic in its own structs, one writer per
 * counter (the worker's thread), so a count is a plain load, add and store
 * (no locked instruction, no lock): VCG__ADD.  The counters are C11
 * atomics only so that the admin listener (main thread) may read them at
 * any time without a data race; it sums the workers when it is asked.
 * Labels are bounded by construction: the arrays below are indexed by
 * small enums, never by a room, user or session. */
#ifndef VCG_STATS_H
#define VCG_STATS_H
#include <stdatomic.h>
#include <stdint.h>

typedef _Atomic uint64_t vcg__ctr_t;

/* Add n to a counter only its owner thread writes. */
#define VCG__ADD(c, n) \
  atomic_store_explicit(&(c), atomic_load_explicit(&(c), memory_order_relaxed) + (uint64_t)(n), \
                        memory_order_relaxed)
#define VCG__SUB(c, n) VCG__ADD(c, -(uint64_t)(n))
#define VCG__GET(c) atomic_load_explicit(&(c), memory_order_relaxed)

/* What a packet is, for the metrics' `kind` label. */
enum { VCG__K_AUDIO, VCG__K_VIDEO, VCG__K_SCREEN, VCG__K_CONTROL, VCG__K_N };
/* Server-chosen close codes (`code` label); NONE: the server did not close
 * the session (the client left, the connection dropped). */
enum { VCG__CC_NONE, VCG__CC_1001, VCG__CC_1002, VCG__CC_1007, VCG__CC_1008, VCG__CC_1009,
       VCG__CC_1011, VCG__CC_1013, VCG__CC_N };
/* Why a connection was refused (`reason` label), from enum vcg_close_reason. */
enum { VCG__RJ_BAD_REQUEST, VCG__RJ_UNAUTHORIZED, VCG__RJ_FORBIDDEN, VCG__RJ_NOT_FOUND,
       VCG__RJ_GONE, VCG__RJ_LIMIT, VCG__RJ_OVERLOAD, VCG__RJ_SHUTDOWN, VCG__RJ_INTERNAL,
       VCG__RJ_N };
/* Why a room token was refused (`reason` of auth_failures_total). */
enum { VCG__AF_EXPIRED, VCG__AF_SIGNATURE, VCG__AF_ISSUER, VCG__AF_MALFORMED,
       VCG__AF_NO_ACCESS, VCG__AF_CLAIMS, VCG__AF_NO_SECRET, VCG__AF_N };
/* Relay latency: from a packet's arrival to its transport taking it. */
#define VCG__LAT_N 12
extern const double vcg__lat_bounds[VCG__LAT_N]; /* seconds, upper bounds */

/* One transport binding of one worker. */
typedef struct vcg__tstats {
  vcg__ctr_t sessions;                  /* gauge: open now */
  vcg__ctr_t opened, closed[VCG__CC_N], rejected[VCG__RJ_N];
  vcg__ctr_t rx_packets[VCG__K_N], tx_packets[VCG__K_N];
  vcg__ctr_t rx_bytes, tx_bytes;
} vcg__tstats_t;

/* The core's counters of one worker. */
typedef struct vcg__stats {
  vcg__ctr_t sessions_opened, sessions_refused, observers_opened;
  vcg__ctr_t packets_in, packets_relayed, packets_dropped, packets_shed, packets_malformed,
             packets_refused, slow_closed, congestion, events_sent, bus_in, bus_out;
  vcg__ctr_t dropped[VCG__K_N];
  vcg__ctr_t auth_failures[VCG__AF_N];
  vcg__ctr_t latency[VCG__LAT_N + 1];   /* per bucket (the last: +Inf) */
  vcg__ctr_t latency_sum_ms, latency_count;
  vcg__ctr_t rooms, queued_bytes;       /* gauges */
} vcg__stats_t;

int vcg__close_code_index(int why);     /* enum vcg_close_reason -> VCG__CC_* */
int vcg__reject_index(int why);         /* enum vcg_close_reason -> VCG__RJ_* */
void vcg__latency_record(vcg__stats_t *st, uint64_t ms);
#endif
