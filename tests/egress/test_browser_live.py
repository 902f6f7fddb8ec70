"""The owner's live view in Debian chromium: the hub's WHEP answer negotiates H.264 with a real browser
and the <video> plays the relayed camera (no re-encoding on the hub). The real daemon wiring
(`running_hub`) with the simulated camera, and a real owner session in the browser (the view is bound
to it, issue 12)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_sim.camera import SimCamera
from hub.config import parse
from hub.consent import owner_client, pairing
from hub.daemon import running_hub
from tests.egress.conftest import owner_session, running_live_hub
from tests.interop.test_rtsp_cameras import _gst_ready

ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# MEDIA_NOTES: loopback candidates need the flag, and any candidates at all need the permission.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--allow-loopback-in-peer-connection",
]  # fmt: skip

WATCH_JS = """
async ([path, csrf]) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  document.body.appendChild(video);
  pc.ontrack = (e) => { video.srcObject = new MediaStream([e.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') resolve();
    });
  });
  const resp = await fetch(path, {method: 'POST',
                                  headers: {'Content-Type': 'application/sdp', 'X-CSRF-Token': csrf},
                                  body: pc.localDescription.sdp});
  if (resp.status !== 201) return {status: resp.status, body: await resp.text()};
  const location = resp.headers.get('Location');
  await pc.setRemoteDescription({type: 'answer', sdp: await resp.text()});
  const t0 = performance.now();
  while (performance.now() - t0 < 15000 && !(video.videoWidth > 0 && video.currentTime > 1.0)) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const stats = await pc.getStats();
  let frames = 0, codec = null;
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      frames = s.framesDecoded;
      const c = stats.get(s.codecId);
      codec = c ? c.mimeType : null;
    }
  });
  const result = {status: 201, location, width: video.videoWidth, height: video.videoHeight,
                  playing: video.currentTime, frames, codec};
  result.deleted = (await fetch(location, {method: 'DELETE', headers: {'X-CSRF-Token': csrf}})).status;
  result.deletedAgain = (await fetch(location, {method: 'DELETE', headers: {'X-CSRF-Token': csrf}})).status;
  pc.close();
  return result;
}
"""


@pytest.fixture
async def browser_page() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is required (make sysdeps installs it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def test_chromium_plays_the_owner_live_view(sim: SimCamera, tmp_path: Path, browser_page: Any) -> None:
    async with running_live_hub(sim, tmp_path) as (services, owner):
        base = services.base_url
        headers = await owner_session(base, services.hub_key.hub_id, owner, set_password=True)
        csrf = headers["X-CSRF-Token"]
        cookie = headers["Cookie"].split("=", 1)[1]
        context = await browser_page.new_context()
        await context.grant_permissions(["camera", "microphone"], origin=base)
        await context.add_cookies([{"name": "camhub_session", "value": cookie, "url": base}])
        tab = await context.new_page()
        await tab.goto(base + "/")  # a page of the hub's origin (the owner UI)
        result = await tab.evaluate(WATCH_JS, [f"/api/v1/owner/cameras/{sim.name}/whep", csrf])
        await context.close()
    assert result["status"] == 201, result
    assert result["location"].startswith("/api/v1/owner/live/")
    assert result["codec"] == "video/H264"
    assert (result["width"], result["height"]) == (640, 360)
    assert result["playing"] > 1.0 and result["frames"] >= 10, json.dumps(result)
    assert (result["deleted"], result["deletedAgain"]) == (200, 404)  # the DELETE ended that session


@pytest.fixture
def h265_camera() -> Iterator[str]:
    """GStreamer's rtsp-server sending H.265 (tests/interop/gst_camera.py): its RTSP URL."""
    problem = _gst_ready()
    assert problem is None, f"GStreamer's RTSP server bindings are missing (make sysdeps): {problem}"
    proc = subprocess.Popen(
        [
            "/usr/bin/python3",
            str(ROOT / "tests" / "interop" / "gst_camera.py"),
            "--port",
            "0",
            "--video",
            "h265",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("ready "), line
        yield line.split(" ", 1)[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_chromium_plays_an_h265_camera_live_as_h264(
    h265_camera: str, tmp_path: Path, browser_page: Any
) -> None:
    # Chromium here cannot decode H.265 (nor take it over WebRTC): the hub converts it (issue 16).
    config = parse(
        {
            "hub": {"data_dir": str(tmp_path / "data"), "port": 0},
            "consent": {"trust_system_clock": True},
            "discovery": {"enabled": False},
            "cameras": [{"id": "hevc-cam", "url": h265_camera, "motion": {"enabled": False}}],
        }
    )
    async with running_hub(config) as services:
        assert services.cameras is not None
        runtime = services.cameras.runtimes["hevc-cam"]
        async with asyncio.timeout(20):
            while not runtime.online(time.time()):
                await asyncio.sleep(0.05)
        owner = Ed25519PrivateKey.generate()
        code = await services.store.run(pairing.issue)
        await asyncio.to_thread(owner_client.enroll_first, services.base_url, owner, code, "phone")
        base = services.base_url
        headers = await owner_session(base, services.hub_key.hub_id, owner, set_password=True)
        context = await browser_page.new_context()
        await context.grant_permissions(["camera", "microphone"], origin=base)
        cookie = headers["Cookie"].split("=", 1)[1]
        await context.add_cookies([{"name": "camhub_session", "value": cookie, "url": base}])
        tab = await context.new_page()
        # A page of the hub's origin that is not the owner app: the app opens its Live page, whose
        # tile is a second H.265 viewer, and the hub converts one at a time, for whichever session's
        # first packet comes first. The tile won that race in 1 run of ~5 once camhub read the
        # camera itself (issue 17).
        await tab.goto(base + "/api/v1/hub")
        result = await tab.evaluate(
            WATCH_JS, ["/api/v1/owner/cameras/hevc-cam/whep", headers["X-CSRF-Token"]]
        )
        await context.close()
    assert result["status"] == 201, result
    assert result["codec"] == "video/H264"
    assert (result["width"], result["height"]) == (320, 240)
    assert result["playing"] > 1.0 and result["frames"] >= 10, json.dumps(result)
