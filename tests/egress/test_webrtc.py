"""WebRTC relay on loopback: a real aiortc viewer decodes the sim's stream relayed without re-encoding,
and agency sessions stop at not_after, on a gate refusal, and on cut()."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import pytest
from aiortc.codecs.h264 import H264Encoder

from camhub_protocol.errors import ConsentError
from firmware_sim import h264, stamp
from hub.egress.webrtc import Audience, LiveError, LiveSessions, SessionKind
from hub.egress.whep_client import WhepViewer
from hub.ingest.relay import PacketRelay

OWNER = Audience(SessionKind.OWNER, "owner")


def agency(request_id: str) -> Audience:
    return Audience(SessionKind.AGENCY, "agency-keyid", request_id)


@pytest.fixture(autouse=True)
def no_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    # The hub must only packetize: encoding a frame anywhere in these tests is a failure.
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the hub re-encoded a frame")

    monkeypatch.setattr(H264Encoder, "encode", refuse)


async def allowed() -> None:
    return None


async def watch(sessions: LiveSessions, relay: PacketRelay, audience: Audience, **kwargs: object):  # type: ignore[no-untyped-def]
    viewer = WhepViewer()
    try:
        session, answer = await sessions.open(
            camera_id=relay.camera_id,
            relay=relay,
            offer_sdp=await viewer.offer(),
            audience=audience,
            **kwargs,
        )  # type: ignore[arg-type]
        await viewer.accept(answer)
    except BaseException:
        await viewer.close()
        raise
    return viewer, session


async def test_viewer_decodes_the_relayed_camera(relay: PacketRelay) -> None:
    sessions = LiveSessions()
    viewer, session = await watch(sessions, relay, OWNER)
    try:
        await viewer.wait_frames(20, timeout=15)
        assert "H264" in session.pc.localDescription.sdp
        frames = [viewer.frames.get_nowait().frame for _ in range(viewer.frames.qsize())]
        assert {(f.width, f.height) for f in frames} == {(640, 360)}
        stamps = [stamp.decode(f.to_ndarray(format="gray")) for f in frames]
        assert sum(s is not None for s in stamps) >= len(frames) - 1  # pictures intact, not garbage
        assert session.track.packets_sent >= 20
    finally:
        await viewer.close()
        await sessions.close_all()
    assert session.closed and len(sessions) == 0


async def stop_time(viewer: WhepViewer, quiet_s: float, limit_s: float) -> float:
    """Wall time of the last frame, once none came for `quiet_s` (or the stream ended)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        last = viewer.last_frame_at
        if viewer.ended.is_set() or (last is not None and time.time() - last > quiet_s):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("media never stopped")
    assert viewer.last_frame_at is not None
    return viewer.last_frame_at


async def test_agency_session_stops_at_not_after(relay: PacketRelay) -> None:
    sessions = LiveSessions()
    not_after = time.time() + 3.0
    viewer, session = await watch(sessions, relay, agency("req-1"), not_after=not_after, recheck=allowed)
    try:
        await viewer.wait_frames(5, timeout=3)
        last = await stop_time(viewer, quiet_s=1.5, limit_s=8)
        await asyncio.wait_for(session.wait_closed(), 2)
    finally:
        await viewer.close()
        await sessions.close_all()
    assert session.close_reason == "expired"
    assert last < not_after + 1.0  # PROTOCOL §2.4: closed within 1 s of not_after
    assert session.ended_at is not None and session.ended_at < not_after + 1.0
    assert len(sessions) == 0


async def test_gate_refusal_cuts_without_anyone_calling_cut(relay: PacketRelay) -> None:
    sessions = LiveSessions()
    revoked_at: float | None = None

    async def gate() -> None:
        if revoked_at is not None:
            raise ConsentError("grant_revoked", "the owner revoked the grant", 403)

    viewer, session = await watch(sessions, relay, agency("req-2"), not_after=time.time() + 60, recheck=gate)
    try:
        await viewer.wait_frames(5, timeout=5)
        revoked_at = time.time()
        last = await stop_time(viewer, quiet_s=1.5, limit_s=8)
        await asyncio.wait_for(session.wait_closed(), 2)
    finally:
        await viewer.close()
        await sessions.close_all()
    assert session.close_reason == "refused: grant_revoked"
    assert last < revoked_at + 1.0
    assert session.ended_at is not None and session.ended_at < revoked_at + 1.0


