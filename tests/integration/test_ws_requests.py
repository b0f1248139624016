"""The WebSocket listener's requests: the raw request target the core
parses (read off the socket before libwebsockets decodes it), the target
rebuilt on wss://, and the answers a request gets before lws sees it."""

import os
import ssl

import harness as H


def _status(port, path, ssl_ctx=None):
    return H.raw_http(port, H.upgrade_request(path, port), ssl_ctx=ssl_ctx).status


def test_raw_target_reaches_the_core_undecoded():
    """On ws:// the core sees the target as sent: lws would have collapsed
    "//", resolved "/../" and decoded "%2F" into a path that opens a
    session; the core refuses each with 400 and a reason."""
    srv = H.start_ws()
    try:
        for path in ("/lobby//alice/room", "/lobby/x/../alice/room",
                     "/lobby/alice/r%2F1", "/lobby/alice%2Froom"):
            a = H.raw_http(srv.port, H.upgrade_request(path, srv.port))
            assert a.status == 400, "%s: HTTP %d %r, expected 400" % (path, a.status, a.body)
            assert a.body.strip(), "%s: 400 without a reason" % path
        assert _status(srv.port, "/lobby/alice+1@x.org/room") == 101
        # Not decoded twice: "%2541" is "%41" to the core, not "A".
        a = H.raw_http(srv.port, H.upgrade_request("/lobby/a%2541/room", srv.port))
        assert a.status == 400 and b"identity" in a.body, a
    finally:
        srv.stop()


def test_request_line_in_pieces_no_busy_loop():
    """A request line that arrives in pieces is waited for without spinning
    (SO_RCVLOWAT), then upgrades; 20 sockets holding half a request line
    for a second cost the server almost no CPU."""
    srv = H.start_ws()
    import socket
    import time
    held = []
    try:
        req = H.upgrade_request("/lobby/slowpoke/pieces", srv.port)
        a = H.raw_http(srv.port, None, chunks=[req[:9], req[9:21], req[21:]], pause=0.3)
        assert a.status == 101, "request line in three pieces: HTTP %d" % a.status
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(b"GET /lobby/half")
            held.append(s)
        time.sleep(0.2)
        cpu0 = H.cpu_seconds(srv.pid)
        time.sleep(1.0)
        used = H.cpu_seconds(srv.pid) - cpu0
        print("  # 20 half request lines held 1 s: %.3f s of server CPU" % used)
        assert used < 0.2, "server used %.2f s of CPU in 1 s waiting for request lines" % used
        assert _status(srv.port, "/lobby/after/pieces") == 101
    finally:
        for s in held:
            s.close()
        srv.stop()


def test_request_line_refusals():
    """What lws never gets: a line that is not a request line (400), one
    longer than max_header_size (414), a target lws cannot parse (400)."""
    srv = H.start_ws(ws_opts={"max_header_size": 2048})
    try:
        a = H.raw_http(srv.port, b"HELLO THERE\r\n\r\n")
        assert a.status == 400 and b"request line" in a.body, a
        a = H.raw_http(srv.port, b"GET /\xff HTTP/1.1\r\n\r\n")
        assert a.status == 400, a
        a = H.raw_http(srv.port, b"GET /lobby/" + b"a" * 3000 + b"/r HTTP/1.1\r\n\r\n")
        assert a.status == 414, a
        a = H.raw_http(srv.port, H.upgrade_request("/lobby/a%4/r", srv.port))
        assert a.status == 400 and b"percent" in a.body, a
        assert a.closed, "the connection stays open after an early refusal"
        assert _status(srv.port, "/lobby/fine/r") == 101
    finally:
        srv.stop()


def test_wss_target_rebuilt_from_lws():
    """On wss:// the bytes are ciphertext: the target is rebuilt from what
    lws decoded, so "+" and "%20" both arrive as "+" and lws's clean-ups
    ("//" collapsed) happen first; the core still judges it."""
    d = H.tmpdir()
    cert, key = H.self_signed(d)
    srv = H.start_ws(ws_opts={"tls_cert": cert, "tls_key": key})
    ctx = ssl.create_default_context(cafile=cert)
    try:
        cases = [("/lobby/alice+1/tls", 101), ("/lobby/alice%201/tls", 101),
                 ("/lobby/ali%3Cce/tls", 400), ("/nope", 404),
                 ("/lobby/alice/a.b", 400), ("/lobby//tls", 400),
                 ("/lobby/alice/" + "r" * 5000, 400)]
        got = [(p, _status(srv.port, p, ctx)) for p, _ in cases]
        assert got == cases, "wss:// statuses %r, expected %r" % (got, cases)
    finally:
        srv.stop()


