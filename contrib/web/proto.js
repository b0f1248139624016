// Protobuf (proto3) encoding and decoding of exactly the messages of the
// videocall.rs wire protocol (shared PROTOCOL.md, proto/*.proto).  Field
// numbers and enum values there are the contract; the JavaScript names are
// the proto names in camelCase.
//
// Why not a protobuf library: the page must run with no build step and no
// dependency fetched at run time, and these nine small messages need only
// varints, 64-bit floats, 32-bit floats and length-delimited fields.
//
// Values: uint64 fields that carry random 64-bit ids (session_id) are
// BigInt, because Number loses bits above 2^53; counters and times
// (sequence, start_time_ms, participant_count) are Number.  bytes fields are
// Uint8Array, string fields are decoded as strict UTF-8 (invalid UTF-8 is a
// decoding error, as in the Rust client's parser), enums are Number.
//
// decode() is strict on structure (truncation, an unknown wire type, a
// known field with the wrong wire type, a field number of 0 and overlong
// varints are errors) and skips unknown fields, as protobuf does.  encode()
// omits fields at their proto3 default.

export const PacketType = Object.freeze({
  UNKNOWN: 0, RSA_PUB_KEY: 1, AES_KEY: 2, MEDIA: 3, CONNECTION: 4,
  DIAGNOSTICS: 5, HEALTH: 6, MEETING: 7, SESSION_ASSIGNED: 8, CONGESTION: 9,
});

export const MediaType = Object.freeze({
  UNKNOWN: 0, VIDEO: 1, AUDIO: 2, SCREEN: 3, HEARTBEAT: 4, RTT: 5, KEYFRAME_REQUEST: 6,
});

export const VideoCodec = Object.freeze({
  UNSPECIFIED: 0, VP8: 1, VP9_PROFILE0_LEVEL10_8BIT: 2,
});

export const MeetingEventType = Object.freeze({
  UNKNOWN: 0, MEETING_STARTED: 1, MEETING_ENDED: 2, PARTICIPANT_JOINED: 3,
  PARTICIPANT_LEFT: 4, MEETING_ACTIVATED: 5, PARTICIPANT_ADMITTED: 6,
  PARTICIPANT_REJECTED: 7, WAITING_ROOM_UPDATED: 8,
});

/** The identity the relay puts on the packets it makes itself. */
export const SYSTEM_USER = "system-&^%$#@!";

export class ProtoError extends Error {}

const WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5;

// Scalar kinds: [wire type, decode(reader), encode(writer, value), isDefault(value)].
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

const U64_MASK = (1n << 64n) - 1n;

const KINDS = {
  enum: [WIRE_VARINT, (r) => Number(BigInt.asIntN(32, r.varint())), (w, v) => w.varint(BigInt(v)), (v) => v === 0],
  bool: [WIRE_VARINT, (r) => r.varint() !== 0n, (w, v) => w.varint(v ? 1n : 0n), (v) => !v],
  uint32: [WIRE_VARINT, (r) => Number(BigInt.asUintN(32, r.varint())), (w, v) => w.varint(BigInt(v >>> 0)), (v) => v === 0],
  // A uint64 kept as BigInt (random ids).
  uint64: [WIRE_VARINT, (r) => r.varint(), (w, v) => w.varint(BigInt(v) & U64_MASK), (v) => BigInt(v) === 0n],
  // A uint64 or int64 read as Number (counters, milliseconds).
  uint64num: [WIRE_VARINT, (r) => Number(r.varint()), (w, v) => w.varint(BigInt(Math.trunc(v))), (v) => v === 0],
  int64num: [WIRE_VARINT, (r) => Number(BigInt.asIntN(64, r.varint())), (w, v) => w.varint(BigInt.asUintN(64, BigInt(Math.trunc(v)))), (v) => v === 0],
  double: [WIRE_I64, (r) => r.double(), (w, v) => w.double(v), (v) => v === 0 && !Object.is(v, -0)],
  float: [WIRE_I32, (r) => r.float(), (w, v) => w.float(v), (v) => v === 0 && !Object.is(v, -0)],
  string: [WIRE_LEN, (r) => {
    try { return utf8Decoder.decode(r.bytes()); } catch (e) { throw new ProtoError("invalid UTF-8 in a string field"); }
  }, (w, v) => w.bytes(utf8Encoder.encode(v)), (v) => v === ""],
  bytes: [WIRE_LEN, (r) => r.bytes().slice(), (w, v) => w.bytes(v), (v) => v.length === 0],
};

