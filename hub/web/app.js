// The owner's single page: decides between onboarding, login and the app, and routes by #hash.

import * as api from "./lib/api.js";
import { h, notice, replace } from "./lib/dom.js";

const views = {
  live: () => import("./views/live.js"),
  timeline: () => import("./views/timeline.js"),
  events: () => import("./views/events.js"),
  inbox: () => import("./views/inbox.js"),
  agencies: () => import("./views/agencies.js"),
  devices: () => import("./views/devices.js"),
  settings: () => import("./views/settings.js"),
  audit: () => import("./views/audit.js"),
};

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let cleanup = null;
let session = null;
let badgeTimer = null;

function banner(text) {
  const el = document.getElementById("banner");
  if (!text) {
    el.hidden = true;
    return;
  }
  replace(el, text);
  el.hidden = false;
}

// Trust on first use of the hub's identity key: a different key on a later visit means a different
// box (or an attacker) answers at this address, and the owner should know before signing anything.
function pinHub(s) {
  const pinned = localStorage.getItem("camhub.hub_id");
  if (pinned && pinned !== s.hub_id) {
    banner(`Warning: this hub's identity changed (was ${pinned.slice(0, 12)}…, now ${s.hub_id.slice(0, 12)}…). Do not approve anything until you know why.`);
  } else {
    localStorage.setItem("camhub.hub_id", s.hub_id);
  }
}

async function show(loader, ctx) {
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      console.error(e);
    }
    cleanup = null;
  }
  replace(main, h("p", { class: "muted" }, "Loading…"));
  try {
    const mod = await loader();
    const result = await mod.render(main, ctx);
    if (typeof result === "function") cleanup = result;
  } catch (err) {
    if (err instanceof api.ApiError && err.status === 401) return;
    replace(main, notice(`Could not load this page: ${err.message}`, "error"));
  }
  main.focus({ preventScroll: true });
}

function currentRoute() {
  const name = (location.hash.replace(/^#\/?/, "").split("?")[0] || "live").split("/")[0];
  return views[name] ? name : "live";
}

function markNav(route) {
  for (const a of nav.querySelectorAll("a")) {
    if (a.getAttribute("href") === `#/${route}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function route() {
  if (!session?.authenticated) return;
  const name = currentRoute();
  markNav(name);
  document.title = `${name[0].toUpperCase()}${name.slice(1)} · camhub`;
  await show(views[name], context());
}

function context() {
  return { session, navigate: (hash) => (location.hash = hash), refreshBadge };
}

async function refreshBadge() {
  try {
    const { requests } = await api.get("/api/v1/owner/requests");
    const n = requests.filter((r) => r.state === "pending" && !r.expired).length;
    const badge = document.getElementById("inbox-count");
    badge.textContent = String(n);
    badge.hidden = n === 0;
    badge.setAttribute("aria-label", `${n} pending`);
  } catch {
    /* the badge is a convenience */
  }
}

export async function boot() {
  session = await api.get("/api/v1/session");
  document.getElementById("brand").textContent = `camhub · ${session.name}`;
  pinHub(session);
  if (!session.authenticated) {
    nav.hidden = true;
    const loader = !session.owner_enrolled || !session.password_set ? () => import("./views/onboard.js") : () => import("./views/login.js");
    await show(loader, { session, onAuthenticated });
    return;
  }
  api.setCsrf(session.csrf);
  nav.hidden = false;
  refreshBadge();
  // New agency requests show up in the menu badge without reloading (the inbox itself is not
  // re-rendered under the owner's hands while they fill in an answer).
  clearInterval(badgeTimer);
  badgeTimer = setInterval(refreshBadge, 30_000);
  if (!location.hash) location.hash = "#/live";
  await route();
}

async function onAuthenticated() {
  await boot();
}

api.setUnauthorizedHandler(() => {
  if (session?.authenticated) {
    session = null;
    boot();
  }
});

document.getElementById("logout").addEventListener("click", async () => {
  try {
    await api.post("/api/v1/session/logout", {});
  } finally {
    session = null;
    api.setCsrf(null);
    location.hash = "";
    await boot();
  }
});

window.addEventListener("hashchange", route);
boot().catch((err) => replace(main, notice(`The hub did not answer: ${err.message}`, "error")));
