// Owner decisions (PROTOCOL.md §3): build the payload, sign it here with the non-extractable key,
// post it. The hub only verifies; nothing signs on the server's side.

import { postDecision } from "./api.js";
import { ownerKey, randomJti, signJws } from "./keys.js";
import { rfc3339 } from "./time.js";

export async function decide(hubId, fields, path = "/api/v1/decisions") {
  const payload = { v: 1, hub: hubId, ...fields, issued_at: rfc3339(new Date()), jti: randomJti() };
  const compact = await signJws(payload, "camhub-decision+jws");
  return postDecision(compact, path);
}

// PROTOCOL.md §6: this device's clock (network time) vouches for the hub's, signed, once per boot.
export const confirmClock = (hubId) => decide(hubId, { decision: "confirm-time" }, "/api/v1/owner/clock");

// Whether this browser can sign: it holds a key and that key is one of the enrolled owner keys.
export async function signingKey(enrolledKids) {
  const key = await ownerKey();
  if (!key) return { key: null, enrolled: false };
  return { key, enrolled: enrolledKids ? enrolledKids.includes(key.kid) : !!key.enrolled };
}

// Key ids are base64url SHA-256 thumbprints: show them in groups so a person can compare them.
export function fingerprint(kid) {
  return (kid || "").match(/.{1,4}/g)?.join(" ") ?? "";
}
