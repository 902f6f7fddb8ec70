// Settings: the hub's cameras and their state, adding a camera (e.g. one found on the LAN, never
// added automatically), retention, and HTTPS (the local CA to trust once). Cameras in camhub.toml
// are read-only here; those added on this page can be edited and removed (hub/api/settings.py).
// Every change is validated by the hub with the config file's own rules and audited.

import * as api from "../lib/api.js";
import { confirmClock, signingKey } from "../lib/decide.js";
import { h, notice, replace } from "../lib/dom.js";
import { fmtBytes, fmtUnix } from "../lib/time.js";

function tomlString(s) {
  return JSON.stringify(String(s)); // a TOML basic string is JSON-compatible for these characters
}

function snippet(d) {
  const id = slug(d);
  const lines = ["[[cameras]]", `id = ${tomlString(id)}`, `name = ${tomlString(d.instance || id)}`, `url = ${tomlString(d.rtsp_url)}`];
  if (d.events_url) lines.push(`events_url = ${tomlString(d.events_url)}`);
  lines.push('# username = "…"', '# password = "…"');
  return lines.join("\n");
}

function clockSection(s, hubId, canSign, reload) {
  if (s.clock_synced !== false) return null;
  const status = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "button", disabled: !canSign, onclick: async () => {
    button.disabled = true;
    try {
      await confirmClock(hubId);
      reload();
    } catch (err) {
      replace(status, notice(err.code === "clock_mismatch" ? `The hub's clock is wrong: ${err.detail}. Fix it (e.g. enable NTP) and confirm again.` : err.message, "error"));
      button.disabled = !canSign;
    }
  } }, "Confirm the hub's clock (sign)");
  return h("section", { class: "card", id: "clock" },
    h("h2", {}, "The hub's clock is not confirmed"),
    notice(`The hub cannot tell whether its clock is right (no network time yet), so it refuses every consent decision until you confirm it. This device says it is ${new Date().toISOString()}; confirming signs that time and the hub accepts it only if its own clock agrees.`, "warn"),
    button, status);
}

function slug(d) {
  return (d.instance || d.uid).toLowerCase().replace(/[^a-z0-9_-]+/g, "-").replace(/^-+/, "").slice(0, 63) || "camera";
}

// Show the hub's error next to the field it names (the hub answers {"error", "detail", "field"}).
function showError(form, status, err, verb) {
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  const field = err.data?.field;
  const input = field && form.elements[field];
  if (input instanceof HTMLElement) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
  replace(status, notice(`Not ${verb}: ${err.message}`, "error"));
}

function numberOrNull(value) {
  return value.trim() === "" ? null : Number(value);
}

function addCameraForm(reload) {
  const status = h("div", { "aria-live": "polite" });
  const field = (id, label, attrs) => [h("label", { for: `cam-${id}` }, label), h("input", { id: `cam-${id}`, name: id, ...attrs })];
  const form = h("form", { class: "stack card", id: "add-camera", "aria-labelledby": "h-add-camera", novalidate: true },
    h("h2", { id: "h-add-camera" }, "Add a camera"),
    h("p", { class: "muted" }, "An RTSP camera on your network. The hub checks everything with the same rules as camhub.toml. The password is kept on the hub and never shown again."),
    field("id", "Camera id", { required: true, maxlength: 63, placeholder: "porch", autocomplete: "off" }),
    field("name", "Name", { maxlength: 100, placeholder: "Porch" }),
    field("url", "RTSP URL", { required: true, placeholder: "rtsp://192.168.1.20:554/main", autocomplete: "off" }),
    h("div", { class: "row" },
      h("label", {}, "Username", h("input", { id: "cam-username", name: "username", autocomplete: "off" })),
      h("label", {}, "Password", h("input", { id: "cam-password", name: "password", type: "password", autocomplete: "new-password" }))),
    h("div", { class: "row" },
      h("label", {}, "Keep footage (days)", h("input", { id: "cam-retention", name: "retention_days", type: "number", min: "0.01", step: "any", placeholder: "hub default" })),
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "record", checked: true }), " Record"),
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "motion", checked: true }), " Motion detection")),
    h("input", { type: "hidden", name: "events_url" }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Add camera")),
    status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    const body = {
      id: f.id.value.trim(), name: f.name.value.trim() || null, url: f.url.value.trim(),
      username: f.username.value || null, password: f.password.value || null,
      record: f.record.checked, retention_days: numberOrNull(f.retention_days.value),
      events_url: f.events_url.value || null, motion: { enabled: f.motion.checked },
    };
    try {
      await api.post("/api/v1/owner/settings/cameras", body);
      reload(`Camera ${body.id} added.`);
    } catch (err) {
      showError(form, status, err, "added");
    }
  });
  return form;
}

