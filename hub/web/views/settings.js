// Settings: the hub's cameras and their state, adding a camera (e.g. one found on the LAN, never
// added automatically), retention, and HTTPS (the local CA to trust once). Cameras in camhub.toml
// are read-only here; those added on this page can be edited and removed (hub/api/settings.py).
// Every change is validated by the hub with the config file's own rules and audited.

import * as api from "../lib/api.js";
import { confirmClock, decide, signingKey } from "../lib/decide.js";
import { cardTable, confirmDialog, focusResult, h, notice, replace } from "../lib/dom.js";
import { fmtBytes, fmtRange, fmtUnix, rfc3339 } from "../lib/time.js";
import { cameraProblem, details, sentence } from "../lib/words.js";
import { privacySection } from "./privacy.js";

const RETRY_MAX_S = 30; // hub/ingest/camera.py MAX_BACKOFF_S: the longest wait between reconnects

function tomlString(s) {
  return JSON.stringify(String(s)); // a TOML basic string is JSON-compatible for these characters
}

function snippet(d) {
  const id = slug(d);
  const lines = ["[[cameras]]", `id = ${tomlString(id)}`, `name = ${tomlString(d.instance || id)}`];
  // An ONVIF camera's stream URLs are read with its password: adding it on this page does that.
  lines.push(d.rtsp_url ? `url = ${tomlString(d.rtsp_url)}` : '# url = "rtsp://…"   (this page reads it from the camera)');
  if (d.onvif_url) lines.push(`onvif = ${tomlString(d.onvif_url)}`);
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
      const msg = notice(err.code === "clock_mismatch" ? `The hub's clock is wrong: ${err.detail}. Fix it (e.g. enable NTP) and confirm again.` : sentence(err), "error");
      replace(status, msg);
      focusResult(msg);
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
  const msg = notice(`Not ${verb}: ${sentence(err)}`, "error");
  replace(status, msg);
  if (!(input instanceof HTMLElement)) focusResult(msg);
}

function numberOrNull(value) {
  return value.trim() === "" ? null : Number(value);
}

