"""Integration tests of vcgate with the WebSocket transport and the in-process
bus (issue 2, section 7).  Each test starts its own vcgate on a free loopback
port and stops it (SIGTERM) at the end; the harness fails a test whose vcgate
crashed, hung on shutdown, or printed a sanitizer report."""

import asyncio
import os
import re
import signal
import time

import harness as H
from harness import Client, RawClient


# --------------------------------------------------------------- helpers

def _tag(room, user, seq):
    return ("%s|%s|%d" % (room, user, seq)).encode()


def _untag(data):
    room, user, seq = data.decode().split("|")
    return room, user, int(seq)


# The relay test cycles through packet types the relay must forward
# opaquely; MEDIA carries a valid MediaPacket (AUDIO) so that the core's
# media-type peek sees something real.
_RELAY_TYPES = (H.PT_MEDIA, H.PT_RSA_PUB_KEY, H.PT_AES_KEY, H.PT_DIAGNOSTICS)


def _relay_payload(ptype, tag):
    if ptype == H.PT_MEDIA:
        return H.encode_media(H.MT_AUDIO, tag)
    return tag


def _relay_tag(p):
    if p.packet_type == H.PT_MEDIA:
        return H.decode_fields(p.data).get(3, b"")
    return p.data


async def _relay_check(port, nrooms, per_room, nmsgs, settle=0.2, prefix="r"):
    """nrooms x per_room clients; each sends nmsgs packets with session_id 0;
    every client must receive exactly the others' packets of its room, once,
    in per-sender order, with the sender's session id stamped and the bytes
    otherwise unchanged."""
    specs = [("%s%d" % (prefix, r), "u%d.%d@x" % (r, i))
             for r in range(nrooms) for i in range(per_room)]
    clients = await asyncio.gather(*(Client.connect(port, u, room) for room, u in specs))
    try:
        sids = [c.session_id for c in clients]
        assert len(set(sids)) == len(sids), "session ids are not unique: %r" % sids
        by_user = {c.user: c for c in clients}
        await asyncio.sleep(settle)

        expected_total = (per_room - 1) * nmsgs
        sent = {}  # (user, seq) -> bytes the receiver must see

        async def sender(c):
            for i in range(nmsgs):
                ptype = _RELAY_TYPES[i % len(_RELAY_TYPES)]
                data = _relay_payload(ptype, _tag(c.room, c.user, i))
                raw = await c.send(ptype, data)
                assert H.decode_wrapper(raw).session_id == 0
                sent[(c.user, i)] = H.encode_wrapper(ptype, c.user.encode(), data,
                                                     c.session_id)

        async def receiver(c):
            return await c.collect(expected_total, timeout=20, quiet=0.5)

        recv_tasks = [asyncio.ensure_future(receiver(c)) for c in clients]
        await asyncio.gather(*(sender(c) for c in clients))
        results = await asyncio.gather(*recv_tasks)

        problems = []
        for c, got in zip(clients, results):
            seen = {}
            for p in got:
                room, user, seq = _untag(_relay_tag(p))
                if user == c.user:
                    problems.append("%s received its own packet %d" % (c.user, seq))
                    continue
                if room != c.room:
                    problems.append("%s (room %s) received a packet of room %s"
                                    % (c.user, c.room, room))
                    continue
                if p.session_id != by_user[user].session_id:
                    problems.append("%s: packet %s#%d has session_id %d, sender's is %d"
                                    % (c.user, user, seq, p.session_id,
                                       by_user[user].session_id))
                if p.raw != sent.get((user, seq)):
                    problems.append("%s: packet %s#%d bytes differ from what was sent "
                                    "(with session id stamped)" % (c.user, user, seq))
                seen.setdefault(user, []).append(seq)
            for user, seqs in seen.items():
                if seqs != sorted(seqs):
                    problems.append("%s: packets of %s out of order" % (c.user, user))
                if len(seqs) != len(set(seqs)):
                    problems.append("%s: duplicates from %s" % (c.user, user))
            others = [u for r, u in specs if r == c.room and u != c.user]
            for u in others:
                missing = set(range(nmsgs)) - set(seen.get(u, []))
                if missing:
                    problems.append("%s missed %d packets of %s (e.g. %s)"
                                    % (c.user, len(missing), u, sorted(missing)[:5]))
            if len(got) != expected_total:
                problems.append("%s received %d client packets, expected %d"
                                % (c.user, len(got), expected_total))
        assert not problems, "%d relay problems:\n%s" % (
            len(problems), "\n".join(problems[:20]))
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def _marker_after(sender, receiver, label, timeout=5):
    """Send a marker from `sender`; return the client packets `receiver`
    gets up to and including it (to show nothing else came before)."""
    tag = b"marker-" + label.encode()
    await sender.send(H.PT_AES_KEY, tag)
    got = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("%s: marker %s never arrived (got %r)" % (
                receiver.user, label, got))
        p = await receiver.recv_client(left)
        got.append(p)
        if p.packet_type == H.PT_AES_KEY and p.data == tag:
            return got


