// The audit log, one page at a time (newest first), verified here rather than trusted:
//   - the checkpoint is signed by the hub key this browser pinned on first use;
//   - every entry shown comes with an RFC 9162 inclusion proof against that signed root, checked
//     here (so the page never needs the whole log, however long it grows);
//   - the signed root is consistent (RFC 9162 consistency proof) with the last checkpoint this
//     browser saw (kept in localStorage), so a log that was rolled back or rewritten since the
//     owner's last visit is noticed.
// Entries are shown in words ("Town PD downloaded the clip of Front door, …"), each with its exact
// bytes one click away.

import * as api from "../lib/api.js";
import { unb64, unb64url, utf8 } from "../lib/b64.js";
import { cardTable, h, replace } from "../lib/dom.js";
import { thumbprint } from "../lib/keys.js";
import { leafHash, parseCheckpoint, verifyCheckpoint, verifyConsistency, verifyInclusion } from "../lib/merkle.js";
import { hashParams } from "../lib/route.js";
import { fmtDuration, fmtRange, fmtWhen, fromUnix } from "../lib/time.js";
import { joinNames, shortFingerprint } from "../lib/words.js";

const SEEN_KEY = "camhub.audit.seen";
const PAGE = 50;

const CATEGORIES = [
  ["", "Everything"],
  ["request.received,request.rejected,decision.accepted,decision.rejected", "Agency requests and your answers"],
  ["egress.delivery,egress.delivery.stopped,egress.live.start,egress.live.end,delivery.built", "What left the house"],
  ["key.enrolled,key.revoked,agency.added,agency.removed,pairing.failed", "Devices and agencies"],
  ["owner.login,owner.login_failed,owner.password_set", "Logins"],
  ["hub.started,clock.unsynced,clock.confirmed,clock.rejected,settings.changed,retention.deleted", "Hub, clock, settings and retention"],
];

// Why an agency call was refused (hub/consent/httpsig.py and requests.py codes), in words.
const REFUSED = {
  bad_signature: "its signature did not check out", unknown_key: "the sender is not an agency you added",
  nonce_replayed: "it was a replay of an earlier call", signature_expired: "its signature had expired",
  created_in_future: "its signature was dated in the future", signature_missing: "it was not signed",
  signature_malformed: "its signature was malformed", digest_mismatch: "its body did not match its signature",
  digest_missing: "its body was not covered by its signature", component_not_covered: "its signature left out parts of the call",
  validity_too_long: "its signature was valid for too long", clock_unsynced: "the hub's clock was not confirmed",
  wrong_hub: "it was meant for another hub", invalid_field: "the request was not valid", missing_field: "the request was incomplete",
  unknown_field: "the request had unknown fields", invalid_json: "the request was not valid JSON", body_too_large: "it was too large",
};

// The signed payload of an accepted decision: a JWS (PROTOCOL §3) or a passkey decision (§3.1).
function payloadOf(d) {
  try {
    const part = d.webauthn ? d.webauthn.payload : d.jws.split(".")[1];
    return JSON.parse(new TextDecoder().decode(unb64url(part)));
  } catch {
    return {};
  }
}

