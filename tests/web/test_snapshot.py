"""The live view without WebRTC: stills of the live stream (snapshot.jpg, MJPEG), owner session only."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request
from typing import Any

from tests.web.conftest import PASSWORD, login, screenshot

OFFLINE_CAMERA = """
[[cameras]]
id = "garage"
name = "Garage"
url = "rtsp://127.0.0.1:9/garage"
record = false
"""

STILL_PIXELS_JS = """(sel) => {
  const img = document.querySelector(sel);
  const c = document.createElement("canvas");
  c.width = 64; c.height = 36;
  const g = c.getContext("2d");
  g.drawImage(img, 0, 0, 64, 36);
  return {src: img.src, width: img.naturalWidth, pixels: Array.from(g.getImageData(0, 0, 64, 36).data)};
}"""


def _hub(make_hub: Any, sim: dict[str, Any]) -> Any:
    camera = f"""
[[cameras]]
id = "{sim["camera"]}"
name = "Front door (sim)"
url = "{sim["rtsp_main"]}"
record = false
"""
    return make_hub(password=True, extra=camera + OFFLINE_CAMERA, hub_keys='ice_addresses = ["127.0.0.1"]')


def test_without_webrtc_the_live_tile_shows_stills_that_change(
    make_hub: Any, browser: Any, sim_camera: dict[str, Any]
) -> None:
    hub = _hub(make_hub, sim_camera)
    ctx = browser.new_context(viewport={"width": 1100, "height": 760}, timezone_id="UTC")
    ctx.add_init_script("delete window.RTCPeerConnection;")  # a browser (or policy) without WebRTC
    try:
        page = ctx.new_page()
        login(page, hub.url)
        page.goto(hub.url + "/#/live")
        tile = page.locator(f"article.live-tile[data-camera='{sim_camera['camera']}']")
        tile.get_by_text("snapshot mode", exact=True).wait_for()
        sel = f"img.snapshot[data-camera='{sim_camera['camera']}']"
        loaded = f'() => {{ const i = document.querySelector("{sel}"); return i && i.complete && i.naturalWidth > 0; }}'
        page.wait_for_function(loaded, timeout=30_000)
        first = page.evaluate(STILL_PIXELS_JS, sel)
        assert first["width"] == 640
        # The page asks again about every second; a later still shows a later picture.
        page.wait_for_function(
            f'() => {{ const i = document.querySelector("{sel}"); return i.complete && i.naturalWidth > 0 && i.src !== {json.dumps(first["src"])}; }}',
            timeout=15_000,
        )
        changed = False
        for _ in range(10):
            page.wait_for_timeout(1000)
            later = page.evaluate(STILL_PIXELS_JS, sel)
            if later["pixels"] != first["pixels"]:
                changed = True
                break
        assert changed, "the still never changed"
        tile.get_by_text("a still about every second").wait_for()
        # The camera that sends nothing says so in its own tile, without breaking the others.
        page.locator("article.live-tile[data-camera='garage']").get_by_text(
            "the camera sends no picture"
        ).wait_for(timeout=20_000)
        screenshot(page, "live-snapshot")
        page.get_by_role("button", name="Stop").first.click()
    finally:
        ctx.close()


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def _get(opener: urllib.request.OpenerDirector, url: str, read: int = -1) -> tuple[int, str, bytes]:
    try:
        with opener.open(url, timeout=20) as res:
            return res.status, res.headers.get("Content-Type", ""), res.read(read)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def test_snapshot_routes_need_a_session_and_a_known_streaming_camera(
    make_hub: Any, sim_camera: dict[str, Any]
) -> None:
    hub = _hub(make_hub, sim_camera)
    cam = sim_camera["camera"]
    base = f"{hub.url}/api/v1/owner/cameras"
    anonymous = _opener()
    for path in (f"{cam}/snapshot.jpg", f"{cam}/mjpeg"):
        status, ctype, body = _get(anonymous, f"{base}/{path}")
        assert (status, json.loads(body)["error"]) == (401, "no_session")
        assert ctype.startswith("application/json")

    owner = _opener()
    login_req = urllib.request.Request(
        hub.url + "/api/v1/session/login", data=json.dumps({"password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )  # fmt: skip
    with owner.open(login_req, timeout=20) as res:
        assert res.status == 200

    for path in ("nope/snapshot.jpg", "nope/mjpeg"):
        status, _, body = _get(owner, f"{base}/{path}")
        assert (status, json.loads(body)["error"]) == (404, "not_found")
    status, _, body = _get(owner, f"{base}/garage/snapshot.jpg")
    assert (status, json.loads(body)["error"]) == (503, "camera_offline")

    status, ctype, body = _get(owner, f"{base}/{cam}/snapshot.jpg")
    assert (status, ctype) == (200, "image/jpeg")
    assert body[:3] == b"\xff\xd8\xff"

    # MJPEG: read a few parts of the multipart/x-mixed-replace stream, then hang up.
    with owner.open(f"{base}/{cam}/mjpeg", timeout=20) as res:
        assert res.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=camhubframe"
        assert res.headers["Cache-Control"] == "no-store"
        parts = 0
        for _ in range(200):
            line = res.readline()
            if line.startswith(b"Content-Length:"):
                length = int(line.split(b":")[1])
                assert res.readline() == b"\r\n"
                jpeg = res.read(length)
                assert jpeg[:3] == b"\xff\xd8\xff"
                parts += 1
                if parts == 2:
                    break
        assert parts == 2
