"""Live view in the browser (WebRTC from the hub's relay), and an agency livestream cut by a revoke
clicked in the browser."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from camhub_protocol import httpsig
from hub.agency_client import Agency
from hub.egress.whep_client import WhepViewer
from tests.web.conftest import login, onboard, screenshot
from tests.web.test_consent_inbox import _agency

FRAMES_CHANGE_JS = """async (sel) => {
  const v = document.querySelector(sel);
  const c = document.createElement("canvas");
  c.width = 64; c.height = 36;
  const g = c.getContext("2d");
  const grab = () => { g.drawImage(v, 0, 0, 64, 36); return Array.from(g.getImageData(0, 0, 64, 36).data); };
  // Several grabs 300 ms apart, not two 1 s apart: the sim's picture loops every 2 s, and a timer
  // delayed to ~2 s on a loaded machine grabbed the same picture twice.
  const grabs = [grab()];
  const frames0 = v.getVideoPlaybackQuality().totalVideoFrames;
  const t0 = v.currentTime;
  for (let k = 0; k < 4; k++) {
    await new Promise((r) => setTimeout(r, 300));
    grabs.push(grab());
  }
  let diff = 0;
  for (let k = 1; k < grabs.length; k++) {
    for (let i = 0; i < grabs[0].length; i++) diff += Math.abs(grabs[k][i] - grabs[k - 1][i]);
  }
  return {diff, frames: v.getVideoPlaybackQuality().totalVideoFrames - frames0, advanced: v.currentTime - t0,
          width: v.videoWidth};
}"""


def _camera_config(sim: dict[str, Any]) -> str:
    return f"""
[[cameras]]
id = "{sim["camera"]}"
name = "Front door (sim)"
url = "{sim["rtsp_main"]}"
record = false
"""


def _live_hub(make_hub: Any, sim: dict[str, Any], password: bool) -> Any:
    # Loopback ICE only (MEDIA_NOTES.md): the hub offers 127.0.0.1 host candidates.
    return make_hub(password=password, extra=_camera_config(sim), hub_keys='ice_addresses = ["127.0.0.1"]')


def _open_live_page(context: Any, url: str) -> Any:
    # Without a media permission Chromium gathers no ICE candidates at all (MEDIA_NOTES.md).
    context.grant_permissions(["camera", "microphone"], origin=url)
    return context.new_page()


def test_live_view_plays_and_frames_change(make_hub: Any, context: Any, sim_camera: dict[str, Any]) -> None:
    hub = _live_hub(make_hub, sim_camera, password=True)
    page = _open_live_page(context, hub.url)
    login(page, hub.url)
    page.goto(hub.url + "/#/live")
    sel = f"video[data-camera='{sim_camera['camera']}']"
    started = time.monotonic()
    page.wait_for_function(
        f'() => {{ const v = document.querySelector("{sel}"); return v && !v.paused && v.readyState >= 2 && v.currentTime > 0; }}',
        timeout=20_000,
    )
    first_picture_s = time.monotonic() - started
    result = page.evaluate(FRAMES_CHANGE_JS, sel)
    assert result["width"] == 640
    assert result["frames"] >= 5 and result["advanced"] > 0.5, result
    assert result["diff"] > 0, "the picture did not change between frames"
    page.get_by_text("live (started in").wait_for()
    screenshot(page, "live")
    print(f"first live picture after {first_picture_s:.2f} s (camera ingest start included)")
    # Stopping DELETEs the session on the hub.
    with page.expect_response(
        lambda r: r.request.method == "DELETE" and "/api/v1/owner/live/" in r.url
    ) as deleted:
        page.get_by_role("button", name="Stop").click()
    assert deleted.value.status == 200


def _fault(sim: dict[str, Any], kind: str, **params: Any) -> None:
    req = urllib.request.Request(
        f"{sim['control']}/fault", data=json.dumps({"kind": kind, **params}).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as res:
        assert res.status in (200, 202)


def test_a_live_tile_says_the_camera_is_offline_and_comes_back(
    make_hub: Any, context: Any, sim_camera: dict[str, Any]
) -> None:
    """Never a black box without words: "Camera offline — retrying" within 5 s, then live again."""
    hub = _live_hub(make_hub, sim_camera, password=True)
    page = _open_live_page(context, hub.url)
    login(page, hub.url)
    page.goto(hub.url + "/#/live")
    tile = page.locator(f"article.live-tile[data-camera='{sim_camera['camera']}']")
    tile.get_by_text("live (started in").wait_for(timeout=30_000)
    _fault(sim_camera, "reboot", seconds=8)  # connections close; the camera is unreachable for 8 s
    down = time.monotonic()
    message = tile.locator(".live-message")
    message.get_by_text("Camera offline — retrying").wait_for(timeout=30_000)
    shown_after = time.monotonic() - down
    # The page's design says it within ~4 s (STALL_MS 3 s + its 1 s tick, or the 2 s status poll;
    # hub/web/views/live.js) for the goal of 5 s. The bound has slack on purpose: a shared
    # machine under load once took 5.0 s to paint it (load average 11); a tile that only notices at
    # its next reconnect attempt or never still fails here.
    assert shown_after <= 10, f"the tile said so {shown_after:.1f} s after the camera went down"
    # It keeps retrying on its own and plays again once the camera is back.
    message.wait_for(state="hidden", timeout=60_000)
    page.wait_for_function(
        f"""() => {{ const v = document.querySelector("video[data-camera='{sim_camera["camera"]}']");
                    return v && v.getVideoPlaybackQuality().totalVideoFrames > 0 && !v.paused; }}""",
        timeout=30_000,
    )


def test_a_live_view_that_does_not_start_says_so_and_offers_retry(
    make_hub: Any, context: Any, sim_camera: dict[str, Any]
) -> None:
    hub = _live_hub(make_hub, sim_camera, password=True)
    page = _open_live_page(context, hub.url)
    login(page, hub.url)
    # The camera is online, but the hub's answer to the WebRTC offer never arrives (a proxy or a
    # network that swallows it): the request is held, never answered.
    held: list[Any] = []
    page.route("**/api/v1/owner/cameras/*/whep", lambda route: held.append(route))
    page.goto(hub.url + "/#/live")
    tile = page.locator(f"article.live-tile[data-camera='{sim_camera['camera']}']")
    tile.get_by_text("connecting").wait_for()
    started = time.monotonic()
    tile.get_by_text("The live view did not start within 10 seconds.").wait_for(timeout=40_000)
    assert 8 <= time.monotonic() - started <= 25
    retry = tile.get_by_role("button", name="Retry")
    assert retry.is_visible()
    # Retry tries again (and, answered this time, plays).
    page.unroute("**/api/v1/owner/cameras/*/whep")
    retry.click()
    tile.get_by_text("live (started in").wait_for(timeout=30_000)
    assert held, "the offer was never sent"


def _signer(client: Agency, keyid: str) -> Any:
    def sign(method: str, url: str, body: bytes, ctype: str | None) -> Mapping[str, str]:
        parts = urlsplit(url)
        lines = httpsig.sign_request(
            method=method, authority=parts.netloc, path=parts.path, query=parts.query or None,
            headers=[("Content-Type", ctype)] if ctype else [], body=body, private_key=client.key,
            keyid=keyid, created=int(time.time()), scheme=parts.scheme,
        )  # fmt: skip
        return dict(lines)

    return sign


def _watch(url: str, client: Agency, keyid: str, streaming: threading.Event) -> dict[str, float | int]:
    """The agency's viewer (aiortc, in its own thread and loop): frames until the hub cuts it."""

    async def run() -> dict[str, float | int]:
        viewer = WhepViewer()
        async with aiohttp.ClientSession() as http:
            try:
                await viewer.connect(url, http, sign=_signer(client, keyid))
                await viewer.wait_frames(10, timeout=15)
                streaming.set()
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    last = viewer.last_frame_at or 0.0
                    if viewer.ended.is_set() or time.time() - last > 1.5:
                        return {"last_frame_at": last, "frames": viewer.frame_count}
                    await asyncio.sleep(0.05)
                raise AssertionError("the agency's stream was never cut")
            finally:
                await viewer.close()

    return asyncio.run(run())


