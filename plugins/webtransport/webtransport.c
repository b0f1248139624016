/*
 * webtransport.c -- the WebTransport transport plugin: descriptor,
 * options and lifecycle, and the wiring of its layers.
 *
 * The data path, bottom to top (each file calls only downwards; the
 * layers below call up only through callback tables filled here or by
 * the layer above):
 *   endpoint.c  UDP sockets, connection ID table, version negotiation,
 *               stateless reset
 *   conn.c      one QUIC connection (ngtcp2 + GnuTLS): handshake,
 *               callbacks, timers, write loop
 *   stream.c    output records and the output queue of a connection
 *   session.c   HTTP/3 and the WebTransport session (CONNECT, capsules,
 *               PacketWrappers in and out)
 * with the pure helpers h3.c (framing), qpack.c (header blocks), tls.c
 * (credentials), addr.c and udp_send.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/stat.h>

#include <gnutls/crypto.h>

#include "addr.h"
#include "conn.h"
#include "endpoint.h"
#include "h3.h"
#include "session.h"
#include "tls.h"

/* ---- configuration (filled by the host from the option table) ---- */
typedef struct vcg_wt_conf {
  char *listen;            /* "127.0.0.1:4433", "[::1]:4433", comma list */
  int64_t idle_timeout;    /* ms */
  char *tls_cert;
  char *tls_key;
  int64_t max_sessions;    /* concurrent QUIC connections per worker */
  char *cert_hash_file;
  char *retry;             /* "auto", "always", "never" */
  int64_t retry_threshold; /* auto: half-open connections per worker */
  int64_t max_half_open_per_address;
  int64_t handshake_timeout; /* ms */
  int64_t max_client_streams; /* per connection (ngtcp2 0.12 keeps each) */
  int64_t connection_window; /* bytes */
  int64_t max_concurrent_streams;
} vcg_wt_conf_t;

/* Process-wide state: made in init(), shared by all workers' instances.
 * Only the credentials change afterwards (a reload), under `lock`. */
struct vcg_plugin_state {
  const vcg_host_api_t *host;
  gnutls_priority_t prio;
  uint8_t reset_secret[WT_RESET_SECRET_LEN]; /* stateless reset token key */
  uint8_t token_secret[WT_TOKEN_SECRET_LEN]; /* Retry token key */
  pthread_mutex_t lock;
  vcg__wt_cred_t *cred;        /* one reference: what new handshakes get */
  char *hash_path;             /* cert_hash_file last written (owned) */
  /* Every worker takes every reload, in order: the first to take reload
   * number `epoch` loads the certificate for all, the others find the
   * outcome here (so all workers present the same certificate). */
  unsigned epoch;
  int epoch_rc;
};

/* Per-worker instance: the layers of the data path. */
struct vcg_instance {
  const vcg_host_api_t *host;
  vcg_plugin_state_t *st;
  const vcg_wt_conf_t *conf;   /* the current generation's (host-owned) */
  vcg_worker_t *w;
  unsigned epoch;              /* reloads this worker has taken */
  int connset_inited;
  vcg_stopped_cb stop_cb;
  wt_connset_t cs;             /* connections (and through them sessions) */
  wt_endpoint_t ep;            /* sockets and connection IDs; last: large */
};

