"""A second owner device (a phone): it logs in with the password, makes its own non-extractable key,
and an already-enrolled browser approves it with a signed enroll-key decision (PROTOCOL.md §1, §3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.conftest import login, onboard, screenshot


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, timezone_id="UTC"
    )
    try:
        yield ctx
    finally:
        ctx.close()


def test_phone_is_enrolled_by_the_first_device_then_can_sign(make_hub: Any, context: Any, phone: Any) -> None:
    hub = make_hub(password=False)
    desktop = context.new_page()
    onboard(desktop, hub)

    mobile = phone.new_page()
    login(mobile, hub.url)
    mobile.goto(hub.url + "/#/devices")
    mobile.get_by_text("This browser has no owner key").wait_for()
    mobile.get_by_label("Name for this device").fill("phone")
    mobile.get_by_role("button", name="Make a key and ask to be enrolled").click()
    mobile.get_by_text("waiting for an enrolled device to approve it").wait_for()
    screenshot(mobile, "phone-enrol-request")
    # Not enrolled yet: the phone cannot sign, so its inbox says so.
    mobile.goto(hub.url + "/#/inbox")
    mobile.get_by_text("This device can look, but not approve").wait_for()

    desktop.goto(hub.url + "/#/devices")
    desktop.get_by_role("button", name="Approve (sign)").click()
    desktop.locator("#devices tbody tr").nth(1).wait_for()
    assert "phone" in desktop.locator("#devices").inner_text()

    mobile.goto(hub.url + "/#/devices")
    mobile.get_by_text("This browser is enrolled as “phone”").wait_for()
    # The phone signs: it revokes the desktop's key; the desktop can then no longer sign.
    mobile.locator("#devices tbody tr").filter(has_text="test browser").get_by_role(
        "button", name="Revoke"
    ).click()
    mobile.get_by_role("dialog").get_by_role("button", name="Sign and revoke").click()
    mobile.locator("#devices tbody tr").nth(1).wait_for(state="detached")
    desktop.goto(hub.url + "/#/inbox")
    desktop.get_by_text("This device can look, but not approve").wait_for()
