// Consent inbox: each agency request with who asks, why, on what legal basis, for which cameras and
// times, and what would leave. Every answer is a JWS signed in this browser.
//
// The rule this page is built around: the owner signs exactly what the screen shows. An answer is
// one object (a "proposal", read from the form by proposal()); the sentence under the form, the
// confirmation the owner accepts and the JWS payload are all made from that same object, and no
// button signs anything else. "Approve as asked" is only a label: it reads "Approve what is shown"
// as soon as the form differs from the request, and both sign the proposal.

import * as api from "../lib/api.js";
import { segmentSource } from "../lib/codecs.js";
import { decide, signingKey } from "../lib/decide.js";
import { cardTable, confirmDialog, focusResult, h, notice, replace } from "../lib/dom.js";
import { fmtBytes, fmtClock, fmtDay, fmtDuration, fmtRange, fmtUnix, fmtWhen, fromUnix, rfc3339, timeInRange, toTimeInput, zoneName } from "../lib/time.js";
import { details, enrolHelp, joinNames, sentence, shortFingerprint } from "../lib/words.js";

const DAY = 86400;
const LEGAL = { consent: "Your consent (no warrant)", warrant: "Warrant", exigent: "Emergency (exigent circumstances)" };

function legalBasis(lb) {
  if (!lb) return "—";
  return `${LEGAL[lb.type] || lb.type}${lb.reference ? ` — ${lb.reference}` : ""}`;
}

const isUrgent = (r) => r.legal_basis?.type === "exigent";

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

// What a scope covers, in words: "Front door and Garage, Sun, Nov 23, 11:04 – 11:05 PM EST (…)".
function scopeWords(scope, cam) {
  const cams = joinNames(scope.cameras.map(cam));
  const sound = scope.audio ? "with sound" : "video only, no sound";
  if (scope.kind === "live") return `a livestream of ${cams} for up to ${fmtDuration(scope.live_max_seconds)}, from when the agency connects (${sound})`;
  return `${cams}, ${fmtRange(new Date(scope.start), new Date(scope.end))} (${sound})`;
}

// The confirmation's "Audio" line (PROTOCOL §3 scope.audio): it starts with the yes/no that is signed.
function audioWords(scope) {
  return scope.audio
    ? "yes: the sound the cameras recorded leaves with the video"
    : "no: video only, the sound is left out";
}

// How much recorded video a clip scope holds (the hub cuts at keyframes: up to a GOP more each end).
function footage(r, scope) {
  if (scope.kind === "live") return null;
  const lo = new Date(scope.start).getTime() / 1000;
  const hi = new Date(scope.end).getTime() / 1000;
  let seconds = 0;
  let bytes = 0;
  for (const p of r.preview.filter((x) => scope.cameras.includes(x.camera))) {
    for (const s of p.segments) {
      if (s.end <= lo || s.start >= hi) continue;
      seconds += Math.min(s.end, hi) - Math.max(s.start, lo);
      bytes += s.bytes;
    }
  }
  return seconds > 0 ? `about ${fmtDuration(seconds)} of recorded video, ${fmtBytes(bytes)}` : "no recorded video: nothing would leave";
}

