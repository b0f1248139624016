"""The offline OCI image (contrib/container/build-oci.sh: mmdebstrap +
make install DESTDIR + umoci): it builds, its layout and configuration are
what the Containerfile declares, and the image's own content, unpacked by
umoci, runs `vcgate -t` and serves a WebSocket client as its non-root user
under chroot.  The root filesystem is cached under _build-image/, keyed by
the package list, so only the first run downloads (about 40 s here).

The image is built from the plain build: the sanitizer build's binary
needs libasan, which the image rightly lacks, so those tests skip there."""

import atexit
import glob
import http.server
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time

import harness as H

SCRIPT = os.path.join(H.TOP, "contrib", "container", "build-oci.sh")
HEALTHCHECK = os.path.join(H.TOP, "contrib", "container", "vcgate-healthcheck")
CACHE = os.path.join(H.TOP, "_build-image")
UID = 10001
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"

_image = {}  # built once per run: layout, tag, rootfs (unpacked), bundle config


def _mirror_reachable():
    hosts = set()
    try:
        with open("/etc/apt/sources.list.d/debian.sources") as f:
            for m in re.finditer(r"^URIs:\s*(\S+)", f.read(), re.M):
                hosts.add(re.sub(r"^\w+://([^/:]+).*", r"\1", m.group(1)))
    except OSError:
        pass
    for h in sorted(hosts) or ["deb.debian.org"]:
        try:
            socket.create_connection((h, 80), timeout=5).close()
            return True
        except OSError:
            continue
    return False


