/*
 * ws_listen.c -- the listen socket, and accepted sockets until lws has
 * them.
 *
 * Listening.  lws 4.1 only sets SO_REUSEPORT on its own listen socket when
 * the context has several service threads, and we have one per context, so
 * we listen ourselves: a non-blocking socket with SO_REUSEPORT (every
 * worker binds the same address and the kernel spreads connections),
 * watched by a uv_poll_t, and each accepted socket is handed to lws with
 * lws_adopt_descriptor_vhost() on a vhost created with
 * CONTEXT_PORT_NO_LISTEN_SERVER.  This also makes drain trivial (close our
 * socket) and reports bind errors synchronously from start().
 *
 * The request line.  The host parses the lobby URL from the request target
 * exactly as the client sent it, but lws 4.1 keeps only a decoded path (it
 * turns '+' into a space, decodes %XX, collapses "//" and resolves "/../",
 * lib/roles/http/parsers.c lws_parse_urldecode()).  So on plaintext
 * connections we read the request line ourselves before lws sees the
 * socket: recv(MSG_PEEK) until the end of the request's head (its first
 * line for the target, the whole head for ws_in.c's takeover check),
 * bounded by max_header_size and by upgrade_timeout, keep the raw target
 * with the connection, and then adopt the socket, from which lws reads
 * the same bytes.  A line that has not
 * arrived whole sets SO_RCVLOWAT one byte above what is there, so the
 * level-triggered poll wakes only when more has come instead of at every
 * loop turn.  On wss:// the bytes are ciphertext: ws_http.c rebuilds the
 * target from lws's decoded one (vcg__ws_target_rebuild()).
 *
 * Admission.  A socket counts against core.max_connections_per_ip and
 * core.max_connections from accept on (host->conn_admit()), before any
 * memory of ours or of lws is spent on it; a refused one gets a 429 or
 * 503 written straight to it.  Its slot is given back when its ws_conn_t
 * is freed (vcg__ws_conn_free(): WSI_DESTROY, or before lws had it), and
 * the session opened on it says VCG_SESSION_ADMITTED so that the host does
 * not count it twice.  Every socket must complete its upgrade within
 * upgrade_timeout of its accept or is closed: the sockets not yet upgraded
 * are kept in accept order, which is deadline order, and one timer looks
 * at the oldest.
 *
 * Out of descriptors.  accept() failing with EMFILE leaves the connection
 * in the backlog, and the level-triggered poll would call us again at
 * once, for ever (one core at 100% and a log line per try).  So a
 * descriptor of /dev/null is held in reserve: on EMFILE we give it up,
 * accept a waiting connection with it, answer 503 and close it, take the
 * reserve back, and so on until the backlog is empty, so clients learn at
 * once rather than time out.  Then the listen socket is left alone for
 * WS_ACCEPT_BACKOFF_MS, the condition is logged at most once a second with
 * the number of connections refused, and counted (accept_exhausted).
 */
#define _GNU_SOURCE 1 /* accept4() */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ws_int.h"

/* While we read the request line: our poll handle on the socket. */
struct ws_peek {
  uv_poll_t poll;              /* data: the ws_conn_t */
  int lowat;                   /* SO_RCVLOWAT we set, 0 when untouched */
};

/* --------------------------------------------------------- deadlines */

void vcg__ws_upgrade_restart(ws_conn_t *c) {
  if (c->up_list != WS_LIST_NONE && c->up_list != WS_LIST_UPGRADES)
    return; /* upgraded: the keepalive has the node */
  vcg__ws_dl_add(&c->inst->upgrades, &c->up_node);
  c->up_list = WS_LIST_UPGRADES;
}

void vcg__ws_upgrade_done(ws_conn_t *c) {
  if (c->up_list != WS_LIST_UPGRADES)
    return;
  vcg__ws_dl_remove(&c->inst->upgrades, &c->up_node);
  c->up_list = WS_LIST_NONE;
}

/* --------------------------------------------------- before adoption */

static void ws_peek_closed(uv_handle_t *h) {
  free(h);  /* the ws_peek_t; poll is its first member */
}