static const vcg_option_t wt_options[] = {
  VCG_OPTION_STRING(vcg_wt_conf_t, listen, "listen", "127.0.0.1:4433",
                    "UDP address to serve on: 127.0.0.1:4433 or [::1]:4433; a comma-separated list serves several"),
  VCG_OPTION_INT(vcg_wt_conf_t, idle_timeout, "idle_timeout", 30000, 1000, 600000,
                 "QUIC idle timeout in milliseconds (a reload applies it to new connections)"),
  VCG_OPTION_STRING(vcg_wt_conf_t, tls_cert, "tls_cert", NULL,
                    "PEM certificate chain; without tls_cert and tls_key a 10-day ECDSA certificate is generated; read again at every reload, for new handshakes"),
  VCG_OPTION_STRING(vcg_wt_conf_t, tls_key, "tls_key", NULL, "PEM private key for tls_cert"),
  VCG_OPTION_INT(vcg_wt_conf_t, max_sessions, "max_sessions", 10000, 1, 1000000,
                 "most concurrent QUIC connections (one WebTransport session each) per worker"),
  VCG_OPTION_STRING(vcg_wt_conf_t, cert_hash_file, "cert_hash_file", NULL,
                    "file to write the certificate's SHA-256 (hex) to, for serverCertificateHashes"),
  VCG_OPTION_STRING(vcg_wt_conf_t, retry, "retry", "auto",
                    "address validation with QUIC Retry before a connection costs memory: auto (past retry_threshold half-open connections), always, never"),
  VCG_OPTION_INT(vcg_wt_conf_t, retry_threshold, "retry_threshold", 100, 0, 1000000,
                 "retry = auto: half-open connections per worker from which a new client must first answer a Retry"),
  VCG_OPTION_INT(vcg_wt_conf_t, max_half_open_per_address, "max_half_open_per_address", 16, 1, 1000000,
                 "half-open QUIC connections per client address and worker (core.trusted_addresses are exempt)"),
  VCG_OPTION_INT(vcg_wt_conf_t, handshake_timeout, "handshake_timeout", 5000, 500, 60000,
                 "milliseconds a QUIC connection has to complete its handshake"),
  VCG_OPTION_INT(vcg_wt_conf_t, max_client_streams, "max_client_streams", 65536, 16, 1073741824,
                 "streams a client may open on one connection (ngtcp2 0.12 keeps ~220 B for each until it ends); at 7/8 the client is asked to drain, at the limit the session closes with 1001 to be reopened"),
  VCG_OPTION_INT(vcg_wt_conf_t, connection_window, "connection_window", 1048576, 65536, 67108864,
                 "QUIC flow-control window per connection, bytes: what unfinished client messages can pin (at least core.max_message_size + 64)"),
  VCG_OPTION_INT(vcg_wt_conf_t, max_concurrent_streams, "max_concurrent_streams", 100, 8, 10000,
                 "client unidirectional streams open at once per connection (Chromium needs 3 of them for HTTP/3)"),
  VCG_OPTION_END,
};

static int retry_mode(const char *s) {
  if (!s || strcmp(s, "auto") == 0) return WT_RETRY_AUTO;
  if (strcmp(s, "always") == 0) return WT_RETRY_ALWAYS;
  if (strcmp(s, "never") == 0) return WT_RETRY_NEVER;
  return -1;
}

/* cert_hash_file is written at start through a temporary file in the
 * same directory and a rename: the directory must exist and be writable
 * (for the effective user), and the path must not be a directory.
 * Checked here so that `vcgate -t` catches it. */
static int check_hash_file(const char *path, char *err, size_t errlen) {
  char dir[4096];
  struct stat st;
  const char *slash = strrchr(path, '/');
  if (!*path || strlen(path) + 5 >= sizeof(dir)) {
    snprintf(err, errlen, "cert_hash_file: \"%.200s\" is not a usable file name", path);
    return VCG_EINVAL;
  }
  if (!slash) snprintf(dir, sizeof(dir), ".");
  else if (slash == path) snprintf(dir, sizeof(dir), "/");
  else snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
  if (stat(dir, &st) != 0) {
    snprintf(err, errlen, "cert_hash_file: directory %.200s: %s", dir, vcg_strerror(-errno));
    return VCG_EINVAL;
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "cert_hash_file: %.200s is not a directory", dir);
    return VCG_EINVAL;
  }
  if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0) {
    snprintf(err, errlen, "cert_hash_file: directory %.200s is not writable: %s", dir,
             vcg_strerror(-errno));
    return VCG_EINVAL;
  }
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "cert_hash_file: %.200s is a directory", path);
    return VCG_EINVAL;
  }
  return 0;
}

static int wt_configure(const void *vconf, char *err, size_t errlen) {
  const vcg_wt_conf_t *conf = vconf;
  const char *p = conf->listen;
  size_t n = 0;
  if (!p || !*p) {
    snprintf(err, errlen, "listen: an address is required");
    return VCG_EINVAL;
  }
  while (*p) {
    char spec[96];
    struct sockaddr_storage ss;
    socklen_t sl;
    size_t k = strcspn(p, ", ");
    if (k == 0) {
      p++;
      continue;
    }
    int bad = k >= sizeof(spec);
    if (!bad) {
      memcpy(spec, p, k);
      spec[k] = '\0';
      bad = vcg__wt_parse_addr(spec, &ss, &sl) != 0;
    }
    if (bad) {
      snprintf(err, errlen, "listen: \"%.*s\" is not an IPv4 or [IPv6] address with a port",
               (int)(k < 80 ? k : 80), p);
      return VCG_EINVAL;
    }
    if (++n > WT_MAX_LISTENERS) {
      snprintf(err, errlen, "listen: at most %d addresses", WT_MAX_LISTENERS);
      return VCG_EINVAL;
    }
    p += k;
  }
  if (retry_mode(conf->retry) < 0) {
    snprintf(err, errlen, "retry: \"%.40s\" is not auto, always or never", conf->retry);
    return VCG_EINVAL;
  }
  if (!!conf->tls_cert != !!conf->tls_key) {
    snprintf(err, errlen, "%s: tls_cert and tls_key go together", conf->tls_cert ? "tls_key" : "tls_cert");
    return VCG_EINVAL;
  }
  if (conf->tls_cert) {
    char why[256];
    if (vcg__wt_tls_check_files(conf->tls_cert, conf->tls_key, why, sizeof(why)) != 0) {
      snprintf(err, errlen, "tls_cert: %s", why);
      return VCG_EINVAL;
    }
  }
  if (conf->cert_hash_file && check_hash_file(conf->cert_hash_file, err, errlen) != 0)
    return VCG_EINVAL;
  return 0;
}

