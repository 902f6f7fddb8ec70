"""Who watched what (PROTOCOL §5, issue 19): every view of footage is audited, the owner's included —
a live still (once a minute per camera and session, however often the tile polls), an MJPEG view's
start and end, a recorded segment (once per session, however many Range requests play it) — and
the owner reads them back through the audit API filtered to view entries."""

from __future__ import annotations

import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.web.conftest import CAMERAS, login
from tests.web.test_settings_api import Owner

VIEW_TYPES = "view.live.start,view.live.end,view.playback,view.snapshot,view.export"


def _get(owner: Owner, path: str, headers: dict[str, str] | None = None, read: int = -1) -> int:
    deadline = time.monotonic() + 20
    while True:
        req = urllib.request.Request(owner.url + path, headers=headers or {})
        try:
            with owner.opener.open(req, timeout=10) as res:
                res.read(read)
                return res.status
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:  # 503: the camera's first picture
                raise
            time.sleep(0.3)


def test_every_view_is_audited_once_per_view(
    make_hub: Any, sim_camera: dict[str, Any], tmp_path: Path, context: Any
) -> None:
    sim = sim_camera["camera"]
    extra = (
        CAMERAS
        + f'\n[[cameras]]\nid = "{sim}"\nname = "Sim"\nurl = "{sim_camera["rtsp_main"]}"\nrecord = false\n'
    )
    hub = make_hub(password=True, segments_at=time.time() - 3600, extra=extra)
    owner = Owner(hub.url)
    owner.login()

    for _ in range(3):  # the live tile's fallback polls: one entry
        assert _get(owner, f"/api/v1/owner/cameras/{sim}/snapshot.jpg") == 200
    assert _get(owner, f"/api/v1/owner/cameras/{sim}/mjpeg", read=2000) == 200

    conn = sqlite3.connect(f"file:{hub.data_dir / 'camhub.sqlite'}?mode=ro", uri=True)
    try:
        seg_id = conn.execute(
            "SELECT id FROM segments WHERE camera_id = 'front-door' ORDER BY start_at"
        ).fetchone()[0]
    finally:
        conn.close()
    for rng in ("bytes=0-99", "bytes=100-", None):  # a <video> element's Range requests: one entry
        assert _get(owner, f"/api/v1/owner/segments/{seg_id}.mp4", {"Range": rng} if rng else None) in (
            200,
            206,
        )

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        views = [e for e in hub.audit() if e["type"].startswith("view.")]
        if any(e["type"] == "view.live.end" for e in views):
            break
        time.sleep(0.2)
    kinds = [e["type"] for e in views]
    assert kinds.count("view.snapshot") == 1
    assert kinds.count("view.playback") == 1
    assert kinds.count("view.live.start") == 1 and kinds.count("view.live.end") == 1
    by = {e["type"]: e for e in views}
    assert (
        by["view.snapshot"]["data"] == {"camera": sim, "who": "owner"}
        and by["view.snapshot"]["actor"] == "owner"
    )
    play = by["view.playback"]["data"]
    assert (play["camera"], play["segment"], play["who"]) == ("front-door", seg_id, "owner") and play["start"]
    assert by["view.live.start"]["data"]["via"] == "mjpeg"
    assert by["view.live.end"]["data"]["session"] == by["view.live.start"]["data"]["session"]

    # The owner's page reads exactly these through the audit API (each with its inclusion proof).
    status, body = owner.call("GET", f"/api/v1/owner/audit/entries?types={VIEW_TYPES}&limit=50")
    assert status == 200
    assert sorted(e["entry"].split('"type":"')[1].split('"')[0] for e in body["entries"]) == sorted(kinds)
    assert all(e["inclusion_proof"] is not None for e in body["entries"])

    # The "who watched what" page lists them, filterable by camera.
    page = context.new_page()
    login(page, hub.url)
    page.goto(hub.url + "/#/views")
    page.get_by_role("heading", name="Who watched what").wait_for()
    table = page.locator("#views")
    table.get_by_text("looked at live stills").wait_for()
    assert table.get_by_text("played the recording").count() == 1
    assert table.locator("tbody tr").count() == len(kinds)
    page.get_by_label("Camera").select_option(sim)
    assert table.locator("tbody tr").count() == 3  # the still and the MJPEG view's start and end
    page.get_by_label("Person").select_option("owner")
    assert page.locator("#views tbody tr").count() == 3