def _mem_limit_kb():
    return (1024 if H.SANITIZED else 200) * 1024


# --------------------------------------------------------------- CLI

def test_version():
    H.require_plugins()
    cp = H.run_vcgate(["-V"])
    out = cp.stdout + cp.stderr
    assert cp.returncode == 0, "vcgate -V exited %d: %s" % (cp.returncode, out)
    assert re.search(r"\d+\.\d+\.\d+", out), "no version number in %r" % out


def test_help():
    H.require_plugins()
    cp = H.run_vcgate(["-h"])
    out = cp.stdout + cp.stderr
    assert cp.returncode == 0, "vcgate -h exited %d" % cp.returncode
    for opt in ("-c", "-t", "-V"):
        assert opt in out, "-h does not mention %s: %r" % (opt, out[:500])


def test_check_config_reports_errors():
    H.require_plugins("inproc", "websocket")
    d = H.tmpdir()
    text = (
        "core = {\n"                                   # 1
        "  workers = 1;\n"                             # 2
        "  bogus_option = 5;\n"                        # 3
        "  max_message_size = -1;\n"                   # 4
        "};\n"                                         # 5
        "transports = ( {\n"                           # 6
        "  plugin = \"websocket\";\n"                  # 7
        "  listen = \"127.0.0.1:%d\";\n"               # 8
        "  no_such_ws_option = true;\n"                # 9
        "} );\n"                                       # 10
        "bus = { plugin = \"inproc\"; };\n"            # 11
    ) % H.free_port()
    path = H.write_config(text=text, d=d)
    cp = H.run_vcgate(["-t", "-c", path])
    out = cp.stdout + cp.stderr
    assert cp.returncode != 0, "vcgate -t accepted a bad config:\n%s" % out
    name = re.escape(os.path.basename(path))

    def has(line, opt):
        return re.search(r"%s:%d: [\w.\[\]]*%s: \S" % (name, line, opt), out)
    problems = []
    if not has(3, "bogus_option"):
        problems.append("no `file:3: bogus_option: reason` line")
    if not has(4, "max_message_size"):
        problems.append("no `file:4: max_message_size: reason` line")
    if not has(9, "no_such_ws_option"):
        problems.append("no `file:9: no_such_ws_option: reason` line (plugin option)")
    assert not problems, "%s; output was:\n%s" % ("; ".join(problems), out)


def test_rx_buffer_size_out_of_range_refused():
    """rx_buffer_size below 512 or above 65536 is a config error with
    file:line; a value in range is accepted."""
    H.require_plugins("inproc", "websocket")
    d = H.tmpdir()
    for value, ok in ((100, False), (1 << 20, False), (1024, True)):
        text = (
            "transports = ( {\n"                       # 1
            "  plugin = \"websocket\";\n"              # 2
            "  listen = \"127.0.0.1:%d\";\n"           # 3
            "  rx_buffer_size = %d;\n"                  # 4
            "} );\n"                                    # 5
            "bus = { plugin = \"inproc\"; };\n"        # 6
        ) % (H.free_port(), value)
        path = H.write_config(text=text, d=d)
        cp = H.run_vcgate(["-t", "-c", path])
        out = cp.stdout + cp.stderr
        if ok:
            assert cp.returncode == 0, "rx_buffer_size = %d refused:\n%s" % (value, out)
        else:
            assert cp.returncode != 0, "rx_buffer_size = %d accepted:\n%s" % (value, out)
            assert re.search(r"%s:4: [\w.\[\]]*rx_buffer_size: \S"
                             % re.escape(os.path.basename(path)), out), \
                "no `file:4: rx_buffer_size: reason` line for %d:\n%s" % (value, out)


def test_check_config_accepts_good():
    H.require_plugins("inproc", "websocket")
    path = H.write_config(core={"workers": 2, "max_connections_per_ip": 10,
                                "trusted_addresses": []},
                          transports=[H.ws_transport(H.free_port())])
    cp = H.run_vcgate(["-t", "-c", path])
    assert cp.returncode == 0, "vcgate -t refused a good config:\n%s" % (cp.stdout + cp.stderr)


