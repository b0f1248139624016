/*
 * wt_flood -- a flood of QUIC v1 client Initials for the WebTransport
 * tests, as an attacker with spoofed source addresses would send them:
 * each connection sends its first flight (a real TLS 1.3 ClientHello, so
 * the server must answer it in full) from its own socket and never
 * answers what comes back.  On loopback every 127/8 address is local, so
 * "spoofed" sources are real sockets on 127.A.B.C and the tool can count
 * what the server sends to each of them.
 *
 *   wt_flood --server 127.0.0.1:4433 --count 1000 [--src 127.2.0.0 | --same-src 127.3.0.1]
 *            [--listen SECS]
 *
 * Prints one JSON line: datagrams and bytes sent and received, how many
 * sources got any answer, a Retry, or a handshake flight (Initial or
 * Handshake packets: the server made a connection for them), and the
 * largest ratio of bytes received to bytes sent for one source (the
 * server's amplification; RFC 9000 allows at most 3 before validation).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

typedef struct {
  int fd;
  ngtcp2_conn *conn;
  gnutls_session_t tls;
  ngtcp2_crypto_conn_ref ref;
  size_t tx, rx, rx_dgrams;
  int retry, flight;
} src_t;

static gnutls_certificate_credentials_t cred;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref) {
  return ((src_t *)ref->user_data)->conn;
}

static void rand_cb(uint8_t *d, size_t n, const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  gnutls_rnd(GNUTLS_RND_RANDOM, d, n);
}

static int new_cid_cb(ngtcp2_conn *c, ngtcp2_cid *cid, uint8_t *token, size_t len, void *ud) {
  (void)c;
  (void)ud;
  gnutls_rnd(GNUTLS_RND_NONCE, cid->data, len);
  cid->datalen = len;
  gnutls_rnd(GNUTLS_RND_NONCE, token, NGTCP2_STATELESS_RESET_TOKENLEN);
  return 0;
}

/* Open a socket on src, connected to the server, and send the first
 * flight of a fresh client connection from it. */
static int start_one(src_t *s, const struct sockaddr_in *src, const struct sockaddr_in *srv) {
  static const char prio[] =
    "%DISABLE_TLS13_COMPAT_MODE:NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:"
    "+AES-256-GCM:+CHACHA20-POLY1305:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1";
  struct sockaddr_in local;
  socklen_t ll = sizeof(local);
  s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0 || bind(s->fd, (const struct sockaddr *)src, sizeof(*src)) != 0 ||
      connect(s->fd, (const struct sockaddr *)srv, sizeof(*srv)) != 0 ||
      getsockname(s->fd, (struct sockaddr *)&local, &ll) != 0) {
    fprintf(stderr, "wt_flood: socket: %s\n", strerror(errno));
    return -1;
  }
  ngtcp2_path path = {
    { (ngtcp2_sockaddr *)&local, ll },
    { (ngtcp2_sockaddr *)(uintptr_t)srv, sizeof(*srv) },
    NULL,
  };
  ngtcp2_cid dcid, scid;
  dcid.datalen = 8; /* as Chromium: 8-byte DCID */
  scid.datalen = 0; /* and an empty SCID */
  gnutls_rnd(GNUTLS_RND_NONCE, dcid.data, dcid.datalen);
  ngtcp2_callbacks cb = {
    .client_initial = ngtcp2_crypto_client_initial_cb,
    .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
    .encrypt = ngtcp2_crypto_encrypt_cb,
    .decrypt = ngtcp2_crypto_decrypt_cb,
    .hp_mask = ngtcp2_crypto_hp_mask_cb,
    .recv_retry = ngtcp2_crypto_recv_retry_cb,
    .update_key = ngtcp2_crypto_update_key_cb,
    .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
    .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
    .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
    .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
    .rand = rand_cb,
    .get_new_connection_id = new_cid_cb,
  };
  ngtcp2_settings st;
  ngtcp2_settings_default(&st);
  st.initial_ts = now_ns();
  ngtcp2_transport_params tp;
  ngtcp2_transport_params_default(&tp);
  tp.initial_max_streams_uni = 100;
  tp.initial_max_data = 1u << 20;
  tp.max_datagram_frame_size = 65535;
  if (ngtcp2_conn_client_new(&s->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &st, &tp,
                             NULL, s) != 0)
    return -1;
  const gnutls_datum_t alpn = { (unsigned char *)"h3", 2 };
  s->ref.get_conn = get_conn;
  s->ref.user_data = s;
  if (gnutls_init(&s->tls, GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA) != 0 ||
      ngtcp2_crypto_gnutls_configure_client_session(s->tls) != 0 ||
      gnutls_priority_set_direct(s->tls, prio, NULL) != 0 ||
      gnutls_credentials_set(s->tls, GNUTLS_CRD_CERTIFICATE, cred) != 0 ||
      gnutls_alpn_set_protocols(s->tls, &alpn, 1, GNUTLS_ALPN_MANDATORY) != 0)
    return -1;
  gnutls_session_set_ptr(s->tls, &s->ref);
  ngtcp2_conn_set_tls_native_handle(s->conn, s->tls);
  for (int i = 0; i < 4; i++) {
    uint8_t buf[1500];
    ngtcp2_path_storage ps;
    ngtcp2_pkt_info pi;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_ssize n = ngtcp2_conn_write_pkt(s->conn, &ps.path, &pi, buf, sizeof(buf), now_ns());
    if (n < 0) return -1;
    if (n == 0) break;
    if (send(s->fd, buf, (size_t)n, 0) == n) s->tx += (size_t)n;
  }
  return 0;
}

