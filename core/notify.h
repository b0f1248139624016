/* Service-manager notifications (systemd's sd_notify protocol).
 *
 * With Type=notify, systemd passes the path of a datagram socket in
 * $NOTIFY_SOCKET and waits for "READY=1" before it counts the service as
 * started (and before units ordered after it start).  The protocol is one
 * AF_UNIX datagram of newline-separated VAR=value assignments; systemd
 * documents it as a stable interface that may be implemented without
 * libsystemd, which is what this file does: vcgate gains no dependency for
 * a few lines of socket code.
 *
 * The messages vcgate sends, each with a STATUS= line for `systemctl status`:
 *   READY=1                      every worker has started: every listener is
 *                                bound and accepting (and again after a reload)
 *   RELOADING=1, MONOTONIC_USEC  a SIGHUP reload begins; systemd 253+ uses the
 *                                timestamp to match it to its own reload job,
 *                                252 (Debian 12) ignores it harmlessly
 *   STOPPING=1                   the drain began (SIGTERM/SIGINT)
 *
 * Every function is a no-op returning 0 when $NOTIFY_SOCKET is unset (vcgate
 * not started by systemd).  They keep no state and may be called from any
 * thread; NOTIFY_SOCKET is left in the environment because a reload notifies
 * again later. */
#ifndef VCG_NOTIFY_H
#define VCG_NOTIFY_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

typedef enum {
  VCG__NOTIFY_READY = 0,
  VCG__NOTIFY_RELOADING = 1,
  VCG__NOTIFY_STOPPING = 2,
} vcg__notify_what_t;

/* Format the datagram for `what` into buf (NUL-terminated); mono_usec is
 * the CLOCK_MONOTONIC time in microseconds, used by RELOADING only.
 * Returns the length without the NUL, or VCG_ENOBUFS / VCG_EINVAL. */
int vcg__notify_format(char *buf, size_t cap, vcg__notify_what_t what, uint64_t mono_usec);

/* Turn a $NOTIFY_SOCKET value into a socket address: an absolute path, or
 * "@name" for the abstract namespace (the '@' becomes the leading NUL and
 * the length counts exactly the name, as systemd binds it).  VCG_EINVAL for
 * an empty, relative or too long name, or another family (vsock:). */
int vcg__notify_addr(const char *name, struct sockaddr_un *sa, socklen_t *len);

/* Send msg (len bytes) to $NOTIFY_SOCKET: 0 when sent or when the variable
 * is unset, VCG_EINVAL for an unusable address, a negative errno otherwise. */
int vcg__notify_send(const char *msg, size_t len);

/* The three messages, as documented above; return as vcg__notify_send. */
int vcg__notify_ready(void);
int vcg__notify_reloading(void);
int vcg__notify_stopping(void);

#endif
