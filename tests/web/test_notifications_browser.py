"""Notifications in the browser (PROTOCOL §8): the page is an installable app (a manifest, a service
worker at /ui/sw.js), the Notifications page switches events per camera through the hub (audited),
and the service worker turns a push message into a notification.

What the browser part covers, plainly: Chromium registers the service worker and receives a push
message that Chrome DevTools delivers straight to it (`ServiceWorker.deliverPushMessage`); it does
NOT subscribe through a push service, because Chromium's only push service is Google's (outside
127.0.0.1). The subscription route and the encrypted, VAPID-signed delivery are covered against a
local push service in tests/notify/test_push.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.web.conftest import CAMERAS, login


def _poll(page: Any, script: str, timeout: float = 15.0) -> Any:
    """Evaluate an async `script` until it returns something (wait_for_function does not await)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(script)
        if value:
            return value
        page.wait_for_timeout(100)
    raise AssertionError(f"nothing from {script} within {timeout} s")


def test_service_worker_manifest_settings_and_a_push_message(make_hub: Any, context: Any) -> None:
    hub = make_hub(password=True, extra=CAMERAS)
    context.grant_permissions(["notifications"], origin=hub.url)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    registrations: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
    cdp.send("ServiceWorker.enable")
    login(page, hub.url)

    # Installable: the manifest is linked and served as a web app manifest.
    manifest_href = page.locator("link[rel=manifest]").get_attribute("href")
    assert manifest_href == "/ui/manifest.webmanifest"
    r = page.request.get(hub.url + manifest_href)
    assert r.ok and r.headers["content-type"].startswith("application/manifest+json")
    assert json.loads(r.body())["display"] == "standalone"
    # Its scope is /ui/ (where it is served), so it does not control the page at "/": wait for it to
    # be active through its registration (`navigator.serviceWorker.ready` is for controlled pages).
    scope = _poll(
        page,
        """async () => {
            const reg = await navigator.serviceWorker.getRegistration("/ui/");
            return reg && reg.active ? reg.scope : null;
        }""",
    )
    assert scope == hub.url + "/ui/"

    # The Notifications page: motion is opt-in per camera; the change goes through the hub.
    page.goto(hub.url + "/#/notifications")
    section = page.locator("#notifications")
    section.get_by_role("heading", name="Channels and events").wait_for()
    section.get_by_text("never what a camera saw").wait_for()
    section.get_by_label("Front door").check()
    page.get_by_text("Notification settings saved.").wait_for()
    assert page.locator("#notifications").get_by_label("Front door").is_checked()
    changes = [e["data"] for e in hub.audit() if e["type"] == "settings.changed"]
    assert changes[-1]["change"] == "notifications" and changes[-1]["set"] == {
        "motion_cameras": ["front-door"]
    }
    assert page.locator("#push-subscribe").is_visible()

    # A push message delivered to the service worker becomes a notification that opens the inbox.
    deadline = time.monotonic() + 10
    while (
        not any(r.get("scopeURL") == hub.url + "/ui/" for r in registrations) and time.monotonic() < deadline
    ):
        page.wait_for_timeout(100)
    reg = next(r for r in registrations if r.get("scopeURL") == hub.url + "/ui/")
    message = {"v": 1, "event": "request", "title": "A request is waiting", "body": "", "url": "/#/inbox"}
    script = """async () => {
        const list = await (await navigator.serviceWorker.getRegistration("/ui/")).getNotifications();
        return list.length ? list.map((n) => ({ title: n.title, body: n.body, url: n.data.url })) : null;
    }"""
    # DevTools' deliverPushMessage is fire-and-forget: twice in CI (load 7+) the message reached no
    # worker and nothing ever showed. The notification carries a tag, so delivering again replaces
    # rather than adds; a bounded retry keeps the test about the worker, not about DevTools timing.
    shown = None
    for _attempt in range(4):
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": hub.url + "/", "registrationId": reg["registrationId"], "data": json.dumps(message)},
        )
        try:
            shown = _poll(page, script, timeout=6.0)
            break
        except AssertionError:
            continue
    assert shown == [{"title": "A request is waiting", "body": "", "url": "/#/inbox"}]