function preview(r, cam) {
  if (r.kind === "live") return h("p", {}, `A livestream of ${joinNames(r.cameras.map(cam))} for up to ${fmtDuration(r.live_max_seconds)}, from when the agency connects.`);
  const parts = [];
  for (const p of r.preview) {
    if (!p.segments.length) {
      parts.push(h("p", {}, h("strong", {}, cam(p.camera)), ": no recorded video in this range (nothing would leave)."));
      continue;
    }
    const first = p.segments[0];
    const seconds = p.segments.reduce((n, s) => n + (s.end - s.start), 0);
    parts.push(h("div", { class: "preview" },
      h("p", {}, h("strong", {}, cam(p.camera)), `: about ${fmtDuration(seconds)} of video (${fmtBytes(p.bytes)}), from ${fmtWhen(fromUnix(Math.max(first.start, 0)))}`),
      h("video", { controls: true, muted: true, preload: "metadata", playsinline: true, class: "preview-video", src: segmentSource(first).src, "aria-label": `Preview of ${cam(p.camera)}` }),
      h("p", {}, h("a", { href: `#/timeline?${new URLSearchParams({ camera: p.camera, t: String(Math.floor(first.start)) })}` }, `Watch all of ${cam(p.camera)} in this range in the timeline`))));
  }
  if (r.events.length) {
    parts.push(h("p", {}, `${r.events.length} ${r.events.length === 1 ? "event" : "events"} in this range:`));
    parts.push(h("div", { class: "thumbs" }, r.events.map((e) =>
      e.has_thumbnail
        ? h("img", { src: `/api/v1/owner/events/${encodeURIComponent(e.id)}.jpg`, alt: `${e.kind === "press" ? "Doorbell press" : "Motion"} on ${cam(e.camera_id)} at ${fmtWhen(fromUnix(e.start_at))}`, loading: "lazy" })
        : h("span", { class: "pill" }, `${e.kind} ${fmtWhen(fromUnix(e.start_at))}`))));
  }
  return h("div", {}, parts);
}

// Whether the footage asked for has sound at all, so the owner knows what the tick would send.
function soundNote(r) {
  if (r.kind === "live") return "";
  const any = (r.preview || []).some((p) => p.segments.some((s) => s.audio_codec));
  return any ? " Some of the footage asked for has sound." : " The footage asked for has no sound recorded.";
}

function sameScope(a, b) {
  return a.kind === b.kind && a.start === b.start && a.end === b.end && a.live_max_seconds === b.live_max_seconds
    && a.audio === b.audio
    && a.cameras.length === b.cameras.length && a.cameras.every((c, i) => c === b.cameras[i]);
}

const VALIDITY = {
  clip: [[7 * DAY, "7 days"], [DAY, "1 day"], [3 * DAY, "3 days"], [30 * DAY, "30 days"]],
  live: [[3600, "1 hour"], [15 * 60, "15 minutes"], [DAY, "1 day"]],
};

// How the answer is signed, said in the confirmation right before the signature is asked for. A
// passkey's prompt (the phone's fingerprint or face sheet) shows nothing of what is signed
// (PROTOCOL §3.1), so this dialog is the owner's only view of it.
function signedBy(ctx) {
  return ctx.passkey
    ? "Next, your passkey asks for your fingerprint, face or PIN. It shows nothing of this decision: what you sign is exactly what is listed here."
    : "Signing happens in this browser with its own key.";
}

