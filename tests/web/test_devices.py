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
    # Lineage (issue 12): the phone can never revoke the desktop that enrolled it; the page says why.
    row = mobile.locator("#devices tbody tr").filter(has_text="with the pairing code")
    assert row.get_by_role("button", name="Revoke").is_disabled()
    assert "cannot be revoked" in row.inner_text() or "cannot revoke it" in row.inner_text()
    # The desktop revokes the phone, after seeing what that takes with it; the phone can then no
    # longer sign.
    desktop.goto(hub.url + "/#/devices")
    desktop.locator("#devices tbody tr").filter(has_text="by test browser").get_by_role(
        "button", name="Revoke"
    ).click()
    dialog = desktop.get_by_role("dialog")
    dialog.get_by_text("no other device: it enrolled none").wait_for()
    dialog.get_by_role("button", name="Sign and revoke all of this").click()
    desktop.locator("#devices tbody tr").nth(1).wait_for(state="detached")
    mobile.goto(hub.url + "/#/inbox")
    mobile.get_by_text("This device can look, but not approve").wait_for()
