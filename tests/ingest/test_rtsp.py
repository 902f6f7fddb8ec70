"""RTSP source against the simulator: packets, typed errors on stall/drop, clean close, no leaks."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from firmware_sim import h264
from firmware_sim.camera import SimCamera
from hub.ingest.rtsp import MAX_BATCH_S, RtspSource
from hub.ingest.source import MediaPacket, SourceEnded, SourceOpenError, SourceStalled
from hub.record.segmenter import Segmenter
from hub.store import Store, segments


@pytest.fixture
async def cam() -> AsyncIterator[SimCamera]:
    async with SimCamera("cam1", width=320, height=240, fps=15, gop=15, control_port=None) as c:
        yield c


@pytest.fixture(params=["camhub", "ffmpeg"])
def reader(request: pytest.FixtureRequest) -> str:
    """Every test runs with both readers of RTP over TCP (hub/ingest/rtsp_client.py and FFmpeg's)."""
    return str(request.param)


async def _take(src: RtspSource, n: int) -> list[MediaPacket]:
    out = []
    async for pkt in src.packets():
        out.append(pkt)
        if len(out) == n:
            break
    return out


async def test_packets_follow_the_contract(cam: SimCamera, reader: str) -> None:
    src = RtspSource("cam1", cam.rtsp_url(), reader=reader, read_timeout_s=3.0)
    try:
        params = await src.open()
        assert (params.codec, params.width, params.height) == ("h264", 320, 240)
        assert params.extradata.startswith(b"\x00\x00\x00\x01")  # from the SDP, Annex B
        pkts = await _take(src, 45)
    finally:
        await src.close()
    assert src.reader_used == reader
    # camhub's reader hands a frame on at its last RTP packet; FFmpeg's parser a frame later.
    assert all(p.bounds_next == (reader == "ffmpeg") for p in pkts)
    assert pkts[0].is_keyframe and pkts[0].pts == pkts[0].dts == 0  # FFmpeg gave it no timestamps
    assert all(b.dts > a.dts for a, b in itertools.pairwise(pkts))
    assert not any(p.discontinuity for p in pkts)
    seqs = [h264.find_stamp(p.data).seq for p in pkts]  # type: ignore[union-attr]
    assert seqs == list(range(seqs[0], seqs[0] + 45))
    assert sum(p.is_keyframe for p in pkts) == 3


async def test_stall_raises_stalled(cam: SimCamera, reader: str) -> None:
    src = RtspSource("cam1", cam.rtsp_url(), reader=reader, read_timeout_s=1.5)
    try:
        await src.open()
        await _take(src, 5)
        await cam.fault("stall", seconds=60)
        with pytest.raises(SourceStalled):
            await _take(src, 1000)
        assert not cam._unstalled.is_set()  # it gave up while the camera was still silent
    finally:
        await src.close()


async def test_video_stopping_on_a_live_connection_raises_stalled(cam: SimCamera, reader: str) -> None:
    """An encoder hang: the socket stays busy with RTCP sender reports, so FFmpeg's socket timeout
    never fires and its read cannot be interrupted; the event-loop watchdog ends the stream."""
    src = RtspSource("cam1", cam.rtsp_url(), reader=reader, read_timeout_s=1.5)
    try:
        await src.open()
        await _take(src, 5)
        await cam.fault("mute", seconds=30)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(SourceStalled, match="no video"):
            async with asyncio.timeout(15):
                await _take(src, 1000)
        # read timeout + the watchdog's interval and grace, never the length of the mute
        assert loop.time() - t0 < 1.5 + 4
        assert cam.muted
    finally:
        await src.close()
    # The blocked read cannot be interrupted; it returns with the next packet, and the thread ends.
    await cam.fault("mute", seconds=0.1)  # ends the mute
    thread = src._thread
    assert thread is not None
    async with asyncio.timeout(10):
        while thread.is_alive():
            await asyncio.sleep(0.1)


def _slices() -> int:
    """How many times the calling thread has been put on a CPU (proc(5), schedstat)."""
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[2])