def test_revoke_in_the_browser_cuts_an_agency_livestream(
    make_hub: Any, context: Any, sim_camera: dict[str, Any], tmp_path: Path
) -> None:
    hub = _live_hub(make_hub, sim_camera, password=False)
    camera = sim_camera["camera"]
    page = _open_live_page(context, hub.url)
    onboard(page, hub)
    ident = _agency("keygen", str(tmp_path / "agency"))
    page.goto(hub.url + "/#/agencies")
    page.get_by_label("Name").fill("County Sheriff")
    page.get_by_label("Public signing key").fill(json.dumps(ident["sig_jwk"]))
    page.get_by_label("Encryption key for deliveries").fill(ident["recipient"])
    page.get_by_role("button", name="Add agency (sign)").click()
    page.locator("#agencies tbody tr").filter(has_text="County Sheriff").wait_for()

    key_dir = str(tmp_path / "agency")
    asked = _agency(
        "request", "--url", hub.url, "--key", key_dir, "--camera", camera, "--live-max-seconds", "120",
        "--case-id", "2026-000777", "--reason", "Ongoing incident", "--legal-basis", "exigent",
        "--contact", "Dispatch",
    )  # fmt: skip
    page.goto(hub.url + "/#/inbox")
    card = page.locator(f"article[data-request-id='{asked['id']}']")
    card.get_by_role("button", name="Approve as asked").click()
    page.get_by_role("dialog").get_by_role("button", name="Sign and approve").click()
    page.locator("#grants tbody tr").filter(has_text="2026-000777").wait_for(timeout=10_000)
    status = _agency("status", "--url", hub.url, "--key", key_dir, "--", asked["id"])
    assert status["status"] == "live", status

    streaming = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        watched: Future[dict[str, float | int]] = pool.submit(
            _watch, status["live"]["url"], Agency(Path(key_dir), hub.url), ident["keyid"], streaming
        )
        deadline = time.monotonic() + 30
        while not streaming.wait(0.1):
            if watched.done():
                watched.result()  # raises the viewer's error
            assert time.monotonic() < deadline, "the agency never received frames"
        page.goto(hub.url + "/#/inbox")
        row = page.locator("#grants tbody tr").filter(has_text="2026-000777")
        row.get_by_role("button", name="Revoke").click()
        # Revoking asks first (the whole decision on screen before signing, from main's passkey work).
        page.get_by_role("dialog").get_by_role("button", name="Sign and revoke").click()
        clicked = time.time()
        row.wait_for(state="detached", timeout=10_000)
        result = watched.result(timeout=30)
    assert result["frames"] >= 10
    # PROTOCOL §2.4: the hub closes the stream within 1 s of the revoke (the click, signing in the
    # browser and the POST happen in between, so allow a little on top).
    assert result["last_frame_at"] < clicked + 1.5, result["last_frame_at"] - clicked
    after = _agency("status", "--url", hub.url, "--key", key_dir, "--", asked["id"])
    assert after["status"] == "closed"
    # The request's history (from the audit log) has the session, its start, end and length, and
    # says the approval was revoked; the page shows it in words.
    deadline = time.monotonic() + 15
    while True:
        (req,) = [
            r
            for r in page.request.get(hub.url + "/api/v1/owner/requests").json()["requests"]
            if r["id"] == asked["id"]
        ]
        history = req["history"]
        if history["live"] and history["live"][0]["end"]:
            break
        assert time.monotonic() < deadline, history
        time.sleep(0.2)
    (session,) = history["live"]
    assert session["camera"] == camera and session["start"]["seq"] < session["end"]["seq"]
    assert session["end"]["seconds"] >= 0 and session["end"]["reason"]
    assert history["state"] == "revoked" and history["approvals"][0]["ended"]["how"] == "revoked"
    page.goto(hub.url + "/#/inbox")
    page.get_by_text("Show earlier requests").click()
    card = page.locator(f"article[data-request-id='{asked['id']}']")
    text = card.locator("details.history").inner_text()
    assert "Livestream of Front door (sim):" in text and "revoked" in text, text


