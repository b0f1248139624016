"""videocall.rs clients unchanged (issue 10): the token lobby
(/lobby?token=JWT, tokens minted here with Python's `jwt`, Debian
python3-jwt), presence (PARTICIPANT_JOINED / PARTICIPANT_LEFT with the 2 s
grace, the member list for a joiner, RTT-only election connections never
announced), observers, identity enforcement, and the same across two gates
on a real nats-server, including events an external NATS client publishes
on room.{room}.system.  WebSocket clients (python3-websockets) against the
real binary; the WebTransport side of the lobby is in test_lobby_urls.py."""

import asyncio
import os
import socket
import time

import harness as H
from harness import Client

ISS = "videocall-meeting-backend"
SECRET = "compat-secret-1"
EV_JOINED, EV_LEFT = 3, 4


def _jwt():
    try:
        import jwt  # Debian python3-jwt
    except ImportError:
        raise H.TestFailure("python3-jwt is not installed (apt-get install python3-jwt)")
    return jwt


def token(sub="alice", room="standup", secret=SECRET, ttl=3600, alg="HS256", drop=(), **claims):
    c = {"sub": sub, "room": room, "room_join": True, "is_host": False,
         "display_name": sub.capitalize(), "iss": ISS, "exp": int(time.time()) + ttl}
    c.update(claims)
    for k in drop:
        c.pop(k, None)
    return _jwt().encode(c, secret, algorithm=alg)


def lobby(tok):
    return "/lobby?token=" + tok


def _gate(**core):
    core.setdefault("log_level", "info")
    return H.start_ws(core=core)


def _ev(p):
    """(event type, target, display name, member session id, addressee) of a MEETING packet."""
    f = H.decode_fields(p.data)
    return (f.get(1), f.get(7, b"").decode(), f.get(10, b"").decode(), f.get(9, 0), p.session_id)


