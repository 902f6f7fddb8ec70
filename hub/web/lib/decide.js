// Owner decisions (PROTOCOL.md §3): build the payload, sign it here — with this browser's
// non-extractable key (a JWS) or with a passkey (a WebAuthn assertion, §3.1) — and post it. The hub
// only verifies; nothing signs on the server's side.

import { postDecision, postPasskeyDecision } from "./api.js";
import { ownerKey, randomJti, signJws } from "./keys.js";
import { passkeysAvailable, signWithPasskey } from "./passkey.js";
import { rfc3339 } from "./time.js";

const PREFER = "camhub.signWith"; // "passkey" once this browser enrolled (or chose) a passkey

// Who signs the next decision; set by each view from the enrolled keys (signingKey below).
let signer = { kind: "none" };

export async function decide(hubId, fields, path = "/api/v1/decisions") {
  const payload = { v: 1, hub: hubId, ...fields, issued_at: rfc3339(new Date()), jti: randomJti() };
  if (signer.kind === "passkey" && path === "/api/v1/decisions") {
    return postPasskeyDecision(await signWithPasskey(payload, signer.keys, signer.rpId));
  }
  const compact = await signJws(payload, "camhub-decision+jws");
  return postDecision(compact, path);
}

// PROTOCOL.md §6: this device's clock (network time) vouches for the hub's, signed, once per boot,
// by whichever signs decisions here (a passkey-only owner must be able to confirm it too).
export const confirmClock = async (hubId) => {
  const payload = { v: 1, hub: hubId, decision: "confirm-time", issued_at: rfc3339(new Date()), jti: randomJti() };
  if (signer.kind === "passkey") {
    return postPasskeyDecision(await signWithPasskey(payload, signer.keys, signer.rpId), "/api/v1/owner/clock");
  }
  return postDecision(await signJws(payload, "camhub-decision+jws"), "/api/v1/owner/clock");
};

export function preferPasskey(yes) {
  if (yes) localStorage.setItem(PREFER, "passkey");
  else localStorage.removeItem(PREFER);
}

// Whether this browser can sign, and with what. `keys` are the enrolled keys (GET
// /api/v1/owner/devices: objects, or just their kids). This browser's own key signs unless the
// owner chose a passkey here; a passkey signs when there is no enrolled key of this browser's own.
// Returns {key, enrolled, kind: "webcrypto" | "passkey" | "none"}.
export async function signingKey(keys, rpId = null) {
  const objects = (keys || []).map((k) => (typeof k === "string" ? { kid: k } : k));
  const passkeys = objects.filter((k) => k.passkey);
  const key = await ownerKey();
  const mine = !!key && (keys ? objects.some((k) => k.kid === key.kid) : !!key.enrolled);
  const canPasskey = passkeys.length > 0 && !!rpId && passkeysAvailable();
  if (canPasskey && (localStorage.getItem(PREFER) === "passkey" || !mine)) {
    signer = { kind: "passkey", keys: passkeys, rpId };
    return { key, enrolled: true, kind: "passkey" };
  }
  signer = mine ? { kind: "webcrypto" } : { kind: "none" };
  return { key, enrolled: mine, kind: signer.kind };
}

export const signerKind = () => signer.kind;

// Key ids are base64url SHA-256 thumbprints: show them in groups so a person can compare them.
export function fingerprint(kid) {
  return (kid || "").match(/.{1,4}/g)?.join(" ") ?? "";
}
