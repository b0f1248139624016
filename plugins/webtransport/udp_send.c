/* Batched UDP sends (see udp_send.h). */
#define _GNU_SOURCE 1 /* sendmmsg(), struct mmsghdr */
#include "udp_send.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/udp.h>

int vcg__udp_gso_probe(int fd) {
  int v = 0;
  socklen_t vl = sizeof(v);
  return getsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, &vl) == 0;
}

int vcg__udp_gso_unsupported(int err) {
  return err == -EIO || err == -EINVAL || err == -ENOPROTOOPT ||
         err == -EOPNOTSUPP;
}

typedef union {
  char buf[CMSG_SPACE(sizeof(uint16_t))];
  struct cmsghdr align;
} gso_ctl_t;

/* Make m carry segsize as its UDP_SEGMENT control message. */
static void set_segsize(struct msghdr *m, gso_ctl_t *u, size_t segsize) {
  memset(u, 0, sizeof(*u));
  m->msg_control = u->buf;
  m->msg_controllen = sizeof(u->buf);
  struct cmsghdr *cm = CMSG_FIRSTHDR(m);
  cm->cmsg_level = SOL_UDP;
  cm->cmsg_type = UDP_SEGMENT;
  cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  uint16_t gs = (uint16_t)segsize;
  memcpy(CMSG_DATA(cm), &gs, sizeof(gs));
}

int vcg__udp_send_runs(int fd, const vcg__udp_run_t *runs, size_t n) {
  struct mmsghdr mm[VCG_UDP_RUNS_MAX];
  struct iovec iov[VCG_UDP_RUNS_MAX];
  gso_ctl_t ctl[VCG_UDP_RUNS_MAX];
  if (n > VCG_UDP_RUNS_MAX) n = VCG_UDP_RUNS_MAX;
  memset(mm, 0, n * sizeof(mm[0]));
  for (size_t i = 0; i < n; i++) {
    iov[i].iov_base = (void *)(uintptr_t)runs[i].buf;
    iov[i].iov_len = runs[i].len;
    struct msghdr *m = &mm[i].msg_hdr;
    m->msg_name = (void *)(uintptr_t)runs[i].to;
    m->msg_namelen = runs[i].to ? runs[i].tolen : 0;
    m->msg_iov = &iov[i];
    m->msg_iovlen = 1;
    /* A lone datagram needs no segmentation. */
    if (runs[i].len > runs[i].segsize) set_segsize(m, &ctl[i], runs[i].segsize);
  }
  int r;
  do r = sendmmsg(fd, mm, (unsigned)n, 0);
  while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : r;
}

int vcg__udp_send_gso(int fd, const struct sockaddr *to, socklen_t tolen,
                      const uint8_t *buf, size_t len, size_t segsize) {
  gso_ctl_t u;
  struct iovec iov = { (void *)(uintptr_t)buf, len };
  struct msghdr m;
  memset(&m, 0, sizeof(m));
  m.msg_name = (void *)(uintptr_t)to;
  m.msg_namelen = to ? tolen : 0;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  set_segsize(&m, &u, segsize);
  ssize_t n;
  do n = sendmsg(fd, &m, 0);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : 0;
}

size_t vcg__udp_send_each(int fd, const struct sockaddr *to, socklen_t tolen,
                          const uint8_t *buf, size_t len, size_t segsize) {
  struct mmsghdr mm[VCG_UDP_GSO_MAX_SEGS];
  struct iovec iov[VCG_UDP_GSO_MAX_SEGS];
  size_t off = 0;
  while (off < len) {
    unsigned n = 0;
    for (size_t o = off; o < len && n < VCG_UDP_GSO_MAX_SEGS; o += segsize, n++) {
      iov[n].iov_base = (void *)(uintptr_t)(buf + o);
      iov[n].iov_len = len - o < segsize ? len - o : segsize;
      memset(&mm[n], 0, sizeof(mm[n]));
      mm[n].msg_hdr.msg_name = (void *)(uintptr_t)to;
      mm[n].msg_hdr.msg_namelen = to ? tolen : 0;
      mm[n].msg_hdr.msg_iov = &iov[n];
      mm[n].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(fd, mm, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    /* Sent r, or the first one failed for good: skip it. */
    off += (r > 0 ? (size_t)r : 1) * segsize;
  }
  return off < len ? off : len;
}
