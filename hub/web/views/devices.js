// Owner devices: each browser (or key file) that can sign decisions. A new device logs in with the
// password, makes its own key and asks; an enrolled device approves it with a signed enroll-key.
// Keys are shown by name and a short fingerprint; the full key id is under "Technical details".
// Lineage (PROTOCOL §3 revoke-key): a device can never revoke the one that enrolled it (or that one's
// enroller...), and revoking a device also revokes what it did; the dialog lists that first.

import * as api from "../lib/api.js";
import { decide, preferPasskey, signingKey } from "../lib/decide.js";
import { cardTable, confirmDialog, focusResult, h, notice, replace } from "../lib/dom.js";
import { createOwnerKey, markEnrolled, ownerKey } from "../lib/keys.js";
import { createPasskey, passkeysAvailable, rememberPasskey } from "../lib/passkey.js";
import { fmtUnix } from "../lib/time.js";
import { details, sentence, shortFingerprint } from "../lib/words.js";

export async function render(root, ctx, flash = null) {
  const hubId = ctx.session.hub_id;
  const { keys, pending } = await api.get("/api/v1/owner/devices");
  const mine = await ownerKey();
  const enrolled = !!mine && keys.some((k) => k.kid === mine.kid);
  if (mine && enrolled !== !!mine.enrolled) await markEnrolled(enrolled);
  const rpId = ctx.session.passkey_rp_id;
  const { kind } = await signingKey(keys, rpId);
  const canSign = kind !== "none";
  const passkeys = keys.filter((k) => k.passkey);
  const reload = (message) => render(root, ctx, message);
  const status = h("div", { class: "status" });

  const fail = (what, err) => {
    const msg = notice(`${what}: ${sentence(err)}`, "error");
    replace(status, msg);
    focusResult(msg);
  };

  let thisDevice;
  if (enrolled) {
    thisDevice = h("div", {},
      notice(`This browser is enrolled as “${mine.name}” (fingerprint ${shortFingerprint(mine.kid)}). It can approve, and its private key cannot be copied out of it.`, "ok"),
      details(h("p", {}, "Key id: ", h("code", {}, mine.kid))));
  } else {
    const nameIn = h("input", { id: "dev-name", value: mine?.name || "phone", maxlength: 64 });
    thisDevice = h("div", { class: "stack" },
      mine
        ? notice(`This browser made its key (fingerprint ${shortFingerprint(mine.kid)}) and is waiting for an enrolled device to approve it. On that device, open Devices and check that the fingerprint matches.`, "warn")
        : notice("This browser has no owner key, so it can view but not approve anything. To approve from here: press “Make a key and ask to be enrolled” below, then, on a device that can already approve, open Devices, check that the fingerprint matches and approve it.", "warn"),
      h("div", { class: "row" },
        h("label", { for: "dev-name" }, "Name for this device", nameIn),
        h("button", { type: "button", onclick: async () => {
          try {
            const key = mine || (await createOwnerKey(nameIn.value.trim() || "device"));
            await api.post("/api/v1/owner/device-requests", { public_jwk: key.publicJwk, name: nameIn.value.trim() || key.name });
            reload(`Asked to be enrolled. The fingerprint to compare is ${shortFingerprint(key.kid)}.`);
          } catch (err) {
            fail("Not asked", err);
          }
        } }, mine ? "Ask again" : "Make a key and ask to be enrolled")));
  }

  // Passkeys (PROTOCOL §3.1): made by this browser's authenticator (a phone's fingerprint or face),
  // enrolled by a signed enroll-key like any device, and from then on what this browser signs with.
  const pkName = h("input", { id: "pk-name", value: "passkey", maxlength: 64 });
  const addPasskey = async () => {
    const name = pkName.value.trim() || "passkey";
    let passkey;
    try {
      passkey = await createPasskey(hubId, rpId, name);
    } catch (err) {
      fail("No passkey added", err);
      return;
    }
    if (kind === "passkey") {
      // Signed with a passkey: its prompt shows nothing, so say here what it will sign.
      const ok = await confirmDialog({
        title: `Enrol the passkey “${name}”?`,
        body: h("div", {}, h("p", {}, `“${name}” will be able to approve and decline requests and manage devices, as a device enrolled by this one.`),
          h("p", { class: "muted" }, "Next, your passkey asks for your fingerprint, face or PIN. It shows nothing of this decision.")),
        confirm: "Sign and enrol",
      });
      if (!ok) return;
    }
    try {
      await decide(hubId, { decision: "enroll-key", subject: { passkey, name } });
      preferPasskey(true);
      const enrolledNow = (await api.get("/api/v1/owner/devices")).keys.find((k) => k.passkey?.credential_id === passkey.credential_id);
      if (enrolledNow) rememberPasskey(enrolledNow.kid, passkey.credential_id);
      reload(`Added the passkey “${name}”. This browser now approves with it (your fingerprint, face or PIN each time).`);
    } catch (err) {
      fail("No passkey added", err);
    }
  };
  const passkeySection = h("section", { class: "card", "aria-labelledby": "h-passkeys" },
    h("h2", { id: "h-passkeys" }, "Passkeys"),
    h("p", {}, "A passkey lives in your phone or laptop and signs only after your fingerprint, face or PIN. Before it asks, this page shows you exactly what you are signing."),
    kind === "passkey" ? notice("This browser approves with a passkey.", "ok") : null,
    !passkeysAvailable()
      ? notice("This browser cannot use passkeys here (open the hub over https:// with its name, or on this machine over http://localhost).", "warn")
      : h("div", { class: "row" },
          h("label", { for: "pk-name" }, "Name for the passkey", pkName),
          h("button", { type: "button", disabled: !canSign, onclick: addPasskey }, "Add a passkey (sign)"),
          passkeys.length && enrolled
            ? h("button", { type: "button", class: "secondary", onclick: () => {
                preferPasskey(kind !== "passkey");
                reload(kind === "passkey" ? "This browser approves with its own key again." : "This browser approves with a passkey now.");
              } }, kind === "passkey" ? "Approve with this browser's key instead" : "Approve with a passkey")
            : null));

  // Keys above this browser's own: it may not revoke them (the hub refuses with revoke_ancestor).
  const byKid = new Map(keys.map((k) => [k.kid, k]));
  const above = new Set();
  for (let k = mine && byKid.get(mine.kid); k && k.enrolled_by && !above.has(k.enrolled_by); k = byKid.get(k.enrolled_by)) {
    above.add(k.enrolled_by);
  }
  const whyNot = (k) => {
    if (keys.length < 2) return "The only device that can approve cannot be revoked: enrol another one first.";
    if (!canSign) return "Only an enrolled device can revoke.";
    if (above.has(k.kid)) return "This browser was enrolled through it, so it cannot revoke it: revoke it from the device that enrolled it.";
    if (!k.enrolled_by) return "The first device (paired with the code) cannot be revoked: every other device was enrolled through it. If it was stolen, run “camhub owner reset” on the hub.";
    return null;
  };

  // What revoking `k` also revokes, from the hub (GET …/revoke-preview), in words for the dialog.
  const revokeList = async (k) => {
    const plan = await api.get(`/api/v1/owner/devices/${encodeURIComponent(k.kid)}/revoke-preview`);
    const others = plan.keys.filter((x) => x.kid !== k.kid);
    const items = [
      others.length ? `the ${others.length} device(s) it enrolled: ${others.map((x) => x.name).join(", ")}` : "no other device: it enrolled none",
      plan.agencies.length
        ? `the agencies it added, with their open requests: ${plan.agencies.map((a) => a.name).join(", ")}`
        : "no agency: it added none",
      plan.grants.length ? `${plan.grants.length} approval(s) it gave (or that go to those agencies)` : "no approval: it gave none",
    ];
    return h("div", {},
      h("p", {}, `“${k.name}” will no longer be able to approve anything.${mine?.kid === k.kid ? " This is the browser you are using." : ""} Revoking it also revokes:`),
      h("ul", { class: "revoke-list" }, items.map((t) => h("li", {}, t))));
  };

  const revokeButton = (k) => {
    // Say why a Revoke is not offered, in words (a disabled button alone says nothing).
    const why = whyNot(k);
    const button = h("button", { type: "button", class: "danger", disabled: !!why, "aria-label": `Revoke ${k.name}`, "aria-describedby": why ? `why-${k.kid}` : null, onclick: async () => {
      let body;
      try {
        body = await revokeList(k);
      } catch (err) {
        fail("Not revoked", err);
        return;
      }
      const ok = await confirmDialog({ title: `Revoke “${k.name}”?`, body, confirm: "Sign and revoke all of this", danger: true });
      if (!ok) return;
      try {
        await decide(hubId, { decision: "revoke-key", subject: { kid: k.kid } });
        reload(`Revoked “${k.name}”.`);
      } catch (err) {
        fail("Not revoked", err);
      }
    } }, "Revoke");
    return h("span", {}, button, why ? h("span", { class: "muted", id: `why-${k.kid}` }, ` ${why}`) : null);
  };

  const flashEl = flash ? notice(flash, "ok") : null;
  replace(root,
    h("h1", {}, "Owner devices"),
    flashEl,
    h("section", { class: "card", "aria-labelledby": "h-this" }, h("h2", { id: "h-this" }, "This device"), thisDevice),
    passkeySection,
    h("section", { class: "card", "aria-labelledby": "h-keys" },
      h("h2", { id: "h-keys" }, "Devices that can approve"),
      cardTable({ id: "devices" }, ["Name", "Fingerprint", "Enrolled", "Action"], keys.map((k) => ({
        cells: [
          `${k.name}${mine?.kid === k.kid ? " (this browser)" : ""}${k.passkey ? " (passkey)" : ""}`,
          h("span", {}, h("code", {}, shortFingerprint(k.kid)), details(h("p", {}, "Key id: ", h("code", {}, k.kid)))),
          `${fmtUnix(k.enrolled_at, { seconds: false })}${k.enrolled_by ? ` by ${byKid.get(k.enrolled_by)?.name ?? "another device"}` : " (with the pairing code)"}`,
          revokeButton(k),
        ],
      })))),
    pending.length
      ? h("section", { class: "card", "aria-labelledby": "h-pending" },
          h("h2", { id: "h-pending" }, "Waiting to be enrolled"),
          h("p", { class: "muted" }, "Compare the fingerprint with the one shown on the new device before approving."),
          pending.map((p) => h("div", { class: "row pending-device" },
            h("span", {}, h("strong", {}, p.name), " fingerprint ", h("code", {}, shortFingerprint(p.kid))),
            h("button", { type: "button", disabled: !canSign, onclick: async () => {
              try {
                await decide(hubId, { decision: "enroll-key", subject: { public_jwk: p.public_jwk, name: p.name } });
                reload(`Enrolled “${p.name}”. It can approve now.`);
              } catch (err) {
                fail("Not enrolled", err);
              }
            } }, "Approve (sign)"))))
      : null,
    status);
  if (flashEl) focusResult(flashEl);
}
