// Accepting a household invite (PROTOCOL §1.2): the owner shared /#/join/<code>; the invited person
// chooses a password here and is logged in as a member. The code stays in the #fragment, so it never
// appears in a request line or a Referer; it is sent once, in the body of POST /api/v1/members/join.
// Instead of a password the person may make a passkey (a login only, never an owner key): the page
// asks POST /api/v1/members/invite for the member's id, which the passkey's challenge is made from.

import * as api from "../lib/api.js";
import { h, notice, replace } from "../lib/dom.js";
import { sentence } from "../lib/words.js";
import { createMemberPasskey, passkeysAvailable, rememberMemberPasskey } from "../lib/passkey.js";

export async function render(root, ctx) {
  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "stack" },
    h("p", {}, "You were invited to watch some of this home's cameras. Choose a password (at least 10 characters); you will log in with it and the name the owner gave you."),
    h("label", { for: "join-password" }, "New password"),
    h("input", { id: "join-password", name: "password", type: "password", autocomplete: "new-password", minlength: "10", required: true }),
    h("label", { for: "join-again" }, "The same password again"),
    h("input", { id: "join-again", name: "again", type: "password", autocomplete: "new-password", minlength: "10", required: true }),
    h("button", { type: "submit" }, "Join"),
    status,
  );
  const failed = (err) => {
    const text = err.code === "bad_invite_code"
      ? "This invite link is wrong, already used or expired. Ask the owner for a new one."
      : err.code === "rate_limited" ? `Too many tries. ${err.detail}`
      : err.code === "passkey_registration_invalid" ? `The hub did not accept this passkey: ${sentence(err)}`
      : sentence(err);
    replace(status, notice(text, "error"));
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (form.elements.password.value !== form.elements.again.value) {
      replace(status, notice("The two passwords differ.", "error"));
      return;
    }
    try {
      await api.post("/api/v1/members/join", { code: ctx.code, password: form.elements.password.value });
      location.hash = "#/live";
      await ctx.onAuthenticated();
    } catch (err) {
      failed(err);
    }
  });
  const withPasskey = async () => {
    try {
      replace(status, notice("Your device now asks for your fingerprint, face or PIN to make the passkey.", "info"));
      const invited = await api.post("/api/v1/members/invite", { code: ctx.code });
      const passkey = await createMemberPasskey(ctx.session.hub_id, ctx.session.passkey_rp_id, invited.id, invited.name);
      await api.post("/api/v1/members/join", { code: ctx.code, passkey });
      // Remember which credential and kid log this name in (the login page needs them).
      const session = await api.get("/api/v1/session");
      if (session.member?.passkey) rememberMemberPasskey(session.member);
      location.hash = "#/live";
      await ctx.onAuthenticated();
    } catch (err) {
      failed(err);
    }
  };
  const passkeyPart = passkeysAvailable()
    ? h("div", { class: "stack" },
        h("p", {}, "Or log in with a passkey on this device (your fingerprint, face or PIN) and no password."),
        h("button", { type: "button", id: "join-passkey", onclick: withPasskey }, "Use a passkey instead"))
    : h("p", { class: "muted" }, "Passkeys are not available in this browser here; choose a password.");
  replace(root, h("section", { class: "card narrow" }, h("h1", {}, "Join the household"), form, passkeyPart));
  form.elements.password.focus();
}