def test_check_config_lone_string_refused():
    """A config that is only a string (issue 14: `""`) is a syntax error
    with file:line, and the leak libconfig 1.5 has on that path is the
    one tests/lsan.supp names: run_vcgate fails on any other sanitizer
    report."""
    d = H.tmpdir()
    for text in ('""', 'core = { workers = 1 "x"; };\n'):
        path = os.path.join(d, "lone.conf")
        with open(path, "w") as f:
            f.write(text)
        cp = H.run_vcgate(["-t", "-c", path])
        out = cp.stdout + cp.stderr
        assert cp.returncode != 0, "vcgate -t accepted %r:\n%s" % (text, out)
        assert re.search(r"lone\.conf:1: syntax error", out), "no `file:1: syntax error` for %r:\n%s" % (text, out)


# --------------------------------------------------------------- relay

@H.timeout(60)
async def test_relay_many_clients_rooms_isolated():
    srv = H.start_ws()
    await _relay_check(srv.port, nrooms=4, per_room=5, nmsgs=20)
    srv.assert_alive()
    srv.stop()


@H.timeout(60)
async def test_relay_two_workers():
    srv = H.start_ws(workers=2)
    # Each worker has its own listening socket (SO_REUSEPORT).
    import shutil
    import subprocess
    if shutil.which("ss"):
        out = subprocess.run(["ss", "-Hltn", "sport = :%d" % srv.port],
                             capture_output=True, text=True, timeout=5).stdout
        n = sum(1 for l in out.splitlines() if l.startswith("LISTEN"))
        assert n == 2, "expected 2 listening sockets on port %d with workers = 2, " \
            "found %d:\n%s" % (srv.port, n, out)
    # Many connections so that SO_REUSEPORT spreads them over both workers.
    await _relay_check(srv.port, nrooms=3, per_room=8, nmsgs=10, prefix="w")
    srv.assert_alive()
    srv.stop()


async def test_session_assigned_and_meeting_started():
    srv = H.start_ws()
    a = await Client.connect(srv.port, "alice", "room1")
    b = await Client.connect(srv.port, "bob", "room1")
    try:
        assert a.session_id != b.session_id
        f = H.decode_fields(a.meeting.data)
        assert f.get(2) in (None, b"room1"), "MEETING_STARTED room_id is %r" % f.get(2)
        assert a.assigned.data == b"", "SESSION_ASSIGNED carries data %r" % a.assigned.data
    finally:
        await a.close()
        await b.close()
    srv.stop()


async def test_fragmented_message_reassembled():
    srv = H.start_ws()
    b = await Client.connect(srv.port, "bob", "frag")
    raw = RawClient.connect(srv.port, "/lobby/fragger/frag")
    try:
        assert raw.status == 101, "raw handshake got %d" % raw.status
        payload = H.encode_wrapper(H.PT_MEDIA, b"fragger",
                                   H.encode_media(H.MT_AUDIO, b"x" * 3000))
        raw.send_frame(0x2, payload[:1000], fin=False)
        raw.send_frame(0x0, payload[1000:2000], fin=False)
        raw.send_frame(0x0, payload[2000:], fin=True)
        p = await b.recv_client(5)
        assert p.packet_type == H.PT_MEDIA and \
            H.decode_fields(p.data).get(3) == b"x" * 3000, "reassembled packet differs: %r" % p
    finally:
        raw.close()
        await b.close()
    srv.stop()


# --------------------------------------------------------------- refusals

