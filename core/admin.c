#include "admin.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "http.h"
#include "metrics.h"

#ifndef VCG_VERSION
#define VCG_VERSION "unknown"
#endif

#define ADMIN_MAX_CONNS 64
#define ADMIN_TIMEOUT_MS 5000

typedef struct admin_conn admin_conn_t;

struct vcg__admin {
  uv_tcp_t server;
  vcg__process_t *proc;
  admin_conn_t *conns;
  int nconns;
  int stopping;
};

struct admin_conn {
  uv_tcp_t tcp;                /* first: the handle is the conn */
  uv_timer_t timer;
  admin_conn_t *next, **pprev;
  vcg__admin_t *a;
  char buf[VCG__HTTP_MAX_HEAD];
  size_t len;
  int answered, closing, open_handles;
  uv_write_t wreq;
  char *out;                   /* the response, freed when written */
};

int vcg__admin_parse_listen(const char *listen, struct sockaddr_storage *ss) {
  char host[128];
  const char *colon;
  memset(ss, 0, sizeof *ss);
  if (!listen || !*listen) return VCG_EINVAL;
  if (listen[0] == '[') {
    const char *rb = strchr(listen, ']');
    if (!rb || rb[1] != ':' || (size_t)(rb - listen - 1) >= sizeof host) return VCG_EINVAL;
    memcpy(host, listen + 1, (size_t)(rb - listen - 1));
    host[rb - listen - 1] = '\0';
    colon = rb + 1;
  } else {
    colon = strrchr(listen, ':');
    if (!colon || memchr(listen, ':', (size_t)(colon - listen)) || (size_t)(colon - listen) >= sizeof host)
      return VCG_EINVAL;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
  }
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || end == colon + 1 || port < 0 || port > 65535) return VCG_EINVAL;
  if (!*host || strcmp(host, "*") == 0) snprintf(host, sizeof host, "0.0.0.0");
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return VCG_EINVAL;
}

static void conn_closed(uv_handle_t *h) {
  admin_conn_t *c = h->data;
  if (--c->open_handles > 0) return;
  vcg__admin_t *a = c->a;
  free(c->out);
  free(c);
  /* The last one out frees a: the listener, once closed, leaves data NULL. */
  if (--a->nconns == 0 && a->stopping && a->server.data == NULL) free(a);
}

static void conn_close(admin_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  *c->pprev = c->next;
  if (c->next) c->next->pprev = c->pprev;
  uv_close((uv_handle_t *)&c->timer, conn_closed);
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void written(uv_write_t *req, int status) {
  (void)status;
  conn_close(req->data);
}

static const char *status_text(int st) {
  switch (st) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 431: return "Request Header Fields Too Large";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Internal Server Error";
  }
}

/* Answer and close.  body is copied; head: headers only (HEAD). */
static void respond(admin_conn_t *c, int status, const char *ctype, const char *body, size_t blen,
                    int head) {
  if (c->answered) return;
  c->answered = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  char hdr[512];
  int n = snprintf(hdr, sizeof hdr,
                   "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
                   "cache-control: no-store\r\nconnection: close\r\n%s\r\n",
                   status, status_text(status), ctype, blen,
                   status == 405 ? "allow: GET, HEAD\r\n" : "");
  size_t total = (size_t)n + (head ? 0 : blen);
  if (!(c->out = malloc(total))) { conn_close(c); return; }
  memcpy(c->out, hdr, (size_t)n);
  if (!head) memcpy(c->out + n, body, blen);
  uv_buf_t b = uv_buf_init(c->out, (unsigned)total);
  c->wreq.data = c;
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, written) != 0) conn_close(c);
}

static void respond_text(admin_conn_t *c, int status, const char *text, int head) {
  respond(c, status, "text/plain; charset=utf-8", text, strlen(text), head);
}

static void respond_json(admin_conn_t *c, int status, json_t *j, int head) {
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!s) { respond_text(c, 500, "out of memory\n", head); return; }
  size_t n = strlen(s);
  char *t = realloc(s, n + 2);
  if (t) { s = t; s[n++] = '\n'; s[n] = '\0'; }
  respond(c, status, "application/json", s, n, head);
  free(s);
}

/* /readyz: every check by name, "ok" or what is wrong. */
static void readyz(admin_conn_t *c, int head) {
  vcg__process_t *p = c->a->proc;
  int ok = 1;
  json_t *checks = json_object();
  int started = atomic_load(&p->started);
  json_object_set_new(checks, "listeners", json_string(started ? "ok" : "starting"));
  ok &= started;
  int bus_ok = 1;
  for (unsigned i = 0; i < p->nworkers; i++)
    if (p->workers[i].bus.pc && !atomic_load(&p->workers[i].bus.bus_up)) bus_ok = 0;
  json_object_set_new(checks, "bus", json_string(!p->cfg->bus.loaded ? "none" : bus_ok ? "ok" : "down"));
  ok &= bus_ok;
  int draining = atomic_load(&p->draining);
  json_object_set_new(checks, "draining", json_string(draining ? "draining" : "ok"));
  ok &= !draining;
  json_t *j = json_pack("{s:s, s:o}", "status", ok ? "ok" : "fail", "checks", checks);
  respond_json(c, ok ? 200 : 503, j, head);
}

