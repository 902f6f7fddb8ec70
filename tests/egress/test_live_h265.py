"""Live view of an H.265 camera (issue 16 item 4): WebRTC to the browser carries H.264, so the hub
decodes the camera's H.265 and aiortc encodes H.264 from it; a real aiortc viewer decodes the result.
The conversion is bounded: pictures scaled to at most 1280x720, one such session on the hub at a time
(503 `transcode_busy` for a second one), the slot free again once the first ends."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.egress.webrtc import Audience, LiveError, LiveSessions, SessionKind, transcode_busy
from hub.egress.whep_client import WhepViewer
from hub.ingest.relay import PacketRelay, RelayHub
from hub.ingest.rtsp import FileSource
from tests.egress.conftest import pump

OWNER = Audience(SessionKind.OWNER, "owner")


@pytest.fixture
async def hevc_relay(tmp_path: Path, relays: RelayHub) -> AsyncIterator[PacketRelay]:
    """A 1080p H.265 camera (a file replayed in real time, looping) published into a relay."""
    path = tmp_path / "hevc.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=1920x1080:rate=10", "-t", "3",
         "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=none:keyint=10:bframes=0",
         "-tag:v", "hvc1", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    source = FileSource("hevc-cam", path, realtime=True, loop_input=True)
    params = await source.open()
    assert params.codec == "hevc"
    relay = relays.add("hevc-cam")
    task = asyncio.create_task(pump(source, relay))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(10):
            while relay.cached_packets == 0:
                await relay.wait_for_packet()
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()
        relay.close()


async def _watch(sessions: LiveSessions, relay: PacketRelay) -> tuple[WhepViewer, object]:
    viewer = WhepViewer()
    try:
        session, answer = await sessions.open(
            camera_id=relay.camera_id, relay=relay, offer_sdp=await viewer.offer(), audience=OWNER
        )
        await viewer.accept(answer)
    except BaseException:
        await viewer.close()
        raise
    return viewer, session


async def test_an_h265_camera_is_watched_as_h264_one_view_at_a_time(hevc_relay: PacketRelay) -> None:
    sessions = LiveSessions()
    viewer, session = await _watch(sessions, hevc_relay)
    try:
        await viewer.wait_frames(10, timeout=30)
        frames = [viewer.frames.get_nowait().frame for _ in range(viewer.frames.qsize())]
        # Decoded by the viewer (as H.264: the only codec the session negotiates), scaled to 720p.
        assert "H264" in session.pc.localDescription.sdp  # type: ignore[attr-defined]
        assert {(f.width, f.height) for f in frames} == {(1280, 720)}
        # A second H.265 view while the first is converted: refused, in words, not a black picture.
        with pytest.raises(LiveError) as err:
            await _watch(sessions, hevc_relay)
        assert (err.value.code, err.value.status) == ("transcode_busy", 503)
    finally:
        await viewer.close()
        await sessions.close_all()
    # The slot is free again once that view ended.
    sessions = LiveSessions()
    viewer, _ = await _watch(sessions, hevc_relay)
    try:
        await viewer.wait_frames(5, timeout=30)
    finally:
        await viewer.close()
        await sessions.close_all()


async def test_two_h265_views_asked_at_once_get_one_picture_and_one_refusal(hevc_relay: PacketRelay) -> None:
    """Both offers arrive before either session has sent a packet: the slot is taken when a view is
    opened, not at its first picture, so the second viewer hears 503 instead of a 201 and no video."""
    sessions = LiveSessions()
    # An offer that fails after the slot was taken gives it back.
    with pytest.raises(LiveError):
        await sessions.open(
            camera_id=hevc_relay.camera_id, relay=hevc_relay, offer_sdp="v=0\r\n", audience=OWNER
        )
    assert not transcode_busy()
    results = await asyncio.gather(
        _watch(sessions, hevc_relay), _watch(sessions, hevc_relay), return_exceptions=True
    )
    watching = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    try:
        assert len(watching) == 1 and len(refused) == 1, results
        assert isinstance(refused[0], LiveError)
        assert (refused[0].code, refused[0].status) == ("transcode_busy", 503)
        viewer, _ = watching[0]
        await viewer.wait_frames(5, timeout=30)
    finally:
        for viewer, _ in watching:
            await viewer.close()
        await sessions.close_all()