function addCameraForm(reload) {
  const status = h("div", { "aria-live": "polite" });
  const field = (id, label, attrs) => [h("label", { for: `cam-${id}` }, label), h("input", { id: `cam-${id}`, name: id, ...attrs })];
  const form = h("form", { class: "stack card", id: "add-camera", "aria-labelledby": "h-add-camera", novalidate: true },
    h("h2", { id: "h-add-camera" }, "Add a camera"),
    h("p", { class: "muted" }, "An RTSP or ONVIF camera (for ONVIF, address and password are enough: the hub reads its streams and events). Passwords are never shown again."),
    field("id", "Camera id", { required: true, maxlength: 63, placeholder: "porch", autocomplete: "off" }),
    field("name", "Name", { maxlength: 100, placeholder: "Porch" }),
    field("url", "RTSP URL", { placeholder: "rtsp://192.168.1.20:554/main", autocomplete: "off" }),
    field("onvif", "ONVIF address", { placeholder: "http://192.168.1.20:80", autocomplete: "off" }),
    h("div", { class: "row" },
      h("label", {}, "Username", h("input", { id: "cam-username", name: "username", autocomplete: "off" })),
      h("label", {}, "Password", h("input", { id: "cam-password", name: "password", type: "password", autocomplete: "new-password" }))),
    h("div", { class: "row" },
      h("label", {}, "Keep footage (days)", h("input", { id: "cam-retention", name: "retention_days", type: "number", min: "0.01", step: "any", placeholder: "hub default" })),
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "record", checked: true }), " Record"),
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "motion", checked: true }), " Motion detection"),
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "audio", "aria-describedby": "audio-note" }), " Record sound")),
    h("input", { type: "hidden", name: "events_url" }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Add camera")),
    status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    const body = {
      id: f.id.value.trim(), name: f.name.value.trim() || null, url: f.url.value.trim() || null,
      onvif: f.onvif.value.trim() || null,
      username: f.username.value || null, password: f.password.value || null,
      record: f.record.checked, retention_days: numberOrNull(f.retention_days.value),
      events_url: f.events_url.value || null, motion: { enabled: f.motion.checked },
      audio: f.audio.checked,
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

// Sound is off unless the owner turns it on, camera by camera (hub/config.py `audio`): the law on
// recording conversations differs from place to place, and the owner is the one who knows.
function audioNote(id) {
  return h("span", { id }, "Sound is off by default: recording conversations is regulated (GDPR, two-party consent).");
}

function audioControl(c, reload) {
  const st = h("span", { class: "status" });
  // camhub.toml cameras: said only when on (off is the default the note below explains).
  if (c.configured_in !== "settings") return c.audio ? ", with sound" : null;
  const box = h("input", { type: "checkbox", checked: !!c.audio, "aria-label": `Record sound from ${c.name}`, "aria-describedby": "audio-note", onchange: async () => {
    try {
      await api.patch(`/api/v1/owner/settings/cameras/${encodeURIComponent(c.id)}`, { audio: box.checked });
      reload(box.checked ? `Sound from ${c.name} is recorded from now on.` : `Sound from ${c.name} is no longer recorded.`);
    } catch (err) {
      box.checked = !box.checked;
      const msg = notice(sentence(err), "error");
      replace(st, msg);
      focusResult(msg);
    }
  } });
  return h("span", {}, h("label", { class: "check" }, box, " on"), " ", st);
}

function prefill(form, d) {
  const f = form.elements;
  f.id.value = slug(d);
  f.name.value = d.instance || "";
  f.url.value = d.rtsp_url || "";
  f.onvif.value = d.onvif_url || "";
  f.events_url.value = d.events_url || "";
  f.username.value = "";
  f.password.value = "";
  form.scrollIntoView({ block: "start" });
  f.username.focus();
}

// A camera's state in words; the hub's raw error text stays under "Technical details".
function cameraState(c) {
  if (!c.status) return h("span", { class: "muted" }, "no news from it yet");
  if (c.status.online) return h("span", { class: "ok" }, `Online — last picture ${fmtUnix(c.status.last_frame_at, { seconds: true })}`);
  const problem = cameraProblem(c.status.last_error) || "The camera cannot be reached";
  return h("span", {},
    h("span", { class: "bad" }, `Offline — ${problem}${/[.?!]$/.test(problem) ? "" : "."}`),
    ` camhub keeps retrying (at least every ${RETRY_MAX_S} s).`,
    c.status.last_error ? details(h("p", {}, h("code", {}, c.status.last_error)), h("p", {}, `Reconnects so far: ${c.status.reconnect_count}`)) : null);
}

function cameraRow(c, storage, reload) {
  const editable = c.configured_in === "settings";
  const st = h("span", { class: "status" });
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
    } }, input, h("span", {}, "days"), h("button", { type: "submit", class: "secondary", "aria-label": `Save how long to keep footage of ${c.name}` }, "Save"));
  }
  const remove = editable
    ? h("button", { type: "button", class: "danger", "aria-label": `Remove ${c.name}`, onclick: async () => {
        const ok = await confirmDialog({
          title: `Remove the camera ${c.name}?`,
          body: h("p", {}, "The hub stops recording it. Its recordings stay until the retention rules delete them."),
          confirm: "Remove camera", danger: true,
        });
        if (!ok) return;
        try {
          await api.del(`/api/v1/owner/settings/cameras/${encodeURIComponent(c.id)}`);
          reload(`Camera ${c.id} removed.`);
        } catch (err) {
          const msg = notice(sentence(err), "error");
          replace(st, msg);
          focusResult(msg);
        }
      } }, "Remove")
    : null;
  return {
    attrs: { dataset: { camera: c.id } },
    cells: [
      h("span", {}, h("strong", {}, c.name), c.name === c.id ? null : h("span", { class: "muted" }, ` (${c.id})`)),
      h("span", { class: "state" }, cameraState(c)),
      c.configured_in === "settings"
        ? h("span", {}, c.record ? "on" : "off", "; sound: ", audioControl(c, reload))
        : h("span", {}, c.record ? "on" : "off", audioControl(c, reload)),
      keep,
      c.source === "whip" ? "it sends to the hub (WHIP)" : "the hub fetches it (RTSP)",
      editable ? h("span", {}, "this page ", remove, " ", st) : h("span", { class: "muted" }, "camhub.toml (read-only)"),
    ],
  };
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

// What to say about HTTPS here: loopback (the hub's own screen) is a secure context without it; any
// other address over plain HTTP cannot make or use a signing key.
function httpsText(s) {
  const loopback = ["127.0.0.1", "localhost", "[::1]", "::1"].includes(location.hostname) || location.hostname.endsWith(".localhost");
  if (location.protocol === "https:") return notice("This page is served over HTTPS by the hub's own certificate authority.", "ok");
  if (loopback) {
    return notice(`You are on the hub itself (${location.hostname}), which browsers treat as secure: signing works here without HTTPS. From your other devices, open the hub over HTTPS${s.https_port ? ` (port ${s.https_port})` : ""} after installing its certificate authority below.`);
  }
  return notice(`This page is not using HTTPS, so this device cannot sign approvals here. Open the hub at https://${location.hostname}${s.https_port ? `:${s.https_port}` : ""}/ after installing its certificate authority below.`, "warn");
}

