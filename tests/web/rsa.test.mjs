// contrib/web/rsa.js and e2ee.js against OpenSSL: RSAES-PKCS1-v1_5 both
// ways (what openssl encrypts to our key we decrypt, and what we encrypt
// openssl decrypts), with our WebCrypto-made 2048-bit key and an
// openssl-made 1024-bit key (the size the videocall.rs client uses), and
// AES-128-CBC/PKCS#7 against `openssl enc`.  Every vector is made at test
// time with fresh keys and random messages.
//   node --test tests/web/
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as R from "../../contrib/web/rsa.js";
import { LocalKeys, AesState } from "../../contrib/web/e2ee.js";
import { AesPacket, RsaPacket } from "../../contrib/web/proto.js";

const subtle = globalThis.crypto.subtle;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vcgate-rsa-"));
process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
let nfile = 0;
const tmp = (data) => { const p = path.join(dir, "f" + nfile++); if (data) fs.writeFileSync(p, data); return p; };
const openssl = (args, input) => new Uint8Array(execFileSync("openssl", args, { input: input ? Buffer.from(input) : undefined }));
const rand = (n) => crypto.getRandomValues(new Uint8Array(n));

const PKCS1 = ["-pkeyopt", "rsa_padding_mode:pkcs1"];
const opensslEncrypt = (spkiDer, msg) =>
  openssl(["pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", tmp(spkiDer), ...PKCS1], msg);
const opensslDecrypt = (pkcs8Der, c) =>
  openssl(["pkeyutl", "-decrypt", "-keyform", "DER", "-inkey", tmp(pkcs8Der), ...PKCS1], c);

async function pkcs8FromJwk(jwk) {
  const k = await subtle.importKey("jwk", jwk, { name: "RSA-OAEP", hash: "SHA-256" }, true, ["decrypt"]);
  return new Uint8Array(await subtle.exportKey("pkcs8", k));
}

async function jwkFromPkcs8(der) {
  const k = await subtle.importKey("pkcs8", der, { name: "RSA-OAEP", hash: "SHA-256" }, true, ["decrypt"]);
  return subtle.exportKey("jwk", k);
}

// A 34-byte AesPacket is what the call page encrypts; the others cover the
// edges of v1.5 (empty message, the longest message k - 11).
const lengths = (k) => [34, 0, 1, 100, k - 11];

let ours; // our 2048-bit pair, made once
test("our 2048-bit key: WebCrypto makes it, SPKI DER and JWK agree", async () => {
  ours = await R.generateKeyPair(2048);
  assert.equal(ours.privateKey.k, 256);
  assert.equal(ours.privateKey.e, 65537n);
  assert.equal(ours.privateKey.p * ours.privateKey.q, ours.privateKey.n);
  const pub = await R.publicKeyFromSpki(ours.publicKeyDer);
  assert.equal(pub.n, ours.privateKey.n);
  // openssl reads the same modulus from the DER we would put in RsaPacket.
  const text = new TextDecoder().decode(openssl(["pkey", "-pubin", "-inform", "DER", "-in", tmp(ours.publicKeyDer), "-noout", "-text"]));
  const hex = text.split("Modulus:")[1].split("Exponent")[0].replace(/[^0-9a-f]/g, "");
  assert.equal(BigInt("0x" + hex), ours.privateKey.n);
});

test("openssl encrypts to our 2048-bit key (PKCS#1 v1.5), we decrypt", async () => {
  for (const len of lengths(256)) {
    const msg = rand(len);
    const c = opensslEncrypt(ours.publicKeyDer, msg);
    assert.equal(c.length, 256);
    assert.deepEqual(R.decryptPkcs1v15(ours.privateKey, c), msg, `length ${len}`);
  }
});

test("we encrypt to our 2048-bit public key (from its SPKI DER), openssl decrypts", async () => {
  const pub = await R.publicKeyFromSpki(ours.publicKeyDer);
  const pkcs8 = await pkcs8FromJwk(ours.jwk);
  for (const len of lengths(256)) {
    const msg = rand(len);
    const c = R.encryptPkcs1v15(pub, msg);
    assert.equal(c.length, 256);
    assert.deepEqual(opensslDecrypt(pkcs8, c), msg, `length ${len}`);
  }
});

test("an openssl-made 1024-bit key (the videocall.rs size) both ways", async () => {
  const pem = openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]);
  const pkcs8 = openssl(["pkcs8", "-topk8", "-nocrypt", "-in", tmp(pem), "-outform", "DER"]);
  const spki = openssl(["pkey", "-in", tmp(pem), "-pubout", "-outform", "DER"]);
  const pub = await R.publicKeyFromSpki(spki);
  assert.equal(pub.k, 128);
  const priv = R.privateKeyFromJwk(await jwkFromPkcs8(pkcs8));
  for (const len of lengths(128)) {
    const msg = rand(len);
    assert.deepEqual(opensslDecrypt(pkcs8, R.encryptPkcs1v15(pub, msg)), msg, `ours -> openssl, length ${len}`);
    assert.deepEqual(R.decryptPkcs1v15(priv, opensslEncrypt(spki, msg)), msg, `openssl -> ours, length ${len}`);
  }
});

