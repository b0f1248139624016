/*
 * ws_tls.c -- the certificate and key of wss://: checked whole before a
 * configuration is accepted, and swapped into the running listener by
 * reload() for the handshakes that follow.
 *
 * lws 4.1 offers lws_tls_cert_updated() for this, but it matches vhosts by
 * the old paths (so a new path is never picked up) and loads the
 * certificate and then the key into the live SSL_CTX one after the other:
 * a key that does not match leaves the context with the new certificate
 * and no key, and every handshake after it fails.  So the pair is read
 * here with OpenSSL (the library Debian's lws is built on; lws hands us its
 * vhost's SSL_CTX in LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS)
 * and installed with SSL_CTX_use_cert_and_key(), which checks that the key
 * is the certificate's and replaces certificate, chain and key in one
 * step, or nothing.  An SSL object copies them from the context when lws
 * creates it at accept, so connections already accepted keep theirs.
 *
 * The client context.  lws 4.1 also makes a client SSL_CTX for every TLS
 * vhost, with the system's CA store loaded (~700 KB of certificates per
 * worker), and shares it between vhosts through a cache keyed by an
 * ex_data index that every context's start allocates anew: with two
 * workers the first one's is never freed.  A server has no use for it, so
 * each instance hands lws an empty one of its own
 * (info.provided_client_ssl_ctx, which lws never frees).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "ws_int.h"

#if !defined(LWS_OPENSSL_SUPPORT) || defined(LWS_WITH_MBEDTLS)
#error "the websocket plugin swaps certificates with OpenSSL: libwebsockets must be built with it"
#endif

/* The reason of OpenSSL's latest error, and its queue emptied. */
static const char *ws_tls_why(char *buf, size_t len) {
  unsigned long e = ERR_peek_last_error();

  if (e == 0)
    snprintf(buf, len, "no PEM data");
  else
    ERR_error_string_n(e, buf, len);
  ERR_clear_error();
  return buf;
}

/* A certificate chain (the first one is the leaf) and a private key,
 * read from PEM files. */
typedef struct ws_pair {
  X509 *leaf;
  STACK_OF(X509) *chain;
  EVP_PKEY *key;
} ws_pair_t;

static void ws_pair_free(ws_pair_t *p) {
  X509_free(p->leaf);
  sk_X509_pop_free(p->chain, X509_free);
  EVP_PKEY_free(p->key);
  memset(p, 0, sizeof(*p));
}

/* Read cert and key; on failure "option: reason" in err. */
static int ws_pair_read(ws_pair_t *p, const char *cert, const char *key,
                        char *err, size_t errlen) {
  char why[256];
  X509 *x;
  FILE *f;

  memset(p, 0, sizeof(*p));
  ERR_clear_error();
  if ((f = fopen(cert, "r")) == NULL) {
    snprintf(err, errlen, "tls_cert: cannot read %s: %s", cert, strerror(errno));
    return VCG_EINVAL;
  }
  p->leaf = PEM_read_X509(f, NULL, NULL, NULL);
  p->chain = sk_X509_new_null();
  while (p->leaf != NULL && p->chain != NULL &&
         (x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
    if (!sk_X509_push(p->chain, x)) {
      X509_free(x);
      break;
    }
  }
  fclose(f);
  if (p->leaf == NULL || p->chain == NULL) {
    snprintf(err, errlen, "tls_cert: no certificate in %s: %s", cert,
             ws_tls_why(why, sizeof(why)));
    ws_pair_free(p);
    return VCG_EINVAL;
  }
  ERR_clear_error(); /* the end of the file ends the chain */
  if ((f = fopen(key, "r")) == NULL) {
    snprintf(err, errlen, "tls_key: cannot read %s: %s", key, strerror(errno));
    ws_pair_free(p);
    return VCG_EINVAL;
  }
  p->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  fclose(f);
  if (p->key == NULL) {
    snprintf(err, errlen, "tls_key: no private key in %s: %s", key,
             ws_tls_why(why, sizeof(why)));
    ws_pair_free(p);
    return VCG_EINVAL;
  }
  if (X509_check_private_key(p->leaf, p->key) != 1) {
    ERR_clear_error();
    snprintf(err, errlen, "tls_key: %s is not the key of the certificate in %s",
             key, cert);
    ws_pair_free(p);
    return VCG_EINVAL;
  }
  return 0;
}

void *vcg__ws_tls_client_ctx_new(void) {
  return SSL_CTX_new(TLS_client_method());
}

void vcg__ws_tls_ctx_free(void *ctx) {
  SSL_CTX_free(ctx);
}

int vcg__ws_tls_check(const char *cert, const char *key, char *err,
                      size_t errlen) {
  ws_pair_t p;
  int r = ws_pair_read(&p, cert, key, err, errlen);

  ws_pair_free(&p);
  return r;
}

int vcg__ws_tls_reload(vcg_instance_t *inst, const char *cert, const char *key) {
  char err[512], why[256];
  ws_pair_t p;

  if (inst->ssl_ctx == NULL) {
    inst->host->log(inst->w, NULL, VCG_LOG_ERROR, "reload: no TLS context to "
                    "load %s into", cert);
    return VCG_EINVAL;
  }
  /* configure() checked the files; they may have changed since. */
  if (ws_pair_read(&p, cert, key, err, sizeof(err)) != 0) {
    inst->host->log(inst->w, NULL, VCG_LOG_ERROR, "reload: %s; the previous "
                    "certificate stays", err);
    return VCG_EINVAL;
  }
  if (SSL_CTX_use_cert_and_key(inst->ssl_ctx, p.leaf, p.key, p.chain, 1) != 1) {
    inst->host->log(inst->w, NULL, VCG_LOG_ERROR, "reload: %s: %s; the previous "
                    "certificate stays", cert, ws_tls_why(why, sizeof(why)));
    ws_pair_free(&p);
    return VCG_EINVAL;
  }
  ws_pair_free(&p);
  return 0;
}
