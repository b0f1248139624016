"""The README's browser page, as written, against vcgate's embedded default,
and WebTransport over IPv6.

test_readme_index_html_works_as_written: the HTML block that follows the
sentence naming `index.html` in README.md's WebTransport section is read
from README.md when the test runs (never copied here), served unchanged as
index.html on http://127.0.0.1:8000/ (as `python3 -m http.server 8000`
would), and opened in headless chromium while vcgate runs WITHOUT -c (the
embedded default: WebSocket on 127.0.0.1:8080, WebTransport on
127.0.0.1:4433).  The page's console must show "connected" and the two
first packets (SESSION_ASSIGNED, MEETING_STARTED) as "stream packet" lines;
then a WebSocket client joins the page's room (/lobby/bob/standup) and sends
a small packet (which must reach the page as a "datagram packet") and a
MEDIA packet (a "stream packet").  If the snippet does not work as written,
this test fails and says what the page did.

test_wt_ipv6_browser_and_ws_relay: the webtransport plugin listens on
[::1]:PORT only; chromium connects to https://[::1]:PORT/lobby/... with
serverCertificateHashes (the hash from cert_hash_file, which must equal the
one GET /.well-known/vcgate/webtransport gives, whose url must name
[::1]:PORT) and exchanges packets both ways with a WebSocket client in the
same room, each exactly once.

Both run inside a private network namespace (`unshare -n`, loopback up), so
the fixed ports of the embedded default are free and nothing but loopback
is reachable; chromium also gets the resolver rules and no-background-
networking flags of wt_browser.js.  The rule `MAP * ~NOTFOUND` also maps
the literal [::1] (chromium fails with net::ERR_NAME_NOT_RESOLVED), so the
IPv6 test sets WT_V6_LOOPBACK=1, which adds `EXCLUDE ::1` to the rules.
"""

import asyncio
import base64
import functools
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness as h  # noqa: E402
import wt_scenario as wts  # noqa: E402

README = os.path.join(h.TOP, "README.md")
PAGE_PORT = 8000
DEFAULT_WS = 8080
DEFAULT_WT = 4433


# ---------------------------------------------------------------- README

def readme_index_html(path=None):
    """The ```html block after the sentence that names `index.html` in the
    README's WebTransport section.  Raises TestFailure when the README no
    longer has one (the test must then be updated with the README)."""
    with open(path or README, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^###[^\n]*`webtransport`[^\n]*\n", text, re.M)
    if not m:
        raise h.TestFailure("README.md has no ### heading naming `webtransport`")
    start = m.end()
    nxt = re.search(r"^##", text[start:], re.M)
    section = text[start:start + nxt.start()] if nxt else text[start:]
    i = section.find("`index.html`")
    if i < 0:
        raise h.TestFailure("README.md's webtransport section does not mention `index.html`")
    block = re.search(r"^```html[ \t]*\n(.*?)^```[ \t]*$", section[i:], re.M | re.S)
    if not block:
        raise h.TestFailure("no ```html block follows `index.html` in README.md's "
                            "webtransport section")
    return block.group(1)


# ---------------------------------------------------------------- pieces

class PageServer:
    """http.server on 127.0.0.1:PORT serving one directory (what
    `python3 -m http.server PORT` does there), in a thread."""

    def __init__(self, directory, port):
        self.requests = []
        handler = functools.partial(_QuietHandler, directory=directory, log=self.requests)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, log=None, **kw):
        self._log = log
        super().__init__(*a, **kw)

    def log_message(self, fmt, *args):
        if self._log is not None:
            self._log.append(fmt % args)


def start_default_vcgate(timeout=10):
    """vcgate without -c (the embedded default), registered with the
    harness so that it is stopped (by PID) whatever happens."""
    h.require_plugins("inproc", "websocket", "webtransport")
    d = h.tmpdir("vcgate-readme-")
    log_path = os.path.join(d, "vcgate.log")
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen([h.vcgate_bin()], stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=h.env_for_vcgate())
    srv = h.Server(proc, log_path, None, [DEFAULT_WS], 5000)
    h._servers.append(srv)
    want = ["listening on ws://127.0.0.1:%d" % DEFAULT_WS,
            "listening on https://127.0.0.1:%d (webtransport, udp)" % DEFAULT_WT]
    if not h.wait_until(lambda: all(w in srv.log() for w in want) or not srv.alive(), timeout):
        srv.kill()
        raise h.TestFailure("vcgate (no -c) did not log %r within %ss:\n%s"
                            % (want, timeout, srv.log_tail()))
    srv.assert_alive()
    return srv


def console_packets(br, label):
    """(Packet, raw) of every console line `label <Uint8Array>`."""
    out = []
    for c in br.console:
        a = c.get("args") or []
        if len(a) >= 2 and a[0] == label and isinstance(a[1], dict) and "u8" in a[1]:
            raw = base64.b64decode(a[1]["u8"])
            out.append(h.Packet(raw))
    return out


