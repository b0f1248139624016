/* Service-manager notifications: see notify.h for the protocol and when
 * vcgate sends what. */
#include "notify.h"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "vcgate/plugin.h"

int vcg__notify_format(char *buf, size_t cap, vcg__notify_what_t what, uint64_t mono_usec) {
  int n;
  switch (what) {
  case VCG__NOTIFY_READY:
    n = snprintf(buf, cap, "READY=1\nSTATUS=serving\n");
    break;
  case VCG__NOTIFY_RELOADING:
    n = snprintf(buf, cap, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading configuration\n",
                 mono_usec);
    break;
  case VCG__NOTIFY_STOPPING:
    n = snprintf(buf, cap, "STOPPING=1\nSTATUS=draining\n");
    break;
  default:
    return VCG_EINVAL;
  }
  if (n < 0) return VCG_EINVAL;
  if ((size_t)n >= cap) return VCG_ENOBUFS;
  return n;
}

int vcg__notify_addr(const char *name, struct sockaddr_un *sa, socklen_t *len) {
  size_t l = name ? strlen(name) : 0;
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  /* A path needs room for its NUL; an abstract name has none, and its
   * leading '@' stands for the leading NUL byte. */
  if (l < 2 || (name[0] != '/' && name[0] != '@') || l >= sizeof sa->sun_path) return VCG_EINVAL;
  memcpy(sa->sun_path, name, l);
  if (name[0] == '@') {
    sa->sun_path[0] = '\0';
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l);
  } else {
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l + 1);
  }
  return 0;
}

int vcg__notify_send(const char *msg, size_t len) {
  const char *name = getenv("NOTIFY_SOCKET");
  if (!name || !*name) return 0;
  struct sockaddr_un sa;
  socklen_t salen;
  int rc = vcg__notify_addr(name, &sa, &salen);
  if (rc != 0) return rc;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  /* systemd learns the sender's PID from SO_PASSCRED on its side, which the
   * kernel fills in with the process (not thread) id, so the call is valid
   * from a worker thread too under NotifyAccess=main. */
  ssize_t w = sendto(fd, msg, len, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
  rc = w < 0 ? -errno : (size_t)w == len ? 0 : VCG_EMSGSIZE;
  close(fd);
  return rc;
}

static int notify(vcg__notify_what_t what) {
  if (!getenv("NOTIFY_SOCKET")) return 0;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
  char msg[160];
  int n = vcg__notify_format(msg, sizeof msg, what, usec);
  if (n < 0) return n;
  return vcg__notify_send(msg, (size_t)n);
}

int vcg__notify_ready(void) { return notify(VCG__NOTIFY_READY); }
int vcg__notify_reloading(void) { return notify(VCG__NOTIFY_RELOADING); }
int vcg__notify_stopping(void) { return notify(VCG__NOTIFY_STOPPING); }
