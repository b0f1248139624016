/*
 * ws_listen.c -- the listen socket and accepted connections.
 *
 * lws 4.1 only sets SO_REUSEPORT on its own listen socket when the context
 * has several service threads, and we have one per context, so we listen
 * ourselves: a non-blocking socket with SO_REUSEPORT (every worker binds
 * the same address and the kernel spreads connections), watched by a
 * uv_poll_t, and each accepted socket is handed to lws with
 * lws_adopt_descriptor_vhost() on a vhost created with
 * CONTEXT_PORT_NO_LISTEN_SERVER.  This also makes drain trivial (close our
 * socket) and reports bind errors synchronously from start().
 */
#define _GNU_SOURCE 1 /* accept4() */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ws_int.h"


static void ws_listen_closed(uv_handle_t *h) {
  vcg_instance_t *inst = h->data;

  if (inst->lfd >= 0) {
    close(inst->lfd);
    inst->lfd = -1;
  }
}

void vcg__ws_listen_close(vcg_instance_t *inst) {
  if (inst->lpoll_open) {
    inst->lpoll_open = 0;
    uv_poll_stop(&inst->lpoll);
    uv_close((uv_handle_t *)&inst->lpoll, ws_listen_closed);
  } else if (inst->lfd >= 0) {
    close(inst->lfd);
    inst->lfd = -1;
  }
}

static void ws_on_accept(uv_poll_t *h, int status, int events) {
  vcg_instance_t *inst = h->data;
  int i;

  (void)events;
  if (status < 0) {
    inst->host->log(inst->w, NULL, VCG_LOG_WARN, "listen socket: %s",
                    uv_strerror(status));
    return;
  }
  for (i = 0; i < WS_ACCEPT_BUDGET; i++) {
    lws_sock_file_fd_type fd;
    int one = 1;
    int s = accept4(inst->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (s < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        inst->host->log(inst->w, NULL, VCG_LOG_WARN, "accept: %s",
                        strerror(errno));
      return;
    }
    (void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fd.sockfd = s;
    /* On failure lws closes the socket itself. */
    if (lws_adopt_descriptor_vhost(inst->vh, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP |
                                   (inst->tls ? LWS_ADOPT_ALLOW_SSL : 0),
                                   fd, NULL, NULL) == NULL)
      inst->host->log(inst->w, NULL, VCG_LOG_WARN,
                      "could not adopt an accepted connection");
  }
}

int vcg__ws_listen_open(vcg_instance_t *inst) {
  const vcg_host_api_t *host = inst->host;
  struct addrinfo hints, *res = NULL;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  char hoststr[256], portstr[8], addr[INET6_ADDRSTRLEN];
  uint16_t port;
  int one = 1, r, fd;

  if (vcg__ws_parse_listen(inst->conf->listen, hoststr, sizeof(hoststr),
                           &port) != 0)
    return VCG_EINVAL;
  snprintf(portstr, sizeof(portstr), "%u", port);
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  r = getaddrinfo(hoststr[0] ? hoststr : NULL, portstr, &hints, &res);
  if (r != 0 || res == NULL) {
    host->log(inst->w, NULL, VCG_LOG_ERROR, "listen %s: %s",
              inst->conf->listen, gai_strerror(r));
    return VCG_EINVAL;
  }
  fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r = -errno;
    freeaddrinfo(res);
    return r;
  }
  /* SO_REUSEPORT lets every worker bind the same address; the kernel then
   * spreads incoming connections over the workers' sockets. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
      bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
      listen(fd, 511) != 0) {
    r = -errno;
    host->log(inst->w, NULL, VCG_LOG_ERROR, "listen %s: %s",
              inst->conf->listen, strerror(errno));
    freeaddrinfo(res);
    close(fd);
    return r;
  }
  freeaddrinfo(res);
  inst->lfd = fd;

  /* Report the bound address (the port is real even when 0 was asked). */
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
    const char *scheme = inst->tls ? "wss" : "ws";

    if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
      inet_ntop(AF_INET6, &a6->sin6_addr, addr, sizeof(addr));
      snprintf(inst->url, sizeof(inst->url), "%s://[%s]:%u", scheme, addr,
               ntohs(a6->sin6_port));
    } else {
      struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
      inet_ntop(AF_INET, &a4->sin_addr, addr, sizeof(addr));
      snprintf(inst->url, sizeof(inst->url), "%s://%s:%u", scheme, addr,
               ntohs(a4->sin_port));
    }
  }

  r = uv_poll_init_socket(inst->loop, &inst->lpoll, fd);
  if (r != 0)
    return r; /* lfd closed by the caller's cleanup */
  inst->lpoll.data = inst;
  inst->lpoll_open = 1;
  r = uv_poll_start(&inst->lpoll, UV_READABLE, ws_on_accept);
  return r;
}
