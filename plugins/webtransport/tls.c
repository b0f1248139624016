/*
 * tls.c -- GnuTLS credentials and the generated development certificate.
 * See tls.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <vcgate/plugin.h>

#include "tls.h"

/* ngtcp2's recommended TLS 1.3-only priority string for QUIC.  Chromium
 * offers X25519MLKEM768 and X25519; GnuTLS 3.7.9 settles on X25519
 * without a HelloRetryRequest. */
static const char prio_string[] =
  "%DISABLE_TLS13_COMPAT_MODE:NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:"
  "+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-CCM:-GROUP-ALL:"
  "+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1";

static void hash_der(const gnutls_datum_t *der, char *hex) {
  unsigned char h[32];
  if (gnutls_hash_fast(GNUTLS_DIG_SHA256, der->data, der->size, h) != 0) {
    hex[0] = '\0';
    return;
  }
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);
}

static int fail(char *err, size_t errlen, const char *what, int grc) {
  snprintf(err, errlen, "%s: %s", what, gnutls_strerror(grc));
  return VCG_EINVAL;
}

/* Generate key and certificate and add them to cred; hex gets the hash. */
static int generate(gnutls_certificate_credentials_t cred, char *hex,
                    char *err, size_t errlen) {
  gnutls_x509_privkey_t key = NULL;
  gnutls_x509_crt_t crt = NULL;
  gnutls_datum_t der = { NULL, 0 };
  unsigned char serial[16];
  static const char cn[] = "vcgate WebTransport development certificate";
  static const unsigned char ip4[4] = { 127, 0, 0, 1 };
  static const unsigned char ip6[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
  int rc = VCG_EINVAL, g;
  time_t now = time(NULL);

#define STEP(call, what)                                                   \
  do {                                                                     \
    if ((g = (call)) < 0) { rc = fail(err, errlen, what, g); goto out; }   \
  } while (0)

  STEP(gnutls_x509_privkey_init(&key), "privkey init");
  /* ECDSA P-256: Chromium refuses RSA with serverCertificateHashes and
   * offers no Ed25519 signature scheme. */
  STEP(gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                    GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
       "generate ECDSA key");
  STEP(gnutls_x509_crt_init(&crt), "certificate init");
  STEP(gnutls_x509_crt_set_version(crt, 3), "set version");
  STEP(gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial)), "random serial");
  serial[0] &= 0x7f; /* a positive INTEGER */
  serial[0] |= 0x01;
  STEP(gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)), "set serial");
  /* Back-date by an hour against small clock skew; notAfter - notBefore
   * stays well under Chromium's 14-day limit. */
  STEP(gnutls_x509_crt_set_activation_time(crt, now - 3600), "set activation");
  STEP(gnutls_x509_crt_set_expiration_time(crt, now + (time_t)VCG__WT_CERT_DAYS * 86400),
       "set expiration");
  STEP(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn,
                                     sizeof(cn) - 1), "set subject");
  STEP(gnutls_x509_crt_set_key(crt, key), "set key");
  STEP(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost", 9,
                                            GNUTLS_FSAN_APPEND), "SAN localhost");
  STEP(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip4, 4,
                                            GNUTLS_FSAN_APPEND), "SAN 127.0.0.1");
  STEP(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip6, 16,
                                            GNUTLS_FSAN_APPEND), "SAN ::1");
  STEP(gnutls_x509_crt_set_basic_constraints(crt, 0, -1), "basic constraints");
  STEP(gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE), "key usage");
  STEP(gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0), "key purpose");
  STEP(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0), "self-sign");
  STEP(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der), "export DER");
  hash_der(&der, hex);
  STEP(gnutls_certificate_set_x509_key(cred, &crt, 1, key), "install certificate");
  rc = 0;
#undef STEP
out:
  if (der.data) gnutls_free(der.data);
  if (crt) gnutls_x509_crt_deinit(crt);
  if (key) gnutls_x509_privkey_deinit(key);
  return rc;
}

