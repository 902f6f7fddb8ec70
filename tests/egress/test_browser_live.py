"""The owner's live view in Debian chromium: the hub's WHEP answer negotiates H.264 with a real browser
and the <video> plays the relayed camera (no re-encoding on the hub)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hub.api import live
from hub.egress.webrtc import LiveSessions, SessionKind
from hub.ingest.relay import PacketRelay, RelayHub

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# MEDIA_NOTES: loopback candidates need the flag, and any candidates at all need the permission.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--allow-loopback-in-peer-connection",
]  # fmt: skip

WATCH_JS = """
async (path) => {
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
  const resp = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/sdp'},
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
  await fetch(location, {method: 'DELETE'});
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


async def test_chromium_plays_the_owner_live_view(
    relays: RelayHub, relay: PacketRelay, browser_page: Any
) -> None:
    sessions = LiveSessions()
    app = web.Application()
    app[live.LIVE_MEDIA] = live.LiveMedia(relays, sessions)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>live</title>", content_type="text/html")

    # The handlers as the owner UI mounts them, here without the session guard (tested elsewhere).
    app.router.add_get("/", page)
    app.router.add_post("/api/v1/owner/cameras/{camera_id}/whep", live.post_owner_whep)
    app.router.add_delete("/api/v1/owner/live/{session_id}", live.delete_owner_live)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        context = await browser_page.new_context()
        await context.grant_permissions(["camera", "microphone"], origin=base)
        tab = await context.new_page()
        await tab.goto(base + "/")
        opened: list[Any] = []
        original = sessions.open

        async def spy(**kwargs: Any) -> Any:
            result = await original(**kwargs)
            opened.append(result[0])
            return result

        sessions.open = spy  # type: ignore[method-assign]
        result = await tab.evaluate(WATCH_JS, f"/api/v1/owner/cameras/{relay.camera_id}/whep")
        await context.close()
    finally:
        await sessions.close_all()
        await runner.cleanup()
    assert result["status"] == 201, result
    assert result["location"].startswith("/api/v1/owner/live/")
    assert result["codec"] == "video/H264"
    assert (result["width"], result["height"]) == (640, 360)
    assert result["playing"] > 1.0 and result["frames"] >= 10
    assert opened and opened[0].audience.kind is SessionKind.OWNER
    assert opened[0].closed and opened[0].close_reason == "owner sent DELETE"
