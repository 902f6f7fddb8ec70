"""Passkey approvals in the browser (PROTOCOL §3.1, issue 18): Debian's Chromium with a CDP virtual
authenticator (ctap2, internal transport, resident keys, user verification) enrols a passkey from an
enrolled browser, then approves, revokes, declines and revokes a device with it. Before each
signature the page shows the whole decision: the authenticator's own prompt shows none of it.

WebAuthn needs a secure context and an rpId that is a domain: the hub is opened as
http://localhost:PORT (a secure context) with `[hub] passkey_rp_id = "localhost"`.
The refusals (replay, another payload, no UV, clone) are server-level: tests/consent/test_passkeys.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.web.conftest import login, onboard
from tests.web.test_consent_inbox import _agency, _utc

VIRTUAL_AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
}


def _passkey_hub(make_hub: Any, t0: float) -> Any:
    hub = make_hub(password=False, segments_at=t0, hub_keys='passkey_rp_id = "localhost"')
    # Same daemon, reached by name: "localhost" is a secure context and a valid rpId; 127.0.0.1 is not.
    return SimpleNamespace(daemon=hub.daemon, url=hub.url.replace("127.0.0.1", "localhost"), web=hub)


def _accepted(hub: Any, kind: str) -> dict[str, Any]:
    entries = [
        e for e in hub.web.audit() if e["type"] == "decision.accepted" and e["data"]["decision"] == kind
    ]
    assert entries, f"no accepted {kind}"
    return entries[-1]


def _pair_with_passkey(page: Any, url: str, pairing_code: str | None) -> None:
    """Onboarding with the pairing code and a passkey instead of a key in this browser."""
    page.goto(url + "/")
    page.get_by_label("Pairing code").fill(pairing_code or "")
    page.get_by_label("Name for this device").fill("phone")
    page.get_by_label("Password for this hub").fill("correct horse battery")
    page.get_by_label("Password again").fill("correct horse battery")
    page.get_by_label("Use a passkey instead").check()
    page.get_by_role("button", name="Pair this browser").click()
    page.wait_for_function("() => !document.getElementById('nav').hidden", timeout=30_000)


def test_enrol_approve_revoke_decline_and_revoke_a_device_with_a_passkey(
    make_hub: Any, context: Any, tmp_path: Path
) -> None:
    t0 = float(int(time.time()) - 3600)
    hub = _passkey_hub(make_hub, t0)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": VIRTUAL_AUTHENTICATOR})
    onboard(page, hub)

    # Enrol a passkey from this (enrolled) browser: its own key signs the enroll-key.
    page.goto(hub.url + "/#/devices")
    page.get_by_label("Name for the passkey").fill("my phone")
    page.get_by_role("button", name="Add a passkey (sign)").click()
    page.get_by_text("Added the passkey “my phone”").wait_for()
    page.locator("#devices tbody tr").filter(has_text="my phone (passkey)").wait_for()
    creds = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]})[
        "credentials"
    ]
    assert len(creds) == 1 and creds[0]["rpId"] == "localhost"
    enrolled = [e for e in hub.web.audit() if e["type"] == "key.enrolled" and e["data"].get("rp_id")]
    assert len(enrolled) == 1 and enrolled[0]["data"]["via"] == "enroll-key"
    passkey_kid = enrolled[0]["data"]["kid"]

    # From here the passkey signs: adding the agency ...
    ident = _agency("keygen", str(tmp_path / "agency"))
    page.goto(hub.url + "/#/agencies")
    page.get_by_label("Name").fill("Springfield PD")
    page.get_by_label("Public signing key").fill(json.dumps(ident["sig_jwk"]))
    page.get_by_label("Encryption key for deliveries").fill(ident["recipient"])
    page.get_by_role("button", name="Add agency (sign)").click()
    page.locator("#agencies tbody tr").filter(has_text="Springfield PD").wait_for()
    assert _accepted(hub, "add-agency")["actor"] == f"owner:{passkey_kid}"

    # ... and approving. The confirmation shows who, which cameras, what range, how long, how many
    # downloads, and says the passkey's prompt will show none of it.
    asked = _agency(
        "request", "--url", hub.web.url, "--key", str(tmp_path / "agency"), "--camera", "front-door",
        "--start", _utc(t0 - 10), "--end", _utc(t0 + 80), "--case-id", "2026-000200",
        "--reason", "Package theft reported", "--legal-basis", "consent", "--contact", "Det. J. Rivera",
    )  # fmt: skip
    page.goto(hub.url + "/#/inbox")
    card = page.locator(f"article[data-request-id='{asked['id']}']")
    card.get_by_role("button", name="Approve as asked").click()
    dialog = page.get_by_role("dialog")
    text = dialog.inner_text()
    for shown in ("Springfield PD", "2026-000200", "Front door", "Approval valid", "Downloads allowed", "3",
                  "fingerprint, face or PIN", "shows nothing of this decision"):  # fmt: skip
        assert shown in text, (shown, text)
    counter_before = creds[0]["signCount"]
    dialog.get_by_role("button", name="Sign and approve").click()
    page.locator("#inbox-flash").filter(has_text="signed with your passkey").wait_for()
    approval = _accepted(hub, "approve")
    assert approval["actor"] == f"owner:{passkey_kid}" and approval["data"]["webauthn"]["kid"] == passkey_kid
    assert "jws" not in approval["data"]
    creds = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]})[
        "credentials"
    ]
    assert creds[0]["signCount"] > counter_before  # the authenticator really signed
    # The owner's history reads the passkey decision's payload like a JWS's.
    listed = page.request.get(hub.url + "/api/v1/owner/requests").json()["requests"]
    history = next(r for r in listed if r["id"] == asked["id"])["history"]
    assert history["approvals"][0]["scope"]["cameras"] == ["front-door"]

    # Revoke the approval with the passkey, after a confirmation that names it.
    row = page.locator("#grants tbody tr").filter(has_text="2026-000200")
    row.get_by_role("button", name="Revoke").click()
    dialog = page.get_by_role("dialog")
    assert "Front door" in dialog.inner_text() and "fingerprint, face or PIN" in dialog.inner_text()
    dialog.get_by_role("button", name="Sign and revoke").click()
    row.wait_for(state="detached", timeout=10_000)
    assert _accepted(hub, "revoke")["actor"] == f"owner:{passkey_kid}"

    # Decline another request with the passkey.
    second = _agency(
        "request", "--url", hub.web.url, "--key", str(tmp_path / "agency"), "--camera", "front-door",
        "--start", _utc(t0), "--end", _utc(t0 + 30), "--case-id", "2026-000201",
        "--reason", "Canvassing", "--legal-basis", "consent", "--contact", "Det. J. Rivera",
    )  # fmt: skip
    page.reload()  # already on #/inbox: a goto to the same hash would not redraw it
    page.locator(f"article[data-request-id='{second['id']}']").get_by_role("button", name="Decline").click()
    dialog = page.get_by_role("dialog")
    assert "2026-000201" in dialog.inner_text() and "Front door" in dialog.inner_text()
    dialog.get_by_role("button", name="Sign and decline").click()
    page.locator("#inbox-flash").filter(
        has_text="Declined the request of Springfield PD (case 2026-000201)"
    ).wait_for()
    assert _accepted(hub, "decline")["actor"] == f"owner:{passkey_kid}"

    # Revoke a device with the passkey: the passkey revokes itself, after the dialog lists what goes
    # with it (the agency it added); this browser then signs with its own key again.
    page.goto(hub.url + "/#/devices")
    page.locator("#devices tbody tr").filter(has_text="my phone (passkey)").get_by_role(
        "button", name="Revoke"
    ).click()
    dialog = page.get_by_role("dialog")
    assert "Springfield PD" in dialog.inner_text()
    dialog.get_by_role("button", name="Sign and revoke all of this").click()
    page.get_by_text("Revoked “my phone”").wait_for()
    revoked = [e for e in hub.web.audit() if e["type"] == "key.revoked"][-1]
    assert revoked["actor"] == f"owner:{passkey_kid}" and revoked["data"]["keys_revoked"] == [passkey_kid]
    assert page.locator("#devices tbody tr").filter(has_text="(passkey)").count() == 0


def test_pair_with_a_passkey_and_the_pairing_code_then_approve(
    make_hub: Any, context: Any, tmp_path: Path
) -> None:
    """The first owner key can be a passkey: pairing code + passkey, the passkey signs the password
    proof, and the page then approves with it (this browser holds no key of its own); a forgotten
    password is reset with the passkey."""
    t0 = float(int(time.time()) - 3600)
    hub = _passkey_hub(make_hub, t0)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": VIRTUAL_AUTHENTICATOR})
    _pair_with_passkey(page, hub.url, hub.daemon.pairing_code)
    enrolled = [e for e in hub.web.audit() if e["type"] == "key.enrolled"]
    assert (
        len(enrolled) == 1
        and enrolled[0]["data"]["via"] == "pairing_code"
        and enrolled[0]["data"]["rp_id"] == "localhost"
    )
    kid = enrolled[0]["data"]["kid"]
    assert [e["data"]["kid"] for e in hub.web.audit() if e["type"] == "owner.password_set"] == [kid]
    has_browser_key = page.evaluate(
        """() => new Promise((resolve) => { const o = indexedDB.open("camhub", 1);
             o.onupgradeneeded = () => o.result.createObjectStore("keys");
             o.onsuccess = () => { const g = o.result.transaction("keys").objectStore("keys").get("owner");
               g.onsuccess = () => resolve(!!g.result); }; })"""
    )
    assert has_browser_key is False

    ident = _agency("keygen", str(tmp_path / "agency"))
    page.goto(hub.url + "/#/agencies")
    page.get_by_label("Name").fill("Springfield PD")
    page.get_by_label("Public signing key").fill(json.dumps(ident["sig_jwk"]))
    page.get_by_label("Encryption key for deliveries").fill(ident["recipient"])
    page.get_by_role("button", name="Add agency (sign)").click()
    page.locator("#agencies tbody tr").filter(has_text="Springfield PD").wait_for()
    asked = _agency(
        "request", "--url", hub.web.url, "--key", str(tmp_path / "agency"), "--camera", "front-door",
        "--start", _utc(t0 - 10), "--end", _utc(t0 + 80), "--case-id", "2026-000300",
        "--reason", "Package theft reported", "--legal-basis", "consent", "--contact", "Det. J. Rivera",
    )  # fmt: skip
    page.goto(hub.url + "/#/inbox")
    page.locator(f"article[data-request-id='{asked['id']}']").get_by_role(
        "button", name="Approve as asked"
    ).click()
    page.get_by_role("dialog").get_by_role("button", name="Sign and approve").click()
    page.locator("#inbox-flash").filter(has_text="signed with your passkey").wait_for()
    assert _accepted(hub, "approve")["actor"] == f"owner:{kid}"

    # A forgotten password: this browser holds no key of its own, but the passkey it enrolled
    # signs the proof for a new one; then the new password logs in.
    context.clear_cookies()
    page.goto(hub.url + "/")
    page.reload()
    page.get_by_text("Forgot the password? Your passkey can set a new one.").click()
    page.get_by_label("Password for this hub").fill("a brand new passphrase")
    page.get_by_label("Password again").fill("a brand new passphrase")
    page.get_by_role("button", name="Set password with the passkey").click()
    page.wait_for_function("() => !document.getElementById('nav').hidden", timeout=30_000)
    assert [e["data"]["kid"] for e in hub.web.audit() if e["type"] == "owner.password_set"] == [kid, kid]
    context.clear_cookies()
    login(page, hub.url, "a brand new passphrase")


def test_a_passkey_only_owner_confirms_an_unsynced_clock(make_hub: Any, context: Any) -> None:
    """PROTOCOL §6: on a box that has no network time yet, an owner paired with a passkey alone (no
    key in this browser) confirms the hub's clock from Settings with it; before, that route took a
    JWS only and such an owner could sign nothing until the box found network time."""
    web = make_hub(password=False, trust_clock=False, hub_keys='passkey_rp_id = "localhost"')
    url = web.url.replace("127.0.0.1", "localhost")
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": VIRTUAL_AUTHENTICATOR})
    _pair_with_passkey(page, url, web.daemon.pairing_code)
    kid = next(e["data"]["kid"] for e in web.audit() if e["type"] == "key.enrolled")

    page.goto(url + "/#/settings")
    page.get_by_role("heading", name="The hub's clock is not confirmed").wait_for()
    page.get_by_role("button", name="Confirm the hub's clock (sign)").click()
    # Confirmed: the page reloads without the section.
    page.get_by_role("heading", name="The hub's clock is not confirmed").wait_for(
        state="detached", timeout=30_000
    )
    confirmed = [e for e in web.audit() if e["type"] == "clock.confirmed"]
    assert [e["actor"] for e in confirmed] == [f"owner:{kid}"]