/* Stop watching c's socket ourselves (before lws takes it or we close). */
static void ws_peek_end(ws_conn_t *c) {
  ws_peek_t *pk = c->peek;

  if (pk == NULL)
    return;
  c->peek = NULL;
  if (pk->lowat > 1) {
    int one = 1;

    (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
  }
  uv_poll_stop(&pk->poll);
  uv_close((uv_handle_t *)&pk->poll, ws_peek_closed);
}

/* Answer a socket lws never had with a small response and close it.  What
 * the client sent is read first, so that the close is a FIN after the
 * response rather than a reset that could discard it. */
static void ws_early_reply(vcg_instance_t *inst, int fd, unsigned status,
                           const char *body) {
  char buf[2048];
  long n;
  int i;

  for (i = 0; i < 4 && recv(fd, inst->peekbuf, inst->hdr_max,
                            MSG_DONTWAIT) > 0; i++)
    ;
  n = vcg__ws_http_format(buf, sizeof(buf), status,
                          "text/plain; charset=utf-8", NULL, body);
  if (n > 0)
    (void)send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
  (void)shutdown(fd, SHUT_WR);
}

/* Give up on c before lws had it: optionally answer, close, free. */
static void ws_drop(ws_conn_t *c, unsigned status, const char *body) {
  ws_peek_end(c);
  if (c->fd >= 0) {
    if (status != 0)
      ws_early_reply(c->inst, c->fd, status, body);
    close(c->fd);
    c->fd = -1;
  }
  vcg__ws_conn_free(c);
}

/* A socket still without its upgrade upgrade_timeout after its accept. */
static void ws_upgrade_expired(vcg_instance_t *inst, ws_dl_node_t *n) {
  ws_conn_t *c = WS_CONN_OF(n, up_node);

  c->up_list = WS_LIST_NONE;
  inst->host->log(inst->w, NULL, VCG_LOG_DEBUG,
                  "no upgrade within %lld ms: closing",
                  (long long)inst->conf->upgrade_timeout);
  inst->host->counter_add(inst->w, "upgrade_timeouts", 1);
  if (c->wsi == NULL)
    ws_drop(c, 0, NULL);
  else
    vcg__ws_conn_kill(c); /* WSI_DESTROY then frees c and its slot */
}

void vcg__ws_slot_release(ws_conn_t *c) {
  if (!c->has_slot)
    return;
  c->has_slot = 0;
  c->inst->host->conn_release(c->inst->w, &c->peer.sa, c->slot_counted);
}

/* Hand c's socket to lws.  Frees c when lws refuses it. */
static void ws_adopt(ws_conn_t *c) {
  vcg_instance_t *inst = c->inst;
  lws_sock_file_fd_type fd;
  struct lws *wsi;

  ws_peek_end(c);
  fd.sockfd = c->fd;
  c->fd = -1;
  /* On failure lws closes the socket itself.  No callback of this wsi
   * runs inside the call with our state (it is bound afterwards), so a
   * failed adoption never reaches WSI_DESTROY with c: freeing c here
   * releases its slot exactly once. */
  wsi = lws_adopt_descriptor_vhost(inst->vh, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP |
                                   (inst->tls ? LWS_ADOPT_ALLOW_SSL : 0),
                                   fd, NULL, NULL);
  if (wsi == NULL) {
    inst->host->log(inst->w, NULL, VCG_LOG_WARN,
                    "could not adopt an accepted connection");
    vcg__ws_conn_free(c);
    return;
  }
  c->fd = fd.sockfd;
  vcg__ws_conn_bind(c, wsi);
}

/* The socket holds n bytes and not yet what we wait for: refuse with
 * status when n already fills max_header_size, else wake only once more
 * has come.  Returns what ws_peek_try() returns. */
static int ws_peek_wait(ws_conn_t *c, size_t n, unsigned status,
                        const char *why) {
  int lowat = (int)n + 1;

  if (n >= c->inst->hdr_max) {
    ws_drop(c, status, why);
    return 1;
  }
  if (c->peek != NULL &&
      setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)) == 0)
    c->peek->lowat = lowat;
  return 0;
}

/* Look for the request line in what the socket holds.  Returns 1 when c
 * was adopted or dropped, 0 to keep waiting. */
