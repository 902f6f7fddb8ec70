// Settings: what the hub runs with (from its config file), its cameras and their state, cameras
// found on the LAN (never added automatically), and HTTPS (the local CA to trust once).

import * as api from "../lib/api.js";
import { confirmClock, signingKey } from "../lib/decide.js";
import { h, notice, replace } from "../lib/dom.js";
import { fmtBytes, fmtUnix } from "../lib/time.js";

function tomlString(s) {
  return JSON.stringify(String(s)); // a TOML basic string is JSON-compatible for these characters
}

function snippet(d) {
  const id = (d.instance || d.uid).toLowerCase().replace(/[^a-z0-9_-]+/g, "-").replace(/^-+/, "").slice(0, 63) || "camera";
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

export async function render(root, ctx) {
  const [s, cams, devs] = await Promise.all([api.get("/api/v1/owner/settings"), api.get("/api/v1/owner/cameras"), api.get("/api/v1/owner/devices")]);
  const { key, enrolled } = await signingKey(devs.keys.map((k) => k.kid));
  const secure = location.protocol === "https:";
  replace(root,
    h("h1", {}, "Settings"),
    clockSection(s, ctx.session.hub_id, !!key && enrolled, () => render(root, ctx)),
    h("section", { class: "card" },
      h("h2", {}, "Cameras"),
      h("div", { class: "scroll" }, h("table", { id: "cameras" },
        h("thead", {}, h("tr", {}, ["Camera", "Source", "Recording", "Keep footage", "State"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, cams.cameras.map((c) => h("tr", {},
          h("td", {}, h("strong", {}, c.name), " ", h("code", {}, c.id)),
          h("td", {}, c.source === "whip" ? "pushes (WHIP)" : "RTSP"),
          h("td", {}, c.record ? "on" : "off"),
          h("td", {}, `${c.retention_days} days`),
          h("td", {}, c.status
            ? h("span", { class: c.status.online ? "ok" : "bad" }, c.status.online ? `online, last frame ${fmtUnix(c.status.last_frame_at)}` : `offline${c.status.last_error ? `: ${c.status.last_error}` : ""}`)
            : h("span", { class: "muted" }, "no status yet"))))))),
      h("p", { class: "muted" }, "Cameras, retention and storage are set in the hub's configuration file (camhub.toml) so that they can be reviewed and backed up; `camhub check-config` validates it.")),
    h("section", { class: "card" },
      h("h2", {}, `Found on your network (${cams.discovered.length})`),
      cams.discovered.length
        ? cams.discovered.map((d) => h("details", {},
            h("summary", {}, `${d.instance}${d.model ? ` (${d.model})` : ""} — ${d.addresses.join(", ")}`),
            h("p", {}, "To add it, append this to camhub.toml and restart the hub:"),
            h("textarea", { readonly: true, rows: 6, "aria-label": `Configuration for ${d.instance}` }, snippet(d))))
        : h("p", { class: "muted" }, "No cameras announce themselves over mDNS right now (or discovery is off).")),
    h("section", { class: "card" },
      h("h2", {}, "Storage and consent"),
      h("dl", { class: "facts" },
        h("dt", {}, "Segment length"), h("dd", {}, `${s.storage.segment_seconds} s`),
        h("dt", {}, "Keep footage"), h("dd", {}, `${s.storage.max_age_days} days (unless an agency request holds it)`),
        h("dt", {}, "Disk quota"), h("dd", {}, s.storage.quota_bytes ? fmtBytes(s.storage.quota_bytes) : "none"),
        h("dt", {}, "Keep free"), h("dd", {}, `${s.storage.min_free_percent} % of the disk`),
        h("dt", {}, "Agencies must hear back within"), h("dd", {}, `${s.consent.respond_by_days} days`),
        h("dt", {}, "Default downloads per approval"), h("dd", {}, String(s.consent.max_fetches)),
        h("dt", {}, "Clock"), h("dd", { id: "clock-state" }, s.consent.trust_system_clock ? "trusted (battery-backed clock)" : s.clock_synced ? "synchronised or confirmed for this boot" : "NOT confirmed: consent decisions are refused"))),
    h("section", { class: "card" },
      h("h2", {}, "HTTPS on your network"),
      h("p", {}, secure
        ? "This page is served over HTTPS by the hub's own certificate authority."
        : "This page is not using HTTPS. On your network, open the hub at https://<name>.local (its signing features need HTTPS)."),
      h("p", {}, "Install the hub's certificate authority once on each device. Before trusting it, compare its SHA-256 fingerprint with the one the hub printed on its console."),
      h("p", {}, h("a", { href: "/ca.crt", download: "camhub-ca.crt" }, "Download the CA certificate"), s.https_port ? ` (HTTPS port ${s.https_port})` : " (HTTPS is off on this hub)")));
}