// What retention keeps past the max age (GET /api/v1/owner/holds, PROTOCOL §3.2), with who asked and
// why: the owner's own signed holds, a waiting request (until its answer-by date, never longer;
// declining it in the inbox releases it) and an approval whose delivery is not built yet.
// Keep footage past the max age (a signed `hold` decision, PROTOCOL §3): cameras, the footage's
// range, until when, who asked and why. Signed in this browser with its owner key, like approvals.
function holdForm(hubId, cams, canSign, reload) {
  const st = h("div", { "aria-live": "polite" });
  const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const now = new Date();
  const form = h("form", { class: "stack", id: "hold-form", novalidate: true },
    h("fieldset", {}, h("legend", {}, "Cameras"),
      cams.map((c) => h("label", {}, h("input", { type: "checkbox", name: "camera", value: c.id }), ` ${c.name}`))),
    h("div", { class: "row" },
      h("label", {}, "Footage from", h("input", { type: "datetime-local", name: "start", value: local(new Date(now - 3600e3)) })),
      h("label", {}, "to", h("input", { type: "datetime-local", name: "end", value: local(now) })),
      h("label", {}, "Keep until", h("input", { type: "datetime-local", name: "until", value: local(new Date(+now + 30 * 86400e3)) }))),
    h("div", { class: "row" },
      h("label", {}, "Who asked", h("input", { name: "asked_by", maxlength: 200, placeholder: "e.g. my insurer, claim 42" })),
      h("label", {}, "Why", h("input", { name: "reason", maxlength: 500, placeholder: "e.g. the dented car" }))),
    h("button", { type: "submit", disabled: !canSign }, "Sign and hold"),
    st);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    const cameras = [...form.querySelectorAll("input[name=camera]:checked")].map((i) => i.value);
    try {
      if (!cameras.length) throw new Error("Choose at least one camera.");
      const res = await decide(hubId, { decision: "hold", subject: {
        cameras, start: rfc3339(new Date(f.start.value)), end: rfc3339(new Date(f.end.value)),
        until: rfc3339(new Date(f.until.value)), reason: f.reason.value.trim(), asked_by: f.asked_by.value.trim() } });
      reload(`Footage held (hold ${res.hold_id.slice(0, 8)}…).`);
    } catch (err) {
      replace(st, notice(`Not held: ${err.detail || err.message || sentence(err)}`, "error"));
    }
  });
  return h("details", { class: "hold-details" }, h("summary", {}, "Hold footage…"),
    h("p", { class: "muted" }, "Footage older than the days you keep it is deleted, copies for agencies and exports included, unless it is held."),
    form);
}

function releaseButton(hubId, x, canSign, reload) {
  return h("button", { type: "button", class: "secondary", disabled: !canSign, onclick: async () => {
    try {
      await decide(hubId, { decision: "release-hold", subject: { hold_id: x.hold_id } });
      reload("Hold released: that footage is deleted on the usual schedule.");
    } catch (err) {
      reload(`Not released: ${sentence(err)}`);
    }
  } }, "Release");
}

function holdsSection(holds, names, extra = {}) {
  const kept = (x) => {
    const until = `until ${fmtUnix(x.until, { seconds: false })}`;
    if (x.reason === "pending_request") return h("span", {}, `${until} while the request waits — `, h("a", { href: "#/inbox" }, "decline it to release"));
    if (x.reason === "owner_hold") return h("span", {}, `${until}: you held it${x.key_name ? ` (signed on “${x.key_name}”)` : ""} `, extra.release ? extra.release(x) : null);
    return `${until}: you approved it`;
  };
  const rows = holds.map((x) => ({
    attrs: { "data-reason": x.reason },
    cells: [
      h("span", {}, x.asked_by || x.agency_name || "an agency no longer trusted", x.why ? h("span", { class: "muted" }, ` — ${x.why}`) : null),
      // Cameras and range in one cell: a card on a phone stays three lines (the page is long there).
      `${x.cameras.map((c) => names[c] || c).join(", ")}: ${fmtRange(new Date(x.start * 1000), new Date(x.end * 1000), { seconds: false })}`,
      kept(x),
    ],
  }));
  return h("section", { class: "card", "aria-labelledby": "h-holds" },
    h("div", { class: "heading-row" }, h("h2", { id: "h-holds" }, `Footage held (${holds.length})`), extra.form || null),
    holds.length
      ? cardTable({ id: "holds" }, ["Who, why", "Footage", "Kept"], rows)
      : h("p", { class: "muted" }, "Nothing is held: footage is deleted on the usual schedule."));
}

