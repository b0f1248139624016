/* bare-relay: the bench's reference for what one core can relay when
 * nothing but the system calls is on the hot path.  Same URL grammar as
 * vcgate (/lobby/{user}/{room}) and the same forwarding rule (every binary
 * message to every other member of the room, never back to its sender);
 * no TLS, no protobuf, no libuv, no product features: it stamps nothing,
 * parses nothing of the payload, sends nothing of its own (no
 * SESSION_ASSIGNED or MEETING, no RTT echo, no drop policy, no CONGESTION),
 * and has no limits beyond a per-connection output bound.  contrib/bench/
 * run.sh reports vcgate as a fraction of it, in the same run, with the same
 * loadgen and the same pinned core, so that a ratio says how much of one
 * core vcgate's features cost.  It is not a product: no origin checks, no
 * UTF-8 validation of text frames (text messages are dropped, as the Node
 * reference relay does), no permessage-deflate.
 *
 *   bare-relay [--host 127.0.0.1] [--port 8091] [--max-out BYTES]
 *
 * Design (one thread, one epoll instance):
 * - Every connection is registered once, edge-triggered, for EPOLLIN |
 *   EPOLLOUT | EPOLLRDHUP and never touched again with epoll_ctl: no
 *   syscall churn when a socket fills or drains.
 * - Edge-triggered input must be read until EAGAIN, but one busy sender
 *   must not starve the others: a connection is read at most BR_READ_BUDGET
 *   bytes per loop turn and, if not drained, stays on a ready list that the
 *   next turn serves first (epoll_wait then does not block).
 * - Input is read into one shared buffer and parsed in place (frames are
 *   unmasked where they lie); only a frame cut by the end of a read is
 *   copied into the connection's own buffer, and only the bytes that
 *   complete it are copied on the next read.  An idle connection owns no
 *   buffer at all.
 * - Forwarding appends the unmasked server frame to each receiver's output
 *   buffer (one copy per receiver: the kernel copies it again anyway) and
 *   puts the receiver on a dirty list; at the end of the turn each dirty
 *   connection gets one send() of everything queued for it.  What the
 *   kernel does not take waits for the next EPOLLOUT edge; a buffer that
 *   was fully sent is freed.  A receiver
 *   whose unsent bytes would exceed --max-out (default 64 MiB) is closed
 *   (1008): the bench should never reach it, a runaway must not eat the
 *   machine.
 * - A connection closed during a turn is taken out of its room at once and
 *   freed at the end of the turn, after the lists that may name it.
 * - SIGINT / SIGTERM end the loop between turns (epoll_pwait unblocks them
 *   only while waiting); everything is freed, so ASan can check leaks.
 * The handshake's SHA-1 and base64 are loadgen's (contrib/loadgen/wsutil.c). */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include "wsutil.h"

#define BR_RBUF (256 * 1024)       /* shared read buffer */
#define BR_READ_BUDGET (256 * 1024) /* bytes read per connection per turn */
#define BR_HS_MAX 8192             /* request headers */
#define BR_MAX_MSG (16u << 20)     /* largest message (and frame) accepted */
#define BR_ROOM_BUCKETS 4096
#define BR_EVENTS 512

enum { BR_HS, BR_OPEN, BR_CLOSING };

typedef struct br_conn br_conn_t;

typedef struct br_room {
  char *name;          /* owned */
  br_conn_t **m;       /* members, owned array of borrowed pointers */
  uint32_t n, cap;
  struct br_room *next; /* hash chain */
} br_room_t;

struct br_conn {
  int fd;
  int state;
  int dead;            /* closed this turn; freed at the end of it */
  br_room_t *room;     /* borrowed; NULL before the upgrade and once closing */
  uint32_t slot;       /* index in room->m */
  uint8_t *in;         /* handshake bytes or one incomplete frame, owned */
  size_t inlen, incap;
  uint8_t *msg;        /* a fragmented message being reassembled, owned */
  size_t mlen, mcap;
  int in_msg, msg_op;
  uint8_t *out;        /* queued output [outoff, outlen), owned */
  size_t outoff, outlen, outcap;
  int ready, dirty;    /* on the ready / dirty list */
  size_t all_idx;      /* index in br->all */
  br_conn_t *ready_next, *dirty_next, *dead_next;
};

