"""Helpers for vcgate's integration tests.

The tests start the real build-tree binary (core/vcgate) on free loopback
ports and talk to it with real WebSocket clients (Debian's python3-websockets,
10.4 on Debian 12) or, where a test needs to misbehave at the byte level, with
a raw socket.  Everything here is bounded in time: every wait has a timeout.

Environment:
  VCGATE_BIN          the binary to run (default TOP/core/vcgate, or
                      VCGATE_BUILD_DIR/core/vcgate)
  VCGATE_BUILD_DIR    the build tree (default TOP); a VPATH build such as
                      _build-asan keeps its plugins under it
  VCGATE_PLUGIN_PATH  extra plugin directories, searched before the build
                      tree's plugins/*/.libs
  VCGATE_SANITIZED    set to 1 when the binary is an ASan/UBSan build (loosens
                      memory bounds, which ASan's shadow memory inflates)
  VCGATE_REQUIRE_PLUGINS  comma-separated plugins whose absence fails a test
                      instead of skipping it (CI installs their dependencies)
  VCGATE_KEEP_LOGS    keep every temporary directory, even after a pass
"""

import asyncio
import atexit
import base64
import glob
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.environ.get("VCGATE_BUILD_DIR", TOP))

SYSTEM_USER = b"system-&^%$#@!"
SANITIZED = os.environ.get("VCGATE_SANITIZED", "") not in ("", "0")

# PacketWrapper.packet_type (PROTOCOL.md).
PT_UNKNOWN = 0
PT_RSA_PUB_KEY = 1
PT_AES_KEY = 2
PT_MEDIA = 3
PT_CONNECTION = 4
PT_DIAGNOSTICS = 5
PT_HEALTH = 6
PT_MEETING = 7
PT_SESSION_ASSIGNED = 8
PT_CONGESTION = 9

# MediaPacket.media_type (PROTOCOL.md).
MT_UNKNOWN = 0
MT_VIDEO = 1
MT_AUDIO = 2
MT_SCREEN = 3
MT_HEARTBEAT = 4
MT_RTT = 5
MT_KEYFRAME_REQUEST = 6

# MeetingPacket.event_type.
EV_MEETING_STARTED = 1

SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "runtime error:",
                      "LeakSanitizer", "ERROR: UndefinedBehaviorSanitizer")


class Skip(Exception):
    """Raised by a test that cannot run here (e.g. a plugin is not built)."""


class TestFailure(AssertionError):
    pass


# Every vcgate process started by the harness, so that the runner can stop
# whatever a failed or timed-out test left behind.
_servers = []
# Temporary directories of this run, removed by cleanup_tmp() after a pass.
_tmpdirs = []


# ------------------------------------------------------------------ paths

def vcgate_bin():
    b = os.environ.get("VCGATE_BIN")
    if b:
        return b
    return os.path.join(BUILD, "core", "vcgate")


def plugin_dirs():
    dirs = []
    env = os.environ.get("VCGATE_PLUGIN_PATH")
    if env:
        dirs.extend(d for d in env.split(":") if d)
    dirs.extend(sorted(glob.glob(os.path.join(BUILD, "plugins", "*", ".libs"))))
    return dirs


def plugin_path():
    return ":".join(plugin_dirs())


def plugin_built(name):
    for d in plugin_dirs():
        if os.path.exists(os.path.join(d, name + ".so")):
            return True
    return False


def require_plugins(*names):
    """Skip the test unless the binary and every named plugin are built."""
    b = vcgate_bin()
    if not os.access(b, os.X_OK):
        raise TestFailure("vcgate binary not found or not executable: %s "
                          "(build first: autoreconf -fi && ./configure && make)" % b)
    required = [x for x in os.environ.get("VCGATE_REQUIRE_PLUGINS", "").split(",") if x]
    for n in names:
        if not plugin_built(n):
            if n in required:
                raise TestFailure("plugin %s.so not built (searched %s) but "
                                  "VCGATE_REQUIRE_PLUGINS names it" % (n, plugin_path()))
            raise Skip("plugin %s.so not built (searched %s)" % (n, plugin_path()))