async def _events(c, timeout, want=None):
    """MEETING events received within timeout (stops early after `want`)."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (want is None or len(got) < want):
        try:
            p = await c.recv(deadline - time.monotonic())
        except asyncio.TimeoutError:
            break
        if p.packet_type == H.PT_MEETING and p.from_system:
            got.append(_ev(p))
    return got


async def _join(port, user, room="standup", **kw):
    """A session that announces itself (its first packet: a heartbeat)."""
    c = await Client.connect(port, user, room, **kw)
    await c.send(H.PT_MEDIA, H.encode_media(H.MT_HEARTBEAT))
    return c


# ------------------------------------------------------------------ tokens

async def test_token_lobby_answers():
    """Every answer of the token lobby, by its HTTP status, on WebSocket."""
    srv = _gate(jwt_secret=["old-secret", SECRET])
    port = srv.port
    jwt = _jwt()
    now = int(time.time())
    bad_alg_none = jwt.encode({"sub": "a", "room": "r", "room_join": True, "iss": ISS,
                               "exp": now + 60}, None, algorithm="none")
    cases = [
        ("a good token", token(), 101),
        ("signed with the second secret of a rotation", token(secret="old-secret"), 101),
        ("an observer", token(sub="eve", room_join=False, observer=True), 101),
        ("expired", token(ttl=-3600), 401),
        ("inside the leeway", token(ttl=-30), 101),
        ("not valid yet", token(nbf=now + 3600), 401),
        ("a bad signature", token(secret="wrong"), 403),
        ("the wrong issuer", token(iss="someone-else"), 403),
        ("a bad room", token(room="bad.room"), 403),
        ("the reserved identity", token(sub="system-&^%$#@!"), 403),
        ("no access", token(room_join=False), 403),
        ("alg none", bad_alg_none, 403),
        ("HS384", token(alg="HS384"), 403),
        ("no exp", token(drop=("exp",)), 403),
        ("a mistyped room_join", token(room_join="yes"), 403),
        ("not a JWT", "abc.def", 403),
        ("bad base64url", "a$b.c$d.e$f", 403),
        ("over 4 KiB", token(display_name="x" * 5000), 403),
    ]
    for what, tok, want in cases:
        st = await H.connect_status(port, lobby(tok))
        assert st == want, "%s: got %s, want %s" % (what, st, want)
    # The identity and the display name come from the token.
    c = await Client.connect(port, "alice", "standup", path=lobby(token()))
    await c.close()
    log = srv.log()
    assert "user alice room standup" in log, log[-2000:]
    for tok in (token(), SECRET, "old-secret"):
        assert tok not in log, "the log shows a token or a secret"
    print("tokens: %d answers as videocall.rs gives them" % len(cases))


def test_plain_get_of_a_lobby_url_tells_why():
    """A page cannot see why an upgrade failed (browsers hide it), so a
    plain GET of the same URL answers what the upgrade would: 426 when it
    would be accepted, else the status and the reason."""
    import urllib.error
    import urllib.request
    srv = _gate(jwt_secret=SECRET)

    def get(path):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (srv.port, path), timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
    assert get("/lobby/alice/standup")[0] == 426
    assert get(lobby(token()))[0] == 426
    st, body = get("/lobby/alice/bad.room")
    assert st == 400 and "room name" in body, (st, body)
    st, body = get(lobby(token(ttl=-7200)))
    assert (st, body.strip()) == (401, "token has expired"), (st, body)
    st, body = get(lobby(token(secret="nope")))
    assert st == 403 and "signature" in body, (st, body)


async def test_token_without_secret_is_500_logged_once():
    srv = _gate()
    for _ in range(3):
        st = await H.connect_status(srv.port, lobby(token()))
        assert st == 500, st
    assert srv.log().count("no secret is configured") == 1, srv.log_tail()


async def test_require_token_legacy_gone():
    srv = _gate(jwt_secret=SECRET, require_token=True)
    assert await H.connect_status(srv.port, "/lobby/alice/standup") == 410
    assert await H.connect_status(srv.port, lobby(token())) == 101


async def test_secret_file_wins_over_environment():
    d = H.tmpdir()
    path = os.path.join(d, "secret")
    with open(path, "w") as f:
        f.write("file-secret\n")
    srv = H.start_ws(core={"jwt_secret_file": path}, env={"JWT_SECRET": "env-secret"})
    assert await H.connect_status(srv.port, lobby(token(secret="file-secret"))) == 101
    assert await H.connect_status(srv.port, lobby(token(secret="env-secret"))) == 403
    srv.stop()
    srv = H.start_ws(env={"JWT_SECRET": "env-secret"})
    assert await H.connect_status(srv.port, lobby(token(secret="env-secret"))) == 101


def test_token_command_mints_what_python_verifies():
    conf = H.write_config(core={"jwt_secret": SECRET}, transports=[H.ws_transport(H.free_port())])
    cp = H.run_vcgate(["-c", conf, "--token", "sub=bob,room=daily,name=Bob,ttl=600,observer"])
    assert cp.returncode == 0, cp.stderr
    claims = _jwt().decode(cp.stdout.strip(), SECRET, algorithms=["HS256"], issuer=ISS)
    assert claims["sub"] == "bob" and claims["room"] == "daily" and claims["observer"] is True
    assert claims["display_name"] == "Bob" and 590 <= claims["exp"] - time.time() <= 600
    cp = H.run_vcgate(["-c", conf, "--token", "sub=bob,room=bad.room"])
    assert cp.returncode == 2 and "room name" in cp.stderr, cp.stderr


# ------------------------------------------------------------------ presence

async def test_presence_joined_left_and_member_list():
    srv = _gate(jwt_secret=SECRET)
    alice = await _join(srv.port, "alice", path=lobby(token("alice")))
    bob = await _join(srv.port, "bob", path=lobby(token("bob", display_name="Bobby")))
    ev = await _events(alice, 3, want=1)
    assert ev and ev[0][:3] == (EV_JOINED, "bob", "Bobby") and ev[0][3] == bob.session_id \
        and ev[0][4] == 0, ev
    roster = await _events(bob, 3, want=1)
    assert roster and roster[0][:2] == (EV_JOINED, "alice") and roster[0][4] == bob.session_id, roster
    # An election connection that sends only RTT probes is never announced.
    probe = await Client.connect(srv.port, "carol", "standup")
    for i in range(3):
        await probe.send(H.PT_MEDIA, H.encode_media(H.MT_RTT, b"t%d" % i))
    assert await _events(alice, 0.8) == [], "an RTT-only session was announced"
    await probe.close()
    # LEFT after the grace, not before.
    t0 = time.monotonic()
    await bob.close()
    ev = await _events(alice, 4, want=1)
    dt = time.monotonic() - t0
    assert ev and ev[0][:2] == (EV_LEFT, "bob") and ev[0][3] == bob.session_id, ev
    assert 1.8 <= dt <= 3.5, "LEFT after %.2fs, want the 2 s grace" % dt
    await alice.close()


async def test_rejoin_within_grace_is_silent():
    srv = _gate()
    alice = await _join(srv.port, "alice")
    bob = await _join(srv.port, "bob")
    await _events(alice, 1, want=1)
    await bob.close()
    await asyncio.sleep(0.5)
    bob2 = await _join(srv.port, "bob")
    ev = await _events(alice, 3.5)
    assert ev == [], "a rejoin within the grace was announced: %r" % ev
    roster = await _events(bob2, 2, want=1)
    assert roster and roster[0][:2] == (EV_JOINED, "alice"), roster
    await bob2.close()
    await alice.close()


async def test_observer_receives_sends_nothing():
    srv = _gate(jwt_secret=SECRET)
    alice = await _join(srv.port, "alice")
    eve = await Client.connect(srv.port, "eve", "standup",
                               path=lobby(token("eve", room_join=False, observer=True)))
    await eve.send(H.PT_MEDIA, H.encode_media(H.MT_VIDEO, b"frame"))
    await eve.send(H.PT_AES_KEY, b"key")
    await eve.send(H.PT_HEALTH, b"health")
    assert await _events(alice, 0.8) == [], "an observer was announced"
    got = await alice.collect(1, 0.5)
    assert got == [], "an observer's packets were relayed: %r" % got
    assert await _events(eve, 0.3) == [], "an observer got the member list"
    await alice.send(H.PT_MEDIA, H.encode_media(H.MT_AUDIO, b"hello"))
    p = await eve.recv_client(3)
    assert H.decode_fields(p.data).get(3) == b"hello"
    await eve.send(H.PT_MEDIA, H.encode_media(H.MT_RTT, b"ping"))
    p = await eve.recv(3)
    assert p.packet_type == H.PT_MEDIA and H.decode_fields(p.data).get(1) == H.MT_RTT, p
    await eve.close()
    await alice.close()
    srv.stop()
    assert "observer" in srv.log()


async def test_identity_and_session_spoofing_dropped():
    srv = _gate()
    alice = await _join(srv.port, "alice")
    bob = await _join(srv.port, "bob")
    await _events(alice, 1, want=1)
    await _events(bob, 1, want=1)
    # As another identity, as the server, as a server-only type: dropped.
    await alice.send(H.PT_AES_KEY, b"x", user_id=b"bob")
    await alice.send(H.PT_AES_KEY, b"x", user_id=H.SYSTEM_USER)
    await alice.send(H.PT_MEETING, H.encode_wrapper(EV_LEFT), user_id=b"alice")
    got = await bob.collect(1, 0.8)
    assert got == [], "spoofed packets were relayed: %r" % got
    # Another member's session id is replaced with the sender's.
    await alice.send(H.PT_AES_KEY, b"mine", session_id=bob.session_id)
    p = await bob.recv_client(3)
    assert p.session_id == alice.session_id and p.data == b"mine", p
    await alice.close()
    await bob.close()
    srv.stop()
    assert srv.log().count("sent packets as another identity") == 1


# ------------------------------------------------------------------ NATS

def _nats():
    import test_nats as N
    return N


class NatsPub:
    """A NATS client of its own (the text protocol over TCP): stands for an
    external meeting service publishing on room.{room}.system."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), 5)
        self.s.settimeout(5)
        self.s.recv(4096)  # INFO
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        buf = b""
        while b"PONG" not in buf:
            buf += self.s.recv(4096)

    def pub(self, subject, payload):
        self.s.sendall(b"PUB %s %d\r\n%s\r\nPING\r\n" % (subject.encode(), len(payload), payload))

    def close(self):
        self.s.close()


