"""The WebSocket transport against clients that misbehave on purpose
(issue 14): each test reproduces an attack against the real binary over raw
sockets while a well-behaved pair of clients keeps exchanging packets, and
checks both the attacker's outcome and that the pair lost nothing."""

import asyncio
import os
import socket
import time

import harness as H
from harness import Client

# The attacker and the well-behaved pair come from different loopback
# addresses, so the per-address limit tells them apart.
ATTACKER = "127.0.0.3"
PAIR = "127.0.0.2"


class Pair:
    """Two clients from PAIR exchanging a control packet every `period`
    seconds each way, for as long as the test runs."""

    def __init__(self, port, room="pair", period=0.02):
        self.port, self.room, self.period = port, room, period
        self.sent = [0, 0]
        self.got = [[], []]
        self.tasks = []

    async def start(self):
        kw = {"local_addr": (PAIR, 0)}
        self.a = await Client.connect(self.port, "pa", self.room, **kw)
        self.b = await Client.connect(self.port, "pb", self.room, **kw)
        for i, (src, dst) in enumerate(((self.a, self.b), (self.b, self.a))):
            self.tasks.append(asyncio.ensure_future(self._send(i, src)))
            self.tasks.append(asyncio.ensure_future(self._recv(i, dst)))

    async def _send(self, i, c):
        while True:
            await c.send(H.PT_AES_KEY, b"pair-%d-%d" % (i, self.sent[i]))
            self.sent[i] += 1
            await asyncio.sleep(self.period)

    async def _recv(self, i, c):
        while True:
            p = await c.recv_client(60)
            self.got[i].append(int(p.data.split(b"-")[2]))

    async def stop(self):
        """Stop sending, let the last packets arrive, check every one came
        in order; returns the number exchanged."""
        for t in self.tasks:
            if t.done() and t.exception() is not None:
                raise AssertionError("the well-behaved pair failed: %r" % (t.exception(),))
        for t in self.tasks[0::2]:
            t.cancel()
        await asyncio.sleep(0.5)
        for t in self.tasks[1::2]:
            t.cancel()
        await self.a.close()
        await self.b.close()
        for i in (0, 1):
            assert self.got[i] == list(range(self.sent[i])), (
                "the well-behaved pair lost packets: direction %d got %d of %d (first gap at %s)"
                % (i, len(self.got[i]), self.sent[i],
                   next((k for k, v in enumerate(self.got[i]) if v != k), len(self.got[i]))))
        return sum(self.sent)


