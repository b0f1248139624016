// contrib/web/proto.js against the reference protobuf implementation: every
// vector is encoded and decoded by protoc-c (libprotobuf's --encode and
// --decode, from the build dependency protobuf-c-compiler) with the repo's
// proto/*.proto, so the JS module must agree byte for byte with
// libprotobuf in both directions.
//   node --test tests/web/
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as P from "../../contrib/web/proto.js";

const TOP = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PROTO = path.join(TOP, "proto");
const PROTOC = process.env.PROTOC_C || "protoc-c";

function protoc(mode, type, file, input) {
  return execFileSync(PROTOC, [`--${mode}=vcgate.${type}`, "-I" + PROTO, path.join(PROTO, file)],
    { input, maxBuffer: 1 << 24 });
}
const refEncode = (type, file, text) => new Uint8Array(protoc("encode", type, file, text));
const refDecode = (type, file, bytes) => protoc("decode", type, file, Buffer.from(bytes)).toString();

const u8 = (s) => new TextEncoder().encode(s);
const bytes = (...a) => Uint8Array.from(a);

// [JS type, .proto file, text format, JS value (only fields that differ from the defaults)]
const VECTORS = [
  ["PacketWrapper", "packet_wrapper.proto",
    'packet_type: MEDIA user_id: "alice@example.com" data: "\\000\\001\\377" session_id: 18446744073709551615',
    { packetType: 3, userId: u8("alice@example.com"), data: bytes(0, 1, 255), sessionId: 18446744073709551615n }],
  ["PacketWrapper", "packet_wrapper.proto",
    'packet_type: SESSION_ASSIGNED user_id: "system-&^%$#@!" session_id: 1',
    { packetType: 8, userId: u8(P.SYSTEM_USER), sessionId: 1n }],
  ["PacketWrapper", "packet_wrapper.proto", "", {}],
  ["MediaPacket", "media_packet.proto",
    'media_type: VIDEO data: "\\x9d\\x01\\x2a" frame_type: "key" timestamp: 1733000000123.25 duration: 33333 ' +
    "video_metadata { sequence: 4294967297 codec: VP9_PROFILE0_LEVEL10_8BIT }",
    { mediaType: 1, data: bytes(0x9d, 1, 0x2a), frameType: "key", timestamp: 1733000000123.25, duration: 33333,
      videoMetadata: { sequence: 4294967297, codec: 2 } }],
  ["MediaPacket", "media_packet.proto",
    'media_type: AUDIO data: "opus" frame_type: "key" timestamp: 5 audio_metadata { audio_format: "opus-red" ' +
    "audio_number_of_channels: 2 audio_number_of_frames: 960 audio_sample_rate: 48000 sequence: 12 }",
    { mediaType: 2, data: u8("opus"), frameType: "key", timestamp: 5,
      audioMetadata: { audioFormat: "opus-red", audioNumberOfChannels: 2, audioNumberOfFrames: 960, audioSampleRate: 48000, sequence: 12 } }],
  ["MediaPacket", "media_packet.proto",
    'media_type: HEARTBEAT user_id: "b\\303\\266b" timestamp: -0.5 heartbeat_metadata { video_enabled: true is_speaking: true }',
    { mediaType: 4, userId: u8("b\u00f6b"), timestamp: -0.5,
      heartbeatMetadata: { videoEnabled: true, audioEnabled: false, screenEnabled: false, isSpeaking: true } }],
  ["MediaPacket", "media_packet.proto",
    // An embedded message present but empty is still written (length 0).
    "media_type: RTT timestamp: 123456.789 video_metadata { }",
    { mediaType: 5, timestamp: 123456.789, videoMetadata: { sequence: 0, codec: 0 } }],
  ["MediaPacket", "media_packet.proto",
    'media_type: KEYFRAME_REQUEST user_id: "carol" data: "VIDEO"',
    { mediaType: 6, userId: u8("carol"), data: u8("VIDEO") }],
  ["MeetingPacket", "meeting_packet.proto",
    'event_type: PARTICIPANT_JOINED room_id: "standup" start_time_ms: 1733000000000 message: "hi \\342\\230\\272" ' +
    'creator_id: "alice" participant_count: -3 target_user_id: "bob" room_token: "t" session_id: 9223372036854775808 ' +
    'display_name: "Bob \\303\\234"',
    { eventType: 3, roomId: "standup", startTimeMs: 1733000000000, message: "hi \u263a", creatorId: u8("alice"),
      participantCount: -3, targetUserId: u8("bob"), roomToken: "t", sessionId: 9223372036854775808n,
      displayName: u8("Bob \u00dc") }],
  ["ConnectionPacket", "small_packets.proto", 'meeting_id: "m-1"', { meetingId: "m-1" }],
  ["AesPacket", "small_packets.proto",
    'key: "0123456789abcdef" iv: "\\000\\001\\002\\003\\004\\005\\006\\007\\010\\011\\012\\013\\014\\015\\016\\017"',
    { key: u8("0123456789abcdef"), iv: bytes(...Array.from({ length: 16 }, (_, i) => i)) }],
  ["RsaPacket", "small_packets.proto", 'public_key_der: "\\x30\\x82" user_id: "dave"',
    { publicKeyDer: bytes(0x30, 0x82), userId: u8("dave") }],
];

