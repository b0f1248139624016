"""Attacks on what the core promises (issue 14), against the real binary
with a well-behaved pair of clients exchanging packets throughout:
never-dropped packet types cannot be used to fill another member's queue
(item 8).  Identity and session spoofing (item 1) are in
test_videocall_compat.py; the transports' own attacks in test_ws_*.py and
test_wt_flood.py."""

import asyncio
import re
import time
import urllib.request

import harness as H
from harness import Client, RawClient


def _queue_bytes(admin):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=3) as r:
        m = re.search(r"^vcgate_output_queue_bytes (\d+)", r.read().decode(), re.M)
    return int(m.group(1))


async def test_never_dropped_types_cannot_fill_a_slow_reader():
    admin = H.free_port()
    budget = 1 << 20
    srv = H.start_ws(core={"queue_max_bytes": budget, "slow_consumer_timeout": 60000,
                           "admin": {"listen": "127.0.0.1:%d" % admin}})
    # The pair talks in a room of its own, so the queue gauge below is the
    # slow reader's alone.
    alice = await Client.connect(srv.port, "alice", "quiet")
    bob = await Client.connect(srv.port, "bob", "quiet")
    mallory = await Client.connect(srv.port, "mallory", "attack")
    slow = RawClient.connect(srv.port, "/lobby/sloth/attack", rcvbuf=4096)
    assert slow.status == 101
    peak = [0]

    async def sample():
        while True:
            peak[0] = max(peak[0], _queue_bytes(admin))
            await asyncio.sleep(0.02)

    async def pair():
        """alice and bob keep talking; each must get every packet."""
        got = 0
        for i in range(200):
            await alice.send(H.PT_AES_KEY, b"pair %d" % i)
            p = await bob.recv_client(5)
            assert p.data == b"pair %d" % i, p
            got += 1
            await asyncio.sleep(0.005)
        return got

    sampler = asyncio.ensure_future(sample())
    try:
        pt = asyncio.ensure_future(pair())
        # 200 key packets of 64 KiB (12.8 MB) at the reader that never reads:
        # over 16 KiB they are bulk, dropped once the queue holds half the budget.
        for i in range(200):
            await mallory.send(H.PT_AES_KEY, b"k" * (64 << 10))
            if i % 10 == 9:
                await asyncio.sleep(0.01)
        assert await asyncio.wait_for(pt, 30) == 200, "the pair lost packets"
        await asyncio.sleep(0.3)
    finally:
        sampler.cancel()
    # What the slow reader's queue may hold: half the budget of bulk, plus
    # the never-dropped allowance (256 KiB); the kernel buffers are not in it.
    assert peak[0] <= budget // 2 + (256 << 10) + (64 << 10), \
        "the queue peaked at %d bytes with a %d-byte budget" % (peak[0], budget)
    srv.assert_alive()
    assert "sloth" not in srv.log() or "slow consumer" not in srv.log(), \
        "the slow reader was closed within the timeout: %s" % srv.log_tail()
    print("attack: 12.8 MB of 64 KiB 'key' packets at a slow reader: its queue peaked at %d "
          "bytes (budget %d), the pair got 200/200" % (peak[0], budget))
    for c in (alice, bob, mallory):
        await c.close()
    slow.close()
