/* Pure helpers of the websocket transport (plugins/websocket/ws_util.c):
 * listen address parsing, the request line read off the socket, the
 * request target rebuilt from lws's decoded one, small HTTP responses. */
#include <string.h>
#include "ws_util.h"
#include "vcgate/plugin.h"
#include "tap.h"

/* ------------------------------------------------------------ listen */

TEST(listen_host_port) {
  char host[64];
  uint16_t port = 0;
  CHECK_EQ(vcg__ws_parse_listen("127.0.0.1:8080", host, sizeof(host), &port), 0);
  CHECK_STREQ(host, "127.0.0.1");
  CHECK_EQ(port, 8080);
  CHECK_EQ(vcg__ws_parse_listen("[::1]:8081", host, sizeof(host), &port), 0);
  CHECK_STREQ(host, "::1");
  CHECK_EQ(port, 8081);
}

TEST(listen_any_address) {
  char host[64];
  uint16_t port = 1;
  CHECK_EQ(vcg__ws_parse_listen(":0", host, sizeof(host), &port), 0);
  CHECK_STREQ(host, "");
  CHECK_EQ(port, 0);
  CHECK_EQ(vcg__ws_parse_listen("*:9", host, sizeof(host), &port), 0);
  CHECK_STREQ(host, "");
}

TEST(listen_refusals) {
  char host[64];
  uint16_t port = 0;
  CHECK_EQ(vcg__ws_parse_listen("::1:8080", host, sizeof(host), &port), VCG_EINVAL);
  CHECK_EQ(vcg__ws_parse_listen("localhost", host, sizeof(host), &port), VCG_EINVAL);
  CHECK_EQ(vcg__ws_parse_listen("h:65536", host, sizeof(host), &port), VCG_EINVAL);
  CHECK_EQ(vcg__ws_parse_listen("h:80x", host, sizeof(host), &port), VCG_EINVAL);
  CHECK_EQ(vcg__ws_parse_listen("[]:80", host, sizeof(host), &port), VCG_EINVAL);
}

/* ------------------------------------------------------- request line */

static int line(const char *s, char *target, size_t cap, size_t *linelen) {
  size_t toff = 0, tlen = 0, ll = 0;
  int r = vcg__ws_request_line(s, strlen(s), &toff, &tlen, &ll);
  target[0] = '\0';
  if (r == 0 && tlen < cap) {
    memcpy(target, s + toff, tlen);
    target[tlen] = '\0';
  }
  if (linelen) *linelen = ll;
  return r;
}

TEST(request_line_target_raw) {
  char t[256];
  size_t ll = 0;
  CHECK_EQ(line("GET /lobby/a%20b/r+1?token=x%2By HTTP/1.1\r\nHost: h\r\n", t, sizeof t, &ll), 0);
  CHECK_STREQ(t, "/lobby/a%20b/r+1?token=x%2By");
  CHECK_EQ(ll, strlen("GET /lobby/a%20b/r+1?token=x%2By HTTP/1.1\r\n"));
  CHECK_EQ(line("GET //x/../y HTTP/1.0\n", t, sizeof t, NULL), 0);
  CHECK_STREQ(t, "//x/../y");
}

TEST(request_line_incomplete) {
  char t[16];
  CHECK_EQ(line("GET /lobby/alice/ro", t, sizeof t, NULL), VCG_EAGAIN);
  CHECK_EQ(line("", t, sizeof t, NULL), VCG_EAGAIN);
}

TEST(request_line_malformed) {
  char t[16];
  CHECK_EQ(line("GET  /x HTTP/1.1\r\n", t, sizeof t, NULL), VCG_EINVAL);   /* two spaces */
  CHECK_EQ(line("GET /x\r\n", t, sizeof t, NULL), VCG_EINVAL);             /* no version */
  CHECK_EQ(line("GET /x FTP/1.1\r\n", t, sizeof t, NULL), VCG_EINVAL);
  CHECK_EQ(line("G(T /x HTTP/1.1\r\n", t, sizeof t, NULL), VCG_EINVAL);    /* not a token */
  CHECK_EQ(line("GET /a\x01 HTTP/1.1\r\n", t, sizeof t, NULL), VCG_EINVAL); /* control */
  CHECK_EQ(line("GET /\xc3\xa9 HTTP/1.1\r\n", t, sizeof t, NULL), VCG_EINVAL); /* raw UTF-8 */
  CHECK_EQ(line("\r\nGET / HTTP/1.1\r\n", t, sizeof t, NULL), VCG_EINVAL);
}