const DEFAULTS = {
  enum: () => 0, bool: () => false, uint32: () => 0, uint64: () => 0n, uint64num: () => 0,
  int64num: () => 0, double: () => 0, float: () => 0, string: () => "", bytes: () => new Uint8Array(0),
};

class Reader {
  constructor(buf) {
    if (!(buf instanceof Uint8Array)) buf = new Uint8Array(buf);
    this.buf = buf;
    this.pos = 0;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  get done() { return this.pos >= this.buf.length; }
  varint() {
    let v = 0n, shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new ProtoError("truncated varint");
      const b = this.buf[this.pos++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) {
        // The 10th byte may only hold the 64th bit.
        if (i === 9 && b > 1) throw new ProtoError("varint overflows 64 bits");
        return v;
      }
      shift += 7n;
    }
    throw new ProtoError("varint longer than 10 bytes");
  }
  // Lengths and tags: a varint that must fit a safe Number.
  small() {
    const v = this.varint();
    if (v > 0x7fffffffn) throw new ProtoError("length or tag out of range");
    return Number(v);
  }
  take(n) {
    if (n > this.buf.length - this.pos) throw new ProtoError("truncated field");
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  bytes() { return this.take(this.small()); }
  double() { const p = this.pos; this.take(8); return this.view.getFloat64(p, true); }
  float() { const p = this.pos; this.take(4); return this.view.getFloat32(p, true); }
  skip(wire) {
    switch (wire) {
      case WIRE_VARINT: this.varint(); return;
      case WIRE_I64: this.take(8); return;
      case WIRE_LEN: this.take(this.small()); return;
      case WIRE_I32: this.take(4); return;
      default: throw new ProtoError("unsupported wire type " + wire);
    }
  }
}

class Writer {
  constructor() { this.chunks = []; this.len = 0; }
  raw(u8) { this.chunks.push(u8); this.len += u8.length; }
  varint(v) {
    const out = [];
    v = BigInt.asUintN(64, v);
    do {
      let b = Number(v & 0x7fn);
      v >>= 7n;
      if (v) b |= 0x80;
      out.push(b);
    } while (v);
    this.raw(Uint8Array.from(out));
  }
  tag(num, wire) { this.varint(BigInt((num << 3) | wire)); }
  bytes(u8) { this.varint(BigInt(u8.length)); this.raw(u8); }
  double(v) { const b = new Uint8Array(8); new DataView(b.buffer).setFloat64(0, v, true); this.raw(b); }
  float(v) { const b = new Uint8Array(4); new DataView(b.buffer).setFloat32(0, v, true); this.raw(b); }
  finish() {
    const out = new Uint8Array(this.len);
    let off = 0;
    for (const c of this.chunks) { out.set(c, off); off += c.length; }
    return out;
  }
}

/**
 * A message type from its fields: [number, name, kind], where kind is a
 * scalar kind name or another message type.  Returns { encode, decode,
 * create }.
 */
function message(name, fields) {
  const byNum = new Map();
  for (const f of fields) byNum.set(f[0], f);
  const type = {
    name,
    fields,
    create(init = {}) {
      const o = {};
      for (const [, fname, kind] of fields) o[fname] = typeof kind === "string" ? DEFAULTS[kind]() : null;
      for (const k of Object.keys(init)) {
        if (!(k in o)) throw new ProtoError(name + " has no field " + k);
        o[k] = init[k];
      }
      return o;
    },
    encode(obj) {
      const w = new Writer();
      encodeInto(w, obj);
      return w.finish();
    },
    decode(buf) {
      const r = new Reader(buf);
      const o = type.create();
      decodeInto(r, o);
      return o;
    },
  };
  function encodeInto(w, obj) {
    for (const [num, fname, kind] of fields) {
      const v = obj[fname];
      if (v === undefined || v === null) continue;
      if (typeof kind === "string") {
        const [wire, , enc, isDefault] = KINDS[kind];
        if (isDefault(v)) continue;
        w.tag(num, wire);
        enc(w, v);
      } else {
        w.tag(num, WIRE_LEN);
        w.bytes(kind.encode(v));
      }
    }
  }
  function decodeInto(r, o) {
    while (!r.done) {
      const key = r.small();
      const num = key >>> 3, wire = key & 7;
      if (num === 0) throw new ProtoError(name + ": field number 0");
      const f = byNum.get(num);
      if (!f) { r.skip(wire); continue; }
      const [, fname, kind] = f;
      if (typeof kind === "string") {
        const [want, dec] = KINDS[kind];
        if (wire !== want) throw new ProtoError(name + "." + fname + ": wire type " + wire + ", expected " + want);
        o[fname] = dec(r);
      } else {
        if (wire !== WIRE_LEN) throw new ProtoError(name + "." + fname + ": wire type " + wire + ", expected 2");
        // proto semantics: a repeated embedded message merges into the first.
        const sub = kind.decode(r.bytes());
        o[fname] = o[fname] ? mergeInto(o[fname], sub, kind) : sub;
      }
    }
  }
  return type;
}

// Merging a second occurrence of an embedded message, as proto3 does: its
// non-default scalars replace, its messages merge.
function mergeInto(a, b, kind) {
  for (const [, fname, k] of kind.fields) {
    if (typeof k !== "string") {
      if (b[fname]) a[fname] = a[fname] ? mergeInto(a[fname], b[fname], k) : b[fname];
    } else if (!KINDS[k][3](b[fname])) {
      a[fname] = b[fname];
    }
  }
  return a;
}

export const PacketWrapper = message("PacketWrapper", [
  [1, "packetType", "enum"],
  [2, "userId", "bytes"],
  [3, "data", "bytes"],
  [4, "sessionId", "uint64"],
]);

export const AudioMetadata = message("AudioMetadata", [
  [1, "audioFormat", "string"],
  [2, "audioNumberOfChannels", "uint32"],
  [3, "audioNumberOfFrames", "uint32"],
  [4, "audioSampleRate", "float"],
  [5, "sequence", "uint64num"],
]);

export const VideoMetadata = message("VideoMetadata", [
  [1, "sequence", "uint64num"],
  [2, "codec", "enum"],
]);

export const HeartbeatMetadata = message("HeartbeatMetadata", [
  [1, "videoEnabled", "bool"],
  [2, "audioEnabled", "bool"],
  [3, "screenEnabled", "bool"],
  [4, "isSpeaking", "bool"],
]);

export const MediaPacket = message("MediaPacket", [
  [1, "mediaType", "enum"],
  [2, "userId", "bytes"],
  [3, "data", "bytes"],
  [4, "frameType", "string"],
  [5, "timestamp", "double"],
  [6, "duration", "double"],
  [7, "audioMetadata", AudioMetadata],
  [8, "videoMetadata", VideoMetadata],
  [9, "heartbeatMetadata", HeartbeatMetadata],
]);

export const MeetingPacket = message("MeetingPacket", [
  [1, "eventType", "enum"],
  [2, "roomId", "string"],
  [3, "startTimeMs", "uint64num"],
  [4, "message", "string"],
  [5, "creatorId", "bytes"],
  [6, "participantCount", "int64num"],
  [7, "targetUserId", "bytes"],
  [8, "roomToken", "string"],
  [9, "sessionId", "uint64"],
  [10, "displayName", "bytes"],
]);

export const ConnectionPacket = message("ConnectionPacket", [[1, "meetingId", "string"]]);
export const AesPacket = message("AesPacket", [[1, "key", "bytes"], [2, "iv", "bytes"]]);
export const RsaPacket = message("RsaPacket", [[1, "publicKeyDer", "bytes"], [2, "userId", "bytes"]]);

export const utf8 = {
  encode: (s) => utf8Encoder.encode(s),
  // Identities and names on the wire are UTF-8 bytes; show invalid ones
  // with replacement characters rather than failing.
  decode: (b) => new TextDecoder("utf-8").decode(b),
};

/**
 * A MediaPacket from bytes that claim to be one, or null when they are not
 * a well-formed MediaPacket of a known media type.  Used to tell plaintext
 * from ciphertext: random bytes almost never pass.
 */
export function parseMediaPacket(bytes) {
  let m;
  try { m = MediaPacket.decode(bytes); } catch (e) { return null; }
  if (m.mediaType < MediaType.VIDEO || m.mediaType > MediaType.KEYFRAME_REQUEST) return null;
  return m;
}