static void classify(src_t *s, const uint8_t *p, size_t n) {
  s->rx += n;
  s->rx_dgrams++;
  if (n < 5 || !(p[0] & 0x80)) return;
  uint32_t ver = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
  if (ver != NGTCP2_PROTO_VER_V1) return;
  int type = (p[0] >> 4) & 0x3;   /* v1: 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry */
  if (type == 3) s->retry = 1;
  else s->flight = 1;
}

int main(int argc, char **argv) {
  struct sockaddr_in srv = { .sin_family = AF_INET }, src = { .sin_family = AF_INET };
  int count = 100, same = 0;
  double listen_s = 3.0;
  inet_pton(AF_INET, "127.2.0.0", &src.sin_addr);
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--server")) {
      char host[64];
      const char *c = strrchr(argv[i + 1], ':');
      if (!c || (size_t)(c - argv[i + 1]) >= sizeof(host)) return 2;
      memcpy(host, argv[i + 1], (size_t)(c - argv[i + 1]));
      host[c - argv[i + 1]] = '\0';
      if (inet_pton(AF_INET, host, &srv.sin_addr) != 1) return 2;
      srv.sin_port = htons((uint16_t)atoi(c + 1));
    } else if (!strcmp(argv[i], "--count")) {
      count = atoi(argv[i + 1]);
    } else if (!strcmp(argv[i], "--src")) {
      if (inet_pton(AF_INET, argv[i + 1], &src.sin_addr) != 1) return 2;
    } else if (!strcmp(argv[i], "--same-src")) {
      if (inet_pton(AF_INET, argv[i + 1], &src.sin_addr) != 1) return 2;
      same = 1;
    } else if (!strcmp(argv[i], "--listen")) {
      listen_s = atof(argv[i + 1]);
    } else {
      fprintf(stderr, "usage: wt_flood --server HOST:PORT [--count N] [--src NET | --same-src ADDR]"
                      " [--listen SECS]\n");
      return 2;
    }
  }
  if (count < 1 || count > 60000 || !srv.sin_port) return 2;
  struct rlimit rl = { (rlim_t)count + 64, (rlim_t)count + 64 };
  setrlimit(RLIMIT_NOFILE, &rl); /* one socket per source */
  gnutls_certificate_allocate_credentials(&cred);
  src_t *s = calloc((size_t)count, sizeof(*s));
  if (!s) return 1;
  uint32_t base = ntohl(src.sin_addr.s_addr);
  for (int i = 0; i < count; i++) {
    struct sockaddr_in a = src;
    /* Distinct sources 127.x.y.z (z never 0 or 255), or one address. */
    if (!same) a.sin_addr.s_addr = htonl(base + (uint32_t)(i / 250) * 256 + 1 + (uint32_t)(i % 250));
    if (start_one(&s[i], &a, &srv) != 0) {
      fprintf(stderr, "wt_flood: connection %d could not start\n", i);
      return 1;
    }
  }
  struct pollfd *pf = calloc((size_t)count, sizeof(*pf));
  uint64_t end = now_ns() + (uint64_t)(listen_s * 1e9);
  while (now_ns() < end) {
    for (int i = 0; i < count; i++) pf[i] = (struct pollfd){ s[i].fd, POLLIN, 0 };
    int left = (int)((end - now_ns()) / 1000000) + 1;
    if (poll(pf, (nfds_t)count, left) <= 0) continue;
    for (int i = 0; i < count; i++) {
      if (!(pf[i].revents & POLLIN)) continue;
      uint8_t buf[65536];
      ssize_t n;
      while ((n = recv(s[i].fd, buf, sizeof(buf), 0)) > 0) classify(&s[i], buf, (size_t)n);
    }
  }
  size_t tx = 0, rx = 0, answered = 0, retry = 0, flight = 0, over3 = 0;
  double maxratio = 0;
  for (int i = 0; i < count; i++) {
    tx += s[i].tx;
    rx += s[i].rx;
    answered += s[i].rx_dgrams > 0;
    retry += s[i].retry;
    flight += s[i].flight;
    double r = s[i].tx ? (double)s[i].rx / (double)s[i].tx : 0;
    if (r > maxratio) maxratio = r;
    over3 += s[i].rx > 3 * s[i].tx;
    ngtcp2_conn_del(s[i].conn);
    gnutls_deinit(s[i].tls);
    close(s[i].fd);
  }
  printf("{\"count\": %d, \"tx_bytes\": %zu, \"rx_bytes\": %zu, \"answered\": %zu, "
         "\"retry\": %zu, \"flight\": %zu, \"max_ratio\": %.3f, \"over_3x\": %zu}\n",
         count, tx, rx, answered, retry, flight, maxratio, over3);
  free(pf);
  free(s);
  gnutls_certificate_free_credentials(cred);
  return 0;
}
