"""Recording two simulated cameras over RTSP: ffprobe-clean, contiguous, keyframe-first segments,
every frame stamp present exactly once, and a dropped/resized camera recorded with gaps while the
other camera is untouched."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

from firmware_sim import h264
from firmware_sim.fleet import SimFleet
from hub.ingest.rtsp import RtspSource
from hub.ingest.source import SourceError
from hub.record.recorder import Recorder
from hub.store import Store
from hub.store import segments as q
from tests.record.media import ffprobe, file_packets

FPS, GOP, SEGMENT_S = 15, 15, 2.0


async def until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Supervised:
    """The reconnect loop the daemon's supervisor runs (without backoff, for the test)."""

    def __init__(self, recorder: Recorder, url: str) -> None:
        self.recorder, self.url = recorder, url
        self.errors: list[str] = []
        self.task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                await self.recorder.run(RtspSource(self.recorder.camera_id, self.url, read_timeout_s=3.0))
                return  # stop() was called
            except SourceError as exc:
                self.errors.append(exc.code)

    async def stop(self) -> None:
        await self.recorder.stop()
        await self.task


async def test_two_cameras_with_drop_and_resolution_change(tmp_path: Path, store: Store) -> None:
    media = tmp_path / "media"
    async with SimFleet(cameras=2, width=320, height=240, fps=FPS, gop=GOP, control_port=None) as fleet:
        cam1, cam2 = fleet.cameras
        rec1 = Recorder(cam1.name, media, store, segment_s=SEGMENT_S)
        rec2 = Recorder(cam2.name, media, store, segment_s=SEGMENT_S)
        sup1, sup2 = Supervised(rec1, cam1.rtsp_url()), Supervised(rec2, cam2.rtsp_url())
        try:
            await until(lambda: rec1.stats.segments >= 2, 30, "cam1's first segments")
            await cam1.fault("drop")
            await until(lambda: bool(sup1.errors), 15, "cam1 to notice the drop")
            await until(lambda: rec1.stats.online and rec1.stats.segments >= 3, 30, "cam1 to reconnect")
            # Two GOPs written after the reconnect: the size changes once the new run is on disk, not
            # while its start is held (the sim's replayed GOP is dropped there, and a switch inside it
            # would start the run at the new size with no old-size segment to cut from).
            written = rec1.stats.packets
            await until(lambda: rec1.stats.packets >= written + 2 * GOP, 30, "cam1 live after the reconnect")
            await cam1.fault("resolution", width=160, height=120)
            await until(lambda: rec2.stats.packets >= 12 * FPS, 40, "12 s of cam2")
            await until(lambda: rec1.stats.gaps >= 2, 20, "cam1's resolution change")
            stamp_before_stop = cam2.next_seq
        finally:
            await sup1.stop()
            # Stop mid-GOP, where the source holds the most packets not yet handed over.
            await until(lambda: cam2.next_seq % GOP == GOP * 2 // 3, 5, "cam2 mid-GOP")
            stamp_at_stop = cam2.next_seq
            await sup2.stop()

    assert not list(media.rglob("*.part"))
    # cam2: one unbroken run.
    rows2 = await store.run(q.segments_between, cam2.name, 0, 1e12)
    assert await store.run(q.gaps_between, cam2.name, 0, 1e12) == []
    assert sup2.errors == []
    seqs = _check_segments(media, rows2, last_may_be_short=True)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "missing or duplicated frames"
    assert seqs[-1] < stamp_before_stop + 2 * FPS
    # Every frame read before the stop is in the recording (the source batches packets per GOP
    # and hands over what it holds as it closes).
    assert seqs[-1] >= stamp_at_stop - 3, (seqs[-1], stamp_at_stop)

    # cam1: a gap where the connection dropped, a new segment at the new size.
    rows1 = await store.run(q.segments_between, cam1.name, 0, 1e12)
    gaps1 = await store.run(q.gaps_between, cam1.name, 0, 1e12)
    assert sup1.errors and set(sup1.errors) <= {"ended", "stalled"}
    assert [g.reason for g in gaps1][:1] == [sup1.errors[0]]
    assert "codec_change" in [g.reason for g in gaps1]
    assert {(r.width, r.height) for r in rows1} == {(320, 240), (160, 120)}
    for r in rows1:
        probe = ffprobe(media / r.path)
        assert probe.ok, probe.stderr
        assert (probe.width, probe.height) == (r.width, r.height)
    for a, b in itertools.pairwise(rows1):
        assert b.start_at >= a.end_at - 1e-6
        gap_between = [
            g for g in gaps1 if abs(g.start_at - a.end_at) < 1e-6 and abs(g.end_at - b.start_at) < 1e-6
        ]
        assert abs(b.start_at - a.end_at) < 1 / FPS or gap_between, "time between segments without a gap row"


def _check_segments(media: Path, rows: list[q.Segment], last_may_be_short: bool) -> list[int]:
    """ffprobe-clean, contiguous, starting with a keyframe, target length; returns the frame stamps."""
    assert len(rows) >= 4
    seqs: list[int] = []
    for i, r in enumerate(rows):
        path = media / r.path
        probe = ffprobe(path)
        assert probe.ok, probe.stderr
        assert probe.frames > 0 and (probe.width, probe.height) == (320, 240)
        pkts = file_packets(path)
        assert pkts[0].is_keyframe
        assert probe.frames == len(pkts)
        if i < len(rows) - 1 or not last_may_be_short:
            # Cut at the first keyframe at or after the target: within one GOP of it.
            assert SEGMENT_S - 0.5 / FPS <= r.duration_s <= SEGMENT_S + GOP / FPS + 0.5 / FPS, r.duration_s
        for p in pkts:
            stamp = h264.find_stamp(p.data)
            assert stamp is not None
            seqs.append(stamp.seq)
    for a, b in itertools.pairwise(rows):
        assert abs(b.start_at - a.end_at) < 1 / FPS
    return seqs


async def test_video_stopping_on_a_live_connection_is_a_stall_and_a_gap(tmp_path: Path, store: Store) -> None:
    """An encoder hang (RTCP keeps the connection busy, no video): the recorder ends the run as
    stalled within the read timeout, records a gap, and records again once video is back."""
    media = tmp_path / "media"
    async with SimFleet(cameras=1, width=320, height=240, fps=FPS, gop=GOP, control_port=None) as fleet:
        (cam,) = fleet.cameras
        rec = Recorder(cam.name, media, store, segment_s=SEGMENT_S)
        sup = Supervised(rec, cam.rtsp_url())
        try:
            await until(lambda: rec.stats.segments >= 1, 30, "the first segment")
            await cam.fault("mute", seconds=10)
            t0 = time.monotonic()
            await until(lambda: "stalled" in sup.errors, 3.0 + 5, "the stall to be noticed")
            assert time.monotonic() - t0 < 3.0 + 5 and cam.muted
            segments = rec.stats.segments
            await until(lambda: rec.stats.segments >= segments + 2, 40, "recording after the mute")
        finally:
            await sup.stop()
    gaps = await store.run(q.gaps_between, cam.name, 0, 1e12)
    assert "stalled" in [g.reason for g in gaps]
    assert not list(media.rglob("*.part"))