function decisionForm(r, ctx) {
  const { hubId, canSign, cam, done, defaultFetches } = ctx;
  const uid = `f-${r.id.replace(/[^A-Za-z0-9_-]/g, "")}`;
  const status = h("div", { class: "status" });
  const reqStart = r.start ? new Date(r.start) : null;
  const reqEnd = r.end ? new Date(r.end) : null;
  const known = r.cameras.filter((c) => !r.unknown_cameras.includes(c));
  const asked = r.kind === "live"
    ? { kind: "live", cameras: r.cameras, start: null, end: null, live_max_seconds: r.live_max_seconds, audio: false }
    : { kind: "clip", cameras: r.cameras, start: r.start, end: r.end, live_max_seconds: null, audio: false };

  const camBoxes = r.cameras.map((c) => {
    const unknown = r.unknown_cameras.includes(c);
    return h("label", { class: "check" },
      h("input", { type: "checkbox", name: "camera", value: c, checked: !unknown, disabled: unknown }),
      ` ${cam(c)}${unknown ? " (not on this hub)" : ""}`);
  });
  const startLabel = h("span", {});
  const endLabel = h("span", {});
  const startIn = reqStart && h("input", { type: "time", step: "1", name: "start", id: `${uid}-start` });
  const endIn = reqEnd && h("input", { type: "time", step: "1", name: "end", id: `${uid}-end` });
  const liveIn = r.kind === "live" && h("input", { type: "number", name: "live", id: `${uid}-live`, min: "1", max: String(r.live_max_seconds), inputmode: "numeric", class: "short" });
  const validity = h("select", { name: "validity", id: `${uid}-validity` }, VALIDITY[r.kind].map(([s, t]) => h("option", { value: String(s) }, t)));
  const fetches = r.kind === "clip" && h("input", { type: "number", name: "fetches", id: `${uid}-fetches`, min: "1", max: "100", inputmode: "numeric", class: "short" });
  // Sound is a separate yes/no, off unless the owner ticks it: recording conversations is regulated,
  // and a grant without it sends video only (the hub strips the audio stream).
  const audioBox = h("input", { type: "checkbox", name: "audio", id: `${uid}-audio` });
  const summary = h("p", { class: "summary", "aria-live": "polite", id: `${uid}-summary` });

  function reset() {
    for (const l of camBoxes) {
      const i = l.querySelector("input");
      i.checked = !i.disabled;
    }
    if (startIn) startIn.value = toTimeInput(reqStart);
    if (endIn) endIn.value = toTimeInput(reqEnd);
    if (liveIn) liveIn.value = String(r.live_max_seconds);
    validity.selectedIndex = 0;
    if (fetches) fetches.value = String(defaultFetches);
    audioBox.checked = false;
  }

  // The answer the form shows now, or an Error saying in words what is wrong with it.
  function proposal() {
    const cameras = camBoxes.map((l) => l.querySelector("input")).filter((i) => i.checked && !i.disabled).map((i) => i.value);
    if (!cameras.length) throw new Error(known.length ? "Choose at least one camera." : "This hub has none of the cameras asked for: nothing can be sent.");
    const validityS = Number(validity.value);
    if (r.kind === "live") {
      const secs = Number(liveIn.value);
      if (!Number.isInteger(secs) || secs < 1 || secs > r.live_max_seconds) throw new Error(`Livestream length: choose 1 to ${r.live_max_seconds} seconds.`);
      return { scope: { kind: "live", cameras, start: null, end: null, live_max_seconds: secs, audio: audioBox.checked }, validityS, maxFetches: null };
    }
    const start = timeInRange(startIn.value, reqStart, reqEnd, "earlier");
    const end = timeInRange(endIn.value, reqStart, reqEnd, "later");
    if (!start) throw new Error(`From: choose a time between ${fmtRange(reqStart, reqEnd)}.`);
    if (!end) throw new Error(`To: choose a time between ${fmtRange(reqStart, reqEnd)}.`);
    if (!(start < end)) throw new Error("To must be after From.");
    const n = Number(fetches.value);
    if (!Number.isInteger(n) || n < 1 || n > 100) throw new Error("Downloads allowed: choose 1 to 100.");
    return { scope: { kind: "clip", cameras, start: rfc3339(start), end: rfc3339(end), live_max_seconds: null, audio: audioBox.checked }, validityS, maxFetches: n };
  }

  // The sentence (and the lines of the confirmation) for a proposal; `notAfter` once it is fixed.
  function describe(p, notAfter = null) {
    const who = r.agency.name || "the agency";
    const valid = notAfter ? `until ${fmtWhen(notAfter, { seconds: false })}` : `for ${VALIDITY[r.kind].find(([s]) => s === p.validityS)?.[1] || fmtDuration(p.validityS)}`;
    const lines = [
      ["To", `${who}${r.case_id ? ` (case ${r.case_id})` : ""}`],
      ["Cameras", joinNames(p.scope.cameras.map(cam))],
      p.scope.kind === "live"
        ? ["Livestream", `up to ${fmtDuration(p.scope.live_max_seconds)}, from when the agency connects`]
        : ["Footage", fmtRange(new Date(p.scope.start), new Date(p.scope.end))],
      p.scope.kind === "clip" ? ["What that holds", footage(r, p.scope)] : null,
      ["Approval valid", valid],
      p.scope.kind === "clip" ? ["Downloads allowed", String(p.maxFetches)] : null,
      ["Audio", audioWords(p.scope)],
    ].filter(Boolean);
    const text = p.scope.kind === "live"
      ? `Will allow ${who} ${scopeWords(p.scope, cam)}. The approval stays valid ${valid}.`
      : `Will send ${who}: ${scopeWords(p.scope, cam)} (${footage(r, p.scope)}). The approval stays valid ${valid}; ${p.maxFetches} ${p.maxFetches === 1 ? "download" : "downloads"} allowed.`;
    return { text, lines };
  }

  const approveBtn = h("button", { type: "button", class: "approve", onclick: () => approve() }, "Approve as asked");
  const editBtn = h("button", { type: "button", class: "secondary", "aria-expanded": "false", "aria-controls": `${uid}-edit`, onclick: () => toggleEditor() }, "Change what is sent");
  const declineBtn = h("button", { type: "button", class: "danger", onclick: () => decline() }, "Decline");
  const buttons = [approveBtn, editBtn, declineBtn];

  function update() {
    let p = null;
    try {
      p = proposal();
      summary.textContent = describe(p).text;
      summary.classList.remove("bad");
    } catch (err) {
      summary.textContent = err.message;
      summary.classList.add("bad");
    }
    // The day each time field falls on is said next to it: a time alone could be either day.
    if (startIn) startLabel.textContent = `From (${fmtDay(timeInRange(startIn.value, reqStart, reqEnd, "earlier") || reqStart)})`;
    if (endIn) endLabel.textContent = `To (${fmtDay(timeInRange(endIn.value, reqStart, reqEnd, "later") || reqEnd)})`;
    const unchanged = p !== null && sameScope(p.scope, asked);
    approveBtn.textContent = unchanged ? "Approve as asked" : "Approve what is shown";
    approveBtn.disabled = !canSign || p === null;
  }

  const editor = h("div", { class: "editor stack", id: `${uid}-edit`, hidden: true },
    h("fieldset", {}, h("legend", {}, "Cameras to include"), camBoxes),
    r.kind === "clip"
      ? h("div", { class: "row" },
          h("label", { for: `${uid}-start` }, startLabel, startIn),
          h("label", { for: `${uid}-end` }, endLabel, endIn),
          h("span", { class: "muted zone-note" }, `Times are ${zoneName(reqStart)}, within what was asked: ${fmtRange(reqStart, reqEnd)}.`))
      : h("div", { class: "row" }, h("label", { for: `${uid}-live` }, "Livestream up to (seconds)", liveIn)),
    h("div", { class: "row" },
      h("label", { class: "check", for: `${uid}-audio` }, audioBox, " Include sound (where the camera records it)"),
      h("span", { class: "muted" }, `Off unless you tick it: recording conversations is regulated (two-party consent states, the GDPR), so sound leaves only if you say so.${soundNote(r)}`)),
    h("div", { class: "row" },
      h("label", { for: `${uid}-validity` }, "Approval valid for", validity),
      fetches ? h("label", { for: `${uid}-fetches` }, "Downloads allowed", fetches) : null,
      h("button", { type: "button", class: "secondary", onclick: () => { reset(); update(); } }, "Undo changes")));

  function toggleEditor() {
    editor.hidden = !editor.hidden;
    editBtn.setAttribute("aria-expanded", String(!editor.hidden));
    if (!editor.hidden) editor.querySelector("input:not(:disabled), select")?.focus();
  }

  function failed(err, what) {
    const msg = notice(`${what}: ${sentence(err)}`, "error");
    replace(status, msg);
    focusResult(msg);
    for (const b of buttons) b.disabled = !canSign;
    update();
  }

  async function approve() {
    let p;
    try {
      p = proposal();
    } catch (err) {
      failed(err, "Not approved");
      return;
    }
    // The validity becomes a date now, once: the confirmation shows that date and the JWS carries it.
    const notAfter = new Date(Math.floor(Date.now() / 1000) * 1000 + p.validityS * 1000);
    const { lines } = describe(p, notAfter);
    const ok = await confirmDialog({
      title: `Approve and send to ${r.agency.name || "the agency"}?`,
      body: h("div", {}, h("p", {}, "Exactly this will leave the house, and nothing else:"), facts(lines),
        maskedPreviews(p.scope.cameras, cam),
        h("p", { class: "muted" }, `${signedBy(ctx)} You can revoke the approval at any time until it ends.`)),
      confirm: "Sign and approve",
    });
    if (!ok) return;
    for (const b of buttons) b.disabled = true;
    try {
      const res = await decide(hubId, {
        request_id: r.id, request_sha256: r.request_sha256, recipient: r.agency.keyid, decision: "approve",
        scope: p.scope, ...(p.maxFetches === null ? {} : { max_fetches: p.maxFetches }), not_after: rfc3339(notAfter),
      });
      done(`Approved for ${r.agency.name || "the agency"} (case ${r.case_id || "—"}) and signed ${ctx.passkey ? "with your passkey" : "in this browser"}. ${describe(p, notAfter).text}`, res);
    } catch (err) {
      failed(err, "Not approved");
    }
  }

  async function decline() {
    const ok = await confirmDialog({
      title: `Decline the request of ${r.agency.name || "the agency"}?`,
      body: h("div", {},
        facts([
          ["To", `${r.agency.name || "the agency"}${r.case_id ? ` (case ${r.case_id})` : ""}`],
          ["Asked for", r.kind === "live" ? `a livestream of ${joinNames(r.cameras.map(cam))}, up to ${fmtDuration(r.live_max_seconds)}` : `${joinNames(r.cameras.map(cam))}, ${fmtRange(new Date(r.start), new Date(r.end))}`],
          ["Answer", "declined: nothing is sent"],
        ]),
        h("p", {}, `Nothing will be sent for case ${r.case_id || "—"}. The agency keeps seeing “pending” until the answer-by date, then “closed”: it cannot tell a decline from no answer.`),
        h("p", { class: "muted" }, signedBy(ctx))),
      confirm: "Sign and decline",
      danger: true,
    });
    if (!ok) return;
    for (const b of buttons) b.disabled = true;
    try {
      await decide(hubId, { request_id: r.id, request_sha256: r.request_sha256, recipient: r.agency.keyid, decision: "decline" });
      done(`Declined the request of ${r.agency.name || "the agency"} (case ${r.case_id || "—"}). The agency only ever sees “pending”, then “closed”.`);
    } catch (err) {
      failed(err, "Not declined");
    }
  }

  reset();
  const form = h("form", { class: "stack decision", onsubmit: (e) => e.preventDefault(), oninput: update, onchange: update },
    summary,
    h("div", { class: "actions" }, buttons),
    editor,
    status);
  update();
  if (!canSign) for (const b of buttons) b.disabled = true;
  return form;
}

