"""Privacy masks set over the owner API (PROTOCOL §4.1): validated like the file, for camhub.toml's
cameras too, audited, kept across a restart, and shown on the approval screen's masked preview."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tests.conftest import start_daemon
from tests.web.test_settings_api import Owner

WINDOW = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.6], [0.1, 0.6]]


def _jpeg(owner: Owner, path: str, timeout: float = 20) -> tuple[np.ndarray, dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        req = urllib.request.Request(owner.url + path)
        try:
            with owner.opener.open(req, timeout=10) as res:
                data, headers = res.read(), dict(res.headers)
            picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
            return picture, headers
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:  # 503: the camera's first picture
                raise
            time.sleep(0.3)


def _inside(picture: np.ndarray, poly: list[list[float]], margin: int = 4) -> np.ndarray:
    h, w = picture.shape
    x0, y0 = round(poly[0][0] * w) + margin, round(poly[0][1] * h) + margin
    x1, y1 = round(poly[2][0] * w) - margin, round(poly[2][1] * h) - margin
    return picture[y0:y1, x0:x1]


def test_privacy_masks_from_settings_preview_audit_restart(
    make_hub: Any, sim_camera: dict[str, Any], tmp_path: Path
) -> None:
    camera = sim_camera["camera"]
    extra = f'\n[[cameras]]\nid = "{camera}"\nname = "Front door"\nurl = "{sim_camera["rtsp_main"]}"\nrecord = false\n'
    hub = make_hub(password=True, extra=extra)
    path = f"/api/v1/owner/settings/privacy/{camera}"
    assert Owner(hub.url).call("PUT", path, {"masks": [WINDOW]})[0] == 401
    owner = Owner(hub.url)
    owner.login()
    assert owner.call("PUT", path, {"masks": [WINDOW]}, csrf=False)[0] == 403

    status, body = owner.call("GET", "/api/v1/owner/settings/privacy")
    assert status == 200
    assert body["cameras"] == [{"camera": camera, "masks": [], "owner_views": False, "configured_in": "file"}]

    # The file's rules, and the field named.
    for bad in ([[[0, 0], [1, 1]]], [[[0, 0], [2, 0], [0, 1]]], "x", [WINDOW] * 17):
        status, body = owner.call("PUT", path, {"masks": bad})
        assert (status, body["error"], body["field"]) == (400, "bad_setting", "masks"), body
    assert owner.call("PUT", path, {"owner_views": "yes"})[1]["field"] == "owner_views"
    assert owner.call("PUT", "/api/v1/owner/settings/privacy/nope", {"masks": [WINDOW]})[0] == 404

    # Before any mask the preview is the picture; after, the window is black there and only there.
    plain, _ = _jpeg(owner, f"/api/v1/owner/cameras/{camera}/privacy-preview.jpg")
    assert _inside(plain, WINDOW).mean() > 40
    status, body = owner.call("PUT", path, {"masks": [WINDOW]})
    assert status == 200, body
    assert body == {"camera": camera, "masks": [WINDOW], "owner_views": False, "configured_in": "settings"}
    masked, headers = _jpeg(owner, f"/api/v1/owner/cameras/{camera}/privacy-preview.jpg")
    assert headers["X-Privacy-Masks"] == "1" and headers["Cache-Control"] == "no-store"
    assert _inside(masked, WINDOW).max() <= 8
    h, w = masked.shape
    assert masked[int(h * 0.75) :, int(w * 0.6) :].mean() > 40  # the rest is the picture
    # The owner's own still stays whole until owner_views is on.
    own, _ = _jpeg(owner, f"/api/v1/owner/cameras/{camera}/snapshot.jpg")
    assert _inside(own, WINDOW).mean() > 40
    assert owner.call("PUT", path, {"owner_views": True})[0] == 200
    own, _ = _jpeg(owner, f"/api/v1/owner/cameras/{camera}/snapshot.jpg")
    assert _inside(own, WINDOW).max() <= 8

    # Kept across a restart.
    hub.daemon.stop()
    restarted = start_daemon(hub.config, tmp_path / "restarted.log")
    try:
        restarted.wait_ready()
        owner = Owner(restarted.url)
        owner.login()
        entry = owner.call("GET", "/api/v1/owner/settings/privacy")[1]["cameras"][0]
        assert entry == {
            "camera": camera,
            "masks": [WINDOW],
            "owner_views": True,
            "configured_in": "settings",
        }
        # null goes back to camhub.toml's (none).
        status, body = owner.call("PUT", path, {"masks": None})
        assert (status, body["masks"], body["configured_in"]) == (200, [], "file")
    finally:
        restarted.stop()

    entries = [e for e in hub.audit() if e["type"] == "settings.changed"]
    assert [e["data"]["change"] for e in entries] == ["privacy", "privacy", "privacy"]
    first = entries[0]["data"]
    assert first["camera"] == camera and first["masks"] == 1 and first["owner_views"] is False
    assert first["points"] == [[[f"{x:g}", f"{y:g}"] for x, y in WINDOW]]
    assert entries[1]["data"]["owner_views"] is True
    assert entries[2]["data"]["masks"] == 0 and entries[2]["data"]["configured_in"] == "file"


def test_owner_draws_a_mask_in_settings(make_hub: Any, context: Any, sim_camera: dict[str, Any]) -> None:
    from tests.web.conftest import login

    camera = sim_camera["camera"]
    extra = f'\n[[cameras]]\nid = "{camera}"\nname = "Front door"\nurl = "{sim_camera["rtsp_main"]}"\nrecord = false\n'
    hub = make_hub(password=True, extra=extra)
    page = context.new_page()
    login(page, hub.url)
    page.goto(hub.url + "/#/settings")
    page.locator("#privacy > summary").click()  # closed while no camera has masks
    editor = page.locator(f".privacy-camera[data-camera='{camera}']")
    editor.wait_for()
    editor.locator("summary").click()
    canvas = editor.locator("canvas")
    canvas.wait_for()
    page.wait_for_function(
        "() => { const c = document.querySelector('.privacy-camera canvas'); return c && c.getContext('2d').getImageData(0, 0, 1, 1).data[3] > 0; }"
    )  # the still is drawn
    box = canvas.bounding_box()
    assert box is not None
    # Four clicks: a quarter of the picture, top left.
    for fx, fy in ((0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)):
        canvas.click(position={"x": fx * box["width"], "y": fy * box["height"]})
    editor.get_by_role("button", name="Close shape").click()
    editor.get_by_role("button", name="Save masks").click()
    page.get_by_text("Privacy masks of Front door saved.").wait_for()

    owner = Owner(hub.url)
    owner.login()
    entry = owner.call("GET", "/api/v1/owner/settings/privacy")[1]["cameras"][0]
    assert entry["configured_in"] == "settings" and len(entry["masks"]) == 1
    xs = [x for x, _ in entry["masks"][0]]
    ys = [y for _, y in entry["masks"][0]]
    assert max(abs(a - b) for a, b in zip(sorted(xs), [0, 0, 0.5, 0.5], strict=True)) <= 0.01
    assert max(abs(a - b) for a, b in zip(sorted(ys), [0, 0, 0.5, 0.5], strict=True)) <= 0.01
    assert [e["data"]["change"] for e in hub.audit() if e["type"] == "settings.changed"] == ["privacy"]
