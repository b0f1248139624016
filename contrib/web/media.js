// Media with WebCodecs, as the videocall.rs client sends it: every encoded
// chunk is one MediaPacket (PROTOCOL.md, "What the videocall.rs client
// does"; its encode/transform.rs and microphone_encoder.rs):
//  - video and screen: VP8 (VP9 where VP8 is missing), frame_type
//    "key"/"delta", the chunk's timestamp (microseconds) and duration,
//    video_metadata {sequence, codec};
//  - audio: Opus, frame_type "key", timestamp in ms since the epoch,
//    audio_metadata {sequence, audio_format ""}.
// Receiving: a VideoDecoder per peer and stream that starts at a keyframe
// (and asks the sender for one), an AudioDecoder per peer whose output is
// scheduled on one AudioContext.

import { MediaType, VideoCodec } from "./proto.js";

export const VIDEO = { maxWidth: 640, maxHeight: 480, fps: 30, bitrate: 700_000, keyframeEveryMs: 3000 };
export const SCREEN = { maxWidth: 1920, maxHeight: 1080, fps: 15, bitrate: 1_500_000, keyframeEveryMs: 3000 };
const AUDIO = { bitrate: 32_000 };

const CODECS = [
  { codec: "vp8", id: VideoCodec.VP8 },
  { codec: "vp09.00.10.08", id: VideoCodec.VP9_PROFILE0_LEVEL10_8BIT },
];
const CODEC_STRING = { [VideoCodec.UNSPECIFIED]: "vp8", [VideoCodec.VP8]: "vp8", [VideoCodec.VP9_PROFILE0_LEVEL10_8BIT]: "vp09.00.10.08" };

export function webCodecsMissing() {
  const need = ["VideoEncoder", "VideoDecoder", "AudioEncoder", "AudioDecoder", "VideoFrame", "AudioData"];
  return need.filter((n) => typeof globalThis[n] !== "function");
}

/** Root mean square of the first channel of an AudioData, 0..1. */
function rms(audioData) {
  const n = audioData.numberOfFrames;
  if (!n) return 0;
  const buf = new Float32Array(n);
  try {
    audioData.copyTo(buf, { planeIndex: 0, format: "f32-planar" });
  } catch (e) {
    return 0;
  }
  let s = 0;
  for (let i = 0; i < n; i++) s += buf[i] * buf[i];
  return Math.sqrt(s / n);
}

/** Frames of a track as an async iterator: MediaStreamTrackProcessor where it exists. */
function trackReader(track) {
  if (typeof MediaStreamTrackProcessor === "function") {
    const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    return { read: () => reader.read(), cancel: () => reader.cancel().catch(() => {}) };
  }
  return null;
}

// Without MediaStreamTrackProcessor (Firefox, Safari): video frames from a
// playing <video> element on a timer, audio through a ScriptProcessorNode.
function videoElementReader(track, fps) {
  // No faster than the camera delivers: more would only encode copies.
  fps = Math.min(fps, track.getSettings().frameRate || fps);
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.srcObject = new MediaStream([track]);
  video.play().catch(() => {});
  let stopped = false;
  const t0 = performance.now();
  return {
    async read() {
      for (;;) {
        if (stopped) return { done: true };
        await new Promise((r) => setTimeout(r, 1000 / fps));
        if (video.readyState >= 2 && video.videoWidth) {
          const timestamp = Math.round((performance.now() - t0) * 1000);
          return { done: false, value: new VideoFrame(video, { timestamp }) };
        }
      }
    },
    cancel() { stopped = true; video.srcObject = null; },
  };
}