# --------------------------------------------------------------- static files

_FILES = {
    "index.html": (b"<!doctype html><title>vcgate</title>", "text/html; charset=utf-8"),
    "app.js": (b"export const x = 1;\n", "text/javascript; charset=utf-8"),
    "mod.mjs": (b"export default 2;\n", "text/javascript; charset=utf-8"),
    "style.css": (b"body{margin:0}\n", "text/css; charset=utf-8"),
    "data.json": (b"{\"a\":1}\n", "application/json"),
    "icon.svg": (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
    "img.png": (b"\x89PNG\r\n\x1a\n", "image/png"),
    "favicon.ico": (b"\x00\x00\x01\x00", "image/x-icon"),
    "x.wasm": (b"\x00asm\x01\x00\x00\x00", "application/wasm"),
    "site.webmanifest": (b"{\"name\":\"vcgate\"}", "application/manifest+json"),
    "a.txt": (b"plain text\n", "text/plain; charset=utf-8"),
    "blob.bin": (b"\x01\x02", "application/octet-stream"),
    "sub/index.html": (b"<p>sub</p>", "text/html; charset=utf-8"),
    "lobby/index.html": (b"<p>never served</p>", "text/html; charset=utf-8"),
    ".hidden": (b"hidden", None),
}
SECRET = b"TOP-SECRET-outside-the-webroot"


def _webroot():
    d = H.tmpdir()
    www = os.path.join(d, "www")
    for name, (body, _) in _FILES.items():
        p = os.path.join(www, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(body)
    with open(os.path.join(d, "secret.txt"), "wb") as f:
        f.write(SECRET)
    os.symlink("../secret.txt", os.path.join(www, "link.txt"))   # leads out
    os.symlink("app.js", os.path.join(www, "alias.js"))          # stays in
    return d, www


def _get(port, path, method="GET", headers=None):
    """(status, headers, body) of one request, path sent as written."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def test_static_files_types_cache_and_methods():
    """webroot is served at /: each type with its MIME type, nosniff,
    no-cache with ETag and Last-Modified (304 on a match), HEAD without a
    body, 405 for other methods, 404 for what is not a file; the lobby and
    well-known routes keep priority."""
    d, www = _webroot()
    srv = H.start_ws(ws_opts={"webroot": www})
    try:
        problems = []
        for name, (body, ctype) in _FILES.items():
            if ctype is None or name.startswith("lobby/"):
                continue
            st, hd, got = _get(srv.port, "/" + name)
            if (st, hd.get("content-type"), got) != (200, ctype, body):
                problems.append("/%s: %d %s %r" % (name, st, hd.get("content-type"), got[:40]))
            if hd.get("x-content-type-options") != "nosniff":
                problems.append("/%s: no nosniff" % name)
        assert not problems, "\n".join(problems)
        st, hd, got = _get(srv.port, "/?room=r&user=u&join=1")
        assert st == 200 and got == _FILES["index.html"][0], "/ is index.html: %d %r" % (st, got)
        assert hd.get("cache-control") == "no-cache" and hd.get("etag") and \
            hd.get("last-modified"), "validators: %r" % hd
        st, hd2, got = _get(srv.port, "/", headers={"If-None-Match": hd["etag"]})
        assert st == 304 and got == b"" and hd2.get("etag") == hd["etag"], (st, hd2, got)
        st, _, got = _get(srv.port, "/", headers={"If-Modified-Since": hd["last-modified"]})
        assert st == 304 and got == b"", (st, got)
        st, _, _ = _get(srv.port, "/", headers={"If-None-Match": '"other"'})
        assert st == 200, "a stale ETag got %d" % st
        st, hd, got = _get(srv.port, "/app.js", method="HEAD")
        assert st == 200 and got == b"" and \
            hd.get("content-length") == str(len(_FILES["app.js"][0])), (st, hd, got)
        st, hd, _ = _get(srv.port, "/app.js", method="POST")
        assert st == 405 and "GET" in hd.get("allow", ""), (st, hd)
        assert _get(srv.port, "/sub/")[2] == _FILES["sub/index.html"][0]
        assert _get(srv.port, "/alias.js")[2] == _FILES["app.js"][0], "a link inside the root"
        for path in ("/missing.html", "/sub", "/.hidden", "/sub/.hidden"):
            st, _, got = _get(srv.port, path)
            assert st == 404, "%s: %d %r" % (path, st, got[:60])
        st, _, got = _get(srv.port, "/lobby/")
        assert st == 400 and b"expected /lobby" in got, \
            "the lobby route lost to a file: %d %r" % (st, got)
        st, _, got = _get(srv.port, "/lobby/alice/room")
        assert st == 426, "a plain GET of a good lobby URL: %d %r" % (st, got)
        st, _, got = _get(srv.port, "/.well-known/vcgate/webtransport")
        assert st == 404 and b"webtransport" in got, (st, got)
    finally:
        srv.stop()


def test_static_files_no_traversal():
    """Nothing outside the webroot is served, however the path is spelled:
    ../ plain or percent-encoded, and a symlink that leads out."""
    d, www = _webroot()
    srv = H.start_ws(ws_opts={"webroot": www})
    try:
        for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt",
                     "/%2E%2E%2Fsecret.txt", "/sub/../../secret.txt", "/./../secret.txt",
                     "/link.txt", "//secret.txt", "/..\\secret.txt"):
            st, _, got = _get(srv.port, path)
            assert st in (400, 403, 404) and SECRET not in got, \
                "%s: HTTP %d %r" % (path, st, got[:80])
        # The same over a raw socket, where nothing normalises the path first.
        a = H.raw_http(srv.port, b"GET /../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert a.status in (400, 403, 404) and SECRET not in a.body, a
    finally:
        srv.stop()


@H.timeout(60)
def test_static_files_large_file_streamed_and_keepalive():
    """A large file is sent in pieces (the server's RSS does not grow by
    its size) and a kept-alive connection serves the next request."""
    import http.client
    d, www = _webroot()
    big = os.urandom(1 << 16) * 512  # 32 MiB
    with open(os.path.join(www, "big.bin"), "wb") as f:
        f.write(big)
    srv = H.start_ws(ws_opts={"webroot": www})
    try:
        rss0 = srv.rss_kb()
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=20)
        c.request("GET", "/big.bin")
        r = c.getresponse()
        got = r.read()
        assert r.status == 200 and got == big, "big.bin: %d, %d bytes" % (r.status, len(got))
        rss1 = srv.rss_kb()
        c.request("GET", "/app.js")
        r = c.getresponse()
        assert r.status == 200 and r.read() == _FILES["app.js"][0], "keep-alive request"
        c.close()
        grew = rss1 - rss0
        print("  # 32 MiB file: RSS %d -> %d kB" % (rss0, rss1))
        assert grew < (16 if H.SANITIZED else 4) * 1024, \
            "RSS grew by %d kB serving a 32 MiB file" % grew
    finally:
        srv.stop()


def test_webroot_empty_missing_or_not_a_directory():
    """webroot = "" serves nothing; a missing one is a warning at start and
    404s; one that is a file fails vcgate -t with file:line."""
    d, www = _webroot()
    srv = H.start_ws(ws_opts={"webroot": ""})
    try:
        for path in ("/", "/index.html", "/app.js"):
            assert _get(srv.port, path)[0] == 404, path
    finally:
        srv.stop()
    missing = os.path.join(d, "nowhere")
    srv = H.start_ws(ws_opts={"webroot": missing})
    try:
        assert _get(srv.port, "/")[0] == 404
        assert "webroot %s" % missing in srv.log(), "no warning about the missing webroot"
    finally:
        srv.stop()
    path = H.write_config(transports=[H.ws_transport(H.free_port(),
                                                     webroot=os.path.join(www, "app.js"))])
    cp = H.run_vcgate(["-t", "-c", path])
    out = cp.stdout + cp.stderr
    assert cp.returncode != 0 and "webroot" in out and "not a directory" in out, out