async def test_bad_paths_and_names():
    """Every upgrade goes to the core's lobby parser with the target as the
    client sent it; each bad URL gets exactly one status."""
    srv = H.start_ws()
    cases = [
        ("/lobby/alice/bad%2Froom", 400, "room with an encoded slash"),
        ("/lobby/alice/a.b", 400, "room with a dot"),
        ("/lobby/alice/%2E%2E", 400, "room `..`"),
        ("/lobby/alice/" + "r" * 5000, 400, "overlong room"),
        ("/lobby/system-%26%5E%25%24%23%40%21/room", 403, "reserved identity"),
        ("/lobby/ali%3Cce/room", 400, "user with '<'"),
        # libwebsockets would drop these without an answer (%00) or with
        # 403 (%zz); the transport answers 400 before lws sees them.
        ("/lobby/ali%00ce/room", 400, "user with NUL"),
        ("/lobby/ali%zzce/room", 400, "bad percent-encoding"),
        ("/nope", 404, "unknown path"),
        ("/", 404, "root"),
        ("/lobbyx/a/b", 404, "another path that starts like the lobby"),
        ("/lobby", 400, "lobby without user/room"),
        ("/lobby/alice", 400, "lobby without room"),
        ("/lobby//room", 400, "empty user"),
        # lws would have cleaned these up into a good lobby path.
        ("/lobby//alice/room", 400, "a doubled slash"),
        ("/lobby/x/../alice/room", 400, "a dot-dot segment"),
    ]
    problems = []
    for path, want, what in cases:
        st = await H.connect_status(srv.port, path)
        if st != want:
            problems.append("%s (%s): HTTP %d, expected %d" % (what, path[:60], st, want))
    # A valid one still works afterwards.
    c = await Client.connect(srv.port, "alice+1@example.com", "good_room-1")
    await c.close()
    srv.assert_alive()
    assert not problems, "\n".join(problems)
    srv.stop()


async def test_max_message_size_close_1009():
    limit = 65536
    srv = H.start_ws(core={"max_message_size": limit})
    a = await Client.connect(srv.port, "alice", "big")
    b = await Client.connect(srv.port, "bob", "big")
    try:
        # Just under the cap is relayed.
        data = b"y" * (limit - 100)
        await a.send(H.PT_AES_KEY, data)
        p = await b.recv_client(5)
        assert p.data == data, "near-limit packet not relayed intact"
        # Over the cap: close 1009, not relayed.
        await a.send_raw(H.encode_wrapper(H.PT_AES_KEY, b"alice", b"z" * (limit + 10)))
        code = await a.expect_close(5)
        assert code == 1009, "oversized message closed with %r, expected 1009" % code
        c = await Client.connect(srv.port, "carol", "big")
        got = await _marker_after(c, b, "after-big")
        assert len(got) == 1, "bob got extra packets: %r" % got
        await c.close()
    finally:
        await a.close()
        await b.close()
    srv.stop()


async def test_text_frame_closed_1003():
    srv = H.start_ws()
    a = await Client.connect(srv.port, "alice", "txt")
    b = await Client.connect(srv.port, "bob", "txt")
    c = await Client.connect(srv.port, "carol", "txt")
    try:
        await a.ws.send("hello as text")
        code = await a.expect_close(5)
        assert code == 1003, "text frame closed with %r, expected 1003" % code
        got = await _marker_after(c, b, "after-text")
        assert len(got) == 1, "bob got extra packets: %r" % got
    finally:
        for x in (a, b, c):
            await x.close()
    srv.stop()


async def test_garbage_and_malformed_not_relayed():
    srv = H.start_ws()
    g = await Client.connect(srv.port, "garbler", "junk")
    b = await Client.connect(srv.port, "bob", "junk")
    c = await Client.connect(srv.port, "carol", "junk")
    garbage = [
        b"\xff" * 16,                 # varint longer than 10 bytes
        b"\x1a\x10abc",               # field 3 length 16, 3 bytes follow
        b"\x08",                      # truncated varint
        b"\x0f\x01",                  # wire type 7
        b"\x00\x01",                  # field number 0
        b"\x12\xff\xff\xff\xff\x0fab",  # user_id of length 4 GiB
        # Valid fields, then a length past the end.  (Random bytes here
        # were sometimes a valid message: an unknown fixed64 field.)
        b"\x08\x03\x20\x07\x1a\xff\xff\x7f",
        b"\x22\x05hello",             # field 4 (uint64) as bytes
    ]
    try:
        for i, junk in enumerate(garbage):
            try:
                await g.send_raw(junk)
            except Exception:
                # The server may close a sender of garbage; that is allowed.
                g = await Client.connect(srv.port, "garbler%d" % i, "junk")
            got = await _marker_after(c, b, "junk%d" % i)
            assert len(got) == 1, "garbage %d %r reached bob: %r" % (i, junk, got[:-1])
        srv.assert_alive()
        # The room still relays both ways.
        got = await _marker_after(b, c, "final")
        assert len(got) == 1
    finally:
        for x in (g, b, c):
            await x.close()
    srv.stop()


# --------------------------------------------------------------- per-type rules