def tmpdir(prefix="vcgate-it-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


def cleanup_tmp():
    if os.environ.get("VCGATE_KEEP_LOGS"):
        return
    while _tmpdirs:
        shutil.rmtree(_tmpdirs.pop(), ignore_errors=True)


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def env_for_vcgate(extra=None):
    env = dict(os.environ)
    env["VCGATE_PLUGIN_PATH"] = plugin_path()
    # Sanitizer settings for an ASan build; harmless otherwise.
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    # The one leak inside libconfig, suppressed by name (tests/lsan.supp).
    env.setdefault("LSAN_OPTIONS", "suppressions=%s:print_suppressions=0"
                   % os.path.join(TOP, "tests", "lsan.supp"))
    if extra:
        env.update(extra)
    return env


# ------------------------------------------------------------------ config

def _cfg_value(v, indent):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if v > 2**31 - 1 or v < -2**31:
            return "%dL" % v
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_cfg_value(x, indent) for x in v) + "]"
    if isinstance(v, dict):
        return _cfg_group(v, indent)
    if isinstance(v, Raw):
        return v.text
    raise TypeError("cannot write %r to libconfig" % (v,))


class Raw:
    """A value written verbatim into the config (for deliberately bad input)."""

    def __init__(self, text):
        self.text = text


def _cfg_group(d, indent=0):
    pad = "  " * (indent + 1)
    lines = ["{"]
    for k, v in d.items():
        lines.append("%s%s = %s;" % (pad, k, _cfg_value(v, indent + 1)))
    lines.append("  " * indent + "}")
    return "\n".join(lines)


def config_text(core=None, transports=None, bus=None):
    """libconfig text from a dict of core options, a list of transport
    groups and a bus group (default: inproc)."""
    out = []
    out.append("core = " + _cfg_group(core or {}) + ";")
    if transports is not None:
        out.append("transports = (\n" +
                   ",\n".join("  " + _cfg_group(t, 1) for t in transports) +
                   "\n);")
    out.append("bus = " + _cfg_group(bus or {"plugin": "inproc"}) + ";")
    return "\n".join(out) + "\n"


def write_config(core=None, transports=None, bus=None, text=None, d=None):
    d = d or tmpdir()
    path = os.path.join(d, "vcgate.conf")
    with open(path, "w") as f:
        f.write(text if text is not None else config_text(core, transports, bus))
    return path


def ws_transport(port, **opts):
    t = {"plugin": "websocket", "listen": "127.0.0.1:%d" % port}
    t.update(opts)
    return t


# ------------------------------------------------------------------ process

def scan_sanitizer(text):
    for p in SANITIZER_PATTERNS:
        i = text.find(p)
        if i >= 0:
            return text[max(0, i - 200):i + 3000]
    return None


def run_vcgate(args, timeout=20, env=None):
    """Run vcgate to completion (e.g. -t, -V); returns CompletedProcess with
    text stdout/stderr.  A sanitizer report fails the test."""
    cp = subprocess.run([vcgate_bin()] + list(args), capture_output=True,
                        text=True, timeout=timeout, env=env_for_vcgate(env),
                        stdin=subprocess.DEVNULL)
    rep = scan_sanitizer(cp.stdout + cp.stderr)
    if rep:
        raise TestFailure("sanitizer report from vcgate %s:\n%s" % (" ".join(args), rep))
    return cp


