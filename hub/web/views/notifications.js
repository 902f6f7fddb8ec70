// Notifications (PROTOCOL §8): which channels and events notify, motion per camera,
// whether push texts carry details, this browser's push subscription, and each channel's counts
// (what was sent, what failed, what was dropped). Every change goes through the hub and is audited.

import * as api from "../lib/api.js";
import { focusResult, h, notice, replace } from "../lib/dom.js";
import { sentence } from "../lib/words.js";

const EVENTS = {
  request: "A request arrives",
  grant_used: "An approval is used (download, livestream)",
  doorbell: "Doorbell press",
  motion: "Motion (on the cameras ticked below)",
  camera_offline: "A camera is offline for a minute",
  owner_key: "An owner device is added or removed",
  clock: "The hub's clock is not synchronised",
};

function b64urlToBytes(s) {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

async function registration() {
  const { serviceWorker } = await import("../app.js");
  return serviceWorker;
}

async function subscribeHere(n, status, reload) {
  try {
    const reg = await registration();
    if (!reg || !("PushManager" in window)) throw new Error("this browser cannot receive push here (it needs HTTPS or an installed app)");
    if ((await Notification.requestPermission()) !== "granted") throw new Error("notifications are not allowed for this page");
    const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64urlToBytes(n.vapid_public_key) });
    await api.post("/api/v1/owner/push/subscriptions", { ...sub.toJSON(), name: navigator.userAgent.includes("Mobile") ? "phone" : "browser" });
    reload("This browser will be notified.");
  } catch (err) {
    replace(status, notice(`Not subscribed: ${err.message || sentence(err)}`, "error"));
  }
}

export async function render(root, ctx, message = null) {
  const [n, cams] = await Promise.all([api.get("/api/v1/owner/notifications"), api.get("/api/v1/owner/cameras")]);
  const reload = (msg) => render(root, ctx, msg);
  const flash = message ? notice(message, "ok") : null;
  replace(root, h("h1", {}, "Notifications"), flash, notificationsSection(n, cams.cameras, reload));
  if (flash) focusResult(flash);
}

function notificationsSection(n, cameras, reload) {
  const status = h("div", { "aria-live": "polite" });
  const save = async (body) => {
    try {
      await api.patch("/api/v1/owner/notifications", body);
      reload("Notification settings saved.");
    } catch (err) {
      replace(status, notice(`Not saved: ${sentence(err)}`, "error"));
    }
  };
  const box = (label, checked, onchange, attrs = {}) =>
    h("label", { class: "check" }, h("input", { type: "checkbox", checked, onchange, ...attrs }), ` ${label}`);
  const counts = (c) => c.configured
    ? `${c.connected === false ? "not connected; " : ""}${c.sent} sent, ${c.failed} failed attempts, ${c.dropped} dropped${c.queued ? `, ${c.queued} waiting` : ""}`
    : "not configured on this hub";
  return h("section", { class: "card", id: "notifications", "aria-labelledby": "h-notify" },
    h("h2", { id: "h-notify" }, "Channels and events"),
    h("p", { class: "muted" }, "Notifications say that something happened, never what a camera saw: no pictures or video are ever sent to Home Assistant or to a phone."),
    h("fieldset", {}, h("legend", {}, "Channels"),
      box(`Home Assistant (MQTT): ${counts(n.status.mqtt)}`, n.channels.mqtt, (e) => save({ channels: { mqtt: e.target.checked } }), { name: "channel-mqtt" }),
      box(`Push to browsers and phones: ${counts(n.status.push)}`, n.channels.push, (e) => save({ channels: { push: e.target.checked } }), { name: "channel-push" })),
    h("div", { id: "notify-events" },
      h("fieldset", {}, h("legend", {}, "Tell me when"),
        Object.entries(EVENTS).map(([key, label]) => box(label, n.events[key], (e) => save({ events: { [key]: e.target.checked } }), { name: `event-${key}` }))),
      h("fieldset", {}, h("legend", {}, "Motion notifications for"),
        cameras.length ? cameras.map((c) => box(c.name || c.id, n.motion_cameras.includes(c.id), (e) => {
          const set = new Set(n.motion_cameras);
          if (e.target.checked) set.add(c.id); else set.delete(c.id);
          save({ motion_cameras: [...set] });
        }, { name: `motion-${c.id}` })) : h("p", { class: "muted" }, "No cameras.")),
      box("Say which camera or what was asked in push texts (otherwise only “a request is waiting”)", n.details, (e) => save({ details: e.target.checked }), { name: "details" })),
    n.subscriptions.length
      ? h("ul", { "aria-label": "Browsers that get push notifications" }, n.subscriptions.map((s) => h("li", {}, `${s.name} (via ${s.origin}) `,
          h("button", { type: "button", class: "secondary", onclick: async () => {
            await api.del(`/api/v1/owner/push/subscriptions/${encodeURIComponent(s.id)}`);
            reload("That browser will not be notified any more.");
          } }, `Stop notifying ${s.name}`))))
      : h("p", { class: "muted" }, "No browser gets push notifications yet."),
    n.vapid_public_key
      ? h("button", { type: "button", id: "push-subscribe", onclick: () => subscribeHere(n, status, reload) }, "Notify this browser")
      : null,
    status);
}
