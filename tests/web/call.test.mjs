// contrib/web/call.js without a browser: Calls joined through an in-memory
// relay that does what PROTOCOL.md says vcgate does (stamps session ids,
// forwards to everyone else, echoes RTT probes to their sender), so the
// protocol logic is checked where the browser tests cannot reach it yet
// (presence events, which the relay does not send today) and where they
// cannot look closely (the exact packets of the key exchange).  Media
// decoding needs WebCodecs and is left to test_web_call.py; these tests
// use heartbeats, which carry no codec data.
//   node --test tests/web/
import { test } from "node:test";
import assert from "node:assert/strict";
import { Call } from "../../contrib/web/call.js";
import { LocalKeys } from "../../contrib/web/e2ee.js";
import {
  PacketWrapper, PacketType, MediaPacket, MediaType, MeetingPacket, MeetingEventType,
  SYSTEM_USER, utf8, parseMediaPacket,
} from "../../contrib/web/proto.js";

const sys = utf8.encode(SYSTEM_USER);

class Relay {
  constructor() { this.members = []; this.seen = []; this.next = 1000n; }
  async join(user, { e2ee = true } = {}) {
    const call = new Call({ user, room: "r", e2ee, base: { http: "http://x", ws: "ws://x" }, log: () => {} });
    const sid = this.next++;
    const m = { call, sid };
    call.transport = { kind: "test", send: (bytes) => { this.deliver(m, bytes); return true; }, close() {} };
    call.keys = e2ee ? await LocalKeys.create(1024) : null;
    this.members.push(m);
    call.onPacket(PacketWrapper.encode({ packetType: PacketType.SESSION_ASSIGNED, userId: sys, sessionId: sid }));
    call.state = "joined";
    call.joinedAt = performance.now();
    return call;
  }
  deliver(from, bytes) {
    const w = PacketWrapper.decode(bytes);
    const mp = w.packetType === PacketType.MEDIA ? parseMediaPacket(w.data) : null;
    if (mp && mp.mediaType === MediaType.RTT) { from.call.onPacket(bytes); return; }
    this.seen.push({ from: from.sid, w });
    if (!w.sessionId) w.sessionId = from.sid;
    const out = PacketWrapper.encode(w);
    for (const m of this.members) if (m !== from) m.call.onPacket(out);
  }
  system(to, meeting) {
    to.onPacket(PacketWrapper.encode({ packetType: PacketType.MEETING, userId: sys, data: MeetingPacket.encode(meeting) }));
  }
}

async function until(pred, what, ms = 3000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) assert.fail("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("SESSION_ASSIGNED gives the session id; MEETING_STARTED the start time", async () => {
  const relay = new Relay();
  const a = await relay.join("alice");
  assert.equal(a.sessionId, 1000n);
  relay.system(a, { eventType: MeetingEventType.MEETING_STARTED, roomId: "r", startTimeMs: 1733000000000 });
  assert.equal(a.startTime, 1733000000000);
});

test("PARTICIPANT_JOINED names a peer by session id, PARTICIPANT_LEFT removes it at once", async () => {
  const relay = new Relay();
  const a = await relay.join("alice");
  const toasts = [];
  a.addEventListener("toast", (e) => toasts.push(e.detail));
  relay.system(a, { eventType: MeetingEventType.PARTICIPANT_JOINED, sessionId: 77n,
    targetUserId: utf8.encode("zed"), displayName: utf8.encode("Zed Q\u00fcist") });
  relay.system(a, { eventType: MeetingEventType.PARTICIPANT_JOINED, sessionId: a.sessionId,
    targetUserId: utf8.encode("alice"), displayName: utf8.encode("Alice") });
  assert.deepEqual([...a.peers.keys()], ["77"], "our own announcement is not a peer");
  const p = a.peers.get("77");
  assert.equal(p.user, "zed");
  assert.equal(p.name, "Zed Q\u00fcist");
  relay.system(a, { eventType: MeetingEventType.PARTICIPANT_LEFT, sessionId: 77n, targetUserId: utf8.encode("zed") });
  assert.equal(a.peers.size, 0);
  assert.deepEqual(toasts, ["Zed Q\u00fcist left"], "no toast for members announced right after joining");
});

test("a display name that only repeats the identity shows the identity with spaces", async () => {
  const relay = new Relay();
  const a = await relay.join("alice");
  relay.system(a, { eventType: MeetingEventType.PARTICIPANT_JOINED, sessionId: 78n,
    targetUserId: utf8.encode("Zed_Quist"), displayName: utf8.encode("Zed_Quist") });
  assert.equal(a.peers.get("78").name, "Zed Quist");
});

test("a reconnect (new session, same identity) replaces the old tile and keeps the name", async () => {
  const relay = new Relay();
  const a = await relay.join("alice");
  relay.system(a, { eventType: MeetingEventType.PARTICIPANT_JOINED, sessionId: 500n,
    targetUserId: utf8.encode("bob"), displayName: utf8.encode("Bob B") });
  const hb = (sid) => a.onPacket(PacketWrapper.encode({ packetType: PacketType.MEDIA, userId: utf8.encode("bob"),
    sessionId: sid, data: MediaPacket.encode({ mediaType: MediaType.HEARTBEAT, heartbeatMetadata: { videoEnabled: true } }) }));
  hb(500n);
  await new Promise((r) => setTimeout(r, 5));
  hb(501n); // bob is back on a new session; the relay does not announce a rejoin within its grace
  assert.equal(a.peers.get("501").name, "Bob B");
  a.tick();
  assert.equal(a.peers.size, 2, "both while the old session may still be talking");
  a.peers.get("500").lastHeard = performance.now() - 2000;
  a.tick();
  assert.deepEqual([...a.peers.keys()], ["501"]);
  // Two sessions of one identity that both keep talking (two devices) both stay.
  hb(502n);
  a.tick();
  assert.equal(a.peers.size, 2);
});