class Server:
    """A running vcgate process.  stderr and stdout go to log_path."""

    def __init__(self, proc, log_path, conf_path, ports, drain_ms):
        self.proc = proc
        self.pid = proc.pid
        self.log_path = log_path
        self.conf_path = conf_path
        self.ports = ports
        self.port = ports[0] if ports else None
        self.drain_ms = drain_ms
        self.stopped = False
        self.terminated = False  # the test sent SIGTERM itself

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])

    def alive(self):
        return self.proc.poll() is None

    def rss_kb(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise TestFailure("no VmRSS for pid %d" % self.pid)

    def assert_alive(self):
        if not self.alive():
            raise TestFailure("vcgate exited unexpectedly with code %s; log tail:\n%s"
                              % (self.proc.returncode, self.log_tail()))

    def signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT):
            self.terminated = True
        if self.alive():
            os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, check=True, timeout=None):
        """SIGTERM, then SIGKILL after a bound.  With check, fail the test if
        the process had died already, needed SIGKILL, exited non-zero, or
        printed a sanitizer report."""
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        if self in _servers:
            _servers.remove(self)
        problems = []
        if not self.alive():
            if not self.terminated:
                problems.append("vcgate had exited before stop with code %s"
                                % self.proc.returncode)
            elif self.proc.returncode != 0:
                problems.append("vcgate exited with code %s after SIGTERM"
                                % self.proc.returncode)
        else:
            os.kill(self.pid, signal.SIGTERM)
            bound = timeout if timeout is not None else self.drain_ms / 1000.0 + 5
            if self.wait_exit(bound) is None:
                problems.append("vcgate did not exit within %.1fs of SIGTERM "
                                "(killed)" % bound)
                self.proc.kill()
                self.proc.wait(timeout=10)
            elif self.proc.returncode != 0:
                problems.append("vcgate exited with code %s after SIGTERM"
                                % self.proc.returncode)
        rep = scan_sanitizer(self.log())
        if rep:
            problems.insert(0, "sanitizer report in vcgate log %s:\n%s"
                            % (self.log_path, rep))
        if check and problems:
            raise TestFailure("; ".join(problems) +
                              ("" if rep else "\nlog tail:\n" + self.log_tail()))
        return self.proc.returncode

    def kill(self):
        self.stopped = True
        if self in _servers:
            _servers.remove(self)
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_vcgate(core=None, transports=None, bus=None, conf_path=None,
                 args=(), wait_for=None, timeout=10, env=None):
    """Start vcgate with a config written from the arguments (or conf_path)
    and wait until the log shows `listening on ...:PORT` for every transport
    with a `listen` key (or every string in wait_for).  Returns a Server."""
    require_plugins()
    d = tmpdir()
    if conf_path is None:
        conf_path = write_config(core, transports, bus, d=d)
    log_path = os.path.join(d, "vcgate.log")
    ports = []
    for t in transports or []:
        lst = t.get("listen")
        if isinstance(lst, str):
            ports.append(int(lst.rsplit(":", 1)[1]))
    if wait_for is None:
        wait_for = [":%d" % p for p in ports]
    drain_ms = (core or {}).get("drain_timeout", 5000)
    logf = open(log_path, "wb")
    try:
        proc = subprocess.Popen([vcgate_bin(), "-c", conf_path] + list(args),
                                stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env_for_vcgate(env))
    finally:
        logf.close()
    srv = Server(proc, log_path, conf_path, ports, drain_ms)
    _servers.append(srv)
    deadline = time.monotonic() + timeout
    while True:
        text = srv.log()
        listening = [l for l in text.splitlines() if "listening on" in l]
        # "[core] ready" comes after the signal handlers are installed; a
        # SIGTERM between "listening on" and them would kill vcgate.
        if all(any(w in l for l in listening) for w in wait_for) and "[core] ready" in text:
            return srv
        if not srv.alive():
            srv.stop(check=False)
            raise TestFailure("vcgate exited with code %s during start-up; log tail:\n%s"
                              % (srv.proc.returncode, srv.log_tail()))
        if time.monotonic() > deadline:
            srv.kill()
            raise TestFailure("vcgate did not log `listening on` for %s within %ss; "
                              "log tail:\n%s" % (wait_for, timeout, srv.log_tail()))
        time.sleep(0.05)


def start_ws(core=None, workers=None, ws_opts=None, **kw):
    """Start vcgate with one websocket transport on a free port."""
    require_plugins("inproc", "websocket")
    core = dict(core or {})
    core.setdefault("log_level", "info")
    if workers is not None:
        core["workers"] = workers
    port = free_port()
    return start_vcgate(core=core, transports=[ws_transport(port, **(ws_opts or {}))], **kw)


def _kill_leftovers():
    # A script that dies with servers running (an exception outside the
    # runner) must not leave vcgate processes behind.
    for srv in list(_servers):
        srv.kill()


atexit.register(_kill_leftovers)


def stop_all_servers(check=False):
    """Stop every server still running (the runner calls this after each
    test).  Returns a list of problem strings (sanitizer reports first)."""
    problems = []
    for srv in list(_servers):
        try:
            srv.stop(check=True)
        except TestFailure as e:
            problems.append(str(e))
        except Exception as e:  # never leave a process behind
            srv.kill()
            problems.append("stop failed: %r" % (e,))
    return problems


# ------------------------------------------------------------------ protobuf

def enc_varint(v):
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def dec_varint(buf, i):
    shift = 0
    v = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, i
        shift += 7
        if shift >= 70:
            raise ValueError("varint too long")


def _field_varint(num, v):
    return enc_varint(num << 3 | 0) + enc_varint(v)


def _field_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return enc_varint(num << 3 | 2) + enc_varint(len(b)) + b


