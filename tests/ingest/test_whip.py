"""WHIP ingest: the sim's WHIP publisher pushes, the hub records the exact NAL units it sent.

Also: bearer token (401), unknown or RTSP camera (404), DELETE ends the session, and the pass-through
receiver patch stays narrow (a normal aiortc viewer in the same process still decodes).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import av
import pytest
from aiohttp import web

from firmware_sim import h264
from firmware_sim.camera import SimCamera
from firmware_sim.feed import AccessUnit
from hub.config import parse
from hub.daemon import running_hub
from hub.egress.ice import host_addresses
from hub.egress.webrtc import Audience, LiveSessions, SessionKind
from hub.egress.whep_client import WhepViewer
from hub.ingest import whip
from hub.ingest.relay import PacketRelay
from hub.ingest.source import MediaPacket, SourceEnded
from hub.record.recorder import Recorder
from hub.store import Store
from hub.store import segments as q

TOKEN = "door-token-0123456789abcdef"
SMALL = {"width": 640, "height": 360, "sub_width": 320, "sub_height": 180, "fps": 15, "gop": 15,
         "loop_s": 2.0, "visitor_s": 2.0}  # fmt: skip


@dataclass
class Hub:
    base: str
    ingest: whip.WhipIngest

    def url(self, camera: str) -> str:
        return f"{self.base}/api/v1/cameras/{camera}/whip"


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    config = parse(
        {
            "cameras": [
                {"id": "door", "url": "whip", "whip_token": TOKEN},
                {"id": "garage", "url": "rtsp://127.0.0.1:1/garage"},
            ]
        }
    )
    ingest = whip.WhipIngest(config)
    app = web.Application()
    whip.setup(app, ingest)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    with host_addresses(["127.0.0.1"]):
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield Hub(f"http://127.0.0.1:{port}", ingest)
        finally:
            await ingest.close()
            await runner.cleanup()


@pytest.fixture
async def sim() -> AsyncIterator[SimCamera]:
    async with SimCamera("sim-whip", **SMALL) as cam:  # type: ignore[arg-type]
        yield cam


async def take(source: whip.WhipSource, count: int) -> list[MediaPacket]:
    out: list[MediaPacket] = []
    async with asyncio.timeout(15):
        async for packet in source.packets():
            out.append(packet)
            if len(out) == count:
                break
    return out


def mux_mp4(packets: list[MediaPacket], path: Path) -> None:
    """Stream copy, as the recorder does (add_mux_stream: no encoder, the camera's SPS/PPS)."""
    params = packets[0].params
    assert params is not None
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_mux_stream("h264", width=params.width, height=params.height)
        stream.time_base = params.time_base
        base = packets[0].dts
        steps = [b.dts - a.dts for a, b in itertools.pairwise(packets)]
        for p, duration in zip(packets, [*steps, steps[-1]], strict=True):
            pkt = av.Packet(p.data)
            pkt.pts, pkt.dts, pkt.time_base = p.pts - base, p.dts - base, p.time_base
            # Without durations the last sample falls outside the MP4 edit list and is discarded.
            pkt.duration = duration
            pkt.is_keyframe = p.is_keyframe
            pkt.stream = stream
            out.mux(pkt)


async def test_whip_publish_is_recorded_without_reencoding(hub: Hub, sim: SimCamera, tmp_path: Path) -> None:
    sent = sim.feeds["main"].subscribe(600, from_cache=False)  # what the camera sends, by frame counter
    source = hub.ingest.source("door", open_timeout_s=15)
    publisher = await sim.publish_whip(hub.url("door"), TOKEN)
    try:
        params = await source.open()
        assert (params.codec, params.width, params.height) == ("h264", 640, 360)
        assert params.extradata.startswith(b"\x00\x00\x00\x01\x67")  # SPS from the stream, in Annex B
        packets = await take(source, 40)
    finally:
        await publisher.stop()
        sent.close()
    assert packets[0].is_keyframe
    assert sum(p.is_keyframe for p in packets) >= 2
    assert all(b.dts > a.dts for a, b in itertools.pairwise(packets))

    by_seq: dict[int, AccessUnit] = {}
    while not sent.queue.empty():
        au = sent.queue.get_nowait()
        if au is not None:
            by_seq[au.seq] = au

    path = tmp_path / "whip.mp4"
    await asyncio.to_thread(mux_mp4, packets, path)
    samples, frames, size = await asyncio.to_thread(read_mp4, path)
    assert size == (640, 360)
    assert len(samples) == len(packets)
    for sample in samples:
        stamp = h264.find_stamp(sample)
        assert stamp is not None and stamp.seq in by_seq
        # Byte-identical NAL units: depacketized and muxed, never decoded and re-encoded.
        assert h264.split_avcc(sample) == list(by_seq[stamp.seq].nals)
    assert frames == len(packets)
    ffprobe = shutil.which("ffprobe")
    assert ffprobe is not None, "ffprobe (Debian ffmpeg) is required"
    proc = await asyncio.create_subprocess_exec(
        ffprobe, "-v", "error", "-count_frames", "-show_entries", "stream=codec_name,nb_read_frames",
        "-of", "csv=p=0", str(path), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert out.decode().strip() == f"h264,{len(packets)}"


def read_mp4(path: Path) -> tuple[list[bytes], int, tuple[int, int]]:
    with av.open(str(path)) as f:
        stream = f.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
        samples = [bytes(p) for p in f.demux(stream) if p.size]
    with av.open(str(path)) as f:
        frames = sum(1 for _ in f.decode(video=0))
    return samples, frames, size


async def test_whip_auth_unknown_camera_and_delete(hub: Hub, sim: SimCamera) -> None:
    async with aiohttp.ClientSession() as http:
        offer = "v=0\r\n"
        for camera, headers, status in [
            ("door", {}, 401),
            ("door", {"Authorization": "Bearer wrong-token-0123456789"}, 401),
            ("door", {"Authorization": f"Basic {TOKEN}"}, 401),
            ("nope", {"Authorization": f"Bearer {TOKEN}"}, 404),
            ("garage", {"Authorization": f"Bearer {TOKEN}"}, 404),  # pulls over RTSP, not a WHIP camera
        ]:
            async with http.post(
                hub.url(camera), data=offer, headers={"Content-Type": "application/sdp", **headers}
            ) as resp:
                assert resp.status == status, (camera, headers)
                if status == 401:
                    assert resp.headers["WWW-Authenticate"] == "Bearer"
        async with http.post(
            hub.url("door"), data=offer, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp:
            assert resp.status == 415
        async with http.post(
            hub.url("door"), data=offer,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/sdp"},
        ) as resp:  # fmt: skip
            assert resp.status == 400
    assert hub.ingest.camera("door").session is None  # type: ignore[union-attr]

    source = hub.ingest.source("door", open_timeout_s=15, read_timeout_s=5)
    publisher = await sim.publish_whip(hub.url("door"), TOKEN)
    try:
        await source.open()
        assert publisher.resource_url is not None
        assert publisher.resource_url.startswith(hub.url("door") + "/")
        await take(source, 3)
        async with aiohttp.ClientSession() as http:
            async with http.delete(publisher.resource_url) as resp:
                assert resp.status == 401  # the resource needs the token too
            async with http.delete(
                publisher.resource_url, headers={"Authorization": f"Bearer {TOKEN}"}
            ) as resp:
                assert resp.status == 200
        with pytest.raises(SourceEnded):
            await take(source, 1000)
        async with aiohttp.ClientSession() as http:
            async with http.delete(
                publisher.resource_url, headers={"Authorization": f"Bearer {TOKEN}"}
            ) as resp:
                assert resp.status == 404
    finally:
        await publisher.stop()
        await source.close()


async def test_whip_feeds_the_live_relay_and_viewers_still_decode(hub: Hub, sim: SimCamera) -> None:
    """WHIP in → relay → WebRTC out: the pass-through patch must not touch the viewer's decoder."""
    source = hub.ingest.source("door", open_timeout_s=15)
    publisher = await sim.publish_whip(hub.url("door"), TOKEN)
    relay = PacketRelay("door")
    sessions = LiveSessions()
    viewer = WhepViewer()

    async def pump() -> None:
        async for packet in source.packets():
            relay.publish(packet)

    task: asyncio.Task[None] | None = None
    try:
        with host_addresses(["127.0.0.1"]):
            await source.open()
            task = asyncio.create_task(pump())
            _, answer = await sessions.open(
                camera_id="door",
                relay=relay,
                offer_sdp=await viewer.offer(),
                audience=Audience(SessionKind.OWNER, "owner"),
            )
            await viewer.accept(answer)
            await viewer.wait_frames(10, timeout=15)
        frame = viewer.frames.get_nowait().frame
        assert isinstance(frame, av.VideoFrame) and (frame.width, frame.height) == (640, 360)
    finally:
        await viewer.close()
        await sessions.close_all()
        await publisher.stop()
        await source.close()
        if task is not None:
            task.cancel()
            with pytest.raises((asyncio.CancelledError, SourceEnded)):
                await task
        relay.close()


async def test_whip_source_is_recorded_by_the_recorder_like_rtsp(
    hub: Hub, sim: SimCamera, store: Store, tmp_path: Path
) -> None:
    """The recorder takes a WhipSource as it takes an RtspSource, and the live relay rides along."""
    recordings = tmp_path / "recordings"
    recorder = Recorder("door", recordings, store, segment_s=1.0)
    relay = PacketRelay("door")
    source = hub.ingest.source("door", open_timeout_s=15)
    publisher = await sim.publish_whip(hub.url("door"), TOKEN)
    run = asyncio.create_task(recorder.run(source, on_packet=relay.publish))
    try:
        async with asyncio.timeout(15):
            while relay.published < 50:  # > 3 GOPs: at least two closed 1 s segments
                await relay.wait_for_packet()
        await publisher.stop()  # DELETE: the source ends, the recorder closes its segment
        with pytest.raises(SourceEnded):
            await asyncio.wait_for(run, 10)
    finally:
        await publisher.stop()
        if not run.done():
            run.cancel()
        await recorder.stop()
        relay.close()
    segments = await store.run(q.segments_between, "door", 0, time.time() + 60)
    assert len(segments) >= 2
    assert {(s.codec, s.width, s.height) for s in segments} == {("h264", 640, 360)}
    frames = await asyncio.to_thread(count_frames, recordings / segments[0].path)
    assert frames == round(segments[0].duration_s * 15)


def count_frames(path: Path) -> int:
    with av.open(str(path)) as f:
        return sum(1 for _ in f.decode(video=0))


async def test_daemon_records_and_relays_a_whip_camera(sim: SimCamera, tmp_path: Path) -> None:
    """As wired by the daemon: a `url = "whip"` camera publishes; the hub records it and relays it."""
    config = parse(
        {
            "hub": {"data_dir": str(tmp_path / "data"), "port": 0},
            "consent": {"trust_system_clock": True},
            "discovery": {"enabled": False},
            "storage": {"segment_seconds": 1},
            "cameras": [{"id": "door", "url": "whip", "whip_token": TOKEN}],
        }
    )
    async with running_hub(config) as services:
        assert services.cameras is not None
        relay = services.cameras.relays.get("door")
        assert relay is not None
        publisher = await sim.publish_whip(f"{services.base_url}/api/v1/cameras/door/whip", TOKEN)
        try:
            async with asyncio.timeout(20):
                while relay.published < 50:
                    await relay.wait_for_packet()
        finally:
            await publisher.stop()
        deadline = time.monotonic() + 10  # closed segments are indexed by the recorder's worker thread
        while not (segments := await services.store.run(q.segments_between, "door", 0, time.time() + 60)):
            assert time.monotonic() < deadline, "no segment indexed"
            await asyncio.sleep(0.1)
    assert {(s.codec, s.width, s.height) for s in segments} == {("h264", 640, 360)}


async def _aiortc_offer(edit: Callable[[str], str]) -> str:
    """An offer as an aiortc publisher makes it (a=setup:actpass), edited."""
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import VideoStreamTrack

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return edit(pc.localDescription.sdp)
    finally:
        await pc.close()


def _only(codec: str) -> Callable[[str], str]:
    def edit(sdp: str) -> str:
        keep = []
        for line in sdp.splitlines():
            m = re.match(r"a=(rtpmap|fmtp|rtcp-fb):(\d+)", line)
            if m and codec not in sdp_payload_names(sdp).get(m.group(2), ""):
                continue
            keep.append(line)
        return "\r\n".join(keep) + "\r\n"

    return edit


def sdp_payload_names(sdp: str) -> dict[str, str]:
    return dict(re.findall(r"a=rtpmap:(\d+) ([^/\s]+)/", sdp))


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        # Only H.264 High: aiortc shares no codec with it and raised OperationError -> HTTP 500 (issue 16).
        (
            lambda sdp: re.sub(
                r"profile-level-id=42[0-9a-f]{4}", "profile-level-id=640c1f", _only("H264")(sdp)
            ),
            "H.264 High",
        ),
        (_only("VP8"), "VP8"),
    ],
)
async def test_offer_the_hub_cannot_take_gets_400_naming_what_it_takes(
    hub: Hub, edit: Callable[[str], str], named: str
) -> None:
    offer = await _aiortc_offer(edit)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            hub.url("door"),
            data=offer,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {TOKEN}"},
        ) as resp:
            assert resp.status == 400
            body = await resp.json()
    assert body["error"] == "unsupported_offer"
    assert "Constrained Baseline" in body["detail"] and named in body["detail"], body
    assert hub.ingest.cameras["door"].session is None


async def test_answer_to_an_actpass_offer_makes_the_hub_the_dtls_server(hub: Hub) -> None:
    # RFC 8842 §5.3: the answerer picks; the hub must pick passive (DTLS server) so that peers with
    # RSA certificates (GStreamer webrtcbin) can complete the handshake (hub/egress/dtls.py).
    offer = await _aiortc_offer(lambda sdp: sdp)
    assert "a=setup:actpass" in offer
    async with aiohttp.ClientSession() as http:
        async with http.post(
            hub.url("door"),
            data=offer,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {TOKEN}"},
        ) as resp:
            assert resp.status == 201
            answer = await resp.text()
    assert "a=setup:passive" in answer and "a=setup:active" not in answer