async def test_rtt_echo_health_congestion_unknown():
    srv = H.start_ws()
    a = await Client.connect(srv.port, "alice", "rtt")
    b = await Client.connect(srv.port, "bob", "rtt")
    try:
        # RTT with the sender's session id already set: echoed byte for byte.
        probe = H.encode_wrapper(H.PT_MEDIA, b"alice",
                                 H.encode_media(H.MT_RTT, b"probe-1"), a.session_id)
        await a.send_raw(probe)
        echo = await a.recv_client(5)
        assert echo.raw == probe, "RTT echo differs: %r vs %r" % (echo.raw, probe)
        # RTT with session id 0: echoed to the sender (stamping allowed).
        await a.send(H.PT_MEDIA, H.encode_media(H.MT_RTT, b"probe-2"))
        echo = await a.recv_client(5)
        assert echo.packet_type == H.PT_MEDIA and \
            H.decode_fields(echo.data).get(3) == b"probe-2", "bad RTT echo %r" % echo
        assert echo.session_id in (0, a.session_id)
        # HEALTH and CONGESTION from a client are not forwarded.
        await a.send(H.PT_HEALTH, b"health")
        await a.send(H.PT_CONGESTION, b"congestion")
        got = await _marker_after(a, b, "rules")
        assert len(got) == 1, "bob got RTT/HEALTH/CONGESTION: %r" % got[:-1]
        # Unknown packet types are relayed.
        await a.send(42, b"future")
        p = await b.recv_client(5)
        assert p.packet_type == 42 and p.data == b"future", "unknown type not relayed: %r" % p
        # Nothing came back to alice except what she asked for.
        got = await _marker_after(b, a, "back")
        assert len(got) == 1, "alice got unexpected packets: %r" % got[:-1]
    finally:
        await a.close()
        await b.close()
    srv.stop()


async def test_keyframe_request_rate_limited():
    srv = H.start_ws()
    a = await Client.connect(srv.port, "alice", "kf")
    b = await Client.connect(srv.port, "bob", "kf")
    try:
        for i in range(10):
            await a.send(H.PT_MEDIA, H.encode_media(H.MT_KEYFRAME_REQUEST, b"kf%d" % i))
        got = await _marker_after(a, b, "kf")
        n = len(got) - 1
        assert 1 <= n <= 3, "%d of 10 KEYFRAME_REQUESTs sent within ~0s were forwarded " \
            "(PROTOCOL: at most 2 per second per session)" % n
    finally:
        await a.close()
        await b.close()
    srv.stop()


# --------------------------------------------------------------- slow consumer

@H.timeout(90)
async def test_slow_consumer_dropped_others_unaffected():
    # The reader must get every packet.  Its own backlog waits in its queue
    # (notsent_lowat keeps the kernel from hiding it), so the budget is the
    # default 4 MiB, and video deadlines, which a Python reader on a busy
    # machine can miss, are test_ws_hardening's subject.
    srv = H.start_ws(core={"queue_max_packets": 1024, "slow_consumer_timeout": 1000,
                           "max_video_delay": 60000})
    reader = await Client.connect(srv.port, "reader", "flood")
    flooder = await Client.connect(srv.port, "flooder", "flood")
    # The slow client: completes the handshake and never reads again, with a
    # tiny receive buffer so the server's socket fills at once.
    slow = RawClient.connect(srv.port, "/lobby/sloth/flood", rcvbuf=4096)
    assert slow.status == 101, "slow client's handshake got %d" % slow.status
    # The flooder is paced (about 16 MB/s) so that the reader, which shares
    # this process's event loop, can keep up: the point is that a slow member
    # does not slow the others, not that a fast one can outrun Python.
    # 1000 x 32 KiB is far more than the kernel buffers and the server's
    # 4 MiB queue can absorb for the client that never reads.
    n, size = 1000, 32 * 1024
    rss_start = srv.rss_kb()
    rss_max = [rss_start]

    async def sample_rss():
        while True:
            try:
                rss_max[0] = max(rss_max[0], srv.rss_kb())
            except (OSError, AssertionError):
                return
            await asyncio.sleep(0.05)

    sampler = asyncio.ensure_future(sample_rss())
    try:
        t0 = time.monotonic()

        async def flood():
            for i in range(n):
                await flooder.send(H.PT_MEDIA, H.encode_media(
                    H.MT_VIDEO, b"%08d" % i + b"v" * (size - 8)))
                if i % 5 == 4:
                    await asyncio.sleep(0.01)

        ft = asyncio.ensure_future(flood())
        got = await reader.collect(n, timeout=40, quiet=0.2)
        await ft
        elapsed = time.monotonic() - t0
        seqs = [int(H.decode_fields(p.data)[3][:8]) for p in got]
        assert seqs == list(range(n)), (
            "reader got %d of %d packets (first gap at %s) while a slow client "
            "was in the room" % (len(seqs), n,
                                 next((i for i, s in enumerate(seqs) if s != i), len(seqs))))
        srv.assert_alive()
        # Give the slow-consumer policy time to act, then look at the socket.
        await asyncio.sleep(1.5)
        frames = await asyncio.get_event_loop().run_in_executor(None, slow.read_all, 10)
        closed = slow.closed_code is not None or slow.eof
        assert closed or frames < n, (
            "slow client neither closed nor dropped: got %d frames of %d" % (frames, n + 2))
        limit = _mem_limit_kb()
        assert rss_max[0] < limit, "vcgate RSS reached %d kB (start %d kB), limit %d kB" % (
            rss_max[0], rss_start, limit)
        print("  # slow consumer: %s after %d frames (close code %s); reader got %d x %d "
              "bytes in %.2fs; RSS %d -> max %d kB" % (
                  "closed" if closed else "dropped", frames, slow.closed_code, n, size,
                  elapsed, rss_start, rss_max[0]))
        # The room keeps working.
        got = await _marker_after(flooder, reader, "after-flood")
        assert len(got) == 1
    finally:
        sampler.cancel()
        slow.close()
        await reader.close()
        await flooder.close()
    srv.stop()


