/* Batched UDP sends for QUIC: a run of equal-sized datagrams (the last may
 * be shorter) goes out as one sendmsg with UDP GSO, or by sendmmsg where
 * the kernel or the device cannot segment.  Shared by the webtransport
 * plugin (an unconnected listener socket: `to` given) and loadgen's QUIC
 * client (a connected socket: `to` NULL).  No state: the caller keeps
 * whether GSO works on its socket. */
#ifndef VCG_UDP_SEND_H
#define VCG_UDP_SEND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The kernel takes at most 64 segments (UDP_MAX_SEGMENTS), and the whole
 * run must fit one UDP datagram's payload, 65507 bytes over IPv4 (65527
 * over IPv6). */
#define VCG_UDP_GSO_MAX_SEGS 64
#define VCG_UDP_GSO_MAX_BYTES 65507

/* Whether the kernel knows UDP_SEGMENT (Linux 4.18+).  Ask before the first
 * run: an older kernel ignores the unknown control message and would send
 * the whole run as one oversized datagram. */
int vcg__udp_gso_probe(int fd);

/* Whether a send error (negative errno) says the kernel or the device
 * cannot do GSO (no checksum offload, an unknown control message). */
int vcg__udp_gso_unsupported(int err);

/* One sendmsg for the whole run; the kernel cuts it into segsize
 * datagrams.  Returns 0 or a negative errno. */
int vcg__udp_send_gso(int fd, const struct sockaddr *to, socklen_t tolen,
                      const uint8_t *buf, size_t len, size_t segsize);

/* One datagram per segment, VCG_UDP_GSO_MAX_SEGS per sendmmsg.  A datagram
 * the kernel refuses for any reason but a full buffer is skipped (QUIC
 * retransmits, as after any loss).  Returns the bytes handled: less than
 * len when the socket buffer filled up. */
size_t vcg__udp_send_each(int fd, const struct sockaddr *to, socklen_t tolen,
                          const uint8_t *buf, size_t len, size_t segsize);

/* A run of datagrams to one peer, as for vcg__udp_send_gso(). */
typedef struct vcg__udp_run {
  const struct sockaddr *to;
  socklen_t tolen;
  const uint8_t *buf;
  size_t len, segsize;
} vcg__udp_run_t;

#define VCG_UDP_RUNS_MAX 64

/* One sendmmsg for up to VCG_UDP_RUNS_MAX runs (to different peers), each
 * one GSO message: the runs of many connections in one system call.
 * Returns how many runs the kernel took, from the first; when it took
 * none, the negative errno of the first (EAGAIN: the buffer is full; see
 * vcg__udp_gso_unsupported()). */
int vcg__udp_send_runs(int fd, const vcg__udp_run_t *runs, size_t n);

#endif
