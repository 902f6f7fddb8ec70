// Consent inbox: each agency request with who asks, why, on what legal basis, for which cameras and
// times, and a preview of exactly the footage that would leave. Approve as asked, approve less, or
// decline; grants in force can be revoked. Every answer is a JWS signed in this browser.

import * as api from "../lib/api.js";
import { decide, fingerprint, signingKey } from "../lib/decide.js";
import { h, notice, replace } from "../lib/dom.js";
import { fmtBytes, fmtDateTime, fmtDuration, fmtUnix, fromLocalInput, fromUnix, rfc3339, toLocalInput } from "../lib/time.js";

const DAY = 86400;

function legalBasis(lb) {
  if (!lb) return "—";
  const names = { consent: "Your consent (no warrant)", warrant: "Warrant", exigent: "Emergency (exigent circumstances)" };
  return `${names[lb.type] || lb.type}${lb.reference ? ` — ${lb.reference}` : ""}`;
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function preview(r) {
  if (r.kind === "live") {
    return h("p", {}, `A livestream of ${r.cameras.join(", ")} for up to ${fmtDuration(r.live_max_seconds)}, from when the agency connects.`);
  }
  const parts = [];
  for (const p of r.preview) {
    if (!p.segments.length) {
      parts.push(h("p", {}, h("strong", {}, p.camera), ": no recorded footage in this range (nothing would leave)."));
      continue;
    }
    const first = p.segments[0];
    parts.push(
      h("div", { class: "preview" },
        h("p", {}, h("strong", {}, p.camera), `: ${p.segments.length} segment(s), ${fmtBytes(p.bytes)}, from ${fmtDateTime(fromUnix(Math.max(first.start, 0)))}`),
        h("video", { controls: true, muted: true, preload: "metadata", playsinline: true, class: "preview-video", src: `/api/v1/owner/segments/${first.id}.mp4`, "aria-label": `Preview of ${p.camera}` }),
        h("p", {}, h("a", { href: `#/timeline?${new URLSearchParams({ camera: p.camera, t: String(Math.floor(first.start)) })}` }, "Watch the whole range in the timeline")),
      ),
    );
  }
  if (r.events.length) {
    parts.push(h("p", {}, `${r.events.length} event(s) in this range:`));
    parts.push(h("div", { class: "thumbs" }, r.events.map((e) =>
      e.has_thumbnail
        ? h("img", { src: `/api/v1/owner/events/${encodeURIComponent(e.id)}.jpg`, alt: `${e.kind} on ${e.camera_id} at ${fmtDateTime(fromUnix(e.start_at))}`, loading: "lazy" })
        : h("span", { class: "pill" }, `${e.kind} ${fmtDateTime(fromUnix(e.start_at))}`))));
  }
  return h("div", {}, parts);
}

function decisionForm(r, hubId, canSign, onDone) {
  const status = h("div", { "aria-live": "polite" });
  const camBoxes = r.cameras.map((c) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "camera", value: c, checked: true }), ` ${c}`));
  const reqStart = r.start ? new Date(r.start) : null;
  const reqEnd = r.end ? new Date(r.end) : null;
  const startIn = reqStart && h("input", { type: "datetime-local", step: "1", name: "start", value: toLocalInput(reqStart), min: toLocalInput(reqStart), max: toLocalInput(reqEnd) });
  const endIn = reqEnd && h("input", { type: "datetime-local", step: "1", name: "end", value: toLocalInput(reqEnd), min: toLocalInput(reqStart), max: toLocalInput(reqEnd) });
  const liveIn = r.kind === "live" && h("input", { type: "number", name: "live", min: "1", max: String(r.live_max_seconds), value: String(r.live_max_seconds) });
  const validity = h("select", { name: "validity" },
    r.kind === "live"
      ? [h("option", { value: String(3600) }, "1 hour"), h("option", { value: String(15 * 60) }, "15 minutes"), h("option", { value: String(DAY) }, "1 day")]
      : [h("option", { value: String(7 * DAY) }, "7 days"), h("option", { value: String(DAY) }, "1 day"), h("option", { value: String(30 * DAY) }, "30 days")]);
  const fetches = h("input", { type: "number", name: "fetches", min: "1", max: "100", value: "3" });
  const summary = h("p", { class: "muted", "aria-live": "polite" });

  function narrowScope() {
    const cameras = camBoxes.map((l) => l.querySelector("input")).filter((i) => i.checked).map((i) => i.value);
    if (!cameras.length) throw new Error("Choose at least one camera.");
    if (r.kind === "live") {
      const secs = Number(liveIn.value);
      if (!Number.isInteger(secs) || secs < 1 || secs > r.live_max_seconds) throw new Error(`Livestream length must be 1–${r.live_max_seconds} s.`);
      return { kind: "live", cameras, start: null, end: null, live_max_seconds: secs };
    }
    const start = fromLocalInput(startIn.value);
    const end = fromLocalInput(endIn.value);
    if (start < reqStart || end > reqEnd) throw new Error("The range must lie inside what was asked for.");
    if (!(start < end)) throw new Error("The end must be after the start.");
    return { kind: "clip", cameras, start: rfc3339(start), end: rfc3339(end), live_max_seconds: null };
  }

  function askedScope() {
    return r.kind === "live"
      ? { kind: "live", cameras: r.cameras, start: null, end: null, live_max_seconds: r.live_max_seconds }
      : { kind: "clip", cameras: r.cameras, start: r.start, end: r.end, live_max_seconds: null };
  }

  function describe(scope) {
    const who = r.agency.name || "the agency";
    if (scope.kind === "live") return `Will allow ${who} a livestream of ${scope.cameras.join(", ")} for up to ${fmtDuration(scope.live_max_seconds)}.`;
    const s = new Date(scope.start);
    const e = new Date(scope.end);
    // What the recordings hold in that range (the hub cuts at keyframes, so up to a GOP more at each end).
    const lo = s.getTime() / 1000;
    const hi = e.getTime() / 1000;
    const segs = r.preview.filter((p) => scope.cameras.includes(p.camera)).flatMap((p) => p.segments.filter((x) => x.end > lo && x.start < hi));
    const bytes = segs.reduce((n, x) => n + x.bytes, 0);
    const footage = segs.length ? `${segs.length} recorded segment(s), about ${fmtBytes(bytes)}` : "no recorded footage: nothing would leave";
    return `Will send ${who}: ${scope.cameras.join(", ")} from ${fmtDateTime(s)} to ${fmtDateTime(e)} (${fmtDuration((e - s) / 1000)}; ${footage}).`;
  }

  function updateSummary() {
    try {
      summary.textContent = describe(narrowScope());
    } catch (err) {
      summary.textContent = err.message;
    }
  }

  async function send(kind) {
    for (const b of buttons) b.disabled = true;
    try {
      const common = { request_id: r.id, request_sha256: r.request_sha256, recipient: r.agency.keyid };
      let res;
      if (kind === "decline") {
        res = await decide(hubId, { ...common, decision: "decline" });
      } else {
        const scope = kind === "asked" ? askedScope() : narrowScope();
        const notAfter = new Date(Date.now() + Number(validity.value) * 1000);
        res = await decide(hubId, {
          ...common, decision: "approve", scope, max_fetches: Number(fetches.value), not_after: rfc3339(notAfter),
        });
      }
      const who = `${r.agency.name || "the agency"} (case ${r.case_id || "—"})`;
      onDone(kind === "decline"
        ? `Declined the request of ${who}. The agency only ever sees “pending”, then “closed”.`
        : `Approved for ${who} and signed in this browser (decision ${res.decision_id.slice(0, 12)}…).`);
    } catch (err) {
      replace(status, notice(`Not accepted: ${err.message}`, "error"));
      for (const b of buttons) b.disabled = !canSign;
    }
  }

  const buttons = [
    h("button", { type: "button", onclick: () => send("asked") }, "Approve as asked"),
    h("button", { type: "button", class: "secondary", onclick: () => send("narrow") }, "Approve narrower"),
    h("button", { type: "button", class: "danger", onclick: () => send("decline") }, "Decline"),
  ];
  for (const b of buttons) b.disabled = !canSign;
  const form = h("form", { class: "stack", onsubmit: (e) => e.preventDefault(), oninput: updateSummary, onchange: updateSummary },
    h("fieldset", {}, h("legend", {}, "Cameras to include"), camBoxes),
    r.kind === "clip"
      ? h("div", { class: "row" }, h("label", {}, "From", startIn), h("label", {}, "To", endIn))
      : h("div", { class: "row" }, h("label", {}, "Livestream seconds", liveIn)),
    h("div", { class: "row" }, h("label", {}, "Approval valid for", validity), r.kind === "clip" ? h("label", {}, "Downloads allowed", fetches) : null),
    summary,
    h("div", { class: "actions" }, buttons),
    status,
  );
  updateSummary();
  return form;
}