function prefill(form, d) {
  const f = form.elements;
  f.id.value = slug(d);
  f.name.value = d.instance || "";
  f.url.value = d.rtsp_url || "";
  f.events_url.value = d.events_url || "";
  f.username.value = "";
  f.password.value = "";
  form.scrollIntoView({ block: "start" });
  f.username.focus();
}

function cameraRow(c, storage, reload) {
  const editable = c.configured_in === "settings";
  const st = h("span", { "aria-live": "polite" });
  let keep = `${c.retention_days} days`;
  if (editable) {
    const input = h("input", { type: "number", min: "0.01", step: "any", name: "retention_days", value: c.own_retention_days ?? "", placeholder: `${storage.max_age_days}`, "aria-label": `Keep footage of ${c.name} (days)`, class: "days" });
    keep = h("form", { class: "row", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api.patch(`/api/v1/owner/settings/cameras/${encodeURIComponent(c.id)}`, { retention_days: numberOrNull(input.value) });
        reload(`Retention of ${c.id} saved.`);
      } catch (err) {
        showError(ev.target, st, err, "saved");
      }
    } }, input, h("span", {}, "days"), h("button", { type: "submit", class: "secondary" }, "Save"));
  }
  const remove = editable
    ? h("button", { type: "button", class: "danger", onclick: async () => {
        if (!confirm(`Remove camera ${c.name}? Its recordings stay until retention deletes them.`)) return;
        try {
          await api.del(`/api/v1/owner/settings/cameras/${encodeURIComponent(c.id)}`);
          reload(`Camera ${c.id} removed.`);
        } catch (err) {
          replace(st, notice(err.message, "error"));
        }
      } }, "Remove")
    : null;
  return h("tr", { dataset: { camera: c.id } },
    h("td", {}, h("strong", {}, c.name), " ", h("code", {}, c.id)),
    h("td", {}, c.source === "whip" ? "pushes (WHIP)" : "RTSP"),
    h("td", {}, c.record ? "on" : "off"),
    h("td", {}, keep),
    h("td", { class: "state" }, c.status
      ? h("span", { class: c.status.online ? "ok" : "bad" }, c.status.online ? `online, last frame ${fmtUnix(c.status.last_frame_at)}` : `offline${c.status.last_error ? `: ${c.status.last_error}` : ""}`)
      : h("span", { class: "muted" }, "no status yet")),
    h("td", {}, editable ? h("span", {}, "this page ", remove, " ", st) : h("span", { class: "muted" }, "camhub.toml (read-only)")));
}

// The hub's outbound link to a camhub-relay (PROTOCOL §7): one line, whatever its state.
function relayState(relay) {
  if (!relay) return "not configured (agencies reach the hub only on this network)";
  const area = relay.area ? `, area ${relay.area}` : "";
  if (relay.state === "connected") return `connected: agencies reach this hub at ${relay.url}${area}`;
  const why = relay.detail ? ` (${relay.detail})` : "";
  return `${relay.state === "connecting" ? "connecting" : "retrying"} to the relay${why}; the hub works as usual meanwhile`;
}

function storageForm(s, reload) {
  const st = h("div", { "aria-live": "polite" });
  const gb = s.storage.quota_bytes ? +(s.storage.quota_bytes / 1024 ** 3).toFixed(3) : "";
  const file = s.storage.file;
  const form = h("form", { class: "stack", id: "storage", novalidate: true },
    h("div", { class: "row" },
      h("label", {}, "Keep footage (days)", h("input", { name: "max_age_days", type: "number", min: "0.01", step: "any", value: s.storage.max_age_days })),
      h("label", {}, "Disk quota (GB, 0 = none)", h("input", { name: "quota_gb", type: "number", min: "0", step: "any", value: gb, placeholder: "none" })),
      h("button", { type: "submit" }, "Save retention")),
    h("p", { class: "muted" }, `camhub.toml says ${file.max_age_days} days and ${file.quota_bytes ? fmtBytes(file.quota_bytes) : "no quota"}. An empty field goes back to it. Footage an agency request holds is kept regardless.`),
    st);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api.patch("/api/v1/owner/settings/storage", { max_age_days: numberOrNull(form.elements.max_age_days.value), quota_gb: numberOrNull(form.elements.quota_gb.value) });
      reload("Retention saved.");
    } catch (err) {
      showError(form, st, err, "saved");
    }
  });
  return form;
}

