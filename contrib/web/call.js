// One call: the connection, the peers, the key exchange and the media, with
// no DOM.  app.js draws it.  Behaviour follows the videocall.rs client
// (PROTOCOL.md, "What the videocall.rs client does"):
//  - a peer is whoever sends a packet with a nonzero session id that is not
//    the relay's own (the relay stamps session ids); PARTICIPANT_JOINED
//    gives its display name, PARTICIPANT_LEFT or 15 s of silence removes it;
//  - E2EE: RSA_PUB_KEY to every new peer, AES_KEY answers, AES-128-CBC over
//    every MediaPacket except RTT probes and KEYFRAME_REQUESTs, which the
//    relay and the sender must be able to read;
//  - a HEARTBEAT every second and on a speaking change, an RTT probe every
//    second (plaintext, so the relay echoes it).

import {
  PacketWrapper, PacketType, MediaPacket, MediaType, MeetingPacket, MeetingEventType,
  SYSTEM_USER, utf8, parseMediaPacket,
} from "./proto.js";
import { LocalKeys } from "./e2ee.js";
import { connect } from "./transport.js";
import { VideoSender, AudioSender, VideoReceiver, AudioReceiver, AudioOut, VIDEO, SCREEN } from "./media.js";

export const ROOM_RE = /^[A-Za-z0-9_-]+$/;
export const USER_RE = /^[A-Za-z0-9_.@+-]+$/;
const PEER_TIMEOUT_MS = 15000;
const SESSION_ASSIGNED_TIMEOUT_MS = 5000;
const SPEAKING_LEVEL = 0.02;
const SPEAKING_HOLD_MS = 400;
const HEARTBEAT_FRESH_MS = 2500;
const REANNOUNCE_MS = 3000;
const RECONNECT_DELAYS_MS = [0, 500, 1000, 2000, 4000];
// A peer whose identity came back on a new session (a reconnect) and has
// been silent this long on the old one is the same person: drop the old tile.
const SUPERSEDED_MS = 1500;

export class Peer {
  constructor(call, sessionId, user) {
    this.sessionId = sessionId;
    this.key = sessionId.toString();
    this.user = user;
    this.displayName = "";
    this.createdAt = performance.now();
    this.lastHeard = this.createdAt;
    this.aes = null;
    this.e2ee = false;          // its latest media was decrypted with the key it sent us
    this.plaintext = false;     // it sends unencrypted media
    this.undecryptable = 0;
    this.heartbeat = null;
    this.heartbeatAt = -Infinity;
    this.level = 0;
    this.loudAt = -Infinity;
    this.chain = Promise.resolve();
    this.jitterMs = 0;
    this.lastTransit = null;
    this.stats = { fps: 0, lossPct: 0, quality: 0 };
    this.prev = { frames: 0, packets: 0, lost: 0, at: performance.now() };
    const keyframe = (what) => () => call.sendKeyframeRequest(this, what);
    this.video = new VideoReceiver({ onNeedKeyframe: keyframe("VIDEO") });
    this.screen = new VideoReceiver({ onNeedKeyframe: keyframe("SCREEN") });
    this.audio = new AudioReceiver(call.audioOut, {
      onLevel: (l) => { this.level = l; if (l > SPEAKING_LEVEL) this.loudAt = performance.now(); },
    });
  }
  // Without a display name (PARTICIPANT_JOINED carries one), the identity;
  // the page makes identities from names with "_" for spaces.
  get name() { return this.displayName || this.user.replace(/_/g, " "); }
  get speaking() {
    const now = performance.now();
    const hb = this.heartbeat && now - this.heartbeatAt < HEARTBEAT_FRESH_MS && this.heartbeat.isSpeaking;
    return Boolean(hb || now - this.loudAt < SPEAKING_HOLD_MS);
  }
  /** What the peer's last heartbeat said, with defaults until one comes. */
  get videoEnabled() { return this.heartbeat ? this.heartbeat.videoEnabled : true; }
  get audioEnabled() { return this.heartbeat ? this.heartbeat.audioEnabled : true; }
  get screenEnabled() { return this.heartbeat ? this.heartbeat.screenEnabled : false; }
  close() { this.video.close(); this.screen.close(); this.audio.close(); }
}