# --------------------------------------------------------------- liveness

@H.timeout(40)
async def test_idle_client_closed_live_client_kept():
    srv = H.start_ws(ws_opts={"ping_interval": 1000, "idle_timeout": 2000})
    a = await Client.connect(srv.port, "alice", "idle")  # answers pings
    b = await Client.connect(srv.port, "bob", "idle")
    mute = RawClient.connect(srv.port, "/lobby/mute/idle")
    try:
        assert mute.status == 101
        t0 = time.monotonic()
        loop = asyncio.get_event_loop()
        # read_all returns on a close frame or EOF; it never answers pings.
        await loop.run_in_executor(None, mute.read_all, 10)
        waited = time.monotonic() - t0
        assert mute.closed_code is not None or mute.eof, \
            "a client that never answers pings is still open after 10s (idle_timeout 2s)"
        assert waited >= 1.0, "mute client closed after only %.2fs" % waited
        if mute.closed_code is not None:
            assert mute.closed_code in (1001, 1000, 1006), "idle close code %d" % mute.closed_code
        got = await _marker_after(a, b, "alive")
        assert len(got) == 1
    finally:
        mute.close()
        await a.close()
        await b.close()
    srv.stop()


# --------------------------------------------------------------- limits

async def test_per_ip_limit_untrusted_loopback():
    srv = H.start_ws(core={"trusted_addresses": [], "max_connections_per_ip": 3})
    cs = [await Client.connect(srv.port, "u%d" % i, "ip") for i in range(3)]
    try:
        st = await H.connect_status(srv.port, "/lobby/u3/ip")
        assert st == 429, "4th connection from one IP got HTTP %d, expected 429" % st
        await cs.pop().close()
        ok = False
        for _ in range(40):  # the slot is freed when the server sees the close
            await asyncio.sleep(0.05)
            if await H.connect_status(srv.port, "/lobby/u4/ip") == 101:
                ok = True
                break
        assert ok, "a connection slot was not freed after a client left"
    finally:
        for c in cs:
            await c.close()
    srv.stop()


async def test_loopback_trusted_by_default():
    srv = H.start_ws(core={"max_connections_per_ip": 2})
    cs = []
    try:
        for i in range(5):
            cs.append(await Client.connect(srv.port, "t%d" % i, "trust"))
    finally:
        for c in cs:
            await c.close()
    srv.stop()


async def test_max_sessions_per_room():
    srv = H.start_ws(core={"max_sessions_per_room": 3})
    cs = [await Client.connect(srv.port, "m%d" % i, "full") for i in range(3)]
    try:
        st = await H.connect_status(srv.port, "/lobby/m3/full")
        assert st in (503,), "4th session in a full room got HTTP %d, expected 503" % st
        other = await Client.connect(srv.port, "m4", "other")
        await other.close()
        await cs.pop().close()
        ok = False
        for _ in range(40):
            await asyncio.sleep(0.05)
            if await H.connect_status(srv.port, "/lobby/m5/full") == 101:
                ok = True
                break
        assert ok, "room seat not freed after a member left"
    finally:
        for c in cs:
            await c.close()
    srv.stop()