TEST(head_length) {
  const char *a = "GET / HTTP/1.1\r\nHost: x\r\n\r\nFRAME";
  CHECK_EQ(vcg__ws_head_len(a, strlen(a)), strlen(a) - 5);
  CHECK_EQ(vcg__ws_head_len("GET / HTTP/1.1\n\n", 16), 16);
  CHECK_EQ(vcg__ws_head_len("GET / HTTP/1.1\r\nHost: x\r\n\r", 27), 0);
  CHECK_EQ(vcg__ws_head_len("GET / HTTP/1.1\r\n", 16), 0);
  CHECK_EQ(vcg__ws_head_len("", 0), 0);
}

TEST(target_check_what_lws_cannot_parse) {
  CHECK(vcg__ws_target_check("/lobby/a%40b/r?token=x%2By", 26) == NULL, "good escapes pass");
  CHECK(vcg__ws_target_check("/lobby/a%zzb/r", 14) != NULL, "non-hex after %%");
  CHECK(vcg__ws_target_check("/lobby/a/r%4", 12) != NULL, "truncated escape at the end");
  CHECK(vcg__ws_target_check("/lobby/a%00b/r", 14) != NULL, "an escaped NUL");
  CHECK(vcg__ws_target_check("/x%", 3) != NULL, "a lone %% at the end");
}

/* ---------------------------------------------------- target rebuild */

static const char *rebuild(const char *path, const char *const *args, size_t n) {
  static char out[512];
  if (vcg__ws_target_rebuild(out, sizeof out, path, args, n) < 0) return "(ENOBUFS)";
  return out;
}

TEST(rebuild_plain_path) {
  CHECK_STREQ(rebuild("/lobby/alice/standup", NULL, 0), "/lobby/alice/standup");
  CHECK_STREQ(rebuild("/lobby/a.b@x.org/r-1_~", NULL, 0), "/lobby/a.b@x.org/r-1_~");
}

TEST(rebuild_space_is_plus) {
  /* lws decoded both "%20" and "+" to a space: they come back as '+'. */
  CHECK_STREQ(rebuild("/lobby/alice 1@x/r", NULL, 0), "/lobby/alice+1@x/r");
}

TEST(rebuild_encodes_what_would_change_the_target) {
  /* A decoded '?', '#', '%' or '/'-free byte must not split or end it. */
  CHECK_STREQ(rebuild("/lobby/a?b/r#1", NULL, 0), "/lobby/a%3Fb/r%231");
  CHECK_STREQ(rebuild("/lobby/100%/r", NULL, 0), "/lobby/100%25/r");
  CHECK_STREQ(rebuild("/lobby/\xc3\xa9/\x7f", NULL, 0), "/lobby/%C3%A9/%7F");
  CHECK_STREQ(rebuild("/lobby/<x>/\"r\"", NULL, 0), "/lobby/%3Cx%3E/%22r%22");
}

TEST(rebuild_query_arguments) {
  const char *one[] = { "token=eyJh.bGc.iOi" };
  const char *two[] = { "a=1", "token=x y&z" };
  CHECK_STREQ(rebuild("/lobby", one, 1), "/lobby?token=eyJh.bGc.iOi");
  CHECK_STREQ(rebuild("/lobby", two, 2), "/lobby?a=1&token=x+y%26z");
}