function requestCard(r, hubId, canSign, reload) {
  const open = r.state === "pending" && !r.expired;
  const a = r.agency;
  return h("article", { class: `card request${open ? "" : " done"}`, "aria-labelledby": `req-${r.id}`, dataset: { requestId: r.id } },
    h("h2", { id: `req-${r.id}` }, `${a.name || "Unknown agency"} — case ${r.case_id || "—"}`),
    facts([
      ["Agency key", h("code", { title: a.keyid }, fingerprint(a.keyid))],
      ["Reason", r.reason || "—"],
      ["Legal basis", legalBasis(r.legal_basis)],
      ["Contact", r.contact || "—"],
      ["Asks for", r.kind === "live" ? `Livestream of ${r.cameras.join(", ")}, up to ${fmtDuration(r.live_max_seconds)}` : `${r.cameras.join(", ")}: ${fmtDateTime(new Date(r.start))} – ${fmtDateTime(new Date(r.end))}`],
      ["Received", fmtUnix(r.received_at)],
      ["Answer by", fmtUnix(r.respond_by)],
      ["Status", open ? "waiting for you" : r.expired && r.state === "pending" ? "expired" : r.state],
    ]),
    h("h3", {}, "What would leave"),
    preview(r),
    open ? decisionForm(r, hubId, canSign, reload) : null,
  );
}