function full(type, partial) {
  const o = P[type].create();
  for (const [, name, kind] of P[type].fields) {
    if (!(name in partial)) continue;
    if (typeof kind === "string") o[name] = partial[name];
    else o[name] = full(kind.name, partial[name]);
  }
  return o;
}

for (const [type, file, text, value] of VECTORS) {
  test(`${type} {${text.slice(0, 60)}}: decodes libprotobuf's bytes`, () => {
    assert.deepEqual(P[type].decode(refEncode(type, file, text)), full(type, value));
  });
  test(`${type} {${text.slice(0, 60)}}: encodes the bytes libprotobuf encodes`, () => {
    const ours = P[type].encode(value);
    const ref = refEncode(type, file, text);
    assert.deepEqual(ours, ref);
    assert.equal(refDecode(type, file, ours), refDecode(type, file, ref));
  });
}

test("defaults are not written (proto3) and a decoded empty message has every default", () => {
  assert.equal(P.MediaPacket.encode(P.MediaPacket.create()).length, 0);
  assert.deepEqual(P.PacketWrapper.decode(new Uint8Array(0)),
    { packetType: 0, userId: new Uint8Array(0), data: new Uint8Array(0), sessionId: 0n });
});

test("unknown fields of every wire type are skipped", () => {
  // PacketWrapper{packet_type: MEDIA} with fields 15 (varint), 16 (fixed64),
  // 17 (bytes), 18 (fixed32) from a newer protocol version in between.
  const b = bytes(0x78, 0x96, 0x01, 0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x8a, 0x01, 2, 9, 9,
    0x95, 0x01, 1, 2, 3, 4, 0x08, 0x03);
  assert.equal(P.PacketWrapper.decode(b).packetType, 3);
});

test("a repeated embedded message merges, a repeated scalar takes the last value", () => {
  const text = "video_metadata { sequence: 5 } media_type: AUDIO";
  const a = refEncode("MediaPacket", "media_packet.proto", text);
  const b = refEncode("MediaPacket", "media_packet.proto", "video_metadata { codec: VP8 } media_type: VIDEO");
  const joined = new Uint8Array([...a, ...b]);
  const m = P.MediaPacket.decode(joined);
  assert.equal(m.mediaType, 1);
  assert.deepEqual(m.videoMetadata, { sequence: 5, codec: 1 });
  // libprotobuf agrees on the merge.
  assert.match(refDecode("MediaPacket", "media_packet.proto", joined), /sequence: 5\s+codec: VP8/);
});

test("malformed input is a ProtoError, never a wrong value", () => {
  const bad = {
    "truncated varint": bytes(0x08, 0x96),
    "truncated length": bytes(0x12, 0x05, 1, 2),
    "truncated double": bytes(0x29, 1, 2, 3),
    "field number 0": bytes(0x00, 0x01),
    "group wire type 3": bytes(0x0b),
    "wire type 7": bytes(0x0f),
    "known field, wrong wire type": bytes(0x0a, 0x00),
    "varint of 11 bytes": bytes(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
    "varint above 2^64": bytes(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02),
    "invalid UTF-8 in frame_type": bytes(0x22, 0x02, 0xc3, 0x28),
    "length past the end": bytes(0x1a, 0xff, 0xff, 0xff, 0xff, 0x07),
  };
  for (const [what, b] of Object.entries(bad)) {
    assert.throws(() => P.MediaPacket.decode(b), P.ProtoError, what);
  }
});

test("parseMediaPacket: plaintext passes, random bytes (as ciphertext looks) do not", () => {
  const plain = P.MediaPacket.encode({ mediaType: P.MediaType.AUDIO, data: bytes(1, 2, 3), frameType: "key", timestamp: 1 });
  assert.equal(P.parseMediaPacket(plain).mediaType, P.MediaType.AUDIO);
  assert.equal(P.parseMediaPacket(P.MediaPacket.encode({ mediaType: 0 })), null, "media type UNKNOWN");
  assert.equal(P.parseMediaPacket(bytes(0x08, 0x09)), null, "media type out of range");
  // xorshift32, fixed seed: the same 2000 buffers every run.
  let x = 0x2545f491;
  const rnd = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
  let passed = 0;
  for (let i = 0; i < 2000; i++) {
    const b = new Uint8Array(32 + (rnd() % 1400));
    for (let j = 0; j < b.length; j++) b[j] = rnd() & 0xff;
    if (P.parseMediaPacket(b)) passed++;
  }
  assert.equal(passed, 0, `${passed} of 2000 random buffers parsed as MediaPacket`);
});

test("uint64 session ids keep all 64 bits; sequence numbers are Numbers", () => {
  for (const sid of [1n, (1n << 53n) + 1n, (1n << 63n) + 12345n, (1n << 64n) - 1n]) {
    assert.equal(P.PacketWrapper.decode(P.PacketWrapper.encode({ packetType: 3, sessionId: sid })).sessionId, sid);
  }
  const m = P.MediaPacket.decode(P.MediaPacket.encode({ mediaType: 1, videoMetadata: { sequence: 2 ** 40, codec: 1 } }));
  assert.equal(m.videoMetadata.sequence, 2 ** 40);
});