def _meeting(event, room, message):
    inner = H._field_varint(1, event) + H._field_bytes(2, room.encode()) + \
        H._field_bytes(4, message.encode())
    return H.encode_wrapper(H.PT_MEETING, H.SYSTEM_USER, inner)


@H.timeout(90)
async def test_presence_across_two_gates_on_nats():
    N = _nats()
    nats = N.NatsServer().start()
    gates, clients = [], []
    try:
        gates = [N._start_gate([nats.url]) for _ in range(2)]
        a = await _join(gates[0].port, "alice")
        clients.append(a)
        await asyncio.sleep(0.5)  # alice's room subscription reaches NATS
        t0 = time.monotonic()
        b = await _join(gates[1].port, "bob")
        clients.append(b)
        ev = await _events(a, 5, want=1)
        assert ev and ev[0][:2] == (EV_JOINED, "bob") and ev[0][3] == b.session_id, ev
        roster = await _events(b, 3, want=1)
        dt = time.monotonic() - t0
        assert roster and roster[0][:2] == (EV_JOINED, "alice") and roster[0][4] == b.session_id, roster
        assert dt < 1.5, "member list from the other node after %.2fs" % dt
        # An external meeting service's event reaches every member.
        ext = NatsPub(nats.port)
        ext.pub("room.standup.system", _meeting(5, "standup", "meeting activated"))
        for c in (a, b):
            ev = await _events(c, 3, want=1)
            assert ev and ev[0][0] == 5, (c.user, ev)
        ext.close()
        # LEFT crosses nodes after the grace.
        await b.close()
        clients.remove(b)
        ev = await _events(a, 5, want=1)
        assert ev and ev[0][:2] == (EV_LEFT, "bob"), ev
        print("nats presence: JOINED across gates, member list in %.2fs, external event, LEFT" % dt)
    finally:
        await N._teardown(clients, gates, [nats])