typedef struct {
  int ep, lfd;
  size_t max_out;
  uint8_t *rbuf;       /* owned, BR_RBUF bytes */
  br_room_t *rooms[BR_ROOM_BUCKETS];
  br_conn_t *ready, *dirty, *dead;
  br_conn_t **all;     /* every connection not yet freed, owned array */
  size_t nall, capall; /* in elements */
  unsigned long long accepted, msgs_in, frames_out, slow_closed;
} br_t;

static volatile sig_atomic_t br_stop;
static void on_signal(int sig) { (void)sig; br_stop = 1; }

static int reserve(uint8_t **b, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t nc = *cap ? *cap : 4096;
  while (nc < need) nc *= 2;
  uint8_t *nb = realloc(*b, nc);
  if (!nb) return -ENOMEM;
  *b = nb;
  *cap = nc;
  return 0;
}

/* ---------------------------------------------------------------- rooms */

static uint32_t room_hash(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
  return (uint32_t)(h % BR_ROOM_BUCKETS);
}

static int room_join(br_t *br, br_conn_t *c, const char *name, size_t n) {
  br_room_t **bp = &br->rooms[room_hash(name, n)], *r = *bp;
  while (r && !(strlen(r->name) == n && memcmp(r->name, name, n) == 0)) r = r->next;
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r || !(r->name = strndup(name, n))) { free(r); return -ENOMEM; }
    r->next = *bp;
    *bp = r;
  }
  if (r->n == r->cap) {
    uint32_t nc = r->cap ? r->cap * 2 : 8;
    br_conn_t **nm = realloc(r->m, nc * sizeof *nm);
    if (!nm) {
      if (r->n == 0) { *bp = r->next; free(r->name); free(r); }
      return -ENOMEM;
    }
    r->m = nm;
    r->cap = nc;
  }
  c->room = r;
  c->slot = r->n;
  r->m[r->n++] = c;
  return 0;
}

static void room_leave(br_t *br, br_conn_t *c) {
  br_room_t *r = c->room;
  if (!r) return;
  c->room = NULL;
  br_conn_t *last = r->m[--r->n];
  r->m[c->slot] = last;
  last->slot = c->slot;
  if (r->n > 0) return;
  size_t n = strlen(r->name);
  br_room_t **bp = &br->rooms[room_hash(r->name, n)];
  while (*bp != r) bp = &(*bp)->next;
  *bp = r->next;
  free(r->m);
  free(r->name);
  free(r);
}

/* ---------------------------------------------------------------- lists */

static void ready_push(br_t *br, br_conn_t *c) {
  if (c->ready || c->dead) return;
  c->ready = 1;
  c->ready_next = br->ready;
  br->ready = c;
}

static void dirty_push(br_t *br, br_conn_t *c) {
  if (c->dirty || c->dead) return;
  c->dirty = 1;
  c->dirty_next = br->dirty;
  br->dirty = c;
}

static void conn_kill(br_t *br, br_conn_t *c) {
  if (c->dead) return;
  room_leave(br, c);
  c->dead = 1;
  c->dead_next = br->dead;
  br->dead = c;
}

static void conn_free(br_t *br, br_conn_t *c) {
  br_conn_t *last = br->all[--br->nall];
  br->all[c->all_idx] = last;
  last->all_idx = c->all_idx;
  close(c->fd);
  free(c->in);
  free(c->msg);
  free(c->out);
  free(c);
}

/* ---------------------------------------------------------------- output */

/* Append one unmasked server frame (header + payload) to c's output. */
static int out_frame(br_t *br, br_conn_t *c, int op, const uint8_t *p, size_t len) {
  size_t hl = len < 126 ? 2 : len < 65536 ? 4 : 10;
  size_t queued = c->outlen - c->outoff;
  if (queued + hl + len > br->max_out) return -ENOBUFS;
  if (c->outoff && c->outoff >= c->outcap / 2) { /* compact before growing */
    memmove(c->out, c->out + c->outoff, queued);
    c->outoff = 0;
    c->outlen = queued;
  }
  if (reserve(&c->out, &c->outcap, c->outlen + hl + len) != 0) return -ENOMEM;
  uint8_t *o = c->out + c->outlen;
  o[0] = (uint8_t)(0x80 | op);
  if (len < 126) {
    o[1] = (uint8_t)len;
  } else if (len < 65536) {
    o[1] = 126;
    o[2] = (uint8_t)(len >> 8);
    o[3] = (uint8_t)len;
  } else {
    o[1] = 127;
    for (int k = 0; k < 8; k++) o[2 + k] = (uint8_t)((uint64_t)len >> (56 - 8 * k));
  }
  memcpy(o + hl, p, len);
  c->outlen += hl + len;
  dirty_push(br, c);
  return 0;
}

