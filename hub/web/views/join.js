// Accepting a household invite (PROTOCOL §1.2): the owner shared /#/join/<code>; the invited person
// chooses a password here and is logged in as a member. The code stays in the #fragment, so it never
// appears in a request line or a Referer; it is sent once, in the body of POST /api/v1/members/join.

import * as api from "../lib/api.js";
import { h, notice, replace } from "../lib/dom.js";
import { sentence } from "../lib/words.js";

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
      const text = err.code === "bad_invite_code"
        ? "This invite link is wrong, already used or expired. Ask the owner for a new one."
        : err.code === "rate_limited" ? `Too many tries. ${err.detail}` : sentence(err);
      replace(status, notice(text, "error"));
    }
  });
  replace(root, h("section", { class: "card narrow" }, h("h1", {}, "Join the household"), form));
  form.elements.password.focus();
}