function grantRow(g, hubId, canSign, reload) {
  const status = h("span", { "aria-live": "polite" });
  const what = g.kind === "live" ? `livestream ≤ ${fmtDuration(g.live_max_seconds)}` : `${fmtDateTime(fromUnix(g.start_at))} – ${fmtDateTime(fromUnix(g.end_at))}`;
  const button = h("button", { type: "button", class: "danger", disabled: !canSign, onclick: async () => {
    button.disabled = true;
    try {
      await decide(hubId, { decision: "revoke", request_id: g.request_id });
      reload(`Revoked the approval for ${g.agency_name || "the agency"} (case ${g.case_id || "—"}).`);
    } catch (err) {
      replace(status, notice(`Not revoked: ${err.message}`, "error"));
      button.disabled = false;
    }
  } }, "Revoke");
  return h("tr", { dataset: { requestId: g.request_id } },
    h("td", {}, g.agency_name || fingerprint(g.recipient).slice(0, 19)),
    h("td", {}, g.case_id || "—"),
    h("td", {}, g.cameras.join(", ")),
    h("td", {}, what),
    h("td", {}, fmtUnix(g.not_after)),
    h("td", {}, button, status));
}

export async function render(root, ctx, flash = null) {
  const hubId = ctx.session.hub_id;
  const [{ requests, clock_synced: clockSynced }, { grants }, { keys }] = await Promise.all([
    api.get("/api/v1/owner/requests"), api.get("/api/v1/owner/grants"), api.get("/api/v1/owner/devices"),
  ]);
  const { key, enrolled } = await signingKey(keys.map((k) => k.kid));
  const canSign = !!key && enrolled;
  const reload = (message = null) => {
    ctx.refreshBadge?.();
    render(root, ctx, message);
  };
  const open = requests.filter((r) => r.state === "pending" && !r.expired);
  const rest = requests.filter((r) => !(r.state === "pending" && !r.expired));
  replace(root,
    h("h1", {}, "Requests for footage"),
    flash ? h("p", { class: "notice ok", role: "status", id: "inbox-flash" }, flash) : null,
    clockSynced === false ? h("p", { class: "notice warn", role: "status" }, "The hub's clock is not confirmed, so it will refuse answers. ", h("a", { href: "#/settings" }, "Confirm it in Settings"), ".") : null,
    canSign ? null : notice("This browser holds no enrolled owner key, so it cannot sign answers. Enroll it on the Devices page, or answer from an enrolled device.", "warn"),
    h("section", { "aria-labelledby": "h-open" },
      h("h2", { id: "h-open" }, `Waiting for you (${open.length})`),
      open.length ? open.map((r) => requestCard(r, hubId, canSign, reload)) : notice("No requests are waiting.")),
    h("section", { "aria-labelledby": "h-grants", class: "card" },
      h("h2", { id: "h-grants" }, `Approvals in force (${grants.length})`),
      grants.length
        ? h("div", { class: "scroll" }, h("table", { id: "grants" },
            h("thead", {}, h("tr", {}, ["Agency", "Case", "Cameras", "Footage", "Valid until", ""].map((t) => h("th", { scope: "col" }, t)))),
            h("tbody", {}, grants.map((g) => grantRow(g, hubId, canSign, reload)))))
        : h("p", { class: "muted" }, "Nothing is approved right now.")),
    rest.length
      ? h("details", {}, h("summary", {}, `Earlier requests (${rest.length})`), rest.map((r) => requestCard(r, hubId, canSign, reload)))
      : null,
  );
}
