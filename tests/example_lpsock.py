#!/usr/bin/env python3
"""The example transport (contrib/example-transport/lpsock.c) relays
between a Unix-socket client and a WebSocket client.  Run by
tests/example-transport.test with the installed vcgate, its plugin
directory and the directory holding the freshly built lpsock.so.
Prints TAP."""
import asyncio
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
import harness  # noqa: E402

vcgate, plugdir, exdir = sys.argv[1:4]
results = []


def check(ok, what):
    results.append((bool(ok), what))
    print("%sok %d - %s" % ("" if ok else "not ", len(results), what), flush=True)


def lp_send(sock, b):
    sock.sendall(struct.pack(">I", len(b)) + b)


def lp_recv(sock, timeout=5):
    sock.settimeout(timeout)
    hdr = b""
    while len(hdr) < 4:
        c = sock.recv(4 - len(hdr))
        if not c:
            return None
        hdr += c
    n, = struct.unpack(">I", hdr)
    body = b""
    while len(body) < n:
        c = sock.recv(n - len(body))
        if not c:
            return None
        body += c
    return body


async def main(port, path):
    # A refusal reads the same as on WebSocket: "<status> <reason>".
    bad = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bad.connect(path)
    lp_send(bad, b"/lobby/bot/bad.room")
    m = lp_recv(bad)
    check(m is not None and m.startswith(b"400 "), "a bad room is refused with 400 (%r)" % m)
    check(lp_recv(bad) is None, "and the socket is closed")
    bad.close()

    lp = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lp.connect(path)
    lp_send(lp, b"/lobby/recorder/standup")
    first = harness.Packet(lp_recv(lp))
    check(first.packet_type == harness.PT_SESSION_ASSIGNED and first.session_id,
          "the socket client is assigned a session")
    second = harness.Packet(lp_recv(lp))
    check(second.packet_type == harness.PT_MEETING, "then told the meeting started")

    ws = await harness.Client.connect(port, "alice", "standup")
    payload = harness.encode_media(2, b"a" * 300)
    for i in range(20):
        await ws.send(harness.PT_MEDIA, payload)
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 20 and time.monotonic() < deadline:
        m = lp_recv(lp, 5)
        if m is None:
            break
        p = harness.Packet(m)
        if not p.from_system:
            got.append(p)
    check(len(got) == 20 and all(p.session_id == ws.session_id for p in got),
          "20 packets from the WebSocket client reach the socket client, stamped (%d)" % len(got))

    for i in range(20):
        lp_send(lp, harness.encode_wrapper(harness.PT_MEDIA, b"recorder", payload))
    back = await ws.collect(20, 5)
    check(len(back) == 20 and all(p.session_id == first.session_id for p in back),
          "20 packets from the socket client reach the WebSocket client, stamped (%d)" % len(back))
    lp.close()
    await ws.close()


def run():
    d = tempfile.mkdtemp(prefix="vcgate-lp-")
    port = harness.free_port()
    path = os.path.join(d, "lp.sock")
    conf = os.path.join(d, "vcgate.conf")
    with open(conf, "w") as f:
        f.write('core = { log_level = "info"; };\n'
                'transports = ( { plugin = "websocket"; listen = "127.0.0.1:%d"; },\n'
                '               { plugin = "lpsock"; socket = "%s"; } );\n'
                'bus = { plugin = "inproc"; };\n' % (port, path))
    env = dict(os.environ)
    env.pop("VCGATE_PLUGIN_PATH", None)
    out = subprocess.run([vcgate, "-p", exdir, "-p", plugdir, "-P", "lpsock"], env=env,
                         capture_output=True, text=True, timeout=20)
    check(out.returncode == 0 and 'socket = "/run/vcgate/lpsock"' in out.stdout,
          "vcgate -P lpsock prints the plugin's options")
    log = open(os.path.join(d, "log"), "w+")
    proc = subprocess.Popen([vcgate, "-c", conf, "-p", exdir, "-p", plugdir], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        if not harness.wait_until(lambda: os.path.exists(path), 10):
            check(False, "vcgate listens on the socket")
        else:
            time.sleep(0.2)
            asyncio.run(asyncio.wait_for(main(port, path), 40))
    finally:
        proc.terminate()
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        log.seek(0)
        text = log.read()
        check(rc == 0 and not harness.scan_sanitizer(text), "vcgate stops cleanly (exit %s)" % rc)
        if not all(ok for ok, _ in results):
            sys.stdout.write("".join("# " + l + "\n" for l in text.splitlines()[-40:]))
    print("1..%d" % len(results))
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(run())