// One entry in words. `n` holds display names the hub sent with the page (agencies, devices, cameras,
// requests, deliveries); anything unnamed falls back to a short fingerprint.
function describe(e, n) {
  const d = e.data || {};
  const cam = (id) => n.cameras[id] || id;
  const agencyName = (keyid) => n.agencies[keyid] || `an agency (${shortFingerprint(keyid)})`;
  const device = (kid) => (n.owner_keys[kid] ? `“${n.owner_keys[kid]}”` : `a device (${shortFingerprint(kid)})`);
  const actorKey = (e.actor || "").split(":")[1] || "";
  const req = (rid) => {
    const r = n.requests[rid];
    return r ? `${r.agency || "an agency"}${r.case_id ? ` (case ${r.case_id})` : ""}` : "an agency";
  };
  const range = (a, b) => (a && b ? fmtRange(new Date(a), new Date(b)) : "");
  switch (e.type) {
    case "request.received":
      return d.kind === "live"
        ? `${agencyName(actorKey)} asked to watch ${joinNames((d.cameras || []).map(cam))} live, up to ${fmtDuration(d.live_max_seconds || 0)}${d.case_id ? ` (case ${d.case_id})` : ""}`
        : `${agencyName(actorKey)} asked for ${joinNames((d.cameras || []).map(cam))}, ${range(d.start, d.end)}${d.case_id ? ` (case ${d.case_id})` : ""}`;
    case "request.rejected":
      return `A call ${e.actor?.startsWith("agency:") ? `from ${agencyName(actorKey)}` : "from someone unknown"} was refused: ${REFUSED[d.code] || (d.code || "").replace(/_/g, " ")}`;
    case "decision.accepted": {
      const by = device(actorKey);
      const p = d.jws || d.webauthn ? payloadOf(d) : {};
      switch (d.decision) {
        case "approve":
          return `You approved ${req(d.request_id)} from ${by}: ${p.scope?.kind === "live" ? `a livestream of ${joinNames((p.scope.cameras || []).map(cam))}` : `${joinNames((p.scope?.cameras || []).map(cam))}, ${range(p.scope?.start, p.scope?.end)}`}${p.scope?.audio ? ", with sound" : ", no sound"}`;
        case "decline": return `You declined the request of ${req(d.request_id)} (from ${by})`;
        case "revoke": return `You revoked the approval for ${req(d.request_id)} (from ${by})`;
        case "enroll-key": return `You enrolled a new device${p.subject?.name ? ` “${p.subject.name}”` : ""} (from ${by})`;
        case "revoke-key": return `You revoked the device ${device(p.subject?.kid)} (from ${by})`;
        case "add-agency": return `You added the agency ${p.subject?.name || ""} (from ${by})`;
        case "remove-agency": return `You removed the agency ${agencyName(p.subject?.keyid)} (from ${by})`;
        case "confirm-time": return `You confirmed the hub's clock (from ${by})`;
        default: return `You signed: ${d.decision}`;
      }
    }
    case "decision.rejected":
      return `An answer${e.actor?.startsWith("owner:") ? ` from ${device(actorKey)}` : ""} was refused (${(d.code || "").replace(/_/g, " ")})`;
    case "delivery.built":
      return `The clip of ${cam(d.camera)} for ${req(d.request_id)} was prepared, ${range(d.clip_start, d.clip_end)}`;
    case "egress.delivery": {
      const dl = n.deliveries[d.delivery_id];
      return `${agencyName(actorKey)} downloaded the clip of ${cam(d.camera)}${dl ? `, ${fmtRange(fromUnix(dl.start), fromUnix(dl.end))}` : ""} (download ${d.fetch})`;
    }
    case "egress.delivery.stopped": return `A download by ${agencyName(actorKey)} stopped part-way (${(d.code || "").replace(/_/g, " ")})`;
    case "egress.live.start": return `${agencyName(actorKey)} started watching ${cam(d.camera)} live`;
    case "egress.live.end": return `${agencyName(actorKey)} stopped watching ${cam(d.camera)} live after ${d.seconds ? fmtDuration(d.seconds) : "less than a second"}${d.reason ? ` (${String(d.reason).replace(/_/g, " ")})` : ""}`;
    case "key.enrolled": return `The device “${d.name || shortFingerprint(d.kid)}” was enrolled${d.via === "pairing_code" ? " with the pairing code" : ""}`;
    case "key.counter_regressed": return `The passkey ${device(d.kid)} signed with a counter it had already used (${d.seen}, last seen ${d.stored}): another copy of it may exist. The decision was refused; revoke the passkey if this was not you`;
    case "key.revoked": return `The device ${device(d.kid)} was revoked${d.grants_revoked ? `, and ${d.grants_revoked} approvals it gave with it` : ""}`;
    case "agency.added": return `The agency ${d.name || agencyName(d.keyid)} was added`;
    case "agency.removed": return `The agency ${agencyName(d.keyid)} was removed${d.grants_revoked ? `; ${d.grants_revoked} approvals revoked` : ""}${d.requests_closed ? `; ${d.requests_closed} requests closed` : ""}`;
    case "retention.deleted":
      if (d.segments === undefined) {
        // Agency deliveries and exports that reached the maximum age (PROTOCOL §3.2), not recordings.
        const parts = [];
        if (d.deliveries?.length) parts.push(`${d.deliveries.length} ${d.deliveries.length === 1 ? "delivery" : "deliveries"} to agencies`);
        if (d.exports?.length) parts.push(`${d.exports.length} ${d.exports.length === 1 ? "export" : "exports"}`);
        return `Old ${parts.join(" and ") || "files"} of ${joinNames((d.cameras || []).map(cam))} were deleted by the retention rules`;
      }
      return `Old recordings of ${joinNames((d.cameras || []).map(cam))} were deleted by the retention rules (${range(d.from, d.to)})`;
    case "owner.login": return `You logged in (from ${d.remote || "?"})`;
    case "owner.login_failed": return `A login failed: ${d.reason === "rate_limited" ? "too many tries" : "wrong password"} (from ${d.remote || "?"})`;
    case "owner.password_set": return "The owner password was set";
    case "pairing.failed": return "A wrong pairing code was tried";
    case "hub.started": return "The hub started";
    case "clock.unsynced": return "The hub refused an action: its clock was not confirmed";
    case "clock.confirmed": return "You confirmed the hub's clock";
    case "clock.rejected": return "A clock confirmation was refused";
    case "settings.changed":
      if (d.change === "storage") return "You changed how long footage is kept";
      if (d.change === "camera.added") return `You added the camera ${cam(d.camera)}`;
      if (d.change === "camera.edited") return `You changed the camera ${cam(d.camera)}`;
      if (d.change === "camera.removed") return `You removed the camera ${cam(d.camera)}`;
      return "You changed a setting";
    default: return e.type;
  }
}

