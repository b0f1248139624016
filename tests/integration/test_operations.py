"""Operations (issue 12): the admin listener (/metrics checked by Debian's
promtool, /livez, /readyz, /version), SIGHUP reload (a broken file keeps the
old configuration serving, a lowered per-address limit applies to the next
connection, an option that needs a restart rejects the reload by name), and
the systemd notify sequence around a reload.  The real binary, real
clients, a real nats-server for /readyz."""

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import harness as H
from harness import Client


def _admin_gate(core=None, bus=None, ws_opts=None, **kw):
    core = dict(core or {})
    core.setdefault("log_level", "info")
    port = H.free_port()
    core["admin"] = {"listen": "127.0.0.1:%d" % port}
    ws = H.free_port()
    srv = H.start_vcgate(core=core, transports=[H.ws_transport(ws, **(ws_opts or {}))], bus=bus,
                         **kw)
    srv.admin = port
    srv.port = ws
    return srv


def _get(port, path, timeout=5):
    """(status, body text, content-type) of GET path on the admin port."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            return r.status, r.read().decode(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("content-type", "")


def _series(text):
    """{series (name with labels): value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def _promtool(text):
    tool = shutil.which("promtool")
    if not tool:
        raise H.TestFailure("promtool is not installed (apt-get install prometheus)")
    cp = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True,
                        timeout=30)
    return (cp.stdout + cp.stderr).strip()


async def test_metrics_lint_clean_and_bounded():
    srv = _admin_gate()
    st, text, ctype = _get(srv.admin, "/metrics")
    assert st == 200 and ctype.startswith("text/plain; version=0.0.4"), (st, ctype)
    out = _promtool(text)
    assert out == "", "promtool check metrics:\n" + out
    first = _series(text)
    for name in ("vcgate_build_info", "vcgate_rooms", "vcgate_output_queue_bytes",
                 "vcgate_relay_latency_seconds_count", "vcgate_bus_up",
                 'vcgate_sessions_closed_total{transport="websocket",code="1008"}',
                 'vcgate_packets_dropped_total{kind="video"}',
                 'vcgate_auth_failures_total{reason="expired"}',
                 'vcgate_config_reloads_total{result="failure"}'):
        assert any(k == name or k.startswith(name + "{") for k in first), "missing " + name
    # One member, then fifty rooms and users: the same series, none naming them.
    c = await Client.connect(srv.port, "u0", "r0")
    await c.send(H.PT_MEDIA, H.encode_media(H.MT_AUDIO, b"x"))
    one = _series(_get(srv.admin, "/metrics")[1])
    clients = [await Client.connect(srv.port, "user%d" % i, "room%d" % i) for i in range(50)]
    for k in clients:
        await k.send(H.PT_MEDIA, H.encode_media(H.MT_AUDIO, b"x"))
    await asyncio.sleep(0.3)
    text = _get(srv.admin, "/metrics")[1]
    fifty = _series(text)
    assert set(fifty) == set(one), "series changed: %r" % (set(fifty) ^ set(one))
    assert not re.search(r"user\d|room\d", text), "a user or room in the metrics"
    assert fifty['vcgate_sessions{transport="websocket"}'] == 51
    assert fifty["vcgate_rooms"] == 51
    for k in clients + [c]:
        await k.close()
    # Counters agree with the totals logged at exit.
    await asyncio.sleep(0.3)
    final = _series(_get(srv.admin, "/metrics")[1])
    srv.stop()
    m = re.search(r"totals: sessions (\d+) opened (\d+) refused .*packets (\d+) in", srv.log())
    assert m, srv.log_tail()
    opened = final['vcgate_sessions_opened_total{transport="websocket"}']
    rx = sum(v for k, v in final.items() if k.startswith("vcgate_packets_received_total"))
    assert (int(m.group(1)), int(m.group(3))) == (opened, rx), (m.groups(), opened, rx)