@pytest.mark.parametrize("viewer", [False, True])
async def test_a_recording_reader_naps_and_still_hands_on_every_frame_in_time(
    cam: SimCamera, reader: str, viewer: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over TCP with nobody watching, a reader that has caught up sleeps and then reads what arrived
    meanwhile back to back: a few wake-ups a second instead of one per frame (issue 17). Every frame
    still comes, in order, within MAX_BATCH_S of when it would have come without naps; with a
    viewer (demand set) the reader wakes for every frame as it comes."""
    got: list[tuple[MediaPacket, float, int]] = []  # packet, when handed on, reader's CPU slices
    done = threading.Event()
    naps: list[float] = []  # how long the reader set out to sleep, each time it did
    nap = RtspSource._nap

    def recording_nap(self: RtspSource, until: float) -> None:
        if not demand.is_set():  # with a viewer the nap ends before it starts
            naps.append(until - time.monotonic())
        nap(self, until)

    monkeypatch.setattr(RtspSource, "_nap", recording_nap)

    def sink(pkt: MediaPacket) -> None:  # on the reader thread, as the recorder's
        got.append((pkt, time.time(), _slices()))
        if len(got) >= 90:
            done.set()

    src = RtspSource("cam1", cam.rtsp_url(), reader=reader, read_timeout_s=3.0)
    src.set_sink(sink)
    demand = threading.Event()
    if viewer:
        demand.set()
    src.set_demand(demand)
    try:
        await src.open()
        assert await asyncio.to_thread(done.wait, 30)
    finally:
        await src.close()
    seqs = [h264.find_stamp(p.data).seq for p, _, _ in got]  # type: ignore[union-attr]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    live = got[30:]  # past the camera's cached GOP, which arrives in one go
    late = [handed - h264.find_stamp(p.data).capture_us / 1e6 for p, handed, _ in live]  # type: ignore[union-attr]
    # The crash budget (README): the reader never sets out to sleep longer than MAX_BATCH_S. That
    # is its decision, checked exactly; what a frame then waits also holds the
    # sim's capture-to-wire path (~0.07-0.14 s, in this process, under the same GIL), FFmpeg's parser
    # (a frame is handed over when the next begins) and the scheduler: 0.47-0.54 s seen alone, 0.67
    # once in a full CI run. The wall-clock bound is loose enough for that and still fails a reader
    # that naps to the next keyframe (this camera's GOP is 1 s).
    assert viewer or naps, "no nap"
    assert max(naps, default=0.0) <= MAX_BATCH_S, max(naps)
    assert max(late) < MAX_BATCH_S + 0.4, max(late)
    wakes_per_s = (live[-1][2] - live[0][2]) / (live[-1][1] - live[0][1])
    if viewer:
        assert wakes_per_s >= 13, wakes_per_s  # a read per frame at 15 fps
    else:
        # ~2 per nap: measured 3.3-3.8 with naps of 0.6 s (CI beside), 5.2-5.5 with 0.4 s, 8.2 with
        # 0.25 s, 15.8 without naps.
        assert wakes_per_s <= 7.5, wakes_per_s


async def test_a_reader_whose_reads_are_slowed_by_the_gil_still_keeps_up(
    cam: SimCamera, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread spinning in Python holds the GIL, so every read, even of frames already in the
    socket, waits up to a switch interval (5 ms) for it afterwards, longer than CAUGHT_UP_S: a reader
    judging by the read's wait alone napped after every frame, read one frame per nap and fell
    behind for good (31.8 s here; seconds in a full CI run, where the hub's other threads do this).
    The camera's timestamps tell it is behind, and it reads on until it is not."""
    got: list[tuple[MediaPacket, float]] = []
    done, stop = threading.Event(), threading.Event()
    naps: list[float] = []
    nap = RtspSource._nap

    def recording_nap(self: RtspSource, until: float) -> None:
        naps.append(until - time.monotonic())
        nap(self, until)

    monkeypatch.setattr(RtspSource, "_nap", recording_nap)

    def sink(pkt: MediaPacket) -> None:
        got.append((pkt, time.time()))
        if len(got) >= 120:
            done.set()

    def spin() -> None:
        while not stop.is_set():
            pass

    src = RtspSource("cam1", cam.rtsp_url(), reader=reader, read_timeout_s=3.0)
    src.set_sink(sink)
    src.set_demand(threading.Event())  # nobody watching: the reader naps
    spinner = threading.Thread(target=spin, name="gil-spinner")
    try:
        await src.open()
        spinner.start()
        assert await asyncio.to_thread(done.wait, 60)
    finally:
        stop.set()
        await src.close()
        if spinner.is_alive():
            spinner.join()
    seqs = [h264.find_stamp(p.data).seq for p, _ in got]  # type: ignore[union-attr]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert naps, "no nap"  # it still naps once it has caught up
    # Past what piled up while the source opened (~1.9 s, with the spinner slowing the camera too),
    # which it reads back to back first.
    late = [handed - h264.find_stamp(p.data).capture_us / 1e6 for p, handed in got[45:]]  # type: ignore[union-attr]
    assert max(late) < MAX_BATCH_S + 0.4, max(late)


async def test_the_watchdog_sleeps_while_video_flows(
    cam: SimCamera, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It wakes when the silence could reach the limit, not on a fixed tick: polling every 0.25 s
    cost the event loop as much CPU per camera as all its other work (issue 17)."""
    wakes = 0
    watch = RtspSource._watch

    def counting(self: RtspSource) -> None:
        nonlocal wakes
        wakes += 1
        watch(self)

    monkeypatch.setattr(RtspSource, "_watch", counting)
    src = RtspSource("cam1", cam.rtsp_url(), reader=reader, read_timeout_s=1.0)
    try:
        await src.open()
        pkts = await _take(src, 60)  # 4 s of video at 15 fps
    finally:
        await src.close()
    assert len(pkts) == 60
    # 4 s against a 1.5 s limit: a wake-up every ~1.5 s at most (a 0.25 s tick would be 16).
    assert 1 <= wakes <= 4, wakes


async def test_a_stall_of_the_consumer_is_not_a_camera_stall(cam: SimCamera, reader: str) -> None:
    """The watchdog fires on a blocked read only: a consumer that takes its time sees every packet."""
    src = RtspSource("cam1", cam.rtsp_url(), reader=reader, read_timeout_s=1.0, queue_size=8)
    try:
        await src.open()
        await _take(src, 2)
        await asyncio.sleep(4)  # the queue fills and the reader waits for space, not for the camera
        pkts = await _take(src, 30)
        seqs = [h264.find_stamp(p.data).seq for p in pkts]  # type: ignore[union-attr]
        assert seqs == list(range(seqs[0], seqs[0] + 30))
    finally:
        await src.close()


async def test_drop_raises_ended(cam: SimCamera, reader: str) -> None:
    src = RtspSource("cam1", cam.rtsp_url(), reader=reader, read_timeout_s=3.0)
    try:
        await src.open()
        await _take(src, 5)
        await cam.fault("drop")
        with pytest.raises(SourceEnded):
            await _take(src, 1000)
    finally:
        await src.close()


async def test_corrupt_frames_keep_flowing(cam: SimCamera, reader: str) -> None:
    src = RtspSource("cam1", cam.rtsp_url(), reader=reader, read_timeout_s=3.0)
    try:
        await src.open()
        await _take(src, 3)
        await cam.fault("corrupt", frames=10)
        pkts = await _take(src, 30)
    finally:
        await src.close()
    assert all(b.dts > a.dts for a, b in itertools.pairwise(pkts))


async def test_close_while_reading_ends_the_iteration(cam: SimCamera, reader: str) -> None:
    src = RtspSource("cam1", cam.rtsp_url(), reader=reader, read_timeout_s=3.0)
    await src.open()
    got: list[MediaPacket] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for pkt in src.packets():
            got.append(pkt)
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    await src.close()
    await task  # ends cleanly, no error
    await src.close()  # idempotent
    assert got


async def test_nothing_listening_is_an_open_error(reader: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = RtspSource(
        "cam1", f"rtsp://127.0.0.1:{port}/x", reader=reader, read_timeout_s=1.0, open_timeout_s=2.0
    )
    with pytest.raises(SourceOpenError):
        await src.open()
    await src.close()


@pytest.mark.parametrize("fault", ["stall", "mute"])
async def test_a_stall_is_caught_within_read_timeout_plus_1_s_and_says_how_long(
    cam: SimCamera, reader: str, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 16: a frozen camera was caught after ~2x read_timeout_s and the log said "no data for
    # 5.0 s" after 10 s. Now the error and the log give the silence actually measured.
    read_timeout_s = 1.5
    src = RtspSource("cam1", cam.rtsp_url(), reader=reader, read_timeout_s=read_timeout_s)
    try:
        await src.open()
        await _take(src, 5)
        await cam.fault(fault, seconds=30)
        with pytest.raises(SourceStalled) as err:
            async with asyncio.timeout(15):
                await _take(src, 1000)
    finally:
        await src.close()
    silent = float(re.search(r"no video for ([\d.]+) s", str(err.value)).group(1))  # type: ignore[union-attr]
    # The silence is measured from the last video packet, which left the camera up to a frame before
    # the fault: a frame (1/15 s) of slack below, read_timeout_s + 1 s above.
    assert read_timeout_s - 0.1 <= silent <= read_timeout_s + 1.0, str(err.value)
    assert any(f"no video for {silent:.1f} s" in r.getMessage() for r in caplog.records), caplog.text


async def test_muxing_the_rtsp_demuxers_own_packets_writes_the_same_segment(
    cam: SimCamera, tmp_path: Path
) -> None:
    """The recorder muxes the demuxer's packet instead of a copy of its bytes (issue 17). Packets from
    FFmpeg's RTSP demuxer carry side data (RTCP sender reports, producer reference times) that a copy
    does not: the segment must come out byte for byte the same either way."""
    kept: list[MediaPacket] = []
    done = threading.Event()

    def sink(pkt: MediaPacket) -> None:
        kept.append(dataclasses.replace(pkt))  # a copy keeps `av_packet` past the source's drop
        if len(kept) >= 40:
            done.set()

    src = RtspSource("cam1", cam.rtsp_url(), reader="ffmpeg", read_timeout_s=3.0)
    src.set_sink(sink)
    try:
        await src.open()
        assert await asyncio.to_thread(done.wait, 30)
    finally:
        await src.close()
    pkts = kept[:40]
    assert all(p.av_packet is not None for p in pkts)
    assert any(list(p.av_packet.iter_sidedata()) for p in pkts)  # what a copy of the bytes lacks
    store = await Store.open(tmp_path / "hub.db")
    try:
        for camera, packets in (
            ("copies", [dataclasses.replace(p, av_packet=None) for p in pkts]),
            ("own", pkts),
        ):
            segmenter = Segmenter(camera, tmp_path, store, segment_s=60.0)

            def write(segmenter: Segmenter = segmenter, packets: list[MediaPacket] = packets) -> None:
                for p in packets:
                    assert p.params is not None
                    segmenter.write(p, p.params)
                segmenter.finish()

            await asyncio.to_thread(write)
        (a,) = await store.run(segments.segments_between, "copies", 0, 1e12)
        (b,) = await store.run(segments.segments_between, "own", 0, 1e12)
    finally:
        await store.close()
    assert (tmp_path / a.path).read_bytes() == (tmp_path / b.path).read_bytes()