def iter_fields(buf):
    """Yield (field number, wire type, value) of a protobuf message."""
    i = 0
    while i < len(buf):
        key, i = dec_varint(buf, i)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise ValueError("field number 0")
        if wt == 0:
            v, i = dec_varint(buf, i)
        elif wt == 1:
            if i + 8 > len(buf):
                raise ValueError("truncated fixed64")
            v = buf[i:i + 8]
            i += 8
        elif wt == 2:
            n, i = dec_varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated bytes")
            v = bytes(buf[i:i + n])
            i += n
        elif wt == 5:
            if i + 4 > len(buf):
                raise ValueError("truncated fixed32")
            v = buf[i:i + 4]
            i += 4
        else:
            raise ValueError("bad wire type %d" % wt)
        yield num, wt, v


def encode_wrapper(packet_type, user_id=b"", data=b"", session_id=0):
    """PacketWrapper bytes (proto3: zero/empty fields omitted)."""
    out = b""
    if packet_type:
        out += _field_varint(1, packet_type)
    if user_id:
        out += _field_bytes(2, user_id)
    if data:
        out += _field_bytes(3, data)
    if session_id:
        out += _field_varint(4, session_id)
    return out


class Packet:
    __slots__ = ("packet_type", "user_id", "data", "session_id", "raw")

    def __init__(self, raw):
        self.raw = bytes(raw)
        self.packet_type = 0
        self.user_id = b""
        self.data = b""
        self.session_id = 0
        for num, wt, v in iter_fields(self.raw):
            if num == 1 and wt == 0:
                self.packet_type = v
            elif num == 2 and wt == 2:
                self.user_id = v
            elif num == 3 and wt == 2:
                self.data = v
            elif num == 4 and wt == 0:
                self.session_id = v

    @property
    def from_system(self):
        return self.user_id == SYSTEM_USER

    def __repr__(self):
        return "Packet(type=%d, user=%r, sid=%d, data=%r)" % (
            self.packet_type, self.user_id, self.session_id, self.data[:40])


def decode_wrapper(raw):
    return Packet(raw)


def encode_media(media_type, data=b"", user_id=b""):
    """MediaPacket bytes: its fields 1-3 (media_type, user_id, data) have
    the numbers and wire types of PacketWrapper's first three."""
    return encode_wrapper(media_type, user_id, data)


def decode_fields(buf):
    """{field number: last value} of a message (enough for our checks)."""
    return {num: v for num, wt, v in iter_fields(buf)}


# ------------------------------------------------------------------ WebSocket

def lobby_url(port, user, room, scheme="ws"):
    return "%s://127.0.0.1:%d/lobby/%s/%s" % (scheme, port, user, room)


class Client:
    """A WebSocket client (python3-websockets) in a room.  connect() reads
    the server's first packets: SESSION_ASSIGNED then MEETING_STARTED."""

    def __init__(self, ws, user, room):
        self.ws = ws
        self.user = user
        self.room = room
        self.session_id = None
        self.assigned = None
        self.meeting = None
        self.extra = []  # packets read during connect() after the two

    @classmethod
    async def connect(cls, port, user, room, timeout=5, path=None, **kw):
        """path: another lobby URL to open (e.g. /lobby?token=...) for the
        session of user in room."""
        import websockets
        kw.setdefault("max_size", None)
        kw.setdefault("ping_interval", None)
        kw.setdefault("close_timeout", 2)
        kw.setdefault("max_queue", 1024)
        scheme = "wss" if kw.get("ssl") is not None else "ws"
        url = (lobby_url(port, user, room, scheme) if path is None
               else "%s://127.0.0.1:%d%s" % (scheme, port, path))
        ws = await asyncio.wait_for(
            websockets.connect(url, open_timeout=timeout, **kw), timeout + 1)
        c = cls(ws, user, room)
        try:
            p = await c.recv(timeout)
            if p.packet_type != PT_SESSION_ASSIGNED:
                raise TestFailure("%s/%s: first packet is %r, not SESSION_ASSIGNED"
                                  % (user, room, p))
            if p.user_id != SYSTEM_USER:
                raise TestFailure("SESSION_ASSIGNED user_id is %r" % p.user_id)
            if not p.session_id:
                raise TestFailure("SESSION_ASSIGNED without session_id: %r" % p)
            c.assigned = p
            c.session_id = p.session_id
            p = await c.recv(timeout)
            if p.packet_type != PT_MEETING:
                raise TestFailure("%s/%s: second packet is %r, not MEETING"
                                  % (user, room, p))
            f = decode_fields(p.data)
            if f.get(1) != EV_MEETING_STARTED:
                raise TestFailure("second packet is MEETING event %r, not "
                                  "MEETING_STARTED" % f.get(1))
            c.meeting = p
        except BaseException:
            await c.close()
            raise
        return c

    async def send_raw(self, b):
        await self.ws.send(b)

    async def send(self, packet_type, data=b"", session_id=0, user_id=None):
        b = encode_wrapper(packet_type, self.user.encode() if user_id is None else user_id,
                           data, session_id)
        await self.ws.send(b)
        return b

    async def recv_raw(self, timeout=5):
        m = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(m, str):
            raise TestFailure("server sent a text frame: %r" % m[:80])
        return m

    async def recv(self, timeout=5):
        return Packet(await self.recv_raw(timeout))

    async def recv_client(self, timeout=5):
        """Next packet that was not made by the server (skips system
        packets such as presence events and CONGESTION)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            p = await self.recv(left)
            if not p.from_system:
                return p

    async def collect(self, n, timeout, quiet=0.3):
        """Up to n client packets within timeout, then keep listening for
        `quiet` seconds to catch extras.  Returns the list."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                got.append(await self.recv_client(left))
            except asyncio.TimeoutError:
                return got
        end = time.monotonic() + quiet
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return got
            try:
                got.append(await self.recv_client(left))
            except asyncio.TimeoutError:
                return got

    async def expect_close(self, timeout=5):
        """Read until the server closes; return the received close code
        (None if the TCP connection ended without a close frame)."""
        import websockets
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure("%s/%s: server did not close within %ss"
                                      % (self.user, self.room, timeout))
                await asyncio.wait_for(self.ws.recv(), left)
        except websockets.ConnectionClosed as e:
            return e.rcvd.code if e.rcvd is not None else None
        except asyncio.TimeoutError:
            raise TestFailure("%s/%s: server did not close within %ss"
                              % (self.user, self.room, timeout))

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:
            pass


