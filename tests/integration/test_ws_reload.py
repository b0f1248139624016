"""WebSocket transport: what a reload (SIGHUP) changes on a running
listener.  A replaced certificate and key are presented by the next wss://
handshake on every worker while live connections carry on; a broken or
unreadable pair is refused and the old one keeps serving; turning TLS on or
off and a new listen address are refused by name; lowered keepalive and
upgrade timeouts apply to the connections already open.  The real binary,
real clients (python3-websockets, raw sockets, Python's ssl)."""

import asyncio
import os
import shutil
import signal
import socket
import ssl
import time

import harness as H
from harness import Client, RawClient


def _rewrite(srv, port, core, **ws_opts):
    with open(srv.conf_path, "w") as f:
        f.write(H.config_text(core, [H.ws_transport(port, **ws_opts)]))


def _reload(srv, what="reload: configuration applied", timeout=10):
    """SIGHUP, and wait for one more `what` line in the log."""
    n = srv.log().count(what)
    srv.signal(signal.SIGHUP)
    ok = H.wait_until(lambda: srv.log().count(what) > n, timeout)
    assert ok, "no new %r; log:\n%s" % (what, srv.log_tail())


def _presented(port):
    """The DER certificate a new wss:// handshake presents."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return t.getpeercert(binary_form=True)


def _der(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


async def _exchange(a, b, tag):
    """a sends tag; b receives it (after what else the room sent it)."""
    await a.send(H.PT_AES_KEY, tag)
    deadline = time.monotonic() + 5
    seen = []
    while time.monotonic() < deadline:
        got = await b.recv_client(max(0.1, deadline - time.monotonic()))
        if got.data == tag:
            return
        seen.append(got.data)
    raise AssertionError("%s never got %r (got %r)" % (b.user, tag, seen))


@H.timeout(90)
async def test_wss_certificate_reload_next_handshake():
    d = H.tmpdir()
    os.makedirs(os.path.join(d, "a"))
    os.makedirs(os.path.join(d, "b"))
    a_cert, a_key = H.self_signed(os.path.join(d, "a"))
    b_cert, b_key = H.self_signed(os.path.join(d, "b"))
    cert, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
    shutil.copy(a_cert, cert)
    shutil.copy(a_key, key)
    core = {"log_level": "info", "workers": 2}
    # A short keepalive: the live clients go through PINGs on wss:// too.
    opts = {"tls_cert": cert, "tls_key": key, "ping_interval": 1000,
            "idle_timeout": 3000}
    srv = H.start_ws(core=core, ws_opts=opts)
    trust_a = ssl.create_default_context(cafile=a_cert)
    trust_b = ssl.create_default_context(cafile=b_cert)
    live = []
    try:
        live = [await Client.connect(srv.port, u, "tls", ssl=trust_a)
                for u in ("alice", "bob")]
        await _exchange(live[0], live[1], b"before")
        assert _presented(srv.port) == _der(a_cert)

        # The files replaced in place (as cert-manager does), same paths.
        shutil.copy(b_cert, cert)
        shutil.copy(b_key, key)
        _reload(srv)
        assert "certificate %s loaded for new connections" % cert in srv.log()
        # Every new handshake, on either worker, presents B.
        for _ in range(8):
            assert _presented(srv.port) == _der(b_cert), "a handshake after the reload presented A"
        c = await Client.connect(srv.port, "carol", "tls", ssl=trust_b)
        live.append(c)
        try:
            w = await Client.connect(srv.port, "mallory", "tls", ssl=trust_a)
            await w.close()
            raise AssertionError("a client that trusts only the old certificate connected")
        except ssl.SSLCertVerificationError:
            pass
        # The connections made with A carry on, across PINGs.
        await asyncio.sleep(1.5)
        await _exchange(live[0], live[1], b"after")
        await _exchange(live[1], live[0], b"after-back")
        await _exchange(live[2], live[0], b"from-carol")

        # A key that is not the certificate's: refused, B keeps serving.
        shutil.copy(a_key, key)
        _reload(srv, "reload failed: still serving")
        assert "is not the key of the certificate in %s" % cert in srv.log(), srv.log_tail()
        assert _presented(srv.port) == _der(b_cert)
        # A file that cannot be read: the same.
        os.remove(key)
        _reload(srv, "reload failed: still serving")
        assert "tls_key: cannot read %s" % key in srv.log(), srv.log_tail()
        shutil.copy(b_key, key)

        # What a reload cannot change, named.
        _rewrite(srv, srv.port, core, ping_interval=1000, idle_timeout=3000)
        _reload(srv, "reload failed: still serving")
        assert "turning TLS off needs a restart" in srv.log(), srv.log_tail()
        _rewrite(srv, H.free_port(), core, **opts)
        _reload(srv, "reload failed: still serving")
        assert "transports[0].listen: changed from" in srv.log(), srv.log_tail()
        _rewrite(srv, srv.port, core, **dict(opts, rx_buffer_size=8192))
        _reload(srv, "reload failed: still serving")
        assert "transports[0].rx_buffer_size: changed from 4096 to 8192" in srv.log()

        assert _presented(srv.port) == _der(b_cert)
        # Keepalive on wss:// (lws writes our PING there): a client that
        # answers nothing is closed after idle_timeout, the others, which
        # answer PINGs, outlive it.
        mute = RawClient.connect(srv.port, "/lobby/mute/tls", ssl_ctx=trust_b)
        try:
            assert mute.status == 101
            loop = asyncio.get_event_loop()
            t0 = time.monotonic()
            _, ops = await loop.run_in_executor(None, _read_until_closed, mute, 10)
            took = time.monotonic() - t0
        finally:
            mute.close()
        assert 0x9 in ops, "no PING on wss:// (frames %r)" % ops
        assert 2.0 < took < 6, "the mute wss:// client was closed after %.1f s" % took
        # The live ones have been silent longer than idle_timeout by now:
        # only their PONGs kept them (lws 4.1 reports no empty PONG, so our
        # PING carries a byte).
        await asyncio.sleep(1.5)
        await _exchange(live[0], live[2], b"still")
        srv.assert_alive()
    finally:
        for c in live:
            await c.close()
        srv.stop()


def _read_until_closed(raw, timeout):
    """Read a raw client until EOF or a close frame; returns (seconds,
    opcodes seen).  It never answers anything."""
    t0 = time.monotonic()
    ops = []
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        f = raw._parse_frame()
        if f is not None:
            ops.append(f[0])
            if f[0] == 0x8:
                break
            continue
        raw.sock.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
        try:
            chunk = raw.sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        raw.buf += chunk
    return time.monotonic() - t0, ops


@H.timeout(60)
async def test_reload_lowers_keepalive_and_upgrade_timeout_for_live_connections():
    core = {"log_level": "info"}
    slow = {"ping_interval": 30000, "idle_timeout": 60000, "upgrade_timeout": 30000}
    srv = H.start_ws(core=core, ws_opts=slow)
    a = await Client.connect(srv.port, "alice", "ka")  # answers PINGs
    b = await Client.connect(srv.port, "bob", "ka")
    mute = RawClient.connect(srv.port, "/lobby/mute/ka")  # answers nothing
    half = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    half.sendall(b"GET /lobby/half")  # and never the rest
    try:
        assert mute.status == 101
        await asyncio.sleep(0.3)
        _rewrite(srv, srv.port, core, ping_interval=1000, idle_timeout=2500,
                 upgrade_timeout=1000)
        t0 = time.monotonic()
        _reload(srv)
        loop = asyncio.get_event_loop()
        _, ops = await loop.run_in_executor(None, _read_until_closed, mute, 10)
        took = time.monotonic() - t0  # from the reload on
        # Silent for longer than the new ping_interval already: a PING at
        # once, then idle_timeout - ping_interval to answer it.
        assert 0x9 in ops, "no PING after the reload lowered ping_interval (frames %r)" % ops
        assert took < 6, "the mute client was closed only %.1f s after the reload" % took
        half.settimeout(5)
        try:
            closed = half.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            closed = True
        assert closed, "a socket without an upgrade outlived the lowered upgrade_timeout"
        # The clients that answer PINGs carry on past the new idle_timeout.
        await asyncio.sleep(3)
        await _exchange(a, b, b"alive")
        print("  # after the reload: mute client closed in %.1f s (frames %r)" % (took, ops))
        srv.assert_alive()
    finally:
        mute.close()
        half.close()
        await a.close()
        await b.close()
        srv.stop()