static json_t *plugin_json(const vcg__plugin_conf_t *pc) {
  const vcg_plugin_t *d = pc->loaded->desc;
  char abi[16];
  snprintf(abi, sizeof abi, "%u.%u", d->abi_major, d->abi_minor);
  return json_pack("{s:s, s:s, s:s, s:s, s:s}", "instance", pc->name, "plugin", d->name,
                   "version", d->version ? d->version : "", "kind",
                   d->kind == VCG_PLUGIN_TRANSPORT ? "transport" : "bus", "abi", abi);
}

static void version(admin_conn_t *c, int head) {
  const vcg__config_t *cfg = c->a->proc->cfg;
  char abi[16];
  snprintf(abi, sizeof abi, "%d.%d", VCG_ABI_MAJOR, VCG_ABI_MINOR);
  json_t *plugins = json_array();
  for (size_t i = 0; i < cfg->ntransports; i++) json_array_append_new(plugins, plugin_json(&cfg->transports[i]));
  if (cfg->bus.loaded) json_array_append_new(plugins, plugin_json(&cfg->bus));
  respond_json(c, 200, json_pack("{s:s, s:s, s:o}", "version", VCG_VERSION, "abi", abi, "plugins", plugins),
               head);
}

static void route(admin_conn_t *c, const vcg__http_req_t *r) {
  if (strcmp(r->path, "/metrics") == 0) {
    vcg__sbuf_t b = { 0 };
    vcg__metrics_render(c->a->proc, &b);
    if (b.oom) respond_text(c, 500, "out of memory\n", r->head);
    else respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.s, b.len, r->head);
    vcg__sbuf_free(&b);
  } else if (strcmp(r->path, "/livez") == 0) {
    respond_text(c, 200, "ok\n", r->head);
  } else if (strcmp(r->path, "/readyz") == 0) {
    readyz(c, r->head);
  } else if (strcmp(r->path, "/version") == 0) {
    version(c, r->head);
  } else {
    respond_text(c, 404, "not found: /metrics, /livez, /readyz, /version\n", r->head);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  admin_conn_t *c = h->data;
  (void)hint;
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  admin_conn_t *c = s->data;
  (void)buf;
  if (n < 0) { conn_close(c); return; }
  c->len += (size_t)n;
  vcg__http_req_t req;
  int rc = vcg__http_parse(c->buf, c->len, &req);
  if (rc == 0 && c->len < sizeof c->buf) return; /* more to come */
  if (rc == 0) rc = -431;
  if (rc < 0) {
    char text[64];
    snprintf(text, sizeof text, "%d %s\n", -rc, status_text(-rc));
    respond_text(c, -rc, text, 0);
    return;
  }
  route(c, &req);
}

static void on_timeout(uv_timer_t *t) {
  conn_close(t->data); /* no complete request in time */
}

static void on_connection(uv_stream_t *server, int status) {
  vcg__admin_t *a = server->data;
  if (status < 0) return;
  admin_conn_t *c = calloc(1, sizeof *c);
  if (!c) return;
  c->a = a;
  uv_tcp_init(server->loop, &c->tcp);
  uv_timer_init(server->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->open_handles = 2;
  a->nconns++;
  c->next = a->conns;
  if (c->next) c->next->pprev = &c->next;
  c->pprev = &a->conns;
  a->conns = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || a->nconns > ADMIN_MAX_CONNS ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_timeout, ADMIN_TIMEOUT_MS, 0);
}

static void server_closed(uv_handle_t *h) {
  vcg__admin_t *a = h->data;
  a->server.data = NULL;
  if (a->nconns == 0) free(a);
}

int vcg__admin_start(vcg__admin_t **out, uv_loop_t *loop, vcg__process_t *proc,
                     const char *listen, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  if (vcg__admin_parse_listen(listen, &ss) != 0) {
    snprintf(err, errlen, "core.admin.listen: expected \"host:port\" or \"[v6addr]:port\", got \"%s\"",
             listen);
    return VCG_EINVAL;
  }
  vcg__admin_t *a = calloc(1, sizeof *a);
  if (!a) return VCG_ENOMEM;
  a->proc = proc;
  uv_tcp_init(loop, &a->server);
  a->server.data = a;
  int rc = uv_tcp_bind(&a->server, (const struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&a->server, 64, on_connection);
  if (rc != 0) {
    snprintf(err, errlen, "core.admin.listen: cannot listen on %s: %s", listen, uv_strerror(rc));
    a->stopping = 1;
    uv_close((uv_handle_t *)&a->server, server_closed); /* frees a on the loop */
    *out = NULL;
    return rc;
  }
  *out = a;
  return 0;
}

void vcg__admin_stop(vcg__admin_t *a) {
  if (!a || a->stopping) return;
  a->stopping = 1;
  while (a->conns) conn_close(a->conns);
  uv_close((uv_handle_t *)&a->server, server_closed);
}