async def connect_status(port, path, timeout=5):
    """Try a WebSocket handshake on path; return the HTTP status (101 on
    success, the connection is then closed; 0 when no valid HTTP response
    came)."""
    import websockets
    try:
        ws = await asyncio.wait_for(
            websockets.connect("ws://127.0.0.1:%d%s" % (port, path),
                               open_timeout=timeout, ping_interval=None,
                               close_timeout=1), timeout + 1)
    except websockets.InvalidStatusCode as e:
        return e.status_code
    except (websockets.InvalidHandshake, OSError, asyncio.TimeoutError):
        # The server answered no valid HTTP status (closed or reset the
        # connection): report 0 so the test names what it got.
        return 0
    await ws.close()
    return 101


def upgrade_request(path, port, key=None, version="13", extra=""):
    """The bytes of a WebSocket upgrade request (RFC 6455 4.1); `extra` is
    more header lines, each ending in CRLF.  key=False leaves the key out,
    version=None the version."""
    if key is None:
        key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port,
             "Upgrade: websocket", "Connection: Upgrade"]
    if key is not False:
        lines.append("Sec-WebSocket-Key: %s" % key)
    if version is not None:
        lines.append("Sec-WebSocket-Version: %s" % version)
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


class HttpAnswer:
    """What raw_http() read: status (0 when the server closed without a
    status line), lower-cased headers (repeated ones joined by ", "), body,
    and whether the connection then ended."""

    def __init__(self, status, headers, body, closed):
        self.status = status
        self.headers = headers
        self.body = body
        self.closed = closed

    def __repr__(self):
        return "HttpAnswer(%d, %r, %r)" % (self.status, self.headers, self.body[:80])


