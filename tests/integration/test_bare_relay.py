"""The bench's reference relay (contrib/bench/bare-relay) relays what the
benchmark says it relays: every binary message to the other members of its
room and to nobody else, whole when it came fragmented, with ping/pong and
the close handshake working, and refuses what is not a lobby upgrade.  The
bench quotes vcgate as a fraction of this relay, so a relay that dropped or
duplicated packets would make every ratio wrong.  Driven by Python
websockets, a raw socket, and loadgen itself (as run.sh uses it), whose
call shape is also checked against vcgate (RTT echoes)."""

import asyncio
import json
import os
import signal
import subprocess

import harness as H

BIN = os.path.join(H.BUILD, "contrib", "bench", "bare-relay")
LOADGEN = os.path.join(H.BUILD, "contrib", "loadgen", "loadgen")


class Relay:
    def __init__(self):
        if not os.access(BIN, os.X_OK):
            raise H.TestFailure("bare-relay not built: %s (make)" % BIN)
        self.port = H.free_port()
        d = H.tmpdir("bare-relay-")
        self.log_path = os.path.join(d, "bare-relay.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([BIN, "--port", str(self.port)], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=H.env_for_vcgate())
        if not H.wait_until(self._listening, 10):
            self.stop()
            raise H.TestFailure("bare-relay did not listen on %d" % self.port)

    def _listening(self):
        if self.proc.poll() is not None:
            return True
        try:
            H.socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def stop(self):
        """SIGTERM, wait, and fail on a crash, a sanitizer report or a leak."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise H.TestFailure("bare-relay did not stop on SIGTERM")
        self.log.close()
        text = open(self.log_path).read()
        rep = H.scan_sanitizer(text)
        if rep:
            raise H.TestFailure("sanitizer report from bare-relay:\n" + rep)
        if self.proc.returncode != 0:
            raise H.TestFailure("bare-relay exited %d:\n%s" % (self.proc.returncode, text[-2000:]))
        return text


async def _connect(port, user, room):
    import websockets
    return await websockets.connect(H.lobby_url(port, user, room), ping_interval=None,
                                    close_timeout=2, max_size=None, open_timeout=5)


async def _nothing(ws, secs=0.3):
    try:
        m = await asyncio.wait_for(ws.recv(), secs)
    except asyncio.TimeoutError:
        return
    raise H.TestFailure("unexpected message %r" % (m[:40],))


@H.timeout(30)
async def test_bare_relay_forwards_to_the_room_only():
    r = Relay()
    try:
        a, b, c = [await _connect(r.port, u, "room-1") for u in ("a", "b", "c")]
        d = await _connect(r.port, "d", "room-2")
        big = os.urandom(70000)  # a 64-bit frame length on the way out
        for msg in (b"\x08\x03hello", big):
            await a.send(msg)
            for peer in (b, c):
                got = await asyncio.wait_for(peer.recv(), 5)
                if got != msg:
                    raise H.TestFailure("peer got %d bytes, want %d" % (len(got), len(msg)))
        await _nothing(a)
        await _nothing(d)
        # A fragmented message arrives whole; a text message is not relayed.
        await b.send([b"frag", b"men", b"ted"])
        for peer in (a, c):
            if await asyncio.wait_for(peer.recv(), 5) != b"fragmented":
                raise H.TestFailure("fragmented message not reassembled")
        await c.send("text is not relayed")
        await _nothing(a)
        # Ping is answered, and the close handshake completes with our code.
        await asyncio.wait_for(await d.ping(b"p"), 5)
        await a.close(code=1000)
        if a.close_code != 1000:
            raise H.TestFailure("close handshake: server answered %r" % a.close_code)
        # The room goes on without a; d's room is unaffected.
        await b.send(b"after")
        if await asyncio.wait_for(c.recv(), 5) != b"after":
            raise H.TestFailure("relay stopped after a member left")
        await _nothing(d)
        for ws in (b, c, d):
            await ws.close()
    finally:
        r.stop()


@H.timeout(30)
async def test_bare_relay_refuses_what_is_not_a_lobby_upgrade():
    r = Relay()
    try:
        for path, want in (("/other/u/r", 404), ("/lobby/u", 404), ("/lobby/u/bad.room", 404),
                           ("/lobby//r", 404)):
            got = await H.connect_status(r.port, path)
            if got != want:
                raise H.TestFailure("%s: HTTP %s, want %s" % (path, got, want))
        # An unmasked client frame is a protocol error (1002); the relay goes on.
        raw = H.RawClient.connect(r.port, "/lobby/raw/room-3")
        if raw.status != 101:
            raise H.TestFailure("raw handshake: HTTP %d" % raw.status)
        raw.sock.sendall(b"\x82\x02hi")
        raw.read_all(5)
        raw.close()
        if raw.closed_code != 1002:
            raise H.TestFailure("unmasked frame: close code %r, want 1002" % raw.closed_code)
        if await H.connect_status(r.port, "/lobby/u/room-3") != 101:
            raise H.TestFailure("relay does not accept after a protocol error")
    finally:
        r.stop()


def _loadgen(url, *args):
    if not os.access(LOADGEN, os.X_OK):
        raise H.TestFailure("loadgen not built: %s" % LOADGEN)
    cp = subprocess.run([LOADGEN, "--url", url, "--quiet", "--max-seconds", "30"] + list(args),
                        capture_output=True, text=True, timeout=40)
    if cp.returncode != 0:
        raise H.TestFailure("loadgen %s: exit %d: %s %s" % (" ".join(args), cp.returncode,
                                                              cp.stdout, cp.stderr))
    res = json.loads(cp.stdout.strip().splitlines()[-1])
    if res["lost"] or res["duplicated"] or res["misrouted"] or res["delivered"] == 0:
        raise H.TestFailure("loadgen %s: %s" % (" ".join(args), cp.stdout))
    return res


CALL = ("--scenario", "call", "--rooms", "3", "--duration", "1", "--warmup", "0.2")


@H.timeout(60)
def test_bare_relay_loses_nothing_under_loadgen():
    """The flat and the call shape (also sealed like E2EE) through the bare
    relay: nothing lost, every class delivered, and the RTT probes, which a
    relay without an echo forwards, are not mistaken for deliveries."""
    r = Relay()
    try:
        url = "ws://127.0.0.1:%d" % r.port
        _loadgen(url, "--scenario", "meeting", "--rooms", "4", "--rate", "200",
                 "--duration", "1", "--warmup", "0.2")
        for extra in ((), ("--encrypted",)):
            res = _loadgen(url, *(CALL + extra))
            classes = set(res["classes"])
            if classes != {"audio", "video", "video_key", "control", "key_exchange"}:
                raise H.TestFailure("call shape classes: %s" % sorted(classes))
            if res["rtt_forwarded"] == 0 or res["rtt_echoes"] != 0:
                raise H.TestFailure("RTT probes: %s" % res)
    finally:
        r.stop()


@H.timeout(60)
def test_loadgen_call_shape_against_vcgate():
    """The same call shape through vcgate: its RTT echoes come back to the
    sender only and give loadgen its RTT figure."""
    srv = H.start_ws()
    try:
        res = _loadgen("ws://127.0.0.1:%d" % srv.port, *CALL)
        if res["rtt_echoes"] == 0 or res["rtt_forwarded"] != 0 or res["rtt_ms"]["samples"] == 0:
            raise H.TestFailure("RTT probes through vcgate: %s" % res)
    finally:
        srv.stop()