/* Queue a close frame with code, stop relaying to and from c, and close the
 * socket once the frame is out. */
static void conn_fail(br_t *br, br_conn_t *c, unsigned code) {
  if (c->state == BR_CLOSING || c->dead) return;
  uint8_t b[2] = {(uint8_t)(code >> 8), (uint8_t)code};
  room_leave(br, c);
  c->state = BR_CLOSING;
  if (out_frame(br, c, 0x8, b, code ? 2 : 0) != 0) conn_kill(br, c);
}

static void conn_flush(br_t *br, br_conn_t *c) {
  while (c->outoff < c->outlen) {
    ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) { c->outoff += (size_t)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return; /* EPOLLOUT edge follows */
    conn_kill(br, c);
    return;
  }
  /* Nothing queued: the buffer goes, so an idle connection owns no memory
   * but its struct (one malloc per turn of a busy one costs far less than
   * its send()). */
  c->outoff = c->outlen = 0;
  free(c->out);
  c->out = NULL;
  c->outcap = 0;
  if (c->state == BR_CLOSING) conn_kill(br, c);
}

/* ---------------------------------------------------------------- input */

static void forward(br_t *br, br_conn_t *from, const uint8_t *p, size_t len) {
  br_room_t *r = from->room;
  br->msgs_in++;
  if (!r) return;
  uint32_t i = 0;
  while (i < r->n) {
    br_conn_t *m = r->m[i];
    if (m == from) { i++; continue; }
    if (out_frame(br, m, 0x2, p, len) == 0) {
      br->frames_out++;
      i++;
      continue;
    }
    /* m leaves the room (the sender stays, so the room does too), and the
     * last member moves into slot i, which is looked at again. */
    br->slow_closed++;
    conn_fail(br, m, 1008);
  }
}

/* One complete frame f of total bytes (writable: unmasked in place). */
static void frame_in(br_t *br, br_conn_t *c, uint8_t *f, size_t total) {
  int fin = f[0] & 0x80, op = f[0] & 0x0f;
  size_t l7 = f[1] & 0x7f, hl = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
  if (!(f[1] & 0x80) || (f[0] & 0x70)) { conn_fail(br, c, 1002); return; } /* unmasked, RSV */
  uint8_t *p = f + hl + 4;
  size_t pl = total - hl - 4;
  lg_ws_mask(p, p, pl, f + hl);
  if (op >= 0x8 && (!fin || pl > 125)) { conn_fail(br, c, 1002); return; }
  switch (op) {
  case 0x1:
  case 0x2:
    if (c->in_msg) { conn_fail(br, c, 1002); return; }
    if (fin) {
      if (op == 0x2) forward(br, c, p, pl);
      return;
    }
    c->in_msg = 1;
    c->msg_op = op;
    c->mlen = 0;
    /* the first fragment is appended like a continuation */
    /* FALLTHROUGH */
  case 0x0:
    if (!c->in_msg) { conn_fail(br, c, 1002); return; }
    if (c->mlen + pl > BR_MAX_MSG) { conn_fail(br, c, 1009); return; }
    if (reserve(&c->msg, &c->mcap, c->mlen + pl) != 0) { conn_fail(br, c, 1011); return; }
    memcpy(c->msg + c->mlen, p, pl);
    c->mlen += pl;
    if (fin) {
      c->in_msg = 0;
      if (c->msg_op == 0x2) forward(br, c, c->msg, c->mlen);
      if (c->mcap > (1u << 20)) { free(c->msg); c->msg = NULL; c->mcap = 0; }
    }
    return;
  case 0x8: {
    /* Echo the code (RFC 6455 5.5.1), then close once it is written. */
    unsigned code = pl >= 2 ? (unsigned)p[0] << 8 | p[1] : 0;
    conn_fail(br, c, code);
    return;
  }
  case 0x9:
    if (out_frame(br, c, 0xA, p, pl) != 0) conn_kill(br, c);
    return;
  case 0xA:
    return;
  default:
    conn_fail(br, c, 1002);
    return;
  }
}