function scriptProcessorReader(track) {
  const ctx = new AudioContext();
  const src = ctx.createMediaStreamSource(new MediaStream([track]));
  const node = ctx.createScriptProcessor(1024, 1, 1);
  const queue = [];
  let wake = null, stopped = false, t = 0;
  node.onaudioprocess = (e) => {
    const data = new Float32Array(e.inputBuffer.getChannelData(0));
    queue.push(new AudioData({ format: "f32-planar", sampleRate: ctx.sampleRate, numberOfFrames: data.length,
      numberOfChannels: 1, timestamp: t, data }));
    t += Math.round(data.length * 1e6 / ctx.sampleRate);
    if (queue.length > 50) queue.shift().close();
    if (wake) { wake(); wake = null; }
  };
  src.connect(node);
  node.connect(ctx.destination); // a ScriptProcessorNode runs only when connected; it outputs silence
  return {
    async read() {
      while (!queue.length && !stopped) await new Promise((r) => { wake = r; });
      return stopped ? { done: true } : { done: false, value: queue.shift() };
    },
    cancel() { stopped = true; if (wake) wake(); node.disconnect(); src.disconnect(); ctx.close(); },
  };
}

/**
 * Hands each frame (VideoFrame or AudioData) of reader to fn, and closes it
 * after, until stopped() or the track ends.  An error in fn is reported
 * and costs only that frame.
 */
async function pump(reader, stopped, onError, fn) {
  while (!stopped()) {
    let r;
    try { r = await reader.read(); } catch (e) { return; }
    if (r.done) return;
    try {
      await fn(r.value);
    } catch (e) {
      onError(e);
    } finally {
      r.value.close();
    }
  }
}

/** The first of VP8, VP9 that this browser encodes at the given size. */
async function pickVideoCodec(width, height, bitrate, framerate) {
  for (const c of CODECS) {
    const config = { codec: c.codec, width, height, bitrate, framerate, latencyMode: "realtime" };
    try {
      const s = await VideoEncoder.isConfigSupported(config);
      if (s.supported) return { ...c, config };
    } catch (e) { /* try the next */ }
  }
  throw new Error("this browser cannot encode VP8 or VP9");
}

/**
 * Encodes one video track (camera or screen) into MediaPackets.
 * onPacket(fields) gets the MediaPacket fields of each chunk; call
 * requestKeyframe() on a KEYFRAME_REQUEST.
 */
export class VideoSender {
  constructor(track, { mediaType, profile, onPacket, onError, keyframeEveryMs }) {
    this.track = track;
    this.mediaType = mediaType;
    this.profile = profile;
    this.onPacket = onPacket;
    this.onError = onError;
    this.keyframeEveryMs = keyframeEveryMs;
    this.sequence = 0;
    this.enabled = true;
    this.forceKey = true;
    this.lastKeyAt = 0;
    this.encoder = null;
    this.size = null;
    this.bitrateScale = 1;
    this.stopped = false;
    this.framesEncoded = 0;
    this.framesIn = 0;
    this.framesSkipped = 0;
    this.reader = trackReader(track) || videoElementReader(track, profile.fps);
    this.loop();
  }
  requestKeyframe() { this.forceKey = true; }
  /** Lower the bitrate after the relay reported congestion; it recovers by itself. */
  congested() {
    this.bitrateScale = Math.max(0.25, this.bitrateScale * 0.7);
    this.reconfigure = true;
    clearTimeout(this.recoverTimer);
    this.recoverTimer = setTimeout(() => { this.bitrateScale = 1; this.reconfigure = true; }, 10000);
  }
  async configure(width, height) {
    // Even dimensions keep every codec and decoder happy.
    width &= ~1; height &= ~1;
    const bitrate = Math.round(this.profile.bitrate * this.bitrateScale);
    if (!this.codec || this.size?.width !== width || this.size?.height !== height) {
      try {
        this.codec = await pickVideoCodec(width, height, bitrate, this.profile.fps);
      } catch (e) {
        this.unsupported = true; // say so once, not once a frame
        throw e;
      }
    }
    if (this.encoder && this.encoder.state !== "closed") this.encoder.close();
    this.encoder = new VideoEncoder({
      output: (chunk) => this.output(chunk),
      error: (e) => { this.encoder = null; if (this.onError) this.onError(e); },
    });
    this.encoder.configure({ ...this.codec.config, width, height, bitrate });
    this.size = { width, height };
    this.forceKey = true;
    this.reconfigure = false;
  }
  output(chunk) {
    const data = new Uint8Array(chunk.byteLength);
    chunk.copyTo(data);
    this.onPacket({
      mediaType: this.mediaType,
      data,
      frameType: chunk.type,
      timestamp: chunk.timestamp,
      duration: chunk.duration || 0,
      videoMetadata: { sequence: this.sequence++, codec: this.codec.id },
    });
  }
  loop() {
    return pump(this.reader, () => this.stopped, (e) => this.onError && this.onError(e), async (frame) => {
      this.framesIn++;
      if (!this.enabled || this.stopped || this.unsupported) return;
      const w = frame.displayWidth, h = frame.displayHeight;
      const scale = Math.min(1, this.profile.maxWidth / w, this.profile.maxHeight / h);
      const tw = Math.round(w * scale) & ~1, th = Math.round(h * scale) & ~1;
      if (!this.encoder || this.reconfigure || this.size.width !== tw || this.size.height !== th) {
        await this.configure(tw, th);
      }
      // Frames pile up in a slow encoder: skip rather than fall behind.
      if (this.encoder.encodeQueueSize > 2) { this.framesSkipped++; return; }
      const now = performance.now();
      const key = this.forceKey || now - this.lastKeyAt >= this.keyframeEveryMs;
      if (key) { this.forceKey = false; this.lastKeyAt = now; }
      this.encoder.encode(frame, { keyFrame: key });
      this.framesEncoded++;
    });
  }
  stop() {
    this.stopped = true;
    this.reader.cancel();
    clearTimeout(this.recoverTimer);
    if (this.encoder && this.encoder.state !== "closed") this.encoder.close();
  }
}

