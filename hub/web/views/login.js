// Password login (hub/api/session.py): rate limited on the hub; the cookie is HttpOnly. A household
// member who joined with a passkey in this browser logs in with it instead (PROTOCOL §1.2).

import * as api from "../lib/api.js";
import { h, notice, replace } from "../lib/dom.js";
import { sentence } from "../lib/words.js";
import { ownerKey } from "../lib/keys.js";
import { knownPasskeys, memberPasskeyFor, passkeysAvailable, signMemberLogin } from "../lib/passkey.js";

export async function render(root, ctx) {
  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "stack" },
    // Household members log in with the name the owner invited them under (PROTOCOL §1.2).
    h("label", { for: "member-name" }, "Your name (household members only; the owner leaves this empty)"),
    h("input", { id: "member-name", name: "member", type: "text", autocomplete: "username", maxlength: "64" }),
    h("label", { for: "password" }, "Password"),
    h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true }),
    h("button", { type: "submit" }, "Log in"),
    status,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const member = form.elements.member.value.trim();
      await api.post("/api/v1/session/login", member ? { member, password: form.elements.password.value } : { password: form.elements.password.value });
      await ctx.onAuthenticated();
    } catch (err) {
      const text = err.code === "rate_limited" ? `Too many tries. ${err.detail}` : sentence(err);
      replace(status, notice(text, "error"));
      form.elements.password.select();
    }
  });
  // "Log in with a passkey" appears once a member name is typed that joined with a passkey in this
  // browser (it remembers the member's id and kid; the hub does not tell them to a stranger).
  const passkeyButton = h("button", { type: "button", id: "login-passkey", hidden: true, onclick: async () => {
    const member = form.elements.member.value.trim();
    const known = memberPasskeyFor(member);
    if (!known) {
      replace(status, notice(`This browser has no passkey for “${member}”. Log in with your password, or from the device you joined with.`, "error"));
      return;
    }
    try {
      const passkey = await signMemberLogin(ctx.session.hub_id, ctx.session.passkey_rp_id, known);
      await api.post("/api/v1/session/login", { member, passkey });
      await ctx.onAuthenticated();
    } catch (err) {
      const text = err.code === "rate_limited" ? `Too many tries. ${err.detail}`
        : err.code === "bad_password" ? "The hub did not accept this passkey for that name." : sentence(err);
      replace(status, notice(text, "error"));
    }
  } }, "Log in with a passkey");
  const showPasskey = () => { passkeyButton.hidden = !passkeysAvailable() || !memberPasskeyFor(form.elements.member.value); };
  form.elements.member.addEventListener("input", showPasskey);
  form.insertBefore(passkeyButton, status);
  const key = await ownerKey();
  const withPasskey = !key?.enrolled && knownPasskeys().length > 0 && passkeysAvailable();
  const reset = key?.enrolled || withPasskey
    ? h("p", { class: "muted" }, h("a", { href: "#", id: "forgot", onclick: async (ev) => {
        ev.preventDefault();
        const mod = await import("./onboard.js");
        await mod.render(root, { ...ctx, session: { ...ctx.session, owner_enrolled: true } });
      } }, withPasskey ? "Forgot the password? Your passkey can set a new one." : "Forgot the password? This browser's key can set a new one."))
    : null;
  replace(root, h("section", { class: "card narrow" }, h("h1", {}, "Log in"), form, reset));
  form.elements.password.focus();
}