export async function render(root, ctx, message = null) {
  const [s, cams, devs, held, privacy] = await Promise.all([api.get("/api/v1/owner/settings"), api.get("/api/v1/owner/cameras"), api.get("/api/v1/owner/devices"), api.get("/api/v1/owner/holds"), api.get("/api/v1/owner/settings/privacy")]);
  // With the passkeys' objects and the rpId, so a passkey-only owner can sign here too (the clock, holds).
  const { kind } = await signingKey(devs.keys, ctx.session.passkey_rp_id);
  const canSign = kind !== "none";
  const reload = (msg) => render(root, ctx, msg);
  const addForm = addCameraForm(reload);
  const flash = message ? notice(message, "ok") : null;
  const names = Object.fromEntries(cams.cameras.map((c) => [c.id, c.name]));
  replace(root,
    h("h1", {}, "Settings"),
    h("p", {}, "People of your home who may watch some cameras: ", h("a", { href: "#/household" }, "Household"), "."),
    flash,
    clockSection(s, ctx.session.hub_id, canSign, () => render(root, ctx)),
    h("section", { class: "card", "aria-labelledby": "h-cameras" },
      h("div", { class: "heading-row" }, h("h2", { id: "h-cameras" }, "Cameras"), privacySection(privacy, names, reload)),
      cardTable({ id: "cameras" }, ["Camera", "State", "Recording", "Keep footage", "Video", "Managed in"], cams.cameras.map((c) => cameraRow(c, s.storage, reload))),
      h("p", { class: "muted" }, audioNote("audio-note"), " Cameras in camhub.toml are changed there, where they are backed up (“camhub check-config”).")),
    h("section", { class: "card", "aria-labelledby": "h-found" },
      h("h2", { id: "h-found" }, `Found on your network (${cams.discovered.length})`),
      cams.discovered.length
        ? cams.discovered.map((d) => h("div", { class: "discovered", dataset: { uid: d.uid, rtspUrl: d.rtsp_url || "", onvifUrl: d.onvif_url || "", protocol: d.protocol } },
            h("p", {}, h("strong", {}, d.instance), `${d.model ? ` (${d.model})` : ""} — ${d.addresses.join(", ")}${d.protocol === "onvif" ? " (ONVIF)" : ""} `,
              d.added_as
                ? h("span", { class: "muted" }, `already added as ${names[d.added_as] || d.added_as}`)
                : h("button", { type: "button", onclick: () => prefill(addForm, d) }, `Add ${d.instance}`)),
            d.added_as ? null : h("details", {},
              h("summary", {}, "Or add it to camhub.toml instead"),
              h("p", {}, "Append this to camhub.toml and restart the hub:"),
              h("textarea", { readonly: true, rows: 6, "aria-label": `Configuration for ${d.instance}` }, snippet(d)))))
        : h("p", { class: "muted" }, "No cameras announce themselves on your network right now (or discovery is off).")),
    addForm,
    h("section", { class: "card", "aria-labelledby": "h-storage" },
      h("h2", { id: "h-storage" }, "Storage and consent"),
      storageForm(s, reload),
      h("dl", { class: "facts" },
        h("dt", {}, "Recordings are saved in pieces of"), h("dd", {}, `${s.storage.segment_seconds} s`),
        h("dt", {}, "Keep footage"), h("dd", {}, `${s.storage.max_age_days} days (unless an agency request holds it)`),
        h("dt", {}, "Disk quota"), h("dd", {}, s.storage.quota_bytes ? fmtBytes(s.storage.quota_bytes) : "none"),
        h("dt", {}, "Keep free"), h("dd", {}, `${s.storage.min_free_percent} % of the disk`),
        h("dt", {}, "Agencies must hear back within"), h("dd", {}, `${s.consent.respond_by_days} days`),
        h("dt", {}, "Default downloads per approval"), h("dd", {}, String(s.consent.max_fetches)),
        h("dt", {}, "Clock"), h("dd", { id: "clock-state" }, s.consent.trust_system_clock ? "trusted (battery-backed clock)" : s.clock_synced ? "synchronised or confirmed for this boot" : "NOT confirmed: consent decisions are refused"),
        h("dt", {}, "Relay"), h("dd", { id: "relay-state" }, relayState(s.relay)))),
    holdsSection(held.holds, names, {
      form: holdForm(ctx.session.hub_id, cams.cameras, canSign, reload),
      release: (x) => releaseButton(ctx.session.hub_id, x, canSign, reload),
    }),
    h("section", { class: "card", "aria-labelledby": "h-https" },
      h("h2", { id: "h-https" }, "HTTPS on your network"),
      httpsText(s),
      h("p", {}, "Install the hub's certificate authority once on each device. Before trusting it, compare its SHA-256 fingerprint with the one the hub printed on its console."),
      h("p", {}, h("a", { href: "/ca.crt", download: "camhub-ca.crt" }, "Download the certificate authority"), s.https_port ? ` (HTTPS port ${s.https_port})` : " (HTTPS is off on this hub)")));
  if (flash) focusResult(flash);
}