test("encryption pads with at least 8 random nonzero bytes, fresh each time", async () => {
  const pub = await R.publicKeyFromSpki(ours.publicKeyDer);
  const msg = rand(34);
  const c1 = R.encryptPkcs1v15(pub, msg), c2 = R.encryptPkcs1v15(pub, msg);
  assert.notDeepEqual(c1, c2);
  // Undo the RSA step only (m = c^d mod n) and look at the padding itself.
  const em = R.bigIntToBytes(R.modPow(R.bytesToBigInt(c1), ours.privateKey.d, ours.privateKey.n), 256);
  assert.equal(em[0], 0);
  assert.equal(em[1], 2);
  const ps = em.subarray(2, 256 - 35);
  assert.equal(ps.length, 219);
  assert.ok(ps.every((b) => b !== 0), "PS has a zero byte");
  assert.equal(em[256 - 35], 0);
  assert.throws(() => R.encryptPkcs1v15(pub, rand(246)), R.RsaError, "k - 10 bytes is too long");
});

test("a ciphertext that is not v1.5 for our key is refused (deterministic cases)", async () => {
  const { n, e, k } = ours.privateKey;
  const raw = (em) => R.bigIntToBytes(R.modPow(R.bytesToBigInt(em), e, n), k);
  const em = (type, psLen, sep = true) => {
    const b = new Uint8Array(k).fill(0x55);
    b[0] = 0; b[1] = type;
    if (sep) b[2 + psLen] = 0;
    return b;
  };
  assert.equal(R.decryptPkcs1v15(ours.privateKey, raw(em(2, 8))).length, k - 11, "control: PS of 8 is valid");
  assert.throws(() => R.decryptPkcs1v15(ours.privateKey, raw(em(1, 20))), R.RsaError, "block type 1");
  assert.throws(() => R.decryptPkcs1v15(ours.privateKey, raw(em(2, 7))), R.RsaError, "PS of 7 bytes");
  assert.throws(() => R.decryptPkcs1v15(ours.privateKey, raw(em(2, 0, false))), R.RsaError, "no separator");
  const leading = em(2, 20); leading[0] = 1;
  assert.throws(() => R.decryptPkcs1v15(ours.privateKey, raw(leading)), R.RsaError, "first byte not 0");
  assert.throws(() => R.decryptPkcs1v15(ours.privateKey, rand(255)), R.RsaError, "short ciphertext");
  assert.throws(() => R.decryptPkcs1v15(ours.privateKey, new Uint8Array(256).fill(0xff)), R.RsaError, "c >= n");
});

test("modPow agrees with plain repeated multiplication", () => {
  const cases = [[2n, 10n, 1000n], [7n, 0n, 13n], [123456789n, 65537n, 1000000007n], [-5n, 3n, 11n], [0n, 5n, 7n]];
  for (const [b, x, m] of cases) {
    let want = 1n;
    for (let i = 0n; i < x; i++) want = (want * b) % m;
    if (want < 0n) want += m;
    assert.equal(R.modPow(b, x, m), want, `${b}^${x} mod ${m}`);
  }
});

test("CRT decryption of a 2048-bit ciphertext takes a few milliseconds (measured, reported)", async () => {
  const pub = await R.publicKeyFromSpki(ours.publicKeyDer);
  const c = R.encryptPkcs1v15(pub, rand(34));
  const n = 10, t0 = performance.now();
  for (let i = 0; i < n; i++) R.decryptPkcs1v15(ours.privateKey, c);
  const ms = (performance.now() - t0) / n;
  // A loose bound only: a regression to c^d mod n without CRT, or to bit-
  // by-bit Number arithmetic, would be far slower.
  assert.ok(ms < 500, `${ms.toFixed(1)} ms per decryption`);
  console.log(`# RSA-2048 PKCS#1 v1.5 decryption (CRT, BigInt): ${ms.toFixed(1)} ms`);
});

test("key exchange: an AES_KEY made for one peer opens for it and for nobody else", async () => {
  const [alice, bob, carol] = await Promise.all([LocalKeys.create(2048), LocalKeys.create(1024), LocalKeys.create(1024)]);
  const bobAnnounce = bob.rsaPacket("bob");
  assert.equal(new TextDecoder().decode(RsaPacket.decode(bobAnnounce).userId), "bob");
  const aesKeyData = await alice.aesKeyFor(bobAnnounce);
  const opened = await bob.openAesKey(aesKeyData);
  assert.deepEqual(opened.key, alice.aes.key);
  assert.deepEqual(opened.iv, alice.aes.iv);
  assert.equal(await carol.openAesKey(aesKeyData), null);
  // And openssl can open it with bob's private key too: it is plain v1.5.
  const plain = opensslDecrypt(await pkcs8FromJwk(bob.rsa.jwk), aesKeyData);
  assert.deepEqual(AesPacket.decode(plain).key, alice.aes.key);
});

test("AES-128-CBC with PKCS#7 is byte for byte `openssl enc -aes-128-cbc`", async () => {
  const s = await AesState.random();
  const hex = (b) => Buffer.from(b).toString("hex");
  for (const len of [0, 1, 15, 16, 17, 1000]) {
    const msg = rand(len);
    const ours = await s.encrypt(msg);
    const ref = openssl(["enc", "-aes-128-cbc", "-K", hex(s.key), "-iv", hex(s.iv)], msg);
    assert.deepEqual(ours, ref, `length ${len}`);
    assert.deepEqual(await s.decrypt(ref), msg);
  }
  assert.equal(await s.decrypt(rand(17)), null, "not a multiple of 16");
});
