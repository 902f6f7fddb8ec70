// Who watched what (PROTOCOL §5, issue 19): every view of footage — live views, recordings played,
// live stills, exports — is an audit entry, the owner's included. This page lists them from the
// audit log (GET /api/v1/owner/audit/entries?types=view.…), newest first, filtered by person and
// camera; each row links to its entry in the audit log, where its inclusion proof is checked.

import * as api from "../lib/api.js";
import { cardTable, h, replace } from "../lib/dom.js";
import { fmtDuration, fmtRange, fmtWhen } from "../lib/time.js";

const TYPES = ["view.live.start", "view.live.end", "view.playback", "view.snapshot", "view.export"];
const PAGE = 200;

// A household member (PROTOCOL §1.2) is `member:<id>` with the name they had then in `data.name`.
function person(who, name) {
  if (who === "owner") return "You (owner)";
  if (who && who.startsWith("member:")) return name ? `${name} (household)` : "A household member";
  if (who && who.startsWith("box:")) return `${who.slice(4)} on the hub itself`;
  return who || "—";
}

function what(e) {
  const d = e.data || {};
  switch (e.type) {
    case "view.live.start": return `started watching live (${d.via === "mjpeg" ? "stills" : "video"})`;
    case "view.live.end": return `stopped watching live after ${fmtDuration(Number(d.seconds) || 0)}`;
    case "view.playback": return d.start && d.end ? `played the recording ${fmtRange(new Date(d.start), new Date(d.end))}` : "played a recording";
    case "view.snapshot": return "looked at live stills";
    case "view.export": return `exported ${d.start && d.end ? fmtRange(new Date(d.start), new Date(d.end)) : "a clip"} to ${d.path || "a file"}`;
    default: return e.type;
  }
}

export async function render(root) {
  const cams = await api.get("/api/v1/owner/cameras");
  const names = Object.fromEntries(cams.cameras.map((c) => [c.id, c.name]));
  const whoSel = h("select", { id: "vw-who" }, h("option", { value: "" }, "Everyone"));
  const camSel = h("select", { id: "vw-camera" }, h("option", { value: "" }, "All cameras"),
    cams.cameras.map((c) => h("option", { value: c.id }, c.name)));
  const list = h("div", { id: "views-list" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show older views");
  const count = h("p", { class: "muted", id: "views-count" });
  replace(root,
    h("h1", {}, "Who watched what"),
    h("section", { class: "card", "aria-labelledby": "h-views" },
      h("h2", { id: "h-views" }, "Every view of your footage, newest first"),
      h("p", { class: "muted" }, "Live views, recordings played, live stills and exports, by anyone — you included. Each is an entry of the signed audit log."),
      h("div", { class: "row" }, h("label", { for: "vw-who" }, "Person", whoSel), h("label", { for: "vw-camera" }, "Camera", camSel)),
      count, list, h("div", { class: "actions" }, more)));

  const entries = [];
  const people = new Set();
  let nextBefore = null;

  function show() {
    const rows = entries
      .filter((x) => (!whoSel.value || x.e.data?.who === whoSel.value) && (!camSel.value || x.e.data?.camera === camSel.value))
      .map((x) => ({
        attrs: { dataset: { seq: String(x.seq), type: x.e.type } },
        cells: [
          fmtWhen(new Date(x.e.time)),
          person(x.e.data?.who, x.e.data?.name),
          names[x.e.data?.camera] || x.e.data?.camera || "—",
          what(x.e),
          h("a", { href: `#/audit?seq=${x.seq}` }, `#${x.seq}`),
        ],
      }));
    replace(list, rows.length ? cardTable({ id: "views" }, ["When", "Who", "Camera", "What", "Audit entry"], rows) : h("p", { class: "muted" }, "No views match."));
    count.textContent = `${rows.length} of ${entries.length} views loaded${nextBefore === null ? " (all of them)" : ""}.`;
  }

  async function load(before) {
    const page = await api.get(`/api/v1/owner/audit/entries?${api.query({ limit: PAGE, before, types: TYPES.join(",") })}`);
    for (const item of page.entries) {
      try {
        const e = JSON.parse(item.entry);
        entries.push({ seq: item.seq, e });
        const who = e.data?.who;
        if (who && !people.has(who)) {
          people.add(who);
          whoSel.appendChild(h("option", { value: who }, person(who, e.data?.name)));
        }
      } catch {
        // an entry that is not JSON is shown on the audit page, which flags it
      }
    }
    nextBefore = page.next_before;
    more.hidden = nextBefore === null;
    show();
  }

  whoSel.addEventListener("change", show);
  camSel.addEventListener("change", show);
  more.addEventListener("click", async () => {
    more.disabled = true;
    try { await load(nextBefore); } finally { more.disabled = false; }
  });
  await load(null);
}
