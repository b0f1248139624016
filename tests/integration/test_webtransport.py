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
import shutil
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
def test_wt_two_workers_share_certificate_and_room():
    _scenario("workers")
