#!/usr/bin/env python3
"""WebTransport scenarios against headless chromium.

test_webtransport.py runs `wt_scenario.py NAME` inside a private network
namespace (`unshare -n`, loopback up), so that vcgate, the page server and
chromium see nothing but 127.0.0.1.  Each scenario starts its own vcgate
(websocket + webtransport + inproc), its own browser (wt_browser.js) and, where
needed, python3-websockets clients, and exits 0 on success.  Every wait is
bounded.  Output ends with `ok - NAME` or `not ok - NAME: reason`.
"""

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness as h  # noqa: E402

SYSTEM = h.SYSTEM_USER


class Browser:
    """wt_browser.js as a subprocess: one JSON command per line."""

    def __init__(self, log_path, page_url=None, console=False, script="wt_browser.js"):
        self.log_path = log_path
        # The driver: wt_browser.js (one page, window functions as commands)
        # or another script speaking the same JSON lines (web_browser.js).
        self.script = script
        self.proc = None
        self.seq = 0
        self.waiters = {}
        self.reader = None
        # With page_url, wt_browser.js opens that page instead of
        # wt_page.html; with console, the page's console messages and
        # uncaught errors are collected here (see wt_browser.js).
        self.page_url = page_url
        self.want_console = console
        self.console = []
        self.page_errors = []

    def _note(self, msg):
        """Keep a console or page-error report; True if msg was one."""
        if "console" in msg:
            self.console.append(msg["console"])
            return True
        if "pageerror" in msg:
            self.page_errors.append(msg["pageerror"])
            return True
        return False

    async def start(self, timeout=30):
        logf = open(self.log_path, "wb")
        env = dict(os.environ)
        if self.page_url:
            env["WT_PAGE_URL"] = self.page_url
        if self.want_console:
            env["WT_CONSOLE"] = "1"
        self.proc = await asyncio.create_subprocess_exec(
            "node", os.path.join(HERE, self.script),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=logf, env=env, limit=64 << 20)
        logf.close()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            line = await asyncio.wait_for(self.proc.stdout.readline(), left)
            msg = json.loads(line or b"{}")
            if not self._note(msg):
                break
        if not msg.get("ready"):
            raise h.TestFailure("browser did not start: %r; log:\n%s" % (msg, self.log()))
        self.reader = asyncio.ensure_future(self._read())

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    async def _read(self):
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            m = json.loads(line)
            if self._note(m):
                continue
            fut = self.waiters.pop(m.get("id"), None)
            if fut and not fut.done():
                fut.set_result(m)
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_exception(h.TestFailure("browser exited; log:\n" + self.log()))

    async def call(self, fn, *args, timeout=20):
        self.seq += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiters[self.seq] = fut
        self.proc.stdin.write((json.dumps({"id": self.seq, "fn": fn, "args": list(args)}) + "\n").encode())
        await self.proc.stdin.drain()
        m = await asyncio.wait_for(fut, timeout)
        if "error" in m:
            raise h.TestFailure("%s%r failed in the page: %s" % (fn, args[:2], m["error"]))
        return m["result"]

    async def close(self):
        if not self.proc:
            return
        try:
            self.proc.stdin.close()
            await asyncio.wait_for(self.proc.wait(), 15)
        except (asyncio.TimeoutError, Exception):
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        if self.reader:
            self.reader.cancel()


class Gateway:
    """vcgate with one websocket and one webtransport listener."""

    def __init__(self, workers=1, wt_opts=None, core=None, ws_opts=None):
        self.ws_port = h.free_port()
        self.wt_port = h.free_port(socket.SOCK_DGRAM)
        self.dir = h.tmpdir("vcgate-wt-")
        self.hash_file = os.path.join(self.dir, "cert.sha256")
        wt = {"plugin": "webtransport", "listen": "127.0.0.1:%d" % self.wt_port,
              "cert_hash_file": self.hash_file}
        wt.update(wt_opts or {})
        c = {"log_level": "info", "workers": workers}
        c.update(core or {})
        self.core, self.transports = c, [h.ws_transport(self.ws_port, **(ws_opts or {})), wt]
        self.srv = h.start_vcgate(core=c, transports=self.transports)
        with open(self.hash_file) as f:
            self.hash = f.read().strip()
        if len(self.hash) != 64:
            raise h.TestFailure("cert_hash_file holds %r" % self.hash)

    def url(self, user, room):
        return "https://127.0.0.1:%d/lobby/%s/%s" % (self.wt_port, user, room)

    def reload(self, what="reload: configuration applied", wt_opts=None):
        """SIGHUP (with the webtransport options changed by wt_opts, when
        given) and wait for one more `what` in the log."""
        if wt_opts:
            wt = dict(self.transports[1], **wt_opts)
            with open(self.srv.conf_path, "w") as f:
                f.write(h.config_text(self.core, [self.transports[0], wt]))
        n = self.srv.log().count(what)
        self.srv.signal(signal.SIGHUP)
        if not h.wait_until(lambda: self.srv.log().count(what) > n, 10):
            raise h.TestFailure("SIGHUP: no %r in the log:\n%s" % (what, self.srv.log_tail()))

    def served_hash(self):
        with open(self.hash_file) as f:
            return f.read().strip()

    def stop(self):
        self.srv.stop()


