/*
 * tls.h -- GnuTLS credentials of the WebTransport plugin.
 *
 * Credentials are process-wide (made in init(), shared read-only by every
 * worker's sessions, which GnuTLS allows), so that N workers serve the same
 * certificate and a browser's serverCertificateHashes matches whichever
 * worker the kernel's SO_REUSEPORT hash picks.
 */
#ifndef VCG_WT_TLS_H
#define VCG_WT_TLS_H

#include <stddef.h>
#include <gnutls/gnutls.h>

/* Days a generated certificate is valid: Chromium accepts
 * serverCertificateHashes only for certificates valid 14 days or less. */
#define VCG__WT_CERT_DAYS 10

typedef struct vcg__wt_tls {
  gnutls_certificate_credentials_t cred;
  gnutls_priority_t prio;
  int generated;          /* 1 when we made a self-signed certificate */
  char hash_hex[65];      /* SHA-256 of the leaf certificate's DER, hex */
} vcg__wt_tls_t;

/* Load cert_file/key_file (PEM), or, when both are NULL, generate an
 * ECDSA P-256 self-signed certificate valid VCG__WT_CERT_DAYS days for
 * 127.0.0.1, ::1 and localhost.  On failure writes a reason into err and
 * returns a negative code; t is then empty. */
int vcg__wt_tls_init(vcg__wt_tls_t *t, const char *cert_file,
                     const char *key_file, char *err, size_t errlen);
void vcg__wt_tls_free(vcg__wt_tls_t *t);

/* Try loading a certificate and key without keeping them (configure()). */
int vcg__wt_tls_check_files(const char *cert_file, const char *key_file,
                            char *err, size_t errlen);

/* A server session for one QUIC connection with ALPN h3 (mandatory).
 * The ngtcp2 glue is configured by the caller. */
int vcg__wt_tls_session_new(const vcg__wt_tls_t *t, gnutls_session_t *out);

#endif /* VCG_WT_TLS_H */
