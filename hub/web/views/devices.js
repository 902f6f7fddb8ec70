// Owner devices: each browser (or key file) that can sign decisions. A new device logs in with the
// password, makes its own key and asks; an enrolled device approves it with a signed enroll-key.
// Lineage (PROTOCOL §3 revoke-key): a device can never revoke the one that enrolled it (or that one's
// enroller...), and revoking a device also revokes what it did; the page shows that list first.

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

  // Keys above this browser's own: it may not revoke them (the hub refuses with revoke_ancestor).
  const byKid = new Map(keys.map((k) => [k.kid, k]));
  const above = new Set();
  for (let k = mine && byKid.get(mine.kid); k && k.enrolled_by && !above.has(k.enrolled_by); k = byKid.get(k.enrolled_by)) {
    above.add(k.enrolled_by);
  }
  const confirmBox = h("div", { id: "revoke-confirm" });

  const why = (k) => {
    if (!enrolled) return "This browser cannot sign: it is not an enrolled device.";
    if (above.has(k.kid)) return "This device was enrolled through it, so it cannot revoke it. Revoke from that device (or the one that enrolled it).";
    if (!k.enrolled_by) return "The first device (paired with the code) cannot be revoked: every device hangs off it. If it was stolen, run `camhub owner reset` on the hub.";
    return null;
  };

  const askRevoke = async (k) => {
    let plan;
    try {
      plan = await api.get(`/api/v1/owner/devices/${encodeURIComponent(k.kid)}/revoke-preview`);
    } catch (err) {
      replace(confirmBox, notice(err.message, "error"));
      return;
    }
    const others = plan.keys.filter((x) => x.kid !== k.kid);
    const lines = [
      others.length ? `${others.length} more device key(s) it enrolled: ${others.map((x) => x.name).join(", ")}` : "no other device keys",
      plan.agencies.length ? `${plan.agencies.length} agency(ies) it added, with their open requests: ${plan.agencies.map((a) => a.name).join(", ")}` : "no agencies",
      plan.grants.length ? `${plan.grants.length} approval(s) it signed or that go to those agencies` : "no approvals",
    ];
    const ok = h("button", { type: "button", class: "danger", onclick: () => sign({ decision: "revoke-key", subject: { kid: k.kid } }, "Revoke") }, `Revoke “${k.name}” and all of this`);
    const cancel = h("button", { type: "button", onclick: () => replace(confirmBox) }, "Cancel");
    replace(confirmBox, h("div", { class: "card", role: "group", "aria-label": "Confirm revoke" },
      h("h3", {}, `Revoking “${k.name}” also revokes:`),
      h("ul", {}, lines.map((t) => h("li", {}, t))),
      plan.active_keys_left < 1 ? notice("No device would be left to approve anything: the hub will refuse.", "warn") : null,
      h("div", { class: "row" }, ok, cancel)));
    ok.focus();
  };

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
          h("td", {}, `${fmtUnix(k.enrolled_at)}${k.enrolled_by ? ` by ${byKid.get(k.enrolled_by)?.name ?? "another device"}` : " (pairing code)"}`),
          h("td", {},
            h("button", { type: "button", class: "danger", disabled: !!why(k), onclick: () => askRevoke(k) }, "Revoke"),
            why(k) ? h("span", { class: "muted" }, " ", why(k)) : null))))),
      confirmBox),
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
