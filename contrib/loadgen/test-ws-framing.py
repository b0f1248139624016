#!/usr/bin/env python3
"""Self-test of loadgen's WebSocket client against an awkward relay.

A small asyncio relay (same path and forwarding rule as vcgate) that makes
the client's life hard: every forwarded message is split into 1-4 frames
(binary + continuation frames), the bytes are written in small pieces with
flushes in between (so frames arrive split across reads), a PING is put
between the fragments of every few messages (loadgen must answer PONG and
keep going), and 16-bit and 64-bit frame lengths are exercised with bigger
packets.
loadgen must report zero lost / duplicated / misrouted packets.

    contrib/loadgen/test-ws-framing.py [path/to/loadgen]

Prints `ok - ...` / `not ok - ...` lines and exits non-zero on failure.
Bounded: the relay stops after loadgen exits (at most 60 s).
"""
import asyncio, base64, hashlib, json, os, random, struct, subprocess, sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
rooms = {}
pongs = 0


def frame(op, payload, fin=True):
    n = len(payload)
    b0 = (0x80 if fin else 0) | op
    if n < 126:
        h = struct.pack("!BB", b0, n)
    elif n < 65536:
        h = struct.pack("!BBH", b0, 126, n)
    else:
        h = struct.pack("!BBQ", b0, 127, n)
    return h + payload


async def read_frame(r):
    b0, b1 = await r.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await r.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await r.readexactly(8))
    mask = await r.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
    raw = await r.readexactly(n)
    m = (mask * (n // 4 + 1))[:n]
    data = (int.from_bytes(raw, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big") if n else b""
    return b0 & 0x80, b0 & 0x0F, data


async def send_awkward(w, msg, rnd):
    parts = rnd.randint(1, 4)
    cuts = sorted(rnd.sample(range(1, len(msg)), parts - 1)) if len(msg) > parts else []
    pieces, prev = [], 0
    for c in cuts + [len(msg)]:
        pieces.append(msg[prev:c])
        prev = c
    frames = [frame(0x2 if i == 0 else 0x0, p, i == len(pieces) - 1) for i, p in enumerate(pieces)]
    if rnd.random() < 0.2:
        # A control frame may come between the fragments of a message.
        frames.insert(rnd.randint(0, len(frames)), frame(0x9, b"ping!"))
    raw = b"".join(frames)
    while raw:
        k = rnd.randint(1, 700 if len(msg) < 5000 else 9000)
        w.write(raw[:k])
        raw = raw[k:]
        await w.drain()


async def handle(r, w):
    global pongs
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    path = lines[0].split(" ")[1]
    parts = path.split("/")
    if len(parts) != 4 or parts[1] != "lobby":
        w.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await w.drain()
        w.close()
        return
    key = [l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("sec-websocket-key:")][0]
    acc = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    w.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n\r\n" % acc).encode())
    room = rooms.setdefault(parts[3], [])
    me = (w, asyncio.Lock(), random.Random(len(room)))
    room.append(me)
    try:
        while True:
            fin, op, data = await read_frame(r)
            if op == 0xA:
                pongs += 1
                continue
            if op == 0x8:
                w.write(frame(0x8, data[:2]))
                break
            if op == 0x2:
                for peer in list(room):
                    if peer is not me:
                        async with peer[1]:
                            await send_awkward(peer[0], data, peer[2])
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        room.remove(me)
        w.close()


async def main():
    lg = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "loadgen")
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    failures = 0
    for size, rate in ((200, 20), (1000, 20), (70000, 4)):
        proc = await asyncio.create_subprocess_exec(
            lg, "--url", "ws://127.0.0.1:%d" % port, "--scenario", "meeting", "--rooms", "3",
            "--participants", "4", "--rate", str(rate), "--size", str(size), "--duration", "2",
            "--warmup", "0.5", "--quiet", "--max-seconds", "50", stdout=subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        try:
            d = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            d = {}
        ok = (d.get("delivered", 0) > 0 and d.get("lost") == 0 and d.get("duplicated") == 0
              and d.get("misrouted") == 0 and d.get("foreign") == 0 and proc.returncode == 0)
        failures += not ok
        print("%s - %d-byte packets through fragmented, split frames with pings: delivered %s, lost %s, dup %s" %
              ("ok" if ok else "not ok", size, d.get("delivered"), d.get("lost"), d.get("duplicated")))
    ok = pongs > 0
    failures += not ok
    print("%s - loadgen answered %d pings with pongs" % ("ok" if ok else "not ok", pongs))
    srv.close()
    return failures


sys.exit(1 if asyncio.run(main()) else 0)