async def test_livez_readyz_version_and_drain():
    srv = _admin_gate(core={"drain_timeout": 4000, "drain_delay": 1000})
    assert _get(srv.admin, "/livez")[:2] == (200, "ok\n")
    st, body, _ = _get(srv.admin, "/readyz")
    assert st == 200 and json.loads(body)["status"] == "ok", body
    st, body, _ = _get(srv.admin, "/version")
    v = json.loads(body)
    assert st == 200 and v["abi"] == "1.2" and any(p["plugin"] == "websocket" for p in v["plugins"]), v
    assert _get(srv.admin, "/nope")[0] == 404
    # Bad requests get their status, not a hang or a crash.
    with socket.create_connection(("127.0.0.1", srv.admin), 3) as s:
        s.sendall(b"POST /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 405"), "POST is not 405"
    with socket.create_connection(("127.0.0.1", srv.admin), 3) as s:
        s.sendall(b"GET /metrics HTTP/2.0\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 505")
    # On SIGTERM /readyz is 503 at once; for drain_delay the clients are
    # still served (a load balancer's time to notice), then closed 1001.
    c = await Client.connect(srv.port, "alice", "drain")
    d = await Client.connect(srv.port, "bob", "drain")
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    deadline = t0 + 3
    st = None
    while time.monotonic() < deadline:
        st, body, _ = _get(srv.admin, "/readyz")
        if st == 503:
            break
        await asyncio.sleep(0.02)
    assert st == 503 and json.loads(body)["checks"]["draining"] == "draining", (st, body)
    assert _get(srv.admin, "/livez")[0] == 200
    await c.send(H.PT_MEDIA, b"during the delay")
    got = await d.recv_client(2)
    assert got.data == b"during the delay", got.data
    assert await c.expect_close(5) == 1001
    took = time.monotonic() - t0
    assert 0.9 < took < 3, "closed %.2f s after SIGTERM (drain_delay 1 s)" % took
    assert srv.log().count("drain_delay over: closing clients") == 1
    assert srv.wait_exit(10) == 0


def test_drain_delay_out_of_range_refused():
    """A drain_delay vcgate cannot honour is a file:line: error of -t."""
    H.require_plugins("inproc", "websocket")
    path = H.write_config(text=(
        "core = {\n"
        "  drain_delay = -1;\n"
        "};\n"
        "transports = ( { plugin = \"websocket\"; listen = \"127.0.0.1:%d\"; } );\n"
        "bus = { plugin = \"inproc\"; };\n") % H.free_port(), d=H.tmpdir())
    cp = H.run_vcgate(["-t", "-c", path])
    out = cp.stdout + cp.stderr
    assert cp.returncode != 0, out
    assert "%s:2: core.drain_delay: -1 is out of range [0, 600000]" % path in out, out


@H.timeout(90)
async def test_readyz_follows_nats():
    import test_nats as N
    port = H.free_port()
    nats = N.NatsServer(port=port)
    srv = _admin_gate(bus=N._nats_bus([nats.url], reconnect_wait=300))
    try:
        st, body, _ = _get(srv.admin, "/readyz")
        assert st == 503 and json.loads(body)["checks"]["bus"] == "down", (st, body)
        assert _series(_get(srv.admin, "/metrics")[1])["vcgate_bus_up"] == 0
        assert _get(srv.admin, "/livez")[0] == 200  # alive never depends on NATS
        nats.start()
        t0 = time.monotonic()
        assert H.wait_until(lambda: _get(srv.admin, "/readyz")[0] == 200, 5), \
            "not ready within 5 s of NATS starting; log:\n" + srv.log_tail()
        print("readyz: 200 %.2fs after nats-server started (reconnect_wait 300 ms)"
              % (time.monotonic() - t0))
        nats.kill()
        assert H.wait_until(lambda: _get(srv.admin, "/readyz")[0] == 503, 5)
        nats.start()
        assert H.wait_until(lambda: _get(srv.admin, "/readyz")[0] == 200, 5)
        m = _series(_get(srv.admin, "/metrics")[1])
        assert m["vcgate_bus_reconnects_total"] >= 1 and m["vcgate_bus_up"] == 1, m
    finally:
        srv.stop()
        nats.stop()


def _rewrite(srv, core=None, transports=None, text=None):
    """Write a new configuration over the running one's file."""
    if text is None:
        text = H.config_text(core, transports)
    with open(srv.conf_path, "w") as f:
        f.write(text)


def _reloaded(srv, count, what="reload: configuration applied", timeout=10):
    srv.signal(signal.SIGHUP)
    ok = H.wait_until(lambda: srv.log().count(what) >= count, timeout)
    assert ok, "no %r x%d; log:\n%s" % (what, count, srv.log_tail())