/* Frames in d[0..n): completes a frame held from the previous read first,
 * parses whole frames in place and keeps a cut one. */
static void frames_in(br_t *br, br_conn_t *c, uint8_t *d, size_t n) {
  int bad = 0;
  while (n > 0 && c->state == BR_OPEN && !c->dead) {
    if (c->inlen > 0) {
      size_t need;
      while ((need = lg_ws_need(c->in, c->inlen, BR_MAX_MSG, &bad)) > c->inlen && n > 0 && !bad) {
        size_t take = need - c->inlen < n ? need - c->inlen : n;
        if (reserve(&c->in, &c->incap, c->inlen + take) != 0) { conn_fail(br, c, 1011); return; }
        memcpy(c->in + c->inlen, d, take);
        c->inlen += take;
        d += take;
        n -= take;
      }
      if (bad) { conn_fail(br, c, 1009); return; }
      if (need > c->inlen) return;
      c->inlen = 0;
      frame_in(br, c, c->in, need);
      free(c->in); /* an idle connection owns no buffer */
      c->in = NULL;
      c->incap = 0;
      continue;
    }
    size_t need = lg_ws_need(d, n, BR_MAX_MSG, &bad);
    if (bad) { conn_fail(br, c, 1009); return; }
    if (need <= n) {
      frame_in(br, c, d, need);
      d += need;
      n -= need;
      continue;
    }
    if (reserve(&c->in, &c->incap, n > 64 ? n : 64) != 0) { conn_fail(br, c, 1011); return; }
    memcpy(c->in, d, n);
    c->inlen = n;
    return;
  }
}

