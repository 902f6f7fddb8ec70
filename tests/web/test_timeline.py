"""Timeline and playback: the day bar shows recorded spans and the gap; a click plays the segment."""

from __future__ import annotations

import time
from typing import Any

from tests.web.conftest import login, screenshot


def test_recorded_segment_plays_and_continues_across_segments(make_hub: Any, context: Any) -> None:
    # Recorded an hour ago, so "today" in the browser's zone almost surely holds it; the test
    # navigates with ?t=, which also selects the right day.
    start = time.time() - 3600
    hub = make_hub(segments_at=start)
    page = context.new_page()
    login(page, hub.url)
    page.goto(f"{hub.url}/#/timeline?camera=front-door&t={int(start) + 1}")
    page.wait_for_selector(".daybar .span")
    # Two runs around the gap.
    assert page.locator("#main > .view > .card .daybar:not(.zoom) .span").count() == 2
    assert page.locator("#main > .view > .card .daybar:not(.zoom) .gapmark").count() == 1
    assert page.locator("#tl-zoom .span").count() == 2  # the close-up hour shows them too
    # The requested moment starts playing in <video>, from the right segment.
    page.wait_for_function(
        "() => { const v = document.querySelector('#tl-video'); return v && v.currentTime > 0.3 && !v.paused && v.readyState >= 2; }",
        timeout=15_000,
    )
    first_id = page.eval_on_selector("#tl-video", "v => v.dataset.segment")
    assert first_id == "1"
    # Range requests work (the <video> element relies on them to seek).
    r = page.request.get(f"{hub.url}/api/v1/owner/segments/1.mp4", headers={"Range": "bytes=0-99"})
    assert r.status == 206 and r.headers["content-range"].startswith("bytes 0-99/") and len(r.body()) == 100
    assert r.headers["cache-control"] == "no-store"  # footage does not outlive the session in a cache
    # At the end of a segment the next one plays (scrubbing across segment boundaries).
    page.wait_for_function(
        "() => document.querySelector('#tl-video').dataset.segment === '2'", timeout=15_000
    )
    screenshot(page, "timeline")
    # A click in the close-up on the second run (after the gap) plays from there.
    zoom = page.locator("#tl-zoom")
    box = zoom.bounding_box()
    assert box is not None
    lo, hi = float(zoom.get_attribute("data-start") or 0), float(zoom.get_attribute("data-end") or 0)
    target = int(start) + 61  # inside segment 4 (runs 60-62 s after the first)
    zoom.click(position={"x": (target - lo) / (hi - lo) * box["width"], "y": box["height"] / 2})
    page.wait_for_function(
        "() => document.querySelector('#tl-video').dataset.segment === '4'", timeout=15_000
    )


def test_segment_media_needs_a_session(make_hub: Any, context: Any) -> None:
    hub = make_hub(segments_at=time.time() - 3600)
    r = context.request.get(f"{hub.url}/api/v1/owner/segments/1.mp4")
    assert r.status == 401
    assert r.json()["error"] == "no_session"
