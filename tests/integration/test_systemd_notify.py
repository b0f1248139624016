"""systemd's notify protocol against the real binary: a test plays the
service manager, binding the datagram socket that $NOTIFY_SOCKET names (a
path, and an abstract @name), and checks that vcgate says READY=1 only once
every worker's listeners accept, STOPPING=1 when SIGTERM starts the drain,
in that order, and nothing else."""

import os
import signal
import socket
import time

import harness as H


def _notify_socket(name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    # Python writes an abstract address as a leading NUL; systemd as '@'.
    s.bind("\0" + name[1:] if name.startswith("@") else name)
    return s


def _recv(sock, timeout):
    sock.settimeout(timeout)
    try:
        return sock.recv(4096).decode()
    except socket.timeout:
        return None


def _fields(msg):
    return dict(line.split("=", 1) for line in msg.splitlines() if line)


async def _sequence(name):
    H.require_plugins("inproc", "websocket")
    sock = _notify_socket(name)
    try:
        port = H.free_port()
        transports = [H.ws_transport(port)]
        wt = H.plugin_built("webtransport")
        if wt:
            transports.append({"plugin": "webtransport",
                               "listen": "127.0.0.1:%d" % H.free_port(socket.SOCK_DGRAM)})
        workers = 2
        # Debug logs show every worker's "listening on" line (worker 0's
        # alone are info), so the log proves what had started at READY.
        srv = H.start_vcgate(core={"workers": workers, "log_level": "debug"},
                             transports=transports, env={"NOTIFY_SOCKET": name}, wait_for=[])
        msg = _recv(sock, 10 if not H.SANITIZED else 30)
        assert msg is not None, "no notification within the start-up bound; log:\n" + srv.log_tail()
        # Look the instant READY arrives: it promises every listener serving.
        log = srv.log()
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        c = await H.Client.connect(port, "alice", "notify")
        f = _fields(msg)
        assert f.get("READY") == "1", "first notification is %r, not READY=1" % msg
        assert f.get("STATUS"), "READY carries no STATUS line: %r" % msg
        ws_lines = [l for l in log.splitlines() if "listening on ws://127.0.0.1:%d" % port in l]
        assert len(ws_lines) == workers, \
            "at READY %d of %d workers had logged their listener:\n%s" % (len(ws_lines), workers, log)
        if wt:
            assert sum("(webtransport, udp)" in l for l in log.splitlines()) >= 1, log
        assert " ready" in log, "READY was sent before the core logged `ready`:\n" + log
        assert _recv(sock, 0.3) is None, "a second notification before any signal"

        srv.signal(signal.SIGTERM)
        msg = _recv(sock, 5)
        assert msg is not None, "no notification after SIGTERM; log:\n" + srv.log_tail()
        f = _fields(msg)
        assert f.get("STOPPING") == "1", "after SIGTERM got %r, not STOPPING=1" % msg
        # STOPPING precedes the drain: the client is told to go away after.
        code = await c.expect_close(10)
        assert code == 1001, "client closed with %r during the drain, not 1001" % code
        rc = srv.wait_exit(srv.drain_ms / 1000.0 + 10)
        assert rc == 0, "vcgate exited with %r after SIGTERM" % rc
        extra = _recv(sock, 0.1)
        assert extra is None, "notification after STOPPING: %r" % extra
    finally:
        sock.close()


@H.timeout(60)
async def test_notify_ready_then_stopping_on_a_path_socket():
    d = H.tmpdir()
    await _sequence(os.path.join(d, "notify"))


@H.timeout(60)
async def test_notify_ready_then_stopping_on_an_abstract_socket():
    await _sequence("@vcgate-it-notify-%d-%d" % (os.getpid(), int(time.monotonic() * 1000)))