class WtSession:
    """One WebTransport session in the page, with its received packets."""

    def __init__(self, br, sid, user, room):
        self.br = br
        self.id = sid
        self.user = user
        self.room = room
        self.packets = []        # (channel, Packet) in arrival order
        self.session_id = None
        self.closed = None
        self.stream_errors = 0

    async def open(self, gw, expect_ok=True, cert_hash=None):
        r = await self.br.call("wtOpen", self.id, gw.url(self.user, self.room),
                               cert_hash or gw.hash)
        if expect_ok and not r.get("ok"):
            raise h.TestFailure("%s: WebTransport did not open: %s" % (self.id, r.get("error")))
        if not r.get("ok"):
            return r
        # The first packets come on uni streams, after the 200.  Each has its
        # own stream and QUIC does not order streams, so either may be first.
        await self.wait_for(lambda: len(self.packets) >= 2, 10, "SESSION_ASSIGNED and MEETING_STARTED")
        first = sorted(self.packets[:2], key=lambda cp: cp[1].packet_type != h.PT_SESSION_ASSIGNED)
        (ch0, p0), (ch1, p1) = first
        if p0.packet_type != h.PT_SESSION_ASSIGNED or p0.user_id != SYSTEM or not p0.session_id:
            raise h.TestFailure("%s: first packet %r, not SESSION_ASSIGNED" % (self.id, p0))
        if p1.packet_type != h.PT_MEETING or h.decode_fields(p1.data).get(1) != h.EV_MEETING_STARTED:
            raise h.TestFailure("%s: second packet %r, not MEETING_STARTED" % (self.id, p1))
        if ch0 != "stream" or ch1 != "stream":
            raise h.TestFailure("%s: first packets came on %s/%s, not uni streams" % (self.id, ch0, ch1))
        self.session_id = p0.session_id
        del self.packets[:2]
        return r

    async def poll(self):
        r = await self.br.call("wtInbox", self.id)
        for m in r["inbox"]:
            self.packets.append((m["ch"], h.Packet(base64.b64decode(m["data"]))))
        self.closed = r["closed"]
        self.stream_errors = r["streamErrors"]

    async def wait_for(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            await self.poll()
            if pred():
                return
            if time.monotonic() > deadline:
                raise h.TestFailure("%s: no %s within %ss (have %d packets, closed %r)"
                                    % (self.id, what, timeout, len(self.packets), self.closed))
            await asyncio.sleep(0.05)

    def client_packets(self):
        return [(ch, p) for ch, p in self.packets if p.user_id != SYSTEM]

    async def send_stream(self, raw):
        await self.br.call("wtSendStream", self.id, base64.b64encode(raw).decode())

    async def send_dgram(self, raw):
        await self.br.call("wtSendDgram", self.id, base64.b64encode(raw).decode())


def tag(sender, channel, seq):
    return ("tag:%s:%s:%d" % (sender, channel, seq)).encode()


def untag(p):
    if p.packet_type == h.PT_MEDIA:
        d = h.decode_fields(p.data).get(3, b"")
    else:
        d = p.data
    if not d.startswith(b"tag:"):
        return None
    return d.decode()


# ---------------------------------------------------------------- scenarios

async def scenario_relay():
    """Two browser sessions and a WebSocket client in one room: packets
    cross both ways on uni streams and datagrams, each exactly once, never
    back to the sender; MEDIA arrives on streams, small control packets as
    datagrams."""
    gw = Gateway()
    br = Browser(os.path.join(gw.dir, "browser.log"))
    ws = None
    try:
        await br.start()
        a = WtSession(br, "a", "wta", "room1")
        b = WtSession(br, "b", "wtb", "room1")
        await a.open(gw)
        await b.open(gw)
        ws = await h.Client.connect(gw.ws_port, "wsc", "room1")
        n = 8
        expected = {"a": set(), "b": set(), "ws": set()}
        for seq in range(n):
            for s in (a, b):
                t = tag(s.id, "stream", seq)
                await s.send_stream(h.encode_wrapper(h.PT_MEDIA, s.user.encode(),
                                                     h.encode_media(h.MT_VIDEO, t)))
                t2 = tag(s.id, "dgram", seq)
                await s.send_dgram(h.encode_wrapper(h.PT_AES_KEY, s.user.encode(), t2))
                for other in ("a", "b", "ws"):
                    if other != s.id:
                        expected[other].update({t.decode(), t2.decode()})
            t = tag("ws", "media", seq)
            await ws.send(h.PT_MEDIA, h.encode_media(h.MT_VIDEO, t))
            t2 = tag("ws", "key", seq)
            await ws.send(h.PT_AES_KEY, t2)
            expected["a"].update({t.decode(), t2.decode()})
            expected["b"].update({t.decode(), t2.decode()})
            await asyncio.sleep(0.01)
        for s in (a, b):
            await s.wait_for(lambda s=s: len([1 for _, p in s.client_packets() if untag(p)]) >= len(expected[s.id]),
                             15, "%d relayed packets" % len(expected[s.id]))
        got_ws = await ws.collect(len(expected["ws"]), 10, quiet=0.5)
        await asyncio.sleep(0.5)
        for s in (a, b):
            await s.poll()
            tags = [untag(p) for _, p in s.client_packets() if untag(p)]
            if len(tags) != len(set(tags)):
                raise h.TestFailure("%s received duplicates" % s.id)
            if set(tags) != expected[s.id]:
                raise h.TestFailure("%s: missing %s, unexpected %s" % (
                    s.id, sorted(expected[s.id] - set(tags))[:5], sorted(set(tags) - expected[s.id])[:5]))
            for ch, p in s.client_packets():
                want = "stream" if p.packet_type == h.PT_MEDIA else "dgram"
                if ch != want:
                    raise h.TestFailure("%s: %r came on %s, not %s" % (s.id, p, ch, want))
                if p.session_id == 0:
                    raise h.TestFailure("%s: relayed packet without a session id" % s.id)
            if s.stream_errors:
                raise h.TestFailure("%s: %d incoming streams failed" % (s.id, s.stream_errors))
        tags = [untag(p) for p in got_ws if untag(p)]
        if len(tags) != len(set(tags)) or set(tags) != expected["ws"]:
            raise h.TestFailure("ws: got %d (%d unique), want %d; missing %s" % (
                len(tags), len(set(tags)), len(expected["ws"]),
                sorted(expected["ws"] - set(tags))[:5]))
        print("relay: %d packets to each browser session, %d to the WebSocket client, "
              "streams and datagrams, no duplicates, none to the sender" % (
                  len(expected["a"]), len(expected["ws"])))
    finally:
        if ws:
            await ws.close()
        await br.close()
        gw.stop()


async def scenario_big():
    """A 256 KiB packet crosses intact in both directions: browser uni
    stream to the WebSocket client and another browser session, and from
    the WebSocket client to both browser sessions.  The windows are sized
    to it: core.max_message_size 300000 and the smallest connection_window
    (64 KiB), which the plugin raises to one message of the largest size."""
    gw = Gateway(wt_opts={"connection_window": 65536}, core={"max_message_size": 300000})
    br = Browser(os.path.join(gw.dir, "browser.log"))
    ws = None
    try:
        await br.start()
        a = WtSession(br, "a", "biga", "bigroom")
        b = WtSession(br, "b", "bigb", "bigroom")
        await a.open(gw)
        await b.open(gw)
        ws = await h.Client.connect(gw.ws_port, "bigws", "bigroom")
        blob = bytes((i * 7 + i // 251) & 0xff for i in range(256 * 1024))
        raw_a = h.encode_wrapper(h.PT_MEDIA, b"biga", h.encode_media(h.MT_VIDEO, b"A" + blob))
        await a.send_stream(raw_a)
        raw_w = await ws.send(h.PT_MEDIA, h.encode_media(h.MT_VIDEO, b"W" + blob))
        await b.wait_for(lambda: len(b.client_packets()) >= 2, 20, "two 256 KiB packets")
        await a.wait_for(lambda: len(a.client_packets()) >= 1, 20, "one 256 KiB packet")
        got = await ws.collect(1, 20, quiet=0.3)
        def media_payload(p):
            return h.decode_fields(p.data).get(3, b"")
        pb = sorted(media_payload(p) for _, p in b.client_packets())
        if pb != sorted([b"A" + blob, b"W" + blob]):
            raise h.TestFailure("browser b: 256 KiB packets differ (sizes %s)" % [len(x) for x in pb])
        if [media_payload(p) for _, p in a.client_packets()] != [b"W" + blob]:
            raise h.TestFailure("browser a: did not get the WebSocket client's 256 KiB packet intact")
        if len(got) != 1 or media_payload(got[0]) != b"A" + blob:
            raise h.TestFailure("WebSocket client: %d packets, first %d bytes" % (
                len(got), len(media_payload(got[0])) if got else 0))
        if any(ch != "stream" for _, p in b.client_packets() for ch in [_]):
            raise h.TestFailure("a large packet came as a datagram")
        del raw_a, raw_w
        print("big: 256 KiB packets crossed browser->browser, browser->ws, ws->browser intact")
    finally:
        if ws:
            await ws.close()
        await br.close()
        gw.stop()


async def scenario_close():
    """Close in both directions, with codes and reasons: a browser's
    close(4000, "bye") reaches the server (log) and ends the session there;
    an oversized packet makes the server close the session with 1009
    "message too big"; SIGTERM closes a live session with 1001 "server
    shutting down"; a closed user can rejoin."""
    gw = Gateway(core={"max_message_size": 65536})
    br = Browser(os.path.join(gw.dir, "browser.log"))
    try:
        await br.start()
        a = WtSession(br, "a", "closea", "croom")
        await a.open(gw)
        sid_a = a.session_id
        closed = await br.call("wtClose", "a", 4000, "bye")
        if closed is None or closed.get("error"):
            raise h.TestFailure("client close: closed = %r" % closed)
        if not h.wait_until(lambda: 'client closed session: code 4000 reason "bye"' in gw.srv.log()
                            and ("session %016x: closed" % sid_a) in gw.srv.log(), 5):
            raise h.TestFailure("server did not log the client's close (4000, bye):\n" + gw.srv.log_tail())
        # Rejoin under the same identity after the close.
        a2 = WtSession(br, "a2", "closea", "croom")
        await a2.open(gw)
        # Server-initiated close: a packet over max_message_size.
        big = h.encode_wrapper(h.PT_MEDIA, b"closea", h.encode_media(h.MT_VIDEO, b"x" * 70000))
        try:
            await a2.send_stream(big)
        except h.TestFailure:
            pass  # the page may see the stream stopped
        c = await br.call("wtWaitClosed", "a2", 5000)
        if not c or c.get("code") != 1009 or c.get("reason") != "message too big":
            raise h.TestFailure("oversize: browser saw close %r, want 1009 'message too big'" % c)
        # Shutdown: a live session is told 1001.
        a3 = WtSession(br, "a3", "closeb", "croom")
        await a3.open(gw)
        gw.srv.signal(15)
        c = await br.call("wtWaitClosed", "a3", 8000)
        if not c or c.get("code") != 1001 or c.get("reason") != "server shutting down":
            raise h.TestFailure("SIGTERM: browser saw close %r, want 1001 'server shutting down'" % c)
        if gw.srv.wait_exit(10) != 0:
            raise h.TestFailure("vcgate did not exit 0 after SIGTERM:\n" + gw.srv.log_tail())
        print("close: client 4000/bye seen by server; server 1009 and 1001 seen by the page; rejoin ok")
    finally:
        await br.close()
        gw.stop()


async def scenario_badpath():
    """The core owns the lobby grammar: a CONNECT's :path goes to the host
    as sent, and each refusal carries the status of the host's one table
    (vcg_close_http_status), logged with the host's reason.  A path that
    is not the lobby gets 404, a malformed lobby URL 400, a bad room name
    400, the reserved identity 403; the browser sees the session fail, and
    a good session still opens afterwards."""
    gw = Gateway()
    br = Browser(os.path.join(gw.dir, "browser.log"))
    try:
        await br.start()
        cases = [("/nope", "404 not found"),
                 ("/lobby/onlyuser", "400 expected /lobby/{user}/{room}"),
                 ("/lobby/u/r/extra", "400 expected /lobby/{user}/{room}: too many path components"),
                 ("/lobby//r", "400 "),
                 ("/lobby/u/bad.room", "400 "),
                 ("/lobby/system-%26%5E%25%24%23%40!/r", "403 ")]
        for i, (path, want) in enumerate(cases):
            url = "https://127.0.0.1:%d%s" % (gw.wt_port, path)
            r = await br.call("wtOpen", "bad%d" % i, url, gw.hash)
            if r.get("ok"):
                raise h.TestFailure("%s: session opened" % path)
            if not h.wait_until(lambda: gw.srv.log().count("CONNECT refused: " + want) >=
                                sum(1 for _, w in cases[:i + 1] if w == want), 5):
                raise h.TestFailure("%s: no 'CONNECT refused: %s' in the log:\n%s" % (path, want, gw.srv.log_tail()))
        ok = WtSession(br, "good", "gooduser", "goodroom")
        await ok.open(gw)
        print("badpath: 404/400/403 refused with the core's reasons, then a good session opened")
    finally:
        await br.close()
        gw.stop()


async def scenario_shed():
    """Deadline shedding: a browser session stops taking streams while a
    WebSocket sender sends a burst of video with audio and key packets
    among it.  The server's queue for the browser backs up behind the
    browser's stream credit; when the browser reads again, the video still
    queued is past core.max_video_delay and is shed at write time (the
    sender hears CONGESTION), so what the browser gets of the burst is
    only the prefix that was on the wire before it stopped, never late
    video; every audio packet (within max_audio_delay) and every key
    packet arrives, and fresh video sent afterwards flows at once."""
    gw = Gateway(core={"max_video_delay": 150, "max_audio_delay": 5000})
    br = Browser(os.path.join(gw.dir, "browser.log"))
    ws = None
    try:
        await br.start()
        r = WtSession(br, "r", "shedr", "shedroom")
        await r.open(gw)
        ws = await h.Client.connect(gw.ws_port, "sheds", "shedroom")
        await br.call("wtPause", "r", True)
        await asyncio.sleep(0.2)
        burst, audio, keys = 300, 30, 30
        for seq in range(burst):
            await ws.send(h.PT_MEDIA, h.encode_media(h.MT_VIDEO, tag("v", "burst", seq) + b"." * 400))
            if seq % 10 == 0:
                await ws.send(h.PT_MEDIA, h.encode_media(h.MT_AUDIO, tag("a", "burst", seq // 10)))
                await ws.send(h.PT_AES_KEY, tag("k", "burst", seq // 10))
        await asyncio.sleep(1.0)     # the queued video ages past 150 ms
        await br.call("wtPause", "r", False)
        await asyncio.sleep(0.5)
        fresh = 10
        for seq in range(fresh):
            await ws.send(h.PT_MEDIA, h.encode_media(h.MT_VIDEO, tag("v", "fresh", seq)))
            await asyncio.sleep(0.01)
        def tags():
            return [untag(p) for _, p in r.client_packets() if untag(p)]
        want = {tag("a", "burst", i).decode() for i in range(audio)} | \
               {tag("k", "burst", i).decode() for i in range(keys)} | \
               {tag("v", "fresh", i).decode() for i in range(fresh)}
        await r.wait_for(lambda: want <= set(tags()), 15, "every audio, key and fresh video packet")
        await asyncio.sleep(0.5)
        await r.poll()
        got = tags()
        if len(got) != len(set(got)):
            raise h.TestFailure("duplicates received")
        vseq = sorted(int(t.rsplit(":", 1)[1].split(".")[0]) for t in got if t.startswith("tag:v:burst:"))
        if not vseq or vseq != list(range(len(vseq))) or len(vseq) >= burst:
            raise h.TestFailure("burst video received %d of %d (%s...): want a strict prefix "
                                "(what was on the wire before the pause), the stale rest shed"
                                % (len(vseq), burst, vseq[:5]))
        congestion = 0
        while True:
            try:
                p = await ws.recv(0.2)
            except asyncio.TimeoutError:
                break
            congestion += p.packet_type == h.PT_CONGESTION
        if congestion == 0:
            raise h.TestFailure("the sender was not told CONGESTION about the shed video")
        print("shed: %d of %d queued video packets reached the paused browser (the prefix already "
              "on the wire), the stale rest was shed; %d audio, %d key, %d fresh video all arrived; "
              "sender got CONGESTION" % (len(vseq), burst, audio, keys, fresh))
    finally:
        if ws:
            await ws.close()
        await br.close()
        gw.stop()


async def scenario_rotate():
    """Session rotation bounds what ngtcp2 0.12.1 keeps per client stream:
    with max_client_streams = 40, a browser that keeps sending (one uni
    stream per packet) is closed with 1001 "session rotation: reconnect"
    right after its 40th stream (its control, two QPACK and CONNECT
    streams count too), everything before is relayed, and the same user
    reconnects and goes on."""
    gw = Gateway(wt_opts={"max_client_streams": 40})
    br = Browser(os.path.join(gw.dir, "browser.log"))
    ws = None
    try:
        await br.start()
        a = WtSession(br, "a", "rota", "rotroom")
        await a.open(gw)
        ws = await h.Client.connect(gw.ws_port, "rotws", "rotroom")
        for seq in range(45):
            try:
                await a.send_stream(h.encode_wrapper(h.PT_MEDIA, b"rota",
                                                     h.encode_media(h.MT_VIDEO, tag("a", "one", seq))))
            except h.TestFailure:
                break  # the session is closed under the page
        c = await br.call("wtWaitClosed", "a", 5000)
        if not c or c.get("code") != 1001 or c.get("reason") != "session rotation: reconnect":
            raise h.TestFailure("browser saw close %r, want 1001 'session rotation: reconnect'" % c)
        got = await ws.collect(40, 5, quiet=0.5)
        seqs = sorted(int(untag(p).rsplit(":", 1)[1]) for p in got if untag(p))
        # 40 streams less Chromium's own HTTP/3 streams (control, CONNECT,
        # QPACK as it opens them): each packet before the limit, none after.
        if seqs != list(range(len(seqs))) or not 36 <= len(seqs) <= 38:
            raise h.TestFailure("relayed before the rotation: %s, want 0..35-37" % seqs)
        a2 = WtSession(br, "a2", "rota", "rotroom")
        await a2.open(gw)
        for seq in range(5):
            await a2.send_stream(h.encode_wrapper(h.PT_MEDIA, b"rota",
                                                  h.encode_media(h.MT_VIDEO, tag("a", "two", seq))))
        got = await ws.collect(5, 5, quiet=0.3)
        if sorted(untag(p) for p in got) != sorted(tag("a", "two", i).decode() for i in range(5)):
            raise h.TestFailure("after reconnecting: %r" % [untag(p) for p in got])
        if "asking the client to move to a new session" not in gw.srv.log():
            raise h.TestFailure("no DRAIN before the rotation:\n" + gw.srv.log_tail())
        print("rotate: %d packets relayed, DRAIN at 35 streams, 1001 at stream 41; the user "
              "reconnected and 5 more were relayed" % len(seqs))
    finally:
        if ws:
            await ws.close()
        await br.close()
        gw.stop()


class UdpProxy(asyncio.DatagramProtocol):
    """A UDP relay between chromium and vcgate that records the client's
    packets, so the test can inject damaged copies from the very address
    and port of a live connection."""

    def __init__(self, target):
        self.target = target
        self.transport = None
        self.ups = {}      # client addr -> upstream transport
        self.seen = []     # recent client packets (bytes)

    def connection_made(self, t):
        self.transport = t

    def datagram_received(self, data, addr):
        self.seen.append(data)
        del self.seen[:-200]
        up = self.ups.get(addr)
        if up is None:
            loop = asyncio.get_running_loop()
            proxy = self

            class Up(asyncio.DatagramProtocol):
                def datagram_received(self, d, _a):
                    proxy.transport.sendto(d, addr)
            fut = loop.create_datagram_endpoint(Up, remote_addr=self.target)
            task = asyncio.ensure_future(fut)
            self.ups[addr] = task
            task.add_done_callback(lambda t: t.result()[0].sendto(data))
            return
        if isinstance(up, asyncio.Future):
            if up.done():
                up = self.ups[addr] = up.result()[0]
            else:
                up.add_done_callback(lambda t: t.result()[0].sendto(data))
                return
        up.sendto(data)

    def close(self):
        for up in self.ups.values():
            if isinstance(up, asyncio.Future):
                up.cancel()
            else:
                up.close()
        self.ups = {}
        if self.transport:
            self.transport.close()

    def inject(self, data):
        """Send data upstream as if it came from every proxied client."""
        for addr, up in list(self.ups.items()):
            if not isinstance(up, asyncio.Future):
                up.sendto(data)


async def scenario_garbage():
    """Hundreds of garbage UDP datagrams, truncated and corrupted copies of
    live QUIC packets (sent from the live connection's own address),
    replays, bogus Initials and unknown versions do not disturb two live
    browser sessions; the server answers a version negotiation, stays up
    and keeps relaying."""
    import random
    rnd = random.Random(1234)
    gw = Gateway()
    loop = asyncio.get_running_loop()
    proxy_t, proxy = await loop.create_datagram_endpoint(
        lambda: UdpProxy(("127.0.0.1", gw.wt_port)), local_addr=("127.0.0.1", 0))
    pport = proxy_t.get_extra_info("sockname")[1]
    br = Browser(os.path.join(gw.dir, "browser.log"))
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.setblocking(False)
    try:
        await br.start()
        a = WtSession(br, "a", "ga", "groom")
        b = WtSession(br, "b", "gb", "groom")
        url_port = gw.wt_port
        gw.wt_port = pport          # a goes through the proxy
        await a.open(gw)
        gw.wt_port = url_port
        await b.open(gw)

        async def exchange(round_):
            for seq in range(5):
                await a.send_stream(h.encode_wrapper(h.PT_MEDIA, b"ga", h.encode_media(h.MT_VIDEO, tag("a", round_, seq))))
                await b.send_dgram(h.encode_wrapper(h.PT_AES_KEY, b"gb", tag("b", round_, seq)))
            want_a = {tag("b", round_, s).decode() for s in range(5)}
            want_b = {tag("a", round_, s).decode() for s in range(5)}
            await a.wait_for(lambda: want_a <= {untag(p) for _, p in a.client_packets()}, 10, "round %s" % round_)
            await b.wait_for(lambda: want_b <= {untag(p) for _, p in b.client_packets()}, 10, "round %s" % round_)

        await exchange("before")
        live = [p for p in proxy.seen if p and not (p[0] & 0x80)]  # short headers of a
        if not live:
            raise h.TestFailure("proxy saw no short-header packets")
        sent = 0
        vn_seen = 0
        for i in range(600):
            kind = i % 6
            if kind == 0:      # random bytes, random size
                d = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 1400)))
                raw.sendto(d, ("127.0.0.1", gw.wt_port))
            elif kind == 1:    # truncated copy of a live packet, same address
                p = rnd.choice(live)
                proxy.inject(p[:rnd.randint(1, max(1, len(p) - 1))])
            elif kind == 2:    # corrupted copy of a live packet
                p = bytearray(rnd.choice(live))
                j = rnd.randrange(1 + 18, len(p)) if len(p) > 20 else len(p) - 1
                p[j] ^= 1 << rnd.randrange(8)
                proxy.inject(bytes(p))
            elif kind == 3:    # exact replay
                proxy.inject(rnd.choice(live))
            elif kind == 4:    # an Initial-looking long header, cut short or bogus
                dcid = bytes(rnd.getrandbits(8) for _ in range(8))
                d = bytes([0xc3]) + b"\x00\x00\x00\x01" + bytes([8]) + dcid + b"\x00" + \
                    bytes(rnd.getrandbits(8) for _ in range(rnd.choice([10, 100, 1300])))
                raw.sendto(d, ("127.0.0.1", gw.wt_port))
            else:              # an unknown version, large enough for a VN answer
                d = bytes([0xc0]) + b"\x1a\x2a\x3a\x4a" + bytes([8]) + b"12345678" + bytes([0]) + b"\x00" * 1200
                raw.sendto(d, ("127.0.0.1", gw.wt_port))
            sent += 1
            if i % 50 == 0:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        while True:
            try:
                d = raw.recv(2048)
            except BlockingIOError:
                break
            if len(d) > 5 and d[0] & 0x80 and d[1:5] == b"\x00\x00\x00\x00":
                vn_seen += 1
        gw.srv.assert_alive()
        await exchange("after")
        for s in (a, b):
            await s.poll()
            if s.closed:
                raise h.TestFailure("%s closed during the flood: %r" % (s.id, s.closed))
        if vn_seen == 0:
            raise h.TestFailure("no version negotiation answer to an unknown version")
        print("garbage: %d bad datagrams (random, truncated/corrupted/replayed live packets, "
              "bogus Initials, unknown versions); sessions unaffected; %d VN answers" % (sent, vn_seen))
    finally:
        raw.close()
        proxy.close()
        await br.close()
        gw.stop()


async def scenario_workers():
    """With two workers (SO_REUSEPORT sockets, one generated certificate and
    one Retry token secret for both) and retry = "always", several browser
    sessions validate their address through a QUIC Retry, open and relay
    to each other."""
    gw = Gateway(workers=2, wt_opts={"retry": "always"})
    br = Browser(os.path.join(gw.dir, "browser.log"))
    try:
        await br.start()
        ss = [WtSession(br, "w%d" % i, "wu%d" % i, "wroom") for i in range(4)]
        for s in ss:
            await s.open(gw)
        for s in ss:
            await s.send_stream(h.encode_wrapper(h.PT_MEDIA, s.user.encode(), h.encode_media(h.MT_VIDEO, tag(s.id, "w", 0))))
        for s in ss:
            want = {tag(o.id, "w", 0).decode() for o in ss if o is not s}
            await s.wait_for(lambda s=s, want=want: want <= {untag(p) for _, p in s.client_packets()}, 10, "relay")
        gw.stop()
        if "wt_retry_sent=" not in gw.srv.log():
            raise h.TestFailure("no Retry was sent:\n" + gw.srv.log_tail())
        print("workers: 4 sessions over 2 workers, each through a Retry, relayed to each other")
    finally:
        await br.close()
        gw.stop()


def lobby_cases(secret, issuer="videocall-meeting-backend"):
    """(target, status) pairs every transport must answer alike: good and
    bad legacy URLs and room tokens (minted with Python's jwt)."""
    import time
    import jwt  # Debian python3-jwt

    def tok(ttl=3600, key=secret, **kw):
        c = {"sub": "tina", "room": "tokroom", "room_join": True, "iss": issuer,
             "exp": int(time.time()) + ttl}
        c.update(kw)
        return "/lobby?token=" + jwt.encode(c, key, algorithm="HS256")
    return [
        ("/lobby/alice/standup", 200),
        ("/lobby/bob%20smith/daily%20standup", 200),
        ("/lobby/carol+1@x.org/r-1", 200),
        (tok(), 200),
        (tok(room_join=False, observer=True, sub="otto"), 200),
        ("/", 404), ("/nope", 404), ("/lobbyx/a/b", 404),
        ("/lobby", 400), ("/lobby/", 400), ("/lobby/onlyuser", 400), ("/lobby//r", 400),
        ("/lobby/u/", 400), ("/lobby/u/r/extra", 400), ("/lobby/u/bad.room", 400),
        ("/lobby/a%2Fb/r", 400), ("/lobby/%zz/r", 400), ("/lobby?token=", 400),
        ("/lobby?x=1", 400),
        ("/lobby/system-%26%5E%25%24%23%40%21/r", 403),
        (tok(ttl=-7200), 401), (tok(key="wrong-secret"), 403), (tok(iss="mallory"), 403),
        (tok(room="bad.room"), 403), (tok(room_join=False), 403), ("/lobby?token=not.a.jwt", 403),
    ]


async def scenario_lobby_table():
    """The same list of lobby URLs, good and bad, legacy and tokens, gets
    the same answer over WebSocket (upgrade status) and WebTransport
    (CONNECT status): the core owns the grammar."""
    secret = "table-secret"
    gw = Gateway(core={"jwt_secret": secret})
    br = Browser(os.path.join(gw.dir, "browser.log"))
    try:
        await br.start()
        cases = lobby_cases(secret)
        wrong = []
        for i, (target, want) in enumerate(cases):
            if i and i % 8 == 0:
                await br.call("reload")
            ws = await h.connect_status(gw.ws_port, target)
            ws = 200 if ws == 101 else ws
            before = gw.srv.log().count("CONNECT refused: ")
            r = await br.call("wtOpen", "t%d" % i, "https://127.0.0.1:%d%s" % (gw.wt_port, target),
                              gw.hash)
            if r.get("ok"):
                wt = 200
                await br.call("wtClose", "t%d" % i, 1000, "bye")
            else:
                h.wait_until(lambda: gw.srv.log().count("CONNECT refused: ") > before, 5)
                lines = [l for l in gw.srv.log().splitlines() if "CONNECT refused: " in l]
                wt = int(lines[-1].split("CONNECT refused: ")[1].split()[0]) if len(lines) > before else 0
            if not (ws == wt == want):
                wrong.append("%s: websocket %s, webtransport %s, want %s" % (target[:60], ws, wt, want))
        if wrong:
            raise h.TestFailure("answers differ:\n" + "\n".join(wrong))
        print("lobby table: %d URLs answered alike on both transports" % len(cases))
    finally:
        await br.close()
        gw.stop()


def openssl_pair(d, name):
    """A fresh ECDSA P-256 certificate (valid one day, as Chromium's
    serverCertificateHashes needs) and key in d; returns (cert, key, sha256
    of the certificate's DER in hex)."""
    cert, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=vcgate-test",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=20)
    with open(cert) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return cert, key, hashlib.sha256(der).hexdigest()


async def scenario_reload_cert():
    """SIGHUP re-reads tls_cert/tls_key: a live session (made with
    certificate A) keeps relaying, the next handshake presents certificate B
    (a page pinning only A's hash fails, one pinning B's opens) and
    cert_hash_file says B.  A reload whose certificate cannot be loaded, or
    that changes `listen`, is refused as a whole and B keeps serving."""
    d = h.tmpdir("vcgate-wtcert-")
    a_crt, a_key, a_hash = openssl_pair(d, "a")
    b_crt, b_key, b_hash = openssl_pair(d, "b")
    live_crt, live_key = os.path.join(d, "live.crt"), os.path.join(d, "live.key")
    shutil.copy(a_crt, live_crt)
    shutil.copy(a_key, live_key)
    # Two workers: each swaps its own pointer to the shared credentials.
    gw = Gateway(workers=2, wt_opts={"tls_cert": live_crt, "tls_key": live_key})
    br = Browser(os.path.join(gw.dir, "browser.log"))
    try:
        if gw.hash != a_hash:
            raise h.TestFailure("cert_hash_file %s, want A's %s" % (gw.hash, a_hash))
        await br.start()
        s1 = WtSession(br, "s1", "u1", "rl")
        s2 = WtSession(br, "s2", "u2", "rl")
        await s1.open(gw, cert_hash=a_hash)
        await s2.open(gw, cert_hash=a_hash)
        # cert-manager renews in place: same file names, new content.
        for src, dst in ((b_crt, live_crt), (b_key, live_key)):
            shutil.copy(src, dst + ".new")
            os.replace(dst + ".new", dst)
        gw.reload()
        if "new handshakes use certificate sha-256 " + b_hash not in gw.srv.log():
            raise h.TestFailure("no certificate swap logged:\n" + gw.srv.log_tail())
        if gw.served_hash() != b_hash:
            raise h.TestFailure("cert_hash_file holds %s after the reload, want B's" % gw.served_hash())

        async def relay(src, dst, seq):
            t = tag(src.id, "r", seq)
            await src.send_stream(h.encode_wrapper(h.PT_MEDIA, src.user.encode(),
                                                   h.encode_media(h.MT_VIDEO, t)))
            await dst.wait_for(lambda: t.decode() in {untag(p) for _, p in dst.client_packets()},
                               10, "%s from %s" % (t.decode(), src.id))

        await relay(s1, s2, 0)  # the live session, certificate A, carries on
        await relay(s2, s1, 1)
        old = WtSession(br, "old", "u3", "rl")
        r = await old.open(gw, expect_ok=False, cert_hash=a_hash)
        if r.get("ok"):
            raise h.TestFailure("a page pinning only A's hash opened a session after the reload")
        s4 = WtSession(br, "s4", "u4", "rl")
        await s4.open(gw, cert_hash=b_hash)
        await relay(s4, s1, 2)
        await relay(s1, s4, 3)

        # A new listen address is refused by name; nothing changes.
        gw.reload("reload failed: still serving", {"listen": "127.0.0.1:%d" % h.free_port(socket.SOCK_DGRAM)})
        if "transports[1].listen: changed from" not in gw.srv.log():
            raise h.TestFailure("listen change not named:\n" + gw.srv.log_tail())
        # An unloadable certificate: the reload fails as a whole, B stays.
        with open(live_crt, "w") as f:
            f.write("not a certificate\n")
        gw.reload("reload failed: still serving", {"idle_timeout": 20000})
        if not re.search(r"reload failed: \S+:\d+: transports\[1\]\.tls_cert: not a loadable ", gw.srv.log()):
            raise h.TestFailure("no 'reload failed: FILE:LINE: transports[1].tls_cert:' in the log:\n" + gw.srv.log_tail())
        if gw.served_hash() != b_hash:
            raise h.TestFailure("cert_hash_file changed by a failed reload")
        s5 = WtSession(br, "s5", "u5", "rl")
        await s5.open(gw, cert_hash=b_hash)
        await relay(s5, s2, 4)
        print("reload_cert: live session on A kept relaying, next handshake presented B "
              "(A-only page refused, B-only page opened), bad certificate and new listen refused")
    finally:
        await br.close()
        gw.stop()


SCENARIOS = {
    "reload_cert": scenario_reload_cert,
    "lobby_table": scenario_lobby_table,
    "relay": scenario_relay,
    "big": scenario_big,
    "close": scenario_close,
    "badpath": scenario_badpath,
    "garbage": scenario_garbage,
    "workers": scenario_workers,
    "shed": scenario_shed,
    "rotate": scenario_rotate,
}


def require_browser(*plugins):
    """Skip (or, when VCGATE_REQUIRE_PLUGINS names webtransport, fail)
    unless the plugins, chromium, node and playwright-core are here."""
    h.require_plugins(*plugins)
    required = "webtransport" in os.environ.get("VCGATE_REQUIRE_PLUGINS", "").split(",")
    missing = []
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        missing.append("%s (apt-get install chromium)" % chromium)
    if not shutil.which("node"):
        missing.append("node")
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        missing.append("playwright-core (npm install --prefix tests/integration)")
    if missing:
        msg = "browser test needs " + ", ".join(missing)
        if required:
            raise h.TestFailure(msg)
        raise h.Skip(msg)


def run_isolated(script, name, limit):
    """Run `script NAME` (a file whose __main__ calls run_main()) inside a
    private network namespace (`unshare -n`, loopback up) and fail unless
    it printed `ok - NAME`.  Its lines starting with `NAME:` are echoed.
    Without unshare or ip (or where a namespace cannot be made) it fails:
    these scenarios use fixed ports and must not run on the host's
    network."""
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    env = h.env_for_vcgate()
    env["WT_SCENARIO_TIMEOUT"] = str(limit - 10)
    if not shutil.which("unshare") or not shutil.which("ip"):
        raise h.TestFailure("unshare and ip are needed for a private network namespace")
    cmd = ["unshare", "-n", "sh", "-c",
           'ip link set lo up && exec "$0" "$1" "$2"', py, script, name]
    # Its own process group, so that a scenario that overruns is stopped
    # together with everything it started (vcgate, nats-server, node,
    # chromium) by that one group id.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=10)
        raise h.TestFailure("scenario %s did not finish within %ss; output:\n%s"
                            % (name, limit, (stdout + stderr)[-3000:]))
    out = stdout + stderr
    if proc.returncode != 0 or ("ok - " + name) not in stdout:
        raise h.TestFailure("scenario %s failed (exit %s):\n%s" % (name, proc.returncode, out[-5000:]))
    for line in stdout.splitlines():
        if line.startswith(name + ":"):
            print(line)


def run_main(scenarios):
    """Entry point of a scenario script: run scenarios[argv[1]] bounded by
    WT_SCENARIO_TIMEOUT and print `ok - NAME` or `not ok - NAME: reason`."""
    name = sys.argv[1]
    fn = scenarios[name]
    t0 = time.monotonic()
    try:
        asyncio.run(asyncio.wait_for(fn(), float(os.environ.get("WT_SCENARIO_TIMEOUT", "100"))))
    except BaseException as e:  # noqa: BLE001 - report everything, then fail
        if isinstance(e, asyncio.TimeoutError):
            e = h.TestFailure("scenario timed out")
        traceback.print_exc()
        print("not ok - %s: %s" % (name, str(e).splitlines()[0] if str(e) else type(e).__name__))
        h.stop_all_servers()
        sys.exit(1)
    h.cleanup_tmp()
    print("ok - %s (%.1fs)" % (name, time.monotonic() - t0))


def main():
    run_main(SCENARIOS)


if __name__ == "__main__":
    main()