// ----------------------------------------------------------------------------------------------
// History: what was asked, what was approved, what left (hub/api/history.py, from the audit log).

const STATE_WORDS = { waiting: "waiting for you", "in force": "approved, in force", expired: "approved, expired", revoked: "approved, then revoked", declined: "declined", closed: "closed without an answer" };

function rawLink(at) {
  return at?.seq === null || at?.seq === undefined ? null : h("a", { href: `#/audit?seq=${at.seq}`, class: "raw" }, `audit entry #${at.seq}`);
}

function historyList(r, cam, keyName) {
  const hist = r.history;
  if (!hist) return null;
  const items = [];
  const when = (at) => fmtWhen(new Date(at.time), { seconds: false });
  const item = (text, at) => items.push(h("li", {}, `${text} `, rawLink(at)));
  if (hist.asked) {
    const a = hist.asked;
    item(`${when(a)}: asked for ${a.kind === "live" ? `a livestream of ${joinNames(a.cameras.map(cam))}, up to ${fmtDuration(a.live_max_seconds)}` : `${joinNames(a.cameras.map(cam))}, ${fmtRange(new Date(a.start), new Date(a.end))}`}.`, a);
  }
  for (const ap of hist.approvals) {
    const by = ap.by.name || keyName(ap.by.kid);
    const scope = ap.scope.kind ? scopeWords(ap.scope, cam) : "—";
    item(`${when(ap.approved)}: approved from “${by}”: ${scope}; valid until ${ap.not_after ? fmtWhen(new Date(ap.not_after), { seconds: false }) : "—"}${ap.max_fetches ? `, ${ap.max_fetches} downloads allowed` : ""}.`, ap.approved);
    for (const p of hist.prepared.filter((x) => x.approval_id === ap.id)) {
      item(`${when(p)}: the clip of ${cam(p.camera)} was prepared (${fmtRange(new Date(p.clip_start), new Date(p.clip_end))}; the hub cuts at whole pictures, so a few seconds more at each end).`, p);
    }
    for (const d of hist.downloads.filter((x) => x.approval_id === ap.id)) {
      item(`${cam(d.camera)}: downloaded ${d.fetch} of ${d.of ?? "?"} at ${fmtWhen(new Date(d.time), { seconds: false })}.`, d);
    }
    if (ap.ended && ap.ended.how !== "expired") {
      const how = { revoked: "revoked", "key revoked": "revoked (the device that approved it was revoked)", "agency removed": "revoked (the agency was removed)" }[ap.ended.how] || ap.ended.how;
      item(`${when(ap.ended)}: ${how}.`, ap.ended);
    } else if (ap.state === "expired") {
      items.push(h("li", {}, `${fmtUnix(ap.ends_at, { seconds: false })}: the approval ended (expired).`));
    }
  }
  for (const s of hist.live) {
    const start = s.start ? fmtWhen(new Date(s.start.time)) : "?";
    const end = s.end ? fmtClock(new Date(s.end.time), { seconds: true }) : "still running";
    const secs = s.end?.seconds;
    const length = typeof secs === "number" ? ` (${secs < 1 ? "less than a second" : fmtDuration(secs)})` : "";
    items.push(h("li", {}, `Livestream of ${cam(s.camera)}: ${start} – ${end}${length}. `, rawLink(s.start), s.end ? " " : null, rawLink(s.end)));
  }
  if (hist.declined) item(`${when(hist.declined)}: declined.`, hist.declined);
  if (hist.closed) item(`${when(hist.closed)}: closed (the agency was removed).`, hist.closed);
  if (hist.state === "closed" && !hist.closed && hist.asked) items.push(h("li", {}, `${fmtWhen(new Date(hist.asked.respond_by), { seconds: false })}: closed: nobody answered by then.`));
  return h("details", { class: "history", open: r.state !== "pending" || undefined },
    h("summary", {}, `History: ${STATE_WORDS[hist.state] || hist.state}`),
    h("ul", { class: "history-list" }, items));
}