/* Write hex and a newline to path through path.tmp and a rename, so a
 * reader never sees a half-written hash.  0 or a negative errno; why gets
 * the failing step. */
static int write_hash_file(const char *path, const char *hex, char *why, size_t whylen) {
  char tmp[4200];
  if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
    snprintf(why, whylen, "path too long");
    return VCG_EINVAL;
  }
  FILE *f = fopen(tmp, "w");
  if (!f) {
    int rc = -errno;
    snprintf(why, whylen, "cannot create %.300s: %s", tmp, vcg_strerror(rc));
    return rc;
  }
  int ok = fprintf(f, "%s\n", hex) > 0;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    int rc = errno ? -errno : VCG_EIO;
    snprintf(why, whylen, "cannot write %.300s: %s", ok ? path : tmp, vcg_strerror(rc));
    remove(tmp);
    return rc;
  }
  return 0;
}

static void state_free(vcg_plugin_state_t *st) {
  if (st->prio) gnutls_priority_deinit(st->prio);
  vcg__wt_cred_unref(st->cred);
  free(st->hash_path);
  pthread_mutex_destroy(&st->lock);
  free(st);
}

static int wt_init(const vcg_host_api_t *host, const void *vconf,
                   vcg_plugin_state_t **out) {
  const vcg_wt_conf_t *conf = vconf;
  char err[512];
  int rc;
  vcg_plugin_state_t *st = calloc(1, sizeof(*st));
  if (!st) return VCG_ENOMEM;
  st->host = host;
  pthread_mutex_init(&st->lock, NULL);
  /* One certificate and one reset secret for the whole process: every
   * worker must present the same certificate (its hash is pinned by
   * pages) and answer stateless resets for its siblings' connections. */
  if (gnutls_rnd(GNUTLS_RND_KEY, st->reset_secret, sizeof(st->reset_secret)) != 0 ||
      gnutls_rnd(GNUTLS_RND_KEY, st->token_secret, sizeof(st->token_secret)) != 0) {
    host->log(NULL, NULL, VCG_LOG_ERROR, "no random bytes for the reset and token secrets");
    state_free(st);
    return VCG_EIO;
  }
  if ((rc = vcg__wt_prio_init(&st->prio, err, sizeof(err))) != 0 ||
      (rc = vcg__wt_cred_new(conf->tls_cert, conf->tls_key, &st->cred, err, sizeof(err))) != 0) {
    host->log(NULL, NULL, VCG_LOG_ERROR, "TLS: %s", err);
    state_free(st);
    return rc;
  }
  if (conf->cert_hash_file &&
      ((rc = write_hash_file(conf->cert_hash_file, st->cred->hash_hex, err, sizeof(err))) != 0 ||
       !(st->hash_path = strdup(conf->cert_hash_file)))) {
    host->log(NULL, NULL, VCG_LOG_ERROR, "cert_hash_file: %s", rc ? err : "out of memory");
    state_free(st);
    return rc ? rc : VCG_ENOMEM;
  }
  *out = st;
  return 0;
}

static void wt_fini(vcg_plugin_state_t *st) {
  if (st) state_free(st);
}

/* The credentials of reload number `epoch` for conf, loaded by the first
 * worker that asks (st->lock held).  The certificate files are read again
 * at every reload, changed options or not (a certificate renewed in place
 * keeps its file names); the same certificate keeps the credentials it
 * has.  A generated certificate stays as long as no tls_cert is set. */