function actorWords(e, n) {
  const [kind, id] = (e.actor || "").split(/:(.*)/s);
  if (kind === "owner" && !id) return "you";
  if (kind === "owner") return n.owner_keys[id] ? `you, on “${n.owner_keys[id]}”` : `you, on device ${shortFingerprint(id)}`;
  if (kind === "agency") return n.agencies[id] || `agency ${shortFingerprint(id)}`;
  if (kind === "hub") return "the hub";
  if (kind === "unauthenticated") return "someone unknown";
  return e.actor;
}

export async function render(root, ctx) {
  const hubId = ctx.session.hub_id;
  const params = hashParams();
  const wanted = params.has("seq") && /^\d+$/.test(params.get("seq")) ? Number(params.get("seq")) : null;
  const checks = h("ul", { class: "checks", "aria-live": "polite" });
  const add = (ok, text) => checks.appendChild(h("li", { class: ok ? "ok" : "bad" }, `${ok ? "✓" : "✗"} ${text}`));
  const filter = h("select", { id: "au-type" }, CATEGORIES.map(([v, t]) => h("option", { value: v }, t)));
  const list = h("div", { id: "audit-list" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show older entries");
  const counts = h("p", { class: "muted", id: "audit-count" });
  replace(root,
    h("h1", {}, "Audit log"),
    h("section", { class: "card", "aria-labelledby": "h-verify" }, h("h2", { id: "h-verify" }, "Checked in this browser"), checks),
    h("section", { class: "card", "aria-labelledby": "h-entries" },
      h("h2", { id: "h-entries" }, "What happened, newest first"),
      h("div", { class: "row" }, h("label", { for: "au-type" }, "Show", filter)),
      counts, list, h("div", { class: "actions" }, more)));

  // The first page brings the checkpoint, signed now if the log grew since the last one.
  const firstQuery = { limit: PAGE, before: wanted === null ? null : wanted + 1 };
  const first = await api.get(`/api/v1/owner/audit/entries?${api.query(firstQuery)}`);
  const keyOk = (await thumbprint(first.hub_public_jwk)) === hubId && localStorage.getItem("camhub.hub_id") === hubId;
  add(keyOk, keyOk ? "The log is signed by the hub this browser knows" : "The hub's key is not the one this browser knows: do not trust this log");

  let cp = null;
  try {
    cp = parseCheckpoint(first.checkpoint);
    await verifyCheckpoint(cp, first.hub_public_jwk, hubId);
    if (cp.size !== first.tree_size) throw new Error(`the checkpoint is for ${cp.size} entries, the page for ${first.tree_size}`);
    add(true, first.size === cp.size
      ? `The log has ${cp.size} entries, and the hub's signed checkpoint covers all of them`
      : `The log has ${first.size} entries; the hub's signed checkpoint covers the first ${cp.size} (the newer ones are in the next checkpoint)`);
  } catch (err) {
    add(false, `The checkpoint does not check out: ${err.message}`);
    cp = null;
  }

  // Rollback / fork detection against what this browser saw before.
  const seen = JSON.parse(localStorage.getItem(SEEN_KEY) || "null");
  const remember = () => localStorage.setItem(SEEN_KEY, JSON.stringify({ hub_id: hubId, size: cp.size, root: cp.rootB64, at: Date.now() }));
  if (cp && seen && seen.hub_id === hubId) {
    const when = fmtWhen(new Date(seen.at), { seconds: false });
    if (cp.size < seen.size) {
      add(false, `ROLLBACK: the log is shorter (${cp.size} entries) than when this browser last saw it (${seen.size}, ${when})`);
    } else {
      let ok = false;
      try {
        const res = await api.get(`/api/v1/audit/consistency?${api.query({ from: seen.size, to: cp.size })}`);
        ok = await verifyConsistency(seen.size, cp.size, unb64(seen.root), cp.root, res.consistency_proof.map(unb64));
      } catch (err) {
        if (err instanceof api.ApiError && err.status === 401) throw err;
      }
      add(ok, ok
        ? `Consistent with the checkpoint this browser saw on ${when} (${seen.size} entries; RFC 9162 consistency proof)`
        : `FORK: the first ${seen.size} entries differ from what this browser saw on ${when}`);
      if (ok) remember();
    }
  } else if (cp) {
    add(true, "First visit: this checkpoint is remembered to notice a rolled-back log later");
    remember();
  }

  const proven = h("li", { class: "ok" });
  checks.appendChild(proven);
  let shown = 0;
  let bad = 0;
  let nextBefore = null;
  let category = "";

  async function showPage(page) {
    const rows = [];
    for (const item of page.entries) {
      let ok = false;
      let e = {};
      try {
        e = JSON.parse(item.entry);
        ok = !!cp && e.seq === item.seq && await verifyInclusion(item.seq, cp.size, await leafHash(utf8(item.entry)), item.inclusion_proof.map(unb64), cp.root);
      } catch {
        ok = false;
      }
      shown += 1;
      if (!ok) bad += 1;
      const raw = h("details", { class: "raw-details", open: item.seq === wanted || undefined },
        h("summary", {}, "Raw entry"), h("pre", { class: "raw-entry" }, item.entry));
      rows.push({
        attrs: { dataset: { seq: String(item.seq) }, class: item.seq === wanted ? "highlight" : null, id: `seq-${item.seq}` },
        cells: [
          String(item.seq),
          e.time ? fmtWhen(new Date(e.time)) : "—",
          h("span", {}, h("span", { class: "audit-what" }, describe(e, page.names)), ok ? null : h("strong", { class: "bad" }, " ✗ not in the signed log")),
          actorWords(e, page.names),
          raw,
        ],
      });
    }
    const table = list.querySelector("table");
    const made = cardTable({ id: "audit" }, ["#", "When", "What happened", "Who", "Raw"], rows);
    if (table) for (const tr of [...made.tBodies[0].rows]) table.tBodies[0].appendChild(tr);
    else list.appendChild(made);
    nextBefore = page.next_before;
    more.hidden = nextBefore === null;
    proven.className = bad ? "bad" : "ok";
    proven.textContent = bad
      ? `✗ ${bad} of the ${shown} entries shown are NOT in the signed log: the log was altered`
      : `✓ Each of the ${shown} entries shown is in the signed log (RFC 9162 inclusion proofs)`;
    counts.textContent = shown
      ? `Showing ${shown} ${category ? "matching " : ""}entries, the newest first.${nextBefore === null ? " That is all of them." : ""}`
      : "No entries match.";
  }

  async function load(before) {
    const page = await api.get(`/api/v1/owner/audit/entries?${api.query({ limit: PAGE, before, size: cp?.size ?? first.tree_size, types: category })}`);
    await showPage(page);
  }

  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      await load(nextBefore);
    } finally {
      more.disabled = false;
    }
  });
  filter.addEventListener("change", async () => {
    category = filter.value;
    replace(list);
    shown = 0;
    bad = 0;
    await load(null);
  });
  await showPage(first);
  if (wanted !== null) document.getElementById(`seq-${wanted}`)?.scrollIntoView({ block: "center" });
}