def raw_http(port, data, ssl_ctx=None, timeout=5, chunks=None, pause=0.0,
             source=None):
    """Send raw request bytes (or the list `chunks`, `pause` seconds apart)
    on a new connection (from loopback address `source` if given) and read
    one response: the head, then a body of content-length bytes (or until
    EOF).  101 responses return after the head.  Never waits longer than
    timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    try:
        if ssl_ctx is not None:
            s = ssl_ctx.wrap_socket(s, server_hostname="127.0.0.1")
        for i, c in enumerate(chunks if chunks is not None else [data]):
            if i and pause:
                time.sleep(pause)
            s.sendall(c)
        buf = b""
        deadline = time.monotonic() + timeout
        closed = False
        while b"\r\n\r\n" not in buf:
            if time.monotonic() > deadline:
                raise TestFailure("no response head within %ss (got %r)" % (timeout, buf[:200]))
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                closed = True
                break
            buf += chunk
        if b"\r\n\r\n" not in buf:
            return HttpAnswer(0, {}, buf, True)
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            raise TestFailure("not an HTTP status line: %r" % lines[0])
        headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            k = k.strip().lower()
            headers[k] = headers[k] + ", " + v.strip() if k in headers else v.strip()
        if status == 101:
            return HttpAnswer(status, headers, body, False)
        want = int(headers.get("content-length", "-1"))
        while not closed and (want < 0 or len(body) < want):
            if time.monotonic() > deadline:
                break
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                closed = True
                break
            body += chunk
        if not closed:
            # Did the server end the connection after its answer?
            s.settimeout(min(0.5, max(0.05, deadline - time.monotonic())))
            try:
                closed = s.recv(1) == b""
            except socket.timeout:
                pass
            except (ConnectionResetError, BrokenPipeError):
                closed = True
        return HttpAnswer(status, headers, body, closed)
    finally:
        s.close()


def self_signed(d):
    """A P-256 certificate for 127.0.0.1 and its key, made with openssl."""
    import shutil
    import subprocess
    if shutil.which("openssl") is None:
        raise TestFailure("openssl is needed to make a test certificate "
                            "(apt-get install openssl)")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    cp = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    return cert, key


def cpu_seconds(pid):
    """User + system CPU time of a process so far, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ raw socket

def ws_frame(opcode, payload=b"", fin=True, masked=True, rsv=0, length=None, width=None):
    """The bytes of one client frame, correct or deliberately not: length
    overrides the declared payload length, width (7, 16 or 64) forces the
    length encoding, rsv sets the reserved bits (1..7)."""
    n = len(payload) if length is None else length
    if width is None:
        width = 7 if n < 126 else 16 if n < 65536 else 64
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | opcode
    m = 0x80 if masked else 0
    if width == 7:
        hdr = struct.pack("!BB", b0, m | n)
    elif width == 16:
        hdr = struct.pack("!BBH", b0, m | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    if not masked:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(b ^ key[i & 3] for i, b in enumerate(payload))


class RawClient:
    """A WebSocket client on a plain socket, for tests that must misbehave:
    completes the handshake, then does only what the test asks."""

    def __init__(self, sock, status, headers, rest):
        self.sock = sock
        self.status = status
        self.headers = headers
        self.buf = bytearray(rest)
        self.closed_code = None
        self.eof = False

    @classmethod
    def connect(cls, port, path, rcvbuf=None, timeout=5, ssl_ctx=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        if ssl_ctx is not None:
            s = ssl_ctx.wrap_socket(s, server_hostname="127.0.0.1")
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % (path, port, key))
        s.sendall(req.encode())
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in data:
            if time.monotonic() > deadline:
                s.close()
                raise TestFailure("raw handshake timed out")
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            s.close()
            raise TestFailure("bad HTTP response: %r" % head[:200])
        headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers[k.strip().lower()] = v.strip()
        return cls(s, status, headers, rest)

    def send_frame(self, opcode, payload, fin=True):
        mask = os.urandom(4)
        n = len(payload)
        b0 = (0x80 if fin else 0) | opcode
        if n < 126:
            hdr = struct.pack("!BB", b0, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(hdr + mask + masked)

    def _parse_frame(self):
        b = self.buf
        if len(b) < 2:
            return None
        op = b[0] & 0x0F
        n = b[1] & 0x7F
        i = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = struct.unpack("!H", b[2:4])[0]
            i = 4
        elif n == 127:
            if len(b) < 10:
                return None
            n = struct.unpack("!Q", b[2:10])[0]
            i = 10
        if b[1] & 0x80:
            i += 4  # servers do not mask, but be tolerant
        if len(b) < i + n:
            return None
        payload = bytes(b[i:i + n])
        del b[:i + n]
        return op, payload

    def read_all(self, timeout):
        """Read and parse frames until EOF, a close frame, or timeout.
        Returns the number of data frames (binary/text/continuation with FIN
        are counted as frames here)."""
        frames = 0
        deadline = time.monotonic() + timeout
        while True:
            while True:
                f = self._parse_frame()
                if f is None:
                    break
                op, payload = f
                if op == 0x8:
                    self.closed_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    return frames
                if op in (0x0, 0x1, 0x2):
                    frames += 1
            left = deadline - time.monotonic()
            if left <= 0:
                return frames
            self.sock.settimeout(min(left, 1.0))
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                self.eof = True
                return frames
            if not chunk:
                self.eof = True
                return frames
            self.buf += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def wait_until(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def timeout(seconds):
    """Decorator: per-test timeout for the runner."""
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco
