// The audit log, verified here: the checkpoint's signature (hub key), the RFC 9162 root over every
// entry, and consistency with the last checkpoint this browser saw (kept in localStorage), so a log
// that was rolled back or rewritten since the owner's last visit is noticed.

import * as api from "../lib/api.js";
import { h, replace } from "../lib/dom.js";
import { thumbprint } from "../lib/keys.js";
import { b64, leafHash, parseCheckpoint, sameBytes, treeHash, verifyCheckpoint, verifyConsistency } from "../lib/merkle.js";
import { fmtDateTime } from "../lib/time.js";
import { unb64, utf8 } from "../lib/b64.js";

const SEEN_KEY = "camhub.audit.seen";

async function loadAll() {
  const entries = [];
  let first = null;
  for (;;) {
    const page = await api.get(`/api/v1/owner/audit/entries?start=${entries.length}`);
    first = first || page;
    entries.push(...page.entries);
    if (!page.entries.length || entries.length >= page.size) return { ...first, entries };
  }
}

function summarize(data) {
  const text = JSON.stringify(data);
  return text.length > 140 ? `${text.slice(0, 140)}…` : text;
}

// Does the log now extend what this browser saw? Prefer the hub's RFC 9162 consistency proof
// against the new signed root (O(log n)); where that route is not offered to this page, recompute
// the old root from the entries. Returns how it was shown, or null when it is not consistent.
async function consistentWithSeen(seen, cp, leaves) {
  const seenRoot = unb64(seen.root);
  if (cp && seen.size > 0 && cp.size >= seen.size) {
    try {
      const res = await api.get(`/api/v1/audit/consistency?${api.query({ from: seen.size, to: cp.size })}`);
      const proof = res.consistency_proof.map(unb64);
      return (await verifyConsistency(seen.size, cp.size, seenRoot, cp.root, proof)) ? "RFC 9162 consistency proof" : null;
    } catch (err) {
      if (!(err instanceof api.ApiError) || err.status === 401) throw err;
      // Not offered here (e.g. loopback-only): fall through to recomputing from the entries.
    }
  }
  return b64(await treeHash(leaves, 0, seen.size)) === seen.root ? "recomputed from the entries" : null;
}

export async function render(root, ctx) {
  const checks = h("ul", { class: "checks", "aria-live": "polite" });
  const add = (ok, text) => checks.appendChild(h("li", { class: ok ? "ok" : "bad" }, `${ok ? "✓" : "✗"} ${text}`));
  const filter = h("select", { id: "au-type" }, h("option", { value: "" }, "All types"));
  const tbody = h("tbody");
  replace(root,
    h("h1", {}, "Audit log"),
    h("section", { class: "card", "aria-labelledby": "h-verify" }, h("h2", { id: "h-verify" }, "Verified in this browser"), checks),
    h("section", { class: "card" },
      h("div", { class: "row" }, h("label", { for: "au-type" }, "Show", filter)),
      h("div", { class: "scroll" }, h("table", { id: "audit" },
        h("thead", {}, h("tr", {}, ["#", "Time", "Type", "Actor", "Details"].map((t) => h("th", { scope: "col" }, t)))), tbody))));

  const data = await loadAll();
  const hubId = ctx.session.hub_id;
  // The key the checkpoint must be signed with is the hub identity this browser pinned (app.js).
  const keyOk = (await thumbprint(data.hub_public_jwk)) === hubId && localStorage.getItem("camhub.hub_id") === hubId;
  add(keyOk, keyOk ? `Hub key matches the hub this browser knows (${hubId.slice(0, 16)}…)` : "The hub's key is not the one this browser knows");

  const bytes = data.entries.map((e) => utf8(e));
  const parsed = data.entries.map((e) => JSON.parse(e));
  const seqOk = parsed.every((e, i) => e.seq === i);
  add(seqOk, seqOk ? `${parsed.length} entries, numbered without gaps` : "Entry numbers have gaps or repeats");
  const leaves = await Promise.all(bytes.map(leafHash));

  let cp = null;
  if (!data.checkpoint) {
    add(false, "The hub has no signed checkpoint yet");
  } else {
    try {
      cp = parseCheckpoint(data.checkpoint);
      await verifyCheckpoint(cp, data.hub_public_jwk, hubId);
      add(true, `Checkpoint signed by the hub: ${cp.size} entries`);
      if (cp.size > leaves.length) throw new Error(`checkpoint covers ${cp.size} entries but the hub returned ${leaves.length}`);
      const root = await treeHash(leaves, 0, cp.size);
      const ok = sameBytes(root, cp.root);
      add(ok, ok ? "The entries hash to the checkpoint's root (RFC 9162)" : "The entries do NOT hash to the signed root: the log was altered");
    } catch (err) {
      add(false, `Checkpoint: ${err.message}`);
      cp = null;
    }
  }

  // Rollback / fork detection against what this browser saw before.
  const seen = JSON.parse(localStorage.getItem(SEEN_KEY) || "null");
  if (seen && seen.hub_id === hubId) {
    if (cp && cp.size < seen.size) {
      add(false, `ROLLBACK: the log is shorter (${cp.size}) than when this browser last saw it (${seen.size}, ${fmtDateTime(new Date(seen.at))})`);
    } else if (seen.size > leaves.length) {
      add(false, `ROLLBACK: only ${leaves.length} entries, but this browser saw ${seen.size}`);
    } else {
      const how = await consistentWithSeen(seen, cp, leaves);
      const ok = how !== null;
      add(ok, ok
        ? `Consistent with the checkpoint this browser saw on ${fmtDateTime(new Date(seen.at))} (${seen.size} entries; ${how})`
        : `FORK: the first ${seen.size} entries differ from what this browser saw on ${fmtDateTime(new Date(seen.at))}`);
      if (ok && cp) localStorage.setItem(SEEN_KEY, JSON.stringify({ hub_id: hubId, size: cp.size, root: cp.rootB64, at: Date.now() }));
    }
  } else if (cp) {
    add(true, "First visit: this checkpoint is remembered to detect rollback later");
    localStorage.setItem(SEEN_KEY, JSON.stringify({ hub_id: hubId, size: cp.size, root: cp.rootB64, at: Date.now() }));
  }

  const types = [...new Set(parsed.map((e) => e.type))].sort();
  for (const t of types) filter.appendChild(h("option", { value: t }, t));
  const draw = () => {
    const rows = parsed.filter((e) => !filter.value || e.type === filter.value).slice(-300).reverse();
    replace(tbody, rows.map((e) => h("tr", {},
      h("td", {}, String(e.seq)), h("td", {}, e.time), h("td", {}, h("code", {}, e.type)), h("td", {}, h("code", {}, e.actor.slice(0, 28))), h("td", { class: "mono" }, summarize(e.data)))));
  };
  filter.addEventListener("change", draw);
  draw();
}
