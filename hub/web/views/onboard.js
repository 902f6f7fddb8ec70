// First visit: pairing code + password + this browser's owner key (PROTOCOL.md §1).
// Also: setting a new password from a browser whose key is already enrolled.

import * as api from "../lib/api.js";
import { focusResult, h, notice, replace } from "../lib/dom.js";
import { preferPasskey } from "../lib/decide.js";
import { createOwnerKey, markEnrolled, ownerKey, randomJti, signJws } from "../lib/keys.js";
import { createPasskey, knownPasskeys, passkeysAvailable, rememberPasskey, signWithPasskey } from "../lib/passkey.js";
import { rfc3339 } from "../lib/time.js";
import { sentence } from "../lib/words.js";

const MIN_PASSWORD = 10;

function passwordFields() {
  return [
    h("label", { for: "password" }, "Password for this hub (at least 10 characters)"),
    h("input", { id: "password", name: "password", type: "password", autocomplete: "new-password", minlength: MIN_PASSWORD, required: true }),
    h("label", { for: "password2" }, "Password again"),
    h("input", { id: "password2", name: "password2", type: "password", autocomplete: "new-password", minlength: MIN_PASSWORD, required: true }),
  ];
}

function readPassword(form) {
  const pw = form.elements.password.value;
  if (pw.length < MIN_PASSWORD) throw new Error(`The password needs at least ${MIN_PASSWORD} characters.`);
  if (pw !== form.elements.password2.value) throw new Error("The two passwords differ.");
  return pw;
}

// A fresh JWS from the enrolled key authorises choosing the password (hub/api/session.py).
async function setPassword(session, password) {
  const proof = await signJws(
    { v: 1, hub: session.hub_id, purpose: "set-password", issued_at: rfc3339(new Date()), jti: randomJti() },
    "camhub-web-password+jws",
  );
  return api.post("/api/v1/session/password", { password, proof });
}

export async function render(root, ctx) {
  const { session } = ctx;
  const status = h("div", { "aria-live": "polite" });
  const existing = await ownerKey();

  if (session.owner_enrolled) {
    // An owner exists: only a browser holding an enrolled key (or a passkey it enrolled) may (re)set the password.
    const passkeys = knownPasskeys();
    if ((!existing || !existing.enrolled) && passkeys.length && passkeysAvailable()) {
      const form = h("form", { class: "stack", novalidate: true },
        notice("Your passkey can set a new password: it asks for your fingerprint, face or PIN to sign “set this hub's password”. Choosing a new password logs out every other browser."),
        ...passwordFields(),
        h("button", { type: "submit" }, "Set password with the passkey"),
        status,
      );
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        try {
          const pw = readPassword(form);
          await setPasswordWithPasskey(session, pw, passkeys);
          await ctx.onAuthenticated();
        } catch (err) {
          const msg = notice(sentence(err), "error");
          replace(status, msg);
          focusResult(msg);
        }
      });
      replace(root, h("section", { class: "card narrow" }, h("h1", {}, "Set the owner password"), form));
      return;
    }
    if (!existing || !existing.enrolled) {
      replace(
        root,
        h("section", { class: "card narrow" },
          h("h1", {}, "Log in"),
          session.password_set
            ? notice("This browser is not enrolled and a password is needed.")
            : notice("An owner key is enrolled but no password has been set. Open this page in the browser that was enrolled to set one, or run `camhub pair` on the hub for a new pairing code.", "error"),
        ),
      );
      return;
    }
    const form = h("form", { class: "stack", novalidate: true },
      notice(`This browser holds the enrolled key “${existing.name}”. Choosing a new password logs out every other browser.`),
      ...passwordFields(),
      h("button", { type: "submit" }, "Set password"),
      status,
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const pw = readPassword(form);
        await setPassword(session, pw);
        await ctx.onAuthenticated();
      } catch (err) {
        const msg = notice(sentence(err), "error");
        replace(status, msg);
        focusResult(msg);
      }
    });
    replace(root, h("section", { class: "card narrow" }, h("h1", {}, "Set the owner password"), form));
    return;
  }

  const form = h("form", { class: "stack", novalidate: true },
    h("p", {}, "Welcome. When the hub started it showed a one-time pairing code in a box on its console (or in its log). If it has expired, run ", h("code", {}, "camhub pair"), " on the hub for a new one."),
    h("label", { for: "pairing" }, "Pairing code"),
    h("input", { id: "pairing", name: "pairing", autocomplete: "one-time-code", inputmode: "text", placeholder: "XXXX-XXXX", required: true, pattern: "[0-9A-Za-z]{4}-?[0-9A-Za-z]{4}" }),
    h("label", { for: "devname" }, "Name for this device"),
    h("input", { id: "devname", name: "devname", value: guessDeviceName(), maxlength: 64, required: true }),
    ...passwordFields(),
    h("p", { class: "muted" },
      "This browser will make a signing key that cannot be copied out of it. Every approval you give an agency is signed with it, here, on this device."),
    passkeysAvailable()
      ? h("label", { class: "check", for: "use-passkey" },
          h("input", { type: "checkbox", id: "use-passkey", name: "usePasskey" }),
          " Use a passkey instead (your fingerprint, face or PIN for every approval; PROTOCOL §3.1)")
      : null,
    h("button", { type: "submit" }, "Pair this browser"),
    status,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const pw = readPassword(form);
      const name = form.elements.devname.value.trim() || "browser";
      if (form.elements.usePasskey?.checked) {
        await pairWithPasskey(session, form.elements.pairing.value.trim(), name, pw, status);
        await ctx.onAuthenticated();
        return;
      }
      replace(status, notice("Making this browser's signing key…"));
      const key = await createOwnerKey(name);
      replace(status, notice("Enrolling the key with the pairing code…"));
      const res = await api.post("/api/v1/owner/enroll", {
        pairing_code: form.elements.pairing.value.trim(),
        public_jwk: key.publicJwk,
        name,
      });
      if (res.kid !== key.kid) throw new Error("The hub answered with a different key id; not continuing.");
      await markEnrolled(true);
      replace(status, notice("Setting the password…"));
      await setPassword(session, pw);
      await ctx.onAuthenticated();
    } catch (err) {
      const msg = notice(sentence(err), "error");
      replace(status, msg);
      focusResult(msg);
      button.disabled = false;
    }
  });
  replace(root, h("section", { class: "card narrow" }, h("h1", {}, "Set up your camhub"), form));
}

// Pairing with a passkey (PROTOCOL §1, §3.1): the authenticator makes the key, the pairing code
// enrols it, and the passkey (not a browser key) signs the proof that sets the password.
async function pairWithPasskey(session, pairingCode, name, password, status) {
  const rpId = session.passkey_rp_id;
  replace(status, notice("Making a passkey: your device asks for your fingerprint, face or PIN…"));
  const passkey = await createPasskey(session.hub_id, rpId, name);
  replace(status, notice("Enrolling the passkey with the pairing code…"));
  const res = await api.post("/api/v1/owner/enroll", { pairing_code: pairingCode, passkey, name });
  preferPasskey(true);
  rememberPasskey(res.kid, passkey.credential_id);
  replace(status, notice("Setting the password: the passkey asks once more, to sign “set this hub's password”…"));
  return setPasswordWithPasskey(session, password, [{ kid: res.kid, passkey: { credential_id: passkey.credential_id } }]);
}

// The set-password proof signed by a passkey (hub/api/session.py: the §3.1 format around it).
async function setPasswordWithPasskey(session, password, passkeys) {
  const payload = { v: 1, hub: session.hub_id, purpose: "set-password", issued_at: rfc3339(new Date()), jti: randomJti() };
  const proof = await signWithPasskey(payload, passkeys, session.passkey_rp_id);
  return api.post("/api/v1/session/password", { password, proof });
}

function guessDeviceName() {
  const ua = navigator.userAgent;
  if (/iPhone|Android.*Mobile/.test(ua)) return "phone";
  if (/iPad|Tablet/.test(ua)) return "tablet";
  return "browser";
}
