/* systemd notifications: the datagrams' text, $NOTIFY_SOCKET address
 * parsing, and real sends to a path socket and an abstract socket. */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "notify.h"
#include "vcgate/plugin.h"
#include "tap.h"

static uint64_t now_usec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A bound datagram socket standing in for systemd's end. */
static int listener(const char *name) {
  struct sockaddr_un sa;
  socklen_t len;
  if (vcg__notify_addr(name, &sa, &len) != 0) return -1;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) != 0) return -1;
  return fd;
}

/* One datagram, or "" when none arrived: the send is synchronous, so it is
 * queued by the time vcg__notify_* returns. */
static const char *received(int fd, char *buf, size_t cap) {
  ssize_t n = recv(fd, buf, cap - 1, MSG_DONTWAIT);
  buf[n > 0 ? n : 0] = '\0';
  return buf;
}

int main(void) {
  char buf[256];
  int n = vcg__notify_format(buf, sizeof buf, VCG__NOTIFY_READY, 0);
  CHECK(n > 0 && strcmp(buf, "READY=1\nSTATUS=serving\n") == 0 && (size_t)n == strlen(buf),
        "READY=1 with a STATUS line");
  n = vcg__notify_format(buf, sizeof buf, VCG__NOTIFY_RELOADING, 18446744073709551615u);
  CHECK(n > 0 && strcmp(buf, "RELOADING=1\nMONOTONIC_USEC=18446744073709551615\n"
                             "STATUS=reloading configuration\n") == 0,
        "RELOADING=1 carries MONOTONIC_USEC in decimal (full 64-bit range)");
  n = vcg__notify_format(buf, sizeof buf, VCG__NOTIFY_STOPPING, 0);
  CHECK(n > 0 && strcmp(buf, "STOPPING=1\nSTATUS=draining\n") == 0, "STOPPING=1 with a STATUS line");
  CHECK(vcg__notify_format(buf, 8, VCG__NOTIFY_READY, 0) == VCG_ENOBUFS,
        "a buffer too small is VCG_ENOBUFS, not a truncated message");
  CHECK(vcg__notify_format(buf, sizeof buf, (vcg__notify_what_t)7, 0) == VCG_EINVAL,
        "an unknown message kind is VCG_EINVAL");

  struct sockaddr_un sa;
  socklen_t len = 0;
  CHECK(vcg__notify_addr("/run/systemd/notify", &sa, &len) == 0 &&
            strcmp(sa.sun_path, "/run/systemd/notify") == 0 &&
            len == offsetof(struct sockaddr_un, sun_path) + sizeof "/run/systemd/notify",
        "a path is copied with its NUL counted");
  CHECK(vcg__notify_addr("@vcg/notify", &sa, &len) == 0 && sa.sun_path[0] == '\0' &&
            memcmp(sa.sun_path + 1, "vcg/notify", 10) == 0 &&
            len == offsetof(struct sockaddr_un, sun_path) + 11,
        "an @name is abstract: leading NUL, length counts the name only");
  char longname[sizeof sa.sun_path + 2];
  memset(longname, 'a', sizeof longname - 1);
  longname[0] = '/';
  longname[sizeof longname - 1] = '\0';
  CHECK(vcg__notify_addr(longname, &sa, &len) == VCG_EINVAL, "a path longer than sun_path is refused");
  CHECK(vcg__notify_addr("notify", &sa, &len) == VCG_EINVAL, "a relative path is refused");
  CHECK(vcg__notify_addr("@", &sa, &len) == VCG_EINVAL && vcg__notify_addr("", &sa, &len) == VCG_EINVAL,
        "an empty name is refused");
  CHECK(vcg__notify_addr("vsock:2:1234", &sa, &len) == VCG_EINVAL,
        "a vsock address (systemd 254+) is refused rather than misread");

  unsetenv("NOTIFY_SOCKET");
  CHECK(vcg__notify_ready() == 0 && vcg__notify_stopping() == 0,
        "without NOTIFY_SOCKET every call is a no-op that succeeds");

  char abs_name[64];
  snprintf(abs_name, sizeof abs_name, "@vcgate-test-notify-%ld", (long)getpid());
  int fd = listener(abs_name);
  CHECK(fd >= 0, "bound an abstract datagram socket %s", abs_name);
  setenv("NOTIFY_SOCKET", abs_name, 1);
  uint64_t before = now_usec();
  int rc = vcg__notify_reloading();
  uint64_t after = now_usec();
  uint64_t stamp = 0;
  const char *got = received(fd, buf, sizeof buf);
  CHECK(rc == 0 && sscanf(got, "RELOADING=1\nMONOTONIC_USEC=%" SCNu64 "\n", &stamp) == 1,
        "RELOADING=1 arrives on the abstract socket: %s", rc == 0 ? "sent" : strerror(-rc));
  CHECK(stamp >= before && stamp <= after, "MONOTONIC_USEC is CLOCK_MONOTONIC at the call");
  CHECK(vcg__notify_ready() == 0 && strcmp(received(fd, buf, sizeof buf), "READY=1\nSTATUS=serving\n") == 0,
        "READY=1 follows on the same socket");
  close(fd);

  char dir[] = "/tmp/vcgate-notify-XXXXXX", path[128];
  CHECK(mkdtemp(dir) != NULL, "temporary directory");
  snprintf(path, sizeof path, "%s/notify", dir);
  fd = listener(path);
  CHECK(fd >= 0, "bound a datagram socket at a path");
  setenv("NOTIFY_SOCKET", path, 1);
  CHECK(vcg__notify_stopping() == 0 && strcmp(received(fd, buf, sizeof buf), "STOPPING=1\nSTATUS=draining\n") == 0,
        "STOPPING=1 arrives on the path socket");
  close(fd);
  unlink(path);
  rc = vcg__notify_ready();
  CHECK(rc == -ECONNREFUSED || rc == -ENOENT, "a socket nobody listens on is an error (%d), not a crash", rc);
  rmdir(dir);
  setenv("NOTIFY_SOCKET", "relative/notify", 1);
  CHECK(vcg__notify_ready() == VCG_EINVAL, "an unusable NOTIFY_SOCKET is VCG_EINVAL");
  unsetenv("NOTIFY_SOCKET");
  return TAP_DONE();
}
