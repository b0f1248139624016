"""The WebSocket listener's requests: the raw request target the core
parses (read off the socket before libwebsockets decodes it), the target
rebuilt on wss://, and the answers a request gets before lws sees it."""

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