/** Encodes the microphone into Opus MediaPackets and measures the speaking level. */
export class AudioSender {
  constructor(track, { onPacket, onLevel, onError }) {
    this.onPacket = onPacket;
    this.onLevel = onLevel;
    this.onError = onError;
    this.sequence = 0;
    this.enabled = true;
    this.stopped = false;
    this.encoder = null;
    this.format = null;
    this.reader = trackReader(track) || scriptProcessorReader(track);
    this.loop();
  }
  configure(sampleRate, numberOfChannels) {
    if (this.encoder && this.encoder.state !== "closed") this.encoder.close();
    this.encoder = new AudioEncoder({
      output: (chunk) => {
        const data = new Uint8Array(chunk.byteLength);
        chunk.copyTo(data);
        this.onPacket({
          mediaType: MediaType.AUDIO,
          data,
          frameType: "key",
          timestamp: Date.now(),
          duration: chunk.duration || 0,
          audioMetadata: { sequence: this.sequence++, audioFormat: "" },
        });
      },
      error: (e) => { this.encoder = null; if (this.onError) this.onError(e); },
    });
    this.encoder.configure({ codec: "opus", sampleRate, numberOfChannels, bitrate: AUDIO.bitrate });
    this.format = { sampleRate, numberOfChannels };
  }
  loop() {
    return pump(this.reader, () => this.stopped, (e) => this.onError && this.onError(e), async (data) => {
      if (this.onLevel) this.onLevel(this.enabled ? rms(data) : 0);
      if (!this.enabled || this.stopped) return;
      if (!this.encoder || this.format.sampleRate !== data.sampleRate ||
          this.format.numberOfChannels !== data.numberOfChannels) {
        this.configure(data.sampleRate, data.numberOfChannels);
      }
      this.encoder.encode(data);
    });
  }
  stop() {
    this.stopped = true;
    this.reader.cancel();
    if (this.encoder && this.encoder.state !== "closed") this.encoder.close();
  }
}

// How long a receiver holds a frame that arrived ahead of a missing one
// before it gives up on the gap (WebTransport streams are not ordered).
const REORDER_WAIT_MS = 80;
const KEYFRAME_REQUEST_INTERVAL_MS = 1000;

/**
 * Decodes one peer's video (or screen) stream into a canvas.  It starts at
 * a keyframe and asks for one (onNeedKeyframe) when it joins mid-stream or
 * loses a frame.  Packets may arrive out of order; it reorders by
 * sequence number within a short window.
 */