static int ws_peek_try(ws_conn_t *c) {
  vcg_instance_t *inst = c->inst;
  size_t cap = inst->hdr_max, toff, tlen, linelen, hl;
  ssize_t n = recv(c->fd, inst->peekbuf, cap, MSG_PEEK | MSG_DONTWAIT);
  const char *why;
  int r;

  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return 0;
  if (n <= 0) {
    ws_drop(c, 0, NULL); /* gone before a request */
    return 1;
  }
  r = vcg__ws_request_line(inst->peekbuf, (size_t)n, &toff, &tlen, &linelen);
  if (r == VCG_EINVAL) {
    ws_drop(c, 400, "bad request line");
    return 1;
  }
  if (r == VCG_EAGAIN)
    return ws_peek_wait(c, (size_t)n, 414, "request line too long");
  why = vcg__ws_target_check(inst->peekbuf + toff, tlen);
  if (why != NULL) {
    ws_drop(c, 400, why);
    return 1;
  }
  /* The whole head, for ws_in.c to tell whether lws read past it. */
  hl = vcg__ws_head_len(inst->peekbuf, (size_t)n);
  if (hl == 0)
    return ws_peek_wait(c, (size_t)n, 431, "request headers too large");
  c->head_len = (uint32_t)hl;
  c->target = malloc(tlen + 1);
  if (c->target == NULL) {
    ws_drop(c, 503, "out of memory");
    return 1;
  }
  memcpy(c->target, inst->peekbuf + toff, tlen);
  c->target[tlen] = '\0';
  ws_adopt(c);
  return 1;
}

static void ws_peek_cb(uv_poll_t *h, int status, int events) {
  ws_conn_t *c = h->data;

  (void)events;
  if (status < 0) {
    ws_drop(c, 0, NULL);
    return;
  }
  (void)ws_peek_try(c);
}

/* Wait for c's request line on our own poll handle. */
static void ws_peek_start(ws_conn_t *c) {
  vcg_instance_t *inst = c->inst;
  ws_peek_t *pk;

  /* A client usually sends its request with or right after its ACK: look
   * before paying for a poll handle. */
  if (ws_peek_try(c))
    return;
  pk = calloc(1, sizeof(*pk));
  if (pk == NULL || uv_poll_init_socket(inst->loop, &pk->poll, c->fd) != 0) {
    free(pk);
    ws_drop(c, 0, NULL);
    return;
  }
  pk->poll.data = c;
  c->peek = pk;
  if (uv_poll_start(&pk->poll, UV_READABLE, ws_peek_cb) != 0)
    ws_drop(c, 0, NULL);
}

/* A new socket from accept4(). */
static void ws_accepted(vcg_instance_t *inst, int fd,
                        const struct sockaddr_storage *ss) {
  const vcg_host_api_t *host = inst->host;
  ws_conn_t *c;
  int one = 1, r;

  /* The socket counts against the core's limits before it costs us
   * anything: a refusal is answered here, without lws. */
  r = host->conn_admit(inst->w, (const struct sockaddr *)ss);
  if (r < 0) {
    host->counter_add(inst->w, "connections_refused", 1);
    host->log(inst->w, NULL, VCG_LOG_DEBUG, "refused a connection: %s",
              r == VCG_EAGAIN ? "per-address limit" : "connection limit");
    /* On wss:// an HTTP answer before the TLS handshake is noise: close. */
    if (!inst->tls)
      ws_early_reply(inst, fd, r == VCG_EAGAIN ? 429 : 503,
                     r == VCG_EAGAIN ? "too many connections from this address"
                                     : "server is at its connection limit");
    close(fd);
    return;
  }
  c = vcg__ws_conn_new(inst);
  if (c == NULL) {
    host->conn_release(inst->w, (const struct sockaddr *)ss, r);
    close(fd);
    return;
  }
  if (ss->ss_family == AF_INET6)
    memcpy(&c->peer.in6, ss, sizeof(c->peer.in6));
  else if (ss->ss_family == AF_INET)
    memcpy(&c->peer.in, ss, sizeof(c->peer.in));
  else
    c->peer.sa.sa_family = AF_UNSPEC;
  c->has_slot = 1;
  c->slot_counted = r != 0;
  c->fd = fd;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (inst->conf->notsent_lowat > 0) {
    int lowat = (int)inst->conf->notsent_lowat;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
  }
  vcg__ws_upgrade_restart(c);
  if (inst->tls)
    ws_adopt(c);
  else
    ws_peek_start(c);
}

static void ws_listen_closed(uv_handle_t *h) {
  vcg_instance_t *inst = h->data;

  if (inst->lfd >= 0) {
    close(inst->lfd);
    inst->lfd = -1;
  }
}

/* --------------------------------------------- out of descriptors */

static void ws_on_accept(uv_poll_t *h, int status, int events);

