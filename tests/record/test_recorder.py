"""Recorder lifecycle: both packet paths, clean stop mid-segment, reconnect gaps, write errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.ingest.rtsp import FileSource
from hub.ingest.source import CodecParams, MediaPacket, PacketSource, SourceEnded
from hub.record.recorder import Recorder, RecordError
from hub.store import Store
from hub.store import segments as q
from tests.record.media import ffprobe, read_packets
from tests.record.test_segmenter import T0, _arrive

FPS = 15


class ListSource(PacketSource):
    """A source without a reader thread (like WHIP): packets are delivered on the event loop."""

    def __init__(self, params: CodecParams, pkts: list[MediaPacket]) -> None:
        self.camera_id = "cam"
        self._params, self._pkts = params, pkts
        self.closed = False

    @property
    def params(self) -> CodecParams:
        return self._params

    async def open(self) -> CodecParams:
        return self._params

    async def packets(self) -> AsyncIterator[MediaPacket]:
        for p in self._pkts:
            yield p
        raise SourceEnded("list exhausted")

    async def close(self) -> None:
        self.closed = True


async def test_loop_delivered_source_and_reconnect_gap(tmp_path: Path, store: Store, clip_320: Path) -> None:
    params, pkts = await read_packets(clip_320, 6 * FPS)
    first, second = _arrive(pkts[: 3 * FPS]), _arrive(pkts[3 * FPS :], T0 + 10)
    rec = Recorder("cam", tmp_path, store, segment_s=2.0)
    try:
        for chunk in (first, second):
            src = ListSource(params, chunk)
            with pytest.raises(SourceEnded):
                await rec.run(src)
            assert src.closed
    finally:
        await rec.stop()
    rows = await store.run(q.segments_between, "cam", 0, 1e12)
    assert [round(r.duration_s, 3) for r in rows] == [2.0, 1.0, 2.0, 1.0]
    (gap,) = await store.run(q.gaps_between, "cam", 0, 1e12)
    assert (gap.reason, gap.start_at, gap.end_at) == ("ended", T0 + 3.0, T0 + 10)
    assert rec.stats.packets == 6 * FPS and rec.stats.last_error == "list exhausted"


async def test_stop_mid_segment_finalizes_and_on_packet_sees_every_packet(
    tmp_path: Path, store: Store, clip_320: Path
) -> None:
    seen: list[MediaPacket] = []
    enough = asyncio.Event()

    def on_packet(pkt: MediaPacket) -> None:
        seen.append(pkt)
        if len(seen) >= 20:
            enough.set()

    rec = Recorder("cam", tmp_path, store, segment_s=60.0)  # never cut: stop() must close it
    src = FileSource("cam", clip_320, realtime=True, loop_input=True)
    task = asyncio.create_task(rec.run(src, on_packet=on_packet))
    try:
        await asyncio.wait_for(enough.wait(), 30)
    finally:
        await rec.stop()
    await task  # returns normally after stop()
    assert rec.stats.segments == 1 and not rec.stats.online
    (row,) = await store.run(q.segments_between, "cam", 0, 1e12)
    probe = ffprobe(tmp_path / row.path)
    assert probe.ok and probe.frames == rec.stats.packets
    assert len(seen) >= rec.stats.packets
    assert not await asyncio.to_thread(lambda: list(tmp_path.rglob("*.part")))
    # A stopped recorder refuses to start again, and closes the source it was given.
    src2 = ListSource(src.params, [])
    await rec.run(src2)
    assert src2.closed


async def test_a_recording_cameras_threads_are_named_in_the_kernel(
    tmp_path: Path, store: Store, clip_320: Path
) -> None:
    """`top -H` tells the camera's reader from its segment finalizer and the database (threadname.py)."""
    rec = Recorder("porch", tmp_path, store, segment_s=1.0)  # a segment a second: the finalizer runs
    task = asyncio.create_task(rec.run(FileSource("porch", clip_320, realtime=True, loop_input=True)))
    try:
        async with asyncio.timeout(30):
            while rec.stats.segments < 2:
                await asyncio.sleep(0.05)
        tasks = await asyncio.to_thread(lambda: list(Path("/proc/self/task").iterdir()))
        names = {(t / "comm").read_text().strip() for t in tasks}
    finally:
        await rec.stop()
    await task
    assert {"rtsp-porch", "rec-porch_0", "db_0"} <= names, sorted(names)


@pytest.mark.parametrize("direct", [True, False])
async def test_write_error_ends_the_run(tmp_path: Path, store: Store, clip_320: Path, direct: bool) -> None:
    blocker = tmp_path / "not-a-dir"
    await asyncio.to_thread(blocker.write_bytes, b"")
    rec = Recorder("cam", blocker, store)
    try:
        if direct:
            source: PacketSource = FileSource("cam", clip_320, realtime=False)
        else:
            params, pkts = await read_packets(clip_320, 10)
            source = ListSource(params, pkts)
        with pytest.raises(RecordError):
            await rec.run(source)
    finally:
        await rec.stop()
    assert rec.stats.last_error is not None and "writing a segment failed" in rec.stats.last_error
