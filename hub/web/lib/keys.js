// This browser's owner key (PROTOCOL.md §1): an Ed25519 WebCrypto key generated non-extractable,
// kept in IndexedDB (which stores the CryptoKey object itself, not its bytes), and JWS signing
// with it (RFC 7515 compact, RFC 8037 / RFC 9864 "Ed25519"). No script, including this one, can
// read the private key; it can only ask the browser to sign.

import { b64url, utf8 } from "./b64.js";

const DB_NAME = "camhub";
const STORE = "keys";
const OWNER = "owner";

function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx(mode, fn) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const req = fn(t.objectStore(STORE));
      t.oncomplete = () => resolve(req.result);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error);
    });
  } finally {
    db.close();
  }
}

export const dbGet = (key) => tx("readonly", (s) => s.get(key));
export const dbPut = (key, value) => tx("readwrite", (s) => s.put(value, key));
export const dbDelete = (key) => tx("readwrite", (s) => s.delete(key));

// RFC 7638 thumbprint of an OKP JWK: SHA-256 over {"crv","kty","x"} in that order, no whitespace.
export async function thumbprint(jwk) {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x });
  return b64url(await crypto.subtle.digest("SHA-256", utf8(canonical)));
}

export function publicOnly(jwk) {
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
}

// Make a fresh key pair for this browser. `extractable=false` applies to the private key; the
// public key of a pair is always exportable.
export async function createOwnerKey(name) {
  if (!globalThis.crypto || !crypto.subtle) {
    throw new Error("This page is not a secure context (use https:// or http://localhost): no WebCrypto.");
  }
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const publicJwk = publicOnly(await crypto.subtle.exportKey("jwk", pair.publicKey));
  const kid = await thumbprint(publicJwk);
  const record = { privateKey: pair.privateKey, publicKey: pair.publicKey, publicJwk, kid, name, enrolled: false };
  await dbPut(OWNER, record);
  return record;
}

export async function ownerKey() {
  return (await dbGet(OWNER)) || null;
}

export async function markEnrolled(enrolled = true) {
  const record = await ownerKey();
  if (record) {
    record.enrolled = enrolled;
    await dbPut(OWNER, record);
  }
}

export async function forgetOwnerKey() {
  await dbDelete(OWNER);
}

export function randomJti() {
  return b64url(crypto.getRandomValues(new Uint8Array(18)));
}

// JWS compact serialization (RFC 7515 §7.1) signed with this browser's non-extractable key.
export async function signJws(payload, typ = "camhub-decision+jws") {
  const key = await ownerKey();
  if (!key) throw new Error("This browser has no owner key.");
  const header = { alg: "Ed25519", kid: key.kid, typ };
  const signingInput = `${b64url(utf8(JSON.stringify(header)))}.${b64url(utf8(JSON.stringify(payload)))}`;
  const signature = await crypto.subtle.sign({ name: "Ed25519" }, key.privateKey, utf8(signingInput));
  return `${signingInput}.${b64url(signature)}`;
}
