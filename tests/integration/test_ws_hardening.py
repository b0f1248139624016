"""The WebSocket transport against clients that misbehave on purpose
(issue 14): each test reproduces an attack against the real binary over raw
sockets while a well-behaved pair of clients keeps exchanging packets, and
checks both the attacker's outcome and that the pair lost nothing."""

import asyncio
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
