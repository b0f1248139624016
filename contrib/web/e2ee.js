// End-to-end encryption as the videocall.rs client does it (shared
// PROTOCOL.md, "What the videocall.rs client does"):
//  - each sender has one random AES-128 key and one random IV, used with
//    AES-128-CBC and PKCS#7 padding for every packet it sends (the whole
//    serialized MediaPacket goes into PacketWrapper.data);
//  - a client announces its RSA public key (RSA_PUB_KEY, RsaPacket with the
//    SubjectPublicKeyInfo DER) when it first sees a new peer;
//  - whoever receives an RSA_PUB_KEY answers with AES_KEY: its AesPacket
//    {key, iv} encrypted with RSAES-PKCS1-v1_5 to that public key.  AES_KEY
//    is broadcast, so every receiver tries to decrypt it and ignores what is
//    not for it.
// A fixed IV per sender is weaker than a fresh IV per packet, but it is
// what the other clients expect; changing it would break interoperation.

import { AesPacket, RsaPacket, utf8 } from "./proto.js";
import { generateKeyPair, publicKeyFromSpki, encryptPkcs1v15, decryptPkcs1v15 } from "./rsa.js";

const subtle = () => globalThis.crypto.subtle;

/** AES-128-CBC key material {key, iv} and the CryptoKey made from it. */
export class AesState {
  static async random() {
    const key = crypto.getRandomValues(new Uint8Array(16));
    const iv = crypto.getRandomValues(new Uint8Array(16));
    return AesState.from(key, iv);
  }
  static async from(key, iv) {
    if (key.length !== 16 || iv.length !== 16) throw new Error("AES-128 key and IV must be 16 bytes");
    const s = new AesState();
    s.key = key;
    s.iv = iv;
    s.cryptoKey = await subtle().importKey("raw", key, { name: "AES-CBC" }, false, ["encrypt", "decrypt"]);
    return s;
  }
  async encrypt(plain) {
    return new Uint8Array(await subtle().encrypt({ name: "AES-CBC", iv: this.iv }, this.cryptoKey, plain));
  }
  /** The plaintext, or null when the bytes were not encrypted with this key (bad padding). */
  async decrypt(cipher) {
    if (cipher.length === 0 || cipher.length % 16) return null;
    try {
      return new Uint8Array(await subtle().decrypt({ name: "AES-CBC", iv: this.iv }, this.cryptoKey, cipher));
    } catch (e) {
      return null;
    }
  }
}

/** This client's keys: its RSA pair and its AES sending key. */
export class LocalKeys {
  static async create(bits = 2048) {
    const k = new LocalKeys();
    [k.rsa, k.aes] = await Promise.all([generateKeyPair(bits), AesState.random()]);
    return k;
  }
  /** RsaPacket bytes announcing our public key. */
  rsaPacket(userId) {
    return RsaPacket.encode({ publicKeyDer: this.rsa.publicKeyDer, userId: utf8.encode(userId) });
  }
  /** AES_KEY data for the peer whose RsaPacket bytes we received. */
  async aesKeyFor(rsaPacketBytes) {
    const rp = RsaPacket.decode(rsaPacketBytes);
    const pub = await publicKeyFromSpki(rp.publicKeyDer);
    return encryptPkcs1v15(pub, AesPacket.encode({ key: this.aes.key, iv: this.aes.iv }));
  }
  /** The sender's AesState from AES_KEY data, or null when it was encrypted to someone else. */
  async openAesKey(data) {
    let plain;
    try {
      plain = decryptPkcs1v15(this.rsa.privateKey, data);
    } catch (e) {
      return null;
    }
    let ap;
    try { ap = AesPacket.decode(plain); } catch (e) { return null; }
    // A wrong key passes the v1.5 padding check by chance about once in
    // 2^16 tries; the AesPacket shape check makes that negligible.
    if (ap.key.length !== 16 || ap.iv.length !== 16) return null;
    return AesState.from(ap.key, ap.iv);
  }
}
