// Agencies the owner trusts (PROTOCOL.md §1, §3 add-agency / remove-agency), each change signed here.

import * as api from "../lib/api.js";
import { decide, fingerprint, signingKey } from "../lib/decide.js";
import { h, notice, replace } from "../lib/dom.js";
import { publicOnly, thumbprint } from "../lib/keys.js";
import { fmtUnix } from "../lib/time.js";

function parseJwk(text) {
  let jwk;
  try {
    jwk = JSON.parse(text);
  } catch {
    throw new Error("The signing key must be a JSON Web Key, e.g. {\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"…\"}.");
  }
  if (!jwk || jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string" || "d" in jwk) {
    throw new Error("Only a public Ed25519 key (kty OKP, crv Ed25519, no private part) is accepted.");
  }
  return publicOnly(jwk);
}

export async function render(root, ctx) {
  const hubId = ctx.session.hub_id;
  const [{ agencies }, { keys }] = await Promise.all([api.get("/api/v1/owner/agencies"), api.get("/api/v1/owner/devices")]);
  const { key, enrolled } = await signingKey(keys.map((k) => k.kid));
  const canSign = !!key && enrolled;
  const reload = () => render(root, ctx);

  const status = h("div", { "aria-live": "polite" });
  const keyid = h("code", { id: "ag-keyid" }, "—");
  const form = h("form", { class: "stack card", "aria-labelledby": "h-add" },
    h("h2", { id: "h-add" }, "Add an agency"),
    h("p", { class: "muted" }, "Get these from the agency in person or over a channel you trust, and compare the key id with theirs before adding."),
    h("label", { for: "ag-name" }, "Name"),
    h("input", { id: "ag-name", name: "name", required: true, maxlength: 100, placeholder: "Springfield PD" }),
    h("label", { for: "ag-jwk" }, "Signing key (JWK)"),
    h("textarea", { id: "ag-jwk", name: "jwk", required: true, placeholder: "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"…\"}" }),
    h("p", {}, "Key id: ", keyid),
    h("label", { for: "ag-recipient" }, "Delivery recipient (age)"),
    h("input", { id: "ag-recipient", name: "recipient", required: true, placeholder: "age1…", pattern: "age1[0-9a-z]+" }),
    h("div", { class: "actions" }, h("button", { type: "submit", disabled: !canSign }, "Add agency (sign)")),
    status,
  );
  form.elements.jwk.addEventListener("input", async () => {
    try {
      keyid.textContent = fingerprint(await thumbprint(parseJwk(form.elements.jwk.value)));
    } catch {
      keyid.textContent = "—";
    }
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const sig_jwk = parseJwk(form.elements.jwk.value);
      const recipient = form.elements.recipient.value.trim();
      if (!/^age1[0-9a-z]{20,}$/.test(recipient)) throw new Error("The recipient must be an age X25519 recipient (age1…).");
      await decide(hubId, { decision: "add-agency", subject: { name: form.elements.name.value.trim(), sig_jwk, recipient } });
      reload();
    } catch (err) {
      replace(status, notice(`Not added: ${err.message}`, "error"));
    }
  });

  const rows = agencies.map((a) => {
    const st = h("span", { "aria-live": "polite" });
    const button = a.active
      ? h("button", { type: "button", class: "danger", disabled: !canSign, onclick: async () => {
          button.disabled = true;
          try {
            await decide(hubId, { decision: "remove-agency", subject: { keyid: a.keyid } });
            reload();
          } catch (err) {
            replace(st, notice(`Not removed: ${err.message}`, "error"));
            button.disabled = false;
          }
        } }, "Remove")
      : null;
    return h("tr", {},
      h("td", {}, a.name),
      h("td", {}, h("code", { title: a.keyid }, fingerprint(a.keyid))),
      h("td", {}, h("code", {}, `${(a.recipient || "").slice(0, 16)}…`)),
      h("td", {}, a.active ? `added ${fmtUnix(a.added_at)}` : `removed ${fmtUnix(a.removed_at)}`),
      h("td", {}, button, st));
  });

  replace(root,
    h("h1", {}, "Agencies"),
    canSign ? null : notice("This browser cannot sign (no enrolled key here).", "warn"),
    h("section", { class: "card" },
      agencies.length
        ? h("table", { id: "agencies" }, h("thead", {}, h("tr", {}, ["Name", "Key id", "Recipient", "Status", ""].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows))
        : h("p", { class: "muted" }, "No agencies. Requests from unknown agencies are refused and logged; nothing about your cameras is revealed to them.")),
    form);
}