TEST(rebuild_bounded) {
  char small[8];
  CHECK_EQ(vcg__ws_target_rebuild(small, sizeof small, "/lobby/alice/r", NULL, 0), VCG_ENOBUFS);
  CHECK_EQ(vcg__ws_pct_encode(small, 3, "\xff", ""), VCG_ENOBUFS); /* "%FF" needs 4 with NUL */
  CHECK_EQ(vcg__ws_pct_encode(small, 4, "\xff", ""), 3);
  CHECK_STREQ(small, "%FF");
}

/* ------------------------------------------------------------- replies */

TEST(http_format_reply) {
  char buf[512];
  long n = vcg__ws_http_format(buf, sizeof buf, 429, "text/plain", NULL, "slow down");
  CHECK_GT(n, 0);
  CHECK_EQ((size_t)n, strlen(buf));
  CHECK(strncmp(buf, "HTTP/1.1 429 Too Many Requests\r\n", 32) == 0, "status line: %.40s", buf);
  CHECK(strstr(buf, "content-length: 10\r\n") != NULL, "length counts the newline");
  CHECK(strstr(buf, "connection: close\r\n") != NULL, "closes");
  CHECK(strcmp(buf + n - 14, "\r\n\r\nslow down\n") == 0, "body ends it");
  n = vcg__ws_http_format(buf, sizeof buf, 426, "text/plain", "sec-websocket-version: 13\r\n", "v");
  CHECK(strstr(buf, "\r\nsec-websocket-version: 13\r\n\r\nv\n") != NULL, "extra header lines go last");
  CHECK_EQ(vcg__ws_http_format(buf, 40, 200, "text/plain", NULL, "x"), VCG_ENOBUFS);
}

/* -------------------------------------------------------- static files */

TEST(mime_types) {
  CHECK_STREQ(vcg__ws_mime_type("/index.html"), "text/html; charset=utf-8");
  CHECK_STREQ(vcg__ws_mime_type("/a/app.js"), "text/javascript; charset=utf-8");
  CHECK_STREQ(vcg__ws_mime_type("/m.MJS"), "text/javascript; charset=utf-8");
  CHECK_STREQ(vcg__ws_mime_type("/x.wasm"), "application/wasm");
  CHECK_STREQ(vcg__ws_mime_type("/site.webmanifest"), "application/manifest+json");
  CHECK_STREQ(vcg__ws_mime_type("/noext"), "application/octet-stream");
  CHECK_STREQ(vcg__ws_mime_type("/dir.js/file"), "application/octet-stream");
}

TEST(file_paths) {
  CHECK(vcg__ws_file_path_ok("/"), "/");
  CHECK(vcg__ws_file_path_ok("/a/b.c/d.js"), "dots inside names");
  CHECK(!vcg__ws_file_path_ok("/../x"), "..");
  CHECK(!vcg__ws_file_path_ok("/a/./x"), ".");
  CHECK(!vcg__ws_file_path_ok("/.git/config"), "hidden");
  CHECK(!vcg__ws_file_path_ok("a/b"), "relative");
  CHECK(!vcg__ws_file_path_ok(""), "empty");
}

TEST(etag_matching) {
  CHECK(vcg__ws_etag_match("\"1-2\"", "\"1-2\""), "exact");
  CHECK(vcg__ws_etag_match("W/\"1-2\"", "\"1-2\""), "weak comparison");
  CHECK(vcg__ws_etag_match("\"a\", \"1-2\"", "\"1-2\""), "in a list");
  CHECK(vcg__ws_etag_match("*", "\"1-2\""), "*");
  CHECK(!vcg__ws_etag_match("\"1-3\"", "\"1-2\""), "another tag");
  CHECK(!vcg__ws_etag_match("\"1-2", "\"1-23\""), "an unterminated tag is not a prefix match");
  CHECK(!vcg__ws_etag_match("", "\"1-2\""), "empty");
}

/* ------------------------------------------------------------ RFC 6455 */

