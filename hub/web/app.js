// The owner's single page: decides between onboarding, login and the app, and routes by #hash.

import * as api from "./lib/api.js";
import { h, notice, replace } from "./lib/dom.js";
import { sentence } from "./lib/words.js";

const views = {
  live: () => import("./views/live.js"),
  timeline: () => import("./views/timeline.js"),
  events: () => import("./views/events.js"),
  inbox: () => import("./views/inbox.js"),
  agencies: () => import("./views/agencies.js"),
  devices: () => import("./views/devices.js"),
  settings: () => import("./views/settings.js"),
  notifications: () => import("./views/notifications.js"),
  audit: () => import("./views/audit.js"),
  views: () => import("./views/views.js"),
  household: () => import("./views/household.js"),
};
// What a household member may open (PROTOCOL §1.2): their cameras' live views and recordings. The
// hub refuses everything else to a member anyway (403 owner_only); this only keeps the menu honest.
const MEMBER_VIEWS = new Set(["live", "timeline"]);

const TITLES = { live: "Live", timeline: "Timeline", events: "Events", inbox: "Requests", agencies: "Agencies", devices: "Devices", settings: "Settings", notifications: "Notifications", audit: "Audit log", views: "Who watched what", household: "Household" };
// How often the page asks whether requests are waiting (a cheap route): the tab title, the menu
// badge and the screen-reader announcement follow within this time.
const WAITING_POLL_MS = 10_000;

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const top = document.getElementById("top");
const menu = document.getElementById("menu");
let cleanup = null;
let shown = 0; // counts show() calls: only the latest one may draw into #main
let session = null;
let badgeTimer = null;
let waitingCount = 0;
let urgentWaiting = [];
let knownWaiting = null; // ids already seen (null until the first answer: nothing to announce yet)

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

function runCleanup(fn) {
  try {
    fn();
  } catch (e) {
    console.error(e);
  }
}

async function show(loader, ctx, name) {
  const ticket = ++shown;
  if (cleanup) {
    runCleanup(cleanup);
    cleanup = null;
  }
  // Each page draws into its own element. A page still loading when the owner moves on (Live waits
  // for the camera list) then finishes into an element no longer on screen instead of over the next
  // page, and what it started (timers, live streams) is stopped as soon as it hands back its cleanup.
  const root = h("div", { class: "view" }, h("p", { class: "muted" }, "Loading…"));
  replace(main, root);
  delete main.dataset.ready;
  const stale = () => ticket !== shown;
  try {
    const mod = await loader();
    if (stale()) return;
    const result = await mod.render(root, ctx);
    if (stale()) {
      if (typeof result === "function") runCleanup(result);
      return;
    }
    if (typeof result === "function") cleanup = result;
    main.dataset.ready = name; // the page has drawn what it loaded (tests wait for this)
  } catch (err) {
    if (stale() || (err instanceof api.ApiError && err.status === 401)) return;
    replace(root, notice(`Could not load this page: ${sentence(err)}`, "error"));
  }
  main.focus({ preventScroll: true });
}

const isMember = () => session?.role === "member";