function requestCard(r, ctx) {
  const open = r.state === "pending" && !r.expired;
  const a = r.agency;
  const { cam } = ctx;
  const urgent = isUrgent(r) && open;
  const previewBox = h("div", { class: "preview-box", id: `pv-${r.id.replace(/[^A-Za-z0-9_-]/g, "")}`, hidden: true });
  const previewBtn = h("button", { type: "button", class: "secondary", "aria-expanded": "false", "aria-controls": previewBox.id, onclick: () => {
    if (!previewBox.firstChild) previewBox.appendChild(preview(r, cam)); // videos load only when asked for
    previewBox.hidden = !previewBox.hidden;
    previewBtn.setAttribute("aria-expanded", String(!previewBox.hidden));
    previewBtn.textContent = previewBox.hidden ? "Preview what would leave" : "Hide the preview";
  } }, "Preview what would leave");
  const state = r.history?.state || (open ? "waiting" : r.state);
  const asks = r.kind === "live"
    ? `a livestream of ${joinNames(r.cameras.map(cam))}, up to ${fmtDuration(r.live_max_seconds)}`
    : `${joinNames(r.cameras.map(cam))}, ${fmtRange(new Date(r.start), new Date(r.end))}`;
  return h("article", { class: `card request${open ? "" : " done"}${urgent ? " urgent" : ""}`, "aria-labelledby": `req-${r.id}`, dataset: { requestId: r.id } },
    urgent ? h("p", { class: "urgent-flag" }, "Urgent: the agency says this is an emergency") : null,
    h("h3", { id: `req-${r.id}`, class: "request-title" }, `${a.name || "Unknown agency"} — case ${r.case_id || "—"}`),
    h("p", { class: "asks" }, h("strong", {}, "Asks for "), asks),
    r.unknown_cameras.length
      ? notice(`This hub has no camera called ${joinNames(r.unknown_cameras.map((c) => `“${c}”`))}: nothing of it can be sent. (The agency is not told; it sees the request as pending.)`, "warn")
      : null,
    facts([
      ["Reason", r.reason || "—"],
      ["Legal basis", legalBasis(r.legal_basis)],
      ["Contact", r.contact || "—"],
      ["Received", `${fmtUnix(r.received_at, { seconds: false })}${open ? ` · answer by ${fmtUnix(r.respond_by, { seconds: false })}` : ""}`],
      open ? null : ["Status", STATE_WORDS[state] || state],
    ]),
    h("div", { class: "actions" }, previewBtn),
    previewBox,
    open ? decisionForm(r, ctx) : null,
    historyList(r, cam, ctx.keyName),
    details(h("p", {}, "Agency fingerprint: ", h("code", {}, a.keyid)), h("p", {}, "Request id: ", h("code", {}, r.id)), h("p", {}, "Request digest (SHA-256): ", h("code", {}, r.request_sha256))));
}