SOUND_JS = """async (sel) => {
  // What the owner hears: the <video>'s own stream through WebAudio, ~1.5 s of it.
  const v = document.querySelector(sel);
  const tracks = v.srcObject ? v.srcObject.getAudioTracks() : [];
  if (!tracks.length) return {tracks: 0};
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  ctx.createMediaStreamSource(new MediaStream(tracks)).connect(analyser);
  const wave = new Float32Array(analyser.fftSize);
  const spectrum = new Float32Array(analyser.frequencyBinCount);
  let peak = 0, hz = 0;
  for (let k = 0; k < 15; k++) {
    await new Promise((r) => setTimeout(r, 100));
    analyser.getFloatTimeDomainData(wave);
    for (const x of wave) peak = Math.max(peak, Math.abs(x));
  }
  analyser.getFloatFrequencyData(spectrum);
  let best = 1;
  for (let i = 1; i < spectrum.length; i++) if (spectrum[i] > spectrum[best]) best = i;
  hz = best * ctx.sampleRate / analyser.fftSize;
  await ctx.close();
  return {tracks: tracks.length, controls: v.controls, peak, hz};
}"""


def test_the_owner_live_view_carries_the_cameras_sound(make_hub: Any, context: Any) -> None:
    """PROTOCOL §2.4: the owner's view carries the sound of a camera whose sound is recorded. The
    camera is GStreamer's rtsp-server sending AAC of a 440 Hz sine; the tile starts muted (browsers
    autoplay only muted media) and shows the browser's controls to unmute it. What the <video> holds
    is read through WebAudio: the tone, loud."""
    gst = Path(__file__).resolve().parents[1] / "interop" / "gst_camera.py"
    camera = subprocess.Popen(
        ["/usr/bin/python3", str(gst), "--port", "0", "--audio", "aac"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert camera.stdout is not None
        line = camera.stdout.readline()
        assert line.startswith("ready "), line
        extra = f'\n[[cameras]]\nid = "gst"\nname = "Porch (gst)"\nurl = "{line.split()[1]}"\naudio = true\n'
        hub = make_hub(password=True, extra=extra, hub_keys='ice_addresses = ["127.0.0.1"]')
        page = _open_live_page(context, hub.url)
        login(page, hub.url)
        page.goto(hub.url + "/#/live")
        sel = "video[data-camera='gst']"
        page.wait_for_function(
            f'() => {{ const v = document.querySelector("{sel}"); return v && v.currentTime > 1; }}',
            timeout=30_000,
        )
        result = page.evaluate(SOUND_JS, sel)
    finally:
        camera.terminate()
        camera.wait(timeout=10)
    assert result["tracks"] == 1 and result["controls"] is True, result
    assert result["peak"] > 0.05 and abs(result["hz"] - 440) < 44, result