async def test_cut_closes_every_session_of_the_request(relay: PacketRelay) -> None:
    sessions = LiveSessions()
    kw = {"not_after": time.time() + 60, "recheck": allowed}
    v1, s1 = await watch(sessions, relay, agency("req-3"), **kw)
    v2, s2 = await watch(sessions, relay, agency("req-3"), **kw)
    v3, s3 = await watch(sessions, relay, agency("other"), **kw)
    try:
        await v1.wait_frames(3, timeout=5)
        started = time.monotonic()
        assert await sessions.cut("req-3") == 2
        assert time.monotonic() - started < 1.0
        assert s1.closed and s2.closed and not s3.closed
        assert s1.track.readyState == "ended"
        assert await sessions.cut("req-3") == 0  # idempotent
        await v3.wait_frames(3, timeout=5)  # the other request keeps streaming
    finally:
        for v in (v1, v2, v3):
            await v.close()
        await sessions.close_all()
    assert len(sessions) == 0


async def test_closing_the_relay_ends_its_sessions(relay: PacketRelay) -> None:
    sessions = LiveSessions()
    viewer, session = await watch(sessions, relay, OWNER)
    try:
        await viewer.wait_frames(3, timeout=5)
        relay.close()  # the camera is removed, or the hub stops
        await asyncio.wait_for(session.wait_closed(), 2)
        with pytest.raises(LiveError) as err:
            await watch(sessions, relay, OWNER)
        assert err.value.code == "camera_unavailable"
    finally:
        await viewer.close()
        await sessions.close_all()
    assert session.close_reason == "camera stopped"
    assert len(sessions) == 0


async def test_refuses_offers_it_cannot_serve(relay: PacketRelay) -> None:
    sessions = LiveSessions(max_sessions=2)
    with pytest.raises(LiveError) as err:
        await sessions.open(camera_id="c", relay=relay, offer_sdp="v=0\r\n", audience=OWNER)
    assert err.value.code == "bad_offer"
    with pytest.raises(LiveError) as err:
        await sessions.open(
            camera_id="c", relay=relay, offer_sdp="", audience=agency("r"), not_after=time.time() - 1,
            recheck=allowed,
        )  # fmt: skip
    assert err.value.code == "expired"
    with pytest.raises(ValueError):
        await sessions.open(camera_id="c", relay=relay, offer_sdp="", audience=agency("r"))
    assert len(sessions) == 0
    viewer, _ = await watch(sessions, relay, OWNER)
    try:
        # One slot left, kept for the owner: an agency is refused, the owner gets it, then nobody.
        with pytest.raises(LiveError) as err:
            await sessions.open(
                camera_id="c", relay=relay, offer_sdp="", audience=agency("r"),
                not_after=time.time() + 60, recheck=allowed,
            )  # fmt: skip
        assert err.value.code == "too_many_sessions"
        second, _ = await watch(sessions, relay, OWNER)
        with pytest.raises(LiveError) as err:
            await watch(sessions, relay, OWNER)
        assert err.value.code == "too_many_sessions"
        await second.close()
    finally:
        await viewer.close()
        await sessions.close_all()


async def test_encoded_viewer_saves_the_stream_byte_for_byte(relay: PacketRelay, tmp_path: Path) -> None:
    """WhepViewer(encoded=True): relay → WebRTC → MP4 with no decoder or encoder anywhere."""
    sent: dict[int, bytes] = {}
    watch_sent = relay.subscribe(queue_packets=600)
    sessions = LiveSessions()
    viewer = WhepViewer(max_frames=256, encoded=True)
    try:
        _, answer = await sessions.open(
            camera_id=relay.camera_id, relay=relay, offer_sdp=await viewer.offer(), audience=OWNER
        )
        await viewer.accept(answer)
        count = await viewer.record_mp4(tmp_path / "live.mp4", seconds=2.0, timeout=15)
    finally:
        await viewer.close()
        await sessions.close_all()
        while (p := watch_sent.get_nowait()) is not None:
            stamp_ = h264.find_stamp(p.data)
            if stamp_ is not None:
                sent[stamp_.seq] = p.data
        watch_sent.close()
    assert 25 <= count <= 32  # 2 s at 15 fps, from a keyframe
    assert viewer.dropped == 0
    samples, frames, size, duration = await asyncio.to_thread(read_mp4, tmp_path / "live.mp4")
    assert size == (640, 360) and frames == count == len(samples)
    assert 1.8 <= duration <= 2.2
    for sample in samples:
        stamp_ = h264.find_stamp(sample)
        assert stamp_ is not None and stamp_.seq in sent
        assert h264.split_avcc(sample) == h264.split_annexb(sent[stamp_.seq])


def read_mp4(path: Path) -> tuple[list[bytes], int, tuple[int, int], float]:
    with av.open(str(path)) as f:
        stream = f.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
        samples = [bytes(p) for p in f.demux(stream) if p.size]
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
    with av.open(str(path)) as f:
        frames = sum(1 for _ in f.decode(video=0))
    return samples, frames, size, duration
