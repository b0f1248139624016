/*
 * ws_tls.c -- what the transport does with OpenSSL itself on wss:// (the
 * library Debian's lws is built on).
 *
 * The client context.  lws 4.1 also makes a client SSL_CTX for every TLS
 * vhost, with the system's CA store loaded (~700 KB of certificates per
 * worker), and shares it between vhosts through a cache keyed by an
 * ex_data index that every context's start allocates anew: with two
 * workers the first one's is never freed.  A server has no use for it, so
 * each instance hands lws an empty one of its own
 * (info.provided_client_ssl_ctx, which lws never frees).
 */
#include <openssl/ssl.h>

#include "ws_int.h"

#if !defined(LWS_OPENSSL_SUPPORT) || defined(LWS_WITH_MBEDTLS)
#error "the websocket plugin uses OpenSSL with lws: libwebsockets must be built with it"
#endif

void *vcg__ws_tls_client_ctx_new(void) {
  return SSL_CTX_new(TLS_client_method());
}

void vcg__ws_tls_ctx_free(void *ctx) {
  SSL_CTX_free(ctx);
}
