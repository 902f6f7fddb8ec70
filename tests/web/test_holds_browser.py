"""Holds in Settings (PROTOCOL §3, §3.2): the owner signs a hold in the browser, sees it listed with who
asked and why, and releases it; both are signed decisions in the audit log."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import CAMERAS, onboard


def test_owner_signs_lists_and_releases_a_hold_in_settings(make_hub: Any, context: Any) -> None:
    hub = make_hub(password=False, extra=CAMERAS)
    page = context.new_page()
    onboard(page, hub)
    page.goto(hub.url + "/#/settings")
    page.get_by_text("Hold footage…").click()
    form = page.locator("#hold-form")
    form.get_by_label("Front door").check()
    form.get_by_label("Who asked").fill("Acme Insurance, claim 42")
    form.get_by_label("Why").fill("the dented car")
    form.get_by_role("button", name="Sign and hold").click()
    page.get_by_text("Footage held (hold").wait_for()
    row = page.locator("#holds tbody tr[data-reason='owner_hold']")
    row.wait_for()
    text = row.inner_text()
    assert "Acme Insurance, claim 42" in text and "the dented car" in text and "Front door" in text
    assert "test browser" in text  # the key that signed it
    row.get_by_role("button", name="Release").click()
    page.get_by_text("Hold released").wait_for()
    assert page.locator("#holds tbody tr[data-reason='owner_hold']").count() == 0
    types = [e["type"] for e in hub.audit()]
    assert "hold.placed" in types and "hold.released" in types
    placed = next(e for e in hub.audit() if e["type"] == "hold.placed")
    assert placed["data"]["asked_by"] == "Acme Insurance, claim 42" and placed["data"]["cameras"] == [
        "front-door"
    ]
