// Passkeys (PROTOCOL.md §3.1): an owner key that lives in the phone's (or laptop's) authenticator and
// signs a decision only after the owner's fingerprint, face or PIN (user verification). The
// authenticator signs a WebAuthn challenge, not a document: the challenge is the SHA-256 of the
// canonical payload, and nothing of the payload is shown by the browser or the phone during the
// ceremony. So every caller shows the whole decision on its own screen right before calling
// signWithPasskey (inbox.js, devices.js: the same confirmation dialog as for this browser's key).

import { b64url, unb64url, utf8 } from "./b64.js";

const ENROLL_LABEL = "camhub-passkey-enroll-v1";

export const passkeysAvailable = () => typeof window.PublicKeyCredential === "function" && !!navigator.credentials;

// RFC 8785 for what decision payloads hold (strings, integers, booleans, null, arrays, objects):
// members sorted by UTF-16 code units, which is what Array.prototype.sort does with no comparator.
export function canonicalJson(value) {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.keys(value).filter((k) => value[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`).join(",")}}`;
  }
  if (typeof value === "number" && !Number.isSafeInteger(value)) throw new Error("decision payloads carry integers only");
  return JSON.stringify(value);
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// navigator.credentials.create() for the hub's relying party; returns the §3.1 "passkey" object.
export async function createPasskey(hubId, rpId, name) {
  needPasskeys();
  const challenge = await sha256(utf8(`${ENROLL_LABEL}\u0000${hubId}`));
  // A fresh user handle per passkey: with one fixed handle a second passkey on the same
  // authenticator would silently replace the first.
  const user = { id: crypto.getRandomValues(new Uint8Array(16)), name: `camhub owner (${name})`, displayName: name };
  return registration(rpId, challenge, user);
}

// Before any hashing: outside a secure context there is no crypto.subtle either, and this says why.
function needPasskeys() {
  if (!passkeysAvailable()) throw new Error("This browser cannot use passkeys (no WebAuthn, or not a secure context).");
}

// navigator.credentials.create() as §3.1 "Enrolment" asks (UV required, ES256 or EdDSA, no
// attestation), answered in the registration format the hub takes.
async function registration(rpId, challenge, user) {
  const cred = await navigator.credentials.create({
    publicKey: {
      rp: { id: rpId, name: "camhub" },
      user,
      challenge,
      pubKeyCredParams: [{ type: "public-key", alg: -7 }, { type: "public-key", alg: -8 }],
      authenticatorSelection: { residentKey: "preferred", userVerification: "required" },
      attestation: "none",
      timeout: 120000,
    },
  });
  if (!cred) throw new Error("No passkey was made.");
  return {
    credential_id: b64url(cred.rawId),
    client_data_json: b64url(cred.response.clientDataJSON),
    attestation_object: b64url(cred.response.attestationObject),
  };
}

// Sign `payload` with one of the enrolled passkeys (keys from GET /api/v1/owner/devices that carry
// `passkey`); returns the §3.1 JSON body.
export async function signWithPasskey(payload, passkeyKeys, rpId) {
  if (!passkeyKeys.length) throw new Error("No passkey is enrolled.");
  const bytes = utf8(canonicalJson(payload));
  const cred = await navigator.credentials.get({
    publicKey: {
      challenge: await sha256(bytes),
      rpId,
      allowCredentials: passkeyKeys.map((k) => ({ type: "public-key", id: unb64url(k.passkey.credential_id) })),
      userVerification: "required",
      timeout: 120000,
    },
  });
  if (!cred) throw new Error("The passkey did not sign.");
  const used = b64url(cred.rawId);
  const key = passkeyKeys.find((k) => k.passkey.credential_id === used);
  if (!key) throw new Error("That passkey is not enrolled on this hub.");
  return {
    v: 1, format: "webauthn", kid: key.kid, payload: b64url(bytes),
    authenticator_data: b64url(cred.response.authenticatorData),
    client_data_json: b64url(cred.response.clientDataJSON),
    signature: b64url(cred.response.signature),
  };
}

// The passkeys this browser enrolled ({kid, passkey: {credential_id}}), so that without a session
// (a forgotten password) it still knows which credential to ask for and which kid it is.
const KNOWN = "camhub.passkeys";

export function knownPasskeys() {
  try {
    const list = JSON.parse(localStorage.getItem(KNOWN) || "[]");
    return Array.isArray(list) ? list.filter((k) => typeof k?.kid === "string" && typeof k?.passkey?.credential_id === "string") : [];
  } catch {
    return [];
  }
}

export function rememberPasskey(kid, credentialId) {
  const list = knownPasskeys().filter((k) => k.kid !== kid);
  list.push({ kid, passkey: { credential_id: credentialId } });
  localStorage.setItem(KNOWN, JSON.stringify(list));
}

// Household members (PROTOCOL §1.2): a passkey is their login only, never an owner key. It is made
// against the member's own challenge (its label and the member's id), so the hub never takes it for
// an owner's enrolment nor the other way round.
const MEMBER_LABEL = "camhub-member-passkey-v1";

export async function createMemberPasskey(hubId, rpId, memberId, name) {
  needPasskeys();
  const challenge = await sha256(utf8(`${MEMBER_LABEL}\u0000${hubId}\u0000${memberId}`));
  return registration(rpId, challenge, { id: utf8(memberId), name: `${name} (camhub household)`, displayName: name });
}

// The member passkeys this browser made ({name, id, kid, credential_id}): the login page needs the
// member's id (the payload names it) and the kid, and the hub does not say them to a stranger.
const KNOWN_MEMBERS = "camhub.member_passkeys";

export function knownMemberPasskeys() {
  try {
    const list = JSON.parse(localStorage.getItem(KNOWN_MEMBERS) || "[]");
    return Array.isArray(list) ? list.filter((m) => ["name", "id", "kid", "credential_id"].every((k) => typeof m?.[k] === "string")) : [];
  } catch {
    return [];
  }
}

export function rememberMemberPasskey(member) {
  const list = knownMemberPasskeys().filter((m) => m.id !== member.id);
  list.push({ name: member.name, id: member.id, kid: member.passkey.kid, credential_id: member.passkey.credential_id });
  localStorage.setItem(KNOWN_MEMBERS, JSON.stringify(list));
}

export function memberPasskeyFor(name) {
  const wanted = name.trim().toLowerCase();
  return knownMemberPasskeys().find((m) => m.name.toLowerCase() === wanted) || null;
}

// The §3.1 body of a member-login assertion for `known` (from memberPasskeyFor).
export async function signMemberLogin(hubId, rpId, known) {
  const payload = {
    v: 1, hub: hubId, decision: "member-login", member: known.id,
    issued_at: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
    jti: b64url(crypto.getRandomValues(new Uint8Array(16))),
  };
  const bytes = utf8(canonicalJson(payload));
  const cred = await navigator.credentials.get({
    publicKey: {
      challenge: await sha256(bytes),
      rpId,
      allowCredentials: [{ type: "public-key", id: unb64url(known.credential_id) }],
      userVerification: "required",
      timeout: 120000,
    },
  });
  if (!cred) throw new Error("The passkey did not sign.");
  return {
    v: 1, format: "webauthn", kid: known.kid, payload: b64url(bytes),
    authenticator_data: b64url(cred.response.authenticatorData),
    client_data_json: b64url(cred.response.clientDataJSON),
    signature: b64url(cred.response.signature),
  };
}