function currentRoute() {
  const name = (location.hash.replace(/^#\/?/, "").split("?")[0] || "live").split("/")[0];
  if (isMember() && !MEMBER_VIEWS.has(name)) return "live";
  return views[name] ? name : "live";
}

// An invite link (PROTOCOL §1.2) is /#/join/<code>: the code never reaches the hub in a URL.
function inviteCode() {
  const m = location.hash.match(/^#\/join\/([A-Za-z0-9_-]{16,64})$/);
  return m ? m[1] : null;
}

function markNav(route) {
  for (const a of nav.querySelectorAll("a")) {
    if (a.getAttribute("href") === `#/${route}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function setTitle() {
  const name = session?.authenticated ? TITLES[currentRoute()] : "Welcome";
  document.title = `${waitingCount ? `(${waitingCount}) ` : ""}${name} · camhub`;
}

function setMenu(open) {
  top.classList.toggle("open", open);
  menu.setAttribute("aria-expanded", String(open));
}

async function route() {
  if (!session?.authenticated) return;
  const name = currentRoute();
  markNav(name);
  setMenu(false);
  document.getElementById("where").textContent = TITLES[name];
  setTitle();
  showUrgent();
  await show(views[name], context(), name);
}

function context() {
  return { session, navigate: (hash) => (location.hash = hash), refreshBadge };
}

function say(text, urgent = false) {
  // Clearing first makes a repeated sentence count as a change, so it is read again.
  const el = document.getElementById(urgent ? "announce-urgent" : "announce");
  el.textContent = "";
  setTimeout(() => (el.textContent = text), 50);
}

// An emergency request waiting is said at the top of every page but the inbox (which lists it first).
function showUrgent() {
  const bar = document.getElementById("urgent");
  const urgent = session?.authenticated ? urgentWaiting : [];
  if (urgent.length && currentRoute() !== "inbox") {
    replace(bar, h("strong", {}, "Urgent: "), `${who(urgent[0])} says it is an emergency${urgent.length > 1 ? ` (and ${urgent.length - 1} more)` : ""}. `, h("a", { href: "#/inbox" }, "Answer it"));
    bar.hidden = false;
  } else {
    bar.hidden = true;
  }
}

const who = (w) => `${w.agency || "an agency"}${w.case_id ? ` (case ${w.case_id})` : ""}`;

async function refreshBadge() {
  let waiting;
  try {
    ({ waiting } = await api.get("/api/v1/owner/requests/waiting"));
  } catch {
    return; /* the badge is a convenience */
  }
  waitingCount = waiting.length;
  for (const id of ["inbox-count", "menu-count"]) {
    const badge = document.getElementById(id);
    badge.textContent = String(waitingCount);
    badge.hidden = waitingCount === 0;
    badge.setAttribute("aria-label", `${waitingCount} waiting`);
  }
  setTitle();
  const urgent = waiting.filter((w) => w.urgent);
  urgentWaiting = urgent;
  showUrgent();
  // Announce what is new since the last look (screen readers; the tab title says it to everyone).
  if (knownWaiting === null) {
    if (waiting.length) say(`${waiting.length} ${waiting.length === 1 ? "request for footage is" : "requests for footage are"} waiting for you.`, urgent.length > 0);
  } else {
    for (const w of waiting.filter((x) => !knownWaiting.has(x.id))) {
      say(w.urgent ? `Urgent: a new emergency request from ${who(w)}.` : `New request for footage from ${who(w)}.`, w.urgent);
    }
  }
  knownWaiting = new Set(waiting.map((w) => w.id));
}

export async function boot() {
  session = await api.get("/api/v1/session");
  document.getElementById("brand").textContent = `camhub · ${session.name}`;
  pinHub(session);
  if (!session.authenticated) {
    nav.hidden = true;
    menu.hidden = true;
    clearInterval(badgeTimer);
    waitingCount = 0;
    knownWaiting = null;
    urgentWaiting = [];
    showUrgent();
    document.getElementById("where").textContent = "";
    setTitle();
    const code = inviteCode();
    if (code) {
      await show(() => import("./views/join.js"), { session, code, onAuthenticated }, "join");
      return;
    }
    const loader = !session.owner_enrolled || !session.password_set ? () => import("./views/onboard.js") : () => import("./views/login.js");
    await show(loader, { session, onAuthenticated }, !session.owner_enrolled || !session.password_set ? "onboard" : "login");
    return;
  }
  api.setCsrf(session.csrf);
  nav.hidden = false;
  menu.hidden = false;
  // A household member's menu has only what they may open; an owner's has everything.
  for (const a of nav.querySelectorAll("a")) a.hidden = isMember() && !MEMBER_VIEWS.has(a.getAttribute("href").slice(2));
  clearInterval(badgeTimer);
  if (inviteCode()) location.hash = "#/live"; // an invite opened while logged in: nothing to join
  if (!isMember()) {
    refreshBadge();
    // New agency requests show up in the title, the menu badge and to screen readers without
    // reloading (the inbox itself is not re-rendered under the owner's hands while they answer).
    badgeTimer = setInterval(refreshBadge, WAITING_POLL_MS);
  }
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

menu.addEventListener("click", () => setMenu(!top.classList.contains("open")));
nav.addEventListener("click", (ev) => {
  if (ev.target.closest("a")) setMenu(false);
});
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && top.classList.contains("open")) {
    setMenu(false);
    menu.focus();
  }
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && session?.authenticated && !isMember()) refreshBadge();
});
window.addEventListener("hashchange", route);
boot().catch((err) => replace(main, notice(`The hub did not answer: ${err.message}`, "error")));

// The installable app's service worker (PROTOCOL §8.3): shows Web Push notifications. Browsers
// allow it only in a secure context (HTTPS, or http://localhost); elsewhere the page works without.
export const serviceWorker = "serviceWorker" in navigator && window.isSecureContext
  ? navigator.serviceWorker.register("/ui/sw.js", { scope: "/ui/" }).catch(() => null)
  : Promise.resolve(null);
