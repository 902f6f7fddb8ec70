"""The owner signs exactly what the screen shows (issue 13's consent bug).

A request card once let the owner untick a camera, read "Will send Town PD: Front door from … to …",
press "Approve as asked" and sign an approval for both cameras. Here, for every way to edit the
answer (cameras, start, end, validity, downloads, sound, livestream length) and every button that signs
(Approve as asked / Approve what is shown, Decline), the JWS the browser posts to /api/v1/decisions
is intercepted, its signature checked against this browser's own public key, and its payload
compared with what the summary and the confirmation said. The browser runs in New York time against
a hub on UTC, as the owner who found the bug did.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.web.conftest import onboard, wait_ready
from tests.web.test_consent_inbox import _agency, _utc

NY = ZoneInfo("America/New_York")
DAY = 86400

PUBLIC_KEY_JS = """() => new Promise((resolve, reject) => {
  const open = indexedDB.open("camhub", 1);
  open.onsuccess = () => {
    const get = open.result.transaction("keys").objectStore("keys").get("owner");
    get.onsuccess = () => resolve(get.result.publicJwk);
    get.onerror = () => reject(get.error);
  };
  open.onerror = () => reject(open.error);
})"""


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _clock(ts: float, seconds: bool = True) -> str:
    """The local clock as Intl en-US writes it: "6:04:05 PM"."""
    d = dt.datetime.fromtimestamp(ts, NY)
    return f"{d.hour % 12 or 12}:{d:%M}{':' + format(d, '%S') if seconds else ''} {d:%p}"


def _day(ts: float) -> str:
    d = dt.datetime.fromtimestamp(ts, NY)
    return f"{d:%a}, {d:%b} {d.day}"


def _time_input(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, NY).strftime("%H:%M:%S")


def _text(locator: Any) -> str:
    # ICU may put a narrow no-break space before AM/PM; compare with plain spaces.
    return locator.inner_text().replace("\u202f", " ").replace("\xa0", " ")


class Decisions:
    """Every JWS the page posts to /api/v1/decisions: verified, decoded, then aborted or let through."""

    def __init__(self, page: Any, public_jwk: dict[str, str]) -> None:
        self.key = Ed25519PublicKey.from_public_bytes(_b64url(public_jwk["x"]))
        self.posted: list[dict[str, Any]] = []
        self.let_through = False
        page.route("**/api/v1/decisions", self._handle)

    def _handle(self, route: Any) -> None:
        compact = route.request.post_data
        header, payload, signature = compact.split(".")
        self.key.verify(_b64url(signature), f"{header}.{payload}".encode())  # raises if not this browser's
        self.posted.append(json.loads(_b64url(payload)))
        if self.let_through:
            route.continue_()
        else:
            route.abort()  # nothing reaches the hub: the same request can be answered again

    def take(self, page: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while not self.posted:
            assert time.monotonic() < deadline, "the page posted no decision"
            page.wait_for_timeout(50)
        assert len(self.posted) == 1, self.posted
        return self.posted.pop()


def _add_agency(page: Any, hub: Any, tmp_path: Path, name: str) -> dict[str, Any]:
    ident = _agency("keygen", str(tmp_path / "agency"))
    page.goto(hub.url + "/#/agencies")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Public signing key").fill(json.dumps(ident["sig_jwk"]))
    page.get_by_label("Encryption key for deliveries").fill(ident["recipient"])
    page.get_by_role("button", name="Add agency (sign)").click()
    page.locator("#agencies tbody tr").filter(has_text=name).wait_for()
    return ident


def _ask(hub: Any, tmp_path: Path, *args: str) -> dict[str, Any]:
    return _agency("request", "--url", hub.url, "--key", str(tmp_path / "agency"), "--contact", "Desk", *args)


@pytest.fixture
def ny_context(browser: Any) -> Any:
    ctx = browser.new_context(
        viewport={"width": 1280, "height": 900}, timezone_id="America/New_York", locale="en-US"
    )
    ctx.set_default_timeout(60_000)
    errors: list[str] = []
    ctx.on("weberror", lambda e: errors.append(str(e.error)))
    try:
        yield ctx
    finally:
        ctx.close()
    assert not errors, errors


def test_every_edit_and_button_signs_exactly_what_the_summary_shows(
    make_hub: Any, ny_context: Any, tmp_path: Path
) -> None:
    t0 = float(int(time.time()) - 3600)
    hub = make_hub(password=False, segments_at=t0)  # front-door recorded; garage configured, not recorded
    page = ny_context.new_page()
    onboard(page, hub)
    ident = _add_agency(page, hub, tmp_path, "Town PD")
    lo, hi = t0 - 10, t0 + 80
    asked = _ask(hub, tmp_path, "--camera", "front-door", "--camera", "garage", "--start", _utc(lo), "--end", _utc(hi),
                 "--case-id", "2026-1142", "--reason", "Package theft", "--legal-basis", "warrant", "--reference", "W-88")  # fmt: skip
    decisions = Decisions(page, page.evaluate(PUBLIC_KEY_JS))

    page.goto(hub.url + "/#/inbox")
    wait_ready(page, "inbox")
    card = page.locator(f"article[data-request-id='{asked['id']}']")
    summary = card.locator("p.summary")
    approve = card.locator("button.approve")
    # Times carry their zone and the UTC time beside them.
    assert f"{_clock(lo)} – {_clock(hi)} E" in _text(card.locator("p.asks"))
    assert "UTC" in _text(card.locator("p.asks"))

    def sign(expect_title: str, confirm: str = "Sign and approve") -> tuple[dict[str, Any], str]:
        dialog = page.get_by_role("dialog")
        dialog.wait_for()
        assert expect_title in dialog.inner_text()
        shown = _text(dialog)
        dialog.get_by_role("button", name=confirm).click()
        payload = decisions.take(page)
        card.locator(".status .notice.error").wait_for()  # aborted: the page says it was not accepted
        return payload, shown

    def check(payload: dict[str, Any], shown: str, cameras: list[str], start: float, end: float,
              valid_s: int, fetches: int, audio: bool = False) -> None:  # fmt: skip
        now = time.time()
        assert payload["decision"] == "approve"
        assert payload["scope"] == {
            "kind": "clip",
            "cameras": cameras,
            "start": _utc(start),
            "end": _utc(end),
            "live_max_seconds": None,
            "audio": audio,
        }
        assert payload["max_fetches"] == fetches
        assert (payload["request_id"], payload["recipient"]) == (asked["id"], ident["keyid"])
        not_after = dt.datetime.fromisoformat(payload["not_after"].replace("Z", "+00:00")).timestamp()
        assert abs(not_after - (now + valid_s)) < 120
        # The summary under the form and the confirmation say the same thing as the payload.
        said = _text(summary)
        names = {"front-door": "Front door", "garage": "Garage"}
        for text in (said, shown):
            for cam, name in names.items():
                assert (name in text) == (cam in cameras), (cam, text)
            assert f"{_clock(start)} – {_clock(end)} E" in text, text
        assert f"{fetches} download" in said and f"Downloads allowed\n{fetches}" in shown
        assert _clock(not_after, seconds=False) in shown  # "valid until <that time>"
        # Sound: the confirmation's yes/no is the signed scope.audio, and the summary says it too.
        assert f"Audio\n{'yes' if audio else 'no'}:" in shown, shown
        assert ("(with sound)" if audio else "(video only, no sound)") in said, said

    def edit() -> None:
        if card.get_by_role("button", name="Change what is sent").get_attribute("aria-expanded") != "true":
            card.get_by_role("button", name="Change what is sent").click()

    def undo() -> None:
        card.get_by_role("button", name="Undo changes").click()
        assert approve.inner_text() == "Approve as asked"

    # 1. Nothing edited: "Approve as asked" signs the asked scope.
    assert approve.inner_text() == "Approve as asked"
    approve.click()
    check(*sign("Approve and send to Town PD"), ["front-door", "garage"], lo, hi, 7 * DAY, 3)

    # 2. Cameras: untick Garage. "as asked" is gone; the button signs what is shown.
    edit()
    card.get_by_label("Garage").uncheck()
    assert approve.inner_text() == "Approve what is shown"
    assert card.get_by_role("button", name="Approve as asked").count() == 0
    approve.click()
    check(*sign("Approve and send"), ["front-door"], lo, hi, 7 * DAY, 3)
    undo()

    # 3. Start.
    edit()
    card.get_by_label("From").fill(_time_input(t0 + 1))
    assert approve.inner_text() == "Approve what is shown"
    approve.click()
    check(*sign("Approve and send"), ["front-door", "garage"], t0 + 1, hi, 7 * DAY, 3)
    undo()

    # 4. End.
    card.get_by_label("To").fill(_time_input(t0 + 4))
    approve.click()
    check(*sign("Approve and send"), ["front-door", "garage"], lo, t0 + 4, 7 * DAY, 3)
    undo()

    # 5. Validity (not part of the scope: the label stays "as asked", the payload changes).
    card.get_by_label("Approval valid for").select_option(label="1 day")
    assert "valid for 1 day" in _text(summary)
    approve.click()
    check(*sign("Approve and send"), ["front-door", "garage"], lo, hi, DAY, 3)
    undo()

    # 6. Downloads.
    card.get_by_label("Downloads allowed").fill("5")
    assert "5 downloads allowed" in _text(summary)
    approve.click()
    check(*sign("Approve and send"), ["front-door", "garage"], lo, hi, 7 * DAY, 5)
    undo()

    # 7. Sound: off unless ticked; ticked, the scope differs from what was asked and says audio.
    edit()
    assert not card.get_by_label("Include sound").is_checked()
    card.get_by_label("Include sound").check()
    assert approve.inner_text() == "Approve what is shown"
    approve.click()
    check(*sign("Approve and send"), ["front-door", "garage"], lo, hi, 7 * DAY, 3, audio=True)
    undo()
    assert not card.get_by_label("Include sound").is_checked()

    # A cancelled confirmation posts nothing.
    approve.click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    page.wait_for_timeout(300)
    assert decisions.posted == []

    # 8. Decline asks too, and signs a decline without a scope.
    card.get_by_role("button", name="Decline").click()
    payload, shown = sign("Decline the request of Town PD", confirm="Sign and decline")
    assert payload["decision"] == "decline" and "scope" not in payload
    assert payload["request_id"] == asked["id"]

    # 9. All edits at once, and this time the hub gets it: the approval it stores (and builds clips
    # from) is the one the summary showed: Front door only, 1 s to 4 s, 1 day, 2 downloads, sound.
    edit()
    card.get_by_label("Garage").uncheck()
    card.get_by_label("From").fill(_time_input(t0 + 1))
    card.get_by_label("To").fill(_time_input(t0 + 4))
    card.get_by_label("Approval valid for").select_option(label="1 day")
    card.get_by_label("Downloads allowed").fill("2")
    card.get_by_label("Include sound").check()
    decisions.let_through = True
    approve.click()
    dialog = page.get_by_role("dialog")
    shown = _text(dialog)
    dialog.get_by_role("button", name="Sign and approve").click()
    payload = decisions.take(page)
    flash = page.locator("#inbox-flash")
    flash.wait_for()
    assert flash.evaluate("el => el === document.activeElement")  # focus moves to the result
    assert "Garage" not in shown and "Garage" not in flash.inner_text()
    assert "Audio\nyes:" in shown and payload["scope"]["audio"] is True
    (grant,) = page.request.get(hub.url + "/api/v1/owner/grants").json()["grants"]
    assert (grant["cameras"], grant["start_at"], grant["end_at"], grant["max_fetches"], grant["audio"]) == (
        ["front-door"],
        t0 + 1,
        t0 + 4,
        2,
        True,
    )
    assert abs(grant["not_after"] - (time.time() + DAY)) < 120
    assert payload["scope"]["cameras"] == ["front-door"]
    # The agency gets one clip, of Front door.
    deadline = time.monotonic() + 30
    while (
        status := _agency("status", "--url", hub.url, "--key", str(tmp_path / "agency"), "--", asked["id"])
    )["status"] != "fulfilled":
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert len(status["deliveries"]) == 1


def test_a_livestream_request_signs_the_length_shown(make_hub: Any, ny_context: Any, tmp_path: Path) -> None:
    hub = make_hub(password=False)
    page = ny_context.new_page()
    onboard(page, hub)
    _add_agency(page, hub, tmp_path, "County Sheriff")
    asked = _ask(hub, tmp_path, "--camera", "front-door", "--live-max-seconds", "600", "--case-id", "2026-7",
                 "--reason", "Ongoing incident", "--legal-basis", "exigent")  # fmt: skip
    decisions = Decisions(page, page.evaluate(PUBLIC_KEY_JS))
    page.goto(hub.url + "/#/inbox")
    wait_ready(page, "inbox")
    card = page.locator(f"article[data-request-id='{asked['id']}']")
    assert "Urgent" in card.inner_text()  # an emergency is marked, and listed first
    card.get_by_role("button", name="Change what is sent").click()
    card.get_by_label("Livestream up to (seconds)").fill("90")
    assert "up to 1 min 30 s" in card.locator("p.summary").inner_text()
    card.locator("button.approve").click()
    dialog = page.get_by_role("dialog")
    assert "up to 1 min 30 s" in dialog.inner_text()
    assert "Audio\nno:" in _text(dialog)
    dialog.get_by_role("button", name="Sign and approve").click()
    payload = decisions.take(page)
    assert payload["scope"] == {
        "kind": "live",
        "cameras": ["front-door"],
        "start": None,
        "end": None,
        "live_max_seconds": 90,
        "audio": False,
    }
    assert "max_fetches" not in payload  # downloads mean nothing for a livestream: not asked, not signed


def test_a_range_across_midnight_names_both_days(make_hub: Any, ny_context: Any, tmp_path: Path) -> None:
    hub = make_hub(password=False)
    page = ny_context.new_page()
    onboard(page, hub)
    _add_agency(page, hub, tmp_path, "Town PD")
    # The last New York midnight at least an hour ago; the agency asks 23:50 to 00:20 around it.
    ny_now = dt.datetime.now(NY) - dt.timedelta(hours=1)
    midnight = dt.datetime(ny_now.year, ny_now.month, ny_now.day, tzinfo=NY).timestamp()
    lo, hi = midnight - 600, midnight + 1200
    asked = _ask(hub, tmp_path, "--camera", "front-door", "--start", _utc(lo), "--end", _utc(hi), "--case-id", "2026-9",
                 "--reason", "Noise", "--legal-basis", "consent")  # fmt: skip
    decisions = Decisions(page, page.evaluate(PUBLIC_KEY_JS))
    page.goto(hub.url + "/#/inbox")
    wait_ready(page, "inbox")
    card = page.locator(f"article[data-request-id='{asked['id']}']")
    asks = _text(card.locator("p.asks"))
    assert f"{_day(lo)}, {_clock(lo, seconds=False)} – {_day(hi)}, {_clock(hi, seconds=False)} E" in asks, (
        asks
    )
    card.get_by_role("button", name="Change what is sent").click()
    assert card.get_by_label(f"From ({_day(lo)})").count() == 1
    assert card.get_by_label(f"To ({_day(hi)})").count() == 1
    # 00:05 can only be after midnight inside this range: the field says which day it now means.
    card.get_by_label("From").fill(_time_input(midnight + 300))
    card.get_by_label(f"From ({_day(hi)})").wait_for()
    card.locator("button.approve").click()
    page.get_by_role("dialog").get_by_role("button", name="Sign and approve").click()
    payload = decisions.take(page)
    assert (payload["scope"]["start"], payload["scope"]["end"]) == (_utc(midnight + 300), _utc(hi))


def test_new_requests_show_in_the_title_and_are_announced(
    make_hub: Any, ny_context: Any, tmp_path: Path
) -> None:
    """The owner is told without reloading: the tab title counts the waiting requests, screen readers
    hear of each new one (aria-live), an emergency is announced as urgent and barred at the top."""
    hub = make_hub(password=False)
    page = ny_context.new_page()
    onboard(page, hub)
    _add_agency(page, hub, tmp_path, "Town PD")
    page.goto(hub.url + "/#/live")
    wait_ready(page, "live")
    assert page.title() == "Live · camhub"
    _ask(hub, tmp_path, "--camera", "front-door", "--start", _utc(time.time() - 600), "--end", _utc(time.time() - 300),
         "--case-id", "2026-21", "--reason", "Theft", "--legal-basis", "consent")  # fmt: skip
    page.wait_for_function("() => document.title === '(1) Live · camhub'", timeout=40_000)
    page.wait_for_function(
        "() => document.getElementById('announce').textContent === 'New request for footage from Town PD (case 2026-21).'"
    )
    assert page.locator("#announce").get_attribute("aria-live") == "polite"
    _ask(hub, tmp_path, "--camera", "front-door", "--live-max-seconds", "60", "--case-id", "2026-22",
         "--reason", "Missing person", "--legal-basis", "exigent")  # fmt: skip
    page.wait_for_function("() => document.title === '(2) Live · camhub'", timeout=40_000)
    page.wait_for_function(
        "() => document.getElementById('announce-urgent').textContent.startsWith('Urgent: a new emergency request from Town PD')"
    )
    bar = page.locator("#urgent")
    bar.get_by_text("says it is an emergency").wait_for()
    bar.get_by_role("link", name="Answer it").click()
    wait_ready(page, "inbox")
    assert bar.is_hidden()  # the inbox itself lists it first, marked urgent
    assert "Urgent" in page.locator("section[aria-labelledby='h-open'] article").first.inner_text()
    assert page.title() == "(2) Requests · camhub"
