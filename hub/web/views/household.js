// Household (PROTOCOL §1.2, issue 19): the owner invites people to watch chosen cameras — live and/or
// recordings per camera — changes what they may watch, and removes them. A member never sees the
// inbox, agencies, settings or the audit log, and can sign nothing. Every view of theirs is in
// "Who watched what" with their name.

import * as api from "../lib/api.js";
import { cardTable, confirmDialog, focusResult, h, notice, replace } from "../lib/dom.js";
import { fmtUnix } from "../lib/time.js";
import { sentence } from "../lib/words.js";

const KINDS = [["live", "Live"], ["recordings", "Recordings"]];

// One checkbox per camera and kind; `prefix` keeps ids unique on the page.
function rightsFieldset(prefix, cameras, rights, legend) {
  const boxes = [];
  const rows = cameras.map((c) => h("div", {},
    h("span", {}, c.name || c.id),
    KINDS.map(([kind, label]) => {
      const id = `${prefix}-${c.id}-${kind}`;
      const box = h("input", { type: "checkbox", id, checked: !!rights?.[c.id]?.[kind], dataset: { camera: c.id, kind } });
      boxes.push(box);
      return h("label", { class: "check", for: id }, box, ` ${label} of ${c.name || c.id}`);
    })));
  const read = () => {
    const out = {};
    for (const b of boxes) {
      out[b.dataset.camera] = out[b.dataset.camera] || { live: false, recordings: false };
      out[b.dataset.camera][b.dataset.kind] = b.checked;
    }
    return out;
  };
  return { el: h("fieldset", {}, h("legend", {}, legend), rows), read };
}

export async function render(root, ctx, flash = null) {
  const [{ members }, { cameras }] = await Promise.all([api.get("/api/v1/owner/members"), api.get("/api/v1/owner/cameras")]);
  const status = h("div", { class: "status", "aria-live": "polite" }, flash ? notice(flash, "ok") : null);
  const reload = (message) => render(root, ctx, message);
  const fail = (what, err) => {
    const msg = notice(`${what}: ${sentence(err)}`, "error");
    replace(status, msg);
    focusResult(msg);
  };

  // Inviting: a name, rights per camera, then a one-time link to hand over (shown once).
  const nameIn = h("input", { id: "hh-name", maxlength: "64", required: true, autocomplete: "off" });
  const newRights = rightsFieldset("hh-new", cameras, {}, "May watch");
  const invited = h("div", { id: "hh-invite" });
  const inviteForm = h("form", { class: "stack" },
    h("label", { for: "hh-name" }, "Name (they log in with it)"), nameIn, newRights.el,
    h("button", { type: "submit" }, "Invite"), invited);
  inviteForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const made = await api.post("/api/v1/owner/members", { name: nameIn.value.trim(), rights: newRights.read() });
      const link = `${location.origin}${made.link}`;
      await render(root, ctx, `Invited ${made.name}.`);
      const box = document.getElementById("hh-invite");
      replace(box, notice(`Give ${made.name} this link; it works once, until ${fmtUnix(made.expires_at)}:`, "ok"),
        h("p", {}, h("code", { id: "hh-link" }, link)));
      focusResult(box.firstChild);
    } catch (err) {
      fail("Not invited", err);
    }
  });

  const rows = members.map((m) => {
    const edit = rightsFieldset(`hh-${m.id}`, cameras, m.rights, `What ${m.name} may watch`);
    const save = h("button", { type: "button", class: "secondary", onclick: async () => {
      try {
        await api.patch(`/api/v1/owner/members/${encodeURIComponent(m.id)}`, { rights: edit.read() });
        reload(`Saved what ${m.name} may watch. A live view they may no longer watch ends at once.`);
      } catch (err) {
        fail("Not saved", err);
      }
    } }, `Save ${m.name}'s cameras`);
    const remove = h("button", { type: "button", class: "danger", onclick: async () => {
      const sure = await confirmDialog({ title: `Remove ${m.name}?`, body: h("p", {}, "They are logged out at once, any live view of theirs ends, and their invite link no longer works."), confirm: `Remove ${m.name}`, danger: true });
      if (!sure) return;
      try {
        await api.del(`/api/v1/owner/members/${encodeURIComponent(m.id)}`);
        reload(`Removed ${m.name}.`);
      } catch (err) {
        fail("Not removed", err);
      }
    } }, `Remove ${m.name}`);
    return {
      attrs: { dataset: { member: m.id } },
      cells: [m.name, m.joined ? "joined" : `invited, link valid until ${fmtUnix(m.invite_expires_at)}`, h("div", {}, edit.el, save), remove],
    };
  });

  replace(root,
    h("h1", {}, "Household"),
    status,
    h("section", { class: "card", "aria-labelledby": "h-hh-members" },
      h("h2", { id: "h-hh-members" }, "People who may watch"),
      h("p", { class: "muted" }, "Household members see only Live and Recordings of the cameras you pick here. They never see requests, agencies, settings or the audit log, and cannot approve anything. What they watch is listed under “Who watched”."),
      rows.length ? cardTable({ id: "members" }, ["Name", "State", "Cameras", "Remove"], rows) : h("p", { class: "muted" }, "Nobody yet.")),
    h("section", { class: "card", "aria-labelledby": "h-hh-invite" },
      h("h2", { id: "h-hh-invite" }, "Invite someone"), inviteForm));
}
