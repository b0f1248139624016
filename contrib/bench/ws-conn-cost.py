#!/usr/bin/env python3
"""ws-conn-cost.py: what one WebSocket connection costs a running vcgate in
each phase of its life, as server RSS per connection (VmRSS growth over N
connections held at once).  loadgen's `connections` scenario measures the
established ws:// case under load-test conditions; this covers the others.

  ws-conn-cost.py --pid PID --port PORT [--tls CAFILE] [-n 1000] PHASE...

PHASE is one of
  request    ws:// sockets that sent half a request head (held by the
             transport until upgrade_timeout)
  tls-hello  wss:// sockets that sent nothing (lws and OpenSSL wait for the
             ClientHello, until upgrade_timeout)
  idle       upgraded connections that send nothing (ws://, or wss:// with
             --tls): python3-websockets clients in a room each
The server must allow N connections from loopback (the default trusts it)
and have an upgrade_timeout long enough for the run; run each phase on a
fresh server, as freed connections leave a heap the next phase reuses.
Prints one line per phase: connections held, RSS before and after, bytes
per connection.  `idle` needs python3-websockets (Debian's, under
/usr/bin/python3).
"""

import argparse
import asyncio
import os
import socket
import ssl
import sys
import time


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS for pid %d" % pid)


def settle(pid, secs=1.0):
    time.sleep(secs)
    return rss_kb(pid)


def hold_sockets(port, n, first_bytes):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if first_bytes:
            s.sendall(first_bytes)
        socks.append(s)
    return socks


async def hold_idle(port, n, cafile):
    import websockets
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    scheme = "wss" if ctx else "ws"
    conns = []
    for i in range(n):
        url = "%s://127.0.0.1:%d/lobby/u%d/cost%d" % (scheme, port, i, i // 10)
        conns.append(await websockets.connect(url, ssl=ctx, ping_interval=None,
                                              max_size=None, open_timeout=10))
    return conns


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls", metavar="CAFILE")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("phases", nargs="+", choices=["request", "tls-hello", "idle"])
    a = ap.parse_args()
    for phase in a.phases:
        before = settle(a.pid)
        if phase == "idle":
            loop = asyncio.new_event_loop()
            held = loop.run_until_complete(hold_idle(a.port, a.n, a.tls))
        else:
            first = (b"GET /lobby/cost/request HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     if phase == "request" else b"")
            held = hold_sockets(a.port, a.n, first)
        after = settle(a.pid)
        print("%-9s %5d held: RSS %d -> %d kB, %d bytes per connection"
              % (phase, len(held), before, after, (after - before) * 1024 // len(held)))
        sys.stdout.flush()
        if phase == "idle":
            for c in held:
                loop.run_until_complete(c.close())
            loop.close()
        else:
            for s in held:
                s.close()
        time.sleep(1)


if __name__ == "__main__":
    main()