def console_text(br, n=30):
    lines = ["  %s: %s" % (c.get("type"), c.get("text")) for c in br.console[-n:]]
    lines += ["  pageerror: %s" % e for e in br.page_errors]
    return "\n".join(lines) or "  (nothing)"


async def wait_console(br, pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise h.TestFailure("README page: no %s within %ss; page console:\n%s"
                                % (what, timeout, console_text(br)))
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- scenarios

async def scenario_readme():
    html = readme_index_html()
    srv = start_default_vcgate()
    pages = h.tmpdir("vcgate-readme-page-")
    with open(os.path.join(pages, "index.html"), "w", encoding="utf-8") as f:
        f.write(html)
    ps = PageServer(pages, PAGE_PORT)
    br = wts.Browser(os.path.join(os.path.dirname(srv.log_path), "browser.log"),
                     page_url="http://127.0.0.1:%d/" % PAGE_PORT, console=True)
    ws = None
    try:
        await br.start()
        await wait_console(br, lambda: any(c.get("text") == "connected" for c in br.console)
                           or br.page_errors, 15, '"connected"')
        if br.page_errors:
            raise h.TestFailure("README page threw: %s; console:\n%s"
                                % (br.page_errors[0], console_text(br)))
        await wait_console(br, lambda: len(console_packets(br, "stream packet")) >= 2,
                           10, "two `stream packet` lines")
        first = console_packets(br, "stream packet")[:2]
        types = sorted(p.packet_type for p in first)
        if types != sorted([h.PT_SESSION_ASSIGNED, h.PT_MEETING]):
            raise h.TestFailure("README page: first stream packets are %r, not "
                                "SESSION_ASSIGNED and MEETING_STARTED" % first)
        meeting = [p for p in first if p.packet_type == h.PT_MEETING][0]
        if h.decode_fields(meeting.data).get(1) != h.EV_MEETING_STARTED:
            raise h.TestFailure("README page: MEETING packet is not MEETING_STARTED: %r" % meeting)
        page_sid = [p for p in first if p.packet_type == h.PT_SESSION_ASSIGNED][0].session_id

        # Bob joins alice's room over WebSocket; a small packet reaches the
        # page as a datagram, a MEDIA packet on a stream.
        ws = await h.Client.connect(DEFAULT_WS, "bob", "standup")
        small = b"readme-small-key"
        media = h.encode_media(h.MT_AUDIO, b"readme-media-frame")
        await ws.send(h.PT_AES_KEY, small)
        await ws.send(h.PT_MEDIA, media)

        def got_dgram():
            return [p for p in console_packets(br, "datagram packet")
                    if p.packet_type == h.PT_AES_KEY and p.data == small]

        def got_stream():
            return [p for p in console_packets(br, "stream packet")
                    if p.packet_type == h.PT_MEDIA and p.data == media]
        await wait_console(br, lambda: got_dgram() and got_stream(), 10,
                           "`datagram packet` (AES_KEY) and `stream packet` (MEDIA) from bob")
        await asyncio.sleep(0.5)  # catch duplicates
        for what, got in (("datagram", got_dgram()), ("stream", got_stream())):
            if len(got) != 1:
                raise h.TestFailure("README page: bob's %s packet logged %d times" % (what, len(got)))
            p = got[0]
            if p.user_id != b"bob" or p.session_id != ws.session_id:
                raise h.TestFailure("README page: bob's %s packet has user %r session %d, "
                                    "want bob/%d" % (what, p.user_id, p.session_id, ws.session_id))
        if br.page_errors:
            raise h.TestFailure("README page threw: %s" % br.page_errors)
        if not any(r.startswith('"GET / ') for r in ps.requests):
            raise h.TestFailure("page server saw no GET /: %r" % ps.requests)
        srv.assert_alive()
        print("readme: README's index.html (%d bytes, read from README.md) on :%d; vcgate "
              "without -c; page logged connected, SESSION_ASSIGNED (session %d) and "
              "MEETING_STARTED on streams, bob's AES_KEY as a datagram and MEDIA on a stream"
              % (len(html), PAGE_PORT, page_sid))
    finally:
        if ws:
            await ws.close()
        # vcgate stops first, while the page is still there to answer its
        # 1001 close (a chromium that exits does not always tell the server,
        # whose drain then waits ~3 s for the silent peer).
        try:
            srv.stop()
        finally:
            await br.close()
            ps.close()


def _v6_udp_port():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        s.bind(("::1", 0))
        return s.getsockname()[1]
    except OSError as e:
        raise h.TestFailure("no IPv6 loopback in the namespace (bind [::1]: %s)" % e)
    finally:
        s.close()


async def scenario_ipv6():
    # The resolver rule MAP * ~NOTFOUND also catches the literal [::1]
    # (net::ERR_NAME_NOT_RESOLVED); wt_browser.js exempts it on request.
    os.environ["WT_V6_LOOPBACK"] = "1"
    port = _v6_udp_port()
    listen = "[::1]:%d" % port
    gw = wts.Gateway(wt_opts={"listen": listen})
    base = "https://[::1]:%d" % port
    gw.url = lambda user, room: "%s/lobby/%s/%s" % (base, user, room)
    br = wts.Browser(os.path.join(gw.dir, "browser.log"))
    ws = None
    try:
        if ("listening on https://%s (webtransport, udp)" % listen) not in gw.srv.log():
            raise h.TestFailure("vcgate did not log `listening on https://%s`:\n%s"
                                % (listen, gw.srv.log_tail()))
        with urllib.request.urlopen("http://127.0.0.1:%d/.well-known/vcgate/webtransport"
                                    % gw.ws_port, timeout=5) as r:
            info = json.loads(r.read().decode())
        if info.get("url") != base or info.get("lobby") != base + "/lobby":
            raise h.TestFailure("well-known answer %r does not name %s" % (info, base))
        wk_hash = info["serverCertificateHashes"][0]["value"]
        if wk_hash != gw.hash:
            raise h.TestFailure("well-known hash %s != cert_hash_file %s" % (wk_hash, gw.hash))
        await br.start()
        a = wts.WtSession(br, "a", "v6user", "v6room")
        await a.open(gw)
        ws = await h.Client.connect(gw.ws_port, "v4user", "v6room")
        n = 5
        want_a, want_ws = set(), set()
        for seq in range(n):
            t = wts.tag("a", "stream", seq)
            await a.send_stream(h.encode_wrapper(h.PT_MEDIA, b"v6user", h.encode_media(h.MT_VIDEO, t)))
            t2 = wts.tag("a", "dgram", seq)
            await a.send_dgram(h.encode_wrapper(h.PT_AES_KEY, b"v6user", t2))
            want_ws.update({t.decode(), t2.decode()})
            t = wts.tag("ws", "media", seq)
            await ws.send(h.PT_MEDIA, h.encode_media(h.MT_VIDEO, t))
            t2 = wts.tag("ws", "key", seq)
            await ws.send(h.PT_AES_KEY, t2)
            want_a.update({t.decode(), t2.decode()})
        await a.wait_for(lambda: len([1 for _, p in a.client_packets() if wts.untag(p)]) >= len(want_a),
                         10, "%d packets from the WebSocket client" % len(want_a))
        got_ws = await ws.collect(len(want_ws), 10, quiet=0.5)
        await a.poll()
        tags_a = [wts.untag(p) for _, p in a.client_packets() if wts.untag(p)]
        if len(tags_a) != len(set(tags_a)) or set(tags_a) != want_a:
            raise h.TestFailure("browser over IPv6: got %d (%d unique), want %d; missing %s, extra %s" % (
                len(tags_a), len(set(tags_a)), len(want_a), sorted(want_a - set(tags_a))[:5],
                sorted(set(tags_a) - want_a)[:5]))
        for ch, p in a.client_packets():
            want_ch = "stream" if p.packet_type == h.PT_MEDIA else "dgram"
            if ch != want_ch or p.session_id != ws.session_id:
                raise h.TestFailure("browser over IPv6: %r on %s (want %s, session %d)"
                                    % (p, ch, want_ch, ws.session_id))
        tags_ws = [wts.untag(p) for p in got_ws if wts.untag(p)]
        if len(tags_ws) != len(set(tags_ws)) or set(tags_ws) != want_ws:
            raise h.TestFailure("ws client: got %d (%d unique), want %d; missing %s, extra %s" % (
                len(tags_ws), len(set(tags_ws)), len(want_ws), sorted(want_ws - set(tags_ws))[:5],
                sorted(set(tags_ws) - want_ws)[:5]))
        if any(p.session_id != a.session_id for p in got_ws if wts.untag(p)):
            raise h.TestFailure("ws client: packets without the browser's session id %d" % a.session_id)
        print("ipv6: browser on https://[::1]:%d (hash from cert_hash_file == well-known) and a "
              "WebSocket client exchanged %d + %d packets, streams and datagrams, exactly once"
              % (port, len(want_ws), len(want_a)))
    finally:
        if ws:
            await ws.close()
        # Close the session before chromium exits: it does not always tell
        # the server, whose drain then waits ~3 s for the silent peer.
        if br.proc:
            try:
                await br.call("wtClose", "a", 0, "done", timeout=5)
            except Exception:  # noqa: BLE001 - teardown goes on regardless
                pass
        await br.close()
        gw.stop()


SCENARIOS = {"readme": scenario_readme, "ipv6": scenario_ipv6}


# ---------------------------------------------------------------- tests

@h.timeout(60)
def test_readme_index_html_works_as_written():
    # Fail at once (outside the namespace) if the README lost the snippet.
    readme_index_html()
    wts.require_browser("inproc", "websocket", "webtransport")
    wts.run_isolated(os.path.abspath(__file__), "readme", 55)


@h.timeout(60)
def test_wt_ipv6_browser_and_ws_relay():
    wts.require_browser("inproc", "websocket", "webtransport")
    wts.run_isolated(os.path.abspath(__file__), "ipv6", 55)


if __name__ == "__main__":
    wts.run_main(SCENARIOS)
