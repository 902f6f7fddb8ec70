"""The page router (hub/web/app.js show()): a page still loading when the owner moves on must neither
draw over the page they moved to nor leave what it started running."""

from __future__ import annotations

import time
from typing import Any

from tests.web.conftest import login, wait_ready


def test_a_page_that_finishes_loading_after_the_owner_moved_on_stays_out_of_sight(
    make_hub: Any, context: Any
) -> None:
    hub = make_hub()
    page = context.new_page()
    # Live (the first page after login) waits for the camera list: hold that one answer back.
    held: list[Any] = []

    def hold_first(route: Any) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/api/v1/owner/cameras", hold_first)
    login(page, hub.url)
    deadline = time.monotonic() + 30
    while not held:
        assert time.monotonic() < deadline, "Live never asked for the camera list"
        page.wait_for_timeout(50)
    # The owner opens the audit log before Live has drawn anything.
    page.evaluate("location.hash = '#/audit'")
    wait_ready(page, "audit")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if r.url.endswith("/api/v1/owner/cameras") else None)
    with page.expect_response(lambda r: r.url.endswith("/api/v1/owner/cameras")):
        held[0].continue_()  # Live's camera list arrives now, late
    # Live's status poll asks every 2 s (hub/web/views/live.js STATUS_MS) once it has drawn; a Live
    # whose cleanup was lost would keep asking from behind the audit page.
    page.wait_for_timeout(4_500)
    assert page.locator("#main h1").first.inner_text() == "Audit log"
    assert page.locator("#main .grid.live").count() == 0
    assert page.locator("main").get_attribute("data-ready") == "audit"
    assert asked == [], asked
    assert page.locator("#audit tbody tr").count() >= 1
