// Owner devices: each browser (or key file) that can sign decisions. A new device logs in with the
// password, makes its own key and asks; an enrolled device approves it with a signed enroll-key.

import * as api from "../lib/api.js";
import { decide, fingerprint } from "../lib/decide.js";
import { h, notice, replace } from "../lib/dom.js";
import { createOwnerKey, markEnrolled, ownerKey } from "../lib/keys.js";
import { fmtUnix } from "../lib/time.js";

export async function render(root, ctx) {
  const hubId = ctx.session.hub_id;
  const { keys, pending } = await api.get("/api/v1/owner/devices");
  const mine = await ownerKey();
  const enrolled = !!mine && keys.some((k) => k.kid === mine.kid);
  if (mine && enrolled !== !!mine.enrolled) await markEnrolled(enrolled);
  const reload = () => render(root, ctx);
  const status = h("div", { "aria-live": "polite" });

  const sign = async (fields, what) => {
    try {
      await decide(hubId, fields);
      reload();
    } catch (err) {
      replace(status, notice(`${what} refused: ${err.message}`, "error"));
    }
  };

  let thisDevice;
  if (enrolled) {
    thisDevice = notice(`This browser is enrolled as “${mine.name}” (key ${fingerprint(mine.kid).slice(0, 24)}…). Its private key cannot be exported.`, "ok");
  } else {
    const nameIn = h("input", { id: "dev-name", value: mine?.name || "phone", maxlength: 64 });
    thisDevice = h("div", { class: "stack" },
      notice(mine ? `This browser made key ${fingerprint(mine.kid).slice(0, 24)}… and is waiting for an enrolled device to approve it.` : "This browser has no owner key, so it can view but not approve anything.", "warn"),
      h("div", { class: "row" },
        h("label", { for: "dev-name" }, "Name for this device", nameIn),
        h("button", { type: "button", onclick: async () => {
          try {
            const key = mine || (await createOwnerKey(nameIn.value.trim() || "device"));
            await api.post("/api/v1/owner/device-requests", { public_jwk: key.publicJwk, name: nameIn.value.trim() || key.name });
            reload();
          } catch (err) {
            replace(status, notice(err.message, "error"));
          }
        } }, mine ? "Ask again" : "Make a key and ask to be enrolled")));
  }

  replace(root,
    h("h1", {}, "Owner devices"),
    h("section", { class: "card" }, h("h2", {}, "This device"), thisDevice),
    h("section", { class: "card" },
      h("h2", {}, "Enrolled keys"),
      h("table", { id: "devices" },
        h("thead", {}, h("tr", {}, ["Name", "Key id", "Enrolled", ""].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, keys.map((k) => h("tr", {},
          h("td", {}, k.name, mine?.kid === k.kid ? " (this browser)" : ""),
          h("td", {}, h("code", { title: k.kid }, fingerprint(k.kid).slice(0, 29))),
          h("td", {}, `${fmtUnix(k.enrolled_at)}${k.enrolled_by ? "" : " (pairing code)"}`),
          h("td", {}, h("button", { type: "button", class: "danger", disabled: !enrolled || keys.length < 2,
            title: keys.length < 2 ? "The last owner key cannot be revoked" : "",
            onclick: () => sign({ decision: "revoke-key", subject: { kid: k.kid } }, "Revoke") }, "Revoke"))))))),
    pending.length
      ? h("section", { class: "card" },
          h("h2", {}, "Waiting to be enrolled"),
          h("p", { class: "muted" }, "Compare the key id with the one shown on the new device before approving."),
          pending.map((p) => h("div", { class: "row" },
            h("span", {}, h("strong", {}, p.name), " ", h("code", {}, fingerprint(p.kid).slice(0, 29))),
            h("button", { type: "button", disabled: !enrolled, onclick: () => sign({ decision: "enroll-key", subject: { public_jwk: p.public_jwk, name: p.name } }, "Enrolment") }, "Approve (sign)"))))
      : null,
    status);
}