export async function render(root, ctx, message = null) {
  const [s, cams, devs] = await Promise.all([api.get("/api/v1/owner/settings"), api.get("/api/v1/owner/cameras"), api.get("/api/v1/owner/devices")]);
  const { key, enrolled } = await signingKey(devs.keys.map((k) => k.kid));
  const secure = location.protocol === "https:";
  const reload = (msg) => render(root, ctx, msg);
  const addForm = addCameraForm(reload);
  replace(root,
    h("h1", {}, "Settings"),
    message ? notice(message, "ok") : null,
    clockSection(s, ctx.session.hub_id, !!key && enrolled, () => render(root, ctx)),
    h("section", { class: "card" },
      h("h2", {}, "Cameras"),
      h("div", { class: "scroll" }, h("table", { id: "cameras" },
        h("thead", {}, h("tr", {}, ["Camera", "Source", "Recording", "Keep footage", "State", "Configured in"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, cams.cameras.map((c) => cameraRow(c, s.storage, reload))))),
      h("p", { class: "muted" }, "Cameras in the hub's configuration file (camhub.toml) are changed there, where they can be reviewed and backed up; `camhub check-config` validates it.")),
    h("section", { class: "card" },
      h("h2", {}, `Found on your network (${cams.discovered.length})`),
      cams.discovered.length
        ? cams.discovered.map((d) => h("details", { class: "discovered", dataset: { uid: d.uid, rtspUrl: d.rtsp_url } },
            h("summary", {}, `${d.instance}${d.model ? ` (${d.model})` : ""} — ${d.addresses.join(", ")} `,
              h("button", { type: "button", onclick: (ev) => { ev.preventDefault(); prefill(addForm, d); } }, `Add ${d.instance}`)),
            h("p", {}, "Or append this to camhub.toml and restart the hub:"),
            h("textarea", { readonly: true, rows: 6, "aria-label": `Configuration for ${d.instance}` }, snippet(d))))
        : h("p", { class: "muted" }, "No cameras announce themselves over mDNS right now (or discovery is off).")),
    addForm,
    h("section", { class: "card" },
      h("h2", {}, "Storage and consent"),
      storageForm(s, reload),
      h("dl", { class: "facts" },
        h("dt", {}, "Segment length"), h("dd", {}, `${s.storage.segment_seconds} s`),
        h("dt", {}, "Keep footage"), h("dd", {}, `${s.storage.max_age_days} days (unless an agency request holds it)`),
        h("dt", {}, "Disk quota"), h("dd", {}, s.storage.quota_bytes ? fmtBytes(s.storage.quota_bytes) : "none"),
        h("dt", {}, "Keep free"), h("dd", {}, `${s.storage.min_free_percent} % of the disk`),
        h("dt", {}, "Agencies must hear back within"), h("dd", {}, `${s.consent.respond_by_days} days`),
        h("dt", {}, "Default downloads per approval"), h("dd", {}, String(s.consent.max_fetches)),
        h("dt", {}, "Clock"), h("dd", { id: "clock-state" }, s.consent.trust_system_clock ? "trusted (battery-backed clock)" : s.clock_synced ? "synchronised or confirmed for this boot" : "NOT confirmed: consent decisions are refused"),
        h("dt", {}, "Relay"), h("dd", { id: "relay-state" }, relayState(s.relay)))),
    h("section", { class: "card" },
      h("h2", {}, "HTTPS on your network"),
      h("p", {}, secure
        ? "This page is served over HTTPS by the hub's own certificate authority."
        : "This page is not using HTTPS. On your network, open the hub at https://<name>.local (its signing features need HTTPS)."),
      h("p", {}, "Install the hub's certificate authority once on each device. Before trusting it, compare its SHA-256 fingerprint with the one the hub printed on its console."),
      h("p", {}, h("a", { href: "/ca.crt", download: "camhub-ca.crt" }, "Download the CA certificate"), s.https_port ? ` (HTTPS port ${s.https_port})` : " (HTTPS is off on this hub)")));
}