static int load_cred_locked(vcg_plugin_state_t *st, vcg_worker_t *w, const vcg_wt_conf_t *conf) {
  const vcg_host_api_t *host = st->host;
  char err[512];
  vcg__wt_cred_t *nc = NULL;
  int rc;
  if (conf->tls_cert || !st->cred->generated) {
    if ((rc = vcg__wt_cred_new(conf->tls_cert, conf->tls_key, &nc, err, sizeof(err))) != 0) {
      host->log(w, NULL, VCG_LOG_ERROR, "reload: TLS: %s; the previous certificate stays", err);
      return rc;
    }
    if (!nc->generated && !st->cred->generated && strcmp(nc->hash_hex, st->cred->hash_hex) == 0) {
      vcg__wt_cred_unref(nc); /* unchanged */
      nc = NULL;
    }
  }
  const char *hex = nc ? nc->hash_hex : st->cred->hash_hex;
  const char *path = conf->cert_hash_file;
  if (path && (nc || !st->hash_path || strcmp(st->hash_path, path) != 0)) {
    char *copy = strdup(path);
    rc = copy ? write_hash_file(path, hex, err, sizeof(err)) : VCG_ENOMEM;
    if (rc != 0) {
      host->log(w, NULL, VCG_LOG_ERROR, "reload: cert_hash_file: %s; the previous certificate stays",
                copy ? err : "out of memory");
      free(copy);
      vcg__wt_cred_unref(nc);
      return rc;
    }
    free(st->hash_path);
    st->hash_path = copy;
  }
  if (nc) {
    /* Connections keep the credentials they were made with (their own
     * reference); the old ones go with the last of them. */
    vcg__wt_cred_unref(st->cred);
    st->cred = nc;
    host->info_set(w, "webtransport.cert_sha256", hex);
    host->log(w, NULL, VCG_LOG_INFO, "reload: new handshakes use certificate sha-256 %s (%s)", hex,
              nc->generated ? "generated" : conf->tls_cert);
  }
  return 0;
}

static void inst_stopped(void *ud) {
  vcg_instance_t *inst = ud;
  vcg_stopped_cb cb = inst->stop_cb;
  vcg_worker_t *w = inst->w;
  free(inst);
  if (cb) cb(w);
}

/* Close everything; the instance is freed when the last handle closed. */
static void inst_stop(vcg_instance_t *inst) {
  if (inst->connset_inited) vcg__wt_connset_stop(&inst->cs, VCG__H3_NO_ERROR);
  vcg__wt_ep_stop(&inst->ep, inst_stopped, inst);
}

/* What the layers take from the options (and the core's message size). */
static void conn_conf(const vcg_instance_t *inst, wt_conn_conf_t *cc) {
  const vcg_wt_conf_t *conf = inst->conf;
  size_t max_msg = inst->host->max_message_size(inst->w);
  if (max_msg == 0) max_msg = 1u << 20;
  *cc = (wt_conn_conf_t){
    .idle_timeout_ms = (uint64_t)conf->idle_timeout,
    .handshake_timeout_ms = (uint64_t)conf->handshake_timeout,
    .max_sessions = (size_t)conf->max_sessions,
    .max_msg = max_msg,
    .max_client_streams = (uint64_t)conf->max_client_streams,
    .connection_window = (uint64_t)conf->connection_window,
    .max_concurrent_streams = (uint64_t)conf->max_concurrent_streams,
  };
}

static void ep_conf(const vcg_instance_t *inst, wt_endpoint_conf_t *ec) {
  const vcg_wt_conf_t *conf = inst->conf;
  *ec = (wt_endpoint_conf_t){
    .retry = retry_mode(conf->retry),
    .retry_threshold = (size_t)conf->retry_threshold,
    .max_half_open_per_address = (size_t)conf->max_half_open_per_address,
    .token_secret = inst->st->token_secret,
  };
}

static int wt_start(const vcg_host_api_t *host, vcg_plugin_state_t *st,
                    const void *vconf, vcg_worker_t *w, vcg_instance_t **out) {
  const vcg_wt_conf_t *conf = vconf;
  if (!st) return VCG_EINVAL;
  vcg_instance_t *inst = calloc(1, sizeof(*inst));
  if (!inst) return VCG_ENOMEM;
  inst->host = host;
  inst->st = st;
  inst->conf = conf;
  inst->w = w;
  wt_conn_conf_t cc;
  conn_conf(inst, &cc);
  /* The endpoint hands datagrams to the connection layer. */
  wt_endpoint_cb_t ecb = {
    .packet = vcg__wt_conn_packet,
    .accept = vcg__wt_conn_accept,
    .ud = &inst->cs,
  };
  wt_endpoint_conf_t econf;
  ep_conf(inst, &econf);
  int rc = vcg__wt_ep_init(&inst->ep, host, w, st->reset_secret, &econf, &ecb);
  if (rc == 0) {
    pthread_mutex_lock(&st->lock);
    vcg__wt_cred_t *cred = vcg__wt_cred_ref(st->cred);
    pthread_mutex_unlock(&st->lock);
    rc = vcg__wt_connset_init(&inst->cs, host, w, &inst->ep, st->prio, cred, &vcg__wt_session_cb,
                              &cc);
    inst->connset_inited = rc == 0;
  }
  if (rc == 0) rc = vcg__wt_ep_start(&inst->ep, conf->listen);
  if (rc != 0) {
    /* Frees inst once the handles that did open have closed. */
    inst_stop(inst);
    return rc;
  }
  if (host->worker_index(w) == 0) {
    const vcg__wt_cred_t *cr = inst->cs.cred;
    host->info_set(w, "webtransport.cert_sha256", cr->hash_hex);
    host->log(w, NULL, VCG_LOG_INFO, "certificate sha-256 %s (%s)", cr->hash_hex,
              cr->generated ? "generated, valid 10 days: pass it as serverCertificateHashes"
                            : "from tls_cert");
  }
  *out = inst;
  return 0;
}

