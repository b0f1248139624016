"""WebTransport integration tests with the real browser.

Each test runs one scenario of wt_scenario.py (vcgate with websocket +
webtransport, headless Debian chromium driven by playwright-core through
wt_browser.js, python3-websockets clients) inside a private network
namespace: `unshare -n`, loopback up, nothing else reachable.  chromium also
gets --host-resolver-rules and the no-background-networking flags, so it
stays off the network even where a namespace cannot be made.

Needs: /usr/bin/chromium (apt-get install chromium), node with
tests/integration/node_modules/playwright-core (npm install --prefix
tests/integration), and the webtransport plugin.  Missing pieces skip the
tests unless VCGATE_REQUIRE_PLUGINS names webtransport.
"""

import os
import re
import shutil
import socket
import subprocess
import sys

import harness as h
import wt_scenario as wts

HERE = os.path.dirname(os.path.abspath(__file__))


def _require_browser():
    wts.require_browser("inproc", "websocket", "webtransport")


def _netns_ok():
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    cp = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"],
                        capture_output=True, timeout=10)
    return cp.returncode == 0


def _scenario(name, limit=110, extra_env=None):
    _require_browser()
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    script = os.path.join(HERE, "wt_scenario.py")
    env = h.env_for_vcgate(extra_env)
    env["WT_SCENARIO_TIMEOUT"] = str(limit - 10)
    if _netns_ok():
        cmd = ["unshare", "-n", "sh", "-c",
               'ip link set lo up && exec "$0" "$1" "$2"', py, script, name]
    else:
        cmd = [py, script, name]
        print("note: no network namespace here; chromium is confined by its flags only")
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env,
                            stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise h.TestFailure("scenario %s did not finish within %ss; output:\n%s"
                            % (name, limit, (e.stdout or "")[-3000:]))
    out = cp.stdout + cp.stderr
    if cp.returncode != 0 or ("ok - " + name) not in cp.stdout:
        raise h.TestFailure("scenario %s failed (exit %s):\n%s" % (name, cp.returncode, out[-4000:]))
    for line in cp.stdout.splitlines():
        if line.startswith(name + ":"):
            print(line)


@h.timeout(120)
def test_wt_browsers_and_ws_relay_streams_and_datagrams():
    _scenario("relay")


@h.timeout(120)
def test_wt_relay_without_udp_gso():
    # The fallback a kernel or device without UDP GSO gets: one datagram
    # per packet (sendmmsg), forced with VCGATE_WT_NO_GSO.
    _scenario("relay", extra_env={"VCGATE_WT_NO_GSO": "1"})


@h.timeout(120)
def test_wt_256k_packet_both_ways():
    _scenario("big")


@h.timeout(120)
def test_wt_close_both_directions_with_code_and_reason():
    _scenario("close")


@h.timeout(120)
def test_wt_bad_path_and_names_refused():
    _scenario("badpath")


@h.timeout(120)
def test_wt_garbage_udp_does_not_disturb_sessions():
    _scenario("garbage")


@h.timeout(120)
def test_wt_stale_video_shed_at_write_audio_and_keys_kept():
    _scenario("shed")


@h.timeout(120)
def test_wt_session_rotation_bounds_stream_records():
    _scenario("rotate")


@h.timeout(120)
def test_wt_two_workers_share_certificate_and_room():
    _scenario("workers")


@h.timeout(120)
def test_wt_reload_swaps_certificate_for_new_handshakes_only():
    _scenario("reload_cert")


def _wt_config(d, **opts):
    wt = {"plugin": "webtransport", "listen": "127.0.0.1:%d" % h.free_port(socket.SOCK_DGRAM)}
    wt.update(opts)
    return h.write_config(transports=[wt], d=d)


def _openssl_pair(d, name):
    cert, key, _ = wts.openssl_pair(d, name)
    return cert, key


def test_wt_config_errors_name_file_line_and_reason():
    """What can be checked before start is checked by `vcgate -t`, as
    `file:line: option: reason`: a cert_hash_file whose directory is
    missing or is a file, or that is itself a directory; a tls_cert that
    cannot be read; a certificate and key that are not a pair.  A good
    pair passes.  What only start can find (cert_hash_file.tmp taken by a
    directory) fails the start with the reason in the log, not a bare
    code."""
    h.require_plugins("inproc", "webtransport")
    if not shutil.which("openssl"):
        raise h.Skip("needs openssl")
    d = h.tmpdir()
    c1, k1 = _openssl_pair(d, "one")
    c2, k2 = _openssl_pair(d, "two")
    os.mkdir(os.path.join(d, "adir"))
    plain = os.path.join(d, "plain")
    open(plain, "w").close()
    bad = [
        ({"cert_hash_file": os.path.join(d, "missing", "cert.sha256")},
         r"cert_hash_file: directory \S*missing: no such file"),
        ({"cert_hash_file": os.path.join(plain, "cert.sha256")},
         r"cert_hash_file: \S*plain is not a directory"),
        ({"cert_hash_file": os.path.join(d, "adir")}, r"cert_hash_file: \S*adir is a directory"),
        ({"tls_cert": os.path.join(d, "nope.crt"), "tls_key": k1},
         r"tls_cert: \S*nope.crt: no such file"),
        ({"tls_cert": c1, "tls_key": k2}, r"tls_cert: not a loadable PEM certificate and key pair: "),
    ]
    for opts, want in bad:
        path = _wt_config(d, **opts)
        cp = h.run_vcgate(["-t", "-c", path])
        out = cp.stdout + cp.stderr
        if cp.returncode == 0:
            raise h.TestFailure("vcgate -t accepted %r:\n%s" % (opts, out))
        # The group of the transport starts on line 3 of the written config.
        if not re.search(r"%s:\d+: \S*%s" % (re.escape(os.path.basename(path)), want), out, re.I):
            raise h.TestFailure("vcgate -t for %r: no `file:line: %s` line:\n%s" % (opts, want, out))
    good = _wt_config(d, tls_cert=c1, tls_key=k1, cert_hash_file=os.path.join(d, "ok.sha256"))
    cp = h.run_vcgate(["-t", "-c", good])
    if cp.returncode != 0:
        raise h.TestFailure("vcgate -t refused a good pair:\n%s" % (cp.stdout + cp.stderr))
    # Only the start meets this one: the temporary file's name is taken.
    target = os.path.join(d, "late.sha256")
    os.mkdir(target + ".tmp")
    path = _wt_config(d, cert_hash_file=target)
    cp = h.run_vcgate(["-c", path], timeout=20)
    out = cp.stdout + cp.stderr
    if cp.returncode == 0 or not re.search(r"cert_hash_file: cannot create \S*late.sha256.tmp: "
                                           r"is a directory", out, re.I):
        raise h.TestFailure("start with %s.tmp a directory: exit %s, want the reason logged:\n%s"
                            % (target, cp.returncode, out))
    print("config: 5 bad WebTransport settings refused by -t with file:line and reason; "
          "a start-time failure logged its reason")