def _raw(port, source, data=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    if data:
        s.sendall(data)
    return s


def _closed_by_server(s, timeout):
    """Wait until the server ends s; returns the seconds it took or None."""
    t0 = time.monotonic()
    s.settimeout(0.1)
    while time.monotonic() - t0 < timeout:
        try:
            if s.recv(4096) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - t0
    return None


@H.timeout(60)
async def test_pre_upgrade_sockets_count_and_time_out():
    """Raw TCP connections that never upgrade hold a per-address slot from
    accept on: at max_connections_per_ip the next one from that address is
    answered 429 at once, and those held are closed after upgrade_timeout
    wherever they stopped (nothing sent, half a request line, headers
    dribbling in after lws took the socket).  Then the address may connect
    again."""
    limit, timeout_ms = 12, 2000
    srv = H.start_ws(core={"trusted_addresses": [], "max_connections_per_ip": limit},
                     ws_opts={"upgrade_timeout": timeout_ms})
    pair = Pair(srv.port)
    await pair.start()
    loop = asyncio.get_event_loop()
    held = []
    try:
        req = H.upgrade_request("/lobby/slow/loris", srv.port)
        t0 = time.monotonic()
        for i in range(limit):
            data = (b"", b"GET /lobby/sl", req[:40])[i % 3]  # nothing, half a line, a line
            held.append(_raw(srv.port, ATTACKER, data))
        await asyncio.sleep(0.2)
        a = await loop.run_in_executor(None, lambda: H.raw_http(
            srv.port, H.upgrade_request("/lobby/one/more", srv.port), source=ATTACKER))
        assert a.status == 429, "connection %d from one address: %r" % (limit + 1, a)
        assert a.headers.get("connection") == "close", a.headers
        # Keep the ones lws has dribbling headers.
        for s in held[2::3]:
            s.sendall(b"X-Slow: 1\r\n")
        times = await asyncio.gather(*(loop.run_in_executor(
            None, _closed_by_server, s, timeout_ms / 1000 + 5) for s in held))
        assert all(t is not None for t in times), \
            "%d of %d sockets that never upgraded are still open %.1f s after " \
            "upgrade_timeout" % (times.count(None), limit, 5.0)
        waited = time.monotonic() - t0
        assert timeout_ms / 1000 - 0.3 <= waited <= timeout_ms / 1000 + 2.5, \
            "sockets closed after %.2f s, upgrade_timeout is %.1f s" % (waited, timeout_ms / 1000)
        print("  # %d sockets that never upgraded: 429 for the next, all closed %.2f s "
              "after connect (upgrade_timeout %.1f s)" % (limit, waited, timeout_ms / 1000))
        # Their slots are free again.
        a = await loop.run_in_executor(None, lambda: H.raw_http(
            srv.port, H.upgrade_request("/lobby/back/again", srv.port), source=ATTACKER))
        assert a.status == 101, "after the timeouts the address still gets %r" % a
        n = await pair.stop()
        print("  # the pair exchanged %d packets throughout, none lost" % n)
    finally:
        for s in held:
            s.close()
    srv.stop()


def test_global_limit_counts_pre_upgrade_sockets():
    """core.max_connections counts sockets before their upgrade too: with
    it full of idle sockets the next connection gets 503, and a freed slot
    is usable again."""
    srv = H.start_ws(core={"max_connections": 4}, ws_opts={"upgrade_timeout": 30000})
    held = [_raw(srv.port, "127.0.0.1") for _ in range(4)]
    try:
        time.sleep(0.2)
        a = H.raw_http(srv.port, H.upgrade_request("/lobby/x/full", srv.port))
        assert a.status == 503, "5th socket with max_connections 4: %r" % a
        held.pop().close()
        ok = H.wait_until(lambda: H.raw_http(
            srv.port, H.upgrade_request("/lobby/y/full", srv.port)).status == 101, 3, 0.1)
        assert ok, "a freed slot was not given back"
    finally:
        for s in held:
            s.close()
    srv.stop()


# --------------------------------------------------------------- deadlines

def _reader(raw, stall_at, stall_for, until, log):
    """Read frames off a RawClient, recording (monotonic time, payload) of
    each binary frame; stop reading for stall_for seconds once stall_at is
    reached; return at `until`."""
    stalled = False
    raw.sock.settimeout(0.05)
    while time.monotonic() < until:
        if not stalled and time.monotonic() >= stall_at:
            stalled = True
            time.sleep(stall_for)
        f = raw._parse_frame()
        if f is not None:
            if f[0] == 0x2:
                log.append((time.monotonic(), f[1]))
            continue
        try:
            chunk = raw.sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            return
        raw.buf += chunk


@H.timeout(60)
async def test_stalled_receiver_gets_fresh_video_and_all_audio():
    """A receiver that stops reading for 2 s while a sender sends video,
    audio and control, then reads again: past the few bytes the kernel held
    when it stopped (notsent_lowat, one batch, its own receive buffer), no
    video it gets is older than max_video_delay; it gets every audio and
    control packet.  Without shedding at write time it would get the whole
    two seconds of video, late."""
    lowat, video_delay = 32768, 150
    srv = H.start_ws(core={"max_video_delay": video_delay, "max_audio_delay": 5000},
                     ws_opts={"notsent_lowat": lowat})
    sender = await Client.connect(srv.port, "cam", "stall")
    raw = H.RawClient.connect(srv.port, "/lobby/viewer/stall", rcvbuf=8192)
    assert raw.status == 101, raw.status
    rcvbuf = raw.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    loop = asyncio.get_event_loop()
    t0 = time.monotonic()
    log = []
    reader = loop.run_in_executor(None, _reader, raw, t0 + 1.0, 2.0, t0 + 5.5, log)
    sent = {"v": 0, "a": 0, "k": 0}
    try:
        # 60 video frames/s of 4 KB (240 KB/s), 50 audio/s of 160 B, 10 key
        # packets/s, for 4.5 s.
        tick = 0
        while time.monotonic() - t0 < 4.5:
            now_ms = b"%d" % int(time.monotonic() * 1000)
            if tick % 5 < 3:
                await sender.send(H.PT_MEDIA, H.encode_media(
                    H.MT_VIDEO, b"v|%d|%s|" % (sent["v"], now_ms) + b"V" * 4000))
                sent["v"] += 1
            if tick % 2 == 0:
                await sender.send(H.PT_MEDIA, H.encode_media(
                    H.MT_AUDIO, b"a|%d|%s|" % (sent["a"], now_ms) + b"A" * 140))
                sent["a"] += 1
            if tick % 10 == 0:
                await sender.send(H.PT_AES_KEY, b"k|%d|%s|" % (sent["k"], now_ms))
                sent["k"] += 1
            tick += 1
            await asyncio.sleep(0.01)
        await reader
    finally:
        raw.close()
        await sender.close()
    got = {"v": [], "a": [], "k": []}
    for t, frame in log:
        p = H.decode_wrapper(frame)
        if p.from_system:
            continue
        body = H.decode_fields(p.data).get(3, b"") if p.packet_type == H.PT_MEDIA else p.data
        kind, seq, ms = body.split(b"|")[:3]
        got[kind.decode()].append((int(seq), t * 1000 - int(ms), len(frame)))
    assert [s for s, _, _ in got["a"]] == list(range(sent["a"])), \
        "audio: got %d of %d" % (len(got["a"]), sent["a"])
    assert [s for s, _, _ in got["k"]] == list(range(sent["k"])), \
        "control: got %d of %d" % (len(got["k"]), sent["k"])
    # Video older than its deadline (and 100 ms for this process's own
    # scheduling) may only be what was past the server's queue already.
    late = [(s, age, n) for s, age, n in got["v"] if age > video_delay + 100]
    late_bytes = sum(n for _, _, n in late)
    allowance = 2 * lowat + 2 * rcvbuf + 16384
    shed = sent["v"] - len(got["v"])
    print("  # video: %d sent, %d delivered, %d shed; %d late (%d bytes, allowed %d), "
          "oldest %.0f ms; audio %d/%d, control %d/%d" % (
              sent["v"], len(got["v"]), shed, len(late), late_bytes, allowance,
              max((a for _, a, _ in got["v"]), default=0), len(got["a"]), sent["a"],
              len(got["k"]), sent["k"]))
    assert late_bytes <= allowance, \
        "%d bytes of video older than %d ms reached the receiver (allowed %d): %r" % (
            late_bytes, video_delay + 100, allowance, [(s, int(a)) for s, a, _ in late[:8]])
    assert shed > 0, "no video was shed during a 2 s stall"
    srv.stop()


# --------------------------------------------------------------- RFC 6455

def _handshake(port, path="/lobby/h/rfc", key=None, version="13", extra="",
               method="GET", http="HTTP/1.1", host=True, upgrade="Upgrade: websocket\r\n",
               connection="Connection: Upgrade\r\n"):
    lines = "%s %s %s\r\n" % (method, path, http)
    if host:
        lines += "Host: 127.0.0.1:%d\r\n" % port
    lines += upgrade + connection
    if key is not False:
        lines += "Sec-WebSocket-Key: %s\r\n" % (key or "dGhlIHNhbXBsZSBub25jZQ==")
    if version is not None:
        lines += "Sec-WebSocket-Version: %s\r\n" % version
    return H.raw_http(port, (lines + extra + "\r\n").encode("latin-1"))


def test_rfc6455_handshake_strict():
    """Opening handshakes RFC 6455 4.1 does not allow are refused before a
    session exists: 400 with the reason, and 426 with
    Sec-WebSocket-Version: 13 for a version we do not speak (4.4)."""
    srv = H.start_ws()
    K = "dGhlIHNhbXBsZSBub25jZQ=="
    cases = [
        ("key not base64", dict(key="not*base64*at*all*!!!!=="), 400),
        ("key of 5 bytes", dict(key="c2hvcnQ="), 400),
        ("key of 17 bytes", dict(key="MTIzNDU2Nzg5MDEyMzQ1Njc="), 400),
        ("no key", dict(key=False), 400),
        ("two keys", dict(extra="Sec-WebSocket-Key: %s\r\n" % K), 400),
        ("version 12", dict(version="12"), 426),
        ("version 99", dict(version="99"), 426),
        ("no version", dict(version=None), 400),
        ("two versions", dict(extra="Sec-WebSocket-Version: 13\r\n"), 400),
        ("two Upgrade headers", dict(extra="Upgrade: websocket\r\n"), 400),
        ("Connection without upgrade", dict(connection="Connection: keep-alive\r\n"), 400),
        ("POST", dict(method="POST"), 400),
        ("HTTP/1.0", dict(http="HTTP/1.0"), 400),
        ("no Host", dict(host=False), 400),
    ]
    problems = []
    try:
        for what, kw, want in cases:
            a = _handshake(srv.port, **kw)
            if a.status != want or not a.body.strip():
                problems.append("%s: HTTP %d %r, expected %d with a reason" % (
                    what, a.status, a.body[:60], want))
            if want == 426 and a.headers.get("sec-websocket-version") != "13":
                problems.append("%s: 426 without Sec-WebSocket-Version: 13 (%r)" % (what, a.headers))
        a = _handshake(srv.port)
        assert a.status == 101, "the RFC's own example handshake: %r" % a
        assert "opened" in srv.log() and not problems, "\n".join(problems)
        assert srv.log().count("opened:") == 1, "a refused handshake opened a session"
    finally:
        srv.stop()


def _violate(port, data, ssl_ctx=None, timeout=5, path="/lobby/bad/rfc", barrier=None):
    """Upgrade, read the first packets, (wait for the others at barrier,)
    send data; return the close code the server answers with (None: the
    connection ended without a close frame) and the seconds it took."""
    raw = H.RawClient.connect(port, path, ssl_ctx=ssl_ctx, timeout=timeout)
    try:
        assert raw.status == 101, raw.status
        if barrier is not None:
            # The others may take a while to connect on a loaded machine;
            # nothing on the server times out before the data is sent.
            barrier.wait(max(timeout, 30))
        t0 = time.monotonic()
        raw.sock.sendall(data)
        raw.read_all(timeout)
        return raw.closed_code, time.monotonic() - t0
    finally:
        raw.close()


_FRAME_CASES = [
    # (what, bytes after the upgrade, close code RFC 6455 asks for)
    ("unmasked binary frame", H.ws_frame(2, b"\x08\x03", masked=False), 1002),
    ("ping over 125 bytes", H.ws_frame(9, b"p" * 126), 1002),
    ("close over 125 bytes", H.ws_frame(8, b"\x03\xe8" + b"c" * 124), 1002),
    ("64-bit length with the top bit set", H.ws_frame(2, b"", length=1 << 63), 1002),
    ("reserved bit", H.ws_frame(2, b"\x08\x03", rsv=4), 1002),
    ("opcode 3", H.ws_frame(3, b"x"), 1002),
    ("fragmented ping", H.ws_frame(9, b"x", fin=False), 1002),
    ("continuation without a message", H.ws_frame(0, b"x"), 1002),
    ("a new message inside a fragmented one",
     H.ws_frame(2, b"\x08", fin=False) + H.ws_frame(2, b"\x03"), 1002),
    ("length not in its shortest form", H.ws_frame(2, b"\x08\x03", width=16), 1002),
    ("close code 5000", H.ws_frame(8, b"\x13\x88"), 1002),
    ("close code 65535", H.ws_frame(8, b"\xff\xff"), 1002),
    ("close code 1005", H.ws_frame(8, b"\x03\xed"), 1002),
    ("one-byte close", H.ws_frame(8, b"\x03"), 1002),
    ("close reason not UTF-8", H.ws_frame(8, b"\x03\xe8\xc0\xaf"), 1007),
    ("text frame", H.ws_frame(1, b"hello"), 1003),
    ("a clean close", H.ws_frame(8, b"\x03\xe8bye"), 1000),
    ("close 4000", H.ws_frame(8, b"\x0f\xa0"), 4000),
]

# What lws 4.1.6 itself does on wss://, where its parser reads (measured):
# it takes an unmasked frame and a length not in its shortest form as
# valid, and ends the connection without a close frame on a control frame
# over 125 bytes or a 2^63 length (lib/roles/ws/ops-ws.c, lws_ws_rx_sm():
# this_frame_masked is never checked; "illegal_ctl_length" and "b63 of
# length must be zero" return -1 without a close reason).
_LWS_ONLY = {"unmasked binary frame", "ping over 125 bytes", "close over 125 bytes",
             "64-bit length with the top bit set", "length not in its shortest form"}


@H.timeout(90)
async def test_rfc6455_framing_strict():
    """Each framing violation of a client gets the close frame RFC 6455
    asks for (1002 protocol error, 1007 bad close reason, 1003 text, our
    echo of a valid close), promptly, on ws://; on wss:// the close-frame
    checks hold too.  A ping is answered with its payload.  A pair of
    well-behaved clients is unaffected."""
    srv = H.start_ws()
    pair = Pair(srv.port)
    await pair.start()
    loop = asyncio.get_event_loop()
    problems = []
    try:
        for what, data, want in _FRAME_CASES:
            code, took = await loop.run_in_executor(None, _violate, srv.port, data)
            if code != want or took > 2.5:
                problems.append("%s: close %s after %.1f s, expected %d" % (what, code, took, want))
        # A ping gets its pong, and the connection goes on.
        raw = H.RawClient.connect(srv.port, "/lobby/pinger/rfc")
        raw.sock.sendall(H.ws_frame(9, b"are you there"))
        deadline = time.monotonic() + 3
        pong = None
        while pong is None and time.monotonic() < deadline:
            raw.sock.settimeout(0.2)
            try:
                raw.buf += raw.sock.recv(4096)
            except socket.timeout:
                pass
            f = raw._parse_frame()
            while f is not None and pong is None:
                if f[0] == 0xA:
                    pong = f[1]
                f = raw._parse_frame()
        raw.close()
        if pong != b"are you there":
            problems.append("ping answered with %r" % (pong,))
        await asyncio.sleep(0.5)  # the pair goes on after all that
        n = await pair.stop()
        print("  # %d framing cases on ws://; the pair exchanged %d packets, none lost"
              % (len(_FRAME_CASES), n))
        srv.assert_alive()
    finally:
        srv.stop()
    assert not problems, "\n".join(problems)


@H.timeout(60)
def test_rfc6455_close_frames_on_wss():
    """On wss:// lws's parser reads, and the close frame is what a callback
    can check: invalid codes and reasons are answered 1002/1007 there too."""
    import ssl
    cert, key = H.self_signed(H.tmpdir())
    srv = H.start_ws(ws_opts={"tls_cert": cert, "tls_key": key})
    ctx = ssl.create_default_context(cafile=cert)
    problems = []
    try:
        for what, data, want in _FRAME_CASES:
            if what in _LWS_ONLY:
                continue
            code, took = _violate(srv.port, data, ssl_ctx=ctx)
            if code != want:
                problems.append("wss %s: close %s, expected %d" % (what, code, want))
        srv.assert_alive()
    finally:
        srv.stop()
    assert not problems, "\n".join(problems)


async def test_frames_sent_before_the_101_still_work():
    """A client that sends its first frame in the same write as its upgrade
    request (RFC 6455 4.1 says to wait for the 101) is still served: lws
    holds those bytes, so lws's parser keeps reading that connection."""
    srv = H.start_ws()
    b = await Client.connect(srv.port, "b", "early")
    try:
        pkt = H.encode_wrapper(H.PT_AES_KEY, b"eager", b"hello-before-101")
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(H.upgrade_request("/lobby/eager/early", srv.port) + H.ws_frame(2, pkt))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, "closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head[:80]
        p = await b.recv_client(5)
        assert p.data == b"hello-before-101", p
        s.close()
    finally:
        await b.close()
    srv.stop()


# --------------------------------------------------------------- memory

def _stall(port, declared, sent, timeout, barrier):
    """A frame header declaring `declared` bytes and `sent` of them, then
    nothing: (close code or None, seconds to it)."""
    return _violate(port, H.ws_frame(2, os.urandom(sent), length=declared),
                    timeout=timeout, path="/lobby/staller/mem", barrier=barrier)


@H.timeout(90)
async def test_stalled_partial_messages_bounded():
    """60 clients each announce a ~1 MB message, send 900 KB of it and
    stall: the process holds at most reassembly_budget for them (the ones
    beyond it are closed with 1009 at once), the rest are closed with 1008
    after message_timeout, RSS stays near the budget instead of 60 MB, and
    the well-behaved pair loses nothing."""
    budget, timeout_ms, n = 16 << 20, 2000, 60
    srv = H.start_ws(ws_opts={"reassembly_budget": budget, "message_timeout": timeout_ms})
    pair = Pair(srv.port)
    await pair.start()
    loop = asyncio.get_event_loop()
    rss0 = srv.rss_kb()
    peak = [rss0]

    async def sample():
        while True:
            peak[0] = max(peak[0], srv.rss_kb())
            await asyncio.sleep(0.05)

    sampler = asyncio.ensure_future(sample())
    try:
        # All n at once: connected first, then sending together.
        import concurrent.futures
        import threading
        barrier = threading.Barrier(n)
        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
            results = await asyncio.gather(*(loop.run_in_executor(
                ex, _stall, srv.port, 1000000, 900000, timeout_ms / 1000 + 6, barrier)
                for _ in range(n)))
        codes = [c for c, _ in results]
        over = [t for c, t in results if c == 1009]
        timed = [t for c, t in results if c == 1008]
        await asyncio.sleep(0.3)
        a = await Client.connect(srv.port, "big1", "mem")
        b = await Client.connect(srv.port, "big2", "mem")
        big = b"B" * 900000
        await a.send(H.PT_AES_KEY, big)
        p = await b.recv_client(10)
        assert p.data == big, "a complete 900 KB message after the attack was not relayed"
        await a.close()
        await b.close()
        got = await pair.stop()
    finally:
        sampler.cancel()
    grew = peak[0] - rss0
    print("  # %d stalled 900 KB messages: %d closed 1009 (over budget), %d closed 1008 "
          "after %.1f-%.1f s; RSS +%d kB (budget %d kB); pair %d packets, none lost" % (
              n, len(over), len(timed), min(timed, default=0), max(timed, default=0),
              grew, budget >> 10, got))
    assert len(over) + len(timed) == n, "close codes: %r" % codes
    # Each held message fills a 1 MiB buffer (it grows by doubling).
    assert len(timed) <= budget >> 20 and over, \
        "%d held 900 KB each with a budget of %d bytes" % (len(timed), budget)
    assert all(timeout_ms / 1000 - 0.3 <= t <= timeout_ms / 1000 + 2.5 for t in timed), \
        "1008 after %r s, message_timeout %.1f s" % (timed, timeout_ms / 1000)
    # ASan keeps freed buffers in its quarantine (each doubling frees one),
    # so there the bound is loose; the close codes above hold either way.
    limit = (budget >> 10) * (6 if H.SANITIZED else 1) + 16 * 1024
    assert grew < limit, "RSS grew by %d kB, limit %d kB" % (grew, limit)
    srv.stop()


# --------------------------------------------------------------- descriptors

def _nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


@H.timeout(60)
async def test_out_of_descriptors_backs_off_and_recovers():
    """At the open-file limit (RLIMIT_NOFILE lowered with prlimit) the
    listener does not spin: waiting connections get a quick 503 through a
    reserve descriptor, accepting pauses, the condition is logged about once
    a second, CPU stays low, the established pair keeps exchanging, and new
    connections are served again once descriptors are free."""
    import shutil
    import subprocess
    if shutil.which("prlimit") is None:
        raise H.TestFailure("prlimit is needed (apt-get install util-linux)")
    srv = H.start_ws(ws_opts={"upgrade_timeout": 30000})
    pair = Pair(srv.port)
    await pair.start()
    loop = asyncio.get_event_loop()
    held, flood = [], []
    try:
        await asyncio.sleep(0.2)
        room = 6
        limit = _nfds(srv.pid) + room
        subprocess.run(["prlimit", "--pid", str(srv.pid), "--nofile=%d:%d" % (limit, limit)],
                       check=True, timeout=10)
        # Fill the table: sockets that hold a descriptor each, then more.
        for _ in range(room):
            held.append(_raw(srv.port, "127.0.0.1"))
        await asyncio.sleep(0.3)
        log0 = srv.log().count("accept: ")
        cpu0 = H.cpu_seconds(srv.pid)
        t0 = time.monotonic()
        answers = []

        def knock():
            try:
                a = H.raw_http(srv.port, H.upgrade_request("/lobby/late/fd", srv.port), timeout=3)
                return a.status
            except Exception as e:  # reset, timeout: what a client would see
                return type(e).__name__
        while time.monotonic() - t0 < 3.0:
            answers.extend(await asyncio.gather(*(loop.run_in_executor(None, knock)
                                                  for _ in range(4))))
            await asyncio.sleep(0.05)
        used = H.cpu_seconds(srv.pid) - cpu0
        lines = srv.log().count("accept: ") - log0
        statuses = {a: answers.count(a) for a in set(answers)}
        print("  # at the descriptor limit for 3 s: %d connection attempts %r; server "
              "CPU %.2f s; %d log lines" % (len(answers), statuses, used, lines))
        assert statuses.get(503, 0) > 0 and statuses.get(101, 0) == 0, \
            "answers at the limit: %r" % statuses
        assert used < 0.6, "the server used %.2f s of CPU in 3 s at the limit" % used
        assert 1 <= lines <= 6, "%d `accept:` log lines in 3 s" % lines
        # Free descriptors: service resumes.
        for s in held:
            s.close()
        held.clear()
        ok = H.wait_until(lambda: knock() == 101, 5, 0.2)
        assert ok, "no upgrade succeeded after descriptors were freed"
        n = await pair.stop()
        print("  # service resumed; the pair exchanged %d packets, none lost" % n)
    finally:
        for s in held + flood:
            s.close()
    srv.stop()