int vcg__wt_cred_new(const char *cert_file, const char *key_file,
                     vcg__wt_cred_t **out, char *err, size_t errlen) {
  int g, rc;
  vcg__wt_cred_t *cr = calloc(1, sizeof(*cr));
  if (!cr) {
    snprintf(err, errlen, "out of memory");
    return VCG_ENOMEM;
  }
  if ((g = gnutls_certificate_allocate_credentials(&cr->cred)) < 0) {
    free(cr);
    return fail(err, errlen, "credentials", g);
  }
  if (cert_file && key_file) {
    g = gnutls_certificate_set_x509_key_file(cr->cred, cert_file, key_file,
                                             GNUTLS_X509_FMT_PEM);
    if (g < 0) {
      rc = fail(err, errlen, cert_file, g);
      goto bad;
    }
    gnutls_datum_t der;
    if (gnutls_certificate_get_crt_raw(cr->cred, 0, 0, &der) == 0) hash_der(&der, cr->hash_hex);
  } else {
    if ((rc = generate(cr->cred, cr->hash_hex, err, errlen)) != 0) goto bad;
    cr->generated = 1;
  }
  atomic_init(&cr->refs, 1);
  *out = cr;
  return 0;
bad:
  gnutls_certificate_free_credentials(cr->cred);
  free(cr);
  return rc;
}

vcg__wt_cred_t *vcg__wt_cred_ref(vcg__wt_cred_t *cr) {
  atomic_fetch_add_explicit(&cr->refs, 1, memory_order_relaxed);
  return cr;
}

void vcg__wt_cred_unref(vcg__wt_cred_t *cr) {
  if (!cr) return;
  /* acq_rel: the thread that frees sees every other holder's last use. */
  if (atomic_fetch_sub_explicit(&cr->refs, 1, memory_order_acq_rel) != 1) return;
  gnutls_certificate_free_credentials(cr->cred);
  free(cr);
}

int vcg__wt_prio_init(gnutls_priority_t *prio, char *err, size_t errlen) {
  int g = gnutls_priority_init(prio, prio_string, NULL);
  return g < 0 ? fail(err, errlen, "priority string", g) : 0;
}

/* A file we are about to load must be readable: name it and say why not,
 * which GnuTLS's "Error while reading file" would not. */
static int readable(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, vcg_strerror(-errno));
    return VCG_EINVAL;
  }
  fclose(f);
  return 0;
}

int vcg__wt_tls_check_files(const char *cert_file, const char *key_file,
                            char *err, size_t errlen) {
  gnutls_certificate_credentials_t c;
  if (readable(cert_file, err, errlen) != 0 || readable(key_file, err, errlen) != 0)
    return VCG_EINVAL;
  int g = gnutls_certificate_allocate_credentials(&c);
  if (g < 0) return fail(err, errlen, "credentials", g);
  g = gnutls_certificate_set_x509_key_file(c, cert_file, key_file, GNUTLS_X509_FMT_PEM);
  gnutls_certificate_free_credentials(c);
  if (g < 0) return fail(err, errlen, "not a loadable PEM certificate and key pair", g);
  return 0;
}

int vcg__wt_tls_session_new(gnutls_priority_t prio, const vcg__wt_cred_t *cr,
                            gnutls_session_t *out) {
  static const gnutls_datum_t alpn = { (unsigned char *)"h3", 2 };
  gnutls_session_t s;
  if (gnutls_init(&s, GNUTLS_SERVER |
                      GNUTLS_NO_AUTO_SEND_TICKET | GNUTLS_NO_END_OF_EARLY_DATA) < 0)
    return VCG_ENOMEM;
  if (gnutls_priority_set(s, prio) < 0 ||
      gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cr->cred) < 0 ||
      gnutls_alpn_set_protocols(s, &alpn, 1, GNUTLS_ALPN_MANDATORY) < 0) {
    gnutls_deinit(s);
    return VCG_EINVAL;
  }
  *out = s;
  return 0;
}