function grantRows(grants, ctx) {
  const { hubId, canSign, cam, done } = ctx;
  return grants.map((g) => {
    const status = h("span", { class: "status" });
    const who = g.agency_name || `agency ${shortFingerprint(g.recipient)}`;
    const what = `${g.kind === "live" ? `Livestream, up to ${fmtDuration(g.live_max_seconds)}` : fmtRange(fromUnix(g.start_at), fromUnix(g.end_at))}${g.audio ? ", with sound" : ", no sound"}`;
    const button = h("button", { type: "button", class: "danger", disabled: !canSign, "aria-label": `Revoke the approval for ${who}, case ${g.case_id || "—"}`, onclick: async () => {
      // The whole decision on screen before the signature is asked for (a passkey's prompt shows none of it).
      const ok = await confirmDialog({
        title: `Revoke the approval for ${who}?`,
        body: h("div", {},
          facts([
            ["Agency", `${who}, case ${g.case_id || "—"}`],
            ["Cameras", joinNames(g.cameras.map(cam))],
            [g.kind === "live" ? "Livestream" : "Footage", what],
            g.kind === "live" ? null : ["Downloads allowed", String(g.max_fetches)],
            ["Valid until", fmtUnix(g.ends_at, { seconds: false })],
          ]),
          h("p", {}, "From now on nothing more of it can leave: pending downloads are refused and a livestream is cut."),
          h("p", { class: "muted" }, signedBy(ctx))),
        confirm: "Sign and revoke",
        danger: true,
      });
      if (!ok) return;
      button.disabled = true;
      try {
        await decide(hubId, { decision: "revoke", request_id: g.request_id });
        done(`Revoked the approval for ${who} (case ${g.case_id || "—"}). Nothing more of it can leave.`);
      } catch (err) {
        const msg = notice(`Not revoked: ${sentence(err)}`, "error");
        replace(status, msg);
        focusResult(msg);
        button.disabled = false;
      }
    } }, "Revoke");
    const downloads = g.kind === "live"
      ? "—"
      : g.cameras.map((c) => `${cam(c)}: ${g.downloads_used?.[c] || 0} of ${g.max_fetches} used`).join("; ");
    const left = Math.max(0, g.ends_at - Date.now() / 1000);
    return {
      attrs: { dataset: { requestId: g.request_id } },
      cells: [
        `${who}, case ${g.case_id || "—"}`,
        joinNames(g.cameras.map(cam)),
        what,
        downloads,
        h("span", {}, `${fmtDuration(left)} left`, h("br"), h("span", { class: "muted" }, `until ${fmtUnix(g.ends_at, { seconds: false })}`)),
        h("span", {}, button, status),
      ],
    };
  });
}

