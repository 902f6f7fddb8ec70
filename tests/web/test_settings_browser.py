"""Settings in the browser: a camera found over mDNS is added from its card, goes online, gets its own
retention and is removed; camhub.toml cameras are read-only; bad input names the field."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

from tests.web.conftest import CAMERAS, login, screenshot

# Browse mDNS on loopback only (tests talk to 127.0.0.1 alone); the hub need not announce itself.
DISCOVERY = 'enabled = true\nadvertise = false\ninterfaces = ["127.0.0.1"]'


def _reload_until(page: Any, locator: Any, what: str, timeout: float = 30) -> None:
    """The settings page renders once: reload it until `locator` shows up (mDNS, camera status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.reload()
        page.get_by_role("heading", name="Settings").wait_for()
        if locator.count():
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"never saw {what}")


def test_add_a_discovered_camera_change_its_retention_and_remove_it(
    make_hub: Any, context: Any, sim_camera_mdns: dict[str, Any]
) -> None:
    sim = sim_camera_mdns
    hub = make_hub(password=True, extra=CAMERAS, discovery=DISCOVERY)
    parts = urlsplit(sim["rtsp_main"])
    bare_url = parts._replace(netloc=f"{parts.hostname}:{parts.port}").geturl()
    page = context.new_page()
    login(page, hub.url)
    page.goto(hub.url + "/#/settings")
    card = page.locator(f"div.discovered[data-rtsp-url='{bare_url}']")
    _reload_until(page, card, "the simulated camera in 'Found on your network'")

    # camhub.toml cameras are read-only.
    file_row = page.locator("#cameras tr[data-camera='front-door']")
    file_row.get_by_text("camhub.toml (read-only)").wait_for()
    assert file_row.get_by_role("button", name="Remove").count() == 0

    # "Add" fills the form from what the camera announced; the owner adds the credentials.
    card.get_by_role("button", name=f"Add {sim['camera']}").click()
    form = page.locator("#add-camera")
    assert form.get_by_label("RTSP URL").input_value() == bare_url
    assert form.get_by_label("Camera id").input_value() == sim["camera"]
    form.get_by_label("Username").fill(parts.username or "")
    form.get_by_label("Password").fill(parts.password or "")
    form.get_by_label("Motion detection").uncheck()
    # Sound is off unless the owner ticks it, and the page says why.
    assert not form.get_by_label("Record sound").is_checked()
    note = page.locator("#audio-note")
    assert "regulated" in note.inner_text() and "GDPR" in note.inner_text()
    # Bad input: the hub's validator (the config file's) names the field, and the page marks it.
    form.get_by_label("Keep footage (days)").fill("-2")
    form.get_by_role("button", name="Add camera").click()
    # In words, naming the field by its label (not "bad_setting: retention_days").
    form.get_by_text(re.compile(r"Not added: Keep footage \(days\): must be greater than 0")).wait_for()
    assert form.get_by_label("Keep footage (days)").get_attribute("aria-invalid") == "true"
    form.get_by_label("Keep footage (days)").fill("5")
    form.get_by_role("button", name="Add camera").click()
    page.get_by_text(f"Camera {sim['camera']} added.").wait_for()
    # The camera it found is now one the hub pulls: no second "Add" for it.
    card.get_by_text(f"already added as {sim['camera']}").wait_for()
    assert card.get_by_role("button", name=f"Add {sim['camera']}").count() == 0

    row = page.locator(f"#cameras tr[data-camera='{sim['camera']}']")
    online = row.locator(".state .ok")
    _reload_until(page, online, "the added camera online")
    assert row.get_by_label(f"Keep footage of {sim['camera']} (days)").input_value() == "5"

    # Its own retention.
    row.get_by_label(f"Keep footage of {sim['camera']} (days)").fill("2.5")
    row.get_by_role("button", name="Save").click()
    page.get_by_text(f"Retention of {sim['camera']} saved.").wait_for()
    assert row.get_by_label(f"Keep footage of {sim['camera']} (days)").input_value() == "2.5"
    sound = row.get_by_label(f"Record sound from {sim['camera']}")
    assert not sound.is_checked()
    sound.check()
    page.get_by_text(f"Sound from {sim['camera']} is recorded from now on.").wait_for()
    assert row.get_by_label(f"Record sound from {sim['camera']}").is_checked()
    screenshot(page, "settings", full_page=True)

    # And it can be removed again (after a confirmation).
    row.get_by_role("button", name="Remove").click()
    page.get_by_role("dialog").get_by_role("button", name="Remove camera").click()
    page.get_by_text(f"Camera {sim['camera']} removed.").wait_for()
    assert row.count() == 0

    changes = [e["data"] for e in hub.audit() if e["type"] == "settings.changed"]
    assert [c["change"] for c in changes] == [
        "camera.added",
        "camera.edited",
        "camera.edited",
        "camera.removed",
    ]
    assert changes[0]["camera"] == sim["camera"] and changes[0]["credentials"] is True
    assert changes[1]["set"] == {"retention_days": "2.5"}
    assert changes[2]["set"] == {"audio": True}
