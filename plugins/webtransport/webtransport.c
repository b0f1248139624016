/*
 * webtransport.c -- the WebTransport transport plugin: descriptor,
 * options and lifecycle.  The work is done by quic.c (QUIC endpoint),
 * wt.c (HTTP/3 and WebTransport session), h3.c, qpack.c and tls.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "wt_int.h"

static const vcg_option_t wt_options[] = {
  VCG_OPTION_STRING(vcg_wt_conf_t, listen, "listen", "127.0.0.1:4433",
                    "UDP address to serve on: 127.0.0.1:4433 or [::1]:4433; a comma-separated list serves several"),
  VCG_OPTION_INT(vcg_wt_conf_t, idle_timeout, "idle_timeout", 30000, 1000, 600000,
                 "QUIC idle timeout in milliseconds"),
  VCG_OPTION_STRING(vcg_wt_conf_t, tls_cert, "tls_cert", NULL,
                    "PEM certificate chain; without tls_cert and tls_key a 10-day ECDSA certificate is generated"),
  VCG_OPTION_STRING(vcg_wt_conf_t, tls_key, "tls_key", NULL, "PEM private key for tls_cert"),
  VCG_OPTION_INT(vcg_wt_conf_t, max_sessions, "max_sessions", 10000, 1, 1000000,
                 "most concurrent QUIC connections (one WebTransport session each) per worker"),
  VCG_OPTION_STRING(vcg_wt_conf_t, cert_hash_file, "cert_hash_file", NULL,
                    "file to write the certificate's SHA-256 (hex) to, for serverCertificateHashes"),
  VCG_OPTION_END,
};

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
  return 0;
}

static int write_hash_file(const char *path, const char *hex) {
  char tmp[4200];
  if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) return VCG_EINVAL;
  FILE *f = fopen(tmp, "w");
  if (!f) return VCG_EACCES;
  int ok = fprintf(f, "%s\n", hex) > 0;
  ok = (fclose(f) == 0) && ok;
  /* rename: a reader never sees a half-written hash */
  if (!ok || rename(tmp, path) != 0) {
    remove(tmp);
    return VCG_EACCES;
  }
  return 0;
}

static int wt_init(const vcg_host_api_t *host, const void *vconf,
                   vcg_plugin_state_t **out) {
  const vcg_wt_conf_t *conf = vconf;
  char err[256];
  vcg_plugin_state_t *st = calloc(1, sizeof(*st));
  if (!st) return VCG_ENOMEM;
  st->host = host;
  /* One certificate and one reset secret for the whole process: every
   * worker must present the same certificate (its hash is pinned by
   * pages) and answer stateless resets for its siblings' connections. */
  if (gnutls_rnd(GNUTLS_RND_KEY, st->reset_secret, sizeof(st->reset_secret)) != 0 ||
      vcg__wt_tls_init(&st->tls, conf->tls_cert, conf->tls_key, err, sizeof(err)) != 0) {
    free(st);
    return VCG_EINVAL;
  }
  if (conf->cert_hash_file && write_hash_file(conf->cert_hash_file, st->tls.hash_hex) != 0) {
    vcg__wt_tls_free(&st->tls);
    free(st);
    return VCG_EACCES;
  }
  *out = st;
  return 0;
}

static void wt_fini(vcg_plugin_state_t *st) {
  if (!st) return;
  vcg__wt_tls_free(&st->tls);
  free(st);
}

static int wt_start(const vcg_host_api_t *host, vcg_plugin_state_t *st,
                    const void *vconf, vcg_worker_t *w, vcg_instance_t **out) {
  if (!st) return VCG_EINVAL;
  vcg_instance_t *inst = calloc(1, sizeof(*inst));
  if (!inst) return VCG_ENOMEM;
  inst->host = host;
  inst->st = st;
  inst->conf = vconf;
  inst->w = w;
  inst->loop = host->loop(w);
  inst->max_msg = host->max_message_size(w);
  if (inst->max_msg == 0) inst->max_msg = 1u << 20;
  int rc = vcg__wt_endpoint_start(inst);
  if (rc != 0) {
    /* Frees inst once the handles that did open have closed. */
    vcg__wt_endpoint_stop(inst);
    return rc;
  }
  if (host->worker_index(w) == 0) {
    host->info_set(w, "webtransport.cert_sha256", st->tls.hash_hex);
    host->log(w, NULL, VCG_LOG_INFO, "certificate sha-256 %s (%s)", st->tls.hash_hex,
              st->tls.generated ? "generated, valid 10 days: pass it as serverCertificateHashes"
                                : "from tls_cert");
  }
  *out = inst;
  return 0;
}

static void wt_drain(vcg_instance_t *inst) {
  if (inst->draining) return;
  inst->draining = 1;
  /* Tell every session to go away; new connections are no longer
   * accepted (quic.c) and a late CONNECT is answered 503 (wt.c). */
  for (wt_conn_t *c = inst->conns; c; c = c->next) {
    if (c->state == WT_C_ACTIVE)
      vcg__wt_session_close(c, vcg__wt_close_code(VCG_CLOSE_SHUTDOWN), "server shutting down");
  }
}

static void wt_stop(vcg_instance_t *inst, vcg_stopped_cb cb) {
  inst->stop_cb = cb;
  vcg__wt_endpoint_stop(inst); /* frees inst, then cb(w) */
}

static const vcg_transport_ops_t wt_ops = {
  .configure = wt_configure,
  .init = wt_init,
  .start = wt_start,
  .drain = wt_drain,
  .stop = wt_stop,
  .fini = wt_fini,
  .send = vcg__wt_send,
  .close = vcg__wt_close,
};

static const vcg_plugin_t wt_plugin = VCG_PLUGIN_DESCRIPTOR(
  .name = "webtransport",
  .version = "0.1.0",
  .description = "WebTransport (HTTP/3 over QUIC, draft-02) for browsers and native clients",
  .kind = VCG_PLUGIN_TRANSPORT,
  .options = wt_options,
  .conf_size = sizeof(vcg_wt_conf_t),
  .transport = &wt_ops,
);

VCG_PLUGIN_DEFINE(wt_plugin)