@H.timeout(60)
async def test_connect_churn_bounded():
    srv = H.start_ws()
    rss0 = srv.rss_kb()
    for i in range(150):
        c = await Client.connect(srv.port, "churn%d" % (i % 7), "churn%d" % (i % 3))
        if i % 2:
            await c.send(H.PT_AES_KEY, b"x" * 1000)
        if i % 3 == 0:
            c.ws.transport.abort()  # vanish without a close handshake
        else:
            await c.close()
    srv.assert_alive()
    a = await Client.connect(srv.port, "alice", "churn0")
    b = await Client.connect(srv.port, "bob", "churn0")
    got = await _marker_after(a, b, "churn")
    assert len(got) == 1, "stale sessions delivered to bob: %r" % got[:-1]
    await a.close()
    await b.close()
    rss1 = srv.rss_kb()
    assert rss1 < _mem_limit_kb(), "RSS %d kB after churn (start %d kB)" % (rss1, rss0)
    srv.stop()


# --------------------------------------------------------------- shutdown

@H.timeout(30)
async def test_sigterm_drains_clients_1001():
    drain_ms = 2000
    srv = H.start_ws(core={"drain_timeout": drain_ms})
    cs = [await Client.connect(srv.port, "d%d" % i, "drain%d" % (i % 2)) for i in range(4)]
    try:
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        codes = await asyncio.gather(*(c.expect_close(drain_ms / 1000 + 3) for c in cs))
        assert all(code == 1001 for code in codes), "close codes on drain: %r" % codes
        rc = await asyncio.get_event_loop().run_in_executor(
            None, srv.wait_exit, drain_ms / 1000 + 3)
        took = time.monotonic() - t0
        assert rc is not None, "vcgate still running %.1fs after SIGTERM" % took
        assert rc == 0, "vcgate exited %d after SIGTERM" % rc
    finally:
        for c in cs:
            await c.close()
    srv.stop()  # scans the log for sanitizer reports


@H.timeout(30)
async def test_sigterm_with_stuck_client_bounded():
    """A client that never reads must not hold the drain beyond its timeout."""
    drain_ms = 1500
    srv = H.start_ws(core={"drain_timeout": drain_ms}, workers=2)
    a = await Client.connect(srv.port, "a", "stuck")
    stuck = RawClient.connect(srv.port, "/lobby/stuck/stuck", rcvbuf=4096)
    try:
        for i in range(200):
            await a.send(H.PT_MEDIA, H.encode_media(H.MT_AUDIO, b"s" * 16000))
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        rc = await asyncio.get_event_loop().run_in_executor(
            None, srv.wait_exit, drain_ms / 1000 + 4)
        took = time.monotonic() - t0
        assert rc is not None, "vcgate still running %.1fs after SIGTERM " \
            "(drain_timeout %d ms)" % (took, drain_ms)
        assert rc == 0, "vcgate exited %d after SIGTERM" % rc
    finally:
        stuck.close()
        await a.close()
    srv.stop()


@H.timeout(30)
def test_default_config_without_c():
    """`vcgate` with no -c serves WebSocket on 127.0.0.1:8080."""
    H.require_plugins("inproc", "websocket")
    import socket
    s = socket.socket()
    # Probe as vcgate binds (SO_REUSEADDR): a TIME_WAIT left by an earlier
    # connection to 8080 does not stop vcgate, so it must not skip the test.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", 8080))
    except OSError:
        raise H.Skip("127.0.0.1:8080 is in use")
    finally:
        s.close()
    if H.plugin_built("webtransport"):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", 4433))
        except OSError:
            raise H.Skip("127.0.0.1:4433/udp is in use")
        finally:
            u.close()
    d = H.tmpdir()
    log_path = os.path.join(d, "vcgate.log")
    import subprocess
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen([H.vcgate_bin()], stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=H.env_for_vcgate(), cwd=d)
    srv = H.Server(proc, log_path, None, [8080], 5000)
    H._servers.append(srv)
    ok = H.wait_until(lambda: "listening on ws://127.0.0.1:8080" in srv.log()
                      or not srv.alive(), 10)
    assert ok and srv.alive(), "default config did not listen on ws://127.0.0.1:8080:\n%s" \
        % srv.log_tail()

    async def one():
        c = await Client.connect(8080, "alice", "default")
        await c.close()
    asyncio.run(one())
    srv.stop()


