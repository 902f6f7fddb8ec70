// Privacy masks (PROTOCOL §4.1): per camera, polygons blacked out of everything that leaves the house
// (clip deliveries and agency livestreams are re-encoded with them filled black). Drawn here on the
// camera's current still: click to add corners, "Close shape" to finish one. The same polygons can be
// typed as JSON ([[[x, y], …], …], 0..1 picture coordinates) for keyboard users and exact values.
// Saving sends PUT /api/v1/owner/settings/privacy/{camera}; the hub validates, applies and audits it.

import * as api from "../lib/api.js";
import { h, notice, replace } from "../lib/dom.js";
import { sentence } from "../lib/words.js";

const round = (v) => Math.round(v * 1000) / 1000;

function draw(canvas, img, masks, current) {
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (img && img.complete && img.naturalWidth) g.drawImage(img, 0, 0, canvas.width, canvas.height);
  const path = (poly) => {
    g.beginPath();
    poly.forEach(([x, y], i) => (i ? g.lineTo : g.moveTo).call(g, x * canvas.width, y * canvas.height));
  };
  g.fillStyle = "rgba(0, 0, 0, 0.85)";
  for (const poly of masks) { path(poly); g.closePath(); g.fill(); }
  if (current.length) {
    g.strokeStyle = "#e33"; g.lineWidth = 2; path(current); g.stroke();
    for (const [x, y] of current) g.fillRect(x * canvas.width - 3, y * canvas.height - 3, 6, 6);
  }
}

function cameraEditor(cam, name, reload) {
  let masks = cam.masks.map((p) => p.map((pt) => [...pt]));
  let current = [];
  const status = h("div", { "aria-live": "polite" });
  const canvas = h("canvas", { width: 480, height: 270, class: "privacy-canvas", "aria-label": `Still of ${name}: click to add a corner of a masked area` });
  const img = new Image();
  const text = h("textarea", { rows: 3, name: "masks", "aria-label": `Masked areas of ${name} as JSON` });
  const ownerViews = h("input", { type: "checkbox", name: "owner_views", checked: cam.owner_views });
  const sync = () => { text.value = JSON.stringify(masks); draw(canvas, img, masks, current); };
  img.onload = () => draw(canvas, img, masks, current);
  canvas.addEventListener("click", (ev) => {
    const r = canvas.getBoundingClientRect();
    current.push([round((ev.clientX - r.left) / r.width), round((ev.clientY - r.top) / r.height)]);
    draw(canvas, img, masks, current);
  });
  text.addEventListener("change", () => {
    try {
      const parsed = JSON.parse(text.value || "[]");
      if (!Array.isArray(parsed)) throw new Error("not a list");
      masks = parsed; current = [];
      draw(canvas, img, masks, current);
    } catch {
      replace(status, notice("The masks must be a JSON list of polygons: [[[x, y], [x, y], [x, y]], …]", "error"));
    }
  });
  const save = async (body, done) => {
    try {
      await api.put(`/api/v1/owner/settings/privacy/${encodeURIComponent(cam.camera)}`, body);
      reload(done);
    } catch (err) {
      replace(status, notice(sentence(err), "error"));
    }
  };
  sync();
  const n = cam.masks.length;
  // Closed by default: the page stays short, and the still is fetched only when the owner opens it.
  const box = h("details", { class: "privacy-camera", dataset: { camera: cam.camera } },
    h("summary", {}, `${name}: ${n ? `${n} masked ${n === 1 ? "area" : "areas"}` : "no masks"}`,
      h("span", { class: "muted" }, cam.configured_in === "settings" ? " (set here)" : " (from camhub.toml)")),
    h("p", { class: "muted" }, "Masked areas are blacked out of all that leaves the house (approved footage, agency livestreams); recordings stay whole."),
    canvas,
    h("div", { class: "row" },
      h("button", { type: "button", onclick: () => { if (current.length >= 3) { masks.push(current); current = []; sync(); } else replace(status, notice("A masked area needs at least 3 corners.", "error")); } }, "Close shape"),
      h("button", { type: "button", onclick: () => { current.pop(); draw(canvas, img, masks, current); } }, "Undo corner"),
      h("button", { type: "button", onclick: () => { masks = []; current = []; sync(); } }, "Clear all")),
    h("label", {}, "Masked areas (0..1 coordinates)", text),
    h("label", {}, ownerViews, " Mask my own live views too"),
    h("div", { class: "row" },
      h("button", { type: "button", class: "primary", onclick: () => save({ masks, owner_views: ownerViews.checked }, `Privacy masks of ${name} saved.`) }, "Save masks"),
      cam.configured_in === "settings"
        ? h("button", { type: "button", onclick: () => save({ masks: null }, `${name} uses camhub.toml's masks again.`) }, "Use camhub.toml's")
        : null),
    status);
  box.addEventListener("toggle", () => {
    if (box.open && !img.src) img.src = `/api/v1/owner/cameras/${encodeURIComponent(cam.camera)}/snapshot.jpg?t=${Date.now()}`;
  });
  return box;
}

export function privacySection(privacy, names, reload) {
  // One line when closed (the Settings page is long on a phone): how many cameras have masks.
  const masked = privacy.cameras.filter((c) => c.masks.length).length;
  // On the Cameras card's heading line, not a card of its own: masks are a property of each camera,
  // and the Settings page is long on a phone.
  return h("details", { id: "privacy", open: masked > 0 || undefined },
    h("summary", { id: "h-privacy" }, masked ? `Privacy masks (${masked} of ${privacy.cameras.length} cameras)…` : "Privacy masks…"),
    privacy.cameras.length
      ? privacy.cameras.map((c) => cameraEditor(c, names[c.camera] || c.camera, reload))
      : h("p", { class: "muted" }, "No cameras yet."));
}