export class VideoReceiver {
  constructor({ onNeedKeyframe, onFrame }) {
    this.onNeedKeyframe = onNeedKeyframe;
    this.onFrame = onFrame;
    this.canvas = null;
    this.ctx = null;
    this.decoder = null;
    this.codec = null;
    this.next = null;           // sequence number expected next
    this.pending = new Map();   // sequence -> MediaPacket that came early
    this.waitingSince = 0;
    this.needKey = true;
    this.lastKeyRequest = -Infinity;
    this.framesDecoded = 0;
    this.packets = 0;
    this.lost = 0;
    this.lastFrame = null;      // {width, height}
    this.lastFrameAt = -Infinity;
  }
  attach(canvas) {
    this.canvas = canvas;
    this.ctx = canvas ? canvas.getContext("2d", { alpha: false }) : null;
  }
  askForKeyframe() {
    const now = performance.now();
    if (now - this.lastKeyRequest < KEYFRAME_REQUEST_INTERVAL_MS) return;
    this.lastKeyRequest = now;
    this.onNeedKeyframe();
  }
  push(mp) {
    this.packets++;
    const seq = mp.videoMetadata ? mp.videoMetadata.sequence : null;
    if (seq === null || this.next === null || mp.frameType === "key" && seq >= this.next) {
      // No ordering information, the first packet, or a keyframe: start here.
      if (this.next !== null && seq !== null && seq > this.next) this.lost += seq - this.next;
      this.pending.clear();
      this.decode(mp);
      this.next = seq === null ? null : seq + 1;
      this.drain();
      return;
    }
    if (seq < this.next) return; // late duplicate or after a gap we gave up on
    if (seq === this.next) {
      this.decode(mp);
      this.next++;
      this.drain();
      return;
    }
    this.pending.set(seq, mp);
    if (!this.waitingSince) this.waitingSince = performance.now();
    if (performance.now() - this.waitingSince > REORDER_WAIT_MS || this.pending.size > 8) {
      // Give up on the gap: the frames after it cannot be decoded until the next keyframe.
      const first = Math.min(...this.pending.keys());
      this.lost += first - this.next;
      this.next = first;
      this.needKey = true;
      this.askForKeyframe();
      this.drain();
    }
  }
  drain() {
    while (this.pending.has(this.next)) {
      const mp = this.pending.get(this.next);
      this.pending.delete(this.next);
      this.decode(mp);
      this.next++;
    }
    this.waitingSince = this.pending.size ? performance.now() : 0;
  }
  decode(mp) {
    const key = mp.frameType === "key";
    if (this.needKey && !key) {
      this.askForKeyframe();
      return;
    }
    const codec = CODEC_STRING[mp.videoMetadata ? mp.videoMetadata.codec : 0] || "vp8";
    try {
      if (!this.decoder || this.decoder.state === "closed" || codec !== this.codec) {
        if (!key) { this.needKey = true; this.askForKeyframe(); return; }
        if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
        this.decoder = new VideoDecoder({
          output: (frame) => this.draw(frame),
          error: () => { this.decoder = null; this.needKey = true; },
        });
        this.decoder.configure({ codec, optimizeForLatency: true });
        this.codec = codec;
      }
      if (this.decoder.decodeQueueSize > 10 && !key) return; // far behind: wait for the next keyframe
      this.decoder.decode(new EncodedVideoChunk({
        type: key ? "key" : "delta", timestamp: mp.timestamp, duration: mp.duration || undefined, data: mp.data,
      }));
      this.needKey = false;
    } catch (e) {
      this.needKey = true;
      this.askForKeyframe();
    }
  }
  draw(frame) {
    try {
      this.framesDecoded++;
      this.lastFrameAt = performance.now();
      const w = frame.displayWidth, h = frame.displayHeight;
      this.lastFrame = { width: w, height: h };
      if (this.canvas) {
        if (this.canvas.width !== w || this.canvas.height !== h) { this.canvas.width = w; this.canvas.height = h; }
        this.ctx.drawImage(frame, 0, 0, w, h);
      }
      if (this.onFrame) this.onFrame();
    } finally {
      frame.close();
    }
  }
  close() {
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = null;
    this.pending.clear();
  }
}

