/*
 * tls.h -- GnuTLS credentials of the WebTransport plugin.
 *
 * Credentials are process-wide (shared read-only by every worker's
 * sessions, which GnuTLS allows), so that N workers serve the same
 * certificate and a browser's serverCertificateHashes matches whichever
 * worker the kernel's SO_REUSEPORT hash picks.
 *
 * A reload (SIGHUP) replaces them while sessions made with the old ones
 * are still alive, on several worker threads at once: so they are
 * reference-counted.  Whoever holds a vcg__wt_cred_t pointer holds one
 * reference (the plugin state its current one, each worker its current
 * one, each connection the one its TLS session was made with); the last
 * vcg__wt_cred_unref() frees them.
 */
#ifndef VCG_WT_TLS_H
#define VCG_WT_TLS_H

#include <stdatomic.h>
#include <stddef.h>
#include <gnutls/gnutls.h>

/* Days a generated certificate is valid: Chromium accepts
 * serverCertificateHashes only for certificates valid 14 days or less. */
#define VCG__WT_CERT_DAYS 10

typedef struct vcg__wt_cred {
  atomic_uint refs;
  gnutls_certificate_credentials_t cred;
  int generated;          /* 1 when we made a self-signed certificate */
  char hash_hex[65];      /* SHA-256 of the leaf certificate's DER, hex */
} vcg__wt_cred_t;

/* Load cert_file/key_file (PEM), or, when both are NULL, generate an
 * ECDSA P-256 self-signed certificate valid VCG__WT_CERT_DAYS days for
 * 127.0.0.1, ::1 and localhost.  *out gets them with one reference.  On
 * failure writes a reason into err and returns a negative code. */
int vcg__wt_cred_new(const char *cert_file, const char *key_file,
                     vcg__wt_cred_t **out, char *err, size_t errlen);
/* Another reference (any thread); returns cr. */
vcg__wt_cred_t *vcg__wt_cred_ref(vcg__wt_cred_t *cr);
/* Drop one reference (any thread); the last one frees. NULL is ignored. */
void vcg__wt_cred_unref(vcg__wt_cred_t *cr);

/* The TLS 1.3-only priorities every session gets (process-wide). */
int vcg__wt_prio_init(gnutls_priority_t *prio, char *err, size_t errlen);

/* Try loading a certificate and key without keeping them (configure()). */
int vcg__wt_tls_check_files(const char *cert_file, const char *key_file,
                            char *err, size_t errlen);

/* A server session for one QUIC connection with ALPN h3 (mandatory).
 * The ngtcp2 glue is configured by the caller. */
int vcg__wt_tls_session_new(gnutls_priority_t prio, const vcg__wt_cred_t *cr,
                            gnutls_session_t *out);

#endif /* VCG_WT_TLS_H */
