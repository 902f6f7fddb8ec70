// Timeline per camera: a day bar of recorded spans (gaps visible, events marked); click to play the
// recorded fMP4 segment at that moment over HTTP (the <video> element seeks with Range requests),
// and carry on into the following segments.

import * as api from "../lib/api.js";
import { h, notice, replace } from "../lib/dom.js";
import { allCameras, cameraOptions, hashParams } from "../lib/route.js";
import { segmentSource } from "../lib/codecs.js";
import { dayBounds, fmtDuration, fmtTime, fmtWhen, fromUnix, localDay, zoneName } from "../lib/time.js";

const MERGE_S = 1.0; // segments closer than this draw as one span
// Close-up labels: hour and minute only, so five of them fit on a phone.
const fmtClockShort = (date) => date.toLocaleTimeString(undefined, { hour: "numeric", minute: "2-digit" });

export async function render(root) {
  const params = hashParams();
  const camData = await api.get("/api/v1/owner/cameras");
  // A household member's cameras carry their rights: only those with recordings are theirs here.
  const cameras = allCameras(camData).filter((c) => !c.rights || c.rights.recordings);
  if (!cameras.length) {
    replace(root, h("h1", {}, "Timeline"), notice("No cameras yet. Add one in Settings."));
    return;
  }
  const t0 = params.has("t") ? Number(params.get("t")) : null;
  const camSel = h("select", { id: "tl-camera" }, cameraOptions(cameras, params.get("camera") || cameras[0].id));
  const dayInput = h("input", { id: "tl-day", type: "date", value: localDay(t0 ? fromUnix(t0) : new Date()) });
  // A slider needs a value from the start (ARIA 1.2 requires aria-valuenow): the start of the day.
  const bar = h("div", { class: "daybar", role: "slider", tabindex: "0", "aria-label": "Time of day; click or use the arrow keys to play", "aria-valuemin": "0", "aria-valuemax": "86400", "aria-valuenow": "0", "aria-valuetext": "nothing playing yet" });
  const cursor = h("div", { class: "cursor", hidden: true });
  // A one-hour close-up around the moment being watched: a day bar is too coarse to hit a 4 s segment.
  const zoom = h("div", { class: "daybar zoom", id: "tl-zoom", role: "group", "aria-label": "The hour around the selected time; click to play" });
  const zoomCursor = h("div", { class: "cursor", hidden: true });
  const zoomLabels = h("div", { class: "hours", "aria-hidden": "true" });
  const hours = h("div", { class: "hours", "aria-hidden": "true" }, ["00", "03", "06", "09", "12", "15", "18", "21", "24"].map((x) => h("span", {}, x)));
  const video = h("video", { id: "tl-video", controls: true, muted: true, playsinline: true, preload: "metadata" });
  const nowPlaying = h("p", { class: "muted", "aria-live": "polite" }, "Click the bar to play.");
  // H.265 footage: said in words when this browser cannot play it, and then watched as an H.264 copy
  // the hub makes of the piece being watched (GET …/segments/{id}/h264.mp4). The recording itself,
  // and anything delivered to an agency, stays the camera's H.265.
  const codecNote = h("p", { class: "notice warn", role: "note", hidden: true },
    "This camera records H.265, which this browser cannot play. The hub converts the piece you are watching to H.264 for this browser, which takes a few seconds per piece; the recording itself is unchanged.");
  const summary = h("p", { class: "muted" });

  let data = null;
  let bounds = [0, 1];
  let zoomBounds = [0, 3600];
  let current = null; // index into data.segments

  replace(
    root,
    h("h1", {}, "Timeline"),
    h("div", { class: "card" },
      h("div", { class: "row" },
        h("label", { for: "tl-camera" }, "Camera", camSel),
        h("label", { for: "tl-day" }, "Day", dayInput),
        h("button", { type: "button", class: "secondary", onclick: () => shiftDay(-1) }, "◀ Previous day"),
        h("button", { type: "button", class: "secondary", onclick: () => shiftDay(1) }, "Next day ▶"),
      ),
      bar, hours,
      h("p", { class: "muted zoom-title" }, "Close-up (one hour)"), zoom, zoomLabels,
      h("div", { class: "legend" }, h("span", {}, h("i", { class: "rec" }), "recorded"), h("span", {}, h("i", { class: "gap" }), "no footage"), h("span", {}, h("i", { class: "ev" }), "event")),
      summary,
    ),
    h("div", { class: "card" }, codecNote, video, nowPlaying),
  );

  function shiftDay(delta) {
    const [y, m, d] = dayInput.value.split("-").map(Number);
    dayInput.value = localDay(new Date(y, m - 1, d + delta));
    load();
  }

  const pctIn = (b, t) => `${(((t - b[0]) / (b[1] - b[0])) * 100).toFixed(4)}%`;
  const widthIn = (b, s, e) => `${Math.max(0, ((Math.min(e, b[1]) - Math.max(s, b[0])) / (b[1] - b[0])) * 100).toFixed(4)}%`;

  function spans() {
    const out = [];
    for (const s of data.segments) {
      const last = out[out.length - 1];
      if (last && s.start - last.end <= MERGE_S) last.end = Math.max(last.end, s.end);
      else out.push({ start: s.start, end: s.end });
    }
    return out;
  }

  function drawBar(el, b, cur) {
    replace(el, cur);
    for (const s of spans()) {
      if (s.end <= b[0] || s.start >= b[1]) continue;
      const span = h("div", { class: "span", title: `${fmtTime(fromUnix(s.start))} – ${fmtTime(fromUnix(s.end))}` });
      span.style.left = pctIn(b, Math.max(s.start, b[0]));
      span.style.width = widthIn(b, s.start, s.end);
      el.appendChild(span);
    }
    for (const g of data.gaps) {
      if (g.end < b[0] || g.start > b[1]) continue;
      const mark = h("div", { class: "gapmark", title: `gap: ${g.reason}` });
      mark.style.left = pctIn(b, Math.max(g.start, b[0]));
      mark.style.width = widthIn(b, g.start, g.end);
      el.appendChild(mark);
    }
    for (const e of data.events) {
      if (e.start_at < b[0] || e.start_at > b[1]) continue;
      const mark = h("div", { class: "mark", title: `${e.kind} at ${fmtTime(fromUnix(e.start_at))}` });
      mark.style.left = pctIn(b, e.start_at);
      el.appendChild(mark);
    }
  }

  function focusZoom(t) {
    const hour = 3600;
    const lo = Math.min(Math.max(bounds[0], t - hour / 2), bounds[1] - hour);
    zoomBounds = [lo, lo + hour];
    zoom.dataset.start = String(lo);
    zoom.dataset.end = String(lo + hour);
    drawBar(zoom, zoomBounds, zoomCursor);
    replace(zoomLabels, [0, 15, 30, 45, 60].map((m) => h("span", {}, fmtClockShort(fromUnix(lo + m * 60)))));
  }

  function draw() {
    drawBar(bar, bounds, cursor);
    const all = spans();
    const recorded = all.reduce((n, s) => n + (Math.min(s.end, bounds[1]) - Math.max(s.start, bounds[0])), 0);
    summary.textContent = `${fmtDuration(recorded)} recorded this day, ${data.gaps.length} ${data.gaps.length === 1 ? "gap" : "gaps"}, ${data.events.length} ${data.events.length === 1 ? "event" : "events"}. Times are ${zoneName(fromUnix(bounds[0]))}.`;
    const last = data.segments.at(-1);
    focusZoom(t0 && t0 >= bounds[0] && t0 < bounds[1] ? t0 : last ? last.start : (bounds[0] + bounds[1]) / 2);
  }

  async function load() {
    bounds = dayBounds(dayInput.value);
    data = await api.get(`/api/v1/owner/timeline?${api.query({ camera: camSel.value, start: bounds[0], end: bounds[1] })}`);
    draw();
  }

  function segmentAt(t) {
    const segs = data.segments;
    let i = segs.findIndex((s) => s.start <= t && t < s.end);
    if (i < 0) i = segs.findIndex((s) => s.start > t);
    return i;
  }

  function play(index, offset = 0) {
    const seg = data.segments[index];
    if (!seg) return;
    current = index;
    const { src, copy } = segmentSource(seg, video);
    codecNote.hidden = !copy;
    video.src = src;
    video.dataset.segment = String(seg.id);
    const start = () => {
      if (offset > 0) video.currentTime = Math.min(offset, Math.max(0, (video.duration || offset) - 0.1));
      video.play().catch(() => {});
    };
    video.addEventListener("loadedmetadata", start, { once: true });
    nowPlaying.textContent = `Playing ${camSel.selectedOptions[0]?.textContent || camSel.value} from ${fmtWhen(fromUnix(seg.start + offset))}`;
  }

  function playAt(t) {
    const i = segmentAt(t);
    if (i < 0) {
      nowPlaying.textContent = `No recording at or after ${fmtWhen(fromUnix(t))}.`;
      return;
    }
    play(i, Math.max(0, t - data.segments[i].start));
  }

  const timeAt = (el, b, ev) => {
    const rect = el.getBoundingClientRect();
    return b[0] + ((ev.clientX - rect.left) / rect.width) * (b[1] - b[0]);
  };
  bar.addEventListener("click", (ev) => {
    const t = timeAt(bar, bounds, ev);
    focusZoom(t);
    playAt(t);
  });
  zoom.addEventListener("click", (ev) => playAt(timeAt(zoom, zoomBounds, ev)));
  bar.addEventListener("keydown", (ev) => {
    const seg = current === null ? null : data.segments[current];
    const now = seg ? seg.start + video.currentTime : bounds[0];
    if (ev.key === "ArrowRight") playAt(now + 60);
    else if (ev.key === "ArrowLeft") playAt(now - 60);
    else return;
    ev.preventDefault();
  });
  // Continue across segment boundaries.
  video.addEventListener("ended", () => {
    if (current !== null && current + 1 < data.segments.length) play(current + 1);
  });
  video.addEventListener("timeupdate", () => {
    const seg = current === null ? null : data.segments[current];
    if (!seg) return;
    const t = seg.start + video.currentTime;
    cursor.hidden = false;
    cursor.style.left = pctIn(bounds, t);
    zoomCursor.hidden = !(t >= zoomBounds[0] && t <= zoomBounds[1]);
    zoomCursor.style.left = pctIn(zoomBounds, t);
    bar.setAttribute("aria-valuenow", String(Math.round(t - bounds[0])));
    bar.setAttribute("aria-valuetext", fmtTime(fromUnix(t)));
  });
  camSel.addEventListener("change", load);
  dayInput.addEventListener("change", load);

  await load();
  if (t0) playAt(t0);
  return () => {
    video.pause();
    video.removeAttribute("src");
    video.load();
  };
}