def _http_get(port, path):
    """Plain HTTP GET (no upgrade): (status, body)."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_plain_http_answers():
    """Without an upgrade /lobby/... is 426; /.well-known/vcgate/webtransport is 404
    "webtransport is not enabled" when no WebTransport transport runs; other
    well-known paths are 404."""
    srv = H.start_ws()
    try:
        st, body = _http_get(srv.port, "/lobby/alice/room1")
        assert st == 426 and "upgrade" in body, "plain GET on the lobby: %d %r" % (st, body)
        st, body = _http_get(srv.port, "/.well-known/vcgate/webtransport")
        assert st == 404 and "webtransport is not enabled" in body, \
            "well-known without webtransport: %d %r" % (st, body)
        st, body = _http_get(srv.port, "/.well-known/vcgate/other")
        assert st == 404, "unknown well-known path: %d %r" % (st, body)
    finally:
        srv.stop()


def test_cli_refusals():
    """Bad command lines are refused with a message, before anything starts."""
    H.require_plugins()
    cp = H.run_vcgate(["-l", "loud"])
    assert cp.returncode == 2 and "-l loud" in cp.stderr, (cp.returncode, cp.stderr)
    cp = H.run_vcgate(["-Z"])
    assert cp.returncode == 2 and "usage" in cp.stderr, (cp.returncode, cp.stderr)
    cp = H.run_vcgate(["stray-argument"])
    assert cp.returncode == 2 and "usage" in cp.stderr, (cp.returncode, cp.stderr)
    cp = H.run_vcgate(["-P", "no_such_plugin"])
    assert cp.returncode == 1 and "plugin 'no_such_plugin' not found" in cp.stderr, \
        (cp.returncode, cp.stderr)


@H.timeout(90)
async def test_wss_relay_small_and_large_packets():
    """wss:// (tls_cert + tls_key): packets relayed both ways in order, many
    small ones and a few close to max_message_size (so TLS writes are
    partial and lws buffers the rest), with a verified certificate."""
    import ssl
    cert, key = H.self_signed(H.tmpdir())
    # Bob reads while he sends 3.6 MB over TLS, so the small MEDIA for him
    # can wait past the 150 ms video deadline on a busy machine; this test
    # is about TLS writes, not deadlines (test_ws_hardening's subject).
    # Key packets over 16 KiB count as bulk (droppable at half the queue
    # budget): 3.6 MB of them need a budget above 7.2 MB here.
    srv = H.start_ws(core={"max_video_delay": 60000, "queue_max_bytes": 16 << 20},
                     ws_opts={"tls_cert": cert, "tls_key": key})
    ctx = ssl.create_default_context(cafile=cert)
    a = await Client.connect(srv.port, "alice", "tls", ssl=ctx)
    b = await Client.connect(srv.port, "bob", "tls", ssl=ctx)
    try:
        small = [_tag("tls", "alice", i) + bytes(1000) for i in range(300)]
        large = [_tag("tls", "bob", i) + os.urandom(900 * 1024) for i in range(4)]

        # The large ones are AES_KEY packets; over 16 KiB they are bulk, so
        # the budget above keeps all 3.6 MB of them while they wait in
        # alice's queue behind TLS writes.
        async def send_all(c, items, ptype):
            for d in items:
                await c.send(ptype, d)

        got_b, got_a, _, _ = await asyncio.gather(
            b.collect(len(small), timeout=30, quiet=0.3),
            a.collect(len(large), timeout=30, quiet=0.3),
            send_all(a, small, H.PT_MEDIA), send_all(b, large, H.PT_AES_KEY))
        assert [p.data for p in got_b] == small, \
            "bob got %d of %d small packets, in order: %s" % (
                len(got_b), len(small), [p.data for p in got_b] == small[:len(got_b)])
        assert [p.data for p in got_a] == large, \
            "alice got %d of %d large packets" % (len(got_a), len(large))
        assert all(p.session_id == a.session_id for p in got_b)
        assert all(p.session_id == b.session_id for p in got_a)
        # Plain ws:// on a wss listener is refused, and the server lives on.
        import websockets
        try:
            ws = await asyncio.wait_for(websockets.connect(
                H.lobby_url(srv.port, "carol", "tls"), open_timeout=3), 5)
            await ws.close()
            raise H.TestFailure("a plain ws:// handshake succeeded on the wss listener")
        except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake,
                websockets.ConnectionClosed, EOFError):
            pass
    finally:
        await a.close()
        await b.close()
    srv.assert_alive()
    srv.stop()
