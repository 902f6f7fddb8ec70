// Agencies the owner trusts (PROTOCOL.md §1, §3 add-agency / remove-agency), each change signed here.
// The keys an agency hands over are technical (a JSON Web Key to sign with, an age X25519 recipient
// to encrypt deliveries to); the page speaks of a "public signing key", an "encryption key" and a
// short fingerprint, and keeps the full values under "Technical details".

import * as api from "../lib/api.js";
import { decide, signingKey } from "../lib/decide.js";
import { cardTable, confirmDialog, focusResult, h, notice, replace } from "../lib/dom.js";
import { publicOnly, thumbprint } from "../lib/keys.js";
import { fmtUnix } from "../lib/time.js";
import { details, enrolHelp, sentence, shortFingerprint } from "../lib/words.js";

// The agency's public signing key as pasted: errors name the field and say what to do.
function parseSigningKey(text) {
  let jwk;
  try {
    jwk = JSON.parse(text);
  } catch {
    throw new Error("Public signing key: this is not a key. Paste the block of text the agency gave you, starting with { and ending with }.");
  }
  if (jwk && typeof jwk === "object" && "d" in jwk) {
    throw new Error("Public signing key: this is a private key, which must stay with the agency. Paste the agency's public key (the one without a \"d\" part).");
  }
  if (!jwk || jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string") {
    throw new Error("Public signing key: this is not an Ed25519 public key (\"kty\":\"OKP\", \"crv\":\"Ed25519\"). Ask the agency for the key made by camhub-agency keygen.");
  }
  return publicOnly(jwk);
}

function parseRecipient(text) {
  const value = text.trim();
  if (value.startsWith("AGE-SECRET-KEY-")) throw new Error("Encryption key: this is the agency's secret key, which must stay with the agency. Paste its public encryption key, which starts with age1.");
  if (!/^age1[0-9a-z]{20,}$/.test(value)) throw new Error("Encryption key: it must start with age1 followed by lowercase letters and digits, exactly as the agency gave it.");
  return value;
}

export async function render(root, ctx, flash = null) {
  const hubId = ctx.session.hub_id;
  const [{ agencies }, { keys }] = await Promise.all([api.get("/api/v1/owner/agencies"), api.get("/api/v1/owner/devices")]);
  const { kind } = await signingKey(keys, ctx.session.passkey_rp_id);
  const canSign = kind !== "none";
  const reload = (message) => render(root, ctx, message);

  const status = h("div", { class: "status" });
  const fp = h("strong", { id: "ag-fingerprint" }, "—");
  const fullId = h("code", {}, "—");
  const form = h("form", { class: "stack card", "aria-labelledby": "h-add", novalidate: true },
    h("h2", { id: "h-add" }, "Add an agency"),
    h("p", { class: "muted" }, "Get these from the agency in person or over a channel you trust, and compare the fingerprint with theirs before adding."),
    h("label", { for: "ag-name" }, "Name"),
    h("input", { id: "ag-name", name: "name", required: true, maxlength: 100, placeholder: "Springfield PD" }),
    h("label", { for: "ag-jwk" }, "Public signing key"),
    h("textarea", { id: "ag-jwk", name: "jwk", required: true, "aria-describedby": "ag-jwk-hint", placeholder: "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"…\"}" }),
    h("p", { class: "muted", id: "ag-jwk-hint" }, "A short block of text in braces that the agency's software printed. Its fingerprint: ", fp),
    h("label", { for: "ag-recipient" }, "Encryption key for deliveries"),
    h("input", { id: "ag-recipient", name: "recipient", required: true, "aria-describedby": "ag-recipient-hint", placeholder: "age1…", autocomplete: "off" }),
    h("p", { class: "muted", id: "ag-recipient-hint" }, "Starts with age1. Footage sent to this agency is encrypted to it, so only it can open it."),
    details(h("p", {}, "Full key id (RFC 7638 thumbprint of the signing key): ", fullId)),
    h("div", { class: "actions" }, h("button", { type: "submit", disabled: !canSign }, "Add agency (sign)")),
    status,
  );
  form.elements.jwk.addEventListener("input", async () => {
    try {
      const kid = await thumbprint(parseSigningKey(form.elements.jwk.value));
      fp.textContent = shortFingerprint(kid);
      fullId.textContent = kid;
    } catch {
      fp.textContent = "—";
      fullId.textContent = "—";
    }
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    let field = null;
    try {
      const name = form.elements.name.value.trim();
      field = form.elements.name;
      if (!name) throw new Error("Name: give the agency a name you will recognise.");
      field = form.elements.jwk;
      const sig_jwk = parseSigningKey(form.elements.jwk.value);
      field = form.elements.recipient;
      const recipient = parseRecipient(form.elements.recipient.value);
      field = null;
      await decide(hubId, { decision: "add-agency", subject: { name, sig_jwk, recipient } });
      reload(`Added ${name}. Requests signed with its key now reach your inbox.`);
    } catch (err) {
      if (field) field.setAttribute("aria-invalid", "true");
      const msg = notice(`Not added: ${sentence(err)}`, "error");
      replace(status, msg);
      focusResult(msg);
    }
  });

  const rows = agencies.map((a) => {
    const st = h("span", { class: "status" });
    const button = a.active
      ? h("button", { type: "button", class: "danger", disabled: !canSign, "aria-label": `Remove ${a.name}`, onclick: async () => {
          const ok = await confirmDialog({
            title: `Remove ${a.name}?`,
            body: h("p", {}, `Its open requests close and every approval you gave it is revoked at once: nothing more can leave for ${a.name}. It can be added again later.`),
            confirm: "Sign and remove", danger: true,
          });
          if (!ok) return;
          button.disabled = true;
          try {
            await decide(hubId, { decision: "remove-agency", subject: { keyid: a.keyid } });
            reload(`Removed ${a.name}.`);
          } catch (err) {
            const msg = notice(`Not removed: ${sentence(err)}`, "error");
            replace(st, msg);
            focusResult(msg);
            button.disabled = false;
          }
        } }, "Remove")
      : null;
    return {
      cells: [
        a.name,
        h("span", {}, h("code", {}, shortFingerprint(a.keyid)), details(h("p", {}, "Key id: ", h("code", {}, a.keyid)), h("p", {}, "Encryption key: ", h("code", {}, a.recipient || "—")))),
        a.active ? `added ${fmtUnix(a.added_at, { seconds: false })}` : `removed ${fmtUnix(a.removed_at, { seconds: false })}`,
        button ? h("span", {}, button, st) : h("span", { class: "muted" }, "—"),
      ],
    };
  });

  const flashEl = flash ? notice(flash, "ok") : null;
  replace(root,
    h("h1", {}, "Agencies"),
    flashEl,
    canSign ? null : enrolHelp(),
    h("section", { class: "card", "aria-labelledby": "h-list" },
      h("h2", { id: "h-list" }, "Agencies you trust"),
      agencies.length
        ? cardTable({ id: "agencies" }, ["Name", "Fingerprint", "Status", "Action"], rows)
        : h("p", { class: "muted" }, "No agencies. Requests from unknown agencies are refused and logged; nothing about your cameras is revealed to them.")),
    form);
  if (flashEl) focusResult(flashEl);
}
