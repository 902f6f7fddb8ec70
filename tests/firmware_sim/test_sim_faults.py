"""Every fault kind, observed from the client side."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from firmware_sim import h264
from firmware_sim.camera import FaultError, SimCamera
from firmware_sim.fleet import SimFleet

from .conftest import SMALL
from .sim_client import RawRtsp, ffprobe, read_frames


def seq_of(nals: list[bytes]) -> h264.SeiStamp:
    s = h264.find_stamp(h264.join_annexb(nals))
    assert s is not None
    return s


async def test_drop_closes_every_connection(camera: SimCamera) -> None:
    clients = [await RawRtsp.connect(camera.rtsp_url()) for _ in range(2)]
    try:
        for c in clients:
            await c.play(camera.rtsp_url(with_credentials=False))
            await c.read_access_units(2)
        await camera.fault("drop")
        for c in clients:
            async with asyncio.timeout(10):
                with pytest.raises(asyncio.IncompleteReadError):
                    while True:
                        await c.read_interleaved()
        # The camera itself is fine: a new client plays.
        again = await RawRtsp.connect(camera.rtsp_url())
        try:
            await again.play(camera.rtsp_url(with_credentials=False))
            assert len(await again.read_access_units(2)) == 2
        finally:
            await again.close()
    finally:
        for c in clients:
            await c.close()


async def test_stall_keeps_socket_open_but_silent_then_resumes_at_idr(camera: SimCamera) -> None:
    client = await RawRtsp.connect(camera.rtsp_url())
    try:
        await client.play(camera.rtsp_url(with_credentials=False))
        units = await client.read_access_units(3)
        last = seq_of(units[-1][1]).seq
        await camera.fault("stall", seconds=3)
        # Whatever was already in flight drains; then nothing arrives and the socket stays open.
        timed_out = False
        for _ in range(200):
            try:
                async with asyncio.timeout(1.0):
                    await client.read_interleaved()
            except TimeoutError:
                timed_out = True
                break
        assert timed_out, "data kept flowing during a stall"
        assert not client.reader.at_eof()
        # After the stall: frames again, starting at an IDR, with a gap in the frame counter.
        async with asyncio.timeout(15):
            after = await client.read_access_units(2)
        assert h264.nal_type(after[0][1][0]) == h264.NAL_SPS
        assert seq_of(after[0][1]).seq > last + 15
    finally:
        await client.close()


async def test_mute_sends_rtcp_but_no_rtp_then_resumes_at_idr(camera: SimCamera) -> None:
    client = await RawRtsp.connect(camera.rtsp_url())
    try:
        await client.play(camera.rtsp_url(with_credentials=False))
        units = await client.read_access_units(3)
        last = seq_of(units[-1][1]).seq
        await camera.fault("mute", seconds=4)
        assert camera.muted
        # What was in flight drains at once; after the first second only RTCP (odd channels) comes.
        seen: list[tuple[float, int]] = []
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        async with asyncio.timeout(10):
            while camera.muted and loop.time() - t0 < 3.5:
                channel, _packet = await client.read_interleaved()
                seen.append((loop.time() - t0, channel))
        tail = [c for t, c in seen if 1.0 < t < 3.9]  # the mute lasts 4 s
        assert len(tail) >= 2, f"no sender reports during the mute: {seen}"
        assert all(c % 2 == 1 for c in tail), f"RTP arrived during the mute: {seen}"
        # The loop above may have taken the first packet of the IDR access unit (its SPS): the
        # rest of it comes first, then whole frames with a gap in the frame counter.
        async with asyncio.timeout(15):
            after = await client.read_access_units(2)
        assert h264.NAL_IDR in [h264.nal_type(n) for n in after[0][1]]
        assert seq_of(after[1][1]).seq > last + 15
    finally:
        await client.close()


async def test_reboot_refuses_connections_then_comes_back(camera: SimCamera) -> None:
    client = await RawRtsp.connect(camera.rtsp_url())
    try:
        await client.play(camera.rtsp_url(with_credentials=False))
        await client.read_access_units(2)
        await camera.fault("reboot", seconds=2)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", camera.rtsp.port)
        async with asyncio.timeout(10):
            with pytest.raises(asyncio.IncompleteReadError):
                while True:
                    await client.read_interleaved()
    finally:
        await client.close()
    async with asyncio.timeout(20):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", camera.rtsp.port)
            except ConnectionRefusedError:
                await asyncio.sleep(0.1)  # polling with a deadline, as a real client retries
                continue
            writer.close()
            await writer.wait_closed()
            break
    rc, data, err = await ffprobe(camera.rtsp_url())
    assert rc == 0 and data["streams"][0]["codec_name"] == "h264", err


async def test_reboot_in_a_fleet_leaves_other_cameras_alone() -> None:
    async with SimFleet(2, control_port=None, **SMALL) as fleet:
        cam1, cam2 = fleet.cameras
        await cam1.fault("reboot", seconds=30)
        client = await RawRtsp.connect(cam1.rtsp_url())
        try:
            resp = await client.request("DESCRIBE", cam1.rtsp_url(with_credentials=False))
            assert resp.status == 503
            await client.play(cam2.rtsp_url(with_credentials=False))
            assert len(await client.read_access_units(5)) == 5
        finally:
            await client.close()


async def test_corrupt_nal_units_cause_decode_errors(camera: SimCamera) -> None:
    clean, errors = await asyncio.to_thread(read_frames, camera.rtsp_url(), 20)
    assert errors == 0 and all(f.pixel is not None for f in clean)
    await camera.fault("corrupt", frames=60)
    frames, errors = await asyncio.to_thread(read_frames, camera.rtsp_url(), 40)
    damaged = [f for f in frames if f.pixel is None]
    print(f"corrupt: {errors} decode errors, {len(damaged)} damaged pictures of {len(frames)}")
    assert errors + len(damaged) > 0, "no decode errors or damaged pictures after corrupting"


async def test_resolution_change_mid_stream(camera: SimCamera, ffprobe_bin: str) -> None:
    started = threading.Event()
    reader = asyncio.create_task(asyncio.to_thread(read_frames, camera.rtsp_url(), 60, started=started))
    assert await asyncio.to_thread(started.wait, 30)
    await camera.fault("resolution", width=320, height=180)
    frames, _errors = await reader
    sizes = [(f.width, f.height) for f in frames]
    assert sizes[0] == (640, 360) and sizes[-1] == (320, 180)
    assert all(f.pixel is not None for f in frames)
    seqs = [f.seq for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no frame lost at the switch
    _rc, data, err = await ffprobe(camera.rtsp_url())
    assert (data["streams"][0]["width"], data["streams"][0]["height"]) == (320, 180), err


async def test_clock_jump_moves_capture_times(camera: SimCamera) -> None:
    client = await RawRtsp.connect(camera.rtsp_url())
    try:
        await client.play(camera.rtsp_url(with_credentials=False))
        before = [seq_of(n) for _, n in await client.read_access_units(3)]
        await camera.fault("clock_jump", seconds=3600)
        after = [seq_of(n) for _, n in await client.read_access_units(30)]
        stamps = before + after
        assert [s.seq for s in stamps] == list(range(stamps[0].seq, stamps[0].seq + len(stamps)))
        steps = [b.capture_us - a.capture_us for a, b in itertools.pairwise(stamps)]
        assert sum(1 for d in steps if d > 3_599_000_000) == 1
        assert all(0 < d < 1_000_000 or d > 3_599_000_000 for d in steps)
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("melt", {}),
        ("stall", {"seconds": -1}),
        ("stall", {"minutes": 1}),
        ("resolution", {"width": 640}),
        ("resolution", {"width": 641, "height": 360}),
        ("corrupt", {"frames": "many"}),
        ("drop", {"x": 1}),
    ],
)
async def test_bad_fault_requests_are_rejected(
    camera: SimCamera, kind: str, params: dict[str, object]
) -> None:
    with pytest.raises(FaultError):
        await camera.fault(kind, **params)