TEST(handshake_key) {
  CHECK(vcg__ws_key_ok("dGhlIHNhbXBsZSBub25jZQ=="), "RFC 6455's example key");
  CHECK(!vcg__ws_key_ok("dGhlIHNhbXBsZSBub25jZQ="), "too short");
  CHECK(!vcg__ws_key_ok("dGhlIHNhbXBsZSBub25jZR=="), "non-zero pad bits");
  CHECK(!vcg__ws_key_ok("dGhlIHNhbXBsZSBub25j*Q=="), "not base64");
  CHECK(!vcg__ws_key_ok("dGhlIHNhbXBsZSBub25jZQ==="), "too long");
  CHECK(!vcg__ws_key_ok("c2hvcnQ="), "decodes to 5 bytes");
  CHECK(!vcg__ws_key_ok(""), "empty");
}

TEST(utf8) {
  static const struct { const char *s; int ok; } cases[] = {
    { "plain ascii", 1 }, { "\xc3\xa9t\xc3\xa9", 1 }, { "\xe2\x82\xac", 1 },
    { "\xf0\x9f\x98\x80", 1 }, { "\xf4\x8f\xbf\xbf", 1 },       /* U+10FFFF */
    { "\xc0\xaf", 0 }, { "\xe0\x80\xaf", 0 }, { "\xf0\x80\x80\xaf", 0 }, /* overlong */
    { "\xed\xa0\x80", 0 },                                     /* surrogate */
    { "\xf4\x90\x80\x80", 0 },                                /* > U+10FFFF */
    { "\x80", 0 }, { "\xc3", 0 }, { "\xe2\x82", 0 }, { "\xff", 0 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    CHECK(vcg__ws_utf8_ok((const uint8_t *)cases[i].s, strlen(cases[i].s)) == cases[i].ok,
          "case %zu", i);
}

TEST(close_answers) {
  CHECK_EQ(vcg__ws_close_answer((const uint8_t *)"", 0), 1000);
  CHECK_EQ(vcg__ws_close_answer((const uint8_t *)"\x03", 1), 1002);          /* one byte */
  CHECK_EQ(vcg__ws_close_answer((const uint8_t *)"\x03\xe8" "bye", 5), 1000);
  CHECK_EQ(vcg__ws_close_answer((const uint8_t *)"\x0f\xa0", 2), 4000);
  CHECK_EQ(vcg__ws_close_answer((const uint8_t *)"\x13\x88", 2), 1002);      /* 5000 */
  CHECK_EQ(vcg__ws_close_answer((const uint8_t *)"\xff\xff", 2), 1002);      /* 65535 */
  CHECK_EQ(vcg__ws_close_answer((const uint8_t *)"\x03\xed", 2), 1002);      /* 1005 */
  CHECK_EQ(vcg__ws_close_answer((const uint8_t *)"\x03\xe7", 2), 1002);      /* 999 */
  CHECK_EQ(vcg__ws_close_answer((const uint8_t *)"\x03\xe8\xc0\xaf", 4), 1007);
}

static long hdr(const char *bytes, size_t n, vcg__ws_frame_t *f, const char **why) {
  *why = NULL;
  return vcg__ws_frame_header((const uint8_t *)bytes, n, f, why);
}

TEST(frame_headers_good) {
  vcg__ws_frame_t f;
  const char *why;
  CHECK_EQ(hdr("\x82\x85" "abcd", 6, &f, &why), 6);
  CHECK(f.fin == 1 && f.opcode == 2 && f.len == 5 && memcmp(f.mask, "abcd", 4) == 0, "small");
  CHECK_EQ(hdr("\x02\xfe\x01\x00" "abcd", 8, &f, &why), 8);
  CHECK(f.fin == 0 && f.len == 256, "16-bit length, not final");
  CHECK_EQ(hdr("\x80\xff\x00\x00\x00\x00\x00\x01\x00\x00" "abcd", 14, &f, &why), 14);
  CHECK(f.opcode == 0 && f.len == 65536, "64-bit length continuation");
  CHECK_EQ(hdr("\x89\x80" "abcd", 6, &f, &why), 6);
  CHECK(f.opcode == 9 && f.len == 0, "empty ping");
  CHECK_EQ(hdr("\x82\xfe\x01", 3, &f, &why), 0);        /* needs more */
  CHECK_EQ(hdr("\x82\x85" "abc", 5, &f, &why), 0);
}

TEST(frame_headers_refused) {
  vcg__ws_frame_t f;
  const char *why;
  CHECK_EQ(hdr("\x82\x05", 2, &f, &why), VCG_EINVAL);
  CHECK(why && strstr(why, "unmasked"), "unmasked: %s", why);
  CHECK_EQ(hdr("\xc2\x85", 2, &f, &why), VCG_EINVAL);     /* RSV1 */
  CHECK_EQ(hdr("\x83\x85", 2, &f, &why), VCG_EINVAL);     /* opcode 3 */
  CHECK_EQ(hdr("\x8b\x85", 2, &f, &why), VCG_EINVAL);     /* opcode 11 */
  CHECK_EQ(hdr("\x09\x85", 2, &f, &why), VCG_EINVAL);     /* fragmented ping */
  CHECK_EQ(hdr("\x89\xfe", 2, &f, &why), VCG_EINVAL);     /* 126-byte ping */
  CHECK(why && strstr(why, "125"), "control length: %s", why);
  CHECK_EQ(hdr("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00" "abcd", 14, &f, &why), VCG_EINVAL);
  CHECK(why && strstr(why, "2^63"), "top bit: %s", why);
  CHECK_EQ(hdr("\x82\xfe\x00\x10" "abcd", 8, &f, &why), VCG_EINVAL);     /* 16 in 16 bits */
  CHECK_EQ(hdr("\x82\xff\x00\x00\x00\x00\x00\x00\x01\x00" "abcd", 14, &f, &why), VCG_EINVAL);
}

TEST(unmask_any_offset) {
  uint8_t key[4] = { 1, 2, 3, 4 }, buf[200], ref[200];
  for (int i = 0; i < 40; i++) buf[i] = ref[i] = (uint8_t)(i * 7);
  vcg__ws_unmask(buf, 3, key, 0);          /* in two pieces, unaligned */
  vcg__ws_unmask(buf + 3, 37, key, 3);
  int ok = 1;
  for (int i = 0; i < 40; i++) ok &= buf[i] == (uint8_t)(ref[i] ^ key[i & 3]);
  CHECK(ok, "the key cycles across pieces and the 16-byte path");
  /* Every split of 200 bytes (the 64-byte, 16-byte and byte paths, at
   * every alignment of the key) gives the bytewise result. */
  ok = 1;
  for (int cut = 0; cut <= 200; cut += 7) {
    for (int i = 0; i < 200; i++) buf[i] = ref[i] = (uint8_t)(i * 13 + 5);
    vcg__ws_unmask(buf, (size_t)cut, key, 0);
    vcg__ws_unmask(buf + cut, (size_t)(200 - cut), key, (uint64_t)cut);
    for (int i = 0; i < 200; i++) ok &= buf[i] == (uint8_t)(ref[i] ^ key[i & 3]);
  }
  CHECK(ok, "any split, any length, matches unmasking byte by byte");
}

TEST(server_frame_headers) {
  uint8_t h[VCG__WS_SERVER_HDR_MAX];
  vcg__ws_frame_t f;
  const char *why;
  CHECK_EQ(vcg__ws_server_hdr(h, 2, 125), 2);
  CHECK(h[0] == 0x82 && h[1] == 125, "125 bytes fit the first byte");
  CHECK_EQ(vcg__ws_server_hdr(h, 2, 126), 4);
  CHECK(h[1] == 126 && h[2] == 0 && h[3] == 126, "126 takes 16 bits");
  CHECK_EQ(vcg__ws_server_hdr(h, 2, 65535), 4);
  CHECK_EQ(vcg__ws_server_hdr(h, 2, 65536), 10);
  CHECK(h[1] == 127 && h[7] == 1 && h[8] == 0 && h[9] == 0, "65536 takes 64 bits");
  CHECK_EQ(vcg__ws_server_hdr(h, 9, 0), 2);
  CHECK(h[0] == 0x89 && h[1] == 0, "an empty PING");
  /* Every length comes out in the shortest form a client's parser takes
   * (masked here, as that parser wants). */
  static const uint64_t lens[] = { 0, 1, 125, 126, 127, 65535, 65536, 1u << 20 };
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    uint8_t m[VCG__WS_SERVER_HDR_MAX + 4];
    size_t n = vcg__ws_server_hdr(m, 2, lens[i]);
    m[1] |= 0x80;
    memset(m + n, 0, 4);
    CHECK_EQ(vcg__ws_frame_header(m, n + 4, &f, &why), (long)(n + 4));
    CHECK(f.len == lens[i] && f.fin && f.opcode == 2, "length %llu round-trips",
          (unsigned long long)lens[i]);
  }
}

TEST(write_progress) {
  size_t rem[] = { 10, 5, 7 }, part = 99;
  CHECK_EQ(vcg__ws_written(rem, 3, 0, &part), 0);
  CHECK_EQ(part, 0);
  CHECK_EQ(vcg__ws_written(rem, 3, 9, &part), 0);
  CHECK_EQ(part, 9);
  CHECK_EQ(vcg__ws_written(rem, 3, 10, &part), 1);
  CHECK_EQ(part, 0);
  CHECK_EQ(vcg__ws_written(rem, 3, 16, &part), 2);
  CHECK_EQ(part, 1);
  CHECK_EQ(vcg__ws_written(rem, 3, 22, &part), 3);
  CHECK_EQ(part, 0);
  CHECK_EQ(vcg__ws_written(rem, 0, 0, &part), 0);
  size_t zero[] = { 0, 3 };
  CHECK_EQ(vcg__ws_written(zero, 2, 0, &part), 1); /* an empty piece is taken whole */
}

int main(void) {
  RUN(listen_host_port, "host:port and [v6]:port parse");
  RUN(listen_any_address, ":port and *:port mean any address; port 0 lets the kernel choose");
  RUN(listen_refusals, "ambiguous IPv6, no port, port > 65535, junk, empty brackets are refused");
  RUN(request_line_target_raw, "the request line gives the target exactly as sent");
  RUN(request_line_incomplete, "no line end yet: wait for more");
  RUN(request_line_malformed, "not a request line: refused");
  RUN(head_length, "a request's head ends at its empty line");
  RUN(target_check_what_lws_cannot_parse, "targets lws would drop or 403 are found first");
  RUN(rebuild_plain_path, "a decoded path with nothing to encode comes back unchanged");
  RUN(rebuild_space_is_plus, "a decoded space (from %20 or +) comes back as +");
  RUN(rebuild_encodes_what_would_change_the_target, "? # % controls and non-ASCII are re-encoded");
  RUN(rebuild_query_arguments, "query arguments are re-encoded and joined with &");
  RUN(rebuild_bounded, "rebuilding never writes past the buffer");
  RUN(mime_types, "static files get their type by extension, case-insensitive");
  RUN(file_paths, "no ., .. or hidden segments in a file path");
  RUN(etag_matching, "If-None-Match: exact, weak, lists, *");
  RUN(handshake_key, "Sec-WebSocket-Key must be base64 of 16 bytes");
  RUN(utf8, "UTF-8: overlong forms, surrogates, > U+10FFFF, truncation refused");
  RUN(close_answers, "a client's close frame is echoed, or answered 1002/1007");
  RUN(frame_headers_good, "client frame headers: lengths, fin, opcodes, more bytes needed");
  RUN(frame_headers_refused, "unmasked, RSV, unknown opcode, long/fragmented control, 2^63, non-minimal");
  RUN(unmask_any_offset, "unmasking continues the key across pieces");
  RUN(server_frame_headers, "server frame headers: shortest length form, FIN, opcode");
  RUN(write_progress, "a partial write: pieces taken whole and bytes of the next");
  RUN(http_format_reply, "small replies: status, length, close, extra headers, bounded");
  return TAP_DONE();
}