/**
 * The page's audio output: one AudioContext; each peer's decoded audio is
 * scheduled back to back with a small jitter allowance.
 */
export class AudioOut {
  constructor() {
    this.ctx = null;
  }
  ensure() {
    if (!this.ctx) this.ctx = new AudioContext({ latencyHint: "interactive" });
    return this.ctx;
  }
  get suspended() { return !this.ctx || this.ctx.state !== "running"; }
  resume() { return this.ensure().resume(); }
  close() { if (this.ctx) this.ctx.close(); this.ctx = null; }
}

const JITTER_S = 0.06;      // scheduled this far ahead of now when a peer (re)starts
const MAX_AHEAD_S = 0.3;    // more queued than this: drop to catch up

/** Decodes one peer's Opus packets and plays them; tracks their level. */
export class AudioReceiver {
  constructor(out, { onLevel }) {
    this.out = out;
    this.onLevel = onLevel;
    this.decoder = null;
    this.framesDecoded = 0;
    this.packets = 0;
    this.lastSeq = null;
    this.lost = 0;
    this.nextTime = 0;
    this.gain = null;
  }
  push(mp) {
    this.packets++;
    const seq = mp.audioMetadata ? mp.audioMetadata.sequence : null;
    let data = mp.data;
    if (mp.audioMetadata && mp.audioMetadata.audioFormat === "opus-red") {
      // videocall.rs redundancy: [u32 LE primary length][primary][u32 LE seq][previous frame].
      if (data.length < 8) return;
      const len = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0, true);
      if (4 + len + 4 > data.length) return;
      const redSeq = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(4 + len, true);
      const redundant = data.subarray(8 + len);
      if (seq !== null && this.lastSeq !== null && redSeq === this.lastSeq + 1 && redSeq < seq && redundant.length) {
        this.decodeOne(redundant, mp.timestamp - 20);
        this.lastSeq = redSeq;
      }
      data = data.subarray(4, 4 + len);
    }
    if (seq !== null) {
      if (this.lastSeq !== null && seq <= this.lastSeq) return; // late: its time has passed
      if (this.lastSeq !== null) this.lost += seq - this.lastSeq - 1;
      this.lastSeq = seq;
    }
    this.decodeOne(data, mp.timestamp);
  }
  decodeOne(data, timestampMs) {
    try {
      if (!this.decoder || this.decoder.state === "closed") {
        this.decoder = new AudioDecoder({
          output: (ad) => this.play(ad),
          error: () => { this.decoder = null; },
        });
        this.decoder.configure({ codec: "opus", sampleRate: 48000, numberOfChannels: 1 });
      }
      this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: Math.round(timestampMs * 1000), data }));
    } catch (e) {
      this.decoder = null;
    }
  }
  play(ad) {
    try {
      this.framesDecoded++;
      if (this.onLevel) this.onLevel(rms(ad));
      const ctx = this.out.ctx;
      if (!ctx || ctx.state !== "running") return;
      const n = ad.numberOfFrames;
      const buf = ctx.createBuffer(1, n, ad.sampleRate);
      ad.copyTo(buf.getChannelData(0), { planeIndex: 0, format: "f32-planar" });
      const now = ctx.currentTime;
      if (this.nextTime < now || this.nextTime > now + MAX_AHEAD_S) this.nextTime = now + JITTER_S;
      if (!this.gain) { this.gain = ctx.createGain(); this.gain.connect(ctx.destination); }
      const src = ctx.createBufferSource();
      src.buffer = buf;
      src.connect(this.gain);
      src.start(this.nextTime);
      this.nextTime += buf.duration;
    } catch (e) {
      // A closed context or a format the browser cannot convert: skip the frame.
    } finally {
      ad.close();
    }
  }
  close() {
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = null;
    if (this.gain) this.gain.disconnect();
  }
}