/**
 * A call.  Events (EventTarget): "state", "peers" (added, removed or
 * renamed), "local" (own media changed), "toast" ({detail: text}), "meeting".
 */
export class Call extends EventTarget {
  constructor({ user, displayName, room, token, mode, e2ee, base, log }) {
    super();
    this.user = user;
    this.displayName = displayName || user;
    this.room = room;
    this.token = token || "";
    this.mode = mode || "auto";
    this.e2ee = e2ee !== false;
    this.base = base;
    this.log = log || ((...a) => console.log("[vcgate]", ...a));
    this.state = "idle";
    this.error = "";
    this.transport = null;
    this.sessionId = 0n;
    this.peers = new Map();
    this.keys = null;
    this.audioOut = new AudioOut();
    this.sendChain = Promise.resolve();
    this.timers = [];
    this.rttMs = null;
    this.probes = new Set();
    this.startTime = null;
    this.joinedAt = 0;
    this.local = { stream: null, audio: null, video: null, screen: null, screenStream: null,
      micOn: false, camOn: false, speakingUntil: 0, speaking: false, level: 0 };
    this.stats = { malformed: 0, sent: 0, dropped: 0 };
    this.lastAnnounce = -Infinity;
    this.mediaErrors = new Set();
  }

  setState(state, error = "") {
    this.state = state;
    this.error = error;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, error } }));
  }
  toast(text) { this.dispatchEvent(new CustomEvent("toast", { detail: text })); }
  changed(what) { this.dispatchEvent(new CustomEvent(what)); }

  /** Connect, exchange keys and start sending; resolves when joined, rejects when it failed. */
  async join() {
    this.setState("connecting");
    try {
      this.audioOut.ensure();
      const keys = this.e2ee ? LocalKeys.create(2048) : Promise.resolve(null);
      keys.catch(() => {}); // awaited below; a failed connection may come first
      await this.open(this.mode, keys);
      if (this.state !== "connecting") return;
      this.joinedAt = performance.now();
      this.setState("joined");
      this.every(1000, () => this.tick());
      this.sendHeartbeat();
      this.sendProbe();
    } catch (e) {
      this.log("join failed: " + e.message);
      this.teardown();
      this.setState("failed", e.message);
      throw e;
    }
  }

  /**
   * One connection to the lobby: resolves once the relay has assigned the
   * session (its first packet), so that "joined" is never said early.
   */
  async open(mode, keys = null) {
    let assigned;
    this.sessionAssigned = new Promise((resolve) => { assigned = resolve; });
    this.onAssigned = assigned;
    const transport = await connect({
      base: this.base,
      path: this.token ? "/lobby?token=" + encodeURIComponent(this.token)
        : "/lobby/" + encodeURIComponent(this.user) + "/" + encodeURIComponent(this.room),
      mode,
      log: this.log,
    });
    if (this.state !== "connecting") { transport.close(); return; } // left while connecting
    this.transport = transport;
    transport.onpacket = (b) => { if (this.transport === transport) this.onPacket(b); };
    transport.onclose = ({ code, reason }) => { if (this.transport === transport) this.lost(code, reason); };
    if (keys) this.keys = await keys;
    let timer;
    const ok = await Promise.race([this.sessionAssigned.then(() => true),
      new Promise((r) => { timer = setTimeout(() => r(false), SESSION_ASSIGNED_TIMEOUT_MS); })]);
    clearTimeout(timer);
    if (!ok) {
      if (this.transport === transport) this.transport = null;
      transport.close();
      throw new Error("the gateway accepted the connection but assigned no session");
    }
  }

  /** Start sending the camera and microphone of stream (either may be missing). */
  startMedia(stream) {
    this.local.stream = stream;
    const vt = stream && stream.getVideoTracks()[0];
    const at = stream && stream.getAudioTracks()[0];
    if (vt) {
      this.local.video = new VideoSender(vt, {
        mediaType: MediaType.VIDEO, profile: VIDEO, keyframeEveryMs: VIDEO.keyframeEveryMs,
        onPacket: (f) => this.sendMedia(f, { droppable: f.frameType !== "key", sender: this.local.video }),
        onError: (e) => this.mediaError("camera", e),
      });
      this.local.camOn = true;
    }
    if (at) {
      this.local.audio = new AudioSender(at, {
        onPacket: (f) => this.sendMedia(f),
        onLevel: (l) => this.localLevel(l),
        onError: (e) => this.mediaError("microphone", e),
      });
      this.local.micOn = true;
    }
    this.changed("local");
    this.sendHeartbeat();
  }

  /** An encoder failed: logged every time, shown once per kind of media. */
  mediaError(kind, e) {
    this.log(kind + " encoder: " + e.message);
    if (this.mediaErrors.has(kind)) return;
    this.mediaErrors.add(kind);
    this.toast(`Your ${kind} could not be encoded: ${e.message}`);
  }

  localLevel(level) {
    this.local.level = level;
    const now = performance.now();
    if (level > SPEAKING_LEVEL && this.local.micOn) this.local.speakingUntil = now + SPEAKING_HOLD_MS;
    const speaking = this.local.micOn && now < this.local.speakingUntil;
    if (speaking !== this.local.speaking) {
      this.local.speaking = speaking;
      this.sendHeartbeat(); // videocall.rs sends one on every speaking change
      this.changed("local");
    }
  }

  setMic(on) {
    const t = this.local.stream && this.local.stream.getAudioTracks()[0];
    if (!t || !this.local.audio) return false;
    t.enabled = on;
    this.local.audio.enabled = on;
    this.local.micOn = on;
    if (!on) this.local.speaking = false;
    this.sendHeartbeat();
    this.changed("local");
    return true;
  }

  setCamera(on) {
    const t = this.local.stream && this.local.stream.getVideoTracks()[0];
    if (!t || !this.local.video) return false;
    t.enabled = on;
    this.local.video.enabled = on;
    if (on) this.local.video.requestKeyframe();
    this.local.camOn = on;
    this.sendHeartbeat();
    this.changed("local");
    return true;
  }

  async startScreenShare() {
    if (this.local.screen) return;
    const stream = await navigator.mediaDevices.getDisplayMedia({
      video: { frameRate: { ideal: SCREEN.fps, max: SCREEN.fps } }, audio: false,
    });
    const track = stream.getVideoTracks()[0];
    this.local.screenStream = stream;
    this.local.screen = new VideoSender(track, {
      mediaType: MediaType.SCREEN, profile: SCREEN, keyframeEveryMs: SCREEN.keyframeEveryMs,
      onPacket: (f) => this.sendMedia(f, { droppable: f.frameType !== "key", sender: this.local.screen }),
      onError: (e) => this.mediaError("screen", e),
    });
    track.addEventListener("ended", () => this.stopScreenShare());
    this.sendHeartbeat();
    this.changed("local");
  }

  stopScreenShare() {
    if (!this.local.screen) return;
    this.local.screen.stop();
    this.local.screenStream.getTracks().forEach((t) => t.stop());
    this.local.screen = null;
    this.local.screenStream = null;
    this.sendHeartbeat();
    this.changed("local");
  }

  leave() {
    if (this.state === "idle") return;
    this.teardown();
    this.setState("idle");
  }

  /**
   * The connection ended under a joined call: connect again, as the
   * videocall.rs client does.  The gateway closes with 1001 when it drains
   * or rotates a WebTransport session (its bound on ngtcp2's per-stream
   * records); a same-identity rejoin within its presence grace is not
   * announced, and the others' pages move our tile to the new session
   * (see tick()).  Media keeps flowing into the encoders meanwhile and is
   * dropped; after a few failed tries the call has failed.
   */
  async lost(code, reason) {
    if (this.state !== "joined") return;
    const kind = this.transport ? this.transport.kind : null;
    this.transport = null;
    const why = `${reason}${code ? ", code " + code : ""}`;
    this.log("connection lost (" + why + "): reconnecting");
    this.setState("connecting");
    let last = null;
    for (const delay of RECONNECT_DELAYS_MS) {
      await new Promise((r) => setTimeout(r, delay));
      if (this.state !== "connecting") return; // left meanwhile
      // The transport that worked first; then whatever works.
      const mode = this.mode !== "auto" ? this.mode : last === null ? (kind === "websocket" ? "ws" : "wt") : "auto";
      try {
        await this.open(mode);
        if (this.state !== "connecting") return;
        this.setState("joined");
        for (const s of [this.local.video, this.local.screen]) if (s) s.requestKeyframe();
        this.sendHeartbeat();
        this.sendProbe();
        return;
      } catch (e) {
        last = e;
        this.log("reconnect: " + e.message);
      }
    }
    this.teardown();
    this.setState("failed", `the connection to the gateway was lost (${why}) and could not be restored${last ? ": " + last.message : ""}`);
  }

  teardown() {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const s of [this.local.video, this.local.audio, this.local.screen]) if (s) s.stop();
    for (const st of [this.local.stream, this.local.screenStream]) if (st) st.getTracks().forEach((t) => t.stop());
    this.local = { ...this.local, stream: null, audio: null, video: null, screen: null, screenStream: null,
      micOn: false, camOn: false, speaking: false };
    if (this.transport) this.transport.close();
    this.transport = null;
    for (const p of this.peers.values()) p.close();
    this.peers.clear();
    this.audioOut.close();
    this.changed("peers");
    this.changed("local");
  }

  every(ms, fn) { this.timers.push(setInterval(fn, ms)); }

  // ------------------------------------------------------------ sending

  sendWrapper(packetType, data, opts = {}) {
    if (!this.transport) return false;
    const bytes = PacketWrapper.encode({ packetType, userId: utf8.encode(this.user), data });
    const ok = this.transport.send(bytes, opts);
    if (ok) this.stats.sent++; else this.stats.dropped++;
    return ok;
  }

  /**
   * A MediaPacket, encrypted unless plain.  Encrypted packets leave in
   * order although encryption is asynchronous; plaintext ones (RTT probes,
   * keyframe requests) leave at once, so a probe measures the network and
   * not the queue.
   */
  sendMedia(fields, { droppable = false, datagram = false, plain = false, sender = null } = {}) {
    const bytes = MediaPacket.encode(fields);
    const encrypt = this.e2ee && !plain && this.keys;
    if (!encrypt) {
      const ok = this.sendWrapper(PacketType.MEDIA, bytes, { droppable, datagram });
      if (!ok && sender) sender.requestKeyframe();
      return;
    }
    this.sendChain = this.sendChain.then(async () => {
      const data = await this.keys.aes.encrypt(bytes);
      const ok = this.sendWrapper(PacketType.MEDIA, data, { droppable, datagram });
      // A dropped delta frame breaks the frames after it: restart at a keyframe.
      if (!ok && sender) sender.requestKeyframe();
    }).catch((e) => this.log("send: " + e.message));
  }

  sendHeartbeat() {
    if (this.state !== "joined") return;
    this.sendMedia({
      mediaType: MediaType.HEARTBEAT,
      userId: utf8.encode(this.user),
      timestamp: Date.now(),
      heartbeatMetadata: {
        videoEnabled: this.local.camOn, audioEnabled: this.local.micOn,
        screenEnabled: Boolean(this.local.screen), isSpeaking: this.local.speaking,
      },
    });
  }

  sendProbe() {
    const ts = performance.timeOrigin + performance.now();
    this.probes.add(ts);
    if (this.probes.size > 10) this.probes.delete(this.probes.values().next().value);
    this.sendMedia({ mediaType: MediaType.RTT, timestamp: ts }, { plain: true, datagram: true });
  }

  sendKeyframeRequest(peer, what) {
    // Plaintext, so the sender can read it without our key and the relay
    // can rate-limit it (peer_decode_manager.rs does the same).
    this.sendMedia({ mediaType: MediaType.KEYFRAME_REQUEST, userId: utf8.encode(peer.user), data: utf8.encode(what) },
      { plain: true });
  }

  announceKey() {
    if (!this.e2ee || !this.keys) return;
    this.lastAnnounce = performance.now();
    this.sendWrapper(PacketType.RSA_PUB_KEY, this.keys.rsaPacket(this.user));
  }

  // ------------------------------------------------------------ receiving

  onPacket(bytes) {
    let w;
    try {
      w = PacketWrapper.decode(bytes);
    } catch (e) {
      this.stats.malformed++;
      return;
    }
    const from = utf8.decode(w.userId);
    if (from === SYSTEM_USER) return this.onSystem(w);
    // Room events come from the relay (or a meeting service speaking as
    // it); a participant's MEETING packet must not end the call for others.
    if (w.packetType === PacketType.MEETING) return;
    if (w.packetType === PacketType.MEDIA && from === this.user && this.onEcho(w)) return;
    if (w.sessionId === 0n || w.sessionId === this.sessionId) return;
    const peer = this.ensurePeer(w.sessionId, from);
    peer.lastHeard = performance.now();
    peer.chain = peer.chain.then(() => this.onPeerPacket(peer, w)).catch((e) => this.log("peer packet: " + e.message));
  }

  onSystem(w) {
    switch (w.packetType) {
      case PacketType.SESSION_ASSIGNED:
        this.sessionId = w.sessionId;
        if (this.onAssigned) this.onAssigned();
        break;
      case PacketType.MEETING:
        this.onMeeting(w);
        break;
      case PacketType.CONGESTION:
        // The relay dropped our packets for a slow receiver: send less.
        for (const s of [this.local.video, this.local.screen]) if (s) s.congested();
        break;
      default:
        break;
    }
  }

  onEcho(w) {
    const mp = parseMediaPacket(w.data);
    if (!mp || mp.mediaType !== MediaType.RTT || !this.probes.has(mp.timestamp)) return false;
    this.probes.delete(mp.timestamp);
    const rtt = performance.timeOrigin + performance.now() - mp.timestamp;
    this.rttMs = this.rttMs === null ? rtt : this.rttMs * 0.7 + rtt * 0.3;
    return true;
  }

  onMeeting(w) {
    let m;
    try { m = MeetingPacket.decode(w.data); } catch (e) { this.stats.malformed++; return; }
    const user = utf8.decode(m.targetUserId);
    switch (m.eventType) {
      case MeetingEventType.MEETING_STARTED:
        this.startTime = m.startTimeMs || Date.now();
        this.changed("meeting");
        break;
      case MeetingEventType.MEETING_ENDED:
        this.toast(m.message || "The meeting has ended");
        this.leave();
        break;
      case MeetingEventType.PARTICIPANT_JOINED: {
        if (!m.sessionId || m.sessionId === this.sessionId) break;
        const known = this.peers.has(m.sessionId.toString());
        const peer = this.ensurePeer(m.sessionId, user);
        // A display name that is only the identity again (the legacy path
        // has no other) is no better than the identity shown with spaces.
        const name = utf8.decode(m.displayName);
        if (name && name !== peer.user && name !== peer.displayName) { peer.displayName = name; this.changed("peers"); }
        // Members already present are announced right after we join: no toast for them.
        if (!known && performance.now() - this.joinedAt > 2000) this.toast(`${peer.name} joined`);
        break;
      }
      case MeetingEventType.PARTICIPANT_LEFT: {
        const gone = m.sessionId ? [this.peers.get(m.sessionId.toString())]
          : [...this.peers.values()].filter((p) => p.user === user);
        for (const p of gone) if (p) this.removePeer(p, `${p.name} left`);
        break;
      }
      default:
        break;
    }
  }

  ensurePeer(sessionId, user) {
    const key = sessionId.toString();
    let peer = this.peers.get(key);
    if (peer) return peer;
    peer = new Peer(this, sessionId, user);
    // A reconnect within the relay's presence grace is not announced, so a
    // new session of a known identity keeps the name it had.
    for (const p of this.peers.values()) if (p.user === user && p.displayName) peer.displayName = p.displayName;
    this.peers.set(key, peer);
    this.changed("peers");
    // videocall.rs: a client that sees a new peer announces its key.
    this.announceKey();
    return peer;
  }

  removePeer(peer, why) {
    if (this.peers.get(peer.key) !== peer) return;
    this.peers.delete(peer.key);
    peer.close();
    if (why) this.toast(why);
    this.changed("peers");
  }

  async onPeerPacket(peer, w) {
    if (this.peers.get(peer.key) !== peer) return; // removed meanwhile
    switch (w.packetType) {
      case PacketType.RSA_PUB_KEY: {
        if (!this.e2ee || !this.keys) return;
        const data = await this.keys.aesKeyFor(w.data);
        this.sendWrapper(PacketType.AES_KEY, data);
        return;
      }
      case PacketType.AES_KEY: {
        if (!this.e2ee || !this.keys) return;
        const aes = await this.keys.openAesKey(w.data);
        if (aes) peer.aes = aes; // null: it was for another member
        return;
      }
      case PacketType.MEDIA:
        return this.onPeerMedia(peer, w.data);
      default:
        return;
    }
  }

  async onPeerMedia(peer, data) {
    const plain = parseMediaPacket(data);
    if (plain && plain.mediaType === MediaType.KEYFRAME_REQUEST) {
      const target = utf8.decode(plain.userId);
      if (target && target !== this.user) return;
      const s = utf8.decode(plain.data) === "SCREEN" ? this.local.screen : this.local.video;
      if (s) s.requestKeyframe();
      return;
    }
    let mp = null, encrypted = false;
    if (peer.aes) {
      const d = await peer.aes.decrypt(data);
      if (d) { mp = parseMediaPacket(d); encrypted = Boolean(mp); }
    }
    if (!mp && plain) mp = plain;
    if (!mp) {
      // Encrypted with a key we do not have (yet): our announcement may have
      // crossed its arrival, so announce again, at most every few seconds.
      peer.undecryptable++;
      if (this.e2ee && performance.now() - this.lastAnnounce > REANNOUNCE_MS) this.announceKey();
      return;
    }
    if (peer.e2ee !== encrypted || peer.plaintext === encrypted) {
      peer.e2ee = encrypted;
      peer.plaintext = !encrypted;
      this.changed("peers");
    }
    switch (mp.mediaType) {
      case MediaType.VIDEO: peer.video.push(mp); break;
      case MediaType.SCREEN: peer.screen.push(mp); break;
      case MediaType.AUDIO:
        this.transit(peer, mp.timestamp);
        peer.audio.push(mp);
        break;
      case MediaType.HEARTBEAT: {
        const before = peer.heartbeat;
        peer.heartbeat = mp.heartbeatMetadata || { videoEnabled: false, audioEnabled: false, screenEnabled: false, isSpeaking: false };
        peer.heartbeatAt = performance.now();
        if (!before || before.videoEnabled !== peer.heartbeat.videoEnabled ||
            before.audioEnabled !== peer.heartbeat.audioEnabled || before.screenEnabled !== peer.heartbeat.screenEnabled) {
          this.changed("peers");
        }
        break;
      }
      default: break;
    }
  }

  // Interarrival jitter (RFC 3550 6.4.1) of a peer's audio, whose
  // timestamps are the sender's clock in ms: a clock offset cancels out.
  transit(peer, senderMs) {
    if (!senderMs) return;
    const t = Date.now() - senderMs;
    if (peer.lastTransit !== null) peer.jitterMs += (Math.abs(t - peer.lastTransit) - peer.jitterMs) / 16;
    peer.lastTransit = t;
  }

  tick() {
    const now = performance.now();
    const peers = [...this.peers.values()];
    for (const p of peers) {
      if (now - p.lastHeard > PEER_TIMEOUT_MS) { this.removePeer(p, `${p.name} lost connection`); continue; }
      const successor = peers.find((q) => q !== p && q.user === p.user && q.createdAt > p.createdAt &&
        now - q.lastHeard < SUPERSEDED_MS);
      if (successor && now - p.lastHeard > SUPERSEDED_MS) { this.removePeer(p, ""); continue; }
      const dt = (now - p.prev.at) / 1000;
      const frames = p.video.framesDecoded;
      const packets = p.video.packets + p.audio.packets;
      const lost = p.video.lost + p.audio.lost;
      const dPackets = packets - p.prev.packets, dLost = lost - p.prev.lost;
      p.stats.fps = Math.round((frames - p.prev.frames) / dt);
      p.stats.lossPct = dPackets + dLost > 0 ? (100 * dLost) / (dPackets + dLost) : 0;
      p.prev = { frames, packets, lost, at: now };
      const silentMs = now - p.lastHeard;
      let q = 3;
      if (p.stats.lossPct > 2 || p.jitterMs > 30 || (this.rttMs || 0) > 250) q = 2;
      if (p.stats.lossPct > 10 || p.jitterMs > 80 || (this.rttMs || 0) > 600 || silentMs > 2000) q = 1;
      if (silentMs > 5000) q = 0;
      p.stats.quality = q;
    }
    this.sendHeartbeat();
    this.sendProbe();
  }
}
