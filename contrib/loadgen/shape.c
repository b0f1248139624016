/* loadgen's call shape: what one participant of a videocall.rs call sends,
 * per second (issue 13): 50 Opus-sized audio packets (~160 B), 30 video
 * frames (deltas 1-3 KB, a ~15 KB key frame every 2 s, i.e. every 60th
 * frame, at a per-participant offset so that key frames of a room do not
 * coincide), one heartbeat, a keyframe request every 4 s (vcgate lets 2/s
 * through), a key-exchange packet every 2 s (RSA_PUB_KEY and AES_KEY in
 * turn, as a client re-keying for new peers does) and one RTT probe
 * (which vcgate echoes to the sender only).  Pure functions: the driver in
 * loadgen.c owns the schedule. */
#include "lg.h"

const lg_stream_def_t lg_call_streams[LG_CALL_STREAMS] = {
  {LG_K_AUDIO, 50}, {LG_K_VIDEO, 30}, {LG_K_HEARTBEAT, 1},
  {LG_K_KF_REQ, 0.25}, {LG_K_RSA_KEY, 0.5}, {LG_K_RTT, 1},
};

#define LG_CALL_AUDIO_BYTES 160
#define LG_CALL_DELTA_MIN 1000
#define LG_CALL_DELTA_SPAN 2001 /* deltas are 1000..3000 bytes */
#define LG_CALL_KEY_BYTES 15000
#define LG_CALL_KEY_EVERY 60    /* frames: 2 s at 30 frames/s */
#define LG_CALL_RSA_BYTES 200   /* 1024-bit SubjectPublicKeyInfo DER and wrapper */
#define LG_CALL_AES_BYTES 160   /* 128-byte RSA ciphertext and wrapper */

static uint32_t hash2(uint32_t a, uint64_t b) {
  uint64_t z = ((uint64_t)a << 40) ^ b ^ 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return (uint32_t)(z ^ (z >> 31));
}

void lg_call_packet(int st, uint32_t sender, uint64_t n, int *kind, size_t *size) {
  *kind = lg_call_streams[st].kind;
  *size = 0; /* the smallest packet of the kind */
  switch (*kind) {
  case LG_K_AUDIO:
    *size = LG_CALL_AUDIO_BYTES;
    return;
  case LG_K_VIDEO:
    if ((n + sender * 7u) % LG_CALL_KEY_EVERY == 0) {
      *kind = LG_K_VIDEO_KEY;
      *size = LG_CALL_KEY_BYTES;
    } else {
      *size = LG_CALL_DELTA_MIN + hash2(sender, n) % LG_CALL_DELTA_SPAN;
    }
    return;
  case LG_K_RSA_KEY:
    if (n & 1) {
      *kind = LG_K_AES_KEY;
      *size = LG_CALL_AES_BYTES;
    } else {
      *size = LG_CALL_RSA_BYTES;
    }
    return;
  default:
    return;
  }
}
