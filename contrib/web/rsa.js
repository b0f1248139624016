// RSAES-PKCS1-v1_5 (RFC 8017 section 7.2) for the key exchange of the
// videocall.rs client, whose Rust `rsa` crate encrypts each AesPacket to a
// peer's public key with PKCS#1 v1.5 padding.  WebCrypto offers RSA-OAEP
// only, so WebCrypto generates the key pair and converts keys (JWK, SPKI
// DER), and this module does the v1.5 padding and the modular arithmetic
// with BigInt: c = m^e mod n to encrypt, and the Chinese remainder theorem
// with p and q from the JWK (about 3x faster than m = c^d mod n) to decrypt.
//
// What this does not protect against: BigInt arithmetic is not constant
// time, and a failed unpadding returns early.  The page only ever decrypts
// AES_KEY packets, and tells nobody whether one was for it, so it offers
// no padding oracle; but do not reuse this code where an attacker can
// submit ciphertexts and observe the outcome.

export class RsaError extends Error {}

const b64urlToBytes = (s) => {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
};

export function bytesToBigInt(u8) {
  let hex = "";
  for (const b of u8) hex += b.toString(16).padStart(2, "0");
  return hex ? BigInt("0x" + hex) : 0n;
}

/** I2OSP: x as exactly len big-endian bytes (RsaError if it does not fit). */
export function bigIntToBytes(x, len) {
  let hex = x.toString(16);
  if (hex.length & 1) hex = "0" + hex;
  if (hex.length / 2 > len) throw new RsaError("integer too large");
  const out = new Uint8Array(len);
  const off = len - hex.length / 2;
  for (let i = 0; i < hex.length / 2; i++) out[off + i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

/** base^exp mod m for BigInt, exp >= 0, m > 1 (left-to-right, 4-bit windows). */
export function modPow(base, exp, m) {
  base %= m;
  if (base < 0n) base += m;
  // table[i] = base^i mod m for i < 16
  const table = [1n, base];
  for (let i = 2; i < 16; i++) table.push((table[i - 1] * base) % m);
  const hex = exp.toString(16);
  let r = 1n;
  for (let i = 0; i < hex.length; i++) {
    if (i) { r = (r * r) % m; r = (r * r) % m; r = (r * r) % m; r = (r * r) % m; }
    const d = parseInt(hex[i], 16);
    if (d) r = (r * table[d]) % m;
  }
  return r;
}

const byteLength = (n) => Math.ceil(n.toString(16).length / 2);

/** A private key from a WebCrypto RSA JWK (n, e, d, p, q, dp, dq, qi). */
export function privateKeyFromJwk(jwk) {
  const f = (k) => {
    if (typeof jwk[k] !== "string") throw new RsaError("JWK lacks " + k);
    return bytesToBigInt(b64urlToBytes(jwk[k]));
  };
  const key = { n: f("n"), e: f("e"), d: f("d"), p: f("p"), q: f("q"), dp: f("dp"), dq: f("dq"), qi: f("qi") };
  key.k = byteLength(key.n);
  return key;
}

/** A public key {n, e, k} from a WebCrypto RSA JWK. */
export function publicKeyFromJwk(jwk) {
  const n = bytesToBigInt(b64urlToBytes(jwk.n));
  return { n, e: bytesToBigInt(b64urlToBytes(jwk.e)), k: byteLength(n) };
}

// WebCrypto parses and checks SubjectPublicKeyInfo for us; the algorithm
// named here only selects the JWK's "alg" and is never used to encrypt.
const IMPORT_ALG = { name: "RSA-OAEP", hash: "SHA-256" };

/** A public key {n, e, k} from SubjectPublicKeyInfo DER (RsaPacket.public_key_der). */
export async function publicKeyFromSpki(der, subtle = globalThis.crypto.subtle) {
  let key;
  try {
    key = await subtle.importKey("spki", der, IMPORT_ALG, true, ["encrypt"]);
  } catch (e) {
    throw new RsaError("not an RSA SubjectPublicKeyInfo: " + e.message);
  }
  return publicKeyFromJwk(await subtle.exportKey("jwk", key));
}

/**
 * A new key pair: { publicKeyDer (SPKI DER), privateKey (for
 * decryptPkcs1v15), jwk (the private JWK) }.
 */
export async function generateKeyPair(bits = 2048, subtle = globalThis.crypto.subtle) {
  const pair = await subtle.generateKey(
    { ...IMPORT_ALG, modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]) },
    true, ["encrypt", "decrypt"]);
  const publicKeyDer = new Uint8Array(await subtle.exportKey("spki", pair.publicKey));
  const jwk = await subtle.exportKey("jwk", pair.privateKey);
  return { publicKeyDer, privateKey: privateKeyFromJwk(jwk), jwk };
}

function nonzeroRandom(len, getRandomValues) {
  const out = new Uint8Array(len);
  let filled = 0;
  const buf = new Uint8Array(len + 16);
  while (filled < len) {
    getRandomValues(buf);
    for (let i = 0; i < buf.length && filled < len; i++) if (buf[i] !== 0) out[filled++] = buf[i];
  }
  return out;
}

/** RSAES-PKCS1-v1_5-ENCRYPT(pub, message): a ciphertext of pub.k bytes. */
export function encryptPkcs1v15(pub, message, getRandomValues = (a) => globalThis.crypto.getRandomValues(a)) {
  const k = pub.k;
  if (message.length > k - 11) throw new RsaError("message too long for the key");
  // EM = 0x00 || 0x02 || PS (>= 8 nonzero random bytes) || 0x00 || M
  const em = new Uint8Array(k);
  em[1] = 2;
  em.set(nonzeroRandom(k - message.length - 3, getRandomValues), 2);
  em.set(message, k - message.length);
  return bigIntToBytes(modPow(bytesToBigInt(em), pub.e, pub.n), k);
}

/** RSAES-PKCS1-v1_5-DECRYPT(priv, ciphertext); RsaError when it is not for this key. */
export function decryptPkcs1v15(priv, ciphertext) {
  const k = priv.k;
  if (ciphertext.length !== k || k < 11) throw new RsaError("ciphertext length is not the key's");
  const c = bytesToBigInt(ciphertext);
  if (c >= priv.n) throw new RsaError("ciphertext out of range");
  // CRT (RFC 8017 5.1.2, 2.b): m1 = c^dP mod p, m2 = c^dQ mod q,
  // h = qInv (m1 - m2) mod p, m = m2 + q h.
  const m1 = modPow(c, priv.dp, priv.p);
  const m2 = modPow(c, priv.dq, priv.q);
  let h = (priv.qi * (m1 - m2)) % priv.p;
  if (h < 0n) h += priv.p;
  const em = bigIntToBytes(m2 + priv.q * h, k);
  if (em[0] !== 0 || em[1] !== 2) throw new RsaError("decryption error");
  let sep = 2;
  while (sep < k && em[sep] !== 0) sep++;
  if (sep === k || sep - 2 < 8) throw new RsaError("decryption error");
  return em.slice(sep + 1);
}
