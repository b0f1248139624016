/* Batched UDP receive with GRO (see udp_recv.h). */
#define _GNU_SOURCE 1 /* recvmmsg(), struct mmsghdr */
#include "udp_recv.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/udp.h>

int vcg__udp_gro_enable(int fd) {
  int one = 1;
  return setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
}

int vcg__udp_recv(int fd, vcg__udp_rx_t *rx, uint8_t *base, size_t slot, unsigned n) {
  struct mmsghdr mm[VCG_UDP_RX_MAX];
  if (n > VCG_UDP_RX_MAX) n = VCG_UDP_RX_MAX;
  for (unsigned i = 0; i < n; i++) {
    rx->iov[i].iov_base = base + (size_t)i * slot;
    rx->iov[i].iov_len = slot;
    struct msghdr *m = &mm[i].msg_hdr;
    m->msg_name = &rx->from[i];
    m->msg_namelen = sizeof(rx->from[i]);
    m->msg_iov = &rx->iov[i];
    m->msg_iovlen = 1;
    m->msg_control = rx->ctl[i].buf;
    m->msg_controllen = sizeof(rx->ctl[i].buf);
    m->msg_flags = 0;
  }
  int r;
  do r = recvmmsg(fd, mm, n, 0, NULL);
  while (r < 0 && errno == EINTR);
  if (r < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
  for (int i = 0; i < r; i++) {
    struct msghdr *m = &mm[i].msg_hdr;
    size_t seg = mm[i].msg_len;
    rx->len[i] = seg;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
      if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
        int gs;
        memcpy(&gs, CMSG_DATA(cm), sizeof(gs));
        if (gs > 0) seg = (size_t)gs;
      }
    }
    rx->segsize[i] = seg ? seg : 1;
  }
  return r;
}