# ------------------------------------------------------------------ the bot

@H.timeout(120)
def test_bot_traffic_replayed_exactly_on_both_transports():
    """What videocall.rs's bot sends (heartbeats every second, 50 audio
    packets/s, 30 video frames/s with a key frame every 2 s, RTT probes,
    keyframe requests, key exchange), through WebSocket and through
    WebTransport with one stream per packet: every packet reaches every
    other member exactly once, none its sender (loadgen's call shape)."""
    import json
    import subprocess
    H.require_plugins("inproc", "websocket", "webtransport")
    lg = os.path.join(H.BUILD, "contrib", "loadgen", "loadgen")
    if not os.access(lg, os.X_OK):
        raise H.TestFailure("loadgen is not built: %s" % lg)
    ws, wt = H.free_port(), H.free_port(socket.SOCK_DGRAM)
    srv = H.start_vcgate(core={"log_level": "info"},
                         transports=[H.ws_transport(ws),
                                     {"plugin": "webtransport", "listen": "127.0.0.1:%d" % wt}])
    try:
        for url in ("ws://127.0.0.1:%d" % ws, "https://127.0.0.1:%d" % wt):
            cp = subprocess.run([lg, "--url", url, "--scenario", "call", "--rooms", "2",
                                 "--participants", "3", "--duration", "4", "--warmup", "1",
                                 "--quiet", "--max-seconds", "60"],
                                capture_output=True, text=True, timeout=90)
            res = json.loads(cp.stdout.strip().splitlines()[-1])
            bad = {k: res.get(k) for k in ("lost", "duplicated", "misrouted", "failed")}
            assert cp.returncode == 0 and not any(bad.values()) and res.get("delivered"), \
                "%s: exit %s, %r\n%s" % (url, cp.returncode, res, cp.stderr[-2000:])
            print("bot replay %s: %d delivered exactly once" % (url.split(":")[0], res["delivered"]))
    finally:
        srv.stop()
