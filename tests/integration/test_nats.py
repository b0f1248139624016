"""Integration tests of the NATS bus (issue 4): several vcgate processes
joined by real nats-server processes (Debian's nats-server) on free loopback
ports.  Each test starts its own servers and stops them by PID in `finally`;
every wait is bounded.

What they prove:
  - three vcgates on one nats-server behave as one gateway: each WebSocket
    client receives every other member's packets exactly once, never its
    own, and rooms stay isolated (also with two workers per vcgate, each
    worker having its own NATS connection);
  - the same across a three-node NATS cluster (routes on loopback), each
    vcgate attached to a different node;
  - a NATS outage: local delivery never stops, cross-node delivery resumes
    after nats-server restarts on the same port, nothing crashes;
  - vcgate started while NATS is down connects in the background;
  - a packet over the server's max_payload is counted and logged, not fatal;
  - `vcgate -t` checks the plugin's options.
"""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import json

import harness as H
from harness import Client

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"

# Every nats-server started here, so a failing test can still stop them.
_nats = []


class NatsServer:
    """One nats-server process on a fixed loopback port (restartable on the
    same port), with an optional cluster block and max_payload."""

    def __init__(self, port=None, cluster_port=None, routes=(), max_payload=None,
                 name=None):
        self.port = port or H.free_port()
        self.http_port = H.free_port()
        self.cluster_port = cluster_port
        self.routes = list(routes)
        self.max_payload = max_payload
        self.name = name or "n%d" % self.port
        self.dir = H.tmpdir("vcgate-nats-")
        self.conf = os.path.join(self.dir, "nats.conf")
        self.log_path = os.path.join(self.dir, "nats.log")
        self.proc = None
        lines = ["server_name: %s" % self.name,
                 "listen: 127.0.0.1:%d" % self.port,
                 "http: 127.0.0.1:%d" % self.http_port]
        if max_payload is not None:
            lines.append("max_payload: %d" % max_payload)
        if cluster_port is not None:
            lines.append("cluster {\n  name: vcgtest\n  listen: 127.0.0.1:%d\n"
                         "  routes: [%s]\n}" % (cluster_port, ", ".join(
                             "nats-route://127.0.0.1:%d" % r for r in self.routes)))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def url(self):
        return "nats://127.0.0.1:%d" % self.port

    def start(self, timeout=10):
        if not os.access(NATS_SERVER, os.X_OK):
            raise H.Skip("nats-server is not installed (apt-get install nats-server)")
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([NATS_SERVER, "-c", self.conf],
                                         stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        finally:
            logf.close()
        if self not in _nats:
            _nats.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise H.TestFailure("nats-server exited with %s:\n%s"
                                    % (self.proc.returncode, self.log_tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                    s.settimeout(1)
                    if s.recv(4).startswith(b"INFO"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise H.TestFailure("nats-server did not accept on %d within %ss"
                            % (self.port, timeout))

    def kill(self):
        """SIGKILL: the outage case (no goodbye to the clients)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self in _nats:
            _nats.remove(self)

    def varz(self, what):
        with urllib.request.urlopen("http://127.0.0.1:%d/%s" % (self.http_port, what),
                                    timeout=2) as r:
            return json.loads(r.read().decode())

    def log_tail(self, n=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return ""


def _stop_nats():
    for n in list(_nats):
        n.stop()


def _cluster(n=3):
    ports = [H.free_port() for _ in range(n)]
    nodes = [NatsServer(cluster_port=ports[i], routes=[p for p in ports if p != ports[i]],
                        name="c%d" % i) for i in range(n)]
    for node in nodes:
        node.start()
    # Routes are up when every node sees the n-1 others.
    ok = H.wait_until(lambda: all(_num_routes(node) >= n - 1 for node in nodes), 15, 0.1)
    assert ok, "NATS cluster did not form: routes %r" % [_num_routes(x) for x in nodes]
    return nodes


def _num_routes(node):
    try:
        return node.varz("routez").get("num_routes", 0)
    except Exception:
        return 0


def _nats_bus(servers, **opts):
    bus = {"plugin": "nats", "servers": list(servers), "reconnect_wait": 200}
    bus.update(opts)
    return bus


def _start_gate(servers, workers=1, wait_connected=True, **bus_opts):
    H.require_plugins("nats", "websocket")
    port = H.free_port()
    srv = H.start_vcgate(core={"workers": workers, "log_level": "info"},
                         transports=[H.ws_transport(port)],
                         bus=_nats_bus(servers, **bus_opts))
    if wait_connected:
        _wait_log(srv, "connected to nats://", count=workers)
    return srv


def _wait_log(srv, text, count=1, timeout=15):
    ok = H.wait_until(lambda: srv.log().count(text) >= count or not srv.alive(), timeout)
    srv.assert_alive()
    assert ok, "vcgate log never showed %r x%d within %ss; tail:\n%s" % (
        text, count, timeout, srv.log_tail())


def _tag(room, user, seq):
    return ("%s|%s|%d" % (room, user, seq)).encode()


def _data_of(p):
    if p.packet_type == H.PT_MEDIA:
        return H.decode_fields(p.data).get(3, b"")
    return p.data


async def _mesh_ready(clients, timeout=15):
    """Every client of a room hears from every other one (subscriptions have
    reached every NATS node).  Markers start with b'ready|' and are ignored
    by the checks that follow."""
    rooms = {}
    for c in clients:
        rooms.setdefault(c.room, []).append(c)
    heard = {c.user: set() for c in clients}
    deadline = time.monotonic() + timeout

    async def listen(c):
        while time.monotonic() < deadline:
            want = {o.user for o in rooms[c.room] if o is not c}
            if want <= heard[c.user]:
                return
            try:
                p = await c.recv_client(0.2)
            except asyncio.TimeoutError:
                continue
            d = _data_of(p)
            if d.startswith(b"ready|"):
                heard[c.user].add(d.decode().split("|")[1])

    async def talk():
        while time.monotonic() < deadline:
            if all({o.user for o in rooms[c.room] if o is not c} <= heard[c.user]
                   for c in clients):
                return
            for c in clients:
                await c.send(H.PT_AES_KEY, b"ready|" + c.user.encode())
            await asyncio.sleep(0.25)

    await asyncio.gather(talk(), *(listen(c) for c in clients))
    missing = {c.user: sorted({o.user for o in rooms[c.room] if o is not c} - heard[c.user])
               for c in clients}
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, "mesh not ready after %ss: %r" % (timeout, missing)
    # Let stray markers arrive; the checks skip them anyway.
    await asyncio.sleep(0.3)


async def _relay_check(clients, nmsgs, timeout=30):
    """Each client sends nmsgs tagged MEDIA packets; each must receive every
    other room member's packets exactly once, in per-sender order, with the
    sender's session id, and nothing of its own or of another room."""
    by_user = {c.user: c for c in clients}
    members = {}
    for c in clients:
        members.setdefault(c.room, []).append(c.user)

    async def sender(c):
        for i in range(nmsgs):
            await c.send(H.PT_MEDIA, H.encode_media(H.MT_AUDIO, _tag(c.room, c.user, i)))
            if i % 10 == 9:
                await asyncio.sleep(0.01)

    async def receiver(c):
        want = (len(members[c.room]) - 1) * nmsgs
        got = []
        end = time.monotonic() + timeout
        quiet_end = None
        while True:
            now = time.monotonic()
            if len(got) >= want and quiet_end is None:
                quiet_end = now + 0.7  # keep listening for duplicates
            limit = quiet_end if quiet_end is not None else end
            if now >= limit:
                return got
            try:
                p = await c.recv_client(limit - now)
            except asyncio.TimeoutError:
                return got
            if not _data_of(p).startswith(b"ready|"):
                got.append(p)

    tasks = [asyncio.ensure_future(receiver(c)) for c in clients]
    await asyncio.gather(*(sender(c) for c in clients))
    results = await asyncio.gather(*tasks)

    problems = []
    for c, got in zip(clients, results):
        seen = {}
        for p in got:
            try:
                room, user, seq = _data_of(p).decode().split("|")
                seq = int(seq)
            except ValueError:
                problems.append("%s: unexpected packet %r" % (c.user, p))
                continue
            if user == c.user:
                problems.append("%s received its own packet %d" % (c.user, seq))
            elif room != c.room:
                problems.append("%s (room %s) received a packet of room %s"
                                % (c.user, c.room, room))
            else:
                if p.session_id != by_user[user].session_id:
                    problems.append("%s: %s#%d has session_id %d, not %d" % (
                        c.user, user, seq, p.session_id, by_user[user].session_id))
                seen.setdefault(user, []).append(seq)
        for user, seqs in seen.items():
            if len(seqs) != len(set(seqs)):
                problems.append("%s: %d duplicates from %s"
                                % (c.user, len(seqs) - len(set(seqs)), user))
            if seqs != sorted(seqs):
                problems.append("%s: packets of %s out of order" % (c.user, user))
        for u in members[c.room]:
            if u == c.user:
                continue
            missing = set(range(nmsgs)) - set(seen.get(u, []))
            if missing:
                problems.append("%s missed %d packets of %s" % (c.user, len(missing), u))
    assert not problems, "%d relay problems:\n%s" % (len(problems), "\n".join(problems[:25]))


async def _spread_clients(gates, nrooms, per_room):
    """per_room clients in each of nrooms rooms, client i of a room on gate
    i % len(gates)."""
    specs = [(gates[i % len(gates)].port, "u%d-%d" % (r, i), "room%d" % r)
             for r in range(nrooms) for i in range(per_room)]
    return await asyncio.gather(*(Client.connect(p, u, room) for p, u, room in specs))


async def _close_all(clients):
    await asyncio.gather(*(c.close() for c in clients))


async def _teardown(clients, gates, servers):
    """Close the clients, then stop the gates, then the NATS servers."""
    await _close_all(clients)
    for g in gates:
        g.stop()
    for n in servers:
        n.stop()


# ------------------------------------------------------------------ tests

@H.timeout(90)
async def test_three_gates_one_server_exactly_once():
    nats = NatsServer().start()
    gates = []
    clients = []
    try:
        # Two workers per gate: every worker has its own NATS connection, so
        # the bus also joins the workers of one process.
        gates = [_start_gate([nats.url], workers=2) for _ in range(3)]
        clients = await _spread_clients(gates, nrooms=3, per_room=6)
        await _mesh_ready(clients)
        before = nats.varz("varz")["in_msgs"]
        await _relay_check(clients, nmsgs=30)
        # Every packet went to NATS once (the relay check proved nobody got
        # one twice, so the core did not also deliver these in-process).
        sent = nats.varz("varz")["in_msgs"] - before
        assert sent >= len(clients) * 30, "NATS saw only %d publications" % sent
        for g in gates:
            g.assert_alive()
    finally:
        await _teardown(clients, gates, [nats])


@H.timeout(120)
async def test_batch_mode_exactly_once_and_fewer_messages():
    """batch = true: a worker packs a loop turn's packets of a room into one
    NATS message on vcgate.{room}; every member still gets every packet
    exactly once, in order per sender, and NATS carries fewer messages than
    packets."""
    nats = NatsServer().start()
    gates = []
    clients = []
    try:
        gates = [_start_gate([nats.url], batch=True) for _ in range(2)]
        clients = await _spread_clients(gates, nrooms=2, per_room=6)
        await _mesh_ready(clients)
        before = nats.varz("varz")["in_msgs"]
        await _relay_check(clients, nmsgs=40)
        msgs = nats.varz("varz")["in_msgs"] - before
        packets = len(clients) * 40
        print("batch: %d packets crossed in %d NATS messages" % (packets, msgs))
        assert 0 < msgs < packets, "batching did not reduce messages: %d for %d" % (msgs, packets)
        for g in gates:
            g.assert_alive()
    finally:
        await _teardown(clients, gates, [nats])


@H.timeout(120)
async def test_three_node_cluster_one_gate_per_node():
    nodes = []
    gates = []
    clients = []
    try:
        nodes = _cluster(3)
        # Each gate knows only its own node, so traffic must cross routes.
        gates = [_start_gate([n.url]) for n in nodes]
        clients = await _spread_clients(gates, nrooms=2, per_room=6)
        await _mesh_ready(clients, timeout=20)
        await _relay_check(clients, nmsgs=30)
        # The traffic really crossed the routes.
        routed = sum(r.get("in_msgs", 0) for n in nodes for r in n.varz("routez").get("routes", []))
        assert routed > 0, "no message crossed a cluster route"
        for g in gates:
            g.assert_alive()
    finally:
        await _teardown(clients, gates, nodes)


async def _until_received(sender, receiver, label, timeout):
    """Send `label` markers from sender every 0.2 s until receiver gets one;
    return the seconds it took."""
    t0 = time.monotonic()
    tag = ("probe|%s|" % label).encode()
    n = 0
    while time.monotonic() - t0 < timeout:
        await sender.send(H.PT_AES_KEY, tag + str(n).encode())
        n += 1
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            try:
                p = await receiver.recv_client(max(0.01, end - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if _data_of(p).startswith(tag):
                return time.monotonic() - t0
    raise AssertionError("%s never reached %s within %ss" % (label, receiver.user, timeout))


@H.timeout(120)
async def test_nats_restart_local_continues_remote_resumes():
    nats = NatsServer().start()
    gates = []
    clients = []
    try:
        gates = [_start_gate([nats.url]) for _ in range(2)]
        a1, a2 = await asyncio.gather(Client.connect(gates[0].port, "a1", "r"),
                                      Client.connect(gates[0].port, "a2", "r"))
        b1 = await Client.connect(gates[1].port, "b1", "r")
        clients = [a1, a2, b1]
        await _until_received(a1, b1, "before", 10)

        nats.kill()
        for g in gates:
            _wait_log(g, "disconnected from NATS")
        # Local delivery never stops: every packet a1 sends reaches a2 at
        # once, in order, during the whole outage.
        for i in range(20):
            data = ("local|%d" % i).encode()
            await a1.send(H.PT_AES_KEY, data)
            p = await a2.recv_client(2)
            while _data_of(p).startswith(b"probe|"):
                p = await a2.recv_client(2)
            assert _data_of(p) == data, "a2 got %r instead of %r during the outage" % (p, data)
            await asyncio.sleep(0.05)

        nats.start()  # same port
        for g in gates:
            _wait_log(g, "reconnected to nats://")
        took = await _until_received(a1, b1, "after", 15)
        await _until_received(b1, a2, "after-back", 15)
        for g in gates:
            g.assert_alive()
        print("# cross-node delivery resumed %.2fs after reconnect" % took)
    finally:
        await _teardown(clients, gates, [nats])


@H.timeout(90)
async def test_start_while_nats_down_connects_in_background():
    nats = NatsServer()  # not started yet
    gates = []
    clients = []
    try:
        gates = [_start_gate([nats.url], wait_connected=False) for _ in range(2)]
        for g in gates:
            _wait_log(g, "NATS not reachable yet")
        a1, a2 = await asyncio.gather(Client.connect(gates[0].port, "a1", "r"),
                                      Client.connect(gates[0].port, "a2", "r"))
        b1 = await Client.connect(gates[1].port, "b1", "r")
        clients = [a1, a2, b1]
        await _until_received(a1, a2, "local-first", 5)
        nats.start()
        for g in gates:
            _wait_log(g, "connected to nats://")
        await _until_received(a1, b1, "cross", 15)
        await _until_received(b1, a2, "cross-back", 15)
    finally:
        await _teardown(clients, gates, [nats])


@H.timeout(90)
async def test_packet_over_max_payload_reported_not_fatal():
    nats = NatsServer(max_payload=2048).start()
    gates = []
    clients = []
    try:
        gates = [_start_gate([nats.url]) for _ in range(2)]
        a1, a2 = await asyncio.gather(Client.connect(gates[0].port, "a1", "r"),
                                      Client.connect(gates[0].port, "a2", "r"))
        b1 = await Client.connect(gates[1].port, "b1", "r")
        clients = [a1, a2, b1]
        await _until_received(a1, b1, "warmup", 10)
        big = b"big|" + b"x" * 6000
        await a1.send(H.PT_AES_KEY, big)
        p = await a2.recv_client(5)  # local delivery is unaffected
        while _data_of(p).startswith(b"probe|"):
            p = await a2.recv_client(5)
        assert _data_of(p) == big, "a2 did not get the large packet locally"
        _wait_log(gates[0], "exceeds the NATS max_payload")
        assert "max_payload (2048 bytes)" in gates[0].log(), gates[0].log_tail()
        # Not fatal: small packets still cross, and the big one never did.
        await _until_received(a1, b1, "after", 10)
        got = []
        while True:
            try:
                got.append(await b1.recv_client(0.5))
            except asyncio.TimeoutError:
                break
        assert not any(_data_of(x).startswith(b"big|") for x in got), \
            "b1 received the oversize packet"
        for g in gates:
            g.assert_alive()
    finally:
        await _teardown(clients, gates, [nats])


def test_check_config_nats_options():
    H.require_plugins("nats", "websocket")
    port = H.free_port()
    good = H.write_config(core={}, transports=[H.ws_transport(port)],
                          bus=_nats_bus(["nats://127.0.0.1:1", "nats://127.0.0.1:2"],
                                        connection_name="gw", max_reconnect=-1, pending_bytes=1 << 20,
                                        connect_timeout=500))
    cp = H.run_vcgate(["-t", "-c", good])
    assert cp.returncode == 0, "good nats config refused: %s" % (cp.stdout + cp.stderr)

    for bad, word in (({"bogus": 1}, "bogus"),
                      ({"reconnect_wait": -5}, "reconnect_wait"),
                      ({"tls_cert": "/x.pem"}, "tls_"),
                      ({"user": "u"}, "password"),
                      ({"token": "t", "user": "u", "password": "p"}, "token")):
        path = H.write_config(core={}, transports=[H.ws_transport(port)],
                              bus=_nats_bus(["nats://127.0.0.1:1"], **bad))
        cp = H.run_vcgate(["-t", "-c", path])
        out = cp.stdout + cp.stderr
        assert cp.returncode != 0, "bad nats option %r accepted" % (bad,)
        assert word in out, "error for %r does not name %r: %s" % (bad, word, out)


# Make sure no nats-server outlives this module even if a test body failed
# before its own finally could run (the runner imports us once).
import atexit  # noqa: E402
atexit.register(_stop_nats)