/* SIGHUP, on this worker's loop, with the new generation's conf (checked
 * by configure() on the main thread: the certificate files loaded then).
 * Everything but `listen` applies: the Retry and half-open limits and
 * max_sessions at once, the handshake's settings (timeouts, windows,
 * stream limits, core.max_message_size) to connections made from now on,
 * and the certificate to new handshakes while live sessions keep theirs.
 * Nothing applies when the certificate cannot be loaded after all. */
static int wt_reload(vcg_instance_t *inst, const void *vconf) {
  vcg_plugin_state_t *st = inst->st;
  const vcg_wt_conf_t *conf = vconf;
  int rc = 0;
  inst->epoch++;
  pthread_mutex_lock(&st->lock);
  if (st->epoch != inst->epoch) {
    st->epoch = inst->epoch;
    st->epoch_rc = load_cred_locked(st, inst->w, conf);
  }
  rc = st->epoch_rc;
  vcg__wt_cred_t *cred = rc == 0 ? vcg__wt_cred_ref(st->cred) : NULL;
  pthread_mutex_unlock(&st->lock);
  if (rc != 0) return rc;
  inst->conf = conf; /* the previous generation is freed after the reload */
  wt_conn_conf_t cc;
  conn_conf(inst, &cc);
  vcg__wt_connset_reconf(&inst->cs, &cc, cred);
  ep_conf(inst, &inst->ep.conf);
  return 0;
}

static void wt_drain(vcg_instance_t *inst) {
  if (inst->cs.draining) return;
  /* Tell every session to go away; new connections are no longer
   * accepted (endpoint) and a late CONNECT is answered 503 (session). */
  inst->cs.draining = 1;
  inst->ep.accepting = 0;
  for (wt_conn_t *c = inst->cs.conns; c; c = c->next) {
    if (vcg__wt_conn_active(c))
      vcg__wt_session_close(c, (uint32_t)vcg_close_ws_code(VCG_CLOSE_SHUTDOWN), "server shutting down");
  }
}

static void wt_stop(vcg_instance_t *inst, vcg_stopped_cb cb) {
  inst->stop_cb = cb;
  inst_stop(inst); /* frees inst, then cb(w) */
}

static int wt_send(vcg_instance_t *inst, void *conn, vcg_packet_t *p) {
  (void)inst;
  return vcg__wt_session_send(conn, p);
}

static void wt_close(vcg_instance_t *inst, void *conn, int why, const char *reason) {
  (void)inst;
  vcg__wt_session_close(conn, (uint32_t)vcg_close_ws_code(why), reason);
}

static const vcg_transport_ops_t wt_ops = {
  .configure = wt_configure,
  .init = wt_init,
  .start = wt_start,
  .reload = wt_reload,
  .drain = wt_drain,
  .stop = wt_stop,
  .fini = wt_fini,
  .send = wt_send,
  .close = wt_close,
};

/* A socket bound at start stays bound: a new address needs a restart. */
static const char *const wt_restart_options[] = { "listen", NULL };

static const vcg_plugin_t wt_plugin = VCG_PLUGIN_DESCRIPTOR(
  .name = "webtransport",
  .version = "0.1.0",
  .description = "WebTransport (HTTP/3 over QUIC, draft-02) for browsers and native clients",
  .kind = VCG_PLUGIN_TRANSPORT,
  .options = wt_options,
  .conf_size = sizeof(vcg_wt_conf_t),
  .transport = &wt_ops,
  .restart_options = wt_restart_options,
);

VCG_PLUGIN_DEFINE(wt_plugin)
