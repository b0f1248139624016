/*
 * ws_own.c -- the ws:// sockets we own after the upgrade.
 *
 * Why.  lws 4.1 handles the handshake, and then its frame parser is more
 * lenient than RFC 6455 (ws_in.c), its writes need every message copied
 * behind LWS_PRE bytes of headroom, and its libuv backend arms and disarms
 * POLLOUT with an epoll_ctl() each time the kernel refuses part of a write,
 * which under load is most batches.  So once lws has written the 101 and
 * holds no byte of the socket in either direction, we read (ws_in.c) and
 * write (ws_out.c) it ourselves, and lws keeps only the close.
 *
 * How.  libuv allows one poll handle per descriptor, and lws has one on
 * the socket.  So each worker has an epoll set of its own, watched by the
 * loop through one uv_poll_t on the epoll descriptor, and every socket we
 * own is added to it once, edge-triggered for input and output, and never
 * touched again: no epoll_ctl() when a socket fills or drains, no poll
 * handle and no second descriptor per connection.  An input edge is read
 * until the socket is empty or the connection has taken WS_READ_BUDGET
 * this turn; then it goes on the ready list and is read first next turn
 * (an active idle handle keeps that turn's poll from blocking), so one
 * busy sender cannot starve the others.  An output edge wakes the writer
 * when it had left bytes behind.
 *
 * Takeover.  Safe only when lws holds no byte past the request head (a
 * client that sent frames before our 101, which RFC 6455 4.1 forbids): at
 * ESTABLISHED the bytes the socket received (TCP_INFO) minus those still
 * queued (FIONREAD) must be exactly the head ws_listen.c peeked; and when
 * lws has written all of its 101.  Otherwise lws reads and writes this
 * connection as it does on wss://.
 *
 * Lifetime.  lws closes the socket: CLOSED, then the close(), then
 * WSI_DESTROY.  The socket leaves our set in CLOSED, while its number is
 * still ours; at WSI_DESTROY it is only forgotten (the close removed it
 * from the set, and the number may belong to a new socket already).
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ws_int.h"

/* glibc's struct tcp_info stops at tcpi_total_retrans; the kernel's goes
 * on (the layout only ever grows at its end), and tcpi_bytes_received
 * (Linux 4.1) is the fourth 64-bit member after it.  <linux/tcp.h> has
 * it but cannot be included with <netinet/tcp.h>, which lws includes. */
struct ws_tcp_info {
  struct tcp_info base;
  uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
};
_Static_assert(offsetof(struct ws_tcp_info, bytes_received) == 128,
               "the kernel's tcpi_bytes_received is at byte 128");

/* --------------------------------------------------------- the ready list */

static void ws_ready_cb(uv_idle_t *h);

static void ws_ready_remove(ws_conn_t *c) {
  if (c->ready_idx < 0)
    return;
  c->inst->ready[c->ready_idx] = NULL;
  c->ready_idx = -1;
}

void vcg__ws_own_ready(ws_conn_t *c) {
  vcg_instance_t *inst = c->inst;

  if (c->ready_idx >= 0 || !inst->ready_open)
    return;
  if (inst->nready == inst->ready_cap) {
    size_t ncap = inst->ready_cap ? inst->ready_cap * 2 : 16;
    ws_conn_t **nr = ncap <= INT32_MAX ? realloc(inst->ready, ncap * sizeof(*nr)) : NULL;

    if (nr == NULL)
      return; /* its next input edge reads it again */
    inst->ready = nr;
    inst->ready_cap = ncap;
  }
  c->ready_idx = (int32_t)inst->nready;
  inst->ready[inst->nready++] = c;
  if (inst->nready == 1)
    uv_idle_start(&inst->ready_idle, ws_ready_cb);
}

/* Before the poll of each turn while connections are ready: their next
 * share of input.  A connection that reads its budget again goes back on
 * the list (behind those that were added meanwhile). */
static void ws_ready_cb(uv_idle_t *h) {
  vcg_instance_t *inst = h->data;
  size_t n = inst->nready, i;

  for (i = 0; i < n; i++) {
    ws_conn_t *c = inst->ready[i];

    if (c == NULL)
      continue;
    inst->ready[i] = NULL;
    c->ready_idx = -1;
    vcg__ws_own_read(c);
  }
  /* Keep what was added during the walk, at the front. */
  memmove(inst->ready, inst->ready + n, (inst->nready - n) * sizeof(*inst->ready));
  inst->nready -= n;
  for (i = 0; i < inst->nready; i++)
    if (inst->ready[i] != NULL)
      inst->ready[i]->ready_idx = (int32_t)i;
  if (inst->nready == 0)
    uv_idle_stop(&inst->ready_idle);
}

