"""Onboarding and the consent inbox, end to end: the browser's own key signs; the hub only verifies."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from camhub_protocol import jws
from camhub_protocol.keys import okp_public_jwk
from hub.agency_client import Agency, AgencyError
from tests.web.conftest import PASSWORD, onboard, screenshot

READ_KEY_JS = """() => new Promise((resolve, reject) => {
  const open = indexedDB.open("camhub", 1);
  open.onsuccess = () => {
    const get = open.result.transaction("keys").objectStore("keys").get("owner");
    get.onsuccess = async () => {
      const k = get.result;
      let exported = "refused";
      try { await crypto.subtle.exportKey("pkcs8", k.privateKey); exported = "EXPORTED"; } catch (e) {}
      resolve({kid: k.kid, extractable: k.privateKey.extractable, type: k.privateKey.algorithm.name, exported});
    };
    get.onerror = () => reject(get.error);
  };
  open.onerror = () => reject(open.error);
})"""


def _agency(*args: str) -> dict[str, Any]:
    # Request ids are random base64url and may start with "-": callers put them after "--".
    out = subprocess.run(
        [sys.executable, "-m", "hub.agency_client", *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def _utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_input(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%H:%M:%S")


def test_onboarding_makes_a_non_extractable_key_and_a_session(make_hub: Any, context: Any) -> None:
    hub = make_hub(password=False)
    page = context.new_page()
    page.goto(hub.url + "/")
    page.get_by_label("Pairing code").wait_for()
    screenshot(page, "onboarding")
    onboard(page, hub)
    key = page.evaluate(READ_KEY_JS)
    assert key == {"kid": key["kid"], "extractable": False, "type": "Ed25519", "exported": "refused"}
    page.goto(hub.url + "/#/devices")
    page.get_by_text("This browser is enrolled").wait_for()
    assert page.locator("#devices tbody tr").count() == 1
    # The only key's Revoke is disabled, and the page says why in words.
    row = page.locator("#devices tbody tr").first
    assert row.get_by_role("button", name="Revoke").is_disabled()
    row.get_by_text("The only device that can approve cannot be revoked").wait_for()
    screenshot(page, "devices")
    # The pairing code is single use: a well-formed enrolment (a real key, so it reaches the code and
    # owner checks instead of a 400 for the key) with the spent code is refused, audited, and enrols
    # nothing.
    since = len(hub.audit())
    another = okp_public_jwk(Ed25519PrivateKey.generate().public_key())
    r = page.request.post(
        hub.url + "/api/v1/owner/enroll",
        data=json.dumps({"pairing_code": hub.daemon.pairing_code, "public_jwk": another, "name": "x"}),
        headers={"Content-Type": "application/json"},
    )
    assert (r.status, r.json()["error"]) == (403, "bad_pairing_code"), r.text()
    assert [e["type"] for e in hub.audit()[since:]] == ["pairing.failed"]
    page.reload()
    page.get_by_text("This browser is enrolled").wait_for()
    assert page.locator("#devices tbody tr").count() == 1


def test_a_failed_pairing_says_why_and_takes_focus(make_hub: Any, context: Any) -> None:
    hub = make_hub(password=False)
    page = context.new_page()
    page.goto(hub.url + "/")
    page.get_by_label("Pairing code").fill("AAAA-AAAA")
    page.get_by_label("Password for this hub").fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Pair this browser").click()
    error = page.locator(".notice.error")
    error.get_by_text("That pairing code is wrong, already used or expired").wait_for()
    assert error.evaluate("el => el === document.activeElement")
    assert "bad_pairing_code" not in error.inner_text()


def test_request_approved_narrower_in_the_browser_and_fetched(
    make_hub: Any, context: Any, tmp_path: Path
) -> None:
    t0 = float(int(time.time()) - 3600)
    hub = make_hub(password=False, segments_at=t0)
    page = context.new_page()
    onboard(page, hub)

    # The owner adds the agency on the Agencies page (signed add-agency).
    ident = _agency("keygen", str(tmp_path / "agency"))
    page.goto(hub.url + "/#/agencies")
    page.get_by_label("Name").fill("Springfield PD")
    page.get_by_label("Public signing key").fill(json.dumps(ident["sig_jwk"]))
    page.get_by_label("Encryption key for deliveries").fill(ident["recipient"])
    page.get_by_role("button", name="Add agency (sign)").click()
    page.locator("#agencies tbody tr").filter(has_text="Springfield PD").wait_for()
    screenshot(page, "agencies")

    # The agency asks for 90 s around the footage.
    asked = _agency(
        "request", "--url", hub.url, "--key", str(tmp_path / "agency"), "--camera", "front-door",
        "--start", _utc(t0 - 10), "--end", _utc(t0 + 80), "--case-id", "2026-000123",
        "--reason", "Package theft reported", "--legal-basis", "consent", "--contact", "Det. J. Rivera",
    )  # fmt: skip
    request_id = asked["id"]

    page.goto(hub.url + "/#/inbox")
    card = page.locator(f"article[data-request-id='{request_id}']")
    card.wait_for()
    for text in ("Springfield PD", "2026-000123", "Package theft reported", "Your consent", "Front door"):
        assert text in card.inner_text()
    # A preview of what would leave, behind its button (videos load only when asked for).
    assert card.locator("video.preview-video").count() == 0
    card.get_by_role("button", name="Preview what would leave").click()
    assert card.locator("video.preview-video").count() == 1
    page.wait_for_function("() => document.querySelector('video.preview-video').readyState >= 2")
    screenshot(page, "inbox", full_page=True)

    # Narrower: 3 s of the first run only.
    start, end = t0 + 1, t0 + 4
    card.get_by_role("button", name="Change what is sent").click()
    card.get_by_label("From").fill(_time_input(start))
    card.get_by_label("To").fill(_time_input(end))
    card.get_by_text("about 3 seconds of recorded video").wait_for()  # the summary follows the narrowed range
    card.get_by_role("button", name="Approve what is shown").click()
    page.get_by_role("dialog").get_by_role("button", name="Sign and approve").click()
    page.locator("#inbox-flash").filter(has_text="Approved for Springfield PD (case 2026-000123)").wait_for()
    page.locator("#grants tbody tr").filter(has_text="2026-000123").wait_for(timeout=10_000)

    # The agency sees `fulfilled` once the delivery is built, and gets exactly the approved range.
    deadline = time.monotonic() + 30
    while (
        status := _agency("status", "--url", hub.url, "--key", str(tmp_path / "agency"), "--", request_id)
    )["status"] != "fulfilled":
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    fetched = _agency(
        "fetch", "--url", hub.url, "--key", str(tmp_path / "agency"), "--out", str(tmp_path / "out"),
        "--hub-id", hub.daemon.hub_id, "--", request_id,
    )  # fmt: skip
    assert [(f["camera"], f["start"], f["end"]) for f in fetched] == [("front-door", _utc(start), _utc(end))]
    assert "clip-front-door.mp4" in fetched[0]["files"]

    # A forged approval, signed by a key that is not this browser's but naming its kid, is refused,
    # even with a valid session and CSRF token.
    kid = page.evaluate(READ_KEY_JS)["kid"]
    forged_payload = {
        "v": 1, "hub": hub.daemon.hub_id, "request_id": request_id, "request_sha256": asked["request_sha256"],
        "decision": "approve",
        "scope": {"kind": "clip", "cameras": ["front-door"], "start": _utc(t0 - 10), "end": _utc(t0 + 80), "live_max_seconds": None},
        "recipient": ident["keyid"], "max_fetches": 3, "not_after": _utc(time.time() + 86400),
        "issued_at": _utc(time.time()), "jti": "forged-jti-0000000000",
    }  # fmt: skip
    forged = jws.sign(
        json.dumps(forged_payload).encode(), Ed25519PrivateKey.generate(), kid, "camhub-decision+jws"
    )
    token = page.request.get(hub.url + "/api/v1/session").json()["csrf"]
    r = page.request.post(
        hub.url + "/api/v1/decisions",
        data=forged,
        headers={"Content-Type": "application/jose", "X-CSRF-Token": token},
    )
    assert (r.status, r.json()["error"]) == (403, "jws_bad_signature")

    # Revoke from the grants list: the agency can no longer fetch.
    page.goto(hub.url + "/#/inbox")
    row = page.locator("#grants tbody tr").filter(has_text="2026-000123")
    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Sign and revoke").click()
    row.wait_for(state="detached", timeout=10_000)
    flash = page.locator("#inbox-flash").filter(has_text="Revoked the approval for Springfield PD")
    flash.wait_for()
    assert flash.evaluate("el => el === document.activeElement")  # focus moves to the result
    # A decline, by click: the agency still only sees "pending" (PROTOCOL §2.2), the owner sees it declined.
    second = _agency(
        "request", "--url", hub.url, "--key", str(tmp_path / "agency"), "--camera", "front-door",
        "--start", _utc(t0), "--end", _utc(t0 + 30), "--case-id", "2026-000124",
        "--reason", "Canvassing the street", "--legal-basis", "consent", "--contact", "Det. J. Rivera",
    )  # fmt: skip
    # Waiting, it holds its footage from retention; Settings lists the hold (issue 12).
    page.goto(hub.url + "/#/settings")
    hold = page.locator("#holds tbody tr").filter(has_text="Springfield PD")
    hold.get_by_text("while the request waits").wait_for()
    assert "Front door" in hold.inner_text()
    page.goto(hub.url + "/#/inbox")
    card = page.locator(f"article[data-request-id='{second['id']}']")
    card.get_by_role("button", name="Decline").click()
    page.get_by_role("dialog").get_by_role("button", name="Sign and decline").click()
    declined = page.locator("#inbox-flash").filter(
        has_text="Declined the request of Springfield PD (case 2026-000124)"
    )
    declined.wait_for()
    assert declined.evaluate("el => el === document.activeElement")
    # The decline released the hold.
    page.goto(hub.url + "/#/settings")
    page.get_by_text("No agency request is holding footage").wait_for()
    page.goto(hub.url + "/#/inbox")
    page.get_by_text("Show earlier requests").click()
    assert "declined" in page.locator(f"article[data-request-id='{second['id']}']").inner_text()
    assert (
        _agency("status", "--url", hub.url, "--key", str(tmp_path / "agency"), "--", second["id"])["status"]
        == "pending"
    )

    # The delivery URL the agency was given is refused at send time by the egress gate: 403
    # grant_revoked as a JSON error (no byte of the delivery), audited, and no egress recorded.
    agency = Agency(tmp_path / "agency", hub.url)
    since = len(hub.audit())
    with pytest.raises(AgencyError) as refused:
        agency._open("GET", status["deliveries"][0]["url"])
    assert refused.value.status == 403, refused.value
    assert refused.value.body == {"error": "grant_revoked", "detail": refused.value.body["detail"]}
    new = hub.audit()[since:]
    assert [e["data"]["code"] for e in new if e["type"] == "request.rejected"] == ["grant_revoked"], new
    assert not [e for e in new if e["type"].startswith("egress.")], new
    assert (
        _agency("status", "--url", hub.url, "--key", str(tmp_path / "agency"), "--", request_id)["status"]
        == "closed"
    )