async def test_reload_broken_file_keeps_serving():
    srv = _admin_gate()
    core = {"log_level": "info", "admin": {"listen": "127.0.0.1:%d" % srv.admin}}
    ws = [H.ws_transport(srv.port)]
    c = await Client.connect(srv.port, "alice", "keep")
    with open(srv.conf_path, "a") as f:
        f.write("core = { max_connections = -5; };\n")  # a duplicate group, a bad value
    _reloaded(srv, 1, "reload failed: still serving")
    log = srv.log()
    assert re.search(r"reload failed: %s:\d+: " % re.escape(srv.conf_path), log), log[-2000:]
    # Still serving, with the old configuration, and the session lives on.
    d = await Client.connect(srv.port, "bob", "keep")
    await c.send(H.PT_AES_KEY, b"still here")
    assert (await d.recv_client(3)).data == b"still here"
    m = _series(_get(srv.admin, "/metrics")[1])
    assert m['vcgate_config_reloads_total{result="failure"}'] == 1
    # A good file then applies, and counts.
    _rewrite(srv, dict(core, log_level="debug"), ws)
    _reloaded(srv, 1)
    m = _series(_get(srv.admin, "/metrics")[1])
    assert m['vcgate_config_reloads_total{result="success"}'] == 1
    assert m["vcgate_config_last_reload_success_timestamp_seconds"] > time.time() - 30
    await c.close()
    await d.close()


async def test_reload_lowers_per_address_limit_for_the_next_connection():
    srv = _admin_gate(core={"trusted_addresses": [], "max_connections_per_ip": 5})
    core = {"log_level": "info", "admin": {"listen": "127.0.0.1:%d" % srv.admin},
            "trusted_addresses": []}
    ws = [H.ws_transport(srv.port)]
    held = [await Client.connect(srv.port, "u%d" % i, "lim") for i in range(3)]
    assert await H.connect_status(srv.port, "/lobby/u9/lim") == 101
    _rewrite(srv, dict(core, max_connections_per_ip=2), ws)
    _reloaded(srv, 1)
    assert await H.connect_status(srv.port, "/lobby/u8/lim") == 429
    # The sessions already open keep their slots and their traffic.
    await held[0].send(H.PT_AES_KEY, b"k")
    assert (await held[1].recv_client(3)).data == b"k"
    for c in held:
        await c.close()


async def test_reload_refuses_a_change_that_needs_a_restart():
    srv = _admin_gate()
    core = {"log_level": "info", "admin": {"listen": "127.0.0.1:%d" % srv.admin}, "workers": 2}
    _rewrite(srv, core, [H.ws_transport(srv.port)])
    _reloaded(srv, 1, "reload failed: still serving")
    assert "core.workers: changed from 1 to 2, which needs a restart" in srv.log(), srv.log_tail()
    _rewrite(srv, dict(core, workers=1), [H.ws_transport(H.free_port())])
    _reloaded(srv, 2, "reload failed: still serving")
    assert "transports[0].listen: changed from" in srv.log(), srv.log_tail()
    assert await H.connect_status(srv.port, "/lobby/a/b") == 101


def test_notify_sequence_around_a_reload():
    H.require_plugins("inproc", "websocket")
    d = H.tmpdir()
    path = os.path.join(d, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    try:
        srv = H.start_ws(env={"NOTIFY_SOCKET": path})
        seq = [sock.recv(4096).decode()]
        srv.signal(signal.SIGHUP)
        seq += [sock.recv(4096).decode(), sock.recv(4096).decode()]
        srv.signal(signal.SIGTERM)
        seq.append(sock.recv(4096).decode())
        keys = [[l.split("=")[0] for l in m.splitlines() if l and not l.startswith("STATUS")]
                for m in seq]
        assert keys == [["READY"], ["RELOADING", "MONOTONIC_USEC"], ["READY"], ["STOPPING"]], seq
        mono = int(dict(l.split("=", 1) for l in seq[1].splitlines())["MONOTONIC_USEC"])
        assert abs(mono - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 60_000_000
        assert srv.wait_exit(10) == 0
    finally:
        sock.close()
