/* Batched UDP receive for QUIC with UDP GRO: one recvmmsg fills up to
 * VCG_UDP_RX_MAX slots, and with GRO on, the kernel hands a run of
 * datagrams from one sender as one buffer plus the size of its segments
 * (every one but the last has that size), instead of queueing each
 * datagram on its own.  libuv 1.44 does not pass the control message
 * that carries the size, hence our own recvmmsg.  Shared by the
 * webtransport plugin and loadgen's QUIC client; no state. */
#ifndef VCG_UDP_RECV_H
#define VCG_UDP_RECV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define VCG_UDP_RX_MAX 16
/* A slot holds a whole GRO run: at most one UDP datagram's payload. */
#define VCG_UDP_RX_SLOT (64u << 10)

typedef struct vcg__udp_rx {
  struct iovec iov[VCG_UDP_RX_MAX];
  struct sockaddr_storage from[VCG_UDP_RX_MAX];
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl[VCG_UDP_RX_MAX];
  size_t len[VCG_UDP_RX_MAX];     /* out: bytes in the slot */
  size_t segsize[VCG_UDP_RX_MAX]; /* out: the run's datagram size */
} vcg__udp_rx_t;

/* Ask for GRO on fd: 1 when the kernel (Linux 5.0+) agreed, else 0 (then
 * every slot holds one datagram). */
int vcg__udp_gro_enable(int fd);

/* One recvmmsg into n (<= VCG_UDP_RX_MAX) slots of `slot` bytes from
 * base.  Returns how many slots were filled (0 when nothing was waiting)
 * or a negative errno; slot i holds rx->len[i] bytes from
 * rx->from[i], datagrams of rx->segsize[i] bytes (the last may be
 * shorter). */
int vcg__udp_recv(int fd, vcg__udp_rx_t *rx, uint8_t *base, size_t slot, unsigned n);

#endif