// What would leave, as the agency gets it: each camera's current still with its privacy masks filled
// black exactly as a delivery or an agency livestream paints them (PROTOCOL §4.1).
function maskedPreviews(cameras, cam) {
  return h("div", { class: "previews" }, h("p", {}, "What leaves looks like this (privacy masks blacked out):"),
    cameras.map((c) => {
      const fig = h("figure", { class: "privacy-preview" });
      const img = h("img", { src: `/api/v1/owner/cameras/${encodeURIComponent(c)}/privacy-preview.jpg?t=${Date.now()}`, alt: `What leaves of ${cam(c)}, masked areas black`, width: 240 });
      img.addEventListener("error", () => replace(fig, h("figcaption", { class: "muted" }, `${cam(c)}: no current picture to preview.`)));
      fig.append(img, h("figcaption", {}, cam(c)));
      return fig;
    }));
}

export async function render(root, ctx, flash = null) {
  const hubId = ctx.session.hub_id;
  const [{ requests, clock_synced: clockSynced }, { grants }, { keys }, camData, settings] = await Promise.all([
    api.get("/api/v1/owner/requests"), api.get("/api/v1/owner/grants"), api.get("/api/v1/owner/devices"),
    api.get("/api/v1/owner/cameras"), api.get("/api/v1/owner/settings"),
  ]);
  const { kind } = await signingKey(keys, ctx.session.passkey_rp_id);
  const canSign = kind !== "none";
  const names = Object.fromEntries(camData.cameras.map((c) => [c.id, c.name || c.id]));
  const keyNames = Object.fromEntries(keys.map((k) => [k.kid, k.name]));
  const view = {
    hubId, canSign, passkey: kind === "passkey", defaultFetches: settings.consent?.max_fetches || 3,
    cam: (id) => names[id] || id,
    keyName: (kid) => keyNames[kid] || `device ${shortFingerprint(kid)}`,
    done: (message) => {
      ctx.refreshBadge?.();
      render(root, ctx, message);
    },
  };
  const open = requests.filter((r) => r.state === "pending" && !r.expired)
    .sort((a, b) => Number(isUrgent(b)) - Number(isUrgent(a)) || b.received_at - a.received_at);
  const rest = requests.filter((r) => !(r.state === "pending" && !r.expired));
  const flashEl = flash ? h("p", { class: "notice ok", role: "status", id: "inbox-flash" }, flash) : null;
  replace(root,
    h("h1", {}, "Requests for footage"),
    flashEl,
    clockSynced === false ? h("p", { class: "notice warn", role: "status" }, "The hub's clock is not confirmed, so it will refuse answers. ", h("a", { href: "#/settings" }, "Confirm it in Settings"), ".") : null,
    canSign ? null : enrolHelp(),
    h("section", { "aria-labelledby": "h-open" },
      h("h2", { id: "h-open" }, `Waiting for you (${open.length})`),
      open.length ? open.map((r) => requestCard(r, view)) : notice("No requests are waiting.")),
    h("section", { "aria-labelledby": "h-grants", class: "card" },
      h("h2", { id: "h-grants" }, `Approvals in force (${grants.length})`),
      grants.length
        ? cardTable({ id: "grants" }, ["Agency", "Cameras", "Footage", "Downloads", "Time left", "Action"], grantRows(grants, view))
        : h("p", { class: "muted" }, "Nothing is approved right now.")),
    rest.length
      ? h("section", { "aria-labelledby": "h-rest" },
          h("h2", { id: "h-rest" }, `Earlier requests (${rest.length})`),
          h("details", { id: "earlier" }, h("summary", {}, "Show earlier requests and what happened to them"), rest.map((r) => requestCard(r, view))))
      : null,
  );
  if (flashEl) focusResult(flashEl);
}