def image():
    """Build (once) and unpack the image; skips with the reason when it
    cannot be built here."""
    if _image:
        return _image
    if H.SANITIZED:
        raise H.Skip("the image carries the plain build (an ASan binary needs libasan); "
                     "built and run in the plain suite")
    for tool in ("mmdebstrap", "umoci"):
        if not shutil.which(tool):
            raise H.Skip("%s is not installed (Debian package %s; .ci/run installs it)" % (tool, tool))
    if os.geteuid() != 0:
        raise H.Skip("building the root filesystem needs root (mmdebstrap --mode=root)")
    H.require_plugins("inproc", "websocket")
    cached = subprocess.run(["bash", SCRIPT, "-n", "-c", CACHE], capture_output=True, text=True)
    if cached.returncode != 0 and not _mirror_reachable():
        raise H.Skip("no cached root filesystem (%s) and no route to the Debian mirror "
                     "(inside unshare -n?): run `bash contrib/container/build-oci.sh -r` "
                     "outside the namespace first" % cached.stdout.strip())
    # Shared by this file's tests, so not a per-test harness directory.
    d = tempfile.mkdtemp(prefix="vcgate-image-")
    if not os.environ.get("VCGATE_KEEP_LOGS"):
        atexit.register(shutil.rmtree, d, True)
    layout = os.path.join(d, "oci")
    t0 = time.monotonic()
    cp = subprocess.run(["bash", SCRIPT, "-c", CACHE, "-o", layout, H.BUILD],
                        capture_output=True, text=True, timeout=900)
    secs = time.monotonic() - t0
    assert cp.returncode == 0, "build-oci.sh failed:\n%s%s" % (cp.stdout[-2000:], cp.stderr[-4000:])
    ref = cp.stdout.strip().splitlines()[-1]
    assert ref.startswith(layout + ":"), ref
    print("# image built in %.1fs (%s root filesystem)" %
          (secs, "cached" if cached.returncode == 0 else "cold"))
    bundle = os.path.join(d, "bundle")
    cp = subprocess.run(["umoci", "unpack", "--image", ref, bundle], capture_output=True,
                        text=True, timeout=300)
    assert cp.returncode == 0, "umoci unpack: " + cp.stderr
    with open(os.path.join(bundle, "config.json")) as f:
        runtime = json.load(f)
    # What an OCI runtime gives every container (runtime-spec, "Default
    # Devices"): the image rightly has no device nodes of its own.
    dev = os.path.join(bundle, "rootfs", "dev")
    os.makedirs(dev, exist_ok=True)
    for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7),
                               ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)):
        os.mknod(os.path.join(dev, name), 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    _image.update(layout=layout, tag=ref.split(":", 1)[1], ref=ref,
                  rootfs=os.path.join(bundle, "rootfs"), runtime=runtime)
    return _image


def _blob(layout, digest):
    algo, hexd = digest.split(":", 1)
    with open(os.path.join(layout, "blobs", algo, hexd)) as f:
        return json.load(f)


def _in_image(args, timeout=30, user=True):
    """Run args inside the unpacked image with chroot, as the image's user,
    with an empty environment (nothing leaks in from the test)."""
    im = image()
    cmd = [CHROOT] + (["--userspec=%d:%d" % (UID, UID)] if user else []) + [im["rootfs"]] + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin"}, stdin=subprocess.DEVNULL)


@H.timeout(900)
def test_offline_image_layout_and_config():
    im = image()
    ls = subprocess.run(["umoci", "ls", "--layout", im["layout"]], capture_output=True, text=True)
    assert ls.returncode == 0 and ls.stdout.split() == [im["tag"]], ls.stdout + ls.stderr
    version = H.run_vcgate(["-V"]).stdout.split()[1]
    assert im["tag"] == version, (im["tag"], version)
    st = subprocess.run(["umoci", "stat", "--json", "--image", im["ref"]], capture_output=True, text=True)
    assert st.returncode == 0, st.stderr
    history = json.loads(st.stdout)["history"]
    assert [h.get("created_by") for h in history] == ["umoci insert", "umoci config"], history
    with open(os.path.join(im["layout"], "index.json")) as f:
        index = json.load(f)
    manifest = _blob(im["layout"], index["manifests"][0]["digest"])
    assert len(manifest["layers"]) == 1, manifest
    conf = _blob(im["layout"], manifest["config"]["digest"])
    c = conf["config"]
    assert conf["os"] == "linux", conf
    assert c["User"] == "%d:%d" % (UID, UID), c
    assert set(c["ExposedPorts"]) == {"8080/tcp", "4433/udp", "9090/tcp"}, c
    assert c["Entrypoint"] == ["/usr/local/bin/vcgate"], c
    assert c["Cmd"] == ["-c", "/etc/vcgate/vcgate.conf"], c
    assert c.get("StopSignal") == "SIGTERM", c
    # The runtime bundle umoci derives from it runs that, as that user.
    p = im["runtime"]["process"]
    assert p["args"] == c["Entrypoint"] + c["Cmd"] and p["user"]["uid"] == UID, p
    # The Containerfile declares the same.
    cf = open(os.path.join(H.TOP, "contrib", "container", "Containerfile")).read()
    assert re.search(r"^EXPOSE 8080/tcp 4433/udp 9090/tcp$", cf, re.M), "Containerfile EXPOSE"
    assert re.search(r"^USER %d:%d$" % (UID, UID), cf, re.M), "Containerfile USER"
    assert re.search(r"^HEALTHCHECK .*\n?.*vcgate-healthcheck\", \"/livez\"", cf, re.M), "HEALTHCHECK"


@H.timeout(900)
def test_offline_image_runs_vcgate_check_as_its_user():
    im = image()
    rootfs = im["rootfs"]
    for dev in ("usr/local/include", "usr/local/lib/pkgconfig"):
        assert not os.path.exists(os.path.join(rootfs, dev)), "%s in the image" % dev
    assert not glob.glob(os.path.join(rootfs, "usr/local/lib/vcgate/*.la"))
    who = _in_image(["id", "-u"])
    assert who.returncode == 0 and who.stdout.strip() == str(UID), who.stdout + who.stderr
    # The embedded default loads every plugin from the image's plugin dir.
    cp = _in_image(["/usr/local/bin/vcgate", "-t"])
    assert cp.returncode == 0 and "configuration is valid" in cp.stdout, cp.stdout + cp.stderr
    cp = _in_image(["/usr/local/bin/vcgate", "-P", "nats"])
    if H.plugin_built("nats"):
        assert cp.returncode == 0, cp.stderr
    # Only runtime libraries: no compiler, no headers, no apt lists.
    for absent in ("usr/bin/gcc", "usr/include/uv.h", "var/lib/apt/lists/*Packages*"):
        assert not glob.glob(os.path.join(rootfs, absent)), absent + " in the image"


@H.timeout(900)
async def test_offline_image_serves_a_websocket_client():
    im = image()
    port = H.free_port()
    conf = "/tmp/vcgate-test.conf"
    with open(im["rootfs"] + conf, "w") as f:
        f.write(H.config_text(core={"log_level": "info"}, transports=[H.ws_transport(port)]))
    log = os.path.join(H.tmpdir(), "vcgate.log")
    with open(log, "wb") as lf:
        proc = subprocess.Popen([CHROOT, "--userspec=%d:%d" % (UID, UID), im["rootfs"],
                                 "/usr/local/bin/vcgate", "-c", conf], stdout=lf,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={"PATH": "/usr/bin:/bin"})
    try:
        assert H.wait_until(lambda: " ready" in open(log).read() or proc.poll() is not None, 15), \
            open(log).read()
        assert proc.poll() is None, open(log).read()
        a = await H.Client.connect(port, "alice", "image")
        b = await H.Client.connect(port, "bob", "image")
        media = H.encode_media(H.MT_AUDIO, b"x" * 100)
        await a.send(H.PT_MEDIA, media)
        got = await b.recv_client(5)
        assert got.packet_type == H.PT_MEDIA and got.data == media, got.raw
        await a.close()
        await b.close()
    finally:
        rc = _stop(proc)
    assert rc == 0, "vcgate in the image exited %s:\n%s" % (rc, open(log).read())


def _stop(proc):
    """SIGTERM (the image's STOPSIGNAL), SIGKILL after a bound; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "killed after 15 s"


def _admin_in_core():
    return re.search(r"^\s+admin[.\s]", H.run_vcgate(["-P", "core"]).stdout, re.M) is not None


@H.timeout(900)
def test_offline_image_container_config_passes_its_healthcheck():
    """The image's own configuration (0.0.0.0, admin on 9090) inside a network
    namespace of its own, probed by the image's HEALTHCHECK command."""
    if not _admin_in_core():
        raise H.Skip("this vcgate has no core.admin listener yet, which the container "
                     "configuration and its /livez health check use")
    im = image()
    cp = _in_image(["/usr/local/bin/vcgate", "-t", "-c", "/etc/vcgate/vcgate.conf"])
    assert cp.returncode == 0, cp.stdout + cp.stderr
    log = os.path.join(H.tmpdir(), "vcgate.log")
    with open(log, "wb") as lf:
        # unshare, sh and chroot exec in turn: the PID is vcgate's.
        proc = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec chroot --userspec=%d:%d "$0" '
             "/usr/local/bin/vcgate -c /etc/vcgate/vcgate.conf" % (UID, UID), im["rootfs"]],
            stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    try:
        def probe(path):
            return subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % proc.pid, CHROOT,
                                   "--userspec=%d:%d" % (UID, UID), im["rootfs"],
                                   "/usr/local/bin/vcgate-healthcheck", path],
                                  capture_output=True, timeout=10, env={"PATH": "/usr/bin:/bin"})
        ok = H.wait_until(lambda: proc.poll() is None and probe("/livez").returncode == 0, 15, 0.2)
        assert ok, "healthcheck never passed; log:\n" + open(log).read()
        assert probe("/no-such-endpoint").returncode != 0, "the health check accepts a 404"
    finally:
        rc = _stop(proc)
    assert rc == 0, open(log).read()


class _Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/livez" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_healthcheck_script_passes_only_on_200():
    """The HEALTHCHECK script's own logic, against a local HTTP server:
    200 passes, 503 fails, a closed port fails."""
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Status)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        def run(port, path):
            return subprocess.run(["bash", HEALTHCHECK, path], capture_output=True, timeout=10,
                                  env={"PATH": "/usr/bin:/bin", "VCGATE_ADMIN_PORT": str(port)}).returncode
        port = srv.server_address[1]
        assert run(port, "/livez") == 0
        assert run(port, "/readyz") != 0
        assert run(H.free_port(), "/livez") != 0
    finally:
        srv.shutdown()
        srv.server_close()