test("a participant's own MEETING packet cannot end the call or remove others", async () => {
  const relay = new Relay();
  const [a, b] = [await relay.join("alice"), await relay.join("bob")];
  b.sendHeartbeat();
  await until(() => a.peers.size === 1, "bob as a peer");
  b.sendWrapper(PacketType.MEETING, MeetingPacket.encode({ eventType: MeetingEventType.MEETING_ENDED }));
  b.sendWrapper(PacketType.MEETING, MeetingPacket.encode({ eventType: MeetingEventType.PARTICIPANT_LEFT, sessionId: b.sessionId }));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(a.state, "joined");
  assert.equal(a.peers.size, 1);
});

test("E2EE: keys cross through the relay and every MediaPacket it sees is ciphertext", async () => {
  const relay = new Relay();
  const [a, b, c] = [await relay.join("alice"), await relay.join("bob"), await relay.join("carol")];
  for (const x of [a, b, c]) x.sendHeartbeat();
  const all = [a, b, c];
  await until(() => all.every((x) => x.peers.size === 2 && [...x.peers.values()].every((p) => p.aes)), "every AES key");
  // Heartbeats sent after the exchange decrypt everywhere.
  for (const x of all) x.sendHeartbeat();
  await until(() => all.every((x) => [...x.peers.values()].every((p) => p.e2ee && p.heartbeat)), "decrypted heartbeats");
  for (const x of all) for (const p of x.peers.values()) assert.equal(p.plaintext, false);
  // Each announced its key (RSA_PUB_KEY with SPKI DER) and answered each
  // other's announcement with AES_KEY (a 1024-bit RSA ciphertext).
  const types = relay.seen.map((s) => s.w.packetType);
  assert.ok(types.filter((t) => t === PacketType.RSA_PUB_KEY).length >= 3);
  assert.ok(types.filter((t) => t === PacketType.AES_KEY).length >= 6);
  for (const s of relay.seen) {
    if (s.w.packetType === PacketType.AES_KEY) assert.equal(s.w.data.length, 128);
    if (s.w.packetType === PacketType.MEDIA) {
      assert.equal(parseMediaPacket(s.w.data), null, "a relayed MediaPacket is plaintext");
      assert.equal(s.w.data.length % 16, 0);
    }
  }
});

test("E2EE off: media is plaintext and the receiver shows the peer as not encrypted", async () => {
  const relay = new Relay();
  const a = await relay.join("alice");
  const b = await relay.join("bob", { e2ee: false });
  b.sendHeartbeat();
  await until(() => a.peers.size === 1 && [...a.peers.values()][0].heartbeat, "bob's heartbeat");
  const p = [...a.peers.values()][0];
  assert.equal(p.e2ee, false);
  assert.equal(p.plaintext, true);
  assert.equal(relay.seen.filter((s) => s.from === b.sessionId && s.w.packetType === PacketType.RSA_PUB_KEY).length, 0);
});

test("KEYFRAME_REQUEST: plaintext, addressed by user id; only the addressee makes a keyframe", async () => {
  const relay = new Relay();
  const [a, b, c] = [await relay.join("alice"), await relay.join("bob"), await relay.join("carol")];
  const asked = { alice: 0, bob: 0 };
  a.local.video = { requestKeyframe: () => asked.alice++, stop() {} };
  b.local.video = { requestKeyframe: () => asked.bob++, stop() {} };
  c.ensurePeer(a.sessionId, "alice");
  c.sendKeyframeRequest(c.peers.get(a.sessionId.toString()), "VIDEO");
  await until(() => asked.alice === 1, "alice's keyframe");
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(asked, { alice: 1, bob: 0 });
  const kfr = relay.seen.find((s) => s.w.packetType === PacketType.MEDIA && parseMediaPacket(s.w.data)?.mediaType === MediaType.KEYFRAME_REQUEST);
  const mp = MediaPacket.decode(kfr.w.data);
  assert.equal(utf8.decode(mp.userId), "alice");
  assert.equal(utf8.decode(mp.data), "VIDEO");
});

test("RTT probes go out unencrypted and their echo gives the round trip", async () => {
  const relay = new Relay();
  const a = await relay.join("alice");
  a.sendProbe();
  assert.ok(a.rttMs !== null && a.rttMs >= 0 && a.rttMs < 1000, String(a.rttMs));
  // An echo of a probe we did not send is not taken as one.
  const before = a.rttMs;
  a.onPacket(PacketWrapper.encode({ packetType: PacketType.MEDIA, userId: utf8.encode("alice"),
    data: MediaPacket.encode({ mediaType: MediaType.RTT, timestamp: 1 }) }));
  assert.equal(a.rttMs, before);
});

test("a peer silent for 15 s is dropped; one that keeps talking stays", async () => {
  const relay = new Relay();
  const [a, b] = [await relay.join("alice"), await relay.join("bob")];
  b.sendHeartbeat();
  await until(() => a.peers.size === 1, "bob");
  const p = [...a.peers.values()][0];
  p.lastHeard = performance.now() - 14000;
  a.tick();
  assert.equal(a.peers.size, 1);
  p.lastHeard = performance.now() - 15500;
  a.tick();
  assert.equal(a.peers.size, 0);
});

test("packets that are not PacketWrappers are counted and ignored", async () => {
  const relay = new Relay();
  const a = await relay.join("alice");
  a.onPacket(Uint8Array.from([0x0a, 0xff]));
  a.onPacket(Uint8Array.from([0x08]));
  assert.equal(a.stats.malformed, 2);
  assert.equal(a.state, "joined");
});