static void http_error(br_t *br, br_conn_t *c, const char *status) {
  char b[160];
  int n = snprintf(b, sizeof b, "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);
  (void)!send(c->fd, b, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
  conn_kill(br, c);
}

/* A header's value (trimmed) in the request block, or NULL. */
static const char *header(const char *req, const char *end, const char *name, size_t *vlen) {
  size_t nl = strlen(name);
  for (const char *l = strstr(req, "\r\n"); l && l + 2 < end; l = strstr(l + 2, "\r\n")) {
    const char *h = l + 2;
    if (strncasecmp(h, name, nl) != 0 || h[nl] != ':') continue;
    const char *v = h + nl + 1, *e = strstr(v, "\r\n");
    while (*v == ' ' || *v == '\t') v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
    *vlen = (size_t)(e - v);
    return v;
  }
  return NULL;
}

static int has_token(const char *v, size_t n, const char *tok) {
  size_t tl = strlen(tok);
  for (size_t i = 0; i + tl <= n; i++)
    if (strncasecmp(v + i, tok, tl) == 0) return 1;
  return 0;
}

/* The request's headers are c->in[0..hdr) (NUL-terminated there); the
 * bytes behind them, tail[0..tlen), are already frames. */
static void upgrade(br_t *br, br_conn_t *c, size_t hdr, uint8_t *tail, size_t tlen) {
  char *req = (char *)c->in, *end = req + hdr;
  if (strncmp(req, "GET /lobby/", 11) != 0) { http_error(br, c, "404 Not Found"); return; }
  const char *user = req + 11, *slash = user + strcspn(user, "/ ?\r");
  if (slash == user || *slash != '/') { http_error(br, c, "404 Not Found"); return; }
  const char *room = slash + 1;
  size_t rl = strspn(room, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
  if (rl == 0 || rl > 128 || (room[rl] != ' ' && room[rl] != '?')) {
    http_error(br, c, "404 Not Found");
    return;
  }
  size_t kl = 0, ul = 0, vl = 0;
  const char *key = header(req, end, "sec-websocket-key", &kl);
  const char *up = header(req, end, "upgrade", &ul);
  const char *ver = header(req, end, "sec-websocket-version", &vl);
  if (!key || !up || !has_token(up, ul, "websocket")) { http_error(br, c, "400 Bad Request"); return; }
  if (!ver || vl != 2 || strncmp(ver, "13", 2) != 0) {
    http_error(br, c, "426 Upgrade Required\r\nSec-WebSocket-Version: 13");
    return;
  }
  char accept[29];
  lg_ws_accept(key, kl, accept);
  if (room_join(br, c, room, rl) != 0) { http_error(br, c, "503 Service Unavailable"); return; }
  /* The request buffer becomes the output buffer, holding the response
   * (freed once it is sent). */
  int n = snprintf(req, c->incap, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
  c->out = c->in;
  c->outcap = c->incap;
  c->outoff = 0;
  c->outlen = (size_t)n;
  c->in = NULL;
  c->inlen = c->incap = 0;
  dirty_push(br, c);
  c->state = BR_OPEN;
  if (tlen) frames_in(br, c, tail, tlen);
}

static void handshake_in(br_t *br, br_conn_t *c, uint8_t *d, size_t n) {
  size_t take = n < BR_HS_MAX - 1 - c->inlen ? n : BR_HS_MAX - 1 - c->inlen;
  /* At least 256 bytes: the buffer is reused for the 101 response. */
  if (reserve(&c->in, &c->incap, c->inlen + take + 1 > 256 ? c->inlen + take + 1 : 256) != 0) {
    conn_kill(br, c);
    return;
  }
  size_t old = c->inlen;
  memcpy(c->in + c->inlen, d, take);
  c->inlen += take;
  c->in[c->inlen] = 0;
  /* A NUL byte would hide the end of the headers from strstr. */
  if (memchr(c->in + old, 0, take)) { http_error(br, c, "400 Bad Request"); return; }
  char *e = strstr((char *)c->in, "\r\n\r\n");
  if (!e) {
    if (c->inlen >= BR_HS_MAX - 1) http_error(br, c, "431 Request Header Fields Too Large");
    return;
  }
  size_t hdr = (size_t)(e - (char *)c->in) + 4;
  /* What followed the headers in this read is frames, in place in d. */
  size_t used = hdr - old;
  c->in[hdr] = 0;
  upgrade(br, c, hdr, d + used, n - used);
}

static void conn_read(br_t *br, br_conn_t *c) {
  size_t got = 0;
  while (!c->dead && got < BR_READ_BUDGET) {
    ssize_t n = recv(c->fd, br->rbuf, BR_RBUF, MSG_DONTWAIT);
    if (n > 0) {
      got += (size_t)n;
      if (c->state == BR_HS) handshake_in(br, c, br->rbuf, (size_t)n);
      else if (c->state == BR_OPEN) frames_in(br, c, br->rbuf, (size_t)n);
      /* BR_CLOSING: input after the close frame is discarded. */
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return; /* drained */
    conn_kill(br, c); /* EOF or error */
    return;
  }
  if (!c->dead) ready_push(br, c); /* budget used: more next turn */
}

/* ---------------------------------------------------------------- accept */

static void accept_all(br_t *br) {
  for (int k = 0; k < 1024; k++) {
    int fd = accept4(br->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
        fprintf(stderr, "bare-relay: accept: %s\n", strerror(errno));
      return;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    br_conn_t *c = calloc(1, sizeof *c);
    if (c && br->nall == br->capall) {
      size_t nc = br->capall ? br->capall * 2 : 1024;
      br_conn_t **na = realloc(br->all, nc * sizeof *na);
      if (na) { br->all = na; br->capall = nc; }
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (!c || br->nall == br->capall || epoll_ctl(br->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      free(c);
      close(fd);
      continue;
    }
    c->fd = fd;
    c->state = BR_HS;
    c->all_idx = br->nall;
    br->all[br->nall++] = c;
    br->accepted++;
  }
}

/* ---------------------------------------------------------------- loop */

static br_conn_t br_listener_tag; /* epoll data of the listening socket */

static void turn(br_t *br, struct epoll_event *evs, int n) {
  for (int i = 0; i < n; i++) {
    br_conn_t *c = evs[i].data.ptr;
    if (c == &br_listener_tag) { accept_all(br); continue; }
    if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ready_push(br, c);
    if ((evs[i].events & EPOLLOUT) && c->outlen > c->outoff) dirty_push(br, c);
  }
  /* Read: every ready connection once (conn_read puts back what it did not
   * drain, on the fresh list). */
  br_conn_t *r = br->ready;
  br->ready = NULL;
  while (r) {
    br_conn_t *next = r->ready_next;
    r->ready = 0;
    if (!r->dead) conn_read(br, r);
    r = next;
  }
  /* Write: one send() per connection that got something this turn. */
  while (br->dirty) {
    br_conn_t *c = br->dirty;
    br->dirty = c->dirty_next;
    c->dirty = 0;
    if (!c->dead) conn_flush(br, c);
  }
  /* Free the dead, after unlinking them from the ready list. */
  if (!br->dead) return;
  br_conn_t **pp = &br->ready;
  while (*pp) {
    if ((*pp)->dead) *pp = (*pp)->ready_next;
    else pp = &(*pp)->ready_next;
  }
  while (br->dead) {
    br_conn_t *c = br->dead;
    br->dead = c->dead_next;
    conn_free(br, c);
  }
}

static int listen_on(br_t *br, const char *host, const char *port) {
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  int rc = getaddrinfo(host, port, &hints, &ai);
  if (rc != 0) {
    fprintf(stderr, "bare-relay: %s:%s: %s\n", host, port, gai_strerror(rc));
    return -1;
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
  if (fd >= 0) (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
    fprintf(stderr, "bare-relay: listen on %s:%s: %s\n", host, port, strerror(errno));
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    return -1;
  }
  freeaddrinfo(ai);
  br->lfd = fd;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &br_listener_tag};
  if (epoll_ctl(br->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    fprintf(stderr, "bare-relay: epoll_ctl: %s\n", strerror(errno));
    return -1;
  }
  return 0;
}

static void usage(FILE *f) {
  fprintf(f, "usage: bare-relay [--host 127.0.0.1] [--port 8091] [--max-out BYTES]\n"
             "  the bench's reference relay: /lobby/{user}/{room}, every binary message to\n"
             "  the other members of the room; see the comment at the top of bare-relay.c\n");
}

int main(int argc, char **argv) {
  static const struct option lo[] = {{"host", 1, 0, 'H'}, {"port", 1, 0, 'p'},
                                     {"max-out", 1, 0, 'm'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
  const char *host = "127.0.0.1", *port = "8091";
  long long max_out = 64ll << 20;
  int ch;
  while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
    switch (ch) {
    case 'H': host = optarg; break;
    case 'p': port = optarg; break;
    case 'm': max_out = atoll(optarg); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc || max_out < 65536) {
    usage(stderr);
    return 2;
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
  /* SIGINT / SIGTERM are blocked except inside epoll_pwait, so a signal
   * can only land while the loop waits, and the flag is seen right after. */
  sigset_t block, waitmask;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &waitmask);
  sigdelset(&waitmask, SIGINT);
  sigdelset(&waitmask, SIGTERM);
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  br_t *br = calloc(1, sizeof *br);
  if (!br) return 1;
  br->max_out = (size_t)max_out;
  br->lfd = -1;
  br->rbuf = malloc(BR_RBUF);
  br->ep = epoll_create1(EPOLL_CLOEXEC);
  int rc = 1;
  if (br->rbuf && br->ep >= 0 && listen_on(br, host, port) == 0) {
    fprintf(stderr, "bare-relay listening on ws://%s:%s\n", host, port);
    struct epoll_event evs[BR_EVENTS];
    while (!br_stop) {
      int n = epoll_pwait(br->ep, evs, BR_EVENTS, br->ready ? 0 : -1, &waitmask);
      if (n < 0) {
        if (errno == EINTR) continue;
        fprintf(stderr, "bare-relay: epoll_wait: %s\n", strerror(errno));
        break;
      }
      turn(br, evs, n);
    }
    rc = br_stop ? 0 : 1;
  }
  fprintf(stderr, "bare-relay: %llu connections, %llu messages in, %llu frames out, %llu slow closed\n",
          br->accepted, br->msgs_in, br->frames_out, br->slow_closed);
  while (br->nall) {
    br_conn_t *c = br->all[br->nall - 1];
    room_leave(br, c);
    conn_free(br, c);
  }
  if (br->lfd >= 0) close(br->lfd);
  if (br->ep >= 0) close(br->ep);
  free(br->all);
  free(br->rbuf);
  free(br);
  return rc;
}