/* ------------------------------------------------------------ the set */

static void ws_ep_cb(uv_poll_t *h, int status, int events) {
  vcg_instance_t *inst = h->data;
  struct epoll_event ev[WS_EP_EVENTS];
  int n;

  (void)events;
  if (status < 0 || inst->ep < 0)
    return;
  /* Everything the set reports is handled before anything can free a
   * connection: they are freed only in WSI_DESTROY, from lws's own
   * callbacks, and a socket leaves the set (with any event it had
   * pending) before that. */
  n = epoll_wait(inst->ep, ev, WS_EP_EVENTS, 0);
  for (int i = 0; i < n; i++) {
    ws_conn_t *c = ev[i].data.ptr;

    if (c->own == NULL || c->killed)
      continue;
    if (ev[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
      vcg__ws_own_read(c);
    if ((ev[i].events & EPOLLOUT) && c->own != NULL && !c->killed)
      vcg__ws_own_writable(c);
  }
}

int vcg__ws_own_init(vcg_instance_t *inst) {
  inst->ep = -1;
  if (inst->tls)
    return 0; /* lws reads and writes every wss:// connection */
  inst->ep = epoll_create1(EPOLL_CLOEXEC);
  if (inst->ep < 0)
    return -errno;
  if (uv_poll_init(inst->loop, &inst->ep_poll, inst->ep) != 0) {
    close(inst->ep);
    inst->ep = -1;
    return VCG_ENOMEM;
  }
  inst->ep_poll.data = inst;
  inst->ep_open = 1;
  uv_idle_init(inst->loop, &inst->ready_idle);
  inst->ready_idle.data = inst;
  inst->ready_open = 1;
  return uv_poll_start(&inst->ep_poll, UV_READABLE, ws_ep_cb);
}

static void ws_ep_closed(uv_handle_t *h) {
  vcg_instance_t *inst = h->data;

  /* Sockets still in the set leave it when lws closes them. */
  if (inst->ep >= 0) {
    close(inst->ep);
    inst->ep = -1;
  }
}

void vcg__ws_own_close(vcg_instance_t *inst) {
  if (inst->ready_open) {
    inst->ready_open = 0;
    uv_close((uv_handle_t *)&inst->ready_idle, NULL);
  }
  if (inst->ep_open) {
    inst->ep_open = 0;
    uv_poll_stop(&inst->ep_poll);
    uv_close((uv_handle_t *)&inst->ep_poll, ws_ep_closed);
  }
}

/* ---------------------------------------------------------- takeover */

void vcg__ws_own_start(ws_conn_t *c) {
  vcg_instance_t *inst = c->inst;
  int fd = c->fd, inq = -1;
  struct ws_tcp_info ti;
  socklen_t tl = sizeof(ti);
  struct epoll_event ev;
  ws_own_t *o;

  if (inst->ep < 0 || !inst->ep_open || c->head_len == 0 || fd < 0)
    return;
  memset(&ti, 0, sizeof(ti));
  if (ioctl(fd, FIONREAD, &inq) != 0 ||
      getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0 ||
      tl < sizeof(ti) || ti.bytes_received - (uint64_t)inq != c->head_len) {
    /* (A FIN counts one byte in tcpi_bytes_received: a client that closed
     * at once is read by lws too, which ends it as well as we would.) */
    inst->host->log(inst->w, c->s, VCG_LOG_DEBUG, "libwebsockets holds bytes "
                    "past the request head (sent before our 101, or a close): "
                    "it reads this connection");
    return;
  }
  if (lws_partial_buffered(c->wsi)) {
    inst->host->log(inst->w, c->s, VCG_LOG_DEBUG, "libwebsockets holds part of "
                    "its 101: it writes this connection");
    return;
  }
  o = calloc(1, sizeof(*o));
  if (o == NULL)
    return; /* lws reads and writes this one */
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = c;
  if (epoll_ctl(inst->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    free(o);
    return;
  }
  c->own = o;
  /* lws reads nothing more; it writes nothing either, as nothing of ours
   * asks it to (no lws_callback_on_writable(), no lws keepalive). */
  lws_rx_flow_control(c->wsi, 0);
}

void vcg__ws_own_stop(ws_conn_t *c, int fd_open) {
  ws_own_t *o = c->own;
  vcg_instance_t *inst = c->inst;

  if (o == NULL)
    return;
  if (fd_open && inst->ep >= 0 && c->fd >= 0)
    (void)epoll_ctl(inst->ep, EPOLL_CTL_DEL, c->fd, NULL);
  ws_ready_remove(c);
  c->own = NULL;
  free(o->ctl);
  free(o->cout);
  free(o);
}