static void ws_backoff_cb(uv_timer_t *t) {
  vcg_instance_t *inst = t->data;

  if (inst->lpoll_open)
    (void)uv_poll_start(&inst->lpoll, UV_READABLE, ws_on_accept);
}

static void ws_reserve_take(vcg_instance_t *inst) {
  if (inst->reserve_fd < 0)
    inst->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* accept() failed with err (EMFILE, ENFILE, ENOBUFS, ENOMEM). */
static void ws_accept_exhausted(vcg_instance_t *inst, int err) {
  uint64_t now = uv_now(inst->loop);
  unsigned refused = 0;

  /* Turn the waiting connections away with the reserve descriptor. */
  while ((err == EMFILE || err == ENFILE) && inst->reserve_fd >= 0 &&
         refused < WS_ACCEPT_BUDGET) {
    int s;

    close(inst->reserve_fd);
    inst->reserve_fd = -1;
    s = accept4(inst->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s >= 0) {
      if (!inst->tls)
        ws_early_reply(inst, s, 503, "server is out of file descriptors");
      close(s);
      refused++;
    }
    ws_reserve_take(inst);
    if (s < 0)
      break; /* the backlog is empty (or the error is another now) */
  }
  inst->exhausted_refused += refused;
  inst->host->counter_add(inst->w, "accept_exhausted", 1);
  if (refused)
    inst->host->counter_add(inst->w, "connections_refused", refused);
  if (inst->exhausted_logged == 0 || now - inst->exhausted_logged >= WS_ACCEPT_LOG_MS) {
    inst->host->log(inst->w, NULL, VCG_LOG_WARN, "accept: %s; %u connections "
                    "refused with 503 since the last report; not accepting "
                    "for %d ms", strerror(err), inst->exhausted_refused,
                    WS_ACCEPT_BACKOFF_MS);
    inst->exhausted_logged = now ? now : 1;
    inst->exhausted_refused = 0;
  }
  if (inst->backoff_open && inst->lpoll_open) {
    uv_poll_stop(&inst->lpoll);
    uv_timer_start(&inst->backoff, ws_backoff_cb, WS_ACCEPT_BACKOFF_MS, 0);
  }
}

/* ---------------------------------------------------------- listening */

void vcg__ws_listen_close(vcg_instance_t *inst) {
  if (inst->backoff_open)
    uv_timer_stop(&inst->backoff);
  if (inst->lpoll_open) {
    inst->lpoll_open = 0;
    uv_poll_stop(&inst->lpoll);
    uv_close((uv_handle_t *)&inst->lpoll, ws_listen_closed);
  } else if (inst->lfd >= 0) {
    close(inst->lfd);
    inst->lfd = -1;
  }
}

void vcg__ws_listen_stop(vcg_instance_t *inst) {
  ws_conn_t *c, *next;

  vcg__ws_listen_close(inst);
  for (c = inst->conns; c != NULL; c = next) {
    next = c->next;
    if (c->wsi == NULL)
      ws_drop(c, 0, NULL);
  }
  vcg__ws_dl_close(&inst->upgrades);
  if (inst->backoff_open) {
    inst->backoff_open = 0;
    uv_close((uv_handle_t *)&inst->backoff, NULL);
  }
  if (inst->reserve_fd >= 0) {
    close(inst->reserve_fd);
    inst->reserve_fd = -1;
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
  for (i = 0; i < WS_ACCEPT_BUDGET && inst->lpoll_open; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int s = accept4(inst->lfd, (struct sockaddr *)&ss, &sl,
                    SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (s < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM)
        ws_accept_exhausted(inst, errno);
      else if (errno != EAGAIN && errno != EWOULDBLOCK)
        inst->host->log(inst->w, NULL, VCG_LOG_WARN, "accept: %s",
                        strerror(errno));
      return;
    }
    ws_accepted(inst, s, &ss);
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
  inst->hdr_max = (size_t)inst->conf->max_header_size;
  inst->peekbuf = malloc(inst->hdr_max);
  if (inst->peekbuf == NULL)
    return VCG_ENOMEM;

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
  vcg__ws_dl_init(inst, &inst->upgrades, (uint64_t)inst->conf->upgrade_timeout,
                  ws_upgrade_expired);
  uv_timer_init(inst->loop, &inst->backoff);
  inst->backoff.data = inst;
  inst->backoff_open = 1;
  ws_reserve_take(inst);
  r = uv_poll_start(&inst->lpoll, UV_READABLE, ws_on_accept);
  return r;
}
